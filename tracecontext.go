package main

// Trace context (W3C Trace Context, https://www.w3.org/TR/trace-context/):
// a request's traceparent is validated and its trace id put in every log
// line of the request (logRequests, requestLogHandler); the calls the
// request makes to the identity provider and the table store carry a child
// traceparent (traceTransport), so a trace joins them. A request without a
// valid traceparent starts a new trace. tracestate is neither read nor
// forwarded: it is the caller's free text, and the calls go to third
// parties.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// traceContext is the trace a request belongs to: its trace-id (32
// lowercase hex digits, never all zeros) and whether the caller set the
// sampled flag (trace-flags bit 0, the only flag of version 00).
type traceContext struct {
	traceID string
	sampled bool
}

// parseTraceparent reads the traceparent field of h (W3C Trace Context
// §3.2): version 00 is exactly 55 characters, "00-" trace-id "-" parent-id
// "-" trace-flags, all lowercase hex, trace-id and parent-id not all zeros.
// A later version (not ff) is read as §3.2.4 says: at least 55 characters,
// the same fields at the same places, and either nothing or a "-" after the
// flags. ok is false for anything else, for no field and for several.
func parseTraceparent(h http.Header) (tc traceContext, ok bool) {
	values := h.Values("traceparent")
	if len(values) != 1 {
		return traceContext{}, false
	}
	s := values[0]
	if len(s) < 55 || !isLowerHex(s[:2]) || s[:2] == "ff" || (s[:2] == "00" && len(s) != 55) ||
		(len(s) > 55 && s[55] != '-') || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return traceContext{}, false
	}
	traceID, parentID, flags := s[3:35], s[36:52], s[53:55]
	if !isLowerHex(traceID) || !isLowerHex(parentID) || !isLowerHex(flags) ||
		strings.Trim(traceID, "0") == "" || strings.Trim(parentID, "0") == "" {
		return traceContext{}, false
	}
	b, _ := hex.DecodeString(flags) // checked above
	return traceContext{traceID: traceID, sampled: b[0]&1 == 1}, true
}

// isLowerHex reports whether s is made of lowercase hexadecimal digits.
func isLowerHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}

// newTrace starts a trace: a random trace-id, not sampled (this service
// records no spans).
func newTrace() traceContext { return traceContext{traceID: randomHex(16)} }

// randomHex is n random bytes (crypto/rand) in lowercase hex, never all
// zeros.
func randomHex(n int) string {
	b := make([]byte, n)
	for {
		rand.Read(b) // never fails (crypto/rand documents it)
		if s := hex.EncodeToString(b); strings.Trim(s, "0") != "" {
			return s
		}
	}
}

// childTraceparent is the traceparent of a call made within tc: version
// 00, tc's trace-id, a new parent-id naming the call, and tc's sampled
// flag (no other flag: version 00 defines none).
func (tc traceContext) childTraceparent() string {
	flags := "00"
	if tc.sampled {
		flags = "01"
	}
	return "00-" + tc.traceID + "-" + randomHex(8) + "-" + flags
}

// traceFrom returns the trace of the request ctx belongs to (logRequests
// puts it there); ok is false outside a request, such as the key set's
// scheduled refresh.
func traceFrom(ctx context.Context) (traceContext, bool) {
	info, ok := ctx.Value(requestInfoKey{}).(*requestInfo)
	if !ok || info.trace.traceID == "" {
		return traceContext{}, false
	}
	return info.trace, true
}

// traceTransport is the http.RoundTripper of the service's outbound calls
// (identity provider, table store): it sends each request with a child
// traceparent of the trace its context belongs to, or of a new trace, and
// tells observe (when not nil) how long the call took and whether it failed
// (no answer, or a 429 or 5xx status). Safe for concurrent use.
type traceTransport struct {
	next    http.RoundTripper
	observe func(r *http.Request, d time.Duration, failed bool)
}

// RoundTrip sends a copy of r carrying the traceparent; r is not changed
// (http.RoundTripper's rule).
func (t traceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tc, ok := traceFrom(r.Context())
	if !ok {
		tc = newTrace()
	}
	out := r.Clone(r.Context())
	out.Header.Set("traceparent", tc.childTraceparent())
	start := time.Now()
	resp, err := t.next.RoundTrip(out)
	if t.observe != nil {
		t.observe(r, time.Since(start), err != nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500)
	}
	return resp, err
}

// requestLogHandler is the service's slog.Handler wrapper: a record logged
// with the context of a request (logRequests made it) gets the request's
// request_id and trace_id, unless it has them already, so every log line
// of a request can be found by either.
type requestLogHandler struct{ slog.Handler }

// Handle adds the request's ids and passes r on.
func (h requestLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		hasID, hasTrace := false, false
		r.Attrs(func(a slog.Attr) bool {
			hasID, hasTrace = hasID || a.Key == "request_id", hasTrace || a.Key == "trace_id"
			return true
		})
		if !hasID {
			r.AddAttrs(slog.String("request_id", info.id))
		}
		if !hasTrace {
			r.AddAttrs(slog.String("trace_id", info.trace.traceID))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper around the handler with attrs.
func (h requestLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestLogHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps the wrapper around the handler with the group.
func (h requestLogHandler) WithGroup(name string) slog.Handler {
	return requestLogHandler{h.Handler.WithGroup(name)}
}
