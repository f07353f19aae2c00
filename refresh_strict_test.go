package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRefreshBodyIsReadStrictly checks POST /auth/refresh refuses, without
// calling the identity provider, what cannot be a refresh token request: a
// token over maxRefreshTokenLen (the 60 KB junk of the fault tests) or with
// characters outside RFC 6749's VSCHAR is 400 invalid_request, not the 502
// of an upstream failure; a repeated form parameter or JSON member, a body
// that is not UTF-8 and a charset other than UTF-8 are refused as they are
// for hero bodies. A well-formed but unknown token still reaches the
// provider, whose invalid_grant stays a 400.
func TestRefreshBodyIsReadStrictly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	var calls atomic.Int64
	setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h.ti.serveToken(w, r)
	})
	h.ti.addRefreshToken("rt-known")
	junk := strings.Repeat("A", 60<<10)
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name, ct, body string
		wantStatus     int
		wantError      string // the OAuth error member, when any
		wantCall       bool
	}{
		{"60 KB junk token is a local 400", form, "refresh_token=" + junk, 400, "invalid_request", false},
		{"token one byte over the bound", "application/json", `{"refresh_token":"` + strings.Repeat("a", maxRefreshTokenLen+1) + `"}`, 400, "invalid_request", false},
		{"token with a control character", "application/json", `{"refresh_token":"rt\u0000x"}`, 400, "invalid_request", false},
		{"token with a non-ASCII character", form, "refresh_token=rt%C3%A9", 400, "invalid_request", false},
		{"token with a newline", form, "refresh_token=rt%0Ax", 400, "invalid_request", false},
		{"repeated form parameter", form, "refresh_token=rt-known&refresh_token=rt-other", 400, "invalid_request", false},
		{"repeated other form parameter", form, "refresh_token=rt-known&x=1&x=2", 400, "invalid_request", false},
		{"form value that is not UTF-8", form, "refresh_token=rt-known&x=%FF", 400, "invalid_request", false},
		{"malformed form escape", form, "refresh_token=rt%zz", 400, "invalid_request", false},
		{"duplicate JSON member", "application/json", `{"refresh_token":"rt-known","refresh_token":"rt-other"}`, 400, "invalid_request", false},
		{"JSON that is not UTF-8", "application/json", "{\"refresh_token\":\"rt-\xff\"}", 400, "invalid_request", false},
		{"JSON token that is not a string", "application/json", `{"refresh_token":12}`, 400, "invalid_request", false},
		{"JSON array", "application/json", `["rt-known"]`, 400, "invalid_request", false},
		{"latin-1 form is 415", form + "; charset=iso-8859-1", "refresh_token=rt-known", 415, "", false},
		{"latin-1 JSON is 415", "application/json; charset=latin1", `{"refresh_token":"rt-known"}`, 415, "", false},
		{"unknown media type parameter is 415", "application/json; profile=x", `{"refresh_token":"rt-known"}`, 415, "", false},
		{"UTF-8 charset in any case is fine", form + "; charset=UTF-8", "refresh_token=rt-known", 200, "", true},
		{"a token at the bound reaches the provider", form, "refresh_token=" + strings.Repeat("a", maxRefreshTokenLen), 400, "invalid_grant", true},
		{"unknown token stays invalid_grant", form, "refresh_token=rt-unknown", 400, "invalid_grant", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := calls.Load()
			w := h.do(newRefreshRequest(tc.ct, tc.body))
			if w.Code != tc.wantStatus {
				t.Fatalf("POST /auth/refresh = %d %s; want %d", w.Code, truncate(w.Body.String(), 200), tc.wantStatus)
			}
			var body apiError
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("answer is not JSON: %s", truncate(w.Body.String(), 200))
			}
			if body.Error != tc.wantError {
				t.Errorf("error = %q; want %q (%v)", body.Error, tc.wantError, body.Detail)
			}
			if called := calls.Load() > before; called != tc.wantCall {
				t.Errorf("token endpoint called = %v; want %v", called, tc.wantCall)
			}
			if w.Code != http.StatusOK && w.Body.Len() > 1024 {
				t.Errorf("answer is %d bytes; want a short one that does not echo the token", w.Body.Len())
			}
		})
	}
}
