package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flowHarness is an authFlow wired to a test IdP, with its routes on a mux
// and its logs captured.
type flowHarness struct {
	idp  *testIDP
	ti   *tokenIssuer
	cfg  config
	af   *authFlow
	mux  *http.ServeMux
	logs *syncBuffer
}

// harnessOptions tune newHarness.
type harnessOptions struct {
	env      map[string]string // extra settings
	client   *http.Client      // nil: a client with idpTimeout
	metadata metadataSource    // nil: the IdP's discovery document
}

// newHarness builds a flowHarness on the real provider, key set and verifier
// (so ID and access tokens are checked as in production).
func newHarness(tb testing.TB, opts harnessOptions) *flowHarness {
	tb.Helper()
	h := &flowHarness{idp: newTestIDP(tb), logs: &syncBuffer{}}
	h.ti = newTokenIssuer(tb, h.idp)
	h.cfg = h.idp.config(tb, opts.env)
	client := opts.client
	if client == nil {
		client = &http.Client{Timeout: idpTimeout}
	}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	prov := newProvider(h.cfg.verifyOptions(client, logger))
	v := newVerifier(h.cfg.verifyOptions(client, logger), prov, newKeySet(h.cfg.verifyOptions(client, logger), prov))
	var md metadataSource = prov
	if opts.metadata != nil {
		md = opts.metadata
	}
	af, err := newAuthFlow(h.cfg.loginOptions(), md, v, client, logger)
	if err != nil {
		tb.Fatalf("newAuthFlow: %v", err)
	}
	h.af = af
	h.mux = http.NewServeMux()
	h.mux.Handle("GET /{$}", handleIndex(h.cfg.Dev, h.cfg.APIScopes))
	h.mux.Handle("GET /auth/login", af.handleLogin())
	h.mux.Handle("GET /auth/callback", af.handleCallback(nil))
	h.mux.Handle("POST /auth/refresh", af.handleRefresh())
	h.mux.Handle("GET /auth/logout", af.handleLogout())
	return h
}

// do serves r and returns the recorded answer.
func (h *flowHarness) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.mux.ServeHTTP(w, r)
	return w
}

// login starts a login with query q and returns the login cookie and the
// authorization URL, failing unless the answer is a 302 with one new cookie.
func (h *flowHarness) login(tb testing.TB, q string, cookies ...*http.Cookie) (*http.Cookie, string) {
	tb.Helper()
	r := httptest.NewRequest("GET", "/auth/login"+q, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := h.do(r)
	if w.Code != http.StatusFound {
		tb.Fatalf("GET /auth/login%s = %d %s; want 302", q, w.Code, w.Body)
	}
	var set *http.Cookie
	for _, c := range w.Result().Cookies() {
		if strings.HasPrefix(c.Name, loginCookiePrefix) && c.MaxAge > 0 {
			set = c
		}
	}
	if set == nil {
		tb.Fatalf("GET /auth/login set no login cookie")
	}
	return set, w.Header().Get("Location")
}

// callback sends the browser back to /auth/callback with query and cookies.
func (h *flowHarness) callback(query url.Values, accept string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/auth/callback?"+query.Encode(), nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return h.do(r)
}

// signIn walks login → authorize → callback and returns the callback answer.
func (h *flowHarness) signIn(tb testing.TB, loginQuery, accept string) *httptest.ResponseRecorder {
	tb.Helper()
	cookie, authURL := h.login(tb, loginQuery)
	code, state := h.ti.authorize(authURL)
	return h.callback(url.Values{"code": {code}, "state": {state}}, accept, cookie)
}

// decodeAnswer decodes a JSON answer into a map.
func decodeAnswer(tb testing.TB, w *httptest.ResponseRecorder) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		tb.Fatalf("answer %d is not JSON: %v: %s", w.Code, err, w.Body)
	}
	return m
}

func TestLoginRedirectsToAuthorizeEndpoint(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	cookie, loc := h.login(t, "?prompt=select_account&login_hint=ada%40example.com&domain_hint=contoso.com")
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	md := idpMetadata(h.idp)
	if got := u.Scheme + "://" + u.Host + u.Path; got != md.AuthorizationEndpoint {
		t.Errorf("redirect to %q; want the discovery document's %q", got, md.AuthorizationEndpoint)
	}
	q := u.Query()
	want := map[string]string{
		"client_id":             testClientID,
		"response_type":         "code",
		"redirect_uri":          h.cfg.RedirectURI,
		"response_mode":         "query",
		"scope":                 "openid profile offline_access api://" + testClientID + "/Heroes.Read",
		"code_challenge_method": "S256",
		"prompt":                "select_account",
		"login_hint":            "ada@example.com",
		"domain_hint":           "contoso.com",
	}
	for k, v := range want {
		if got := q.Get(k); got != v {
			t.Errorf("authorize %s = %q; want %q", k, got, v)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 22 {
			t.Errorf("authorize %s = %q; want at least 128 bits of randomness", k, q.Get(k))
		}
	}
	if cookie.Name != loginCookieName(q.Get("state")) {
		t.Errorf("cookie name %q; want one per state, %q", cookie.Name, loginCookieName(q.Get("state")))
	}
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/auth" || cookie.MaxAge != 600 || cookie.Secure {
		t.Errorf("cookie = %+v; want HttpOnly, SameSite=Lax, Path=/auth, Max-Age=600, not Secure on http", cookie)
	}
	for _, secret := range []string{q.Get("state"), q.Get("nonce")} {
		if strings.Contains(cookie.Value, secret) {
			t.Errorf("cookie value holds %q in clear; want it sealed", secret)
		}
	}
}

func TestLoginDropsMalformedPassThroughParameters(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	long := strings.Repeat("a", maxHintLen+1)
	_, loc := h.login(t, "?prompt=evil&login_hint="+long+"&domain_hint=a%0Db")
	q, _ := url.ParseQuery(loc[strings.Index(loc, "?")+1:])
	for _, k := range []string{"prompt", "login_hint", "domain_hint"} {
		if q.Has(k) {
			t.Errorf("authorize URL has %s=%q; want malformed values dropped", k, q.Get(k))
		}
	}
}

func TestLoginCookieIsSecureWithHTTPSRedirectURI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{env: map[string]string{"REDIRECT_URI": "https://heroes.example.com/auth/callback"}})
	cookie, _ := h.login(t, "")
	if !cookie.Secure {
		t.Errorf("cookie Secure = false with an https REDIRECT_URI; want true")
	}
}

func TestLoginAnswers503WhenProviderUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{metadata: fakeMetadata{err: fmt.Errorf("jwks: fetch: %w", errIDPUnavailable)}})
	for _, path := range []string{"/auth/login", "/auth/logout"} {
		w := h.do(httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("GET %s with the provider down = %d; want 503", path, w.Code)
		}
	}
}

func TestSafeReturnTo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"local path kept", "/api/heroes/?x=1", "/api/heroes/?x=1"},
		{"root kept", "/", "/"},
		{"empty is root", "", "/"},
		{"absolute URL refused", "https://evil.example/", "/"},
		{"scheme-relative refused", "//evil.example/x", "/"},
		{"backslash refused", "/\\evil.example", "/"},
		{"backslash after slash refused", "\\/evil.example", "/"},
		{"javascript refused", "javascript:alert(1)", "/"},
		{"relative path refused", "api/heroes", "/"},
		{"tab trick refused", "/\t/evil.example", "/"},
		{"newline refused", "/x\r\nLocation: //evil", "/"},
		{"encoded slash prefix refused", "/%2F/evil.example", "/"},
		{"encoded backslash refused", "/%5Cevil.example", "/"},
		{"too long refused", "/" + strings.Repeat("a", maxReturnToLen), "/"},
		// Browsers remove dot segments (RFC 3986 §5.2.4): each of these
		// becomes //evil.example, a scheme-relative URL to another host.
		{"dot-dot segment before a double slash refused", "/..//evil.example", "/"},
		{"dot segment before a double slash refused", "/.//evil.example", "/"},
		{"climbing out of a segment refused", "/a/../..//evil.example", "/"},
		{"encoded dot-dot refused", "/%2e%2e//evil.example", "/"},
		{"half-encoded dot-dot refused", "/.%2E//evil.example", "/"},
		{"trailing dot-dot refused", "/api/..", "/"},
		{"dots inside a name kept", "/api/heroes/..x/.y/a.b", "/api/heroes/..x/.y/a.b"},
		{"dot-dot in the query kept", "/api/heroes/?q=/../x", "/api/heroes/?q=/../x"},
		{"invalid UTF-8 refused", "/\xff", "/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := safeReturnTo(tc.in); got != tc.want {
				t.Errorf("safeReturnTo(%q) = %q; want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestOpenRedirectAttemptsEndAtRoot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.af.p = fakeMetadata{md: providerMetadata{AuthorizationEndpoint: idpMetadata(h.idp).AuthorizationEndpoint, TokenEndpoint: idpMetadata(h.idp).TokenEndpoint}}
	for _, rt := range []string{"https://evil.example/", "//evil.example", "/\\evil.example", "/%2F/evil.example"} {
		// Through logout (no end_session_endpoint): the redirect stays local.
		w := h.do(httptest.NewRequest("GET", "/auth/logout?return_to="+url.QueryEscape(rt), nil))
		if loc := w.Header().Get("Location"); w.Code != http.StatusFound || loc != "/" {
			t.Errorf("GET /auth/logout?return_to=%q = %d Location %q; want 302 to /", rt, w.Code, loc)
		}
		// Through login → callback: the answer names no return_to.
		got := decodeAnswer(t, h.signIn(t, "?return_to="+url.QueryEscape(rt), ""))
		if _, ok := got["return_to"]; ok {
			t.Errorf("login with return_to=%q answered return_to %v; want none", rt, got["return_to"])
		}
	}
}

func TestCallbackAnswersVerifiedTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	w := h.signIn(t, "?return_to=/api/heroes/", "")
	if w.Code != http.StatusOK {
		t.Fatalf("callback = %d %s; want 200", w.Code, w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store", cc)
	}
	if rp := w.Header().Get("Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("Referrer-Policy = %q; want no-referrer (the URL holds the code)", rp)
	}
	got := decodeAnswer(t, w)
	if got["token_type"] != "Bearer" || got["access_token"] == "" || got["refresh_token"] == "" {
		t.Errorf("answer = %v; want token_type Bearer, an access_token and a refresh_token", got)
	}
	if got["expires_in"] != 3599.0 {
		t.Errorf("expires_in = %v; want 3599 (sent as the string \"3599\")", got["expires_in"])
	}
	if got["scope"] != "api://"+testClientID+"/Heroes.Read" {
		t.Errorf("scope = %v", got["scope"])
	}
	if got["return_to"] != "/api/heroes/" {
		t.Errorf("return_to = %v; want /api/heroes/ named in the answer, not redirected to", got["return_to"])
	}
	idc, _ := got["id_token_claims"].(map[string]any)
	if idc["preferred_username"] != "ada@example.com" {
		t.Errorf("id_token_claims = %v; want preferred_username ada@example.com", idc)
	}
	cleared := false
	for _, c := range w.Result().Cookies() {
		cleared = cleared || (strings.HasPrefix(c.Name, loginCookiePrefix) && c.MaxAge < 0)
	}
	if !cleared {
		t.Errorf("callback did not delete the login cookie")
	}
}

func TestTwoTabsBothComplete(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	c1, url1 := h.login(t, "?return_to=/one")
	c2, url2 := h.login(t, "?return_to=/two", c1)
	if c1.Name == c2.Name {
		t.Fatalf("both logins use cookie %q; want one per state", c1.Name)
	}
	code1, state1 := h.ti.authorize(url1)
	code2, state2 := h.ti.authorize(url2)
	// The second tab finishes first; the browser sends both cookies each time.
	for _, tc := range []struct{ code, state, want string }{{code2, state2, "/two"}, {code1, state1, "/one"}} {
		w := h.callback(url.Values{"code": {tc.code}, "state": {tc.state}}, "", c1, c2)
		if w.Code != http.StatusOK {
			t.Fatalf("callback of tab %s = %d %s; want 200", tc.want, w.Code, w.Body)
		}
		if got := decodeAnswer(t, w)["return_to"]; got != tc.want {
			t.Errorf("tab %s got return_to %v", tc.want, got)
		}
	}
}

func TestCallbackRejectsBadState(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		name  string
		setup func(t *testing.T) (url.Values, []*http.Cookie)
	}{
		{"missing code", func(t *testing.T) (url.Values, []*http.Cookie) {
			c, u := h.login(t, "")
			_, state := h.ti.authorize(u)
			return url.Values{"state": {state}}, []*http.Cookie{c}
		}},
		{"missing state", func(t *testing.T) (url.Values, []*http.Cookie) {
			c, u := h.login(t, "")
			code, _ := h.ti.authorize(u)
			return url.Values{"code": {code}}, []*http.Cookie{c}
		}},
		{"unknown state", func(t *testing.T) (url.Values, []*http.Cookie) {
			c, u := h.login(t, "")
			code, _ := h.ti.authorize(u)
			return url.Values{"code": {code}, "state": {"forged-state"}}, []*http.Cookie{c}
		}},
		{"no cookie", func(t *testing.T) (url.Values, []*http.Cookie) {
			_, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			return url.Values{"code": {code}, "state": {state}}, nil
		}},
		{"tampered cookie", func(t *testing.T) (url.Values, []*http.Cookie) {
			c, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			b := []byte(c.Value)
			b[len(b)/2] ^= 1
			return url.Values{"code": {code}, "state": {state}}, []*http.Cookie{{Name: c.Name, Value: string(b)}}
		}},
		{"cookie of another login under this state's name", func(t *testing.T) (url.Values, []*http.Cookie) {
			c1, _ := h.login(t, "")
			c2, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			return url.Values{"code": {code}, "state": {state}}, []*http.Cookie{{Name: c2.Name, Value: c1.Value}}
		}},
		{"code twice", func(t *testing.T) (url.Values, []*http.Cookie) {
			c, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			return url.Values{"code": {code, "other"}, "state": {state}}, []*http.Cookie{c}
		}},
		{"state too long", func(t *testing.T) (url.Values, []*http.Cookie) {
			c, u := h.login(t, "")
			code, _ := h.ti.authorize(u)
			return url.Values{"code": {code}, "state": {strings.Repeat("A", maxStateLen+1)}}, []*http.Cookie{c}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, cookies := tc.setup(t)
			w := h.callback(q, "", cookies...)
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "start again at /auth/login") {
				t.Errorf("callback = %d %s; want 400 telling to start again at /auth/login", w.Code, w.Body)
			}
		})
	}
}

func TestCallbackRejectsExpiredLogin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	c, u := h.login(t, "")
	code, state := h.ti.authorize(u)
	h.af.now = func() time.Time { return time.Now().Add(loginTTL + time.Second) }
	w := h.callback(url.Values{"code": {code}, "state": {state}}, "", c)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "/auth/login") {
		t.Errorf("callback after %v = %d %s; want 400 start again", loginTTL, w.Code, w.Body)
	}
}

func TestCallbackReplayIsRejected(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	c, u := h.login(t, "")
	code, state := h.ti.authorize(u)
	q := url.Values{"code": {code}, "state": {state}}
	if w := h.callback(q, "", c); w.Code != http.StatusOK {
		t.Fatalf("first callback = %d %s; want 200", w.Code, w.Body)
	}
	// A browser honours the deletion; a replaying client may not. Either
	// way the state is spent (RFC 9700 §2.1): 400 before any token request,
	// even with the old cookie and a fresh code the provider would accept.
	calls := countTokenCalls(h)
	fresh, _ := h.ti.authorize(u)
	// Each says why: the sign-in has finished and its tokens are shown once
	// (a browser reloading the signed-in page meets the first case).
	for _, tc := range []struct {
		name    string
		q       url.Values
		cookies []*http.Cookie
	}{
		{"same code without the cookie (a reload)", q, nil},
		{"same code with the old cookie", q, []*http.Cookie{c}},
		{"fresh code with the old cookie", url.Values{"code": {fresh}, "state": {state}}, []*http.Cookie{c}},
	} {
		for _, accept := range []string{"", "text/html"} {
			w := h.callback(tc.q, accept, tc.cookies...)
			body := w.Body.String()
			if w.Code != http.StatusBadRequest || !strings.Contains(body, "start again at /auth/login") ||
				!strings.Contains(body, "this sign-in has finished") || !strings.Contains(body, "tokens are shown once") {
				t.Errorf("replayed callback, %s (Accept %q) = %d %s; want 400 saying it has finished, start again", tc.name, accept, w.Code, body)
			}
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("replayed callbacks reached the token endpoint %d times; want 0", n)
	}
}

// countTokenCalls wraps h's token endpoint so that the returned counter
// counts the requests it gets from now on.
func countTokenCalls(h *flowHarness) *atomic.Int64 {
	var n atomic.Int64
	h.idp.mu.Lock()
	defer h.idp.mu.Unlock()
	next := h.idp.tokenHandler
	h.idp.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		next(w, r)
	}
	return &n
}

func TestCallbackStateIsSpentOnceUnderConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	c, u := h.login(t, "")
	_, state := h.ti.authorize(u)
	const n = 8
	codes := make([]string, n)
	for i := range codes {
		codes[i], _ = h.ti.authorize(u)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, code := range codes {
		wg.Go(func() {
			if w := h.callback(url.Values{"code": {code}, "state": {state}}, "", c); w.Code == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if got := ok.Load(); got != 1 {
		t.Errorf("%d concurrent callbacks with one state and fresh codes: %d succeeded; want exactly 1", n, got)
	}
}

func TestCallbackIdPErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	tests := []struct {
		name, err, desc, accept string
		wantStatus              int
		wantIn                  []string
	}{
		{"access_denied is 403", "access_denied", "AADSTS65004: User declined to consent", "", 403, []string{"access_denied", "AADSTS65004", "/auth/login"}},
		{"consent_required is 400", "consent_required", "AADSTS65001: consent", "", 400, []string{"consent_required", "AADSTS65001"}},
		{"login_required is 400", "login_required", "", "", 400, []string{"login_required"}},
		{"HTML page escapes the description", "invalid_request", "<script>alert(1)</script>", "text/html", 400, []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "invalid_request"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, u := h.login(t, "")
			_, state := h.ti.authorize(u)
			w := h.callback(url.Values{"error": {tc.err}, "error_description": {tc.desc}, "state": {state}}, tc.accept, c)
			if w.Code != tc.wantStatus {
				t.Errorf("callback error=%s = %d; want %d", tc.err, w.Code, tc.wantStatus)
			}
			for _, want := range tc.wantIn {
				if !strings.Contains(w.Body.String(), want) {
					t.Errorf("answer lacks %q: %s", want, w.Body)
				}
			}
			if strings.Contains(w.Body.String(), "<script>") {
				t.Errorf("answer echoes markup unescaped: %s", w.Body)
			}
			deleted := false
			for _, sc := range w.Result().Cookies() {
				deleted = deleted || (sc.Name == c.Name && sc.MaxAge < 0)
			}
			if !deleted {
				t.Errorf("callback error did not delete the login cookie %s", c.Name)
			}
		})
	}
}

// TestCallbackErrorParametersAreNotAMegaphone: anyone can send a browser to
// /auth/callback?error=…&error_description=…, so the page shows the
// description only for a login this browser started, and only text in
// RFC 6749's NQSCHAR set; an error code outside that set is not echoed.
func TestCallbackErrorParametersAreNotAMegaphone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	const scam = "Your account is locked. Call +1 555 0100 now"
	rlo := "AADSTS50058: please sign in \u202egnp.exe"
	tests := []struct {
		name        string
		ownLogin    bool   // the browser holds the live login cookie of state
		state       string // "" with ownLogin: the login's own state
		err, desc   string
		accept      string
		wantStatus  int
		wantIn      []string
		wantOut     []string
		wantDeleted bool
	}{
		{"own login shows an RFC-charset description", true, "", "access_denied", "AADSTS65004: User declined to consent", "", 403,
			[]string{"access_denied", "AADSTS65004: User declined to consent", restartLogin}, nil, true},
		{"Entra's CR LF in an own login's description read as spaces", true, "", "consent_required", "AADSTS65001: consent\r\nTrace ID: 1", "", 400,
			[]string{"AADSTS65001: consent  Trace ID: 1"}, nil, true},
		{"a long own description is shown cut", true, "", "access_denied", "AADSTS65004: " + strings.Repeat("a", 400), "", 403,
			[]string{"AADSTS65004: aaaa", "a…"}, []string{strings.Repeat("a", maxShownIdPText)}, true},
		{"crafted link without a login cookie shows no description", false, "made-up-state", "access_denied", scam, "text/html", 403,
			[]string{"access_denied", restartLogin}, []string{"Call +1 555", "locked"}, false},
		{"crafted link without state shows no description", false, "", "server_error", scam, "", 400,
			[]string{"server_error"}, []string{"Call +1 555"}, false},
		{"another login's state shows no description", true, "other-state", "access_denied", scam, "", 403,
			nil, []string{"Call +1 555"}, false},
		{"right-to-left override is not shown, even for an own login", true, "", "access_denied", rlo, "text/html", 403,
			[]string{"access_denied", "AADSTS50058"}, []string{"\u202e", "gnp.exe", "please sign in"}, true},
		{"a description with a double quote is not shown", true, "", "access_denied", `say "hello"`, "", 403,
			nil, []string{"hello"}, true},
		{"an error code outside the charset becomes invalid_request", true, "", "access_denied\u202e" + scam, "", "", 400,
			[]string{`"error":"invalid_request"`}, []string{"Call +1 555", "\u202e"}, true},
		{"an over-long error code becomes invalid_request", false, "x", strings.Repeat("e", maxIdPErrorCode+1), "", "", 400,
			[]string{`"error":"invalid_request"`}, []string{strings.Repeat("e", maxIdPErrorCode+1)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var cookies []*http.Cookie
			state := tc.state
			if tc.ownLogin {
				c, u := h.login(t, "")
				_, own := h.ti.authorize(u)
				cookies = append(cookies, c)
				if state == "" {
					state = own
				}
			}
			q := url.Values{"error": {tc.err}, "error_description": {tc.desc}}
			if state != "" {
				q.Set("state", state)
			}
			w := h.callback(q, tc.accept, cookies...)
			if w.Code != tc.wantStatus {
				t.Errorf("callback error=%.20q = %d; want %d", tc.err, w.Code, tc.wantStatus)
			}
			body := w.Body.String()
			for _, want := range tc.wantIn {
				if !strings.Contains(body, want) {
					t.Errorf("answer lacks %q: %s", want, body)
				}
			}
			for _, bad := range tc.wantOut {
				if strings.Contains(body, bad) {
					t.Errorf("answer shows %q: %s", bad, body)
				}
			}
			deleted := false
			for _, sc := range w.Result().Cookies() {
				deleted = deleted || (len(cookies) > 0 && sc.Name == cookies[0].Name && sc.MaxAge < 0)
			}
			if deleted != tc.wantDeleted {
				t.Errorf("login cookie deleted = %v; want %v", deleted, tc.wantDeleted)
			}
		})
	}
}

func TestCallbackRejectsTokensThatFailVerification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                   string
		idOverride, atOverride map[string]any
		forgeID                bool
	}{
		{"ID token with a bad signature", nil, nil, true},
		{"nonce mismatch", map[string]any{"nonce": "another-login"}, nil, false},
		{"ID token for another client", map[string]any{"aud": "99999999-2222-3333-4444-555555555555"}, nil, false},
		{"expired ID token", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, nil, false},
		{"ID token of another tenant", map[string]any{"tid": "00000000-1111-2222-3333-444444444444"}, nil, false},
		{"ID token from another issuer", map[string]any{"iss": "https://login.microsoftonline.com/" + testTenant + "/v2.0"}, nil, false},
		{"ID token with the v1 issuer", map[string]any{"iss": "https://sts.windows.net/" + testTenant + "/", "ver": "1.0"}, nil, false},
		{"access token for another audience", nil, map[string]any{"aud": "api://someone-else"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			h.ti.idOverride, h.ti.atOverride, h.ti.forgeID = tc.idOverride, tc.atOverride, tc.forgeID
			w := h.signIn(t, "", "")
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "failed verification") {
				t.Errorf("callback = %d %s; want 502 failed verification", w.Code, w.Body)
			}
			check := map[string]string{
				"ID token with a bad signature":     errBadSignature.Error(),
				"nonce mismatch":                    errBadNonce.Error(),
				"ID token for another client":       errBadAudience.Error(),
				"expired ID token":                  errTokenExpired.Error(),
				"ID token of another tenant":        errTenantForbidden.Error(),
				"ID token from another issuer":      errBadIssuer.Error(),
				"ID token with the v1 issuer":       errBadIssuer.Error(),
				"access token for another audience": errBadAudience.Error(),
			}[tc.name]
			if logs := h.logs.String(); !strings.Contains(logs, "failed verification") || !strings.Contains(logs, check) {
				t.Errorf("no log line names the failed check %q:\n%s", check, logs)
			}
		})
	}
}

// newRefreshRequest makes POST /auth/refresh with a body of content type ct.
func newRefreshRequest(ct, body string) *http.Request {
	r := httptest.NewRequest("POST", "/auth/refresh", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.ti.addRefreshToken("rt-known")
	big := strings.Repeat("a", maxRefreshBody+1)
	tests := []struct {
		name       string
		ct, body   string
		rotate     bool
		wantStatus int
		wantIn     []string
		wantOut    []string
	}{
		{"form body", "application/x-www-form-urlencoded", "refresh_token=rt-known", false, 200,
			[]string{`"access_token":"ey`, "no new refresh_token", "no new ID token"}, []string{`"refresh_token"`}},
		{"JSON body", "application/json; charset=utf-8", `{"refresh_token":"rt-known"}`, false, 200,
			[]string{`"access_token":"ey`, `"expires_in":3599`}, nil},
		{"rotated refresh token and new ID token", "application/json", `{"refresh_token":"rt-known"}`, true, 200,
			[]string{`"refresh_token":"refresh-`, `"id_token_claims"`}, []string{"notes"}},
		{"expired refresh token is 400 sign in again", "application/x-www-form-urlencoded", "refresh_token=rt-unknown", false, 400,
			[]string{"AADSTS700082", "sign in again at /auth/login"}, nil},
		{"missing refresh token is 400", "application/x-www-form-urlencoded", "other=1", false, 400, []string{"refresh_token is required"}, nil},
		{"unknown JSON field is 400", "application/json", `{"refresh_token":"x","extra":1}`, false, 400, nil, nil},
		{"two JSON values is 400", "application/json", `{"refresh_token":"x"}{}`, false, 400, nil, nil},
		{"other content type is 415", "text/plain", "refresh_token=rt-known", false, 415, nil, nil},
		{"no content type is 415", "", "refresh_token=rt-known", false, 415, nil, nil},
		{"oversized form is 413", "application/x-www-form-urlencoded", "refresh_token=" + big, false, 413, nil, nil},
		{"oversized JSON is 413", "application/json", `{"refresh_token":"` + big + `"}`, false, 413, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.ti.mu.Lock()
			h.ti.rotateRefresh = tc.rotate
			h.ti.mu.Unlock()
			w := h.do(newRefreshRequest(tc.ct, tc.body))
			if w.Code != tc.wantStatus {
				t.Fatalf("POST /auth/refresh = %d %s; want %d", w.Code, w.Body, tc.wantStatus)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q; want no-store", w.Header().Get("Cache-Control"))
			}
			for _, want := range tc.wantIn {
				if !strings.Contains(w.Body.String(), want) {
					t.Errorf("answer lacks %q: %s", want, w.Body)
				}
			}
			for _, bad := range tc.wantOut {
				if strings.Contains(w.Body.String(), bad) {
					t.Errorf("answer holds %q: %s", bad, w.Body)
				}
			}
		})
	}
}

func TestRefreshSendsTheRefreshGrant(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	var got url.Values
	setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got = r.PostForm
		h.ti.serveToken(w, r)
	})
	h.ti.addRefreshToken("rt-1")
	if w := h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt-1")); w.Code != 200 {
		t.Fatalf("refresh = %d %s", w.Code, w.Body)
	}
	want := map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-1", "client_id": testClientID, "client_secret": testSecret}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("token request %s = %q; want %q", k, got.Get(k), v)
		}
	}
	if !strings.Contains(got.Get("scope"), "offline_access") {
		t.Errorf("token request scope = %q; want offline_access and the API scope", got.Get("scope"))
	}
}

func TestCallbackSendsTheCodeGrant(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	var got url.Values
	var header http.Header
	setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got, header = r.PostForm, r.Header.Clone()
		h.ti.serveToken(w, r) // also checks PKCE and redirect_uri
	})
	if w := h.signIn(t, "", ""); w.Code != 200 {
		t.Fatalf("callback = %d %s", w.Code, w.Body)
	}
	for k, v := range map[string]string{"grant_type": "authorization_code", "redirect_uri": h.cfg.RedirectURI, "client_id": testClientID, "client_secret": testSecret} {
		if got.Get(k) != v {
			t.Errorf("token request %s = %q; want %q", k, got.Get(k), v)
		}
	}
	if len(got.Get("code_verifier")) < 43 {
		t.Errorf("code_verifier = %q; want 43 or more characters (RFC 7636 §4.1)", got.Get("code_verifier"))
	}
	if header.Get("Content-Type") != "application/x-www-form-urlencoded" || header.Get("Authorization") != "" {
		t.Errorf("token request headers = %v; want a form and no Authorization with client_secret_post", header)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{env: map[string]string{"POST_LOGOUT_REDIRECT_URI": "http://localhost:8000/"}})
	c1, _ := h.login(t, "")
	c2, _ := h.login(t, "", c1)
	r := httptest.NewRequest("GET", "/auth/logout?return_to=/api/heroes/", nil)
	r.AddCookie(c1)
	r.AddCookie(c2)
	w := h.do(r)
	if w.Code != http.StatusFound {
		t.Fatalf("logout = %d; want 302", w.Code)
	}
	u, _ := url.Parse(w.Header().Get("Location"))
	if got, want := u.Scheme+"://"+u.Host+u.Path, idpMetadata(h.idp).EndSessionEndpoint; got != want {
		t.Errorf("logout redirects to %q; want the end_session_endpoint %q", got, want)
	}
	if got := u.Query().Get("post_logout_redirect_uri"); got != "http://localhost:8000/" {
		t.Errorf("post_logout_redirect_uri = %q; want POST_LOGOUT_REDIRECT_URI", got)
	}
	deleted := map[string]bool{}
	for _, sc := range w.Result().Cookies() {
		if sc.MaxAge < 0 {
			deleted[sc.Name] = true
		}
	}
	if !deleted[c1.Name] || !deleted[c2.Name] {
		t.Errorf("logout deleted %v; want both login cookies", deleted)
	}

	plain := newHarness(t, harnessOptions{})
	w = plain.do(httptest.NewRequest("GET", "/auth/logout", nil))
	if u, _ := url.Parse(w.Header().Get("Location")); u.Query().Has("post_logout_redirect_uri") {
		t.Errorf("logout without POST_LOGOUT_REDIRECT_URI sent one: %s", u)
	}
}

func TestLogsHoldNoSecretCodeOrToken(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	cert := testCertificate(t, key, time.Now().Add(time.Hour))
	certPath := writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}, pkcs8Block(t, key))
	var secrets []string
	for _, env := range []map[string]string{
		nil,
		{"AZURE_CLIENT_AUTH": "basic"},
		{"AZURE_CLIENT_CERTIFICATE_PATH": certPath, "AZURE_CLIENT_SECRET": ""},
	} {
		h := newHarness(t, harnessOptions{env: env})
		if env["AZURE_CLIENT_CERTIFICATE_PATH"] != "" {
			h.ti.checkClient = (&assertionChecker{cert: cert, seen: map[string]string{}}).check
		} else if env["AZURE_CLIENT_AUTH"] == "basic" {
			h.ti.checkClient = func(r *http.Request, _ url.Values) error {
				if _, s, _ := r.BasicAuth(); s != testSecret {
					return errors.New("bad Basic")
				}
				return nil
			}
		}
		var cookieValues []string
		capture := func(w *httptest.ResponseRecorder) {
			for _, c := range w.Result().Cookies() {
				if c.Value != "" {
					cookieValues = append(cookieValues, c.Value)
				}
			}
		}
		// Every flow: success (JSON and HTML), refresh, errors of each kind, logout.
		w := h.signIn(t, "?return_to=/x", "")
		capture(w)
		rt, _ := decodeAnswer(t, w)["refresh_token"].(string)
		capture(h.signIn(t, "", "text/html"))
		capture(h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token="+url.QueryEscape(rt))))
		capture(h.do(newRefreshRequest("application/json", `{"refresh_token":"unknown-refresh-token-value"}`)))
		secrets = append(secrets, "unknown-refresh-token-value")
		c, u := h.login(t, "")
		code, state := h.ti.authorize(u)
		capture(h.callback(url.Values{"code": {code}, "state": {state}}, "", c))
		capture(h.callback(url.Values{"code": {code}, "state": {state}}, "", c)) // replay
		capture(h.callback(url.Values{"code": {"code-never-issued"}, "state": {state}}, "", c))
		secrets = append(secrets, "code-never-issued", state)
		h.ti.mu.Lock()
		h.ti.idOverride = map[string]any{"nonce": "wrong"}
		h.ti.mu.Unlock()
		capture(h.signIn(t, "", ""))
		setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215)
		})
		capture(h.signIn(t, "", ""))
		capture(h.do(httptest.NewRequest("GET", "/auth/logout", nil)))

		h.ti.mu.Lock()
		secrets = append(secrets, h.ti.issued...)
		h.ti.mu.Unlock()
		secrets = append(secrets, cookieValues...)
		logs := h.logs.String()
		if !strings.Contains(logs, "signed in") || !strings.Contains(logs, "AADSTS7000215") {
			t.Fatalf("logs miss the expected lines; the test captures nothing:\n%s", logs)
		}
		for _, s := range append(secrets, testSecret, url.QueryEscape(testSecret)) {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("logs hold a secret, code, token or cookie value %.20q…:\n%s", s, logs)
			}
		}
	}
}

// FuzzSafeReturnTo: whatever comes in, the result is "/" or a local path
// that no browser reads as another origin.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/", "/a?b=c", "//evil", "/\\evil", "https://evil", "/%2F/x", "/\t/evil", "\x00",
		"/..//evil", "/.//evil", "/a/../..//evil", "/%2e%2e//evil", "/a/%2E/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := safeReturnTo(in)
		if got != "/" && got != in {
			t.Fatalf("safeReturnTo(%q) = %q; want the input or /", in, got)
		}
		u, err := url.Parse(got)
		if err != nil || got[0] != '/' || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\t\r\n") || u.Host != "" || u.Scheme != "" {
			t.Fatalf("safeReturnTo(%q) = %q, which may leave the origin", in, got)
		}
		// No dot segment, plain or encoded, survives: a browser would
		// remove it and might be left with "//host".
		if hasDotSegment(u.Path) || hasDotSegment(u.EscapedPath()) {
			t.Fatalf("safeReturnTo(%q) = %q keeps a dot segment", in, got)
		}
		// Resolved against our origin (dot segments removed as a browser
		// does), it must stay there, on a path that starts with one "/".
		base, _ := url.Parse("https://heroes.example/a/b")
		r := base.ResolveReference(u)
		if r.Host != "heroes.example" || strings.HasPrefix(r.Path, "//") || strings.HasPrefix(r.EscapedPath(), "//") {
			t.Fatalf("safeReturnTo(%q) = %q resolves to %q", in, got, r)
		}
		if c := path.Clean(u.Path); !strings.HasPrefix(c, "/") || strings.HasPrefix(c, "//") || strings.HasPrefix(c, "/\\") {
			t.Fatalf("safeReturnTo(%q) = %q cleans to %q", in, got, c)
		}
	})
}

// FuzzCallbackQuery: the callback never panics and answers 4xx for any query
// without a genuine login cookie.
func FuzzCallbackQuery(f *testing.F) {
	h := newHarness(f, harnessOptions{})
	f.Add("code=x&state=y")
	f.Add("error=access_denied&error_description=%3Cb%3E&state=")
	f.Add("state=" + strings.Repeat("A", 200))
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest("GET", "/auth/callback", nil)
		r.URL.RawQuery = rawQuery
		w := h.do(r)
		if w.Code < 400 || w.Code > 499 {
			t.Fatalf("callback?%s = %d; want 4xx", rawQuery, w.Code)
		}
	})
}

// safeReturnTo keeps local paths and turns everything else into "/".
func Example_safeReturnTo() {
	for _, s := range []string{"/api/heroes/?page=2", "https://evil.example/", "//evil.example", "/\\evil.example"} {
		fmt.Println(safeReturnTo(s))
	}
	// Output:
	// /api/heroes/?page=2
	// /
	// /
	// /
}

// TestIDTokenIssuerIsExactlyTheDiscoveryIssuer: an ID token's iss must be
// the discovery issuer, {tenantid} replaced by tid for organizations (OpenID
// Connect Core §3.1.3.7 step 2); the v1 issuer https://sts.windows.net/{tid}/
// is refused for ID tokens while access tokens keep accepting it
// (ACCEPT_V1_TOKENS, default on).
func TestIDTokenIssuerIsExactlyTheDiscoveryIssuer(t *testing.T) {
	t.Parallel()
	idp := newTestIDP(t)
	v1 := "https://sts.windows.net/" + testTenant + "/"
	v2 := idp.issuer(testTenant)
	idClaims := map[string]any{"aud": testClientID, "azp": testClientID, "scp": nil, "nonce": "N"}
	tests := []struct {
		name    string
		env     map[string]string
		idToken bool
		iss     string
		want    error
	}{
		{"fixed tenant: ID token with the v2 issuer", nil, true, v2, nil},
		{"fixed tenant: ID token with the v1 issuer", nil, true, v1, errBadIssuer},
		{"fixed tenant: ID token with the v1 issuer without a trailing slash", nil, true, strings.TrimSuffix(v1, "/"), errBadIssuer},
		{"fixed tenant: ID token with the template issuer", nil, true, idp.issuer("organizations"), errBadIssuer},
		{"fixed tenant: access token with the v1 issuer", nil, false, v1, nil},
		{"organizations: ID token with the v2 issuer of its tid", orgEnv, true, v2, nil},
		{"organizations: ID token with the v1 issuer", orgEnv, true, v1, errBadIssuer},
		{"organizations: ID token with the unreplaced template", orgEnv, true, idp.issuer("organizations"), errBadIssuer},
		{"organizations: access token with the v1 issuer", orgEnv, false, v1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := idp.config(t, tc.env)
			client := &http.Client{Timeout: idpTimeout}
			logger := slog.New(slog.DiscardHandler)
			prov := newProvider(cfg.verifyOptions(client, logger))
			v := newVerifier(cfg.verifyOptions(client, logger), prov, newKeySet(cfg.verifyOptions(client, logger), prov))
			var err error
			if tc.idToken {
				over := maps.Clone(idClaims)
				over["iss"] = tc.iss
				_, err = v.verifyIDToken(context.Background(), idp.token(t, over), "N")
			} else {
				_, err = v.verifyAccessToken(context.Background(), idp.token(t, map[string]any{"iss": tc.iss}))
			}
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("verify(iss %q) = %v; want %v", tc.iss, err, tc.want)
			}
		})
	}
}

// orgEnv is the multi-tenant setting: the organizations authority, with
// testTenant allowed.
var orgEnv = map[string]string{"AZURE_TENANT_ID": "organizations", "ALLOWED_TENANTS": testTenant}

// TestRefreshVerifiesTheNewIDToken: an ID token in a refresh answer is
// verified like the sign-in's (OpenID Connect Core §12.2), nonce aside:
// one for another client, with another azp, a bad signature, expired, or
// with the v1 issuer is a 502 and no token is handed out.
func TestRefreshVerifiesTheNewIDToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		over    map[string]any
		forge   bool
		want    int
		wantErr error
	}{
		{"a valid new ID token is accepted", nil, false, http.StatusOK, nil},
		{"ID token for another client", map[string]any{"aud": "99999999-2222-3333-4444-555555555555"}, false, http.StatusBadGateway, errBadAudience},
		{"ID token authorized for another party", map[string]any{"azp": "99999999-2222-3333-4444-555555555555"}, false, http.StatusBadGateway, errBadAZP},
		{"ID token with a bad signature", nil, true, http.StatusBadGateway, errBadSignature},
		{"expired ID token", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, false, http.StatusBadGateway, errTokenExpired},
		{"ID token with the v1 issuer", map[string]any{"iss": "https://sts.windows.net/" + testTenant + "/", "ver": "1.0"}, false, http.StatusBadGateway, errBadIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			h.ti.addRefreshToken("rt-id")
			h.ti.rotateRefresh, h.ti.idOverride, h.ti.forgeID = true, tc.over, tc.forge
			w := h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt-id"))
			if w.Code != tc.want {
				t.Fatalf("refresh = %d %s; want %d", w.Code, w.Body, tc.want)
			}
			if tc.wantErr == nil {
				if decodeAnswer(t, w)["id_token_claims"] == nil {
					t.Errorf("refresh answer lacks id_token_claims: %s", w.Body)
				}
				return
			}
			if strings.Contains(w.Body.String(), "access_token") {
				t.Errorf("refresh handed out tokens with a bad ID token: %s", w.Body)
			}
			if logs := h.logs.String(); !strings.Contains(logs, tc.wantErr.Error()) || !strings.Contains(logs, "token=id_token") {
				t.Errorf("no log line names the ID token and %q:\n%s", tc.wantErr, logs)
			}
		})
	}
}

// TestCallbackWithoutItsCookieNamesTheAddress: a callback whose login
// cookie did not come back (a sign-in started on another host) says so and
// names the address sign-ins must start on.
func TestCallbackWithoutItsCookieNamesTheAddress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	_, u := h.login(t, "")
	code, state := h.ti.authorize(u)
	w := h.callback(url.Values{"code": {code}, "state": {state}}, "text/html")
	for _, want := range []string{"login cookie did not come back", "another address than http://localhost:8000", "start again at /auth/login"} {
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), want) {
			t.Errorf("callback without its cookie = %d; want 400 with %q:\n%s", w.Code, want, w.Body)
		}
	}
}

// TestSignInPagesMoveToTheServiceHost: /, /auth/login and /docs reached on
// another host than REDIRECT_URI's redirect to the same path and query on
// REDIRECT_URI's origin (never one taken from the request), so the login
// cookie is set where the callback arrives; other routes are served where
// they are asked for.
func TestSignInPagesMoveToTheServiceHost(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	local := newTestServer(t, p, nil, io.Discard)
	proxied := newTestServer(t, p, map[string]string{"REDIRECT_URI": "https://heroes.example.com/team/auth/callback"}, io.Discard)
	tests := []struct {
		name       string
		h          http.Handler
		path, host string
		fwd        string // X-Forwarded-Host
		location   string // "" means not moved
	}{
		{"login on 127.0.0.1", local, "/auth/login?prompt=login&return_to=/docs", "127.0.0.1:8000", "", "http://localhost:8000/auth/login?prompt=login&return_to=/docs"},
		{"home on 127.0.0.1", local, "/", "127.0.0.1:8000", "", "http://localhost:8000/"},
		{"docs on 127.0.0.1", local, "/docs", "127.0.0.1:8000", "", "http://localhost:8000/docs"},
		{"login on another port", local, "/auth/login", "localhost:9000", "", "http://localhost:8000/auth/login"},
		{"a forged host never becomes the target", local, "/auth/login", "evil.example", "evil.example", "http://localhost:8000/auth/login"},
		{"login on localhost", local, "/auth/login", "localhost:8000", "", ""},
		{"host case ignored", local, "/", "LOCALHOST:8000", "", ""},
		{"proxy naming the public host", local, "/auth/login", "10.0.0.5:8000", "localhost:8000", ""},
		{"callback is never moved", local, "/auth/callback?code=c&state=s", "127.0.0.1:8000", "", ""},
		{"document is never moved", local, "/openapi.json", "127.0.0.1:8000", "", ""},
		{"public host, default port implied", proxied, "/auth/login", "heroes.example.com", "", ""},
		{"public host, default port written", proxied, "/", "heroes.example.com:443", "", ""},
		{"internal host behind the proxy's prefix", proxied, "/auth/login?prompt=login", "heroes-7f9c:8000", "", "https://heroes.example.com/team/auth/login?prompt=login"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.path, nil)
			r.Host = tc.host
			if tc.fwd != "" {
				r.Header.Set("X-Forwarded-Host", tc.fwd)
			}
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, r)
			moved := rec.Code == http.StatusFound && !strings.Contains(rec.Header().Get("Location"), "/oauth2/")
			switch {
			case tc.location == "" && moved:
				t.Errorf("GET %s on %s moved to %s; want it served", tc.path, tc.host, rec.Header().Get("Location"))
			case tc.location != "" && (rec.Code != http.StatusFound || rec.Header().Get("Location") != tc.location):
				t.Errorf("GET %s on %s = %d to %q; want 302 to %q", tc.path, tc.host, rec.Code, rec.Header().Get("Location"), tc.location)
			case tc.location != "" && len(rec.Result().Cookies()) > 0:
				t.Errorf("GET %s on %s set a cookie before moving", tc.path, tc.host)
			}
		})
	}
}

// TestRefreshCanBeTurnedOff: with AUTH_REFRESH_ENABLED=false the sign-in
// asks for no offline_access (so no refresh token is issued), and POST
// /auth/refresh answers 404 in JSON without calling the token endpoint:
// the service lends its client credential to no refresh token.
func TestRefreshCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{env: map[string]string{"AUTH_REFRESH_ENABLED": "false"}})
	_, loc := h.login(t, "")
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if want := "openid profile api://" + testClientID + "/Heroes.Read"; u.Query().Get("scope") != want {
		t.Errorf("authorize scope = %q; want %q", u.Query().Get("scope"), want)
	}
	calls := countTokenCalls(h)
	w := h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt-1"))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "AUTH_REFRESH_ENABLED=false") || !strings.Contains(w.Header().Get("Content-Type"), "json") {
		t.Errorf("refresh = %d %s; want a 404 JSON answer naming AUTH_REFRESH_ENABLED=false", w.Code, w.Body)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests reached the token endpoint; want none", n)
	}
}
