package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"
)

// contentSecurityPolicy is sent on every answer. The service's HTML pages use
// no scripts, no images and no external assets, only inline styles and forms
// posted to the service itself.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the headers every answer carries: no MIME sniffing,
// no Referer (URLs may carry a code or state), no framing, and the CSP above.
func securityHeaders(next http.Handler) http.Handler {
	// Keys in canonical form and one-element values, as Set stores them, made
	// once and shared by every answer: nothing writes into them (Set replaces
	// a value, Add appends into a new array, their capacity being 1).
	values := [][]string{{"nosniff"}, {"no-referrer"}, {"DENY"}, {contentSecurityPolicy}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"], h["Referrer-Policy"] = values[0][:1:1], values[1][:1:1]
		h["X-Frame-Options"], h["Content-Security-Policy"] = values[2][:1:1], values[3][:1:1]
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic in a handler into a 500 JSON error and a log
// line with the stack, so the process keeps serving. The client never sees
// the panic value or the stack. http.ErrAbortHandler is re-raised, as
// net/http expects.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			logger.ErrorContext(r.Context(), "panic in handler", "path", logPath(r.URL.Path), "request_id", requestID(r.Context()),
				"panic", fmt.Sprintf("%T", v), "stack", string(debug.Stack()))
			if rec, ok := w.(*responseRecorder); ok && rec.status != 0 {
				return // the answer has started; the connection is all that is left
			}
			writeError(w, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}

// requestInfo is what logRequests learns about a request while it is
// served: its id, its trace (traceparent, or a new one), and the caller or
// why its credentials were refused, which requireAuth reports through
// withCallerHook. It lives in the request context; only the request's own
// goroutine changes it.
type requestInfo struct {
	id            string
	trace         traceContext
	oid, tid, azp string
	refused       error
}

// requestInfoKey is the context key of *requestInfo.
type requestInfoKey struct{}

// requestIDPattern is the shape of an X-Request-Id taken from a client:
// 1 to 64 letters, digits, dots, dashes or underscores. Anything else is
// replaced by a generated id, so logs cannot be forged or flooded.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID returns the id logRequests gave the request, or "".
func requestID(ctx context.Context) string {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return info.id
	}
	return ""
}

// responseRecorder remembers the status and the number of body bytes written.
type responseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rec *responseRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *responseRecorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rec *responseRecorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// logRequests logs one line per request: method, path (never the query
// string, which may carry a code or state), status, duration, bytes, request
// id, trace id, and for authenticated calls oid, tid and azp. It never logs
// headers, so no token or cookie reaches the log. The request id is taken
// from X-Request-Id when well-formed, else generated, and echoed in the
// answer; the trace is the traceparent's when valid (parseTraceparent),
// else a new one.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{id: r.Header.Get("X-Request-Id")}
		if info.id == "" || !requestIDPattern.MatchString(info.id) {
			info.id = rand.Text()
		}
		var ok bool
		if info.trace, ok = parseTraceparent(r.Header); !ok {
			info.trace = newTrace()
		}
		w.Header()["X-Request-Id"] = []string{info.id} // canonical: Set's result, without its work
		rec := &responseRecorder{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), requestInfoKey{}, info)
		ctx = withCallerHook(ctx, func(p *principal, refused error) {
			if p != nil {
				info.oid, info.tid, info.azp = p.ObjectID, p.TenantID, p.AuthorizedParty
			}
			info.refused = refused
		})
		next.ServeHTTP(rec, r.WithContext(ctx))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		attrs := append(make([]slog.Attr, 0, 11), // room for them all: one array, on the stack
			slog.String("method", r.Method),
			slog.String("path", logPath(r.URL.Path)),
			slog.Int("status", rec.status),
			slog.Duration("duration", time.Since(start)),
			slog.Int64("bytes", rec.bytes),
			slog.String("request_id", info.id),
			slog.String("trace_id", info.trace.traceID),
		)
		if info.oid != "" || info.tid != "" || info.azp != "" {
			attrs = append(attrs, slog.String("oid", info.oid), slog.String("tid", info.tid), slog.String("azp", info.azp))
		}
		if info.refused != nil {
			attrs = append(attrs, slog.String("auth_error", info.refused.Error()))
		}
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// maxLogPath is the most bytes of a request's path the request log writes.
const maxLogPath = 512

// logPath is a request path as the request log writes it: at most
// maxLogPath bytes, with control characters as spaces and bidirectional
// overrides dropped (cleanIdPText), so that a request can neither flood the
// log nor disguise or forge a line of it, in text or JSON format. A plain
// ASCII path is written as it is.
func logPath(p string) string {
	for i := range len(p) {
		if p[i] < 0x20 || p[i] >= 0x7f {
			return cleanIdPText(p, maxLogPath)
		}
	}
	return truncate(p, maxLogPath)
}
