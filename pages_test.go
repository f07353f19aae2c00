package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCallbackHTMLPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	w := h.signIn(t, "?return_to=/api/heroes/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("callback = %d %q; want 200 text/html", w.Code, w.Header().Get("Content-Type"))
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store", cc)
	}
	body := w.Body.String()
	for _, want := range []string{
		"Ada &lt;b&gt;Lovelace&lt;/b&gt;", // the name, HTML-escaped
		"ada@example.com",
		"Heroes.Read",
		"3599 seconds",
		"curl -H &#39;Authorization: Bearer ey",
		"http://localhost:8000/api/heroes/",
		`href="/api/heroes/"`,
		// The refresh token, so a browser user can follow the refresh
		// recipe (the page is no-store).
		"Refresh token",
		"curl -X POST --data-urlencode &#39;refresh_token=refresh-",
		"http://localhost:8000/auth/refresh",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	for _, bad := range []string{"<b>Lovelace", "<script", "src=\"http", "href=\"http"} {
		if strings.Contains(body, bad) {
			t.Errorf("page holds %q; want escaped values and no external assets", bad)
		}
	}
}

// TestCallbackHTMLPageShowsTheRefreshToken: the very refresh token issued
// is on the page, once in the curl command and once on its own.
func TestCallbackHTMLPageShowsTheRefreshToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	w := h.signIn(t, "", "text/html")
	if w.Code != http.StatusOK {
		t.Fatalf("callback = %d; want 200", w.Code)
	}
	h.ti.mu.Lock()
	var rt string
	for rtok := range h.ti.refreshTokens {
		rt = rtok
	}
	h.ti.mu.Unlock()
	if rt == "" || strings.Count(w.Body.String(), rt) != 2 {
		t.Errorf("page shows the refresh token %q %d times; want 2 (curl command and token):\n%s", rt, strings.Count(w.Body.String(), rt), w.Body)
	}
}

func TestIndexPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	w := h.do(httptest.NewRequest("GET", "/", nil))
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q; want 200 text/html", w.Code, w.Header().Get("Content-Type"))
	}
	for _, want := range []string{`href="/auth/login"`, `href="/docs"`, `href="/openapi.json"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("index lacks %s", want)
		}
	}
	// A plain link to the API can only answer 401 in a browser.
	if strings.Contains(w.Body.String(), `href="/api/`) {
		t.Errorf("index links to the API, which a browser can only get a 401 from:\n%s", w.Body)
	}
	if strings.Contains(w.Body.String(), "src=") || strings.Contains(w.Body.String(), `href="http`) {
		t.Errorf("index loads external assets")
	}
}

func TestPrefersHTML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, accept string
		want         bool
	}{
		{"browser navigation", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true},
		{"curl's */* is JSON", "*/*", false},
		{"no header is JSON", "", false},
		{"JSON asked", "application/json", false},
		{"JSON preferred by q", "text/html;q=0.5, application/json", false},
		{"HTML preferred by q", "text/html, application/json;q=0.9", true},
		{"text/* counts for HTML", "text/*", true},
		{"HTML refused with q=0", "text/html;q=0, */*", false},
		{"bad q ignored", "text/html;q=NaN, application/json;q=0.1", false},
		{"garbage", ";;;,,,", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := prefersHTML(tc.accept); got != tc.want {
				t.Errorf("prefersHTML(%q) = %v; want %v", tc.accept, got, tc.want)
			}
		})
	}
}

// FuzzPrefersHTML: no panic on any Accept header.
func FuzzPrefersHTML(f *testing.F) {
	f.Add("text/html,application/xhtml+xml,*/*;q=0.8")
	f.Add("application/json;q=0.1, text/*;q=NaN")
	f.Fuzz(func(t *testing.T, accept string) { prefersHTML(accept) })
}
