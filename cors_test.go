package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestCORS: with CORS_ALLOWED_ORIGINS set, a listed origin's preflight is
// answered 204 before authentication, its actual requests carry that origin
// and the exposed headers; an unlisted origin's preflight is 403, and its
// other requests and those without Origin get no CORS header and are served
// as without CORS; nothing ever says "*" or Allow-Credentials. Without the
// setting no answer has a CORS header (a preflight meets the routes: 405).
func TestCORS(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	const listed, other = "https://app.example.com", "https://evil.example"
	withCORS := newTestServer(t, p, map[string]string{"CORS_ALLOWED_ORIGINS": "https://APP.example.com:443, http://localhost:3000"}, io.Discard)
	without := newTestServer(t, p, nil, io.Discard)
	tok := p.token(t, nil)
	preflight := func(origin string) *http.Request {
		r := httptest.NewRequest("OPTIONS", "/api/heroes/", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "DELETE")
		r.Header.Set("Access-Control-Request-Headers", "authorization, if-match")
		return r
	}
	get := func(origin, token string) *http.Request {
		r := httptest.NewRequest("GET", "/api/heroes/", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if token != "" {
			bearer(r, token)
		}
		return r
	}
	twoOrigins := get(listed, tok)
	twoOrigins.Header.Add("Origin", other)
	tests := []struct {
		name   string
		h      http.Handler
		r      *http.Request
		status int
		want   map[string]string // headers; "" means absent
	}{
		{"listed preflight, no token", withCORS, preflight(listed), http.StatusNoContent, map[string]string{
			"Access-Control-Allow-Origin": listed, "Access-Control-Allow-Methods": corsAllowMethods,
			"Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match, Idempotency-Key, X-Request-Id, traceparent", "Access-Control-Max-Age": corsMaxAge,
			"Vary": "Origin", "Access-Control-Allow-Credentials": "", "WWW-Authenticate": ""}},
		{"listed origin, second entry", withCORS, preflight("http://localhost:3000"), http.StatusNoContent, map[string]string{
			"Access-Control-Allow-Origin": "http://localhost:3000"}},
		{"listed GET", withCORS, get(listed, tok), http.StatusOK, map[string]string{
			"Access-Control-Allow-Origin": listed, "Access-Control-Expose-Headers": corsExposeHeaders,
			"Vary": "Origin", "Access-Control-Allow-Methods": "", "Access-Control-Allow-Credentials": ""}},
		{"listed GET without a token: 401, still readable", withCORS, get(listed, ""), http.StatusUnauthorized, map[string]string{
			"Access-Control-Allow-Origin": listed, "Access-Control-Expose-Headers": corsExposeHeaders,
			"WWW-Authenticate": `Bearer realm="heroes-auth"`}},
		{"unlisted preflight is 403, no reflection", withCORS, preflight(other), http.StatusForbidden, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Vary": "Origin"}},
		{"unlisted GET is served as without CORS", withCORS, get(other, tok), http.StatusOK, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Expose-Headers": ""}},
		{"origin differing by case is another origin", withCORS, get("https://APP.example.com", tok), http.StatusOK, map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"null origin", withCORS, preflight("null"), http.StatusForbidden, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"two Origin headers", withCORS, twoOrigins, http.StatusOK, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"no Origin", withCORS, get("", tok), http.StatusOK, map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"}},
		{"CORS unset: preflight", without, preflight(listed), http.StatusMethodNotAllowed, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Vary": ""}},
		{"CORS unset: GET", without, get(listed, tok), http.StatusOK, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Expose-Headers": "", "Vary": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, tc.r)
			if rec.Code != tc.status {
				t.Errorf("%s %s from %q = %d %s; want %d", tc.r.Method, tc.r.URL, tc.r.Header.Values("Origin"), rec.Code, rec.Body, tc.status)
			}
			for k, want := range tc.want {
				if got := strings.Join(rec.Header().Values(k), ", "); got != want {
					t.Errorf("%s = %q; want %q", k, got, want)
				}
			}
			if strings.Contains(strings.Join(rec.Header().Values("Access-Control-Allow-Origin"), ""), "*") {
				t.Errorf("Access-Control-Allow-Origin holds *")
			}
		})
	}
}

// TestCORSIdempotentCreate: a page on a listed origin may send
// Idempotency-Key (its preflight allows every request header the API reads,
// in any case), and can read Idempotent-Replayed, Location, ETag,
// WWW-Authenticate and Retry-After on the answers.
func TestCORSIdempotentCreate(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	const origin = "https://app.example.com"
	h := newTestServer(t, p, map[string]string{"CORS_ALLOWED_ORIGINS": origin}, io.Discard)
	pre := httptest.NewRequest("OPTIONS", "/api/heroes/", nil)
	pre.Header.Set("Origin", origin)
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization,content-type,idempotency-key,traceparent,x-request-id")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, pre)
	allowed := strings.Split(strings.ToLower(rec.Header().Get("Access-Control-Allow-Headers")), ", ")
	for _, want := range strings.Split(pre.Header.Get("Access-Control-Request-Headers"), ",") {
		if !slices.Contains(allowed, want) {
			t.Errorf("preflight = %d, Access-Control-Allow-Headers %q; it lacks %s", rec.Code, rec.Header().Get("Access-Control-Allow-Headers"), want)
		}
	}
	tok := p.token(t, map[string]any{"scp": "Heroes.Create"})
	var got []*httptest.ResponseRecorder
	for range 2 {
		r := httptest.NewRequest("POST", "/api/heroes/", strings.NewReader(validHeroJSON("Cors")))
		r.Header.Set("Origin", origin)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", `"cors-1"`)
		bearer(r, tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		got = append(got, rec)
	}
	if got[0].Code != http.StatusCreated || got[1].Code != http.StatusCreated || got[1].Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("two creates with one key = %d, %d (Idempotent-Replayed %q); want 201, 201 (true)",
			got[0].Code, got[1].Code, got[1].Header().Get("Idempotent-Replayed"))
	}
	exposed := strings.Split(got[1].Header().Get("Access-Control-Expose-Headers"), ", ")
	for _, want := range []string{"Idempotent-Replayed", "Location", "ETag", "WWW-Authenticate", "Retry-After", "X-Request-Id"} {
		if !slices.Contains(exposed, want) {
			t.Errorf("Access-Control-Expose-Headers = %q; it lacks %s", got[1].Header().Get("Access-Control-Expose-Headers"), want)
		}
	}
}

// TestCORSPreflightBeforeRouting: a listed origin's preflight is answered
// for any route, the sign-in's and the OpenAPI document's too, and never
// reaches a handler.
func TestCORSPreflightBeforeRouting(t *testing.T) {
	t.Parallel()
	reached := false
	h := allowCORS([]string{"https://app.example.com"}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	for _, path := range []string{"/openapi.json", "/api/heroes/x", "/auth/refresh"} {
		r := httptest.NewRequest("OPTIONS", path, nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusNoContent || reached {
			t.Errorf("preflight of %s = %d, handler reached %v; want 204 and not reached", path, rec.Code, reached)
		}
	}
}

// TestOriginSettings: parseOrigin (CORS_ALLOWED_ORIGINS) gives origins as
// browsers send them and refuses anything else; assetsBase
// (DOCS_ASSETS_URL) gives the folder the /docs CSP names the files in, and
// refuses plain http off loopback, URLs with more than a path, and paths
// with characters that could change the policy.
func TestOriginSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		parse    func(string) (string, error)
		in, want string // want "" means an error
	}{
		{parseOrigin, "https://app.example.com", "https://app.example.com"},
		{parseOrigin, "HTTPS://App.Example.COM", "https://app.example.com"},
		{parseOrigin, "https://app.example.com:443", "https://app.example.com"},
		{parseOrigin, "http://localhost:80", "http://localhost"},
		{parseOrigin, "http://localhost:3000", "http://localhost:3000"},
		{parseOrigin, "https://app.example.com:8443", "https://app.example.com:8443"},
		{parseOrigin, "http://127.0.0.1:5173", "http://127.0.0.1:5173"},
		{parseOrigin, "http://[::1]:8080", "http://[::1]:8080"},
		{parseOrigin, "*", ""},
		{parseOrigin, "https://app.example.com/", ""},
		{parseOrigin, "https://app.example.com/path", ""},
		{parseOrigin, "https://app.example.com?x=1", ""},
		{parseOrigin, "https://app.example.com#top", ""},
		{parseOrigin, "https://user@app.example.com", ""},
		{parseOrigin, "app.example.com", ""},
		{parseOrigin, "ftp://app.example.com", ""},
		{parseOrigin, "https://", ""},
		{parseOrigin, "https://app.example.com:", ""},
		{parseOrigin, "https://app;example.com", ""},
		{parseOrigin, "null", ""},
		{assetsBase, docsDefaultAssetsURL, docsDefaultAssetsURL},
		{assetsBase, "https://Assets.Example.COM/swagger-ui-dist@5.35.0/", "https://assets.example.com/swagger-ui-dist@5.35.0"},
		{assetsBase, "http://localhost:8080/swagger", "http://localhost:8080/swagger"},
		{assetsBase, "http://127.0.0.1:9000", "http://127.0.0.1:9000"},
		{assetsBase, "https://assets.example.com/a%20b/x+y~z", "https://assets.example.com/a%20b/x+y~z"},
		{assetsBase, "http://assets.example.com/swagger", ""}, // plain http off loopback
		{assetsBase, "https://assets.example.com/x?v=1", ""},
		{assetsBase, "https://assets.example.com/x#f", ""},
		{assetsBase, "https://u:p@assets.example.com/x", ""},
		{assetsBase, "https://assets;example.com/x", ""},
		{assetsBase, "https://assets.example.com/x;report-uri", ""}, // would add a CSP directive
		{assetsBase, "https://assets.example.com/x,y", ""},
		{assetsBase, "https://assets.example.com/x'y", ""},
		{assetsBase, "https://assets.example.com/a b", "https://assets.example.com/a%20b"}, // as the browser asks for it
		{assetsBase, "/swagger", ""},
		{originOfOrError, "https://login.microsoftonline.com/tenant/oauth2/v2.0/token", "https://login.microsoftonline.com"},
		{originOfOrError, "http://localhost:8000/devidp/x/token", "http://localhost:8000"},
		{originOfOrError, "https://x;report-uri/token", ""}, // would add a CSP directive
		{originOfOrError, "javascript:alert(1)", ""},
	}
	for _, tc := range tests {
		got, err := tc.parse(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("%q = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// originOfOrError is originOf with an error for "".
func originOfOrError(s string) (string, error) {
	if o := originOf(s); o != "" {
		return o, nil
	}
	return "", errors.New("no origin")
}
