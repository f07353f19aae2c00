package main

import (
	"cmp"
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
	"slices"
	"strconv"
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
	if form.Get("grant_type") == "client_credentials" {
		ti.clientCredentials(w, form)
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

// clientCredentials answers a client credentials grant (RFC 6749 §4.4) for
// scope <resource>/.default with an access token for the resource, shaped
// as Entra's v1 tokens for Azure Storage (iss https://sts.windows.net/{tid}/,
// aud the resource without its trailing slash), which Azurite's --oauth
// basic accepts.
func (ti *tokenIssuer) clientCredentials(w http.ResponseWriter, form url.Values) {
	resource, ok := strings.CutSuffix(form.Get("scope"), "/.default")
	if !ok || strings.Contains(form.Get("scope"), " ") {
		entraError(w, 400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", 1002012)
		return
	}
	tok := ti.idp.token(ti.tb, map[string]any{"aud": resource, "iss": "https://sts.windows.net/" + testTenant + "/",
		"ver": "1.0", "scp": nil, "appid": testClientID, "idtyp": "app"})
	ti.mu.Lock()
	ti.issued = append(ti.issued, tok)
	ti.mu.Unlock()
	tokenJSON(w, map[string]any{"token_type": "Bearer", "access_token": tok, "expires_in": 3599})
}

// testFederation is a workload identity issuer for tests, as an AKS
// cluster's OIDC issuer is: it signs assertions (testKeys()[1], which the
// test IdP does not publish) for one subject, and gives the federated
// credential that trusts them.
type testFederation struct {
	issuer, subject string
	key             *rsa.PrivateKey
}

// newTestFederation is the test workload identity issuer.
func newTestFederation() testFederation {
	return testFederation{issuer: "https://oidc.test.example/cluster-1/", subject: "system:serviceaccount:heroes:heroes-auth", key: testKeys()[1]}
}

// credential is the federated credential of the test app that trusts f.
func (f testFederation) credential() federatedCredential {
	return federatedCredential{Issuer: f.issuer, Subject: f.subject, Audience: defaultExchangeAud, Key: &f.key.PublicKey}
}

// assertion signs a token of f for the token exchange, valid for an hour,
// with a random jti. A claim set to nil in override is removed; other
// entries replace or add claims.
func (f testFederation) assertion(tb testing.TB, override map[string]any) string {
	tb.Helper()
	now := time.Now()
	c := map[string]any{"iss": f.issuer, "sub": f.subject, "aud": []string{defaultExchangeAud},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": rand.Text()}
	for k, v := range override {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	tok, err := signRS256(f.key, "federation-key", c)
	if err != nil {
		tb.Fatalf("signRS256: %v", err)
	}
	return tok
}

// assertionLog records the client assertions a provider accepted, by
// grant_type. Safe for concurrent use.
type assertionLog struct {
	mu       sync.Mutex // guards accepted
	accepted []string   // "grant_type assertion"
}

// checkFederated returns a checkClient that accepts only a federated
// client assertion fc trusts (federatedCredential.check), for testClientID,
// with no secret or HTTP Basic beside it, and records each one accepted.
func (l *assertionLog) checkFederated(fc federatedCredential) func(r *http.Request, form url.Values) error {
	return func(r *http.Request, form url.Values) error {
		if _, _, ok := r.BasicAuth(); ok || form.Has("client_secret") {
			return errors.New("a secret came with the assertion")
		}
		if form.Get("client_id") != testClientID || form.Get("client_assertion_type") != clientAssertionType {
			return fmt.Errorf("client_id %q, client_assertion_type %q", form.Get("client_id"), form.Get("client_assertion_type"))
		}
		if code, desc := fc.check(form.Get("client_assertion"), time.Now()); code != 0 {
			return fmt.Errorf("AADSTS%d: %s", code, desc)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.accepted = append(l.accepted, form.Get("grant_type")+" "+form.Get("client_assertion"))
		return nil
	}
}

// list returns the accepted "grant_type assertion" entries.
func (l *assertionLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.accepted)
}

// fakeIdentity is a managed identity endpoint as App Service and Container
// Apps offer at IDENTITY_ENDPOINT (GET ?api-version=2019-08-01&resource=…
// [&client_id=…] with X-IDENTITY-HEADER), on loopback. It checks the
// request and answers tokens of fed's subject for the resource asked
// (signed by fed, so a test provider trusting fed accepts those for the
// token exchange; for Azure Storage, with Entra's v1 storage issuer and
// audience, as Azurite's --oauth basic wants them), with expires_on as a
// string, as those platforms send it.
// Safe for concurrent use.
type fakeIdentity struct {
	tb       testing.TB
	srv      *httptest.Server
	header   string // the IDENTITY_HEADER
	clientID string // the user-assigned identity's client id
	fed      testFederation

	mu sync.Mutex // guards the fields below
	// requests are the resources asked for, in order.
	requests []string
	// answer, when set, answers instead (to break the endpoint).
	answer http.HandlerFunc
	// lifetime of the tokens issued; 0 means an hour.
	lifetime time.Duration
}

// newFakeIdentity starts a fake managed identity endpoint.
func newFakeIdentity(tb testing.TB) *fakeIdentity {
	fi := &fakeIdentity{tb: tb, header: "identity-header-" + rand.Text(), clientID: "99999999-8888-7777-6666-555555555555", fed: newTestFederation()}
	fi.srv = httptest.NewServer(http.HandlerFunc(fi.serve))
	tb.Cleanup(fi.srv.Close)
	return fi
}

// env is the settings that make the service use this endpoint with no
// client secret.
func (fi *fakeIdentity) env() map[string]string {
	return map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ASSERTION": "managed-identity",
		"AZURE_MANAGED_IDENTITY_CLIENT_ID": fi.clientID, "IDENTITY_ENDPOINT": fi.srv.URL + "/msi/token", "IDENTITY_HEADER": fi.header}
}

func (fi *fakeIdentity) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fi.mu.Lock()
	fi.requests = append(fi.requests, q.Get("resource"))
	answer, life := fi.answer, cmp.Or(fi.lifetime, time.Hour)
	fi.mu.Unlock()
	switch {
	case answer != nil:
		answer(w, r)
		return
	case r.Method != http.MethodGet || r.URL.Path != "/msi/token" || r.Header.Get("X-IDENTITY-HEADER") != fi.header ||
		q.Get("api-version") != "2019-08-01" || q.Get("client_id") != fi.clientID || q.Get("resource") == "":
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "bad managed identity request"})
		return
	}
	exp := time.Now().Add(life)
	claims := map[string]any{"aud": q.Get("resource"), "exp": exp.Unix()}
	if strings.HasPrefix(q.Get("resource"), "https://storage.azure.com") {
		claims["iss"], claims["aud"] = "https://sts.windows.net/"+testTenant+"/", "https://storage.azure.com"
	}
	tok := fi.fed.assertion(fi.tb, claims)
	writeJSON(w, http.StatusOK, map[string]string{"access_token": tok, "expires_on": strconv.FormatInt(exp.Unix(), 10),
		"resource": q.Get("resource"), "token_type": "Bearer", "client_id": fi.clientID})
}

// resources returns the resources asked for so far.
func (fi *fakeIdentity) resources() []string {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return slices.Clone(fi.requests)
}

// setAnswer makes the endpoint answer with h (nil: normally again).
func (fi *fakeIdentity) setAnswer(h http.HandlerFunc) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.answer = h
}
