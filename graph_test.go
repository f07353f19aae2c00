package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// graphHarness serves GET /api/me (requireAuth, then graphProfiles) against
// a test provider whose token endpoint answers the on-behalf-of grant, and
// a fake Microsoft Graph. Each answer can be replaced. Safe for concurrent
// use.
type graphHarness struct {
	idp   *testIDP
	graph *httptest.Server
	gp    *graphProfiles
	h     http.Handler
	logs  *syncBuffer

	mu sync.Mutex // guards the fields below
	// oboForms are the token requests received, oboPaths their paths;
	// issued the tokens answered.
	oboForms []url.Values
	oboPaths []string
	issued   []string
	// graphAuth are the Authorization headers Graph received.
	graphAuth []string
	// oboAnswer and graphAnswer, when set, answer instead of the defaults.
	oboAnswer, graphAnswer http.HandlerFunc
}

// graphUserJSON is what the fake Graph answers for GET /me by default.
const graphUserJSON = `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users(id,displayName,mail,userPrincipalName)/$entity",` +
	`"id":"00000000-0000-0000-0000-0000000000aa","displayName":"Ada Lovelace","mail":null,"userPrincipalName":"ada@contoso.example"}`

func newGraphHarness(t *testing.T) *graphHarness {
	t.Helper()
	return newGraphHarnessEnv(t, map[string]string{})
}

// newGraphHarnessEnv is newGraphHarness with the settings env besides the
// test provider's.
func newGraphHarnessEnv(t *testing.T, env map[string]string) *graphHarness {
	t.Helper()
	g := &graphHarness{idp: newTestIDP(t), logs: &syncBuffer{}}
	g.graph = httptest.NewServer(http.HandlerFunc(g.serveGraph))
	t.Cleanup(g.graph.Close)
	setTokenHandler(g.idp, g.serveToken)
	env["GRAPH_BASE_URL"] = g.graph.URL
	cfg := g.idp.config(t, env)
	logger := slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client := &http.Client{Timeout: 5 * time.Second}
	_, v, af := newTestHalves(t, cfg, cfg.verifyOptions(client, logger), client, logger)
	g.gp = &graphProfiles{logger: logger, obo: newOBOTokens(af, cfg.TenantID), client: &http.Client{Timeout: 2 * time.Second},
		base: cfg.GraphBaseURL, scope: cfg.GraphScope, authorizeURI: g.idp.srv.URL + "/" + testTenant + "/oauth2/v2.0/authorize"}
	g.h = requireAuth(logger, v, permRead)(g.gp.handleMe())
	return g
}

// serveToken answers the on-behalf-of grant: with oboAnswer when set,
// else, for a well-formed request with the test secret, a new token.
func (g *graphHarness) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		entraError(w, 400, "invalid_request", "form")
		return
	}
	g.mu.Lock()
	g.oboForms = append(g.oboForms, r.PostForm)
	g.oboPaths = append(g.oboPaths, r.URL.Path)
	answer := g.oboAnswer
	g.mu.Unlock()
	if answer != nil {
		answer(w, r)
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != jwtBearerGrant || f.Get("requested_token_use") != onBehalfOf || f.Get("assertion") == "" ||
		f.Get("client_id") != testClientID || f.Get("client_secret") != testSecret {
		entraError(w, 400, "invalid_request", "AADSTS900144: bad on-behalf-of request", 900144)
		return
	}
	tok := "graph-token-" + rand.Text()
	g.mu.Lock()
	g.issued = append(g.issued, tok)
	g.mu.Unlock()
	tokenJSON(w, map[string]any{"token_type": "Bearer", "scope": f.Get("scope"), "expires_in": 3599, "access_token": tok})
}

// serveGraph answers GET /v1.0/me: with graphAnswer when set, else the user
// for a token the provider issued.
func (g *graphHarness) serveGraph(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.graphAuth = append(g.graphAuth, r.Header.Get("Authorization"))
	answer, issued := g.graphAnswer, slices.Clone(g.issued)
	g.mu.Unlock()
	if answer != nil {
		answer(w, r)
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if r.URL.Path != "/v1.0/me" || r.URL.Query().Get("$select") != "id,displayName,mail,userPrincipalName" || !slices.Contains(issued, tok) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	io.WriteString(w, graphUserJSON)
}

// set replaces the token endpoint's and Graph's answers (nil: the defaults).
func (g *graphHarness) set(obo, graph http.HandlerFunc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.oboAnswer, g.graphAnswer = obo, graph
}

// oboCount is the number of token requests received.
func (g *graphHarness) oboCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.oboForms)
}

// me sends GET /api/me with tok.
func (g *graphHarness) me(tok string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	g.h.ServeHTTP(w, bearer(httptest.NewRequest("GET", "/api/me", nil), tok))
	return w
}

// TestMeReadsGraphOnBehalfOfTheCaller: /api/me trades the caller's token
// through the on-behalf-of grant, with the service's client credential, and
// answers the Graph profile; the downstream token is cached and never
// logged.
func TestMeReadsGraphOnBehalfOfTheCaller(t *testing.T) {
	t.Parallel()
	g := newGraphHarness(t)
	caller := g.idp.token(t, nil)
	w := g.me(caller)
	if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /api/me = %d %s; want 200, no-store", w.Code, w.Body)
	}
	var got map[string]any
	json.Unmarshal(w.Body.Bytes(), &got)
	want := map[string]any{"id": "00000000-0000-0000-0000-0000000000aa", "displayName": "Ada Lovelace", "mail": nil, "userPrincipalName": "ada@contoso.example"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GET /api/me = %v; want %v", got, want)
	}
	f := g.oboForms[0]
	for k, v := range map[string]string{"grant_type": jwtBearerGrant, "requested_token_use": "on_behalf_of", "assertion": caller,
		"scope": "https://graph.microsoft.com/User.Read", "client_id": testClientID, "client_secret": testSecret} {
		if f.Get(k) != v {
			t.Errorf("on-behalf-of form %s = %.40q; want %.40q", k, f.Get(k), v)
		}
	}
	if g.graphAuth[0] != "Bearer "+g.issued[0] {
		t.Errorf("Graph got Authorization %.30q; want the on-behalf-of token", g.graphAuth[0])
	}
	if w := g.me(g.idp.token(t, nil)); w.Code != http.StatusOK || g.oboCount() != 1 {
		t.Errorf("a second call of the same user = %d, %d token requests; want 200 from the cache, 1 request", w.Code, g.oboCount())
	}
	if w := g.me(g.idp.token(t, map[string]any{"oid": "00000000-0000-0000-0000-0000000000bb"})); w.Code != http.StatusOK || g.oboCount() != 2 {
		t.Errorf("another user = %d, %d token requests; want a token of their own", w.Code, g.oboCount())
	}
	assertNoSecretsLogged(t, g.logs.String(), append(slices.Clone(g.issued), caller)...)
}

// TestMeFailures: each failure of the exchange or of Graph gets the answer
// a client can act on.
func TestMeFailures(t *testing.T) {
	t.Parallel()
	caeClaims := `{"access_token":{"nbf":{"essential":true, "value":"1657834417"}}}`
	capolids := `{"access_token":{"capolids":{"essential":true,"values":["9ab03e19-ed42-4168-b6b7-7001fb3e933a"]}}}`
	entra := func(status int, body map[string]any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(body)
		}
	}
	graph := func(status int, header map[string]string, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	tests := []struct {
		name        string
		obo, graph  http.HandlerFunc
		status      int
		contains    []string // in the body
		header      map[string]string
		claims      string // a claims challenge with these claims is expected
		dropsCached bool
	}{
		{name: "consent missing (AADSTS65001)", obo: entra(400, map[string]any{"error": "invalid_grant", "error_codes": []int{65001}, "suberror": "consent_required",
			"error_description": "AADSTS65001: The user or administrator has not consented to use the application with ID '11111111-2222-3333-4444-555555555555' named 'heroes'. Send an interactive authorization request for this user and resource.\r\nTrace ID: t"}),
			status: 403, contains: []string{`"error":"consent_required"`, `"code":"AADSTS65001"`, "consent is missing"}},
		{name: "a claims challenge of the token endpoint", obo: entra(400, map[string]any{"error": "interaction_required", "error_codes": []int{50079},
			"error_description": "AADSTS50079: Due to a configuration change made by your administrator, you must enroll in multi-factor authentication.", "claims": capolids}),
			status: 401, claims: capolids},
		{name: "a claims challenge as invalid_grant", obo: entra(400, map[string]any{"error": "invalid_grant", "error_codes": []int{53003}, "suberror": "message_only",
			"error_description": "AADSTS53003: Access has been blocked by Conditional Access policies.", "claims": capolids}),
			status: 401, claims: capolids},
		{name: "MFA needed, no claims", obo: entra(400, map[string]any{"error": "invalid_grant", "error_codes": []int{50076}, "suberror": "basic_action",
			"error_description": "AADSTS50076: you must use multi-factor authentication"}),
			status: 401, header: map[string]string{"WWW-Authenticate": `Bearer realm="heroes-auth", error="invalid_token", error_description="the user must sign in again (invalid_grant AADSTS50076)"`}},
		{name: "the caller's token expired meanwhile (AADSTS500133)", obo: entra(400, map[string]any{"error": "invalid_grant", "error_codes": []int{500133},
			"error_description": "AADSTS500133: Assertion is not within its valid time range."}),
			status: 401, contains: []string{"the token expired"}},
		{name: "the service's secret refused", obo: entra(401, map[string]any{"error": "invalid_client", "error_codes": []int{7000215}, "error_description": "AADSTS7000215: Invalid client secret provided."}),
			status: 502, contains: []string{"misconfigured", "AADSTS7000215"}},
		{name: "the token endpoint busy", obo: entra(503, map[string]any{"error": "temporarily_unavailable", "error_description": "AADSTS90033"}),
			status: 503, header: map[string]string{"Retry-After": "5"}},
		{name: "the token endpoint answers HTML", obo: graph(502, map[string]string{"Content-Type": "text/html"}, "<html>"), status: 502},
		{name: "Graph's continuous access evaluation challenge", graph: graph(401, map[string]string{"Content-Type": "application/json",
			"WWW-Authenticate": `Bearer realm="", authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, client_id="00000003-0000-0000-c000-000000000000", ` +
				`error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTY1NzgzNDQxNyJ9fX0=", errorDescription="Continuous access evaluation resulted in claims challenge"`},
			`{"error":{"code":"InvalidAuthenticationToken","message":"Continuous access evaluation resulted in challenge"}}`),
			status: 401, claims: caeClaims, dropsCached: true},
		{name: "Graph refuses the token", graph: graph(401, nil, `{"error":{"code":"InvalidAuthenticationToken"}}`), status: 502, dropsCached: true},
		{name: "Graph forbids", graph: graph(403, nil, `{"error":{"code":"Authorization_RequestDenied"}}`), status: 403, contains: []string{"Authorization_RequestDenied"}},
		{name: "Graph throttles", graph: graph(429, map[string]string{"Retry-After": "7"}, ""), status: 503, header: map[string]string{"Retry-After": "7"}},
		{name: "Graph busy without Retry-After", graph: graph(503, map[string]string{"Retry-After": "soon"}, ""), status: 503, header: map[string]string{"Retry-After": "5"}},
		{name: "Graph fails", graph: graph(500, nil, ""), status: 502},
		{name: "Graph answers HTML", graph: graph(200, map[string]string{"Content-Type": "text/html"}, "<html>"), status: 502},
		{name: "Graph answers no id", graph: graph(200, map[string]string{"Content-Type": "application/json"}, `{"displayName":"x"}`), status: 502},
		{name: "Graph answers too much", graph: graph(200, map[string]string{"Content-Type": "application/json"}, `{"id":"1","x":"`+strings.Repeat("x", maxGraphAnswer)+`"}`), status: 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGraphHarness(t)
			if tc.dropsCached {
				if w := g.me(g.idp.token(t, nil)); w.Code != http.StatusOK {
					t.Fatalf("first GET /api/me = %d %s", w.Code, w.Body)
				}
			}
			g.set(tc.obo, tc.graph)
			w := g.me(g.idp.token(t, nil))
			if w.Code != tc.status {
				t.Fatalf("GET /api/me = %d %s; want %d", w.Code, w.Body, tc.status)
			}
			for _, s := range tc.contains {
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("body %s lacks %q", w.Body, s)
				}
			}
			for k, v := range tc.header {
				if w.Header().Get(k) != v {
					t.Errorf("%s = %q; want %q", k, w.Header().Get(k), v)
				}
			}
			if tc.claims != "" {
				checkClaimsChallenge(t, w, g.gp.authorizeURI, tc.claims)
			}
			if tc.dropsCached {
				n := g.oboCount()
				g.set(nil, nil)
				if w := g.me(g.idp.token(t, nil)); w.Code != http.StatusOK || g.oboCount() != n+1 {
					t.Errorf("after Graph refused the token: %d with %d new token requests; want 200 with a new token", w.Code, g.oboCount()-n)
				}
			}
		})
	}
}

// TestMeGraphDownOrSlow: Graph unreachable is a 502; Graph slower than the
// client's timeout a 504.
func TestMeGraphDownOrSlow(t *testing.T) {
	t.Parallel()
	g := newGraphHarness(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	g.set(nil, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	g.gp.client = &http.Client{Timeout: 100 * time.Millisecond}
	if w := g.me(g.idp.token(t, nil)); w.Code != http.StatusGatewayTimeout {
		t.Errorf("slow Graph = %d %s; want 504", w.Code, w.Body)
	}
	g.gp.base = "http://127.0.0.1:1" // nothing listens there
	if w := g.me(g.idp.token(t, nil)); w.Code != http.StatusBadGateway {
		t.Errorf("Graph down = %d %s; want 502", w.Code, w.Body)
	}
}

// TestMeMultiTenant: with organizations, the grant goes to the caller's
// own tenant's token endpoint.
func TestMeMultiTenant(t *testing.T) {
	t.Parallel()
	g := newGraphHarnessEnv(t, map[string]string{"AZURE_TENANT_ID": "organizations", "ALLOWED_TENANTS": testTenant})
	if w := g.me(g.idp.token(t, nil)); w.Code != http.StatusOK {
		t.Fatalf("GET /api/me = %d %s; want 200", w.Code, w.Body)
	}
	if want := "/" + testTenant + "/oauth2/v2.0/token"; g.oboPaths[0] != want {
		t.Errorf("on-behalf-of request went to %s; want %s", g.oboPaths[0], want)
	}
}

// TestMeNeedsAUser: an app-only token has no /me: 403 before any exchange.
func TestMeNeedsAUser(t *testing.T) {
	t.Parallel()
	g := newGraphHarness(t)
	w := g.me(g.idp.token(t, map[string]any{"scp": nil, "roles": []string{"Heroes.Read"}, "idtyp": "app"}))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "app-only") || g.oboCount() != 0 {
		t.Errorf("app-only token = %d %s, %d token requests; want 403 naming app-only tokens, none", w.Code, w.Body, g.oboCount())
	}
}

// TestMeRoute: GET /api/me is routed behind Heroes.Read and the guest
// policy, and reaches GRAPH_BASE_URL.
func TestMeRoute(t *testing.T) {
	t.Parallel()
	g := newGraphHarness(t)
	h := newTestServer(t, g.idp, map[string]string{"GRAPH_BASE_URL": g.graph.URL, "ALLOW_GUEST_USERS": "false"}, io.Discard)
	tests := []struct {
		name   string
		claims map[string]any
		status int
	}{
		{"a reader", nil, http.StatusOK},
		{"no permission", map[string]any{"scp": "Other"}, http.StatusForbidden},
		{"a guest", map[string]any{"acct": 1}, http.StatusForbidden},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, bearer(httptest.NewRequest("GET", "/api/me", nil), g.idp.token(t, tc.claims)))
		if w.Code != tc.status {
			t.Errorf("%s: GET /api/me = %d %s; want %d", tc.name, w.Code, w.Body, tc.status)
		}
	}
}

func TestBearerChallengeParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   map[string]string
	}{
		{`Bearer realm="", authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="eyJ9fQ==", errorDescription="a, b"`,
			map[string]string{"realm": "", "authorization_uri": "https://login.microsoftonline.com/common/oauth2/authorize", "client_id": "00000003-0000-0000-c000-000000000000",
				"error": "insufficient_claims", "claims": "eyJ9fQ==", "errordescription": "a, b"}},
		{`Basic realm="x", Bearer error="insufficient_claims", claims="e30="`, map[string]string{"error": "insufficient_claims", "claims": "e30="}},
		{`Bearer error=invalid_token, Basic realm="x"`, map[string]string{"error": "invalid_token"}},
		{`bearer ERROR="a\"b\\c", error="second"`, map[string]string{"error": `a"b\c`}},
		{`Bearer claims="unterminated`, map[string]string{"claims": "unterminated"}},
		{`Bearer`, map[string]string{}},
		{`Basic realm="x"`, nil},
		{`Negotiate abc==, Bearer error=x`, map[string]string{"error": "x"}},
	}
	for _, tc := range tests {
		got := bearerChallengeParams(tc.header)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("bearerChallengeParams(%q) = %v; want %v", tc.header, got, tc.want)
		}
	}
}

// FuzzBearerChallengeParams: any header ends, reads at most its first
// maxChallengeLen bytes, and gives values taken from it.
func FuzzBearerChallengeParams(f *testing.F) {
	f.Add(`Bearer realm="", authorization_uri=https://x/y, error="insufficient_claims", claims="e30="`)
	f.Add(`Basic , Bearer a="\`)
	f.Add(`,,,="=`)
	f.Fuzz(func(t *testing.T, h string) {
		for k, v := range bearerChallengeParams(h) {
			if len(k)+len(v) > maxChallengeLen {
				t.Fatalf("param %q=%q is longer than the header read", k, v)
			}
		}
	})
}
