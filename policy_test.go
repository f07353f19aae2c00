package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// stepUpChallenge is the JSON the step-up policy asks for with c1.
const stepUpChallenge = `{"access_token":{"acrs":{"essential":true,"value":"c1"}}}`

// TestStepUpChallenge: with STEP_UP_AUTH_CONTEXT, an Admin operation needs
// the context in acrs, else a 401 claims challenge in Microsoft's format;
// reading is unaffected.
func TestStepUpChallenge(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	h := newTestServer(t, p, map[string]string{"STEP_UP_AUTH_CONTEXT": "c1"}, io.Discard)
	const hero = "/api/heroes/0b9c1b4e-6d55-4d36-9f37-2a7e0c2e3f10"
	tests := []struct {
		name, method string
		claims       map[string]any
		status       int
		challenged   bool
	}{
		{"Admin without acrs", "DELETE", map[string]any{"scp": "Admin"}, http.StatusUnauthorized, true},
		{"Admin with another context", "DELETE", map[string]any{"scp": "Admin", "acrs": []string{"c2"}}, http.StatusUnauthorized, true},
		{"Admin with an empty acrs", "DELETE", map[string]any{"scp": "Admin", "acrs": []string{}}, http.StatusUnauthorized, true},
		{"Admin with the context among others", "DELETE", map[string]any{"scp": "Admin", "acrs": []string{"c3", "c1"}}, http.StatusNotFound, false},
		{"an app's Admin role cannot step up", "DELETE", map[string]any{"scp": nil, "roles": []string{"Admin"}}, http.StatusUnauthorized, true},
		{"a reader is refused the permission first", "DELETE", map[string]any{"scp": "Heroes.Read"}, http.StatusForbidden, false},
		{"reading needs no context", "GET", map[string]any{"scp": "Admin"}, http.StatusNotFound, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, bearer(httptest.NewRequest(tc.method, hero, nil), p.token(t, tc.claims)))
			if w.Code != tc.status {
				t.Fatalf("%s = %d %s; want %d", tc.method, w.Code, w.Body, tc.status)
			}
			if !tc.challenged {
				return
			}
			checkClaimsChallenge(t, w, p.srv.URL+"/"+testTenant+"/oauth2/v2.0/authorize", stepUpChallenge)
			if !strings.Contains(w.Body.String(), "authentication context c1") {
				t.Errorf("body %s does not say which authentication context is needed", w.Body)
			}
			if !strings.Contains(w.Body.String(), "/auth/login?claims=") {
				t.Errorf("body %s does not say how this service's sign-in takes the claims", w.Body)
			}
			// RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
			desc := bearerChallengeParams(w.Header().Get("WWW-Authenticate"))["error_description"]
			if desc == "" || strings.IndexFunc(desc, func(r rune) bool { return r < 0x20 || r > 0x7e || r == '"' || r == '\\' }) >= 0 {
				t.Errorf("error_description %q; want printable ASCII without quote or backslash", desc)
			}
		})
	}
	t.Run("off by default", func(t *testing.T) {
		t.Parallel()
		h := newTestServer(t, p, nil, io.Discard)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, bearer(httptest.NewRequest("DELETE", hero, nil), p.token(t, map[string]any{"scp": "Admin"})))
		if w.Code != http.StatusNotFound {
			t.Errorf("DELETE without STEP_UP_AUTH_CONTEXT = %d %s; want 404 (no such hero)", w.Code, w.Body)
		}
	})
	t.Run("an acrs that is not an array is a malformed token", func(t *testing.T) {
		t.Parallel()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, bearer(httptest.NewRequest("DELETE", hero, nil), p.token(t, map[string]any{"scp": "Admin", "acrs": "c1"})))
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("acrs as a string = %d %q; want 401 invalid_token", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	})
}

// checkClaimsChallenge checks a 401 claims challenge as Microsoft's "Claims
// challenges" page specifies it: Bearer, error insufficient_claims,
// authorization_uri, and claims in padded standard base64 of wantJSON; and
// the JSON body's error.
func checkClaimsChallenge(t *testing.T, w *httptest.ResponseRecorder, authorizeURI, wantJSON string) {
	t.Helper()
	header := w.Header().Get("WWW-Authenticate")
	params := bearerChallengeParams(header)
	if w.Code != http.StatusUnauthorized || !strings.HasPrefix(header, "Bearer ") || params["error"] != "insufficient_claims" {
		t.Fatalf("answer %d, WWW-Authenticate %q; want 401 Bearer error=insufficient_claims", w.Code, header)
	}
	if params["authorization_uri"] != authorizeURI {
		t.Errorf("authorization_uri = %q; want %q", params["authorization_uri"], authorizeURI)
	}
	if want := base64.StdEncoding.EncodeToString([]byte(wantJSON)); params["claims"] != want {
		t.Errorf("claims = %q; want %q, the padded standard base64 of %s", params["claims"], want, wantJSON)
	}
	var body apiError
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error != "insufficient_claims" || body.Detail == "" {
		t.Errorf("body = %s; want the JSON error insufficient_claims with a detail", w.Body)
	}
}

// TestGuestPolicy: with ALLOW_GUEST_USERS=false a guest's token is a 403 on
// every API route; a member's goes through; by default guests are served.
func TestGuestPolicy(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	iss := p.issuer(testTenant)
	home := "https://sts.windows.net/eeeeeeee-86f1-41af-91ab-2d7cd011db47/"
	tests := []struct {
		name   string
		claims map[string]any
		guest  bool
	}{
		{"a member without acct or idp", nil, false},
		{"acct 0", map[string]any{"acct": 0}, false},
		{"acct 1", map[string]any{"acct": 1}, true},
		{`acct "1"`, map[string]any{"acct": "1"}, true},
		{"idp of another tenant", map[string]any{"idp": home}, true},
		{"idp of a personal account", map[string]any{"idp": "live.com"}, true},
		{"idp equal to iss", map[string]any{"idp": iss}, false},
		{"acct 0 but another idp", map[string]any{"acct": 0, "idp": home}, true},
	}
	refusing := newTestServer(t, p, map[string]string{"ALLOW_GUEST_USERS": "false"}, io.Discard)
	allowing := newTestServer(t, p, nil, io.Discard)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok := p.token(t, tc.claims)
			for _, path := range []string{"/api/heroes/", "/api/heroes-fireball-low-ac"} {
				w := httptest.NewRecorder()
				refusing.ServeHTTP(w, bearer(httptest.NewRequest("GET", path, nil), tok))
				if tc.guest && (w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "guest users are not allowed") ||
					!strings.Contains(w.Header().Get("WWW-Authenticate"), `error="insufficient_scope"`)) {
					t.Errorf("GET %s as a guest = %d %s; want 403 saying guests are not allowed", path, w.Code, w.Body)
				}
				if !tc.guest && w.Code != http.StatusOK {
					t.Errorf("GET %s as a member = %d %s; want 200", path, w.Code, w.Body)
				}
			}
			w := httptest.NewRecorder()
			allowing.ServeHTTP(w, bearer(httptest.NewRequest("GET", "/api/heroes/", nil), tok))
			if w.Code != http.StatusOK {
				t.Errorf("GET with guests allowed = %d %s; want 200", w.Code, w.Body)
			}
		})
	}
	t.Run("a malformed acct is a malformed token", func(t *testing.T) {
		t.Parallel()
		w := httptest.NewRecorder()
		refusing.ServeHTTP(w, bearer(httptest.NewRequest("GET", "/api/heroes/", nil), p.token(t, map[string]any{"acct": true})))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("acct true = %d; want 401", w.Code)
		}
	})
}

// TestCAETokensAreAcceptedAsAny: a CAE token (xms_cc cp1) lives up to 28
// hours; there is no maximum-lifetime rule to refuse it.
func TestCAETokensAreAcceptedAsAny(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	v := newTestVerifier(t, p, nil)
	now := time.Now()
	tok := p.token(t, map[string]any{"xms_cc": []string{"cp1"}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(27*time.Hour + 50*time.Minute).Unix()})
	if _, err := v.verifyAccessToken(t.Context(), tok); err != nil {
		t.Errorf("a CAE token living 27 h 50 min = %v; want accepted", err)
	}
}

// TestLoginForwardsClaims: /auth/login passes a claims challenge, in any of
// its encodings, to the authorize endpoint as the decoded JSON, and refuses
// anything that is not a claims request; nothing else reaches Entra.
func TestLoginForwardsClaims(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	json := stepUpChallenge
	for _, sent := range []string{json, base64.StdEncoding.EncodeToString([]byte(json)), base64.RawStdEncoding.EncodeToString([]byte(json)),
		base64.URLEncoding.EncodeToString([]byte(`{"access_token":{"nbf":{"essential":true, "value":"1657834417"}}}`)), " " + json + " "} {
		_, loc := h.login(t, "?claims="+url.QueryEscape(sent)+"&acr_values=x&claims_locales=fr&foo=bar")
		u, _ := url.Parse(loc)
		got := u.Query()
		want, _ := readClaimsRequest(sent)
		if got.Get("claims") != want || !strings.HasPrefix(want, `{"access_token":`) {
			t.Errorf("claims %q reached the authorize endpoint as %q; want %q", sent, got.Get("claims"), want)
		}
		for _, k := range []string{"acr_values", "claims_locales", "foo"} {
			if got.Has(k) {
				t.Errorf("%s reached the authorize endpoint", k)
			}
		}
	}
	if _, loc := h.login(t, ""); strings.Contains(loc, "claims=") {
		t.Errorf("a login without claims sent claims: %s", loc)
	}
	for _, bad := range []string{"not base64 or JSON", base64.StdEncoding.EncodeToString([]byte("[1]")), "[]", `{"a":1,"a":2}`, `{"a":`,
		base64.StdEncoding.EncodeToString([]byte(`{"x":"` + strings.Repeat("y", maxClaimsLen) + `"}`))} {
		w := h.do(httptest.NewRequest("GET", "/auth/login?claims="+url.QueryEscape(bad), nil))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "claims") || len(w.Result().Cookies()) != 0 {
			t.Errorf("claims %.40q = %d %s; want 400 naming claims, no login cookie", bad, w.Code, w.Body)
		}
	}
	w := h.do(httptest.NewRequest("GET", "/auth/login?claims="+url.QueryEscape(json)+"&claims="+url.QueryEscape(json), nil))
	if w.Code != http.StatusBadRequest {
		t.Errorf("claims twice = %d; want 400", w.Code)
	}
}

func TestReadClaimsRequest(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{stepUpChallenge, stepUpChallenge},
		{"eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiY3AxIn19fQ==", `{"access_token":{"acrs":{"essential":true,"value":"cp1"}}}`},
		{"eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiY3AxIn19fQ", `{"access_token":{"acrs":{"essential":true,"value":"cp1"}}}`},
		{"e30=", "{}"},
		{"  {}", "{}"},
	}
	for _, tc := range tests {
		if got, err := readClaimsRequest(tc.in); err != nil || got != tc.want {
			t.Errorf("readClaimsRequest(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"e3", "W10=", "{", `"x"`, "e30==", "\xff", "{}{}"} {
		if got, err := readClaimsRequest(bad); err == nil {
			t.Errorf("readClaimsRequest(%q) = %q; want an error", bad, got)
		}
	}
}

// FuzzReadClaimsRequest: whatever comes in, a claims request comes out as
// one JSON object within the bound, or an error.
func FuzzReadClaimsRequest(f *testing.F) {
	f.Add(stepUpChallenge)
	f.Add(base64.StdEncoding.EncodeToString([]byte(stepUpChallenge)))
	f.Add("e30")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := readClaimsRequest(s)
		if err != nil || got == "" {
			return
		}
		if len(got) > maxClaimsLen || parseObject([]byte(got), nil) != nil {
			t.Fatalf("readClaimsRequest(%q) = %q: not one JSON object within %d bytes", s, got, maxClaimsLen)
		}
	})
}

func TestIsGuest(t *testing.T) {
	t.Parallel()
	iss := "https://login.microsoftonline.com/" + testTenant + "/v2.0"
	tests := []struct {
		c    claims
		want bool
	}{
		{claims{Issuer: iss}, false},
		{claims{Issuer: iss, AccountType: "0"}, false},
		{claims{Issuer: iss, AccountType: "1"}, true},
		{claims{Issuer: iss, IdentityProvider: iss}, false},
		{claims{Issuer: iss, IdentityProvider: "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd0122247/"}, true},
		{claims{Issuer: iss, IdentityProvider: "mail"}, true},
		// an app-only v2 token names its own tenant's v1 issuer as idp
		{claims{Issuer: iss, TenantID: testTenant, IdentityProvider: "https://sts.windows.net/" + testTenant + "/"}, false},
		// a guest: iss and tid are the resource tenant's, idp the home tenant's
		{claims{Issuer: iss, TenantID: testTenant, IdentityProvider: "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd0122247/"}, true},
		{claims{Issuer: iss, TenantID: testTenant, IdentityProvider: "live.com"}, true},
		// an idp merely holding the tenant id is another provider's
		{claims{Issuer: iss, TenantID: testTenant, IdentityProvider: "https://idp.partner.example/" + testTenant + "/"}, true},
		{claims{Issuer: iss, TenantID: testTenant, IdentityProvider: "https://sts.windows.net/" + testTenant + "/../evil/"}, true},
		{claims{Issuer: iss, TenantID: testTenant, IdentityProvider: "https://accounts.evil.example/t/" + testTenant + "/x"}, true},
		// no tid: idp is compared with iss only
		{claims{Issuer: iss, IdentityProvider: "https://sts.windows.net//"}, true},
	}
	for _, tc := range tests {
		if got := isGuest(&tc.c); got != tc.want {
			t.Errorf("isGuest(acct %q, idp %q) = %v; want %v", tc.c.AccountType, tc.c.IdentityProvider, got, tc.want)
		}
	}
}

// TestSignedInPageOffersStepUp: with STEP_UP_AUTH_CONTEXT, the signed-in
// page offers to sign in again with the claims asking for it, unless the
// token carries it already.
func TestSignedInPageOffersStepUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{env: map[string]string{"STEP_UP_AUTH_CONTEXT": "c1"}})
	page := h.signIn(t, "", "text/html").Body.String()
	if !strings.Contains(page, "sign in again with c1") {
		t.Errorf("signed-in page lacks the step-up offer:\n%s", page)
	}
	if want := `href="/auth/login?claims=` + url.QueryEscape(stepUpChallenge) + `"`; !strings.Contains(page, want) {
		t.Errorf("signed-in page does not link %s:\n%s", want, page)
	}
	h.ti.mu.Lock()
	h.ti.atOverride = map[string]any{"acrs": []string{"c1"}}
	h.ti.mu.Unlock()
	if page := h.signIn(t, "", "text/html").Body.String(); strings.Contains(page, "sign in again with c1") {
		t.Errorf("signed-in page offers a step-up the token already carries")
	}
}
