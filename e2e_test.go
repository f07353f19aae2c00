package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// hiddenInput matches the hidden fields of the dev provider's sign-in form.
var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// formAction matches the sign-in form's action.
var formAction = regexp.MustCompile(`<form[^>]* action="([^"]+)"`)

// signInDev walks the whole flow of a -dev service at base as an API client
// would: /auth/login → the dev provider's sign-in form → /auth/callback. It
// signs in as user granting grants and returns the callback's JSON answer.
func signInDev(t *testing.T, base, user string, grants ...string) tokenAnswer {
	t.Helper()
	body := signInDevAccepting(t, base, "application/json", user, grants...)
	var ans tokenAnswer
	if err := json.Unmarshal([]byte(body), &ans); err != nil || ans.AccessToken == "" {
		t.Fatalf("callback answer %s: %v", body, err)
	}
	return ans
}

// signInDevAccepting walks the flow with the given Accept header on every
// request, as a browser (text/html) or an API client would, and returns the
// body of the callback's answer.
func signInDevAccepting(t *testing.T, base, accept, user string, grants ...string) string {
	t.Helper()
	return signInDevAt(t, base, "/auth/login", accept, url.Values{"username": {user}, "action": {"signin"}, "grant": grants})
}

// signInDevStepUp signs in as signInDev does, starting at
// /auth/login?claims=claims (a claims challenge's value, as sent) and
// confirming the second step the dev provider then asks for.
func signInDevStepUp(t *testing.T, base, claims, user string, grants ...string) tokenAnswer {
	t.Helper()
	body := signInDevAt(t, base, "/auth/login?claims="+url.QueryEscape(claims), "application/json",
		url.Values{"username": {user}, "action": {"signin"}, "grant": grants, "stepup": {"confirmed"}})
	var ans tokenAnswer
	if err := json.Unmarshal([]byte(body), &ans); err != nil || ans.AccessToken == "" {
		t.Fatalf("callback answer %s: %v", body, err)
	}
	return ans
}

// signInDevAt walks the flow from login (a path and query of the service)
// with the given Accept header on every request, posting form (plus the
// sign-in form's hidden fields) to the dev provider, and returns the body
// of the callback's answer.
func signInDevAt(t *testing.T, base, login, accept string, form url.Values) string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: acceptTransport(accept)}

	resp, err := client.Get(base + login)
	if err != nil {
		t.Fatalf("GET %s: %v", login, err)
	}
	page := readAnswer(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<form") {
		t.Fatalf("GET %s ended at %s %d, not the sign-in form:\n%s", login, resp.Request.URL.Path, resp.StatusCode, page)
	}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	action := resp.Request.URL.String()
	if m := formAction.FindStringSubmatch(page); m != nil {
		u, err := resp.Request.URL.Parse(html.UnescapeString(m[1]))
		if err != nil {
			t.Fatalf("form action %q: %v", m[1], err)
		}
		action = u.String()
	}

	resp, err = client.PostForm(action, form)
	if err != nil {
		t.Fatalf("POST sign-in form: %v", err)
	}
	body := readAnswer(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/auth/callback" {
		t.Fatalf("sign-in ended at %s with %d:\n%s", resp.Request.URL.Path, resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("callback Cache-Control = %q; want no-store", cc)
	}
	return body
}

// acceptTransport sets the Accept header of every request it sends.
type acceptTransport string

func (a acceptTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Accept", string(a))
	return http.DefaultTransport.RoundTrip(r)
}

// readAnswer reads and closes resp.Body (at most 1 MiB).
func readAnswer(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// call sends method path with an optional bearer token and returns the
// status, the WWW-Authenticate header and the body.
func call(t *testing.T, method, url, token string, body io.Reader) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b := readAnswer(t, resp)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b
}

// TestEndToEndDev starts the real service with -dev on a random loopback
// port and walks the whole flow: login → sign-in form → callback → token →
// heroes list, then the refusals a user meets.
func TestEndToEndDev(t *testing.T) {
	base, logs, stop := startRun(t, []string{"-dev"}, func(string) string { return "" })

	reader := signInDev(t, base, "Ada Reader", permRead)
	if reader.IDTokenClaims["name"] != "Ada Reader" {
		t.Errorf("id_token_claims.name = %v; want Ada Reader", reader.IDTokenClaims["name"])
	}
	status, _, body := call(t, "GET", base+"/api/heroes/", reader.AccessToken, nil)
	var heroes []map[string]any
	if status != http.StatusOK || json.Unmarshal([]byte(body), &heroes) != nil || len(heroes) == 0 {
		t.Fatalf("GET /api/heroes/ with the token = %d %s; want 200 and the seeded heroes", status, body)
	}

	t.Run("a browser sees the heroes list after signing in", func(t *testing.T) {
		page := signInDevAccepting(t, base, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", "Ada Browser", permRead)
		for _, want := range []string{"Signed in", "Ada Browser", "Elara Moonwhisper", "Authorization: Bearer",
			"What this token allows", "<code>Heroes.Read</code>: list and read heroes", `<a href="/docs">/docs</a>`} {
			if !strings.Contains(page, want) {
				t.Errorf("signed-in page lacks %q:\n%s", want, page)
			}
		}
		if strings.Contains(page, "<code>Admin</code>:") {
			t.Errorf("signed-in page says the reader's token allows Admin:\n%s", page)
		}
	})
	t.Run("Swagger UI at /docs signs in as a public client with PKCE and calls the API", func(t *testing.T) {
		tok := swaggerSignIn(t, base, permRead)
		if status, _, body := call(t, "GET", base+"/api/heroes/", tok, nil); status != http.StatusOK {
			t.Errorf("GET /api/heroes/ with the /docs token = %d %s; want 200", status, body)
		}
	})
	t.Run("no token is 401 with a bare challenge", func(t *testing.T) {
		status, challenge, _ := call(t, "GET", base+"/api/heroes/", "", nil)
		if status != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Bearer realm=") || strings.Contains(challenge, "error=") {
			t.Errorf("GET /api/heroes/ without a token = %d, WWW-Authenticate %q", status, challenge)
		}
	})
	t.Run("tampered token is 401 invalid_token", func(t *testing.T) {
		tok := reader.AccessToken
		tampered := tok[:len(tok)-4] + map[bool]string{true: "AAAA", false: "BBBB"}[!strings.HasSuffix(tok, "AAAA")]
		status, challenge, _ := call(t, "GET", base+"/api/heroes/", tampered, nil)
		if status != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) {
			t.Errorf("tampered token = %d, WWW-Authenticate %q", status, challenge)
		}
	})
	t.Run("a reader may not delete: 403 insufficient_scope", func(t *testing.T) {
		id, _ := heroes[0]["id"].(string)
		status, challenge, _ := call(t, "DELETE", base+"/api/heroes/"+id, reader.AccessToken, nil)
		if status != http.StatusForbidden || !strings.Contains(challenge, `error="insufficient_scope"`) || !strings.Contains(challenge, `scope="Admin"`) {
			t.Errorf("DELETE as reader = %d, WWW-Authenticate %q", status, challenge)
		}
	})
	t.Run("an admin who stepped up may create and delete", func(t *testing.T) {
		admin := signInDevStepUp(t, base, authContextClaims("c1"), "Grace Admin", permAdmin)
		id := createHero(t, base, admin.AccessToken, "Tester")
		if status, _, body := call(t, "DELETE", base+"/api/heroes/"+id, admin.AccessToken, nil); status != http.StatusOK {
			t.Errorf("DELETE as admin = %d %s; want 200", status, body)
		}
	})
	t.Run("tampered state is 400", func(t *testing.T) {
		client, loc := beginLogin(t, base, "")
		state := mustQuery(t, loc, "state")
		bad := state[:len(state)-1] + map[bool]string{true: "A", false: "B"}[state[len(state)-1] != 'A']
		resp, err := client.Get(base + "/auth/callback?code=some-code&state=" + url.QueryEscape(bad))
		if err != nil {
			t.Fatal(err)
		}
		body := readAnswer(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "/auth/login") {
			t.Errorf("callback with a tampered state = %d %s; want 400 telling to start again at /auth/login", resp.StatusCode, body)
		}
	})

	// The URL to open is logged once the keys are loaded, soon after start.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "open "+base+"/ in a browser") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("run after cancel = %v", err)
	}
	assertNoSecretsLogged(t, logs.String(), reader.AccessToken, reader.RefreshToken)
	if !strings.Contains(logs.String(), "not for production") {
		t.Errorf("-dev logged no warning that it is not for production")
	}
	if !strings.Contains(logs.String(), "open "+base+"/ in a browser") {
		t.Errorf("-dev did not log the URL to open (%s/):\n%s", base, logs)
	}
	if strings.Contains(logs.String(), "SESSION_KEY") {
		t.Errorf("-dev warned about SESSION_KEY, which a single local process does not need:\n%s", logs)
	}
}

// TestEndToEndDevStepUpAndMe walks the step-up loop with -dev (whose
// STEP_UP_AUTH_CONTEXT is c1): an admin's DELETE without the context gets
// the claims challenge, signing in again with its claims (and confirming
// the dev provider's second step) gives a token that may delete. Then
// GET /api/me reads the fake Graph through the on-behalf-of grant.
func TestEndToEndDevStepUpAndMe(t *testing.T) {
	base, logs, stop := startRun(t, []string{"-dev"}, func(string) string { return "" })
	admin := signInDev(t, base, "Grace Admin", permAdmin)
	id := createHero(t, base, admin.AccessToken, "Doomed")

	status, challenge, body := call(t, "DELETE", base+"/api/heroes/"+id, admin.AccessToken, nil)
	params := bearerChallengeParams(challenge)
	if status != http.StatusUnauthorized || params["error"] != "insufficient_claims" || params["claims"] == "" ||
		params["authorization_uri"] != base+"/devidp/"+devTenantID+"/oauth2/v2.0/authorize" {
		t.Fatalf("DELETE without the authentication context = %d, WWW-Authenticate %q, %s; want the claims challenge", status, challenge, body)
	}
	stepped := signInDevStepUp(t, base, params["claims"], "Grace Admin", permAdmin)
	if status, _, body := call(t, "DELETE", base+"/api/heroes/"+id, stepped.AccessToken, nil); status != http.StatusOK {
		t.Fatalf("DELETE after the step-up = %d %s; want 200", status, body)
	}
	if status, _, _ := call(t, "GET", base+"/api/heroes/"+id, stepped.AccessToken, nil); status != http.StatusNotFound {
		t.Errorf("GET of the deleted hero = %d; want 404", status)
	}
	page := signInDevAccepting(t, base, "text/html", "Grace Admin", permAdmin)
	if !strings.Contains(page, "sign in again with c1") {
		t.Errorf("the signed-in page of a token without c1 does not offer the step-up:\n%s", page)
	}

	status, _, body = call(t, "GET", base+"/api/me", admin.AccessToken, nil)
	var me map[string]any
	if status != http.StatusOK || json.Unmarshal([]byte(body), &me) != nil || me["displayName"] != "Grace Admin" ||
		me["id"] != devObjectID("Grace Admin") || me["userPrincipalName"] != "Grace Admin" {
		t.Fatalf("GET /api/me with -dev = %d %s; want Grace Admin's profile from the fake Graph", status, body)
	}
	if err := stop(); err != nil {
		t.Errorf("run after cancel = %v", err)
	}
	assertNoSecretsLogged(t, logs.String(), admin.AccessToken, stepped.AccessToken)
}

// createHero creates a hero named name at the service at base with token
// (which must grant Heroes.Create) and returns its id.
func createHero(t *testing.T, base, token, name string) string {
	t.Helper()
	hero := `{"name":"` + name + `","race":"Elf","class_":"Wizard","level":3,
		"ability_scores":{"strength":8,"dexterity":14,"constitution":12,"intelligence":17,"wisdom":12,"charisma":10},
		"equipment":{"items":[]},"hit_points":18,"armor_class":12,"speed":30}`
	status, _, body := call(t, "POST", base+"/api/heroes/", token, strings.NewReader(hero))
	var created map[string]any
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil {
		t.Fatalf("POST %s = %d %s; want 201", name, status, body)
	}
	id, _ := created["id"].(string)
	return id
}

// swaggerSignIn signs in to a -dev service at base as Swagger UI at /docs
// does: the authorize request with the single-page-application redirect
// URI and PKCE, the dev sign-in form granting grants, then the token
// request the page sends (with Origin, without a secret). It returns the
// access token, and checks that no refresh token came.
func swaggerSignIn(t *testing.T, base string, grants ...string) string {
	t.Helper()
	if status, _, page := call(t, "GET", base+"/docs", "", nil); status != http.StatusOK || !strings.Contains(page, "SwaggerUIBundle") {
		t.Fatalf("GET /docs = %d; want Swagger UI", status)
	}
	verifier, challenge := newPKCE()
	redirect := base + docsRedirectPath
	authorize := base + "/devidp/" + devTenantID + "/oauth2/v2.0/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {devClientID}, "redirect_uri": {redirect},
		"scope": {"api://" + devClientID + "/" + permRead}, "state": {"swagger-state"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}.Encode()
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authorize)
	if err != nil {
		t.Fatal(err)
	}
	page := readAnswer(t, resp)
	form := url.Values{"username": {"Swagger User"}, "action": {"signin"}, "grant": grants}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	resp, err = noFollow.PostForm(authorize, form)
	if err != nil {
		t.Fatal(err)
	}
	readAnswer(t, resp)
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(back.String(), redirect+"?") || back.Query().Get("state") != "swagger-state" {
		t.Fatalf("sign-in = %d to %q; want 302 to %s with the state", resp.StatusCode, resp.Header.Get("Location"), redirect)
	}
	req, _ := http.NewRequest("POST", base+"/devidp/"+devTenantID+"/oauth2/v2.0/token", strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "client_id": {devClientID},
		"redirect_uri": {redirect}, "code_verifier": {verifier},
	}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans map[string]any
	body := readAnswer(t, resp)
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ans) != nil || ans["access_token"] == nil {
		t.Fatalf("token request as Swagger UI = %d %s; want 200 with an access token", resp.StatusCode, body)
	}
	if ans["refresh_token"] != nil {
		t.Errorf("the public client got a refresh token")
	}
	return ans["access_token"].(string)
}

// TestDevListensOnLoopbackOnly: -dev refuses an ADDR that is not loopback,
// and a PORT that is not a port number, with a settings error; without the
// flag /devidp/ does not exist.
func TestDevListensOnLoopbackOnly(t *testing.T) {
	getenv := func(k string) string { return map[string]string{"ADDR": "0.0.0.0:0"}[k] }
	err := run(context.Background(), []string{"heroes-auth", "-dev"}, getenv, io.Discard, io.Discard)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("run -dev on 0.0.0.0 = %v; want a settings error about loopback", err)
	}
	for _, port := range []string{"abc", "0", "99999", "080"} {
		getenv := func(k string) string { return map[string]string{"PORT": port}[k] }
		err := run(context.Background(), []string{"heroes-auth", "-dev"}, getenv, io.Discard, io.Discard)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "PORT is not a port number") {
			t.Errorf("run -dev with PORT=%s = %v; want a settings error naming PORT", port, err)
		}
	}
	p := newTestIDP(t)
	base, _, _ := startRun(t, nil, p.getenv(nil))
	if status, _, _ := call(t, "GET", base+"/devidp/"+testTenant+"/v2.0/.well-known/openid-configuration", "", nil); status != http.StatusNotFound {
		t.Errorf("without -dev, the dev provider answers %d; want 404", status)
	}
}

// assertNoSecretsLogged fails if any non-empty secret appears in logs.
func assertNoSecretsLogged(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the logs hold a secret value (%d bytes)", len(s))
		}
	}
}

// TestEndToEndTokenRefusals runs the real service (run) against a test
// provider and presents tokens it signed with the right key but wrong claims.
func TestEndToEndTokenRefusals(t *testing.T) {
	p := newTestIDP(t)
	base, _, _ := startRun(t, nil, p.getenv(nil))
	tests := []struct {
		name       string
		override   map[string]any
		wantStatus int
		wantInWWW  string
	}{
		{"valid token", nil, http.StatusOK, ""},
		{"another audience", map[string]any{"aud": "api://someone-else"}, http.StatusUnauthorized, `error="invalid_token"`},
		{"another tenant's issuer", map[string]any{"iss": p.issuer("99999999-9999-9999-9999-999999999999")}, http.StatusUnauthorized, `error="invalid_token"`},
		{"expired", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, http.StatusUnauthorized, `error="invalid_token"`},
		{"without Heroes.Read", map[string]any{"scp": "User.Read"}, http.StatusForbidden, `error="insufficient_scope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, challenge, body := call(t, "GET", base+"/api/heroes/", p.token(t, tc.override), nil)
			if status != tc.wantStatus || !strings.Contains(challenge, tc.wantInWWW) ||
				(status == http.StatusForbidden && !strings.Contains(challenge, `scope="Heroes.Read"`)) {
				t.Errorf("GET /api/heroes/ = %d, WWW-Authenticate %q, body %s; want %d with %q", status, challenge, body, tc.wantStatus, tc.wantInWWW)
			}
		})
	}
}

// fakeLoginProvider makes p's token endpoint act like Entra for an
// authorization code flow: it checks the grant, the PKCE code_verifier
// against the challenge the login sent (RFC 7636 §4.6) and answers with an
// access token and an ID token carrying the nonce. The challenge and nonce
// are read from the authorize URL the service redirected to.
func fakeLoginProvider(t *testing.T, p *testIDP, authorizeURL string) {
	t.Helper()
	u, err := url.Parse(authorizeURL)
	if err != nil {
		t.Fatalf("authorize URL %q: %v", authorizeURL, err)
	}
	q := u.Query()
	challenge, nonce := q.Get("code_challenge"), q.Get("nonce")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.PostForm.Get("code") != "the-code" || !devPKCEMatches(r.PostForm.Get("code_verifier"), challenge) {
			w.WriteHeader(http.StatusBadRequest)
			tokenJSON(w, map[string]any{"error": "invalid_grant", "error_codes": []int{70008}})
			return
		}
		tokenJSON(w, map[string]any{
			"token_type":   "Bearer",
			"expires_in":   3600,
			"scope":        "api://" + testClientID + "/Heroes.Read",
			"access_token": p.token(t, nil),
			"id_token":     p.token(t, map[string]any{"nonce": nonce, "azp": testClientID, "scp": nil, "name": "Replica User"}),
		})
	}
}

// TestTwoReplicasShareLoginsAndTokens: two instances started with the same
// settings and SESSION_KEY behave as one service: a login started on one
// completes on the other, and a token accepted by one is accepted by both.
func TestTwoReplicasShareLoginsAndTokens(t *testing.T) {
	p := newTestIDP(t)
	env := p.getenv(map[string]string{"SESSION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="})
	baseA, _, _ := startRun(t, nil, env)
	baseB, _, _ := startRun(t, nil, env)

	// Both listen on 127.0.0.1; cookies ignore the port, so one jar serves
	// the browser's view of both replicas behind one load balancer, which
	// names the host the browser used (REDIRECT_URI's) in X-Forwarded-Host.
	client, loc := beginLogin(t, baseA, "localhost:8000")
	if !strings.HasPrefix(loc, p.srv.URL) {
		t.Fatalf("login on A redirects to %q; want the provider", loc)
	}
	fakeLoginProvider(t, p, loc)
	state := mustQuery(t, loc, "state")

	resp, err := client.Get(baseB + "/auth/callback?code=the-code&state=" + url.QueryEscape(state))
	if err != nil {
		t.Fatal(err)
	}
	body := readAnswer(t, resp)
	var ans tokenAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ans) != nil {
		t.Fatalf("callback on B = %d %s; want 200 with tokens", resp.StatusCode, body)
	}
	for _, base := range []string{baseA, baseB} {
		if status, _, body := call(t, "GET", base+"/api/heroes/", ans.AccessToken, nil); status != http.StatusOK {
			t.Errorf("GET %s/api/heroes/ = %d %s; want 200", base, status, body)
		}
	}
}

// refreshAt posts rt to base's /auth/refresh with client, failing unless
// the answer is 200.
func refreshAt(t *testing.T, client *http.Client, base, rt string) {
	t.Helper()
	resp, err := client.PostForm(base+"/auth/refresh", url.Values{"refresh_token": {rt}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readAnswer(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh = %d %s; want 200", resp.StatusCode, body)
	}
}

// beginLogin starts a login at base as a browser would, with a cookie jar
// and following no redirect, and returns that client and the authorization
// URL it was sent to. forwardedHost, when set, is the X-Forwarded-Host a
// load balancer would send (REDIRECT_URI's host, so that the login is not
// first sent to REDIRECT_URI's origin).
func beginLogin(t *testing.T, base, forwardedHost string) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequest(http.MethodGet, base+"/auth/login", nil)
	if err != nil {
		t.Fatal(err)
	}
	if forwardedHost != "" {
		req.Header.Set("X-Forwarded-Host", forwardedHost) // the host a load balancer says the browser used
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET /auth/login = %d; want 302", resp.StatusCode)
	}
	return client, resp.Header.Get("Location")
}

// mustQuery returns the query parameter name of the URL s.
func mustQuery(t *testing.T, s, name string) string {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || u.Query().Get(name) == "" {
		t.Fatalf("URL %q has no %s", s, name)
	}
	return u.Query().Get(name)
}

// startPartialRefresh opens a connection to base and leaves a POST
// /auth/refresh in flight on it: a first request makes sure the server has
// accepted the connection, then the POST's head and the first part of a
// body of length bytes are sent, and the server waits in the handler for the
// rest. The connection is closed when the test ends.
func startPartialRefresh(t *testing.T, base string, length int, part string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading /healthz: %v", err)
	}
	readAnswer(t, resp)
	fmt.Fprintf(conn, "POST /auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", length, part)
	time.Sleep(200 * time.Millisecond) // the server reads the head and enters the handler
	return conn, br
}

// TestShutdownFinishesInFlightRequest cancels run's context while a request
// is half sent, and checks that the request still gets its answer and run
// then returns nil.
func TestShutdownFinishesInFlightRequest(t *testing.T) {
	p := newTestIDP(t)
	p.tokenHandler = func(w http.ResponseWriter, r *http.Request) {
		tokenJSON(w, map[string]any{"token_type": "Bearer", "expires_in": 3600, "access_token": p.token(t, nil)})
	}
	base, _, stop := startRun(t, nil, p.getenv(nil))

	body := "refresh_token=a-refresh-token"
	conn, br := startPartialRefresh(t, base, len(body), body[:5])

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(300 * time.Millisecond) // shutdown has begun and is waiting for this request
	select {
	case err := <-stopped:
		t.Fatalf("run returned %v while a request was in flight", err)
	default:
	}
	io.WriteString(conn, body[5:])
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the in-flight answer: %v", err)
	}
	got := readAnswer(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("in-flight POST /auth/refresh = %d %s; want 200", resp.StatusCode, got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run = %v; want nil after a graceful shutdown", err)
	}
}

// TestSlowHeaderClientIsCutOff: a client that sends its header slowly
// (slowloris) is disconnected after readHeaderTimeout, and other requests
// are answered meanwhile.
func TestSlowHeaderClientIsCutOff(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	base, _, _ := startRun(t, nil, p.getenv(nil))
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ") // never finished

	if status, _, _ := call(t, "GET", base+"/healthz", "", nil); status != http.StatusOK {
		t.Errorf("GET /healthz beside a slow client = %d; want 200", status)
	}
	conn.SetReadDeadline(time.Now().Add(readHeaderTimeout + 5*time.Second))
	io.Copy(io.Discard, conn) // returns when the server closes the connection
	if waited := time.Since(start); waited < readHeaderTimeout-time.Second || waited > readHeaderTimeout+4*time.Second {
		t.Errorf("slow client was cut off after %v; want about %v", waited, readHeaderTimeout)
	}
}

// TestRoutePermissions checks, through the real middleware (newServer and
// requireAuth) with tokens from the test identity provider, the permission
// each hero route needs: GET list, one and fireball need
// Heroes.Read; POST and PUT need Heroes.Create; DELETE needs Admin; the
// permissions nest (Admin includes Heroes.Create, which includes
// Heroes.Read). A token without the permission gets 403, no token 401.
func TestRoutePermissions(t *testing.T) {
	p := newTestIDP(t)
	h := newTestServer(t, p, nil, io.Discard)
	tokens := map[string]string{
		"none":           "",
		"Heroes.Read":    p.token(t, map[string]any{"scp": "Heroes.Read"}),
		"Heroes.Create":  p.token(t, map[string]any{"scp": "Heroes.Create"}),
		"Admin":          p.token(t, map[string]any{"scp": "Admin"}),
		"app role Admin": p.token(t, map[string]any{"scp": nil, "roles": []string{"Admin"}}),
	}
	send := func(method, target, token, body string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// newHero creates a hero with the Admin token and returns its path.
	newHero := func() string {
		t.Helper()
		w := send(http.MethodPost, "/api/heroes/", tokens["Admin"], validHeroJSON("Guarded"))
		if w.Code != http.StatusCreated {
			t.Fatalf("POST with Admin = %d %s", w.Code, w.Body)
		}
		return w.Header().Get("Location")
	}
	routes := []struct {
		method, path string
		body         bool
		ok           int
		allowed      []string // tokens that pass; the others (but none) get 403
	}{
		{http.MethodGet, "/api/heroes/", false, http.StatusOK, []string{"Heroes.Read", "Heroes.Create", "Admin", "app role Admin"}},
		{http.MethodGet, "/api/heroes", false, http.StatusOK, []string{"Heroes.Read", "Heroes.Create", "Admin", "app role Admin"}},
		{http.MethodGet, "{hero}", false, http.StatusOK, []string{"Heroes.Read", "Heroes.Create", "Admin", "app role Admin"}},
		{http.MethodGet, "/api/heroes-fireball-low-ac", false, http.StatusOK, []string{"Heroes.Read", "Heroes.Create", "Admin", "app role Admin"}},
		{http.MethodPost, "/api/heroes/", true, http.StatusCreated, []string{"Heroes.Create", "Admin", "app role Admin"}},
		{http.MethodPost, "/api/heroes", true, http.StatusCreated, []string{"Heroes.Create", "Admin", "app role Admin"}},
		{http.MethodPut, "{hero}", true, http.StatusOK, []string{"Heroes.Create", "Admin", "app role Admin"}},
		{http.MethodDelete, "{hero}", false, http.StatusOK, []string{"Admin", "app role Admin"}},
	}
	for _, rt := range routes {
		for name, token := range tokens {
			t.Run(rt.method+" "+rt.path+" with "+name, func(t *testing.T) {
				target := rt.path
				if target == "{hero}" {
					target = newHero()
				}
				body := ""
				if rt.body {
					body = validHeroJSON("Changed")
				}
				want := http.StatusForbidden
				switch {
				case token == "":
					want = http.StatusUnauthorized
				case slices.Contains(rt.allowed, name):
					want = rt.ok
				}
				w := send(rt.method, target, token, body)
				if w.Code != want {
					t.Fatalf("%s %s with %s token = %d %s; want %d", rt.method, target, name, w.Code, w.Body, want)
				}
				if want == http.StatusForbidden && !strings.Contains(w.Header().Get("WWW-Authenticate"), "insufficient_scope") {
					t.Errorf("403 WWW-Authenticate = %q; want insufficient_scope", w.Header().Get("WWW-Authenticate"))
				}
				if want == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 WWW-Authenticate = %q; want a Bearer challenge", w.Header().Get("WWW-Authenticate"))
				}
			})
		}
	}
}

// TestShutdownAfterGraceIsStillClean: a request that outlives SHUTDOWN_GRACE
// is cut, and run still returns nil (exit 0) soon after the grace period.
func TestShutdownAfterGraceIsStillClean(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	base, logs, stop := startRun(t, nil, p.getenv(map[string]string{"SHUTDOWN_GRACE": "1s"}))
	startPartialRefresh(t, base, 100, "refresh") // never finished

	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("run after the grace period = %v; want nil (exit 0)", err)
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("run returned %v after cancel; want about the 1s grace period", took)
	}
	if !strings.Contains(logs.String(), "grace period over") {
		t.Errorf("no log line says the grace period ran out")
	}
}

// TestRequestLogNamesTheCallerOfA403: a valid token without the permission
// still identifies its caller in the request's log line (oid, tid, azp).
func TestRequestLogNamesTheCallerOfA403(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	var logs syncBuffer
	h := newTestServer(t, p, nil, &logs)
	r := bearer(httptest.NewRequest("DELETE", "/api/heroes/0b9c1b4e-6d55-4d36-9f37-2a7e0c2e3f10", nil), p.token(t, nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("DELETE with a Heroes.Read token = %d; want 403", rec.Code)
	}
	claims := p.claims(time.Now())
	for _, want := range []string{`"status":403`, `"oid":"` + claims["oid"].(string), `"tid":"` + testTenant, `"azp":"` + claims["azp"].(string)} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("request log lacks %s: %s", want, logs.String())
		}
	}
}

// TestEndToEndWithoutASecret runs the real service (run) with no client
// secret, once with a federated token file and once with the managed
// identity at a fake IDENTITY_ENDPOINT, against the test provider trusting
// that identity: a full login and a refresh complete over HTTP, both token
// requests carry the assertion (the file's rotated content for the
// refresh), and the logs hold none of it.
func TestEndToEndWithoutASecret(t *testing.T) {
	fed := newTestFederation()
	tests := []struct {
		name  string
		setup func(t *testing.T) (env map[string]string, rotate func() string, fc federatedCredential)
	}{
		{"federated token file", func(t *testing.T) (map[string]string, func() string, federatedCredential) {
			path := filepath.Join(t.TempDir(), "azure-identity-token")
			writeToken(t, path, fed.assertion(t, nil))
			rotate := func() string { next := fed.assertion(t, nil); writeToken(t, path, next); return next }
			return map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": path}, rotate, fed.credential()
		}},
		{"managed identity", func(t *testing.T) (map[string]string, func() string, federatedCredential) {
			fi := newFakeIdentity(t)
			return fi.env(), func() string { return "" }, fi.fed.credential()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, rotate, fc := tc.setup(t)
			p := newTestIDP(t)
			ti := newTokenIssuer(t, p)
			var accepted assertionLog
			ti.checkClient = accepted.checkFederated(fc)
			base, logs, stop := startRun(t, nil, p.getenv(env))

			client, loc := beginLogin(t, base, "localhost:8000")
			code, state := ti.authorize(loc)
			resp, err := client.Get(base + "/auth/callback?" + url.Values{"code": {code}, "state": {state}}.Encode())
			if err != nil {
				t.Fatal(err)
			}
			var ans tokenAnswer
			if body := readAnswer(t, resp); resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ans) != nil || ans.RefreshToken == "" {
				t.Fatalf("callback = %d %s; want 200 with tokens", resp.StatusCode, body)
			}
			rotated := rotate()
			refreshAt(t, client, base, ans.RefreshToken)
			if err := stop(); err != nil {
				t.Errorf("run after cancel = %v", err)
			}

			got := accepted.list()
			if len(got) != 2 || !strings.HasPrefix(got[0], "authorization_code ") || !strings.HasPrefix(got[1], "refresh_token ") {
				t.Fatalf("the provider accepted %q; want an assertion on the code and on the refresh grant", got)
			}
			if rotated != "" && got[1] != "refresh_token "+rotated {
				t.Errorf("the refresh carried an old assertion; want the rotated file's content")
			}
			for _, g := range got {
				_, a, _ := strings.Cut(g, " ")
				assertNoSecretsLogged(t, logs.String(), a)
			}
			assertNoSecretsLogged(t, logs.String(), ans.AccessToken, ans.RefreshToken, env["IDENTITY_HEADER"])
		})
	}
}

// TestEndToEndDevManagedIdentity: go run . -dev with
// AZURE_CLIENT_ASSERTION=managed-identity signs in and refreshes with no
// secret at all: the service gets its assertion from the dev identity
// endpoint on loopback, and the dev token endpoint checks it.
func TestEndToEndDevManagedIdentity(t *testing.T) {
	base, logs, stop := startRun(t, []string{"-dev"}, func(k string) string {
		return map[string]string{"AZURE_CLIENT_ASSERTION": "managed-identity"}[k]
	})
	ans := signInDev(t, base, "Ada Secretless", permRead)
	refreshAt(t, http.DefaultClient, base, ans.RefreshToken)
	if err := stop(); err != nil {
		t.Errorf("run after cancel = %v", err)
	}
	if !strings.Contains(logs.String(), "client credential: managed identity token") {
		t.Errorf("the service did not use the managed identity:\n%s", logs)
	}
	assertNoSecretsLogged(t, logs.String(), ans.AccessToken, ans.RefreshToken)
}

// TestRunRefusesUnusableClientCredentials: two credentials at once, or a
// federated token file that cannot be read, stop start-up with a settings
// error (exit 2) naming them, before anything listens.
func TestRunRefusesUnusableClientCredentials(t *testing.T) {
	p := newTestIDP(t)
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"secret and federated token file", map[string]string{"AZURE_FEDERATED_TOKEN_FILE": "/var/run/token"},
			[]string{"AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "exactly one"}},
		{"secret and managed identity", map[string]string{"AZURE_CLIENT_ASSERTION": "managed-identity"},
			[]string{"AZURE_CLIENT_SECRET", "AZURE_CLIENT_ASSERTION=managed-identity", "exactly one"}},
		{"unreadable federated token file", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": filepath.Join(t.TempDir(), "absent")},
			[]string{"federated token file", "no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := p.getenv(tc.env)
			err := run(context.Background(), []string{"heroes-auth"}, func(k string) string {
				if k == "ADDR" {
					return "127.0.0.1:0"
				}
				return env(k)
			}, io.Discard, io.Discard)
			if exitCode(err) != 2 {
				t.Fatalf("run = %v (exit %d); want a settings error, exit 2", err, exitCode(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("run error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestRunListensOnPORT: with PORT set and ADDR unset the service listens
// on :PORT, every interface, as container platforms expect.
func TestRunListensOnPORT(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	p := newTestIDP(t)
	env := p.getenv(map[string]string{"PORT": port, "LOG_FORMAT": "json"})
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"heroes-auth"}, env, &logs, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v", err)
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); listeningAddr(logs.String()) == ""; {
		if time.Now().After(deadline) {
			t.Fatalf("run did not start listening:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr := listeningAddr(logs.String()); addr != "[::]:"+port && addr != "0.0.0.0:"+port {
		t.Errorf("listening on %s; want every interface on port %s", addr, port)
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz on PORT = %d; want 200", resp.StatusCode)
	}
}
