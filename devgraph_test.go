package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDevIDPStepUp: a claims request for acrs makes the dev sign-in form ask
// for a second step; once confirmed, the access token carries acrs, and so
// do the tokens of its refresh.
func TestDevIDPStepUp(t *testing.T) {
	t.Parallel()
	h := newDevHarness(t, nil)
	pub, _ := h.publicKey(t)
	verifier, challenge := newPKCE()
	params := h.authParams(challenge, map[string]string{"claims": stepUpChallenge})
	resp, page := h.get(t, h.url("/oauth2/v2.0/authorize")+"?"+params.Encode())
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Second step") || !strings.Contains(page, "<code>c1</code>") ||
		!strings.Contains(page, `name="stepup" value="confirmed"`) || !strings.Contains(page, `name="claims"`) {
		t.Fatalf("authorize with a claims request = %d; want the form asking for the second step:\n%s", resp.StatusCode, page)
	}
	if resp, page := h.signIn(t, params, "Grace", "Admin"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "Confirm the second step") {
		t.Fatalf("sign-in without the second step = %d; want the form again asking for it:\n%s", resp.StatusCode, page)
	}
	params.Set("stepup", "confirmed")
	resp, _ = h.signIn(t, params, "Grace", "Admin")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	_, tok := h.token(t, h.codeForm(loc.Query().Get("code"), verifier), nil)
	_, at := verifyDevJWT(t, pub, tok["access_token"].(string))
	if acrs, _ := at["acrs"].([]any); !slices.Equal(acrs, []any{"c1"}) {
		t.Errorf("access token acrs = %v; want [c1]", at["acrs"])
	}
	_, refreshed := h.token(t, h.refreshForm(tok["refresh_token"].(string)), nil)
	if _, at := verifyDevJWT(t, pub, refreshed["access_token"].(string)); at["acrs"] == nil {
		t.Errorf("the refreshed access token lost acrs: %v", at)
	}

	code, verifier := h.code(t, "Grace", "Admin") // no claims request
	_, tok = h.token(t, h.codeForm(code, verifier), nil)
	if _, at := verifyDevJWT(t, pub, tok["access_token"].(string)); at["acrs"] != nil {
		t.Errorf("access token without a claims request carries acrs %v", at["acrs"])
	}
	for _, bad := range []string{"{", `{"access_token":{"acrs":{"essential":true,"value":"x1"}}}`, `{"access_token":{"acrs":{"values":["c1","c100"]}}}`, "[]"} {
		_, challenge := newPKCE()
		resp, _ := h.get(t, h.url("/oauth2/v2.0/authorize")+"?"+h.authParams(challenge, map[string]string{"claims": bad}).Encode())
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "invalid_request" {
			t.Errorf("claims %q = %d %s; want the invalid_request error sent back", bad, resp.StatusCode, loc)
		}
	}
	if ids, err := devRequestedAuthContexts(`{"access_token":{"acrs":{"values":["c3","c1"],"value":"c3"}},"id_token":{"acr":null}}`); err != nil || !slices.Equal(ids, []string{"c1", "c3"}) {
		t.Errorf("devRequestedAuthContexts = %v, %v; want [c1 c3]", ids, err)
	}
}

// oboForm is an on-behalf-of request of the dev client for assertion.
func (h *devHarness) oboForm(assertion string) url.Values {
	return url.Values{"grant_type": {jwtBearerGrant}, "requested_token_use": {"on_behalf_of"}, "assertion": {assertion},
		"scope": {"https://graph.microsoft.com/User.Read"}, "client_id": {devClientID}, "client_secret": {h.env("AZURE_CLIENT_SECRET")}}
}

// devGraphGet sends GET /devgraph/v1.0/me with tok.
func (h *devHarness) devGraphGet(t *testing.T, tok string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+"/devgraph/v1.0/me?$select=id,displayName,mail,userPrincipalName", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, body := h.do(t, req)
	var m map[string]any
	json.Unmarshal([]byte(body), &m)
	return resp.StatusCode, m, resp.Header.Get("WWW-Authenticate")
}

// TestDevIDPOnBehalfOf: the dev token endpoint trades a user's access token
// for a Graph token, as Entra does, and refuses as Entra refuses; the fake
// Graph answers /me with that token only.
func TestDevIDPOnBehalfOf(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Now())
	h := newDevHarness(t, clock)
	pub, _ := h.publicKey(t)
	code, verifier := h.code(t, "Ada Lovelace", "Heroes.Read")
	_, tok := h.token(t, h.codeForm(code, verifier), nil)
	access := tok["access_token"].(string)

	resp, obo := h.token(t, h.oboForm(access), nil)
	if resp.StatusCode != http.StatusOK || obo["scope"] != "https://graph.microsoft.com/User.Read" {
		t.Fatalf("on-behalf-of = %d %v; want 200 with Graph's User.Read", resp.StatusCode, obo)
	}
	graphToken := obo["access_token"].(string)
	_, gc := verifyDevJWT(t, pub, graphToken)
	oid := devObjectID("Ada Lovelace")
	for k, v := range map[string]any{"aud": "https://graph.microsoft.com", "iss": "https://sts.windows.net/" + devTenantID + "/", "scp": "User.Read",
		"oid": oid, "upn": "Ada Lovelace", "appid": devClientID, "ver": "1.0"} {
		if gc[k] != v {
			t.Errorf("Graph token %s = %v; want %v", k, gc[k], v)
		}
	}
	status, me, _ := h.devGraphGet(t, graphToken)
	if status != http.StatusOK || me["id"] != oid || me["displayName"] != "Ada Lovelace" || me["userPrincipalName"] != "Ada Lovelace" || me["mail"] != nil {
		t.Errorf("GET /devgraph/v1.0/me = %d %v; want Ada's profile", status, me)
	}
	if status, body, challenge := h.devGraphGet(t, access); status != http.StatusUnauthorized ||
		!strings.Contains(challenge, `error="invalid_token"`) || !strings.Contains(mustJSON(t, body), "InvalidAuthenticationToken") {
		t.Errorf("the heroes API's token at the fake Graph = %d %v %q; want 401 InvalidAuthenticationToken", status, body, challenge)
	}

	_, idTok := h.token(t, h.codeForm(h.code(t, "Ada Lovelace", "Heroes.Read")), nil)
	tests := []struct {
		name   string
		edit   func(url.Values)
		error  string
		aadsts int
	}{
		{"no requested_token_use", func(f url.Values) { f.Del("requested_token_use") }, "invalid_request", 900144},
		{"another requested_token_use", func(f url.Values) { f.Set("requested_token_use", "exchange") }, "invalid_request", 9002313},
		{"no assertion", func(f url.Values) { f.Del("assertion") }, "invalid_request", 900144},
		{"an ID token (no scp)", func(f url.Values) { f.Set("assertion", idTok["id_token"].(string)) }, "invalid_grant", 50013},
		{"a Graph token", func(f url.Values) { f.Set("assertion", graphToken) }, "invalid_grant", 50013},
		{"not a token", func(f url.Values) { f.Set("assertion", "x.y.z") }, "invalid_grant", 50013},
		{"a permission nobody consented to", func(f url.Values) { f.Set("scope", "https://graph.microsoft.com/Mail.Read") }, "invalid_grant", 65001},
		{"another API", func(f url.Values) { f.Set("scope", "api://other/x") }, "invalid_scope", 70011},
		{"no secret", func(f url.Values) { f.Del("client_secret") }, "invalid_client", 7000218},
	}
	for _, tc := range tests {
		f := h.oboForm(access)
		tc.edit(f)
		_, ans := h.token(t, f, nil)
		if e, n := devErrorCode(ans); e != tc.error || n != tc.aadsts {
			t.Errorf("%s: %s AADSTS%d; want %s AADSTS%d", tc.name, e, n, tc.error, tc.aadsts)
		}
		if tc.aadsts == 65001 && ans["suberror"] != "consent_required" {
			t.Errorf("%s: suberror = %v; want consent_required", tc.name, ans["suberror"])
		}
	}
	clock.advance(2 * time.Hour)
	if _, ans := h.token(t, h.oboForm(access), nil); ans["error"] != "invalid_grant" || !strings.Contains(mustJSON(t, ans["error_codes"]), "500133") {
		t.Errorf("an expired assertion = %v; want invalid_grant AADSTS500133", ans)
	}
	if status, _, _ := h.devGraphGet(t, graphToken); status != http.StatusUnauthorized {
		t.Errorf("an expired Graph token at the fake Graph = %d; want 401", status)
	}
}
