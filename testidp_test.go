package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Test constants: a fixed tenant and client, as GUIDs like Entra's.
const (
	testTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "test-secret-value-0123456789"
)

// testKeys are RSA-2048 keys made once per test binary (generating one takes
// tens of milliseconds). The index is stable; tests pick keys by index.
var testKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 3)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// testIDP is a fake Microsoft identity platform tenant on an httptest.Server.
// It serves the v2.0 discovery document and key set under /{tenant}/, counts
// requests, and lets a test publish keys, break endpoints, and answer the
// token endpoint. Safe for concurrent use.
type testIDP struct {
	srv *httptest.Server

	jwksHits      atomic.Int64
	discoveryHits atomic.Int64

	mu sync.Mutex // guards the fields below
	// published is the key set served at jwks_uri, by kid.
	published map[string]*rsa.PrivateKey
	// signKID is the kid token() signs with.
	signKID string
	// jwksHandler, when set, answers the jwks_uri instead (to break it).
	jwksHandler http.HandlerFunc
	// tokenHandler, when set, answers the token endpoint.
	tokenHandler http.HandlerFunc
	// traceparents are the traceparent fields received, by path.
	traceparents map[string][]string
}

// newTestIDP starts a fake provider publishing testKeys()[0] as kid "k0".
func newTestIDP(tb testing.TB) *testIDP {
	tb.Helper()
	p := &testIDP{published: map[string]*rsa.PrivateKey{"k0": testKeys()[0]}, signKID: "k0", traceparents: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", p.serveDiscovery)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", p.serveJWKS)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		h := p.tokenHandler
		p.mu.Unlock()
		if h == nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		h(w, r)
	})
	// Set p.srv before the server starts: its handlers read p.srv.URL.
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.traceparents[r.URL.Path] = append(p.traceparents[r.URL.Path], r.Header.Get("traceparent"))
		p.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	p.srv.Start()
	tb.Cleanup(p.srv.Close)
	return p
}

// issuer is the v2 issuer of tenant at this provider; for "organizations"
// and "common" it holds the {tenantid} placeholder, as Entra's does.
func (p *testIDP) issuer(tenant string) string {
	if tenant == "organizations" || tenant == "common" {
		tenant = "{tenantid}"
	}
	return p.srv.URL + "/" + tenant + "/v2.0"
}

func (p *testIDP) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	p.discoveryHits.Add(1)
	t := r.PathValue("tenant")
	base := p.srv.URL + "/" + t
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.issuer(t),
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (p *testIDP) serveJWKS(w http.ResponseWriter, r *http.Request) {
	p.jwksHits.Add(1)
	p.mu.Lock()
	h := p.jwksHandler
	keys := make([]map[string]string, 0, len(p.published))
	for kid, k := range p.published {
		keys = append(keys, publicJWK(&k.PublicKey, kid, p.srv.URL+"/{tenantid}/v2.0"))
	}
	p.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// publish replaces the served key set with the given kids → keys.
func (p *testIDP) publish(keys map[string]*rsa.PrivateKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published = maps.Clone(keys)
}

// getenv returns settings pointing the service at this provider: tenant
// testTenant, client testClientID, API scope api://testClientID/Heroes.Read.
// extra entries override or add settings.
func (p *testIDP) getenv(extra map[string]string) func(string) string {
	env := map[string]string{
		"AZURE_CLIENT_ID":      testClientID,
		"AZURE_CLIENT_SECRET":  testSecret,
		"AZURE_TENANT_ID":      testTenant,
		"API_SCOPE":            "api://" + testClientID + "/Heroes.Read",
		"AZURE_AUTHORITY_HOST": p.srv.URL,
		"REDIRECT_URI":         "http://localhost:8000/auth/callback",
	}
	maps.Copy(env, extra)
	return func(k string) string { return env[k] }
}

// config loads a config from p.getenv(extra), failing the test on error.
func (p *testIDP) config(tb testing.TB, extra map[string]string) config {
	tb.Helper()
	cfg, err := loadConfig(p.getenv(extra))
	if err != nil {
		tb.Fatalf("loadConfig: %v", err)
	}
	return cfg
}

// claims returns the claims of a valid v2 access token for the test API,
// issued now and valid for an hour, with scope Heroes.Read.
func (p *testIDP) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": p.issuer(testTenant),
		"aud": testClientID,
		"tid": testTenant,
		"oid": "00000000-0000-0000-0000-0000000000aa",
		"sub": "test-subject",
		"azp": "22222222-3333-4444-5555-666666666666",
		"scp": "Heroes.Read",
		"ver": "2.0",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// token signs claims with the provider's current signing key. A claim set to
// nil in override is removed; other entries replace or add claims.
func (p *testIDP) token(tb testing.TB, override map[string]any) string {
	tb.Helper()
	c := p.claims(time.Now())
	for k, v := range override {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	p.mu.Lock()
	kid := p.signKID
	key := p.published[kid]
	p.mu.Unlock()
	if key == nil {
		key = testKeys()[0]
	}
	tok, err := signRS256(key, kid, c)
	if err != nil {
		tb.Fatalf("signRS256: %v", err)
	}
	return tok
}

// tokenJSON writes a token endpoint answer (RFC 6749 §5.1) built from fields.
func tokenJSON(w http.ResponseWriter, fields map[string]any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(fields)
}

// bearer sets the Authorization header of r to "Bearer tok".
func bearer(r *http.Request, tok string) *http.Request {
	r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok))
	return r
}

// fakeClock is a settable clock for the verifier, the key set's rate limits
// and the dev provider. Safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// newFakeClock makes a clock standing at t.
func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

// now returns the clock's time.
func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// set moves the clock to t.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// advance moves the clock forward by d.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

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
