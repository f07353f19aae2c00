package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// inlineScript returns the text of the page's one <script> without src.
func inlineScript(tb testing.TB, page string) string {
	tb.Helper()
	m := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(page, -1)
	if len(m) != 1 {
		tb.Fatalf("page has %d inline scripts; want 1:\n%s", len(m), page)
	}
	return m[0][1]
}

// cspDirectives splits a Content-Security-Policy into its directives.
func cspDirectives(csp string) map[string]string {
	d := map[string]string{}
	for part := range strings.SplitSeq(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), " ")
		d[name] = value
	}
	return d
}

// getOnServiceHost serves GET path as a browser on localhost:8000 (the
// tests' REDIRECT_URI host) would send it.
func getOnServiceHost(h http.Handler, path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", path, nil)
	r.Host = "localhost:8000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// TestDocsPage: /docs is Swagger UI for the service's document, its assets
// from the pinned CDN URLs (or DOCS_ASSETS_URL) with SRI hashes, signing in
// as OPENAPI_CLIENT_ID with PKCE and returning to the redirect URI made from
// REDIRECT_URI; its own CSP allows scripts and styles from exactly the
// exact URLs of the two files plus its inline script (never a whole origin
// such as https://cdn.jsdelivr.net), fetches to the service and the token
// endpoint; until Swagger UI loads, #swagger-ui says it could not and points
// to /openapi.json; and it sends no Cross-Origin-Opener-Policy.
func TestDocsPage(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	const otherClient = "33333333-4444-4555-8666-777777777777"
	tests := []struct {
		name     string
		env      map[string]string
		assets   string
		clientID string
	}{
		{"defaults", nil, "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0", testClientID},
		{"own assets and client", map[string]string{"DOCS_ASSETS_URL": "http://127.0.0.1:9000/swagger/", "OPENAPI_CLIENT_ID": otherClient},
			"http://127.0.0.1:9000/swagger", otherClient},
		{"host lower-cased", map[string]string{"DOCS_ASSETS_URL": "https://Assets.Example.com/ui"}, "https://assets.example.com/ui", testClientID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := getOnServiceHost(newTestServer(t, p, tc.env, io.Discard), "/docs")
			page := rec.Body.String()
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
				t.Fatalf("GET /docs = %d %q; want 200 text/html; charset=utf-8", rec.Code, rec.Header().Get("Content-Type"))
			}
			for _, want := range []string{
				`<meta charset="utf-8">`,
				`<script src="` + tc.assets + `/swagger-ui-bundle.js" charset="UTF-8" integrity="` + docsBundleIntegrity + `" crossorigin="anonymous">`,
				`<link rel="stylesheet" href="` + tc.assets + `/swagger-ui.css" integrity="` + docsCSSIntegrity + `" crossorigin="anonymous">`,
				`"url":"http://localhost:8000/openapi.json"`,
				`"oauth2RedirectUrl":"http://localhost:8000/docs/oauth2-redirect"`,
				`"clientId":"` + tc.clientID + `"`,
				`"usePkceWithAuthorizationCodeGrant":true`,
				`<div id="swagger-ui"><p>Loading Swagger UI… If this text stays, Swagger UI could not be loaded from its CDN`,
				`<a href="http://localhost:8000/openapi.json">http://localhost:8000/openapi.json</a>`,
				`Serving Swagger UI&rsquo;s files yourself&rdquo; of the service&rsquo;s README.md (DOCS_ASSETS_URL)`,
				`if (typeof SwaggerUIBundle === "function") {`,
				`"scopes":["api://` + testClientID + `/Heroes.Read"]`,
			} {
				if !strings.Contains(page, want) {
					t.Errorf("/docs lacks %s:\n%s", want, page)
				}
			}
			if strings.Contains(page, "clientSecret") || strings.Contains(page, testSecret) {
				t.Errorf("/docs holds a client secret")
			}
			csp := cspDirectives(rec.Header().Get("Content-Security-Policy"))
			for name, want := range map[string]string{
				"default-src":     "'none'",
				"script-src":      tc.assets + "/swagger-ui-bundle.js " + sha256Source(inlineScript(t, page)),
				"style-src":       tc.assets + "/swagger-ui.css",
				"img-src":         "'self' data:",
				"connect-src":     "'self' http://localhost:8000 " + originOf(p.srv.URL),
				"frame-ancestors": "'none'",
				"base-uri":        "'none'",
			} {
				if got := csp[name]; got != want {
					t.Errorf("CSP %s = %q; want %q", name, got, want)
				}
			}
			if coop := rec.Header().Get("Cross-Origin-Opener-Policy"); coop != "" {
				t.Errorf("Cross-Origin-Opener-Policy = %q; the sign-in pop-up needs its opener", coop)
			}
		})
	}
}

// TestDocsRedirectPage: the pop-up's last page is served by the service,
// runs only its own inline script (CSP hash), loads nothing, and is never
// stored (its URL holds a code).
func TestDocsRedirectPage(t *testing.T) {
	t.Parallel()
	rec := getOnServiceHost(newTestServer(t, newTestIDP(t), nil, io.Discard), "/docs/oauth2-redirect?code=c&state=s")
	page := rec.Body.String()
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /docs/oauth2-redirect = %d, Cache-Control %q; want 200 no-store", rec.Code, rec.Header().Get("Cache-Control"))
	}
	want := "default-src 'none'; script-src " + sha256Source(inlineScript(t, page)) + "; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
	if got := rec.Header().Get("Content-Security-Policy"); got != want {
		t.Errorf("CSP = %q; want %q", got, want)
	}
	for _, bad := range []string{"src=", "href=", "innerHTML", "document.write"} {
		if strings.Contains(page, bad) {
			t.Errorf("the redirect page holds %q", bad)
		}
	}
	for _, want := range []string{"swaggerUIRedirectOauth2", "handoff.state", "window.close()"} {
		if !strings.Contains(page, want) {
			t.Errorf("the redirect page lacks %q", want)
		}
	}
}

// TestOtherPagesKeepTheServiceCSP: only the two /docs pages have their own
// Content-Security-Policy.
func TestOtherPagesKeepTheServiceCSP(t *testing.T) {
	t.Parallel()
	h := newTestServer(t, newTestIDP(t), nil, io.Discard)
	for _, path := range []string{"/", "/openapi.json", "/docs/", "/docs/oauth2-redirect.js", "/auth/login"} {
		if got := getOnServiceHost(h, path).Header().Get("Content-Security-Policy"); got != contentSecurityPolicy {
			t.Errorf("GET %s: CSP = %q; want the service's %q", path, got, contentSecurityPolicy)
		}
	}
}
