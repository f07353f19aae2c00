package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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

// grant is an authorization code the fake authorize step issued: what the
// token endpoint must see again when the code is redeemed.
type grant struct {
	nonce, challenge, redirectURI string
	used                          bool
}

// tokenIssuer plays the identity provider's authorize and token endpoints on
// a testIDP. authorize turns an authorization URL into a code; serveToken
// redeems codes and refresh tokens, checking the form, PKCE (RFC 7636 §4.6)
// and the client authentication with checkClient. Safe for concurrent use.
type tokenIssuer struct {
	tb  testing.TB
	idp *testIDP

	mu sync.Mutex // guards the fields below
	// grants are the issued codes by code.
	grants map[string]*grant
	// refreshTokens are the refresh tokens issued.
	refreshTokens map[string]bool
	// idOverride and atOverride change the claims of the ID and access
	// tokens minted (see testIDP.token).
	idOverride, atOverride map[string]any
	// forgeID signs ID tokens with a key the provider does not publish,
	// under the published kid (a bad signature).
	forgeID bool
	// rotateRefresh makes refresh answers carry a new refresh and ID token.
	rotateRefresh bool
	// checkClient checks the client authentication of a token request; nil
	// means client_secret_post with testSecret.
	checkClient func(r *http.Request, form url.Values) error
	// issued records every token and code handed out, for the log test.
	issued []string
}

// newTokenIssuer installs a tokenIssuer as idp's token endpoint.
func newTokenIssuer(tb testing.TB, idp *testIDP) *tokenIssuer {
	ti := &tokenIssuer{tb: tb, idp: idp, grants: map[string]*grant{}, refreshTokens: map[string]bool{}}
	idp.mu.Lock()
	idp.tokenHandler = ti.serveToken
	idp.mu.Unlock()
	return ti
}

// setTokenHandler replaces the token endpoint of p.
func setTokenHandler(p *testIDP, h http.HandlerFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenHandler = h
}

// authorize plays the user signing in at the authorization URL: it records
// the nonce, challenge and redirect URI, and returns a fresh code and the
// state to send back.
func (ti *tokenIssuer) authorize(authURL string) (code, state string) {
	ti.tb.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		ti.tb.Fatalf("authorize URL: %v", err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" {
		ti.tb.Fatalf("code_challenge_method = %q; want S256", q.Get("code_challenge_method"))
	}
	code = "code-" + rand.Text()
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.grants[code] = &grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri")}
	ti.issued = append(ti.issued, code)
	return code, q.Get("state")
}

// entraError writes an Entra-shaped token endpoint error (RFC 6749 §5.2).
func entraError(w http.ResponseWriter, status int, code, desc string, codes ...int) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"error": code, "error_description": desc, "error_codes": codes,
		"timestamp": "2026-11-30 10:00:00Z", "trace_id": "trace-1", "correlation_id": "corr-1",
	})
}

func (ti *tokenIssuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		entraError(w, 400, "invalid_request", fmt.Sprintf("content type %q", ct))
		return
	}
	if err := r.ParseForm(); err != nil {
		entraError(w, 400, "invalid_request", "form")
		return
	}
	form := r.PostForm
	check := ti.checkClient
	if check == nil {
		check = checkClientSecretPost
	}
	if err := check(r, form); err != nil {
		entraError(w, 401, "invalid_client", "AADSTS7000215: "+err.Error(), 7000215)
		return
	}
	if !strings.Contains(form.Get("scope"), "api://"+testClientID+"/Heroes.Read") {
		entraError(w, 400, "invalid_scope", "scope "+form.Get("scope"), 70011)
		return
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		ti.redeemCode(w, form)
	case "refresh_token":
		ti.redeemRefresh(w, form)
	default:
		entraError(w, 400, "unsupported_grant_type", "grant_type")
	}
}

// checkClientSecretPost accepts client_secret_post with the test secret.
func checkClientSecretPost(r *http.Request, form url.Values) error {
	if _, _, ok := r.BasicAuth(); ok {
		return errors.New("unexpected Basic authorization")
	}
	if form.Get("client_id") != testClientID || form.Get("client_secret") != testSecret {
		return errors.New("bad client_id or client_secret")
	}
	return nil
}

func (ti *tokenIssuer) redeemCode(w http.ResponseWriter, form url.Values) {
	ti.mu.Lock()
	g := ti.grants[form.Get("code")]
	reused := g != nil && g.used
	if g != nil {
		g.used = true
	}
	ti.mu.Unlock()
	switch {
	case g == nil:
		entraError(w, 400, "invalid_grant", "AADSTS70000: unknown code", 70000)
		return
	case reused:
		entraError(w, 400, "invalid_grant", "AADSTS54005: OAuth2 Authorization code was already redeemed", 54005)
		return
	case form.Get("redirect_uri") != g.redirectURI:
		entraError(w, 400, "invalid_grant", "AADSTS50011: redirect_uri", 50011)
		return
	}
	sum := sha256.Sum256([]byte(form.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		entraError(w, 400, "invalid_grant", "AADSTS501481: The Code_Verifier does not match the code_challenge", 501481)
		return
	}
	idClaims := map[string]any{"aud": testClientID, "azp": testClientID, "nonce": g.nonce, "scp": nil,
		"name": "Ada <b>Lovelace</b>", "preferred_username": "ada@example.com"}
	ti.answer(w, idClaims, true, true)
}

func (ti *tokenIssuer) redeemRefresh(w http.ResponseWriter, form url.Values) {
	ti.mu.Lock()
	ok := ti.refreshTokens[form.Get("refresh_token")]
	rotate := ti.rotateRefresh
	ti.mu.Unlock()
	if !ok {
		entraError(w, 400, "invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity", 700082)
		return
	}
	ti.answer(w, map[string]any{"aud": testClientID, "azp": testClientID, "scp": nil, "name": "Ada"}, rotate, rotate)
}

// answer mints and writes a token answer: an access token, and an ID token
// and refresh token when asked. expires_in is a string, as Entra v1 sends.
func (ti *tokenIssuer) answer(w http.ResponseWriter, idClaims map[string]any, withID, withRefresh bool) {
	ti.mu.Lock()
	idOver, atOver := maps.Clone(ti.idOverride), maps.Clone(ti.atOverride)
	ti.mu.Unlock()
	maps.Copy(idClaims, idOver)
	fields := map[string]any{
		"token_type":   "Bearer",
		"access_token": ti.idp.token(ti.tb, atOver),
		"expires_in":   "3599",
		"scope":        "api://" + testClientID + "/Heroes.Read",
	}
	if withID {
		fields["id_token"] = ti.idp.token(ti.tb, idClaims)
	}
	if withID && ti.forgeID {
		c := ti.idp.claims(time.Now())
		for k, v := range idClaims {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		forged, err := signRS256(testKeys()[2], "k0", c)
		if err != nil {
			ti.tb.Fatal(err)
		}
		fields["id_token"] = forged
	}
	if withRefresh {
		fields["refresh_token"] = "refresh-" + rand.Text()
	}
	ti.mu.Lock()
	for _, k := range []string{"access_token", "id_token", "refresh_token"} {
		if v, ok := fields[k].(string); ok {
			ti.issued = append(ti.issued, v)
		}
	}
	if rt, ok := fields["refresh_token"].(string); ok {
		ti.refreshTokens[rt] = true
	}
	ti.mu.Unlock()
	tokenJSON(w, fields)
}

// addRefreshToken makes rt a refresh token the issuer accepts.
func (ti *tokenIssuer) addRefreshToken(rt string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.refreshTokens[rt] = true
	ti.issued = append(ti.issued, rt)
}

// fakeMetadata is a metadataSource answering md or err.
type fakeMetadata struct {
	md  providerMetadata
	err error
}

func (f fakeMetadata) metadata(ctx context.Context) (providerMetadata, error) { return f.md, f.err }

// idpMetadata is the discovery document of p for testTenant.
func idpMetadata(p *testIDP) providerMetadata {
	base := p.srv.URL + "/" + testTenant
	return providerMetadata{
		Issuer:                p.issuer(testTenant),
		AuthorizationEndpoint: base + "/oauth2/v2.0/authorize",
		TokenEndpoint:         base + "/oauth2/v2.0/token",
		JWKSURI:               base + "/discovery/v2.0/keys",
		EndSessionEndpoint:    base + "/oauth2/v2.0/logout",
	}
}

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
	prov := newProvider(h.cfg, client, logger)
	v := newVerifier(h.cfg, prov, newKeySet(h.cfg, prov, client, logger), time.Now)
	var md metadataSource = prov
	if opts.metadata != nil {
		md = opts.metadata
	}
	af, err := newAuthFlow(h.cfg, md, v, client, logger)
	if err != nil {
		tb.Fatalf("newAuthFlow: %v", err)
	}
	h.af = af
	h.mux = http.NewServeMux()
	h.mux.Handle("GET /{$}", handleIndex(h.cfg))
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

func TestLoginCookiesAreCapped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	var jar []*http.Cookie
	for i := range maxPendingLogins + 3 {
		r := httptest.NewRequest("GET", "/auth/login", nil)
		for _, c := range jar {
			r.AddCookie(c)
		}
		h.af.now = func() time.Time { return time.Now().Add(time.Duration(i) * time.Second) }
		w := h.do(r)
		// Apply Set-Cookie like a browser: deletions, then the new cookie.
		for _, sc := range w.Result().Cookies() {
			jar = slicesDeleteCookie(jar, sc.Name)
			if sc.MaxAge > 0 {
				jar = append(jar, sc)
			}
		}
		if len(jar) > maxPendingLogins {
			t.Fatalf("after login %d the browser holds %d login cookies; want at most %d", i+1, len(jar), maxPendingLogins)
		}
	}
	if len(jar) != maxPendingLogins {
		t.Errorf("browser holds %d login cookies; want the newest %d kept", len(jar), maxPendingLogins)
	}
}

// slicesDeleteCookie removes the cookies called name from jar.
func slicesDeleteCookie(jar []*http.Cookie, name string) []*http.Cookie {
	out := jar[:0]
	for _, c := range jar {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
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
	for _, tc := range []struct {
		name    string
		q       url.Values
		cookies []*http.Cookie
	}{
		{"same code without the cookie", q, nil},
		{"same code with the old cookie", q, []*http.Cookie{c}},
		{"fresh code with the old cookie", url.Values{"code": {fresh}, "state": {state}}, []*http.Cookie{c}},
	} {
		w := h.callback(tc.q, "", tc.cookies...)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "start again at /auth/login") {
			t.Errorf("replayed callback, %s = %d %s; want 400 start again", tc.name, w.Code, w.Body)
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

// TestTokenEndpointRedirectIsNotFollowed: the service's identity provider
// client (newIDPClient) never follows a redirect, so a token endpoint
// answering 307 cannot make it re-send the code, the code_verifier and the
// client secret to another server (RFC 6749 §3.2).
func TestTokenEndpointRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		tokenJSON(w, map[string]any{"token_type": "Bearer", "access_token": "stolen"})
	}))
	t.Cleanup(other.Close)
	h := newHarness(t, harnessOptions{client: newIDPClient()})
	setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/token", http.StatusTemporaryRedirect)
	})
	w := h.signIn(t, "", "")
	if w.Code != http.StatusBadGateway {
		t.Errorf("callback with a redirecting token endpoint = %d %s; want 502", w.Code, w.Body)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the other server got %d requests; want 0 (the redirect was followed)", n)
	}
}

// TestGrantErrorsAreDescribedByTheirCode: an invalid_grant says what Entra's
// error code means, and only AADSTS70008 says "expired".
func TestGrantErrorsAreDescribedByTheirCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		te      tokenError
		want    string
		notWant string
	}{
		{"70008 is expired", tokenError{Code: "invalid_grant", ErrorCodes: []int{70008}}, "has expired", ""},
		{"54005 is already redeemed", tokenError{Code: "invalid_grant", ErrorCodes: []int{54005}}, "already redeemed", "expired"},
		{"70000 is invalid or already used", tokenError{Code: "invalid_grant", ErrorCodes: []int{70000}}, "invalid or was already used", "expired"},
		{"70000 found in the description", tokenError{Code: "invalid_grant", Description: "AADSTS70000: refresh token already used"}, "invalid or was already used", "expired"},
		{"700082 is unused too long", tokenError{Code: "invalid_grant", ErrorCodes: []int{700082}}, "long time unused", ""},
		{"an unknown code is generic", tokenError{Code: "invalid_grant", ErrorCodes: []int{9999999}}, "invalid, expired or already used", ""},
		{"no code is generic", tokenError{Code: "invalid_grant"}, "invalid, expired or already used", ""},
		{"interaction_required", tokenError{Code: "interaction_required"}, "needs the user", "expired"},
	}
	for _, tc := range tests {
		got := describeGrantError(&tc.te)
		if !strings.Contains(got, tc.want) || (tc.notWant != "" && strings.Contains(got, tc.notWant)) {
			t.Errorf("%s: describeGrantError = %q; want it to say %q and not %q", tc.name, got, tc.want, tc.notWant)
		}
	}
}

func TestTokenEndpointErrorsAreMapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		answer     http.HandlerFunc
		wantStatus int
		wantIn     []string
		wantLog    string
	}{
		{"expired code is 400 start again", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.", 70008)
		}, 400, []string{"expired", "AADSTS70008", "start again at /auth/login"}, ""},
		{"redeemed code is 400 start again", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS54005: OAuth2 Authorization code was already redeemed", 54005)
		}, 400, []string{"already redeemed", "AADSTS54005", "start again at /auth/login"}, ""},
		{"unknown code is 400 invalid, expired or already used", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS70000: The provided value for the 'code' parameter is not valid.", 70000)
		}, 400, []string{"invalid or was already used", "AADSTS70000", "start again at /auth/login"}, ""},
		{"v1 answer with the code only in the description", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS70008: expired")
		}, 400, []string{"AADSTS70008", "start again"}, ""},
		{"bad secret is 502 with the code", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215)
		}, 502, []string{"AADSTS7000215", "misconfigured"}, "AZURE_CLIENT_SECRET is not a valid secret"},
		{"expired secret is 502", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 401, "invalid_client", "AADSTS7000222: expired", 7000222)
		}, 502, []string{"AADSTS7000222"}, "has expired"},
		{"redirect mismatch is 502 with the code", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_request", "AADSTS50011: The redirect URI does not match", 50011)
		}, 502, []string{"AADSTS50011"}, "REDIRECT_URI does not exactly match"},
		{"unknown client error is 502", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "unauthorized_client", "AADSTS700025: public client", 700025)
		}, 502, []string{"unauthorized_client", "AADSTS700025"}, ""},
		{"temporarily unavailable is 503", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 503, "temporarily_unavailable", "AADSTS90033: busy", 90033)
		}, 503, []string{"temporarily unavailable"}, ""},
		{"non-JSON error page is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			io.WriteString(w, "<h1>oops</h1>")
		}, 502, []string{"unusable answer"}, ""},
		{"non-JSON success is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, `{"access_token":"x","token_type":"Bearer"}`)
		}, 502, []string{"unusable answer"}, ""},
		{"malformed JSON is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":`)
		}, 502, []string{"unusable answer"}, ""},
		{"expires_in not numeric is 502", func(w http.ResponseWriter, r *http.Request) {
			tokenJSON(w, map[string]any{"access_token": "x", "token_type": "Bearer", "expires_in": "soon"})
		}, 502, []string{"unusable answer"}, ""},
		{"no access token is 502", func(w http.ResponseWriter, r *http.Request) {
			tokenJSON(w, map[string]any{"token_type": "Bearer", "expires_in": 3599})
		}, 502, []string{"unusable answer"}, ""},
		{"token type other than Bearer is 502", func(w http.ResponseWriter, r *http.Request) {
			tokenJSON(w, map[string]any{"access_token": "x", "token_type": "DPoP", "expires_in": 3599})
		}, 502, []string{"unusable answer"}, ""},
		{"oversized answer is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"`+strings.Repeat("a", maxTokenAnswer)+`","token_type":"Bearer"}`)
		}, 502, []string{"unusable answer"}, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			c, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			setTokenHandler(h.idp, tc.answer)
			w := h.callback(url.Values{"code": {code}, "state": {state}}, "", c)
			if w.Code != tc.wantStatus {
				t.Errorf("callback = %d %s; want %d", w.Code, w.Body, tc.wantStatus)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q; want no-store", w.Header().Get("Cache-Control"))
			}
			for _, want := range tc.wantIn {
				if !strings.Contains(w.Body.String(), want) {
					t.Errorf("answer lacks %q: %s", want, w.Body)
				}
			}
			if tc.wantLog != "" && !strings.Contains(h.logs.String(), tc.wantLog) {
				t.Errorf("logs lack %q:\n%s", tc.wantLog, h.logs)
			}
		})
	}
}

func TestTokenEndpointNetworkFailures(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name       string
		client     *http.Client
		endpoint   func(h *flowHarness) string
		answer     http.HandlerFunc
		wantStatus int
	}{
		{"timeout is 504", &http.Client{Timeout: 200 * time.Millisecond}, nil, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, http.StatusGatewayTimeout},
		{"slow body is 504", &http.Client{Timeout: 200 * time.Millisecond}, nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, http.StatusGatewayTimeout},
		{"connection refused is 502", nil, func(*flowHarness) string { return closed.URL + "/token" }, nil, http.StatusBadGateway},
		{"connection dropped is 502", nil, nil, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, http.StatusBadGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{client: tc.client})
			if tc.endpoint != nil {
				md := idpMetadata(h.idp)
				md.TokenEndpoint = tc.endpoint(h)
				h.af.p = fakeMetadata{md: md}
			}
			c, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			if tc.answer != nil {
				setTokenHandler(h.idp, tc.answer)
			}
			w := h.callback(url.Values{"code": {code}, "state": {state}}, "", c)
			if w.Code != tc.wantStatus {
				t.Errorf("callback = %d %s; want %d", w.Code, w.Body, tc.wantStatus)
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

func TestIndexPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	w := h.do(httptest.NewRequest("GET", "/", nil))
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q; want 200 text/html", w.Code, w.Header().Get("Content-Type"))
	}
	for _, want := range []string{`href="/auth/login"`, `href="/api/heroes/"`, `href="/openapi.json"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("index lacks %s", want)
		}
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

func TestParseTokenAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		ct, body    string
		wantExpires int64
		wantErr     error
		wantAADSTS  string
	}{
		{"expires_in number", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":3599}`, 3599, nil, ""},
		{"expires_in string (Entra v1)", 200, "application/json; charset=utf-8", `{"access_token":"a","token_type":"bearer","expires_in":"3599"}`, 3599, nil, ""},
		{"expires_in absent", 200, "application/json", `{"access_token":"a","token_type":"Bearer"}`, 0, nil, ""},
		{"expires_in negative", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":-1}`, 0, errTokenAnswer, ""},
		{"expires_in fraction", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":1.5}`, 0, errTokenAnswer, ""},
		{"Entra error", 400, "application/json", `{"error":"invalid_grant","error_description":"AADSTS70008: x","error_codes":[70008]}`, 0, nil, "AADSTS70008"},
		{"error on a 200", 200, "application/json", `{"error":"invalid_grant","error_codes":[54005]}`, 0, nil, "AADSTS54005"},
		{"status without error", 500, "application/json", `{}`, 0, errTokenAnswer, ""},
		{"HTML", 200, "text/html", `<html>`, 0, errTokenAnswer, ""},
		{"no content type", 200, "", `{"access_token":"a","token_type":"Bearer"}`, 0, errTokenAnswer, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := parseTokenAnswer(tc.status, tc.ct, []byte(tc.body))
			var te *tokenError
			switch {
			case tc.wantAADSTS != "":
				if !errors.As(err, &te) || te.aadsts() != tc.wantAADSTS {
					t.Errorf("parseTokenAnswer(%q) = %v; want a tokenError %s", tc.body, err, tc.wantAADSTS)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("parseTokenAnswer(%q) = %v; want %v", tc.body, err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("parseTokenAnswer(%q) = %v", tc.body, err)
			case int64(tr.ExpiresIn) != tc.wantExpires:
				t.Errorf("expires_in = %d; want %d", tr.ExpiresIn, tc.wantExpires)
			}
		})
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
		{"AZURE_CLIENT_CERTIFICATE_PATH": certPath},
	} {
		h := newHarness(t, harnessOptions{env: env})
		if env["AZURE_CLIENT_CERTIFICATE_PATH"] != "" {
			h.ti.checkClient = (&assertionChecker{cert: cert, seen: map[string]bool{}}).check
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

// FuzzParseTokenAnswer: no panic on any answer, and a success always has an
// access token and a non-negative expires_in.
func FuzzParseTokenAnswer(f *testing.F) {
	f.Add(200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":"3599"}`)
	f.Add(400, "application/json", `{"error":"invalid_grant","error_codes":[70008]}`)
	f.Add(200, "text/html", `<html>`)
	f.Add(200, "application/json", `{"expires_in":1e400}`)
	f.Fuzz(func(t *testing.T, status int, ct, body string) {
		tr, err := parseTokenAnswer(status, ct, []byte(body))
		if err == nil && (tr.AccessToken == "" || tr.ExpiresIn < 0) {
			t.Fatalf("parseTokenAnswer(%d, %q, %q) = %+v; want an access token and expires_in >= 0", status, ct, body, tr)
		}
		var te *tokenError
		if errors.As(err, &te) && (len(te.Description) > maxShownIdPText+3 || len(te.Code) > 64+3) {
			t.Fatalf("tokenError fields are unbounded: %d, %d bytes", len(te.Description), len(te.Code))
		}
	})
}

// FuzzPrefersHTML: no panic on any Accept header.
func FuzzPrefersHTML(f *testing.F) {
	f.Add("text/html,application/xhtml+xml,*/*;q=0.8")
	f.Add("application/json;q=0.1, text/*;q=NaN")
	f.Fuzz(func(t *testing.T, accept string) { prefersHTML(accept) })
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

// expires_in arrives as a number from Entra's v2 endpoint and as a string
// from its v1 endpoint.
func Example_expiresIn() {
	for _, body := range []string{`{"expires_in":3599}`, `{"expires_in":"3599"}`, `{"expires_in":"soon"}`} {
		var tr struct {
			ExpiresIn expiresIn `json:"expires_in"`
		}
		err := json.Unmarshal([]byte(body), &tr)
		fmt.Println(int64(tr.ExpiresIn), err != nil)
	}
	// Output:
	// 3599 false
	// 3599 false
	// 0 true
}

func TestUpstreamFaultsAroundTheExchange(t *testing.T) {
	t.Parallel()
	t.Run("unusable authorization_endpoint is 502", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{metadata: fakeMetadata{md: providerMetadata{AuthorizationEndpoint: "javascript:alert(1)"}}})
		if w := h.do(httptest.NewRequest("GET", "/auth/login", nil)); w.Code != http.StatusBadGateway {
			t.Errorf("login = %d %s; want 502", w.Code, w.Body)
		}
	})
	t.Run("key set unavailable is 503", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{})
		h.idp.mu.Lock()
		h.idp.jwksHandler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusInternalServerError) }
		h.idp.mu.Unlock()
		w := h.signIn(t, "", "")
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Errorf("callback with no signing keys = %d %s; want 503 with Retry-After", w.Code, w.Body)
		}
	})
	t.Run("refreshed access token failing verification is 502", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{})
		h.ti.addRefreshToken("rt")
		h.ti.atOverride = map[string]any{"iss": "https://evil.example/v2.0"}
		w := h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt"))
		if w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), "access_token\":\"ey") {
			t.Errorf("refresh = %d %s; want 502 and no token handed out", w.Code, w.Body)
		}
	})
}

// TestCallbackRefusesAChangedLoginCookie: a login cookie whose last
// character is changed to any other base64url character, or any other
// character changed, is refused with 400 "start again", including the
// values whose last character carries unused bits (lengths 2 and 3 modulo
// 4, RFC 4648 §3.5); the unchanged cookie then still completes the sign-in.
func TestCallbackRefusesAChangedLoginCookie(t *testing.T) {
	t.Parallel()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	h := newHarness(t, harnessOptions{})
	covered := map[int]bool{}
	for n := 1; n <= 3; n++ {
		c, authURL := h.login(t, "?return_to=/"+strings.Repeat("a", n))
		covered[len(c.Value)%4] = true
		t.Run(fmt.Sprintf("length %d mod 4 = %d", len(c.Value), len(c.Value)%4), func(t *testing.T) {
			code, state := h.ti.authorize(authURL)
			q := url.Values{"code": {code}, "state": {state}}
			refuse := func(i int, ch byte) {
				t.Helper()
				changed := &http.Cookie{Name: c.Name, Value: c.Value[:i] + string(ch) + c.Value[i+1:]}
				if w := h.callback(q, "", changed); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), restartLogin) {
					t.Fatalf("callback with character %d changed %q→%q = %d %s; want 400 %q", i, c.Value[i], ch, w.Code, w.Body, restartLogin)
				}
			}
			last := len(c.Value) - 1
			for _, ch := range []byte(alphabet) {
				if ch != c.Value[last] {
					refuse(last, ch)
				}
			}
			for i := range last { // every other position, to its neighbour in the alphabet
				refuse(i, alphabet[strings.IndexByte(alphabet, c.Value[i])^1])
			}
			if w := h.callback(q, "", c); w.Code != http.StatusOK {
				t.Errorf("callback with the unchanged cookie = %d %s; want 200", w.Code, w.Body)
			}
		})
	}
	if !covered[2] || !covered[3] {
		t.Errorf("cookie lengths modulo 4 covered: %v; want 2 and 3", covered)
	}
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
			prov := newProvider(cfg, client, logger)
			v := newVerifier(cfg, prov, newKeySet(cfg, prov, client, logger), time.Now)
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

// TestConfigFaultsAre502WithAnOperatorLogLine: Entra codes that name a
// configuration fault are a 502 carrying the AADSTS code, with an ERROR log
// line naming the setting to fix, whatever OAuth error code they come with
// (AADSTS500112 arrives as invalid_client or invalid_grant,
// AzureAD/microsoft-identity-web#3114) and on refresh too.
func TestConfigFaultsAre502WithAnOperatorLogLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		refresh bool
		status  int
		oauth   string
		desc    string
		codes   []int
		aadsts  string
		fix     string
	}{
		{"500112 as invalid_client", false, 401, "invalid_client", "AADSTS500112: The reply address 'a' does not match the reply address 'b' provided when requesting Authorization code.", []int{500112}, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"500112 as invalid_grant", false, 400, "invalid_grant", "AADSTS500112: The reply address 'a' does not match the reply address 'b' provided when requesting Authorization code.", []int{500112}, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"500112 as invalid_grant, code only in the description", false, 400, "invalid_grant", "AADSTS500112: The reply address does not match.", nil, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"500112 on refresh", true, 400, "invalid_grant", "AADSTS500112: The reply address does not match.", []int{500112}, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"50011 as invalid_request", false, 400, "invalid_request", "AADSTS50011: The redirect URI does not match.", []int{50011}, "AADSTS50011", "REDIRECT_URI does not exactly match"},
		{"7000215 as invalid_client", false, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", []int{7000215}, "AADSTS7000215", "AZURE_CLIENT_SECRET is not a valid secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
				entraError(w, tc.status, tc.oauth, tc.desc, tc.codes...)
			})
			var w *httptest.ResponseRecorder
			if tc.refresh {
				w = h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt"))
			} else {
				w = h.signIn(t, "", "")
			}
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), tc.aadsts) {
				t.Errorf("answer = %d %s; want 502 naming %s", w.Code, w.Body, tc.aadsts)
			}
			var line string
			for l := range strings.SplitSeq(h.logs.String(), "\n") {
				if strings.Contains(l, tc.fix) {
					line = l
				}
			}
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "aadsts="+tc.aadsts) {
				t.Errorf("no ERROR log line naming %s and the fix %q:\n%s", tc.aadsts, tc.fix, h.logs)
			}
		})
	}
}

// deadlineRecorder is an http.RoundTripper that records the context
// deadline of token requests (POSTs) before passing every request on.
type deadlineRecorder struct {
	mu        sync.Mutex // guards deadlines
	deadlines []time.Time
}

func (d *deadlineRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost {
		dl, ok := r.Context().Deadline()
		if !ok {
			dl = time.Time{}
		}
		d.mu.Lock()
		d.deadlines = append(d.deadlines, dl)
		d.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestTokenRequestsWaitTenSeconds: the client run builds for the identity
// provider has a 10 s Timeout, and each token request (code and refresh
// grant) carries its own 10 s context deadline, measured from the request,
// so no test has to wait 10 s.
func TestTokenRequestsWaitTenSeconds(t *testing.T) {
	t.Parallel()
	if got := newIDPClient().Timeout; got != 10*time.Second {
		t.Errorf("newIDPClient().Timeout = %v; want 10s", got)
	}
	tests := []struct {
		name string
		do   func(h *flowHarness) *httptest.ResponseRecorder
	}{
		{"code grant", func(h *flowHarness) *httptest.ResponseRecorder {
			c, authURL := h.login(t, "")
			code, state := h.ti.authorize(authURL)
			return h.callback(url.Values{"code": {code}, "state": {state}}, "", c)
		}},
		{"refresh grant", func(h *flowHarness) *httptest.ResponseRecorder {
			h.ti.addRefreshToken("rt-deadline")
			return h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt-deadline"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &deadlineRecorder{}
			h := newHarness(t, harnessOptions{client: &http.Client{Transport: rec}})
			start := time.Now()
			w := tc.do(h)
			end := time.Now()
			if w.Code != http.StatusOK {
				t.Fatalf("answer = %d %s; want 200", w.Code, w.Body)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.deadlines) != 1 {
				t.Fatalf("%d token requests; want 1", len(rec.deadlines))
			}
			dl := rec.deadlines[0]
			if dl.Before(start.Add(10*time.Second)) || dl.After(end.Add(10*time.Second)) {
				t.Errorf("token request deadline = %v after the start; want 10s after the request (no deadline: %v)", dl.Sub(start), dl.IsZero())
			}
		})
	}
}

// padTokenAnswer returns body, a JSON object, with a padding member added
// at its start so that it is exactly size bytes long, or an error when body
// is not an object or already longer.
func padTokenAnswer(body []byte, size int) ([]byte, error) {
	const member = `"padding":"",`
	n := size - len(body) - len(member)
	if n < 0 || len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("cannot pad a %d-byte answer to %d bytes", len(body), size)
	}
	out := make([]byte, 0, size)
	out = append(out, `{"padding":"`...)
	out = append(out, strings.Repeat("a", n)...)
	out = append(out, `",`...)
	return append(out, body[1:]...), nil
}

// TestTokenAnswersOver1MiBAre502: the token endpoint's answer is read up to
// 1 MiB (1,048,576 bytes): a genuine answer padded to just under or exactly
// 1 MiB is accepted, one padded to 1 MiB + 64 bytes or 2 MiB is a 502,
// with or without a Content-Length. Sizes are literals, not derived from
// maxTokenAnswer, so changing the limit fails this test.
func TestTokenAnswersOver1MiBAre502(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"just under 1 MiB is accepted", 1048576 - 64, false, http.StatusOK},
		{"exactly 1 MiB is accepted", 1048576, false, http.StatusOK},
		{"1 MiB + 64 bytes is 502", 1048576 + 64, false, http.StatusBadGateway},
		{"2 MiB is 502", 2097152, false, http.StatusBadGateway},
		{"2 MiB without Content-Length is 502", 2097152, true, http.StatusBadGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
				rec := httptest.NewRecorder()
				h.ti.serveToken(rec, r)
				body, err := padTokenAnswer(rec.Body.Bytes(), tc.size)
				if err != nil || len(body) != tc.size {
					t.Errorf("token answer: %v", err)
					http.Error(w, "test setup", http.StatusInternalServerError)
					return
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				w.Write(body[:1024])
				w.(http.Flusher).Flush()
				w.Write(body[1024:])
			})
			w := h.signIn(t, "", "")
			if w.Code != tc.want {
				t.Errorf("callback with a %d-byte token answer = %d %.200s; want %d", tc.size, w.Code, w.Body, tc.want)
			}
			if tc.want != http.StatusOK && strings.Contains(w.Body.String(), "access_token") {
				t.Errorf("an oversized answer's token was handed out")
			}
		})
	}
}

// TestRunWarnsWhenSessionKeyIsUnset: without SESSION_KEY, run logs a
// warning that the key is random per process and that replicas need a
// shared one; with it, no such warning.
func TestRunWarnsWhenSessionKeyIsUnset(t *testing.T) {
	t.Parallel()
	idp := newTestIDP(t)
	tests := []struct {
		name     string
		env      map[string]string
		wantWarn bool
	}{
		{"unset", nil, true},
		{"set", map[string]string{"SESSION_KEY": base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, logs, stop := startRun(t, nil, idp.getenv(tc.env))
			if err := stop(); err != nil {
				t.Fatalf("run = %v", err)
			}
			warned := false
			for line := range strings.SplitSeq(logs.String(), "\n") {
				var rec struct{ Level, Msg string }
				if json.Unmarshal([]byte(line), &rec) == nil && strings.Contains(rec.Msg, "SESSION_KEY") {
					warned = rec.Level == "WARN" && strings.Contains(rec.Msg, "random") && strings.Contains(rec.Msg, "replicas")
				}
			}
			if warned != tc.wantWarn {
				t.Errorf("SESSION_KEY %s: warned = %v; want %v; logs:\n%s", tc.name, warned, tc.wantWarn, logs)
			}
		})
	}
}

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

// TestRefreshUsesTheCodeGrantsClientAuthentication: the refresh grant
// (RFC 6749 §6) authenticates the client exactly as the code grant does:
// client_secret in the body, HTTP Basic (AZURE_CLIENT_AUTH=basic), or a
// certificate's client assertion with a fresh jti (RFC 7523 §2.2). The test
// provider refuses any other authentication.
func TestRefreshUsesTheCodeGrantsClientAuthentication(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	cert := testCertificate(t, key, time.Now().Add(365*24*time.Hour))
	certPath := writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}, pkcs8Block(t, key))
	checkBasic := func(r *http.Request, form url.Values) error {
		id, secret, ok := r.BasicAuth()
		if !ok {
			return errors.New("no Basic authorization")
		}
		if id != testClientID || secret != testSecret || form.Has("client_secret") || form.Has("client_assertion") {
			return errors.New("wrong Basic credentials, or a credential in the body too")
		}
		return nil
	}
	tests := []struct {
		name  string
		env   map[string]string
		check func(r *http.Request, form url.Values) error
	}{
		{"client_secret in the body", nil, checkClientSecretPost},
		{"HTTP Basic", map[string]string{"AZURE_CLIENT_AUTH": "basic"}, checkBasic},
		{"certificate assertion", map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": certPath, "AZURE_CLIENT_SECRET": ""},
			(&assertionChecker{cert: cert, seen: map[string]bool{}}).check},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{env: tc.env})
			var mu sync.Mutex
			var passed []string
			h.ti.checkClient = func(r *http.Request, form url.Values) error {
				err := tc.check(r, form)
				if err == nil {
					mu.Lock()
					passed = append(passed, form.Get("grant_type"))
					mu.Unlock()
				}
				return err
			}
			w := h.signIn(t, "", "")
			if w.Code != http.StatusOK {
				t.Fatalf("sign-in = %d %s; want 200", w.Code, w.Body)
			}
			rt, _ := decodeAnswer(t, w)["refresh_token"].(string)
			if w := h.do(newRefreshRequest("application/x-www-form-urlencoded", url.Values{"refresh_token": {rt}}.Encode())); w.Code != http.StatusOK {
				t.Errorf("refresh = %d %s; want 200", w.Code, w.Body)
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(passed, " ") != "authorization_code refresh_token" {
				t.Errorf("grants authenticated as %s: %v; want authorization_code then refresh_token", tc.name, passed)
			}
		})
	}
}
