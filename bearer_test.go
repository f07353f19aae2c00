package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// protected wraps a handler that reports the principal's object id in
// requireAuth(perm) over v.
func protected(v *verifier, perm string) http.Handler {
	logger := slog.New(slog.DiscardHandler)
	return requireAuth(logger, v, perm)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := principalFrom(r.Context())
		if !ok {
			writeError(w, http.StatusInternalServerError, "no principal")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"oid": c.ObjectID})
	}))
}

func TestRequireAuthAnswers(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	good := p.token(t, nil)
	expired := p.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	otherAud := p.token(t, map[string]any{"aud": "99999999-2222-3333-4444-555555555555"})
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(good, ".")[1])
	oldKey := rawToken(testKeys()[1], `{"alg":"RS256","kid":"from-before-a-restart"}`, string(payload))
	idToken := p.token(t, map[string]any{"azp": nil, "scp": nil, "roles": []string{"Admin"}, "nonce": "n"}) // aud is the client id
	tests := []struct {
		name       string
		header     []string // Authorization header values
		target     string
		wantStatus int
		wantChall  string // exact WWW-Authenticate, "" for none
		wantError  string // error member of the JSON body
	}{
		{"valid token passes", []string{"Bearer " + good}, "/", 200, "", ""},
		{"scheme is case-insensitive", []string{"bEARER " + good}, "/", 200, "", ""},
		{"several spaces before the token are allowed", []string{"Bearer   " + good}, "/", 200, "", ""},
		{"no credentials gets a bare challenge", nil, "/", 401, `Bearer realm="heroes-auth"`, ""},
		{"another scheme gets a bare challenge", []string{"Basic dXNlcjpwYXNz"}, "/", 401, `Bearer realm="heroes-auth"`, ""},
		{"token in the query string is never read", nil, "/?access_token=" + good, 401, `Bearer realm="heroes-auth"`, ""},
		{"token in a form field is never read", nil, "form", 401, `Bearer realm="heroes-auth"`, ""},
		{"scheme alone is invalid_request", []string{"Bearer"}, "/", 400,
			`Bearer realm="heroes-auth", error="invalid_request", error_description="the Authorization header is not Bearer and one token"`, "invalid_request"},
		{"two tokens are invalid_request", []string{"Bearer " + good + " " + good}, "/", 400,
			`Bearer realm="heroes-auth", error="invalid_request", error_description="the Authorization header is not Bearer and one token"`, "invalid_request"},
		{"two Authorization headers are invalid_request", []string{"Bearer " + good, "Bearer " + good}, "/", 400,
			`Bearer realm="heroes-auth", error="invalid_request", error_description="the Authorization header is not Bearer and one token"`, "invalid_request"},
		{"a token with a comma is invalid_request", []string{"Bearer a,b"}, "/", 400,
			`Bearer realm="heroes-auth", error="invalid_request", error_description="the Authorization header is not Bearer and one token"`, "invalid_request"},
		{"a leading space is invalid_request", []string{" Bearer " + good}, "/", 400,
			`Bearer realm="heroes-auth", error="invalid_request", error_description="the Authorization header is not Bearer and one token"`, "invalid_request"},
		{"a token longer than 16 KiB is invalid_token", []string{"Bearer " + strings.Repeat("a", maxTokenBytes+1)}, "/", 401,
			`Bearer realm="heroes-auth", error="invalid_token", error_description="malformed token"`, "invalid_token"},
		{"garbage token is invalid_token", []string{"Bearer abc"}, "/", 401,
			`Bearer realm="heroes-auth", error="invalid_token", error_description="malformed token"`, "invalid_token"},
		{"expired token says so", []string{"Bearer " + expired}, "/", 401,
			`Bearer realm="heroes-auth", error="invalid_token", error_description="the token expired"`, "invalid_token"},
		{"an unknown signing key says to sign in again", []string{"Bearer " + oldKey}, "/", 401,
			`Bearer realm="heroes-auth", error="invalid_token", error_description="unknown signing key: sign in again for a new token"`, "invalid_token"},
		{"wrong audience says so", []string{"Bearer " + otherAud}, "/", 401,
			`Bearer realm="heroes-auth", error="invalid_token", error_description="wrong audience"`, "invalid_token"},
		{"an ID token with roles is not an access token", []string{"Bearer " + idToken}, "/", 401,
			`Bearer realm="heroes-auth", error="invalid_token", error_description="the token names no client application (azp, appid): not an access token"`, "invalid_token"},
	}
	v := newTestVerifier(t, p, nil)
	h := protected(v.verifier, permRead)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r *http.Request
			if tc.target == "form" {
				r = httptest.NewRequest("POST", "/", strings.NewReader("access_token="+good))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				r = httptest.NewRequest("GET", tc.target, nil)
			}
			for _, a := range tc.header {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status = %d; want %d (body %s)", w.Code, tc.wantStatus, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.wantChall {
				t.Errorf("WWW-Authenticate = %q; want %q", got, tc.wantChall)
			}
			var body apiError
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Detail == nil && tc.wantStatus != 200 {
				t.Fatalf("body %q is not an apiError: %v", w.Body, err)
			}
			if body.Error != tc.wantError {
				t.Errorf("body error = %q; want %q", body.Error, tc.wantError)
			}
			if strings.Contains(w.Body.String(), good) || strings.Contains(w.Header().Get("WWW-Authenticate"), good[:20]) {
				t.Errorf("the answer echoes the token")
			}
		})
	}
}

func TestRequireAuthPermissionHierarchy(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	v := newTestVerifier(t, p, nil)
	tests := []struct {
		name   string
		claims map[string]any
		perm   string
		want   int
	}{
		{"scp Heroes.Read grants Heroes.Read", map[string]any{"scp": "Heroes.Read"}, permRead, 200},
		{"scp Heroes.Read does not grant Heroes.Create", map[string]any{"scp": "Heroes.Read"}, permCreate, 403},
		{"scp Heroes.Create grants Heroes.Read", map[string]any{"scp": "Heroes.Create"}, permRead, 200},
		{"scp Heroes.Create grants Heroes.Create", map[string]any{"scp": "Heroes.Create"}, permCreate, 200},
		{"scp Heroes.Create does not grant Admin", map[string]any{"scp": "Heroes.Create"}, permAdmin, 403},
		{"scp Admin grants Heroes.Read", map[string]any{"scp": "Admin"}, permRead, 200},
		{"scp Admin grants Admin", map[string]any{"scp": "openid Admin"}, permAdmin, 200},
		{"roles Admin grants Heroes.Create", map[string]any{"scp": nil, "roles": []string{"Admin"}}, permCreate, 200},
		{"roles Heroes.Read grants Heroes.Read", map[string]any{"scp": nil, "roles": []string{"Heroes.Read"}}, permRead, 200},
		{"roles Heroes.Read does not grant Admin", map[string]any{"scp": nil, "roles": []string{"Heroes.Read"}}, permAdmin, 403},
		{"a scope containing the name is no match", map[string]any{"scp": "Heroes.ReadAll"}, permRead, 403},
		{"the full scope URI is no match", map[string]any{"scp": "api://" + testClientID + "/Heroes.Read"}, permRead, 403},
		{"scope names are case-sensitive", map[string]any{"scp": "heroes.read"}, permRead, 403},
		{"a role in scp-less token must be exact", map[string]any{"scp": nil, "roles": []string{"Admins"}}, permRead, 403},
		{"RFC 9068 scope grants when scp is absent", map[string]any{"scp": nil, "scope": "Heroes.Read"}, permRead, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := bearer(httptest.NewRequest("GET", "/", nil), p.token(t, tc.claims))
			w := httptest.NewRecorder()
			protected(v.verifier, tc.perm).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status = %d; want %d (body %s)", w.Code, tc.want, w.Body)
			}
			if tc.want == 403 {
				want := `Bearer realm="heroes-auth", error="insufficient_scope", error_description="the token does not grant ` + tc.perm + `", scope="` + tc.perm + `"`
				if got := w.Header().Get("WWW-Authenticate"); got != want {
					t.Errorf("WWW-Authenticate = %q; want %q", got, want)
				}
				if !strings.Contains(w.Body.String(), `"error":"insufficient_scope"`) {
					t.Errorf("body = %s; want error insufficient_scope", w.Body)
				}
			}
		})
	}
}

func TestRequireAuthIDPUnavailable(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	p.srv.Close() // the identity provider is unreachable from the start
	v := newTestVerifier(t, p, nil)
	tok := sign(t, testKeys()[0], stdHeader, p.claims(time.Now()))
	for _, name := range []string{"first request triggers a load that fails", "second request is inside the backoff"} {
		t.Run(name, func(t *testing.T) {
			r := bearer(httptest.NewRequest("GET", "/", nil), tok)
			w := httptest.NewRecorder()
			protected(v.verifier, permRead).ServeHTTP(w, r)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
				t.Fatalf("status = %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
			}
		})
	}
	if err := v.ready(); err == nil {
		t.Errorf("ready() = nil; want not ready")
	}
}

func TestPrincipalFromEmptyContext(t *testing.T) {
	t.Parallel()
	if c, ok := principalFrom(httptest.NewRequest("GET", "/", nil).Context()); ok || c != nil {
		t.Errorf("principalFrom(empty) = %v, %v; want nil, false", c, ok)
	}
}

// FuzzBearerToken feeds arbitrary Authorization headers to bearerToken: no
// panic, and what it returns is one token68 of at most maxTokenBytes.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer  x", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer a=", "Bearer =", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		tok, err := bearerToken(r)
		if err != nil {
			return
		}
		if !isToken68(tok) || len(tok) > maxTokenBytes || strings.ContainsAny(tok, " ,\t") {
			t.Fatalf("bearerToken(%q) = %q", header, tok)
		}
	})
}

func TestRequireAuthNeverLogsTheToken(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	v := newTestVerifier(t, p, nil)
	tokens := []string{
		p.token(t, nil),
		p.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}),
		p.token(t, map[string]any{"aud": "nope"}),
		p.token(t, map[string]any{"scp": "Other"}),
		strings.TrimSuffix(p.token(t, nil), "A") + "B",
		rawToken(testKeys()[1], `{"alg":"RS256","kid":"k0"}`, `{"exp":1}`),
		b64(`{"alg":"none"}`) + "." + b64(`{"sub":"x"}`) + ".",
	}
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := requireAuth(logger, v.verifier, permAdmin)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, tok := range tokens {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, bearer(httptest.NewRequest("GET", "/", nil), tok))
		_, _, sig := splitToken(tok)
		for _, leak := range []string{tok, sig} {
			if leak != "" && (strings.Contains(logs.String(), leak) || strings.Contains(w.Body.String(), leak) || strings.Contains(w.Header().Get("WWW-Authenticate"), leak)) {
				t.Fatalf("the token or its signature appears in the log or the answer (status %d)", w.Code)
			}
		}
	}
	if logs.String() == "" {
		t.Fatalf("nothing was logged; want the refusals logged")
	}
}

// TestScopesSplitOnSpacesOnly: scp is split on the space character alone
// (RFC 6749 §3.3), so a tab or a no-break space does not separate scopes.
func TestScopesSplitOnSpacesOnly(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	v := newTestVerifier(t, p, nil)
	tests := []struct {
		name       string
		scp        string
		perm       string
		wantStatus int
	}{
		{"one space separates scopes", "openid Admin", permAdmin, 200},
		{"several spaces make empty items, dropped", "  openid   Admin  ", permAdmin, 200},
		{"a tab does not separate scopes", "openid\tAdmin", permAdmin, 403},
		{"a tab does not separate Heroes.Read", "Heroes.Read\topenid", permRead, 403},
		{"a no-break space does not separate scopes", "openid\u00a0Admin", permAdmin, 403},
		{"a line feed does not separate scopes", "openid\nHeroes.Read", permRead, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := bearer(httptest.NewRequest("GET", "/", nil), p.token(t, map[string]any{"scp": tc.scp}))
			w := httptest.NewRecorder()
			protected(v.verifier, tc.perm).ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Errorf("scp %q for %s = %d %s; want %d", tc.scp, tc.perm, w.Code, w.Body, tc.wantStatus)
			}
		})
	}
}

func TestSplitScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ", nil},
		{"a", []string{"a"}},
		{"a b", []string{"a", "b"}},
		{" a  b ", []string{"a", "b"}},
		{"a\tb", []string{"a\tb"}},
		{"a\u00a0b c", []string{"a\u00a0b", "c"}},
	}
	for _, tc := range tests {
		scp, _ := json.Marshal(tc.in)
		tok, err := parseToken(b64(`{"alg":"RS256","kid":"k0"}`) + "." + b64(`{"scp":`+string(scp)+`}`) + ".AA")
		if err != nil {
			t.Fatalf("scp %q: %v", tc.in, err)
		}
		if !slices.Equal(tok.claims.Scopes, tc.want) {
			t.Errorf("scp %q: Scopes = %q; want %q", tc.in, tok.claims.Scopes, tc.want)
		}
	}
}

// TestChallengeWritesWhatWriteJSONWould: challenge writes its answer by
// hand; for every description requireAuth gives, the body is byte for byte
// writeJSON's and the challenge quotes as %q would.
func TestChallengeWritesWhatWriteJSONWould(t *testing.T) {
	t.Parallel()
	descriptions := []string{"the token does not grant " + permAdmin, "the Authorization header is not Bearer and one token", "invalid token"}
	for _, o := range tokenOutcomes {
		if ve, ok := errors.AsType[*verifyError](o.err); ok {
			descriptions = append(descriptions, ve.hint)
		}
	}
	for _, d := range descriptions {
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		challenge(got, http.StatusUnauthorized, "invalid_token", d, `, scope="x"`)
		writeJSON(want, http.StatusUnauthorized, apiError{Detail: d, Error: "invalid_token"})
		if got.Body.String() != want.Body.String() || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || got.Code != want.Code {
			t.Errorf("challenge(%q) = %d %q %s; want writeJSON's %d %q %s", d, got.Code, got.Header().Get("Content-Type"), got.Body, want.Code, want.Header().Get("Content-Type"), want.Body)
		}
		wantChallenge := fmt.Sprintf(`Bearer realm=%q, error=%q, error_description=%q, scope="x"`, bearerRealm, "invalid_token", d)
		if h := got.Header().Get("WWW-Authenticate"); h != wantChallenge {
			t.Errorf("challenge(%q) WWW-Authenticate = %q; want %q", d, h, wantChallenge)
		}
	}
}

// TestIsToken68 checks isToken68 against RFC 7235 §2.1's alphabet for every
// byte value, alone, inside a token and before "=" padding.
func TestIsToken68(t *testing.T) {
	t.Parallel()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
	for c := range 256 {
		ch, in := string([]byte{byte(c)}), strings.IndexByte(alphabet, byte(c)) >= 0
		for _, tc := range []struct {
			s    string
			want bool
		}{{ch, in}, {"a" + ch + "b", in}, {ch + "==", in}, {"ab" + ch, in || c == '='}} {
			if got := isToken68(tc.s); got != tc.want {
				t.Errorf("isToken68(%q) = %v; want %v", tc.s, got, tc.want)
			}
		}
	}
	for _, s := range []string{"", "=", "==", "a=b"} {
		if isToken68(s) {
			t.Errorf("isToken68(%q) = true; want false", s)
		}
	}
}
