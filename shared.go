package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"
)

// apiError is the JSON body of every error answer, in FastAPI's shape
// ({"detail": …}) so the original service's clients keep working. Detail is
// a message, or for 422 the list of validation problems. Error is the OAuth
// error code when there is one (RFC 6749 §5.2, RFC 6750 §3.1) and Code an
// upstream code such as Entra's AADSTS number.
type apiError struct {
	Detail any    `json:"detail"`
	Error  string `json:"error,omitempty"`
	Code   string `json:"code,omitempty"`
}

// writeJSON writes v as JSON with the given status. HTML characters are not
// escaped (no \u003c for "<"): the answer is application/json and every
// answer carries X-Content-Type-Options: nosniff (securityHeaders), so no
// browser reads it as HTML, and escaping would make a hero full of "<" six
// times its size. Errors writing to the client are ignored: the client has
// gone and nothing else can be told.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // Encode ends the JSON with a newline
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"detail":"internal error"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, apiError{Detail: detail})
}

// truncate cuts s to at most n bytes (plus "…") without splitting a UTF-8
// sequence, and replaces invalid UTF-8: for putting untrusted values (claims,
// headers, provider messages) into errors and logs without letting them flood
// either.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// isGUID reports whether s is a GUID such as a tenant or client id, in its
// usual 8-4-4-4-12 hexadecimal form.
func isGUID(s string) bool { return guidPattern.MatchString(s) }

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// isLoopbackHost reports whether host is "localhost" or a loopback address.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errTooLarge is readAtMost's error for input over its limit.
var errTooLarge = errors.New("more than the limit")

// readAtMost reads r to its end, or fails with errTooLarge (wrapped, naming
// max) as soon as r holds more than max bytes. For answers of other
// services and files, which must be bounded like any input.
func readAtMost(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w of %d bytes", errTooLarge, max)
	}
	return data, nil
}

// isJSONType reports whether a Content-Type value names JSON, parameters
// allowed: application/json or a structured +json type such as
// application/problem+json (RFC 8259 §11, RFC 6839 §3.1).
func isJSONType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" ||
		strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// bodyErrorStatus is the status for an error reading a request body: 413
// from http.MaxBytesReader, 408 past the server's read deadline, else 400.
func bodyErrorStatus(err error) int {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge
	} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

// readBody reads the request body, at most limit bytes (http.MaxBytesReader,
// which also tells the server to close the connection after a larger one).
// A declared Content-Length up to limit sizes the buffer, so a body costs its
// size once. On failure it returns the status to answer (bodyErrorStatus:
// 413 over limit, 408 not in time, 400 unreadable).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, error) {
	var buf bytes.Buffer
	buf.Grow(int(min(max(r.ContentLength, 0), limit)) + bytes.MinRead)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		return nil, bodyErrorStatus(err), err
	}
	return buf.Bytes(), 0, nil
}
