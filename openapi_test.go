package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// routeRecorder is a router that records the patterns registered on it.
type routeRecorder struct{ patterns []string }

// Handle records pattern; the handler is not needed.
func (rr *routeRecorder) Handle(pattern string, _ http.Handler) {
	rr.patterns = append(rr.patterns, pattern)
}

// fetchOpenAPI serves GET /openapi.json for cfg and returns the document.
func fetchOpenAPI(t *testing.T, cfg config) map[string]any {
	t.Helper()
	prov := newProvider(cfg.verifyOptions(&http.Client{Timeout: 5 * time.Second}, discardLogger()))
	w := httptest.NewRecorder()
	handleOpenAPI(cfg, prov).ServeHTTP(w, httptest.NewRequest("GET", "/openapi.json", nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatalf("document is not JSON: %v", err)
	}
	return doc
}

// dig walks a decoded JSON document by object keys.
func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("dig %v: %q is not under an object", keys, k)
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("dig %v: no %q", keys, k)
		}
	}
	return v
}

// TestOpenAPICoversRoutes checks every route addRoutes registers is in the
// document with its method, and every operation of the document is a
// registered route.
func TestOpenAPICoversRoutes(t *testing.T) {
	p := newTestIDP(t)
	cfg := p.config(t, nil)
	client := &http.Client{Timeout: 5 * time.Second}
	logger := discardLogger()
	prov, v, af := newTestHalves(t, cfg, cfg.verifyOptions(client, logger), client, logger)
	rr := &routeRecorder{}
	addRoutes(rr, logger, cfg, prov, v, af, newMemoryStore(), nil) // idp nil: /devidp/ is -dev only

	var registered []string
	for _, pat := range rr.patterns {
		method, path, ok := strings.Cut(pat, " ")
		if !ok {
			t.Errorf("pattern %q has no method; every route must name one", pat)
			continue
		}
		registered = append(registered, method+" "+strings.TrimSuffix(path, "{$}"))
	}
	var documented []string
	paths := dig(t, fetchOpenAPI(t, cfg), "paths").(map[string]any)
	// A path served without its trailing slash as well is listed once, the
	// canonical one saying so in its description.
	for i, r := range registered {
		method, path, _ := strings.Cut(r, " ")
		if item, ok := paths[path+"/"].(map[string]any); ok && path != "" && !strings.HasSuffix(path, "/") {
			if desc, _ := item["description"].(string); !strings.Contains(desc, path+" (without the trailing slash)") {
				t.Errorf("%s is registered, and %s/ does not say so in its description: %q", r, path, desc)
			}
			if _, listed := paths[path]; listed {
				t.Errorf("openapi.json lists both %s and %s/; want only the canonical %s/", path, path, path)
			}
			registered[i] = method + " " + path + "/"
		}
	}
	for path, item := range paths {
		for key := range item.(map[string]any) {
			switch key {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				documented = append(documented, strings.ToUpper(key)+" "+path)
			}
		}
	}
	slices.Sort(registered)
	slices.Sort(documented)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is registered but not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("operation %s is in openapi.json but not registered", d)
		}
	}
}

// TestOpenAPISecurityScheme checks the oauth2 authorizationCode flow: the
// identity provider's endpoints and the three full scope strings.
func TestOpenAPISecurityScheme(t *testing.T) {
	p := newTestIDP(t)
	tests := []struct {
		name      string
		extra     map[string]string
		authority string // AuthorityHost the URLs must start with; "" means the test IdP
		scopes    []string
	}{
		{"scopes carry the App ID URI", nil, "", []string{
			"api://" + testClientID + "/Admin", "api://" + testClientID + "/Heroes.Create", "api://" + testClientID + "/Heroes.Read"}},
		{"URI taken from any scope that has one", map[string]string{"API_SCOPE": "openid https://contoso.com/heroes/Heroes.Read"},
			"", []string{"https://contoso.com/heroes/Admin", "https://contoso.com/heroes/Heroes.Create", "https://contoso.com/heroes/Heroes.Read"}},
		{"bare scope names without a URI", map[string]string{"API_SCOPE": "Heroes.Read"}, "", []string{"Admin", "Heroes.Create", "Heroes.Read"}},
		{"unreachable provider falls back to the authority's endpoints", map[string]string{"AZURE_AUTHORITY_HOST": "http://127.0.0.1:1"},
			"http://127.0.0.1:1", []string{"api://" + testClientID + "/Admin", "api://" + testClientID + "/Heroes.Create", "api://" + testClientID + "/Heroes.Read"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := p.config(t, tc.extra)
			doc := fetchOpenAPI(t, cfg)
			if got := dig(t, doc, "openapi"); got != "3.1.0" {
				t.Errorf("openapi = %v; want 3.1.0", got)
			}
			flow := dig(t, doc, "components", "securitySchemes", "oauth2", "flows", "authorizationCode")
			authority := tc.authority
			if authority == "" {
				authority = p.srv.URL
			}
			base := authority + "/" + testTenant + "/oauth2/v2.0/"
			if got := dig(t, flow, "authorizationUrl"); got != base+"authorize" {
				t.Errorf("authorizationUrl = %v; want %s", got, base+"authorize")
			}
			if got := dig(t, flow, "tokenUrl"); got != base+"token" {
				t.Errorf("tokenUrl = %v; want %s", got, base+"token")
			}
			var scopes []string
			for s := range dig(t, flow, "scopes").(map[string]any) {
				scopes = append(scopes, s)
			}
			slices.Sort(scopes)
			if !slices.Equal(scopes, tc.scopes) {
				t.Errorf("scopes = %q; want %q", scopes, tc.scopes)
			}
			// Each protected operation asks for one of the scopes.
			op := dig(t, doc, "paths", "/api/heroes/{id}", "delete", "security").([]any)
			if got := dig(t, op[0], "oauth2").([]any); len(got) != 1 || !strings.HasSuffix(got[0].(string), "Admin") {
				t.Errorf("DELETE security = %v; want the Admin scope", got)
			}
		})
	}
}

// TestOpenAPIHeroSchema checks the documented schemas have exactly the JSON
// members the Go types write, so the document cannot drift from the wire.
func TestOpenAPIHeroSchema(t *testing.T) {
	p := newTestIDP(t)
	doc := fetchOpenAPI(t, p.config(t, nil))
	tests := []struct {
		schema string
		typ    any
	}{
		{"Hero", hero{}},
		{"AbilityScores", abilityScores{}},
		{"SkillProficiencies", skillProficiencies{}},
		{"Equipment", equipment{}},
		{"Spell", spell{}},
	}
	for _, tc := range tests {
		t.Run(tc.schema, func(t *testing.T) {
			var want []string
			rt := reflect.TypeOf(tc.typ)
			for i := range rt.NumField() {
				name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
				want = append(want, name)
			}
			var got []string
			for k := range dig(t, doc, "components", "schemas", tc.schema, "properties").(map[string]any) {
				got = append(got, k)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("schema %s properties = %v; want the JSON names %v", tc.schema, got, want)
			}
		})
	}
}

// TestOpenAPIRefsResolve checks every $ref points at a defined component.
func TestOpenAPIRefsResolve(t *testing.T) {
	p := newTestIDP(t)
	doc := fetchOpenAPI(t, p.config(t, nil))
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				parts := strings.Split(strings.TrimPrefix(ref, "#/"), "/")
				cur := any(doc)
				for _, k := range parts {
					m, _ := cur.(map[string]any)
					if cur = m[k]; cur == nil {
						t.Errorf("$ref %s does not resolve", ref)
						return
					}
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
}

// TestOpenAPIOperations checks each hero operation documents the permission
// it needs as its oauth2 scope and every answer it can give: 400 (bad
// Authorization, or If-Match), 401, 403, 502 and 503 with Retry-After for
// all, 201 with Location and ETag for POST, 404, 409, 413, 415 and 422 where
// the handler gives them.
func TestOpenAPIOperations(t *testing.T) {
	p := newTestIDP(t)
	doc := fetchOpenAPI(t, p.config(t, nil))
	common := []string{"400", "401", "403", "502", "503"}
	tests := []struct {
		path, method string
		perm         string
		statuses     []string
	}{
		{"/api/heroes/", "get", permRead, []string{"200", "422"}},
		{"/api/heroes/", "post", permCreate, []string{"201", "413", "415", "422"}},
		{"/api/heroes/{id}", "get", permRead, []string{"200", "404"}},
		{"/api/heroes/{id}", "put", permCreate, []string{"200", "404", "409", "413", "415", "422"}},
		{"/api/heroes/{id}", "delete", permAdmin, []string{"200", "404", "409"}},
		{"/api/heroes-fireball-low-ac", "get", permRead, []string{"200"}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			op := dig(t, doc, "paths", tc.path, tc.method)
			sec := dig(t, op, "security").([]any)
			scopes := dig(t, sec[0], "oauth2").([]any)
			if len(scopes) != 1 || scopes[0] != "api://"+testClientID+"/"+tc.perm {
				t.Errorf("oauth2 scopes = %v; want [api://%s/%s]", scopes, testClientID, tc.perm)
			}
			responses := dig(t, op, "responses").(map[string]any)
			for _, status := range append(slices.Clone(common), tc.statuses...) {
				if _, ok := responses[status]; !ok {
					t.Errorf("responses lack %s", status)
				}
			}
			dig(t, responses, "503", "headers", "Retry-After")
			if r, ok := responses["422"]; ok {
				if got := dig(t, r, "content", "application/json", "schema", "$ref"); got != "#/components/schemas/HTTPValidationError" {
					t.Errorf("422 schema = %v; want HTTPValidationError", got)
				}
			}
			if _, ok := responses["201"]; ok {
				dig(t, responses, "201", "headers", "Location")
				dig(t, responses, "201", "headers", "ETag")
			}
		})
	}
	dig(t, doc, "paths", "/readyz", "get", "responses", "503", "headers", "Retry-After")
	// /docs cannot answer a step-up challenge itself: DELETE says how.
	if d, _ := dig(t, doc, "paths", "/api/heroes/{id}", "delete", "description").(string); !strings.Contains(d, "/auth/login?claims=") || !strings.Contains(d, "bearerAuth") {
		t.Errorf("DELETE description = %q; want how to get a stepped-up token (/auth/login?claims=…) and use it (bearerAuth)", d)
	}
}

// TestOpenAPIConstraints checks the documented schemas carry the limits
// validation applies (level 1–20, ability scores 1–30, non-negative hit
// points, armor class and speed, spell level 0–9, 200 characters, 100
// items) and the validation error shape (loc, msg, type required).
func TestOpenAPIConstraints(t *testing.T) {
	p := newTestIDP(t)
	schemas := dig(t, fetchOpenAPI(t, p.config(t, nil)), "components", "schemas")
	type constraint struct {
		path []string
		want any
	}
	tests := []constraint{
		{[]string{"HeroInput", "properties", "level", "minimum"}, 1.0},
		{[]string{"HeroInput", "properties", "level", "maximum"}, 20.0},
		{[]string{"HeroInput", "properties", "hit_points", "minimum"}, 0.0},
		{[]string{"HeroInput", "properties", "armor_class", "minimum"}, 0.0},
		{[]string{"HeroInput", "properties", "speed", "minimum"}, 0.0},
		{[]string{"HeroInput", "properties", "name", "maxLength"}, 200.0},
		{[]string{"HeroInput", "properties", "spells", "maxItems"}, 100.0},
		{[]string{"Equipment", "properties", "items", "maxItems"}, 100.0},
		{[]string{"Spell", "properties", "level", "minimum"}, 0.0},
		{[]string{"Spell", "properties", "level", "maximum"}, 9.0},
		{[]string{"Spell", "properties", "components", "maxItems"}, 100.0},
	}
	for _, ability := range abilityNames {
		tests = append(tests,
			constraint{[]string{"AbilityScores", "properties", ability, "minimum"}, 1.0},
			constraint{[]string{"AbilityScores", "properties", ability, "maximum"}, 30.0})
	}
	for _, tc := range tests {
		if got := dig(t, schemas, tc.path...); got != tc.want {
			t.Errorf("%s = %v; want %v", strings.Join(tc.path, "."), got, tc.want)
		}
	}
	required := dig(t, schemas, "ValidationError", "required").([]any)
	for _, f := range []string{"loc", "msg", "type"} {
		if !slices.Contains(required, any(f)) {
			t.Errorf("ValidationError.required = %v; want %s in it", required, f)
		}
		dig(t, schemas, "ValidationError", "properties", f)
	}
}

// abilityNames are the six ability score names.
var abilityNames = []string{"strength", "dexterity", "constitution", "intelligence", "wisdom", "charisma"}

// TestOpenAPIServers: the document names one server, the service's base URL
// from REDIRECT_URI (a proxy's path prefix kept), so a Swagger UI or client
// served elsewhere calls the service and not its own host.
func TestOpenAPIServers(t *testing.T) {
	p := newTestIDP(t)
	for redirect, want := range map[string]string{
		"http://localhost:8000/auth/callback":           "http://localhost:8000",
		"https://heroes.example.com/team/auth/callback": "https://heroes.example.com/team",
		"http://localhost:8000/callback":                "http://localhost:8000", // not the callback's path
	} {
		doc := fetchOpenAPI(t, p.config(t, map[string]string{"REDIRECT_URI": redirect}))
		servers, _ := doc["servers"].([]any)
		if len(servers) != 1 || dig(t, servers[0], "url") != want {
			t.Errorf("REDIRECT_URI %s: servers = %v; want one, %s", redirect, doc["servers"], want)
		}
	}
}

// TestOpenAPIExamplesAccepted sends the request body examples of POST and
// PUT, as Swagger UI's Try it out sends them, through the service's own
// handlers: they must be accepted (201, then 200), so that no change to the
// schema or to validation can leave /docs offering a body the service
// refuses.
func TestOpenAPIExamplesAccepted(t *testing.T) {
	p := newTestIDP(t)
	doc := fetchOpenAPI(t, p.config(t, nil))
	h := newTestServer(t, p, nil, io.Discard)
	tok := p.token(t, map[string]any{"scp": permCreate})
	send := func(method, target string, example any) *httptest.ResponseRecorder {
		t.Helper()
		body, err := json.Marshal(example)
		if err != nil {
			t.Fatal(err)
		}
		r := bearer(httptest.NewRequest(method, target, bytes.NewReader(body)), tok)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	post := dig(t, doc, "paths", "/api/heroes/", "post", "requestBody", "content", "application/json", "example")
	w := send("POST", "/api/heroes/", post)
	if w.Code != http.StatusCreated {
		t.Fatalf("POST /api/heroes/ with the document's example = %d %s; want 201", w.Code, w.Body)
	}
	put := dig(t, doc, "paths", "/api/heroes/{id}", "put", "requestBody", "content", "application/json", "example")
	loc := w.Header().Get("Location")
	if w := send("PUT", loc, put); w.Code != http.StatusOK {
		t.Errorf("PUT %s with the document's example = %d %s; want 200", loc, w.Code, w.Body)
	}
}
