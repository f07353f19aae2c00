package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// devHarness runs a devIDP on an httptest.Server, as -dev serves it: the
// service's base URL is the server's URL.
type devHarness struct {
	d      *devIDP
	srv    *httptest.Server
	env    func(string) string // the settings the dev provider gives the service
	client *http.Client        // follows no redirects
}

// newDevHarness starts a dev provider. clock, when non-nil, replaces its
// clock before it serves.
func newDevHarness(tb testing.TB, clock *fakeClock) *devHarness {
	tb.Helper()
	return newDevHarnessLogging(tb, clock, slog.New(slog.DiscardHandler))
}

// newDevHarnessLogging is newDevHarness with the provider logging to logger.
func newDevHarnessLogging(tb testing.TB, clock *fakeClock, logger *slog.Logger) *devHarness {
	tb.Helper()
	d, err := newDevIDP()
	if err != nil {
		tb.Fatalf("newDevIDP: %v", err)
	}
	if clock != nil {
		d.now = clock.now
	}
	// As -dev serves it: behind the service's middleware, which sets the
	// security headers of every answer.
	mux := http.NewServeMux()
	srv := httptest.NewServer(withMiddleware(logger, nil, mux))
	tb.Cleanup(srv.Close)
	h := &devHarness{
		d:   d,
		srv: srv,
		env: d.getenv(func(string) string { return "" }, srv.URL),
		client: &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	d.addRoutes(mux, logger)
	return h
}

// url is the URL of a dev tenant endpoint, e.g. h.url("/oauth2/v2.0/token").
func (h *devHarness) url(path string) string {
	return h.srv.URL + "/devidp/" + devTenantID + path
}

// newPKCE makes a code_verifier and its S256 code_challenge (RFC 7636 §4.1-4.2).
func newPKCE() (verifier, challenge string) {
	verifier = rand.Text() + rand.Text() // 52 unreserved characters
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authParams is a good authorization request as the service sends it, with
// override applied ("" deletes a parameter).
func (h *devHarness) authParams(challenge string, override map[string]string) url.Values {
	v := url.Values{
		"client_id":             {devClientID},
		"response_type":         {"code"},
		"redirect_uri":          {h.env("REDIRECT_URI")},
		"response_mode":         {"query"},
		"scope":                 {"openid profile offline_access " + h.env("API_SCOPE")},
		"state":                 {"state-123"},
		"nonce":                 {"nonce-456"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	for k, val := range override {
		if val == "" {
			v.Del(k)
		} else {
			v.Set(k, val)
		}
	}
	return v
}

// do sends req and returns the answer with its body read.
func (h *devHarness) do(tb testing.TB, req *http.Request) (*http.Response, string) {
	tb.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("reading body: %v", err)
	}
	return resp, string(body)
}

// get sends a GET to url.
func (h *devHarness) get(tb testing.TB, u string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return h.do(tb, req)
}

// postForm posts form to url; basic, when non-nil, sets HTTP Basic
// credentials {user, password}.
func (h *devHarness) postForm(tb testing.TB, u string, form url.Values, basic []string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(basic[0], basic[1])
	}
	return h.do(tb, req)
}

// signIn submits the sign-in form for params as user, ticking grants.
func (h *devHarness) signIn(tb testing.TB, params url.Values, user string, grants ...string) (*http.Response, string) {
	tb.Helper()
	f := url.Values{}
	for k, v := range params {
		f[k] = slices.Clone(v)
	}
	f.Set("username", user)
	f.Set("action", "signin")
	f["grant"] = grants
	return h.postForm(tb, h.url("/oauth2/v2.0/authorize"), f, nil)
}

// code signs in as user with grants and returns the code and PKCE verifier.
func (h *devHarness) code(tb testing.TB, user string, grants ...string) (code, verifier string) {
	tb.Helper()
	verifier, challenge := newPKCE()
	resp, body := h.signIn(tb, h.authParams(challenge, nil), user, grants...)
	if resp.StatusCode != http.StatusFound {
		tb.Fatalf("sign-in: status %d; want 302; body %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		tb.Fatalf("sign-in Location: %v", err)
	}
	if got := loc.Query().Get("state"); got != "state-123" {
		tb.Fatalf("sign-in redirect state = %q; want state-123", got)
	}
	return loc.Query().Get("code"), verifier
}

// codeForm is a good authorization_code token request for code.
func (h *devHarness) codeForm(code, verifier string) url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {h.env("REDIRECT_URI")},
		"code_verifier": {verifier},
		"client_id":     {devClientID},
		"client_secret": {h.env("AZURE_CLIENT_SECRET")},
		"scope":         {"openid profile offline_access " + h.env("API_SCOPE")},
	}
}

// token posts a token request and decodes the JSON answer.
func (h *devHarness) token(tb testing.TB, form url.Values, basic []string) (*http.Response, map[string]any) {
	tb.Helper()
	resp, body := h.postForm(tb, h.url("/oauth2/v2.0/token"), form, basic)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		tb.Fatalf("token answer is not JSON (status %d): %v: %q", resp.StatusCode, err, body)
	}
	return resp, m
}

// publicKey fetches the JWKS and returns its one key as an RSA key.
func (h *devHarness) publicKey(tb testing.TB) (*rsa.PublicKey, string) {
	tb.Helper()
	_, body := h.get(tb, h.url("/discovery/v2.0/keys"))
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil || len(set.Keys) != 1 {
		tb.Fatalf("JWKS = %q (%v); want one key", body, err)
	}
	k := set.Keys[0]
	n, err1 := base64.RawURLEncoding.DecodeString(k["n"])
	e, err2 := base64.RawURLEncoding.DecodeString(k["e"])
	if err1 != nil || err2 != nil {
		tb.Fatalf("JWK n/e are not base64url: %v %v", err1, err2)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, k["kid"]
}

// verifyDevJWT checks tok's RS256 signature with pub and returns its header
// and claims.
func verifyDevJWT(tb testing.TB, pub *rsa.PublicKey, tok string) (header, claims map[string]any) {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts; want 3", len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		tb.Fatalf("signature: %v", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		tb.Fatalf("signature does not verify with the JWKS key: %v", err)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			tb.Fatalf("part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			tb.Fatalf("part %d: %v", i, err)
		}
	}
	return header, claims
}

// devErrorCode returns the OAuth error and the first AADSTS number of an
// Entra-style error answer.
func devErrorCode(m map[string]any) (string, int) {
	e, _ := m["error"].(string)
	codes, _ := m["error_codes"].([]any)
	if len(codes) == 0 {
		return e, 0
	}
	n, _ := codes[0].(float64)
	return e, int(n)
}

// TestDevIDPGetenv: the dev settings load as a valid config, win over the
// environment, blank what would mix with a real registration, and the
// secret, key and kid are fresh per provider.
func TestDevIDPGetenv(t *testing.T) {
	t.Parallel()
	d, err := newDevIDP()
	if err != nil {
		t.Fatal(err)
	}
	real := map[string]string{
		"AZURE_CLIENT_ID":               "11111111-2222-3333-4444-555555555555",
		"AZURE_CLIENT_SECRET":           "real-secret",
		"AZURE_TENANT_ID":               "organizations",
		"ALLOWED_TENANTS":               "72f988bf-86f1-41af-91ab-2d7cd011db47",
		"AZURE_CLIENT_AUTH":             "basic",
		"AZURE_CLIENT_CERTIFICATE_PATH": "/etc/cert.pem",
		"AZURE_FEDERATED_TOKEN_FILE":    "/var/run/secrets/azure/tokens/azure-identity-token",
		"AZURE_TOKEN_EXCHANGE_AUDIENCE": "api://elsewhere",
		"AZURE_AUDIENCE":                "api://elsewhere",
		"POST_LOGOUT_REDIRECT_URI":      "https://elsewhere.example/",
		"AZURE_AUTHORITY_HOST":          "https://login.microsoftonline.com",
		"LOG_LEVEL":                     "debug",
	}
	base := "http://localhost:8123"
	env := d.getenv(func(k string) string { return real[k] }, base)

	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatalf("loadConfig(dev getenv) = %v; want a valid config", err)
	}
	checks := []struct {
		name, got, want string
	}{
		{"client id is the dev one", cfg.ClientID, devClientID},
		{"tenant is the dev one", cfg.TenantID, devTenantID},
		{"secret is the random one", cfg.ClientSecret, d.secret},
		{"authority is the dev provider", cfg.AuthorityHost, base + "/devidp"},
		{"redirect URI is on the service", cfg.RedirectURI, base + "/auth/callback"},
		{"client auth falls back to post", cfg.ClientAuth, clientAuthPost},
		{"certificate is blanked", cfg.ClientCertPath, ""},
		{"federated token file is blanked", cfg.FederatedTokenFile, ""},
		{"exchange audience is the global one", cfg.TokenExchangeAudience, "api://AzureADTokenExchange"},
		{"post-logout URI is blanked", cfg.PostLogoutRedirectURI, ""},
		{"API scopes offer all three", strings.Join(cfg.APIScopes, " "),
			"api://" + devClientID + "/Heroes.Read api://" + devClientID + "/Heroes.Create api://" + devClientID + "/Admin"},
		{"audiences are only the dev app", strings.Join(cfg.Audiences, " "), devClientID + " api://" + devClientID},
		{"other settings pass through", cfg.LogLevel.String(), "DEBUG"},
		{"discovery is served by the dev provider", cfg.verifyOptions(nil, nil).discoveryURL(), base + "/devidp/" + devTenantID + "/v2.0/.well-known/openid-configuration"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q; want %q", c.name, c.got, c.want)
		}
	}
	if len(cfg.AllowedTenants) != 0 || cfg.AnyTenant {
		t.Errorf("ALLOWED_TENANTS = %v; want blanked", cfg.AllowedTenants)
	}

	d2, err := newDevIDP()
	if err != nil {
		t.Fatal(err)
	}
	if d2.secret == d.secret || d2.kid == d.kid || d2.key.N.Cmp(d.key.N) == 0 {
		t.Error("two dev providers share a secret, kid or key; want fresh ones per process")
	}
	if bits := d.key.N.BitLen(); bits != 2048 {
		t.Errorf("signing key has %d bits; want 2048", bits)
	}
}

// TestDevIDPDiscovery: the discovery document names the dev tenant's issuer
// and endpoints like Entra's v2.0 one; another tenant is AADSTS90002.
func TestDevIDPDiscovery(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	resp, body := h.get(t, h.url("/v2.0/.well-known/openid-configuration"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery status %d; want 200", resp.StatusCode)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	tb := h.srv.URL + "/devidp/" + devTenantID
	want := map[string]string{
		"issuer":                 tb + "/v2.0",
		"authorization_endpoint": tb + "/oauth2/v2.0/authorize",
		"token_endpoint":         tb + "/oauth2/v2.0/token",
		"jwks_uri":               tb + "/discovery/v2.0/keys",
		"end_session_endpoint":   tb + "/oauth2/v2.0/logout",
	}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("discovery %s = %v; want %q", k, doc[k], v)
		}
	}
	lists := map[string]string{
		"response_types_supported":              "code",
		"code_challenge_methods_supported":      "S256",
		"id_token_signing_alg_values_supported": "RS256",
		"token_endpoint_auth_methods_supported": "client_secret_basic",
		"grant_types_supported":                 "refresh_token",
		"scopes_supported":                      "openid",
	}
	for k, v := range lists {
		l, _ := doc[k].([]any)
		if !slices.Contains(l, any(v)) {
			t.Errorf("discovery %s = %v; want it to list %q", k, doc[k], v)
		}
	}

	// The metadata decodes into the service's own type.
	var md providerMetadata
	if err := json.Unmarshal([]byte(body), &md); err != nil || md.Issuer != want["issuer"] {
		t.Errorf("providerMetadata = %+v, %v", md, err)
	}

	resp, body = h.get(t, h.srv.URL+"/devidp/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0/.well-known/openid-configuration")
	var e map[string]any
	json.Unmarshal([]byte(body), &e)
	if code, n := devErrorCode(e); resp.StatusCode != http.StatusBadRequest || code != "invalid_tenant" || n != 90002 {
		t.Errorf("discovery of another tenant = %d %s %d; want 400 invalid_tenant 90002", resp.StatusCode, code, n)
	}
}

// TestDevIDPKeys: the JWKS holds the signing key's public half, RSA 2048,
// shaped like an Entra v2 key with the {tenantid} issuer template.
func TestDevIDPKeys(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	_, body := h.get(t, h.url("/discovery/v2.0/keys"))
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS = %s; want one key", body)
	}
	k := set.Keys[0]
	want := map[string]string{"kty": "RSA", "use": "sig", "kid": h.d.kid, "issuer": h.srv.URL + "/devidp/{tenantid}/v2.0"}
	for name, v := range want {
		if k[name] != v {
			t.Errorf("JWK %s = %q; want %q", name, k[name], v)
		}
	}
	pub, _ := h.publicKey(t)
	if pub.N.BitLen() != 2048 || pub.E != 65537 {
		t.Errorf("JWK is a %d-bit key with e=%d; want 2048 bits, e=65537", pub.N.BitLen(), pub.E)
	}
	if !pub.Equal(&h.d.key.PublicKey) {
		t.Error("JWK is not the signing key's public half")
	}
}

// TestDevIDPAuthorizeValidation: a bad client or redirect URI is shown, never
// redirected; every other bad request is redirected with error and state
// (RFC 6749 §4.1.2.1); a good one shows the sign-in form.
func TestDevIDPAuthorizeValidation(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	_, challenge := newPKCE()
	redirect := h.env("REDIRECT_URI")

	tests := []struct {
		name     string
		override map[string]string
		query    string // appended raw, for duplicated parameters
		tenant   string
		// page is the status of an error shown to the user; 0 means the
		// error must be redirected with wantErr.
		page    int
		wantErr string
	}{
		{name: "unknown client id is shown, not redirected", override: map[string]string{"client_id": "99999999-9999-9999-9999-999999999999"}, page: 400},
		{name: "missing client id is shown", override: map[string]string{"client_id": ""}, page: 400},
		{name: "other redirect uri is shown, not redirected", override: map[string]string{"redirect_uri": "https://evil.example/cb"}, page: 400},
		{name: "redirect uri must match exactly", override: map[string]string{"redirect_uri": redirect + "/x"}, page: 400},
		{name: "redirect uri with extra query does not match", override: map[string]string{"redirect_uri": redirect + "?a=b"}, page: 400},
		{name: "missing redirect uri is shown", override: map[string]string{"redirect_uri": ""}, page: 400},
		{name: "duplicated redirect uri is shown", query: "&redirect_uri=" + url.QueryEscape("https://evil.example/cb"), page: 400},
		{name: "unknown tenant is shown", tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47", page: 400},
		{name: "missing code challenge", override: map[string]string{"code_challenge": ""}, wantErr: "invalid_request"},
		{name: "plain challenge method", override: map[string]string{"code_challenge_method": "plain"}, wantErr: "invalid_request"},
		{name: "missing challenge method", override: map[string]string{"code_challenge_method": ""}, wantErr: "invalid_request"},
		{name: "challenge not 43 base64url characters", override: map[string]string{"code_challenge": "short"}, wantErr: "invalid_request"},
		{name: "implicit response type", override: map[string]string{"response_type": "token"}, wantErr: "unsupported_response_type"},
		{name: "missing response type", override: map[string]string{"response_type": ""}, wantErr: "invalid_request"},
		{name: "form_post response mode", override: map[string]string{"response_mode": "form_post"}, wantErr: "invalid_request"},
		{name: "scope of another API", override: map[string]string{"scope": "openid api://other/Heroes.Read"}, wantErr: "invalid_scope"},
		{name: "unknown API scope name", override: map[string]string{"scope": "openid api://" + devClientID + "/Heroes.Burn"}, wantErr: "invalid_scope"},
		{name: "missing scope", override: map[string]string{"scope": ""}, wantErr: "invalid_request"},
		{name: "silent sign-in without a session", override: map[string]string{"prompt": "none"}, wantErr: "login_required"},
		{name: "duplicated state", query: "&state=other", wantErr: "invalid_request"},
		{name: "oversized nonce", override: map[string]string{"nonce": strings.Repeat("n", devMaxParam+1)}, wantErr: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := h.url("/oauth2/v2.0/authorize")
			if tc.tenant != "" {
				u = strings.Replace(u, devTenantID, tc.tenant, 1)
			}
			u += "?" + h.authParams(challenge, tc.override).Encode() + tc.query
			resp, body := h.get(t, u)
			if tc.page != 0 {
				if resp.StatusCode != tc.page || resp.Header.Get("Location") != "" {
					t.Fatalf("GET authorize = %d, Location %q; want %d page, no redirect", resp.StatusCode, resp.Header.Get("Location"), tc.page)
				}
				if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "AADSTS") {
					t.Errorf("error page = %q; want HTML naming the AADSTS error", body)
				}
				return
			}
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("GET authorize = %d; want 302 to the redirect URI", resp.StatusCode)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(loc.String(), redirect+"?") {
				t.Fatalf("Location = %q; want the redirect URI", resp.Header.Get("Location"))
			}
			q := loc.Query()
			if q.Get("error") != tc.wantErr || !strings.HasPrefix(q.Get("error_description"), "AADSTS") {
				t.Errorf("redirect error = %q (%q); want %s with an AADSTS description", q.Get("error"), q.Get("error_description"), tc.wantErr)
			}
			if q.Has("code") {
				t.Error("error redirect carries a code")
			}
			if tc.query == "" && q.Get("state") != "state-123" {
				t.Errorf("redirect state = %q; want state-123 (RFC 6749 §4.1.2.1)", q.Get("state"))
			}
		})
	}

	t.Run("good request shows the sign-in form", func(t *testing.T) {
		t.Parallel()
		resp, body := h.get(t, h.url("/oauth2/v2.0/authorize")+"?"+h.authParams(challenge, nil).Encode())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET authorize = %d; want 200", resp.StatusCode)
		}
		for _, want := range []string{`name="username"`, `value="Heroes.Read" checked`, `value="Heroes.Create" checked`,
			`value="Admin" checked`, `name="code_challenge" value="` + challenge + `"`, `name="state" value="state-123"`} {
			if !strings.Contains(body, want) {
				t.Errorf("sign-in form lacks %s", want)
			}
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q; want no-store", cc)
		}
		if fa := resp.Header.Get("Content-Security-Policy"); !strings.Contains(fa, "frame-ancestors 'none'") {
			t.Errorf("CSP = %q; want frame-ancestors 'none'", fa)
		}
	})
}

// TestDevIDPCodeFlow: form → code → token, with tokens that verify against
// the JWKS and carry Entra v2 claims.
func TestDevIDPCodeFlow(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	pub, kid := h.publicKey(t)

	verifier, challenge := newPKCE()
	params := h.authParams(challenge, nil)
	if resp, _ := h.get(t, h.url("/oauth2/v2.0/authorize")+"?"+params.Encode()); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET authorize = %d; want 200", resp.StatusCode)
	}
	resp, _ := h.signIn(t, params, "Ada Lovelace", "Heroes.Read", "Heroes.Create", "Bogus")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-in = %d; want 302", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != h.env("REDIRECT_URI") {
		t.Errorf("sign-in redirects to %q; want the redirect URI", got)
	}
	code := loc.Query().Get("code")

	resp, tok := h.token(t, h.codeForm(code, verifier), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token = %d %v; want 200", resp.StatusCode, tok)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store", cc)
	}
	wantScope := "api://" + devClientID + "/Heroes.Read api://" + devClientID + "/Heroes.Create"
	if tok["token_type"] != "Bearer" || tok["expires_in"] != float64(3600) || tok["scope"] != wantScope {
		t.Errorf("token answer = %v; want Bearer, 3600, scope %q", tok, wantScope)
	}
	if rt, _ := tok["refresh_token"].(string); rt == "" {
		t.Error("no refresh_token although offline_access was asked for")
	}

	iss := h.srv.URL + "/devidp/" + devTenantID + "/v2.0"
	oid := devObjectID("Ada Lovelace")
	hdr, at := verifyDevJWT(t, pub, tok["access_token"].(string))
	if hdr["alg"] != "RS256" || hdr["kid"] != kid || hdr["typ"] != "JWT" {
		t.Errorf("access token header = %v; want RS256, kid %s, JWT", hdr, kid)
	}
	wantAT := map[string]any{
		"aud": devClientID, "iss": iss, "tid": devTenantID, "oid": oid, "azp": devClientID,
		"scp": "Heroes.Read Heroes.Create", "name": "Ada Lovelace", "preferred_username": "Ada Lovelace",
		"ver": "2.0", "sub": devSubject(devClientID, oid),
	}
	for k, v := range wantAT {
		if at[k] != v {
			t.Errorf("access token %s = %v; want %v", k, at[k], v)
		}
	}
	iat, _ := at["iat"].(float64)
	if exp, _ := at["exp"].(float64); exp-iat != 3600 || at["nbf"] != at["iat"] || time.Since(time.Unix(int64(iat), 0)).Abs() > time.Minute {
		t.Errorf("access token iat/nbf/exp = %v/%v/%v; want now, now, now+1h", at["iat"], at["nbf"], at["exp"])
	}
	if !isGUID(oid) || len(at["sub"].(string)) != 43 {
		t.Errorf("oid %q is not a GUID or sub %q is not 43 characters", oid, at["sub"])
	}
	if _, ok := at["nonce"]; ok {
		t.Error("access token carries the nonce; only the ID token should")
	}

	_, id := verifyDevJWT(t, pub, tok["id_token"].(string))
	wantID := map[string]any{"aud": devClientID, "iss": iss, "nonce": "nonce-456", "name": "Ada Lovelace",
		"preferred_username": "Ada Lovelace", "oid": oid, "tid": devTenantID, "ver": "2.0", "sub": at["sub"]}
	for k, v := range wantID {
		if id[k] != v {
			t.Errorf("ID token %s = %v; want %v", k, id[k], v)
		}
	}

	// The same user name gives the same oid in another sign-in.
	code2, verifier2 := h.code(t, "ada lovelace", "Admin")
	_, tok2 := h.token(t, h.codeForm(code2, verifier2), nil)
	_, at2 := verifyDevJWT(t, pub, tok2["access_token"].(string))
	if at2["oid"] != oid {
		t.Errorf("oid for the same user = %v; want %v (stable per user name)", at2["oid"], oid)
	}
	if at2["scp"] != "Admin" {
		t.Errorf("scp = %v with Admin ticked; want Admin", at2["scp"])
	}
}

// TestDevIDPCodeFlowWithoutOpenIDOrOffline: no openid, no ID token; no
// offline_access, no refresh token.
func TestDevIDPCodeFlowWithoutOpenIDOrOffline(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	verifier, challenge := newPKCE()
	params := h.authParams(challenge, map[string]string{"scope": "api://" + devClientID + "/Heroes.Read"})
	resp, _ := h.signIn(t, params, "bob", "Heroes.Read")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	_, tok := h.token(t, h.codeForm(loc.Query().Get("code"), verifier), nil)
	if tok["access_token"] == nil {
		t.Fatalf("token answer = %v; want an access token", tok)
	}
	if _, ok := tok["id_token"]; ok {
		t.Error("id_token issued without openid in scope (OIDC Core §3.1.2.1)")
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Error("refresh_token issued without offline_access in scope")
	}
}

// TestDevIDPTokenErrors: each bad token request gets Entra's error JSON with
// the right status, error and AADSTS number, and never echoes a secret.
func TestDevIDPTokenErrors(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	secret := h.env("AZURE_CLIENT_SECRET")
	escaped := url.QueryEscape(devClientID)

	tests := []struct {
		name   string
		edit   func(f url.Values)
		basic  []string
		raw    string // a raw body sent instead of the form, with contentType
		ctype  string
		status int
		err    string
		aadsts int
	}{
		{name: "PKCE verifier mismatch", edit: func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 43)) }, status: 400, err: "invalid_grant", aadsts: 501481},
		{name: "PKCE verifier too short", edit: func(f url.Values) { f.Set("code_verifier", "abc") }, status: 400, err: "invalid_grant", aadsts: 501481},
		{name: "missing code verifier", edit: func(f url.Values) { f.Del("code_verifier") }, status: 400, err: "invalid_request", aadsts: 900144},
		{name: "redirect uri differs from authorize", edit: func(f url.Values) { f.Set("redirect_uri", h.srv.URL+"/other") }, status: 400, err: "invalid_grant", aadsts: 50011},
		{name: "missing redirect uri", edit: func(f url.Values) { f.Del("redirect_uri") }, status: 400, err: "invalid_grant", aadsts: 50011},
		{name: "wrong client secret", edit: func(f url.Values) { f.Set("client_secret", secret+"x") }, status: 401, err: "invalid_client", aadsts: 7000215},
		{name: "missing client secret", edit: func(f url.Values) { f.Del("client_secret") }, status: 401, err: "invalid_client", aadsts: 7000218},
		{name: "unknown client", edit: func(f url.Values) { f.Set("client_id", testClientID) }, status: 400, err: "unauthorized_client", aadsts: 700016},
		{name: "missing client id", edit: func(f url.Values) { f.Del("client_id") }, status: 400, err: "invalid_request", aadsts: 900144},
		{name: "wrong secret in basic", edit: func(f url.Values) { f.Del("client_secret") }, basic: []string{escaped, "nope"}, status: 401, err: "invalid_client", aadsts: 7000215},
		{name: "basic and body secret together", basic: []string{escaped, url.QueryEscape(secret)}, status: 400, err: "invalid_request", aadsts: 9002313},
		{name: "basic client id differs from body", edit: func(f url.Values) { f.Del("client_secret") }, basic: []string{url.QueryEscape(testClientID), secret}, status: 401, err: "invalid_client", aadsts: 7000215},
		{name: "client assertion without its type", edit: func(f url.Values) { f.Del("client_secret"); f.Set("client_assertion", "x.y.z") }, status: 400, err: "invalid_request", aadsts: 9002313},
		{name: "client assertion beside the secret", edit: func(f url.Values) {
			f.Set("client_assertion", "x.y.z")
			f.Set("client_assertion_type", clientAssertionType)
		}, status: 400, err: "invalid_request", aadsts: 9002313},
		{name: "client assertion that is not a JWT", edit: func(f url.Values) {
			f.Del("client_secret")
			f.Set("client_assertion", "x.y.z")
			f.Set("client_assertion_type", clientAssertionType)
		}, status: 401, err: "invalid_client", aadsts: 50027},
		{name: "unknown code", edit: func(f url.Values) { f.Set("code", "not-a-code") }, status: 400, err: "invalid_grant", aadsts: 70008},
		{name: "missing code", edit: func(f url.Values) { f.Del("code") }, status: 400, err: "invalid_request", aadsts: 900144},
		{name: "unsupported grant type", edit: func(f url.Values) { f.Set("grant_type", "password") }, status: 400, err: "unsupported_grant_type", aadsts: 70003},
		{name: "missing grant type", edit: func(f url.Values) { f.Del("grant_type") }, status: 400, err: "invalid_request", aadsts: 900144},
		{name: "duplicated code", edit: func(f url.Values) { f.Add("code", "again") }, status: 400, err: "invalid_request", aadsts: 90015},
		{name: "JSON body is refused", raw: `{"grant_type":"authorization_code"}`, ctype: "application/json", status: 415, err: "invalid_request", aadsts: 9002313},
		{name: "oversized body is refused", raw: "grant_type=authorization_code&pad=" + strings.Repeat("a", devMaxForm), ctype: "application/x-www-form-urlencoded", status: 413, err: "invalid_request", aadsts: 9002313},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, verifier := h.code(t, "carol", "Heroes.Read")
			f := h.codeForm(code, verifier)
			if tc.edit != nil {
				tc.edit(f)
			}
			body := f.Encode()
			ctype := "application/x-www-form-urlencoded"
			if tc.raw != "" {
				body, ctype = tc.raw, tc.ctype
			}
			req, _ := http.NewRequest(http.MethodPost, h.url("/oauth2/v2.0/token"), strings.NewReader(body))
			req.Header.Set("Content-Type", ctype)
			if tc.basic != nil {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			resp, raw := h.do(t, req)
			var m map[string]any
			if err := json.Unmarshal([]byte(raw), &m); err != nil {
				t.Fatalf("answer is not JSON: %q", raw)
			}
			gotErr, gotN := devErrorCode(m)
			if resp.StatusCode != tc.status || gotErr != tc.err || gotN != tc.aadsts {
				t.Errorf("token = %d %s AADSTS%d; want %d %s AADSTS%d (%v)", resp.StatusCode, gotErr, gotN, tc.status, tc.err, tc.aadsts, m["error_description"])
			}
			if desc, _ := m["error_description"].(string); !strings.HasPrefix(desc, "AADSTS") || !strings.Contains(desc, "Trace ID:") {
				t.Errorf("error_description = %q; want Entra's shape", desc)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q; want no-store", resp.Header.Get("Cache-Control"))
			}
			if strings.Contains(raw, secret) || strings.Contains(raw, code) {
				t.Error("error answer echoes the secret or the code")
			}
			if tc.basic != nil && resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("WWW-Authenticate = %q; want Basic (RFC 6749 §5.2)", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestDevIDPBasicAuth: HTTP Basic client authentication (RFC 6749 §2.3.1).
func TestDevIDPBasicAuth(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	code, verifier := h.code(t, "dave", "Admin")
	f := h.codeForm(code, verifier)
	f.Del("client_secret")
	f.Del("client_id")
	resp, tok := h.token(t, f, []string{url.QueryEscape(devClientID), url.QueryEscape(h.env("AZURE_CLIENT_SECRET"))})
	if resp.StatusCode != http.StatusOK || tok["access_token"] == nil {
		t.Fatalf("token with HTTP Basic = %d %v; want 200 with tokens", resp.StatusCode, tok)
	}
}

// TestDevIDPCodeReplay: a code works once; its replay is AADSTS54005 and
// revokes the refresh token issued from it.
func TestDevIDPCodeReplay(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	code, verifier := h.code(t, "erin", "Heroes.Read")
	f := h.codeForm(code, verifier)
	resp, first := h.token(t, f, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first redemption = %d %v; want 200", resp.StatusCode, first)
	}
	resp, second := h.token(t, f, nil)
	if e, n := devErrorCode(second); resp.StatusCode != 400 || e != "invalid_grant" || n != 54005 {
		t.Fatalf("second redemption = %d %s %d; want 400 invalid_grant 54005", resp.StatusCode, e, n)
	}
	// RFC 6749 §4.1.2: the tokens issued from a replayed code are revoked.
	resp, refreshed := h.token(t, h.refreshForm(first["refresh_token"].(string)), nil)
	if e, _ := devErrorCode(refreshed); resp.StatusCode != 400 || e != "invalid_grant" {
		t.Errorf("refresh after code replay = %d %v; want 400 invalid_grant", resp.StatusCode, refreshed)
	}
}

// TestDevIDPCodeSingleUseUnderRace: concurrent redemptions of one code never
// give tokens twice.
func TestDevIDPCodeSingleUseUnderRace(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	code, verifier := h.code(t, "frank", "Heroes.Read")
	body := h.codeForm(code, verifier).Encode()
	type answer struct {
		status int
		err    string
	}
	const n = 8
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := h.client.Post(h.url("/oauth2/v2.0/token"), "application/x-www-form-urlencoded", strings.NewReader(body))
			if err != nil {
				answers <- answer{err: err.Error()}
				return
			}
			defer resp.Body.Close()
			var m map[string]any
			json.NewDecoder(resp.Body).Decode(&m) // a 200 has no error member either way
			e, _ := devErrorCode(m)
			answers <- answer{resp.StatusCode, e}
		})
	}
	wg.Wait()
	close(answers)
	ok := 0
	for a := range answers {
		switch {
		case a.status == http.StatusOK:
			ok++
		case a.status != http.StatusBadRequest || a.err != "invalid_grant":
			t.Errorf("concurrent redemption = %d %s; want 200 or 400 invalid_grant", a.status, a.err)
		}
	}
	// One request wins the code; the others are replays, which revoke what
	// it was issued (RFC 6749 §4.1.2), so at most one gets tokens.
	if ok > 1 {
		t.Errorf("%d of %d concurrent redemptions succeeded; want at most 1", ok, n)
	}
}

// TestDevIDPCodeExpiry: a code is dead after devCodeTTL.
func TestDevIDPCodeExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Now())
	h := newDevHarness(t, clock)
	code, verifier := h.code(t, "gina", "Heroes.Read")
	clock.advance(devCodeTTL)
	resp, m := h.token(t, h.codeForm(code, verifier), nil)
	if e, n := devErrorCode(m); resp.StatusCode != 400 || e != "invalid_grant" || n != 70008 {
		t.Errorf("code used after %v = %d %s %d; want 400 invalid_grant 70008", devCodeTTL, resp.StatusCode, e, n)
	}
}

// refreshForm is a good refresh_token request.
func (h *devHarness) refreshForm(rt string) url.Values {
	return url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {rt},
		"client_id":     {devClientID},
		"client_secret": {h.env("AZURE_CLIENT_SECRET")},
	}
}

// TestDevIDPRefreshRotation: refresh tokens are single use and rotated, a
// scope narrows and never widens, and reuse revokes the family.
func TestDevIDPRefreshRotation(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	pub, _ := h.publicKey(t)
	code, verifier := h.code(t, "hana", "Heroes.Read", "Heroes.Create")
	_, first := h.token(t, h.codeForm(code, verifier), nil)
	rt1 := first["refresh_token"].(string)

	resp, second := h.token(t, h.refreshForm(rt1), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh = %d %v; want 200", resp.StatusCode, second)
	}
	rt2, _ := second["refresh_token"].(string)
	if rt2 == "" || rt2 == rt1 {
		t.Fatalf("refresh token after refresh = %q; want a new one (rotation)", rt2)
	}
	_, at := verifyDevJWT(t, pub, second["access_token"].(string))
	if at["scp"] != "Heroes.Read Heroes.Create" || at["oid"] != devObjectID("hana") {
		t.Errorf("refreshed access token scp %v oid %v; want the original grant", at["scp"], at["oid"])
	}
	_, id := verifyDevJWT(t, pub, second["id_token"].(string))
	if _, ok := id["nonce"]; ok || id["sub"] != at["sub"] {
		t.Errorf("refreshed ID token = %v; want same sub, no nonce (OIDC Core §12.2)", id)
	}

	// A scope parameter narrows the access token, never widens it.
	f := h.refreshForm(rt2)
	f.Set("scope", "openid api://"+devClientID+"/Heroes.Read api://"+devClientID+"/Admin")
	_, third := h.token(t, f, nil)
	_, at3 := verifyDevJWT(t, pub, third["access_token"].(string))
	if at3["scp"] != "Heroes.Read" || third["scope"] != "api://"+devClientID+"/Heroes.Read" {
		t.Errorf("narrowed refresh scp = %v, scope = %v; want Heroes.Read only", at3["scp"], third["scope"])
	}
	rt3 := third["refresh_token"].(string)

	// Asking only for scopes that were never granted is invalid_scope, and
	// spends nothing: rt3 is still good.
	f = h.refreshForm(rt3)
	f.Set("scope", "api://"+devClientID+"/Admin")
	resp, disjoint := h.token(t, f, nil)
	if e, n := devErrorCode(disjoint); resp.StatusCode != 400 || e != "invalid_scope" || n != 70011 {
		t.Errorf("refresh for ungranted scopes = %d %s %d; want 400 invalid_scope 70011", resp.StatusCode, e, n)
	}

	// The next refresh without scope gets the whole grant back.
	_, fourth := h.token(t, h.refreshForm(rt3), nil)
	_, at4 := verifyDevJWT(t, pub, fourth["access_token"].(string))
	if at4["scp"] != "Heroes.Read Heroes.Create" {
		t.Errorf("refresh after narrowing scp = %v; want the original grant", at4["scp"])
	}
	rt4 := fourth["refresh_token"].(string)

	// Reusing a redeemed refresh token fails and revokes the family.
	resp, reused := h.token(t, h.refreshForm(rt1), nil)
	if e, n := devErrorCode(reused); resp.StatusCode != 400 || e != "invalid_grant" || n != 70000 {
		t.Errorf("reused refresh token = %d %s %d; want 400 invalid_grant 70000", resp.StatusCode, e, n)
	}
	resp, revoked := h.token(t, h.refreshForm(rt4), nil)
	if e, _ := devErrorCode(revoked); resp.StatusCode != 400 || e != "invalid_grant" {
		t.Errorf("latest refresh token after reuse = %d %v; want revoked (RFC 9700 §4.14.2)", resp.StatusCode, revoked)
	}

	resp, bad := h.token(t, h.refreshForm("unknown"), nil)
	if e, n := devErrorCode(bad); resp.StatusCode != 400 || e != "invalid_grant" || n != 70008 {
		t.Errorf("unknown refresh token = %d %s %d; want 400 invalid_grant 70008", resp.StatusCode, e, n)
	}
}

// TestDevIDPLogsNoSecrets: through sign-in, redemption, refresh, a replay
// and a wrong secret, the provider's log never holds the client secret, a
// code, a token, the PKCE verifier, the state or the nonce.
func TestDevIDPLogsNoSecrets(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	h := newDevHarnessLogging(t, nil, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	code, verifier := h.code(t, "kim", "Heroes.Read")
	f := h.codeForm(code, verifier)
	_, tok := h.token(t, f, nil)
	rt, _ := tok["refresh_token"].(string)
	_, tok2 := h.token(t, h.refreshForm(rt), nil)
	rt2, _ := tok2["refresh_token"].(string)
	if rt == "" || rt2 == "" {
		t.Fatalf("no refresh tokens: %v %v", tok, tok2)
	}
	bad := h.refreshForm(rt2)
	bad.Set("client_secret", "wrong-"+h.env("AZURE_CLIENT_SECRET"))
	h.token(t, bad, nil)
	h.token(t, f, nil) // replay of the code

	out := logs.String()
	if !strings.Contains(out, "devidp: signed in") || !strings.Contains(out, "AADSTS") && !strings.Contains(out, "aadsts") {
		t.Fatalf("log lacks the expected lines:\n%s", out)
	}
	secrets := map[string]string{
		"client secret": h.env("AZURE_CLIENT_SECRET"), "code": code, "code verifier": verifier,
		"state": "state-123", "nonce": "nonce-456", "refresh token": rt,
		"access token": tok["access_token"].(string), "ID token": tok["id_token"].(string),
		"rotated refresh token": rt2,
	}
	for name, v := range secrets {
		if strings.Contains(out, v) {
			t.Errorf("log holds the %s", name)
		}
	}
}

// TestDevIDPRevokedFamilyMintsNothing: once a replay revoked a family, a
// redemption of it still in flight gets no tokens.
func TestDevIDPRevokedFamilyMintsNothing(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	now := time.Now()
	g := devGrant{clientID: devClientID, user: "judy", openid: true, offline: true, family: "fam", expires: now.Add(time.Minute)}
	h.d.mu.Lock()
	h.d.spent["spent-code"] = devSpent{family: "fam", expires: now.Add(time.Minute)}
	replayed := h.d.revokeIfSpent("spent-code", now)
	h.d.mu.Unlock()
	if !replayed {
		t.Fatal("revokeIfSpent(spent code) = false; want true")
	}
	// A redemption of the same family that passed its checks before the
	// replay must not hand out tokens afterwards.
	if resp, e := h.d.mint(h.srv.URL, g, nil, "", now); e != errDevRevoked || resp != nil {
		t.Errorf("mint for a revoked family = %v, %v; want errDevRevoked", resp, e)
	}
	h.d.mu.Lock()
	n := len(h.d.refresh)
	h.d.mu.Unlock()
	if n != 0 {
		t.Errorf("%d refresh tokens stored for a revoked family; want 0", n)
	}
}

// TestDevIDPRefreshExpiry: a refresh token is dead after devRefreshTTL.
func TestDevIDPRefreshExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Now())
	h := newDevHarness(t, clock)
	code, verifier := h.code(t, "ivan", "Heroes.Read")
	_, first := h.token(t, h.codeForm(code, verifier), nil)
	clock.advance(devRefreshTTL)
	resp, m := h.token(t, h.refreshForm(first["refresh_token"].(string)), nil)
	if e, n := devErrorCode(m); resp.StatusCode != 400 || e != "invalid_grant" || n != 70008 {
		t.Errorf("refresh after %v = %d %s %d; want 400 invalid_grant 70008", devRefreshTTL, resp.StatusCode, e, n)
	}
}

// TestDevIDPSignInForm: user input is HTML-escaped, bad input shows the form
// again, cancel is access_denied, and the form is bounded and read from
// the body only.
func TestDevIDPSignInForm(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	_, challenge := newPKCE()
	const xss = `<script>alert(1)</script>`

	t.Run("user name in login_hint is escaped", func(t *testing.T) {
		t.Parallel()
		p := h.authParams(challenge, map[string]string{"login_hint": `"><` + xss[1:], "state": `x"><img src=y>`})
		resp, body := h.get(t, h.url("/oauth2/v2.0/authorize")+"?"+p.Encode())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET authorize = %d; want 200", resp.StatusCode)
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
			t.Errorf("sign-in form holds unescaped markup:\n%s", body)
		}
		if !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("sign-in form does not show the escaped user name")
		}
	})
	t.Run("rejected user name is shown escaped", func(t *testing.T) {
		t.Parallel()
		resp, body := h.signIn(t, h.authParams(challenge, nil), xss+"\x07", "Heroes.Read")
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Fatalf("sign-in with a control character = %d; want 400, the form again", resp.StatusCode)
		}
		if strings.Contains(body, "<script") || !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("form shown again holds unescaped markup:\n%s", body)
		}
		if !strings.Contains(body, `value="Heroes.Read" checked`) || strings.Contains(body, `value="Admin" checked`) {
			t.Error("form shown again does not keep the ticked scopes")
		}
	})
	t.Run("user name with markup signs in as typed", func(t *testing.T) {
		t.Parallel()
		verifier, challenge := newPKCE()
		resp, _ := h.signIn(t, h.authParams(challenge, nil), xss, "Heroes.Read")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		_, tok := h.token(t, h.codeForm(loc.Query().Get("code"), verifier), nil)
		pub, _ := h.publicKey(t)
		_, at := verifyDevJWT(t, pub, tok["access_token"].(string))
		if at["name"] != xss {
			t.Errorf("name = %v; want %q", at["name"], xss)
		}
	})

	tests := []struct {
		name    string
		user    string
		edit    func(f url.Values)
		status  int
		wantErr string // error in the redirect, when status is 302
	}{
		{name: "empty user name shows the form again", user: "  ", status: 400},
		{name: "no scope ticked shows the form again", user: "x", edit: func(f url.Values) { f.Del("grant") }, status: 400},
		{name: "overlong user name shows the form again", user: strings.Repeat("é", devMaxUser+1), status: 400},
		{name: "cancel sends access_denied", user: "x", edit: func(f url.Values) { f.Set("action", "cancel") }, status: 302, wantErr: "access_denied"},
		{name: "tampered hidden redirect uri is shown", user: "x", edit: func(f url.Values) { f.Set("redirect_uri", "https://evil.example/") }, status: 400},
		{name: "tampered hidden challenge method is redirected", user: "x", edit: func(f url.Values) { f.Set("code_challenge_method", "plain") }, status: 302, wantErr: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := h.authParams(challenge, nil)
			f.Set("username", tc.user)
			f.Set("action", "signin")
			f.Set("grant", "Heroes.Read")
			if tc.edit != nil {
				tc.edit(f)
			}
			resp, _ := h.postForm(t, h.url("/oauth2/v2.0/authorize"), f, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("sign-in = %d; want %d", resp.StatusCode, tc.status)
			}
			if tc.wantErr != "" {
				loc, _ := url.Parse(resp.Header.Get("Location"))
				if loc.Query().Get("error") != tc.wantErr || loc.Query().Has("code") {
					t.Errorf("redirect = %s; want error=%s and no code", loc, tc.wantErr)
				}
			}
		})
	}

	t.Run("oversized form is refused", func(t *testing.T) {
		t.Parallel()
		f := h.authParams(challenge, nil)
		f.Set("username", "x")
		f.Set("pad", strings.Repeat("p", devMaxForm))
		resp, _ := h.postForm(t, h.url("/oauth2/v2.0/authorize"), f, nil)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized sign-in form = %d; want 413", resp.StatusCode)
		}
	})
	t.Run("query parameters do not stand in for the form", func(t *testing.T) {
		t.Parallel()
		u := h.url("/oauth2/v2.0/authorize") + "?" + h.authParams(challenge, nil).Encode()
		resp, _ := h.postForm(t, u, url.Values{"username": {"x"}}, nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("sign-in with the request only in the query = %d; want 400", resp.StatusCode)
		}
	})
}

// TestDevIDPLogout: post_logout_redirect_uri is followed only on the
// service's origin.
func TestDevIDPLogout(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	tests := []struct {
		name         string
		query        url.Values
		wantLocation string // "" means a page, no redirect
	}{
		{name: "same origin is followed with state", query: url.Values{"post_logout_redirect_uri": {h.srv.URL + "/"}, "state": {"s1"}}, wantLocation: h.srv.URL + "/?state=s1"},
		{name: "same origin path is followed", query: url.Values{"post_logout_redirect_uri": {h.srv.URL + "/bye"}}, wantLocation: h.srv.URL + "/bye"},
		{name: "other origin is not followed", query: url.Values{"post_logout_redirect_uri": {"https://evil.example/"}}},
		{name: "other port is not followed", query: url.Values{"post_logout_redirect_uri": {"http://127.0.0.1:1/"}}},
		{name: "user info trick is not followed", query: url.Values{"post_logout_redirect_uri": {"http://" + h.srv.Listener.Addr().String() + "@evil.example/"}}},
		{name: "relative uri is not followed", query: url.Values{"post_logout_redirect_uri": {"//evil.example/"}}},
		{name: "no uri shows the page", query: url.Values{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := h.get(t, h.url("/oauth2/v2.0/logout")+"?"+tc.query.Encode())
			if tc.wantLocation != "" {
				if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.wantLocation {
					t.Errorf("logout = %d to %q; want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), tc.wantLocation)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || !strings.Contains(body, "Signed out") {
				t.Errorf("logout = %d, Location %q; want the signed-out page", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

// TestDevIDPBounds: outstanding codes are capped, expired ones dropped, and
// full maps evict the entries expiring soonest.
func TestDevIDPBounds(t *testing.T) {
	t.Parallel()
	d, err := newDevIDP()
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock(time.Now())
	d.now = clock.now
	_, challenge := newPKCE()
	req, e := parseDevAuthRequest(url.Values{
		"client_id": {devClientID}, "redirect_uri": {"http://localhost/auth/callback"}, "response_type": {"code"},
		"scope": {"openid"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}, "http://localhost")
	if e != nil {
		t.Fatal(e)
	}
	for range devMaxCodes {
		if _, e := d.issueCode(req, "u", nil, false); e != nil {
			t.Fatalf("issueCode below the cap: %v", e)
		}
	}
	if _, e := d.issueCode(req, "u", nil, false); e == nil || e.code != "temporarily_unavailable" {
		t.Errorf("issueCode at the cap = %v; want temporarily_unavailable", e)
	}
	clock.advance(devCodeTTL)
	if _, e := d.issueCode(req, "u", nil, false); e != nil {
		t.Errorf("issueCode after the codes expired = %v; want expired ones dropped", e)
	}
	d.mu.Lock()
	n := len(d.codes)
	d.mu.Unlock()
	if n != 1 {
		t.Errorf("%d codes outstanding after expiry; want 1", n)
	}

	m := map[string]devSpent{}
	now := time.Now()
	for i := range 5 {
		m[string(rune('a'+i))] = devSpent{expires: now.Add(time.Duration(i+1) * time.Minute)}
	}
	m["old"] = devSpent{expires: now}
	devEvict(m, now, 5)
	if _, ok := m["a"]; ok || len(m) != 4 {
		t.Errorf("devEvict left %v; want the expired and the soonest-expiring entries gone", m)
	}
}

// TestParseDevScope: the scope parameter's accepted forms and refusals.
func TestParseDevScope(t *testing.T) {
	t.Parallel()
	api := "api://" + devClientID + "/"
	tests := []struct {
		name    string
		in      string
		api     []string
		openid  bool
		offline bool
		wantErr bool
	}{
		{name: "login scope of the service", in: "openid profile offline_access " + api + "Heroes.Read " + api + "Admin", api: []string{"Heroes.Read", "Admin"}, openid: true, offline: true},
		{name: "order and duplicates do not matter", in: api + "Admin " + api + "Heroes.Read " + api + "Admin", api: []string{"Heroes.Read", "Admin"}},
		{name: "client id without api scheme", in: devClientID + "/Heroes.Create", api: []string{"Heroes.Create"}},
		{name: "dot default grants every scope", in: api + ".default", api: []string{"Heroes.Read", "Heroes.Create", "Admin"}},
		{name: "extra spaces are ignored", in: "  openid  ", openid: true},
		{name: "names are case-sensitive", in: api + "heroes.read", wantErr: true},
		{name: "another API", in: "api://other/Heroes.Read", wantErr: true},
		{name: "unknown bare scope", in: "Heroes.Read", wantErr: true},
		{name: "oversized", in: strings.Repeat("openid ", devMaxScope), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseDevScope(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseDevScope(%q) error = %v; want error %v", tc.in, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(got.api, tc.api) || got.openid != tc.openid || got.offline != tc.offline {
				t.Errorf("parseDevScope(%q) = %+v; want api %v openid %v offline %v", tc.in, got, tc.api, tc.openid, tc.offline)
			}
		})
	}
}

// FuzzParseDevScope: never panics, grants only known scopes, bounds errors.
func FuzzParseDevScope(f *testing.F) {
	f.Add("openid profile offline_access api://" + devClientID + "/Heroes.Read")
	f.Add(devClientID + "/.default")
	f.Add("api://x/Admin \x00 é")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := parseDevScope(s)
		if err != nil {
			if len(err.Error()) > 256 {
				t.Errorf("parseDevScope error is %d bytes long; want it bounded", len(err.Error()))
			}
			return
		}
		for _, n := range sc.api {
			if !slices.Contains(devAPIScopes(), n) {
				t.Errorf("parseDevScope(%q) grants unknown scope %q", s, n)
			}
		}
		if len(sc.api) > len(devAPIScopes()) {
			t.Errorf("parseDevScope(%q) = %v; want no duplicates", s, sc.api)
		}
	})
}

// FuzzDevUserName: an accepted name is trimmed, valid, short, control-free.
func FuzzDevUserName(f *testing.F) {
	f.Add("Ada Lovelace")
	f.Add(" \x00<b>")
	f.Add(strings.Repeat("é", 70))
	f.Fuzz(func(t *testing.T, s string) {
		name, problem := devUserName(s)
		if problem != "" {
			return
		}
		if name == "" || name != strings.TrimSpace(name) || !utf8.ValidString(name) ||
			strings.ContainsFunc(name, unicode.IsControl) || utf8.RuneCountInString(name) > devMaxUser {
			t.Errorf("devUserName(%q) accepted %q", s, name)
		}
	})
}

// FuzzDevIDPToken posts arbitrary bodies to the token endpoint: every
// answer is an Entra-style JSON error or a token response, never a 5xx.
func FuzzDevIDPToken(f *testing.F) {
	d, err := newDevIDP()
	if err != nil {
		f.Fatal(err)
	}
	d.getenv(func(string) string { return "" }, "http://localhost:8000")
	mux := http.NewServeMux()
	d.addRoutes(mux, slog.New(slog.DiscardHandler))
	f.Add("grant_type=authorization_code&code=abc&client_id="+devClientID+"&client_secret="+d.secret, "")
	f.Add("grant_type=refresh_token&refresh_token=x&client_id="+devClientID, "Basic Og==")
	f.Add("%zz&&==", "Basic %%%")
	f.Fuzz(func(t *testing.T, body, authz string) {
		r := httptest.NewRequest(http.MethodPost, "/devidp/"+devTenantID+"/oauth2/v2.0/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("token endpoint answered %d to %q", w.Code, body)
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body.String())
		}
		if w.Code != http.StatusOK && m["error"] == nil {
			t.Fatalf("error answer %d has no error member: %v", w.Code, m)
		}
	})
}

// FuzzDevIDPAuthorize sends arbitrary queries to the authorize endpoint:
// no 5xx, and a redirect only ever goes to the configured redirect URI.
func FuzzDevIDPAuthorize(f *testing.F) {
	d, err := newDevIDP()
	if err != nil {
		f.Fatal(err)
	}
	env := d.getenv(func(string) string { return "" }, "http://localhost:8000")
	mux := http.NewServeMux()
	d.addRoutes(mux, slog.New(slog.DiscardHandler))
	_, challenge := newPKCE()
	good := url.Values{"client_id": {devClientID}, "redirect_uri": {env("REDIRECT_URI")}, "response_type": {"code"},
		"scope": {"openid"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"s"}}
	f.Add(good.Encode())
	f.Add("client_id=" + devClientID + "&redirect_uri=http%3A%2F%2Flocalhost%3A8000%2Fauth%2Fcallback&prompt=none")
	f.Add("redirect_uri=https://evil.example/&client_id=x")
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/devidp/"+devTenantID+"/oauth2/v2.0/authorize", nil)
		r.URL.RawQuery = query
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("authorize answered %d to %q", w.Code, query)
		}
		if loc := w.Header().Get("Location"); loc != "" && !strings.HasPrefix(loc, env("REDIRECT_URI")+"?") {
			t.Fatalf("authorize redirected to %q for %q; want only the redirect URI", loc, query)
		}
	})
}

// The service's sign-in scope, parsed: the OpenID Connect scopes as flags,
// the dev API's scopes as bare names, as Entra puts them in scp.
func Example_parseDevScope() {
	sc, err := parseDevScope("openid profile offline_access api://" + devClientID + "/Admin api://" + devClientID + "/Heroes.Read")
	fmt.Println(sc.api, sc.openid, sc.offline, err)
	_, err = parseDevScope("openid api://another-app/Heroes.Read")
	fmt.Println(err)
	// Output:
	// [Heroes.Read Admin] true true <nil>
	// devidp: invalid scope: the scope "api://another-app/Heroes.Read" is not valid
}

// TestDevIDPGetenvManagedIdentity: with AZURE_CLIENT_ASSERTION=managed-identity
// the dev settings hold no secret and point the managed identity at the dev
// identity endpoint, with its header and identity.
func TestDevIDPGetenvManagedIdentity(t *testing.T) {
	t.Parallel()
	d, err := newDevIDP()
	if err != nil {
		t.Fatal(err)
	}
	real := map[string]string{"AZURE_CLIENT_ASSERTION": " managed-identity ", "AZURE_CLIENT_SECRET": "real-secret",
		"IDENTITY_ENDPOINT": "http://localhost:42356/msi/token", "IDENTITY_HEADER": "platform-header"}
	base := "http://localhost:8123"
	cfg, err := loadConfig(d.getenv(func(k string) string { return real[k] }, base))
	if err != nil {
		t.Fatalf("loadConfig(dev getenv) = %v; want a valid config", err)
	}
	want := managedIdentityOptions{Endpoint: base + "/devidp/msi/token", Header: d.identityHeader, ClientID: devIdentityClientID, Audience: "api://AzureADTokenExchange"}
	if cfg.ClientAuth != clientAuthManagedIdentity || cfg.ClientSecret != "" || cfg.loginOptions().ManagedIdentity != want {
		t.Errorf("dev managed identity settings: auth %q, secret %q, %+v; want managed-identity, none, %+v", cfg.ClientAuth, cfg.ClientSecret, cfg.loginOptions().ManagedIdentity, want)
	}
}

// identityGet asks the dev identity endpoint for a token with query and
// header, and returns the status and the decoded answer.
func (h *devHarness) identityGet(tb testing.TB, query, header string) (int, map[string]any) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/devidp/msi/token?"+query, nil)
	if header != "" {
		req.Header.Set("X-IDENTITY-HEADER", header)
	}
	resp, raw := h.do(tb, req)
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		tb.Fatalf("identity endpoint answer is not JSON: %q", raw)
	}
	return resp.StatusCode, m
}

// TestDevIDPIdentityEndpoint: the dev identity endpoint answers as App
// Service's does for its one identity, and refuses what App Service
// refuses.
func TestDevIDPIdentityEndpoint(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	pub, _ := h.publicKey(t)
	hdr := h.d.identityHeader
	exchange := "api-version=2019-08-01&resource=" + url.QueryEscape("api://AzureADTokenExchange")
	tests := []struct {
		name, query, header string
		status              int
		iss, aud            string
	}{
		{"exchange token, user-assigned", exchange + "&client_id=" + devIdentityClientID, hdr, 200, h.srv.URL + "/devidp/" + devTenantID + "/v2.0", "api://AzureADTokenExchange"},
		{"exchange token, no client_id", exchange, hdr, 200, h.srv.URL + "/devidp/" + devTenantID + "/v2.0", "api://AzureADTokenExchange"},
		{"storage token", "api-version=2019-08-01&resource=" + url.QueryEscape("https://storage.azure.com/"), hdr, 200, "https://sts.windows.net/" + devTenantID + "/", "https://storage.azure.com"},
		{"no header", exchange, "", 401, "", ""},
		{"wrong header", exchange, hdr + "x", 401, "", ""},
		{"old api-version", "api-version=2017-09-01&resource=api://AzureADTokenExchange", hdr, 400, "", ""},
		{"another identity", exchange + "&client_id=" + testClientID, hdr, 400, "", ""},
		{"identity by principal id", exchange + "&principal_id=" + devIdentityPrincipalID, hdr, 400, "", ""},
		{"unknown resource", "api-version=2019-08-01&resource=https://vault.azure.net", hdr, 400, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, m := h.identityGet(t, tc.query, tc.header)
			if status != tc.status {
				t.Fatalf("GET /devidp/msi/token?%s = %d %v; want %d", tc.query, status, m, tc.status)
			}
			if status != 200 {
				if m["statusCode"] != float64(status) || m["message"] == "" {
					t.Errorf("error answer = %v; want App Service's {statusCode, message}", m)
				}
				return
			}
			tok, _ := m["access_token"].(string)
			_, c := verifyDevJWT(t, pub, tok)
			exp, err := strconv.ParseInt(fmt.Sprint(m["expires_on"]), 10, 64)
			if c["iss"] != tc.iss || c["aud"] != tc.aud || c["sub"] != devIdentityPrincipalID || err != nil || exp != int64(c["exp"].(float64)) {
				t.Errorf("token iss %v aud %v sub %v, expires_on %v; want %s, %s, %s and exp as a string", c["iss"], c["aud"], c["sub"], m["expires_on"], tc.iss, tc.aud, devIdentityPrincipalID)
			}
		})
	}
}

// TestDevIDPPublicClient: the dev client's single-page-application redirect
// URI (/docs/oauth2-redirect, Swagger UI's) gets codes redeemed as Entra
// redeems them for an SPA: by a browser (Origin), with PKCE, without any
// client credential; a browser may not redeem a code of the Web redirect
// URI; and the two redirect URIs' codes do not mix.
func TestDevIDPPublicClient(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	spa := h.srv.URL + docsRedirectPath
	// code signs in with redirect, asking for offline_access too.
	code := func(t *testing.T, redirect string) (string, string) {
		verifier, challenge := newPKCE()
		resp, body := h.signIn(t, h.authParams(challenge, map[string]string{"redirect_uri": redirect, "nonce": ""}), "swagger", "Heroes.Read")
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), redirect+"?") {
			t.Fatalf("sign-in for %s = %d to %q; want 302 there: %s", redirect, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		return loc.Query().Get("code"), verifier
	}
	tests := []struct {
		name       string
		redirect   string // where the code was issued for
		form       func(f url.Values)
		origin     string
		basic      bool
		wantStatus int
		wantAADSTS int
	}{
		{"browser, PKCE, no secret", spa, nil, h.srv.URL, false, 200, 0},
		{"a secret from the public client", spa, func(f url.Values) { f.Set("client_secret", h.env("AZURE_CLIENT_SECRET")) }, h.srv.URL, false, 400, 700025},
		{"Basic credentials from the public client", spa, nil, h.srv.URL, true, 400, 700025},
		{"no Origin: not a browser", spa, nil, "", false, 400, 9002327},
		{"wrong code_verifier", spa, func(f url.Values) { f.Set("code_verifier", strings.Repeat("v", 43)) }, h.srv.URL, false, 400, 501481},
		{"no client_id", spa, func(f url.Values) { f.Del("client_id") }, h.srv.URL, false, 400, 900144},
		{"a browser redeeming the Web redirect URI's code", h.env("REDIRECT_URI"), nil, h.srv.URL, false, 400, 9002326},
		{"the Web code sent with the SPA redirect URI", h.env("REDIRECT_URI"), func(f url.Values) { f.Set("redirect_uri", spa); f.Del("client_secret") }, h.srv.URL, false, 400, 50011},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, verifier := code(t, tc.redirect)
			f := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {tc.redirect},
				"code_verifier": {verifier}, "client_id": {devClientID}}
			if tc.redirect != spa {
				f.Set("client_secret", h.env("AZURE_CLIENT_SECRET"))
			}
			if tc.form != nil {
				tc.form(f)
			}
			req, _ := http.NewRequest("POST", h.url("/oauth2/v2.0/token"), strings.NewReader(f.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.basic {
				req.SetBasicAuth(devClientID, h.env("AZURE_CLIENT_SECRET"))
			}
			resp, body := h.do(t, req)
			var m map[string]any
			if err := json.Unmarshal([]byte(body), &m); err != nil || resp.StatusCode != tc.wantStatus {
				t.Fatalf("token = %d %s; want %d", resp.StatusCode, body, tc.wantStatus)
			}
			if _, aadsts := devErrorCode(m); aadsts != tc.wantAADSTS {
				t.Errorf("token error AADSTS%d; want AADSTS%d: %s", aadsts, tc.wantAADSTS, body)
			}
			if tc.wantStatus != 200 {
				return
			}
			pub, _ := h.publicKey(t)
			_, claims := verifyDevJWT(t, pub, m["access_token"].(string))
			if claims["azpacr"] != "0" || claims["scp"] != "Heroes.Read" {
				t.Errorf("access token azpacr %v scp %v; want 0 (public client) and Heroes.Read", claims["azpacr"], claims["scp"])
			}
			if m["refresh_token"] != nil {
				t.Errorf("the public client got a refresh token")
			}
		})
	}
}

// TestDevIDPFederatedAssertion: the dev token endpoint accepts the dev
// managed identity's exchange token as the client's assertion, in place of
// the secret, and refuses the assertions Entra would refuse.
func TestDevIDPFederatedAssertion(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Now())
	h := newDevHarness(t, clock)
	identityToken := func(resource string) string {
		_, m := h.identityGet(t, "api-version=2019-08-01&resource="+url.QueryEscape(resource), h.d.identityHeader)
		return m["access_token"].(string)
	}
	exchange := identityToken("api://AzureADTokenExchange")
	foreign, err := signRS256(testKeys()[0], h.d.kid, map[string]any{"iss": h.srv.URL + "/devidp/" + devTenantID + "/v2.0",
		"sub": devIdentityPrincipalID, "aud": "api://AzureADTokenExchange", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		assertion string
		later     time.Duration
		status    int
		aadsts    int
	}{
		{"the identity's exchange token", exchange, 0, 200, 0},
		{"the identity's storage token (issuer, audience)", identityToken("https://storage.azure.com/"), 0, 401, 700211},
		{"signed by another key", foreign, 0, 401, 700027},
		{"expired", exchange, 2 * devTokenTTL, 401, 700024},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, verifier := h.code(t, "erin", "Heroes.Read")
			f := h.codeForm(code, verifier)
			f.Del("client_secret")
			f.Set("client_assertion_type", clientAssertionType)
			f.Set("client_assertion", tc.assertion)
			clock.advance(tc.later)
			defer clock.advance(-tc.later)
			resp, m := h.token(t, f, nil)
			_, n := devErrorCode(m)
			if resp.StatusCode != tc.status || n != tc.aadsts {
				t.Errorf("token with %s = %d AADSTS%d; want %d AADSTS%d (%v)", tc.name, resp.StatusCode, n, tc.status, tc.aadsts, m["error_description"])
			}
		})
	}
}

// TestFederatedCredentialCheck: federatedCredential.check refuses every
// assertion that does not match the credential exactly, with Entra's code.
func TestFederatedCredentialCheck(t *testing.T) {
	t.Parallel()
	fed := newTestFederation()
	fc := fed.credential()
	now := time.Now()
	unsigned := func(claims string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + "."
	}
	other := testFederation{issuer: fed.issuer, subject: fed.subject, key: testKeys()[2]}
	tests := []struct {
		name      string
		assertion string
		want      int
	}{
		{"good", fed.assertion(t, nil), 0},
		{"aud as a string", fed.assertion(t, map[string]any{"aud": "api://AzureADTokenExchange"}), 0},
		{"another issuer", fed.assertion(t, map[string]any{"iss": "https://oidc.test.example/cluster-2/"}), 700211},
		{"issuer without its trailing slash", fed.assertion(t, map[string]any{"iss": strings.TrimSuffix(fed.issuer, "/")}), 700211},
		{"another subject", fed.assertion(t, map[string]any{"sub": "system:serviceaccount:heroes:default"}), 700213},
		{"another audience", fed.assertion(t, map[string]any{"aud": "api://AzureADTokenExchangeUSGov"}), 700212},
		{"expired", fed.assertion(t, map[string]any{"exp": now.Add(-2 * time.Minute).Unix()}), 700024},
		{"not yet valid", fed.assertion(t, map[string]any{"nbf": now.Add(2 * time.Minute).Unix()}), 700024},
		{"no exp", fed.assertion(t, map[string]any{"exp": nil}), 700024},
		{"signed by another key", other.assertion(t, nil), 700027},
		{"alg none", unsigned(`{"iss":"` + fed.issuer + `"}`), 50027},
		{"not a JWT", "x.y.z", 50027},
		{"empty", "", 50027},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, desc := fc.check(tc.assertion, now); got != tc.want {
				t.Errorf("check(%s) = AADSTS%d %q; want AADSTS%d", tc.name, got, desc, tc.want)
			}
		})
	}
}

// TestDevIDPRedirectURIs: the authorize endpoint accepts exactly the two
// registered redirect URIs and names both when another is asked for.
func TestDevIDPRedirectURIs(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	_, challenge := newPKCE()
	for _, tc := range []struct {
		redirect string
		ok       bool
	}{
		{h.srv.URL + "/auth/callback", true},
		{h.srv.URL + "/docs/oauth2-redirect", true},
		{h.srv.URL + "/docs/oauth2-redirect.html", false},
		{h.srv.URL + "/docs", false},
		{"https://evil.example/docs/oauth2-redirect", false},
	} {
		resp, body := h.get(t, h.url("/oauth2/v2.0/authorize")+"?"+h.authParams(challenge, map[string]string{"redirect_uri": tc.redirect}).Encode())
		if got := resp.StatusCode == http.StatusOK; got != tc.ok {
			t.Errorf("authorize with redirect_uri %s = %d; want accepted %v", tc.redirect, resp.StatusCode, tc.ok)
		}
		if !tc.ok && !(strings.Contains(body, "AADSTS50011") && strings.Contains(body, "/docs/oauth2-redirect (Single-page application)")) {
			t.Errorf("refusal of %s does not name the registered URIs: %s", tc.redirect, body)
		}
	}
}
