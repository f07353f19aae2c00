package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
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
}

// newTestIDP starts a fake provider publishing testKeys()[0] as kid "k0".
func newTestIDP(tb testing.TB) *testIDP {
	tb.Helper()
	p := &testIDP{published: map[string]*rsa.PrivateKey{"k0": testKeys()[0]}, signKID: "k0"}
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
	p.srv = httptest.NewUnstartedServer(mux)
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
