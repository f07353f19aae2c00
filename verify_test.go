package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// testVerifier bundles a verifier wired to a testIDP and its parts.
type testVerifier struct {
	*verifier
	prov  *provider
	keys  *keySet
	clock *fakeClock
}

// newTestVerifier builds provider, key set and verifier for p with settings
// p.getenv(extra), a fake clock starting now, and a discarding logger.
func newTestVerifier(tb testing.TB, p *testIDP, extra map[string]string) *testVerifier {
	tb.Helper()
	cfg := p.config(tb, extra)
	client := &http.Client{Transport: p.srv.Client().Transport, Timeout: 5 * time.Second}
	logger := slog.New(slog.DiscardHandler)
	clock := newFakeClock(time.Now())
	opts := cfg.verifyOptions(client, logger)
	opts.Now = clock.now
	prov := newProvider(opts)
	ks := newKeySet(opts, prov)
	return &testVerifier{verifier: newVerifier(opts, prov, ks), prov: prov, keys: ks, clock: clock}
}

// sign signs claims under header with key (a test helper around signJWS).
func sign(tb testing.TB, key *rsa.PrivateKey, header, claims any) string {
	tb.Helper()
	tok, err := signJWS(key, header, claims)
	if err != nil {
		tb.Fatalf("signJWS: %v", err)
	}
	return tok
}

// rawToken assembles a token from raw header and payload JSON text, signed
// with key (so tests can send byte-exact JSON encoding/json would not make).
func rawToken(key *rsa.PrivateKey, header, payload string) string {
	input := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// b64 is s in unpadded base64url.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// withClaims returns p's standard access-token claims at now with override
// applied (nil removes a claim).
func withClaims(p *testIDP, now time.Time, override map[string]any) map[string]any {
	c := p.claims(now)
	for k, v := range override {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// stdHeader is the JOSE header of an Entra access token signed with k0.
var stdHeader = map[string]string{"alg": "RS256", "kid": "k0", "typ": "JWT"}

func TestVerifyAccessTokenClaims(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	key := testKeys()[0]
	now := time.Now()
	v1iss := "https://sts.windows.net/" + testTenant + "/"
	tests := []struct {
		name     string
		override map[string]any
		env      map[string]string
		want     error // nil: accepted
	}{
		{name: "valid v2 token is accepted"},
		{name: "exp in the past beyond skew is expired", override: map[string]any{"exp": now.Add(-6 * time.Minute).Unix()}, want: errTokenExpired},
		{name: "exp in the past within skew is accepted", override: map[string]any{"exp": now.Add(-4 * time.Minute).Unix()}},
		{name: "exp honours CLOCK_SKEW", override: map[string]any{"exp": now.Add(-2 * time.Minute).Unix()}, env: map[string]string{"CLOCK_SKEW": "1m"}, want: errTokenExpired},
		{name: "exp is required", override: map[string]any{"exp": nil}, want: errMalformedToken},
		{name: "exp as a decimal is accepted", override: map[string]any{"exp": float64(now.Add(time.Hour).Unix()) + 0.5}},
		{name: "exp as a string is malformed", override: map[string]any{"exp": "2000000000"}, want: errMalformedToken},
		{name: "exp negative is malformed", override: map[string]any{"exp": -1}, want: errMalformedToken},
		{name: "exp overflowing is malformed", override: map[string]any{"exp": 1e300}, want: errMalformedToken},
		{name: "exp beyond year 9999 is malformed", override: map[string]any{"exp": int64(253402300800)}, want: errMalformedToken},
		{name: "nbf in the future beyond skew is refused", override: map[string]any{"nbf": now.Add(6 * time.Minute).Unix()}, want: errNotYetValid},
		{name: "nbf in the future within skew is accepted", override: map[string]any{"nbf": now.Add(4 * time.Minute).Unix()}},
		{name: "nbf absent is accepted", override: map[string]any{"nbf": nil}},
		{name: "nbf null is malformed", override: map[string]any{"nbf": json.RawMessage("null")}, want: errMalformedToken},
		{name: "iat in the future beyond skew is refused", override: map[string]any{"iat": now.Add(10 * time.Minute).Unix()}, want: errIssuedInFuture},
		{name: "aud another app is refused", override: map[string]any{"aud": "99999999-2222-3333-4444-555555555555"}, want: errBadAudience},
		{name: "aud array holding the client id is accepted", override: map[string]any{"aud": []string{"other", testClientID}}},
		{name: "aud App ID URI from API_SCOPE is accepted", override: map[string]any{"aud": "api://" + testClientID}},
		{name: "aud from AZURE_AUDIENCE is accepted", override: map[string]any{"aud": "https://heroes.example"}, env: map[string]string{"AZURE_AUDIENCE": "https://heroes.example"}},
		{name: "aud prefix of the App ID URI is refused", override: map[string]any{"aud": "api://" + testClientID[:10]}, want: errBadAudience},
		{name: "aud differing in case is refused", override: map[string]any{"aud": "API://" + testClientID}, want: errBadAudience},
		{name: "aud with a trailing slash is refused", override: map[string]any{"aud": "api://" + testClientID + "/"}, want: errBadAudience},
		{name: "aud empty array is refused", override: map[string]any{"aud": []string{}}, want: errBadAudience},
		{name: "aud number is malformed", override: map[string]any{"aud": 5}, want: errMalformedToken},
		{name: "iss of another tenant is refused", override: map[string]any{"iss": p.issuer("aaaaaaaa-86f1-41af-91ab-2d7cd011db47")}, want: errBadIssuer},
		{name: "iss with a trailing slash is refused", override: map[string]any{"iss": p.issuer(testTenant) + "/"}, want: errBadIssuer},
		{name: "iss v1 form is accepted", override: map[string]any{"iss": v1iss}},
		{name: "iss v1 form is refused with ACCEPT_V1_TOKENS=false", override: map[string]any{"iss": v1iss}, env: map[string]string{"ACCEPT_V1_TOKENS": "false"}, want: errBadIssuer},
		{name: "iss missing is refused", override: map[string]any{"iss": nil}, want: errBadIssuer},
		{name: "tid of another tenant is refused", override: map[string]any{"tid": "aaaaaaaa-86f1-41af-91ab-2d7cd011db47"}, want: errTenantForbidden},
		{name: "no scp and no roles is refused", override: map[string]any{"scp": nil}, want: errNoPermissions},
		{name: "empty scp and no roles is refused", override: map[string]any{"scp": ""}, want: errNoPermissions},
		{name: "roles alone (app-only token) are accepted", override: map[string]any{"scp": nil, "roles": []string{"Heroes.Read"}}},
		{name: "no azp, appid or client_id (an ID token) is refused", override: map[string]any{"azp": nil}, want: errNoClient},
		{name: "an ID token with roles is refused", override: map[string]any{"azp": nil, "scp": nil, "roles": []string{"Admin"}, "nonce": "n"}, want: errNoClient},
		{name: "an empty azp names no client", override: map[string]any{"azp": ""}, want: errNoClient},
		{name: "appid (v1) names the client", override: map[string]any{"azp": nil, "appid": testClientID, "ver": "1.0"}},
		{name: "RFC 9068 client_id names the client", override: map[string]any{"azp": nil, "client_id": testClientID}},
		{name: "azp not a string is malformed", override: map[string]any{"azp": 5}, want: errMalformedToken},
		{name: "client_id not a string is malformed", override: map[string]any{"azp": nil, "client_id": 5}, want: errMalformedToken},
		{name: "RFC 9068 scope is accepted when scp is absent", override: map[string]any{"scp": nil, "scope": "Heroes.Read"}},
		{name: "roles as a string is malformed", override: map[string]any{"roles": "Admin"}, want: errMalformedToken},
		{name: "scp as an array is malformed", override: map[string]any{"scp": []string{"Heroes.Read"}}, want: errMalformedToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, p, tc.env)
			v.clock.set(now)
			tok := sign(t, key, stdHeader, withClaims(p, now, tc.override))
			got, err := v.verifyAccessToken(context.Background(), tok)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("verifyAccessToken = %v; want %v", err, tc.want)
			}
			if err == nil && got.Subject != "test-subject" {
				t.Errorf("verifyAccessToken subject = %q; want test-subject", got.Subject)
			}
		})
	}
}

func TestVerifyAccessTokenFields(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	v := newTestVerifier(t, p, nil)
	tok := p.token(t, map[string]any{"scp": "Heroes.Read Heroes.Create", "roles": []string{"Admin"},
		"name": "Ada", "preferred_username": "ada@example.com", "aud": []string{testClientID}})
	got, err := v.verifyAccessToken(context.Background(), tok)
	if err != nil {
		t.Fatalf("verifyAccessToken = %v", err)
	}
	if got.Issuer != p.issuer(testTenant) || got.TenantID != testTenant || got.ObjectID == "" ||
		got.AuthorizedParty == "" || got.Name != "Ada" || got.PreferredUsername != "ada@example.com" || got.Version != "2.0" {
		t.Errorf("claims = %+v", got)
	}
	if strings.Join(got.Scopes, ",") != "Heroes.Read,Heroes.Create" || strings.Join(got.Roles, ",") != "Admin" {
		t.Errorf("scopes %q roles %q", got.Scopes, got.Roles)
	}
	if got.Expiry.IsZero() || got.NotBefore.IsZero() || got.IssuedAt.IsZero() {
		t.Errorf("times exp %v nbf %v iat %v", got.Expiry, got.NotBefore, got.IssuedAt)
	}
}

// hs256 signs header.payload with HMAC-SHA256 under secret (the alg
// confusion attack: the RSA public key used as an HMAC secret).
func hs256(header, payload string, secret []byte) string {
	input := b64(header) + "." + b64(payload)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestVerifyRefusesHeaderAttacks(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	key := testKeys()[0]
	other := testKeys()[1]
	payloadJSON, _ := json.Marshal(p.claims(time.Now()))
	payload := string(payloadJSON)
	good := rawToken(key, `{"alg":"RS256","kid":"k0","typ":"JWT"}`, payload)
	h, pl, sig := splitToken(good)
	pubDER, _ := json.Marshal(publicJWK(&other.PublicKey, "evil", ""))
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"alg none is refused", b64(`{"alg":"none","kid":"k0"}`) + "." + b64(payload) + ".", errUnsupportedAlg},
		{"alg HS256 with the RSA key as secret is refused", hs256(`{"alg":"HS256","kid":"k0"}`, payload, key.PublicKey.N.Bytes()), errUnsupportedAlg},
		{"alg PS256 is refused", rawToken(key, `{"alg":"PS256","kid":"k0"}`, payload), errUnsupportedAlg},
		{"alg RS512 is refused", rawToken(key, `{"alg":"RS512","kid":"k0"}`, payload), errUnsupportedAlg},
		{"alg rs256 in lower case is refused", rawToken(key, `{"alg":"rs256","kid":"k0"}`, payload), errUnsupportedAlg},
		{"alg missing is refused", rawToken(key, `{"kid":"k0"}`, payload), errUnsupportedAlg},
		{"alg not a string is malformed", rawToken(key, `{"alg":1,"kid":"k0"}`, payload), errMalformedToken},
		{"duplicate alg is malformed", rawToken(key, `{"alg":"RS256","kid":"k0","alg":"none"}`, payload), errMalformedToken},
		{"duplicate alg hidden by an escape is malformed", rawToken(key, `{"alg":"RS256","kid":"k0","\u0061lg":"RS256"}`, payload), errMalformedToken},
		{"duplicate claim is malformed", rawToken(key, `{"alg":"RS256","kid":"k0"}`, strings.TrimSuffix(payload, "}")+`,"aud":"x"}`), errMalformedToken},
		{"crit header is refused", rawToken(key, `{"alg":"RS256","kid":"k0","crit":["exp"],"exp":1}`, payload), errBadHeader},
		{"typ other than JWT is refused", rawToken(key, `{"alg":"RS256","kid":"k0","typ":"JWE"}`, payload), errBadHeader},
		{"no kid and no x5t is refused", rawToken(key, `{"alg":"RS256"}`, payload), errNoKeyID},
		{"unknown kid is refused", rawToken(key, `{"alg":"RS256","kid":"nope"}`, payload), errUnknownKID},
		{"embedded jwk is never used", rawToken(other, `{"alg":"RS256","kid":"evil","jwk":`+string(pubDER)+`}`, payload), errUnknownKID},
		{"jku pointing elsewhere is never used", rawToken(other, `{"alg":"RS256","kid":"k0","jku":"https://evil.example/keys"}`, payload), errBadSignature},
		{"x5c of another key is never used", rawToken(other, `{"alg":"RS256","kid":"k0","x5c":["MIIB"]}`, payload), errBadSignature},
		{"signature by another key is refused", rawToken(other, `{"alg":"RS256","kid":"k0"}`, payload), errBadSignature},
		{"payload changed after signing is refused", h + "." + b64(strings.Replace(payload, "Heroes.Read", "Admin", 1)) + "." + sig, errBadSignature},
		{"signature one byte short is refused", h + "." + pl + "." + sig[:len(sig)-2], errBadSignature},
		{"empty signature is refused", h + "." + pl + ".", errBadSignature},
		{"payload not an object is malformed", rawToken(key, `{"alg":"RS256","kid":"k0"}`, `["a"]`), errMalformedToken},
		{"payload not JSON is malformed", rawToken(key, `{"alg":"RS256","kid":"k0"}`, `hello`), errMalformedToken},
		{"header not JSON is malformed", rawToken(key, `RS256`, payload), errMalformedToken},
		{"two segments are malformed", h + "." + pl, errMalformedToken},
		{"four segments are malformed", good + ".x", errMalformedToken},
		{"padded base64 is malformed", h + "=." + pl + "." + sig, errMalformedToken},
		{"standard base64 alphabet is malformed", h + "." + pl + ".+" + sig[1:], errMalformedToken},
		{"a newline inside is malformed", h + "\n." + pl + "." + sig, errMalformedToken},
		{"non-canonical trailing bits are malformed", h + "." + pl + "." + flipLastBits(sig), errMalformedToken},
		{"longer than 16 KiB is malformed", rawToken(key, `{"alg":"RS256","kid":"k0"}`, `{"x":"`+strings.Repeat("a", maxTokenBytes)+`"}`), errMalformedToken},
		{"empty token is malformed", "", errMalformedToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, p, nil)
			_, err := v.verifyAccessToken(context.Background(), tc.tok)
			if !errors.Is(err, tc.want) {
				t.Fatalf("verifyAccessToken = %v; want %v", err, tc.want)
			}
		})
	}
}

// splitToken returns the three segments of a compact JWS.
func splitToken(tok string) (h, p, s string) {
	parts := strings.Split(tok, ".")
	return parts[0], parts[1], parts[2]
}

// flipLastBits changes the last base64url character of a 256-byte signature
// so that only its unused low bits differ (a non-canonical encoding of the
// same bytes).
func flipLastBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i^1])
}

func TestVerifyTypAndKeyID(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	key := testKeys()[0]
	payloadJSON, _ := json.Marshal(p.claims(time.Now()))
	tests := []struct {
		name, header string
		want         error
	}{
		{"typ JWT is accepted", `{"alg":"RS256","kid":"k0","typ":"JWT"}`, nil},
		{"typ at+jwt is accepted", `{"alg":"RS256","kid":"k0","typ":"at+jwt"}`, nil},
		{"typ application/at+JWT is accepted", `{"alg":"RS256","kid":"k0","typ":"application/at+JWT"}`, nil},
		{"typ absent is accepted", `{"alg":"RS256","kid":"k0"}`, nil},
		{"x5t alone finds the key by kid", `{"alg":"RS256","x5t":"k0"}`, nil},
		{"kid wins over x5t", `{"alg":"RS256","kid":"zz","x5t":"k0"}`, errUnknownKID},
		{"kid longer than 256 bytes is refused", `{"alg":"RS256","kid":"` + strings.Repeat("k", 300) + `"}`, errBadHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, p, nil)
			_, err := v.verifyAccessToken(context.Background(), rawToken(key, tc.header, string(payloadJSON)))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("verifyAccessToken = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyIDToken(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	key := testKeys()[0]
	now := time.Now()
	id := func(override map[string]any) string {
		base := map[string]any{"scp": nil, "azp": nil, "nonce": "n-123", "aud": testClientID}
		for k, v := range override {
			base[k] = v
		}
		return sign(t, key, stdHeader, withClaims(p, now, base))
	}
	tests := []struct {
		name  string
		tok   string
		nonce string
		want  error
	}{
		{"ID token without scp is accepted", id(nil), "n-123", nil},
		{"nonce mismatch is refused", id(nil), "n-124", errBadNonce},
		{"nonce missing in the token is refused", id(map[string]any{"nonce": nil}), "n-123", errBadNonce},
		{"empty expected nonce skips the check (refresh)", id(map[string]any{"nonce": nil}), "", nil},
		{"aud App ID URI is not the client id", id(map[string]any{"aud": "api://" + testClientID}), "n-123", errBadAudience},
		{"aud of another client is refused", id(map[string]any{"aud": "99999999-2222-3333-4444-555555555555"}), "n-123", errBadAudience},
		{"tid of another tenant is refused", id(map[string]any{"tid": "aaaaaaaa-86f1-41af-91ab-2d7cd011db47"}), "n-123", errTenantForbidden},
		{"expired ID token is refused", id(map[string]any{"exp": now.Add(-time.Hour).Unix()}), "n-123", errTokenExpired},
		{"wrong issuer is refused", id(map[string]any{"iss": "https://evil.example/v2.0"}), "n-123", errBadIssuer},
		// OpenID Connect Core §3.1.3.7 steps 3-5.
		{"several audiences without azp are refused", id(map[string]any{"aud": []string{testClientID, "api://other"}}), "n-123", errBadAZP},
		{"several audiences with azp of the client are accepted", id(map[string]any{"aud": []string{testClientID, "api://other"}, "azp": testClientID}), "n-123", nil},
		{"several audiences with azp of another client are refused", id(map[string]any{"aud": []string{testClientID, "api://other"}, "azp": "99999999-2222-3333-4444-555555555555"}), "n-123", errBadAZP},
		{"one audience with azp of another client is refused", id(map[string]any{"azp": "99999999-2222-3333-4444-555555555555"}), "n-123", errBadAZP},
		{"one audience with azp of the client is accepted", id(map[string]any{"azp": testClientID}), "n-123", nil},
		{"appid is not taken for azp", id(map[string]any{"appid": "99999999-2222-3333-4444-555555555555"}), "n-123", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, p, nil)
			v.clock.set(now)
			_, err := v.verifyIDToken(context.Background(), tc.tok, tc.nonce)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("verifyIDToken = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyMultiTenant(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	key := testKeys()[0]
	const allowed = "bbbbbbbb-86f1-41af-91ab-2d7cd011db47"
	const stranger = "cccccccc-86f1-41af-91ab-2d7cd011db47"
	tok := func(tid, iss string) string {
		return sign(t, key, stdHeader, withClaims(p, time.Now(), map[string]any{"tid": tid, "iss": iss}))
	}
	issuerOf := func(tid string) string { return p.srv.URL + "/" + tid + "/v2.0" }
	tests := []struct {
		name, tenant, allowedTenants string
		tok                          string
		want                         error
	}{
		{"allowed tenant is accepted", "organizations", allowed, tok(allowed, issuerOf(allowed)), nil},
		{"allowed tenant is accepted with common", "common", allowed + "," + testTenant, tok(allowed, issuerOf(allowed)), nil},
		{"tenant not in ALLOWED_TENANTS is refused", "organizations", allowed, tok(stranger, issuerOf(stranger)), errTenantForbidden},
		{"any tenant with ALLOWED_TENANTS=*", "organizations", "*", tok(stranger, issuerOf(stranger)), nil},
		{"tid not a GUID is refused", "organizations", "*", tok("{tenantid}", issuerOf("{tenantid}")), errTenantForbidden},
		{"issuer of another tenant than tid is refused", "organizations", "*", tok(allowed, issuerOf(stranger)), errBadIssuer},
		{"v1 issuer of tid is accepted", "organizations", allowed, tok(allowed, "https://sts.windows.net/"+allowed+"/"), nil},
		{"issuer still holding the placeholder is refused", "organizations", "*", tok(allowed, issuerOf("{tenantid}")), errBadIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, p, map[string]string{"AZURE_TENANT_ID": tc.tenant, "ALLOWED_TENANTS": tc.allowedTenants})
			_, err := v.verifyAccessToken(context.Background(), tc.tok)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("verifyAccessToken = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyKeyIssuer(t *testing.T) {
	t.Parallel()
	key := testKeys()[0]
	now := time.Now()
	const tid = testTenant
	v2 := "https://login.microsoftonline.com/" + tid + "/v2.0"
	v1 := "https://sts.windows.net/" + tid + "/"
	tests := []struct {
		name, keyIssuer, iss string
		want                 error
	}{
		{"key issuer template matches the token issuer", "https://login.microsoftonline.com/{tenantid}/v2.0", v2, nil},
		{"key issuer template matches a v1 token of the tenant", "https://login.microsoftonline.com/{tenantid}/v2.0", v1, nil},
		{"key without issuer is accepted", "", v2, nil},
		{"key issuer of another tenant is refused", "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0", v2, errKeyIssuer},
		{"key issuer of another cloud is refused", "https://login.example.us/{tenantid}/v2.0", v2, errKeyIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := staticVerifier(t, tid, "https://login.microsoftonline.com/"+tid+"/v2.0", []string{testClientID}, &publicKey{kid: "k0", issuer: tc.keyIssuer, pub: &key.PublicKey}, now)
			tok := sign(t, key, stdHeader, map[string]any{"iss": tc.iss, "tid": tid, "aud": testClientID, "appid": testClientID, "scp": "Heroes.Read", "exp": now.Add(time.Hour).Unix()})
			_, err := v.verifyAccessToken(context.Background(), tok)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("verifyAccessToken = %v; want %v", err, tc.want)
			}
		})
	}
}

// staticVerifier builds a verifier with a preloaded discovery issuer and key
// set and no identity provider behind them (no network I/O happens).
func staticVerifier(tb testing.TB, tenant, issuer string, audiences []string, k *publicKey, now time.Time) *verifier {
	tb.Helper()
	ix := &keyIndex{byKID: map[string]*publicKey{}, byX5T: map[string]*publicKey{}}
	if k.kid != "" {
		ix.byKID[k.kid] = k
	}
	if k.x5t != "" {
		ix.byX5T[k.x5t] = k
	}
	return staticVerifierIndex(tb, tenant, issuer, audiences, ix, now)
}

// staticVerifierIndex is staticVerifier with a whole key index.
func staticVerifierIndex(tb testing.TB, tenant, issuer string, audiences []string, ix *keyIndex, now time.Time) *verifier {
	tb.Helper()
	opts := verifyOptions{TenantID: tenant, ClientID: audiences[0], Audiences: audiences, Leeway: 5 * time.Minute,
		AcceptV1Tokens: true, AuthorityHost: "http://127.0.0.1:1", Client: &http.Client{Timeout: time.Second},
		Now: func() time.Time { return now }}
	prov := newProvider(opts)
	prov.md.Store(&providerMetadata{Issuer: issuer, tenant: tenant})
	ks := newKeySet(opts, prov)
	ks.keys.Store(ix)
	ks.f.lastTry = now.Add(time.Hour) // never refetch: no I/O in these tests
	return newVerifier(opts, prov, ks)
}

// len is the number of cached tokens.
func (tc *tokenCache) len() int {
	tc.mu.RLock()
	defer tc.mu.RUnlock()
	return len(tc.young) + len(tc.old)
}

// verifiedOnce returns a verifier of p with its own clock and a token of p
// with override, which it has verified once, so that it is cached.
func verifiedOnce(t *testing.T, p *testIDP, override map[string]any) (*testVerifier, string) {
	t.Helper()
	v := newTestVerifier(t, p, nil)
	if nbf, ok := override["nbf"].(time.Duration); ok { // relative to the verifier's clock
		override["nbf"] = v.clock.now().Add(nbf).Unix()
	}
	tok := p.token(t, override)
	if _, err := v.authenticate(context.Background(), tok); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return v, tok
}

func TestVerifiedTokenCache(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	ctx := context.Background()
	t.Run("a cached token still expires", func(t *testing.T) {
		t.Parallel()
		v, tok := verifiedOnce(t, p, nil)
		if v.cache.len() != 1 {
			t.Fatalf("cache len = %d; want 1", v.cache.len())
		}
		v.clock.advance(time.Hour + 6*time.Minute)
		if _, err := v.authenticate(ctx, tok); !errors.Is(err, errTokenExpired) {
			t.Fatalf("authenticate after exp = %v; want errTokenExpired", err)
		}
	})
	t.Run("a cached token is checked again when the clock goes back", func(t *testing.T) {
		t.Parallel()
		v, tok := verifiedOnce(t, p, map[string]any{"nbf": 4 * time.Minute}) // valid with the leeway
		v.clock.advance(-time.Minute)                                        // exactly nbf minus the 5 minutes of leeway: still valid
		if _, err := v.authenticate(ctx, tok); err != nil {
			t.Fatalf("authenticate a minute back = %v; want nil", err)
		}
		v.clock.advance(-time.Minute)
		if _, err := v.authenticate(ctx, tok); !errors.Is(err, errNotYetValid) {
			t.Fatalf("authenticate 2 minutes back = %v; want errNotYetValid", err)
		}
	})
	t.Run("a hit returns the same principal without verifying again", func(t *testing.T) {
		t.Parallel()
		v := newTestVerifier(t, p, nil)
		tok := p.token(t, map[string]any{"oid": "00000000-0000-0000-0000-0000000000cc", "scp": "Heroes.Create"})
		first, err := v.authenticate(ctx, tok)
		if err != nil || first.ObjectID != "00000000-0000-0000-0000-0000000000cc" || first.TenantID != testTenant ||
			!hasPermission(first, permRead) || hasPermission(first, permAdmin) {
			t.Fatalf("authenticate = %+v, %v; want the token's oid, tid and Heroes.Create", first, err)
		}
		second, err := v.authenticate(ctx, tok)
		if err != nil || second != first {
			t.Fatalf("second authenticate = %p, %v; want the cached %p", second, err, first)
		}
	})
	t.Run("a token with another signature is not a hit", func(t *testing.T) {
		t.Parallel()
		v, tok := verifiedOnce(t, p, nil)
		if _, err := v.authenticate(ctx, flipLastBits(tok)); !errors.Is(err, errMalformedToken) {
			t.Fatalf("authenticate(last bits flipped) = %v; want errMalformedToken", err)
		}
		i := strings.LastIndexByte(tok, '.') + 10
		other := tok[:i] + flipLastBits(tok[i:i+1]) + tok[i+1:]
		if _, err := v.authenticate(ctx, other); !errors.Is(err, errBadSignature) {
			t.Fatalf("authenticate(signature changed) = %v; want errBadSignature", err)
		}
	})
	t.Run("refused tokens are not cached", func(t *testing.T) {
		t.Parallel()
		v := newTestVerifier(t, p, nil)
		v.authenticate(ctx, p.token(t, map[string]any{"aud": "x"}))
		v.authenticate(ctx, p.token(t, map[string]any{"scp": nil}))
		v.verifyAccessToken(ctx, p.token(t, nil)) // the login flow's check does not fill the cache
		if v.cache.len() != 0 {
			t.Fatalf("cache len = %d; want 0", v.cache.len())
		}
	})
	t.Run("the cache is bounded, oldest out first", func(t *testing.T) {
		t.Parallel()
		tc := &tokenCache{half: 2}
		ks := &keySet{}
		ks.keys.Store(&keyIndex{byKID: map[string]*publicKey{"k": {kid: "k"}}})
		k := ks.keys.Load().byKID["k"]
		now := time.Now()
		c := &claims{Expiry: now.Add(time.Hour)}
		for b := range byte(6) {
			tc.put([32]byte{b}, c, k, now) // 0 and 1, then 2 and 3 fill a generation each
		}
		var kept []byte
		for b := range byte(6) {
			if tc.get([32]byte{b}, now, ks) != nil {
				kept = append(kept, b)
			}
		}
		if !bytes.Equal(kept, []byte{2, 3, 4, 5}) || tc.len() != 4 {
			t.Fatalf("kept %v, %d entries; want [2 3 4 5]", kept, tc.len())
		}
	})
}

// TestScreenRefusesGarbageUnhashed: what costs nothing to find is refused
// before the token is hashed for the cache, each as a malformed token.
func TestScreenRefusesGarbageUnhashed(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"", "x", "a.b", "a.b.c.d", strings.Repeat("A", maxTokenBytes+1) + ".e30.AA",
		"eyJ!.e30.AA", "eyJh\n.e30.AA", b64("not json") + ".e30.AA", b64(`{"a":1,"a":2}`) + ".e30.AA", b64(`{"a":1}`)[:8] + "_.e30.AA"} {
		jt := new(jws)
		if err := jt.screen(raw); !errors.Is(err, errMalformedToken) || jt.sum != [sha256.Size]byte{} {
			t.Errorf("screen(%.40q) = %v, sum %x; want errMalformedToken, nothing hashed", raw, err, jt.sum[:4])
		}
	}
}

// TestCachedTokenAllocatesNothing: a token answered from the cache costs no
// allocation (BenchmarkVerifyCached measures its time).
func TestCachedTokenAllocatesNothing(t *testing.T) {
	v, tok := benchVerifier(t)
	if _, err := v.authenticate(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { v.authenticate(context.Background(), tok) }); n != 0 {
		t.Errorf("a cache hit allocates %v times; want 0", n)
	}
}

// benchVerifier is a verifier over a preloaded key k0 = testKeys()[0] with
// the test tenant's v2 issuer, and a token it accepts.
func benchVerifier(tb testing.TB) (*verifier, string) {
	tb.Helper()
	now := time.Now()
	key := testKeys()[0]
	iss := "https://login.microsoftonline.com/" + testTenant + "/v2.0"
	v := staticVerifier(tb, testTenant, iss, []string{testClientID, "api://" + testClientID},
		&publicKey{kid: "k0", issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", pub: &key.PublicKey}, now)
	// An Entra-sized v2 access token (about 1.3 KB).
	tok := sign(tb, key, map[string]string{"typ": "JWT", "alg": "RS256", "kid": "k0"}, map[string]any{
		"aud": "api://" + testClientID, "iss": iss, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"aio": strings.Repeat("A", 80), "azp": "22222222-3333-4444-5555-666666666666", "azpacr": "1",
		"name": "Ada Lovelace", "oid": "00000000-0000-0000-0000-0000000000aa", "preferred_username": "ada@example.com",
		"rh": strings.Repeat("r", 60), "scp": "Heroes.Read Heroes.Create", "sid": "00000000-0000-0000-0000-0000000000bb",
		"sub": strings.Repeat("s", 43), "tid": testTenant, "uti": strings.Repeat("u", 22), "ver": "2.0",
		"roles": []string{"Admin"}, "xms_ftd": strings.Repeat("x", 60), "xms_idrel": "1 2",
	})
	if _, err := v.verifyAccessToken(context.Background(), tok); err != nil {
		tb.Fatalf("benchmark token refused: %v", err)
	}
	return v, tok
}

// verifyUncached returns what authenticate does for a token the cache does
// not hold, without the cache: screen and verify tok in a reused jws.
func verifyUncached(tb testing.TB, v *verifier, tok string) func() {
	ctx, t := context.Background(), new(jws)
	return func() {
		if err := t.screen(tok); err != nil {
			tb.Fatal(err)
		}
		if _, err := v.verify(ctx, t, v.opts.Now(), true); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkVerifyRS256 is the whole per-request job without the cache:
// parse, key lookup, RSA verification and every claim check. Compare it with
// BenchmarkRSAFloor (or see BenchmarkVerifyPaired).
func BenchmarkVerifyRS256(b *testing.B) {
	v, tok := benchVerifier(b)
	verify := verifyUncached(b, v, tok)
	b.ReportAllocs()
	for b.Loop() {
		verify()
	}
}

// rsaFloor returns only what no verifier can skip, on tok: SHA-256 of the
// signing input and rsa.VerifyPKCS1v15 with testKeys()[0].
func rsaFloor(tb testing.TB, tok string) func() {
	i := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:i])
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	pub := &testKeys()[0].PublicKey
	return func() {
		sum := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkRSAFloor is rsaFloor on the benchmark token.
func BenchmarkRSAFloor(b *testing.B) {
	_, tok := benchVerifier(b)
	floor := rsaFloor(b, tok)
	b.ReportAllocs()
	for b.Loop() {
		floor()
	}
}

// BenchmarkVerifyPaired runs BenchmarkRSAFloor's and BenchmarkVerifyRS256's
// work in alternate blocks of 8 in one benchmark and reports the median,
// over pairs of adjacent blocks, of a verification's time over the floor's
// as x-floor (README: 1.06 at most): a neighbour slowing the machine slows
// both halves of most pairs alike, and the pairs it hits unevenly fall out
// of the median either way. floor-ns/op and verify-ns/op are the medians of
// their blocks.
func BenchmarkVerifyPaired(b *testing.B) {
	v, tok := benchVerifier(b)
	work := [2]func(){rsaFloor(b, tok), verifyUncached(b, v, tok)}
	const block = 8
	var spent [2][]float64 // of each block, per operation
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		half := i / block % 2
		work[half]()
		if i%block == block-1 {
			end := time.Now()
			spent[half], start = append(spent[half], end.Sub(start).Seconds()/block), end
		}
	}
	pairs := min(len(spent[0]), len(spent[1]))
	if pairs == 0 {
		return
	}
	ratios := make([]float64, pairs)
	for i := range ratios {
		ratios[i] = spent[1][i] / spent[0][i]
	}
	median := func(xs []float64) float64 { xs = slices.Clone(xs); slices.Sort(xs); return xs[len(xs)/2] }
	b.ReportMetric(median(ratios), "x-floor")
	b.ReportMetric(median(spent[0])*1e9, "floor-ns/op")
	b.ReportMetric(median(spent[1])*1e9, "verify-ns/op")
}

// BenchmarkVerifyMiss is requireAuth's check of a token the cache does not
// hold (authenticate with a cache that keeps nothing): the key hash, the
// cache lookup, every check, and the principal made for the cache.
func BenchmarkVerifyMiss(b *testing.B) {
	v, tok := benchVerifier(b)
	v.cache = &tokenCache{} // keeps nothing
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached is a token verified before: the cache answers
// without RSA.
func BenchmarkVerifyCached(b *testing.B) {
	v, tok := benchVerifier(b)
	ctx := context.Background()
	if _, err := v.authenticate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyGarbage is random tokens of Entra's size and shape, as a
// scanner sends them: refused before any hashing.
func BenchmarkVerifyGarbage(b *testing.B) {
	v, tok := benchVerifier(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	garbage := make([]string, 1024)
	for i := range garbage {
		g := []byte(tok)
		for j := 3; j < len(g); j++ {
			if g[j] != '.' {
				g[j] = alphabet[rng.IntN(64)]
			}
		}
		garbage[i] = string(g) // "eyJ" and random base64url, in three segments
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := v.authenticate(ctx, garbage[i%len(garbage)]); !errors.Is(err, errMalformedToken) {
			b.Fatal(err)
		}
	}
}

// parseToken is jws.screen and jws.parse on a jws of its own.
func parseToken(raw string) (*jws, error) {
	t := new(jws)
	if err := t.screen(raw); err != nil {
		return nil, err
	}
	if err := t.parse(); err != nil {
		return nil, err
	}
	return t, nil
}

// BenchmarkParseToken is jws.screen and jws.parse on the benchmark token,
// in a reused jws as authenticate does: what a verification costs beyond
// RSA, but for the few claim checks.
func BenchmarkParseToken(b *testing.B) {
	_, tok := benchVerifier(b)
	t := new(jws)
	b.ReportAllocs()
	for b.Loop() {
		if err := t.screen(tok); err != nil || t.parse() != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseToken feeds arbitrary tokens to parseToken and to the whole
// verifier (key k0 = testKeys()[0], the test tenant's issuer). It must never
// panic; a parsed token must satisfy the header rules; and a token the
// verifier accepts must carry a signature by k0 over its own first two
// segments (nothing unsigned is ever accepted).
func FuzzParseToken(f *testing.F) {
	tokens, _ := corpusSeeds()
	for _, tok := range tokens {
		f.Add(tok)
	}
	now := time.Unix(1_800_000_000, 0)
	iss := "https://login.microsoftonline.com/" + testTenant + "/v2.0"
	key := testKeys()[0]
	good := sign(f, key, stdHeader, map[string]any{"iss": iss, "aud": testClientID, "tid": testTenant,
		"azp": testClientID, "scp": "Heroes.Read", "exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "roles": []string{"Admin"}})
	f.Add(good)
	f.Add(sign(f, key, map[string]string{"alg": "RS256", "x5t": "k0"}, map[string]any{"iss": iss, "aud": []string{testClientID}, "appid": "a", "scp": "x", "exp": 1.8e9}))
	f.Add(b64(`{"alg":"none"}`) + "." + b64(`{}`) + ".")
	f.Add(b64(`{"alg":"RS256","kid":"k0","\u006bid":"k1"}`) + "." + b64(`{"exp":[{"a":{}}]}`) + ".AA")
	v := staticVerifier(f, testTenant, iss, []string{testClientID}, &publicKey{kid: "k0", pub: &key.PublicKey}, now)
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := parseToken(raw)
		if err == nil {
			if tok.alg != "RS256" || tok.kid == "" && tok.x5t == "" || len(raw) > maxTokenBytes {
				t.Fatalf("parseToken(%q) accepted alg %q kid %q x5t %q", raw, tok.alg, tok.kid, tok.x5t)
			}
		}
		if _, err := v.verifyAccessToken(context.Background(), raw); err != nil {
			return
		}
		i := strings.LastIndexByte(raw, '.')
		sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
		sum := sha256.Sum256([]byte(raw[:i]))
		if err != nil || rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
			t.Fatalf("verifyAccessToken accepted %q, which k0 did not sign", raw)
		}
	})
}

func TestIssuerMatches(t *testing.T) {
	t.Parallel()
	const tid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tests := []struct {
		name, template, iss string
		want                bool
	}{
		{"placeholder replaced by tid matches", "https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/" + tid + "/v2.0", true},
		{"another tenant does not match", "https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/aaaaaaaa-86f1-41af-91ab-2d7cd011db47/v2.0", false},
		{"tid plus extra characters does not match", "https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/" + tid + "x/v2.0", false},
		{"the literal placeholder does not match", "https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/{tenantid}/v2.0", false},
		{"a trailing slash does not match", "https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/" + tid + "/v2.0/", false},
		{"no placeholder needs equality", "https://login.microsoftonline.com/" + tid + "/v2.0", "https://login.microsoftonline.com/" + tid + "/v2.0", true},
		{"two placeholders are both replaced", "https://{tenantid}.ciamlogin.com/{tenantid}/v2.0", "https://" + tid + ".ciamlogin.com/" + tid + "/v2.0", true},
		{"two placeholders with one wrong tenant do not match", "https://{tenantid}.ciamlogin.com/{tenantid}/v2.0", "https://x.ciamlogin.com/" + tid + "/v2.0", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := issuerMatches(tc.template, tid, tc.iss); got != tc.want {
				t.Errorf("issuerMatches(%q, tid, %q) = %v; want %v", tc.template, tc.iss, got, tc.want)
			}
		})
	}
}

// Example_parseToken shows the refusals that come before any cryptography.
func Example_parseToken() {
	for _, tok := range []string{
		"a.b",
		b64(`{"alg":"none"}`) + "." + b64(`{}`) + ".",
		b64(`{"alg":"RS256","alg":"RS256","kid":"k"}`) + "." + b64(`{}`) + ".",
		b64(`{"alg":"RS256"}`) + "." + b64(`{}`) + ".",
		b64(`{"alg":"RS256","kid":"k"}`) + "." + b64(`{"exp":"soon"}`) + ".",
	} {
		_, err := parseToken(tok)
		fmt.Println(err)
	}
	// Output:
	// jwks: malformed token: not three segments
	// jwks: unsupported alg (only RS256 is accepted): "none"
	// jwks: malformed token: header: duplicate member "alg"
	// jwks: token header has no kid or x5t
	// jwks: malformed token: claim exp: not a non-negative number
}

func TestDecodeNumericDate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		sec, nsec int64
		ok        bool
	}{
		{"0", 0, 0, true},
		{"1700000000", 1700000000, 0, true},
		{"1700000000.25", 1700000000, 25e7, true},
		{"1.7e9", 1700000000, 0, true},
		{"253402300799", 253402300799, 0, true},
		{"253402300800", 0, 0, false},
		{"99999999999999999999", 0, 0, false},
		{"1e400", 0, 0, false},
		{"-1", 0, 0, false},
		{`"1700000000"`, 0, 0, false},
		{"null", 0, 0, false},
		{"true", 0, 0, false},
	}
	for _, tc := range tests {
		got, err := decodeNumericDate([]byte(tc.in))
		if (err == nil) != tc.ok || tc.ok && (got.Unix() != tc.sec || int64(got.Nanosecond()) != tc.nsec) {
			t.Errorf("decodeNumericDate(%s) = %v, %v; want %d s %d ns, ok %v", tc.in, got, err, tc.sec, tc.nsec, tc.ok)
		}
	}
}

// TestTokenCacheMemory fills a cache of the default size with as many
// distinct verified tokens, of one tenant and a few client apps as the
// callers of one API are, and checks it holds them all in at most 256
// bytes of heap each, its maps included (README). Signing that many tokens
// would take minutes, so entries are put directly, each from the claims of
// a token of its own, parsed but not signed.
func TestTokenCacheMemory(t *testing.T) {
	const perEntry = 256
	n := defaultTokenCacheSize
	k := &publicKey{kid: "k0"}
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tc := newVerifier(verifyOptions{}, nil, nil).cache // the default size
	for i := range n {
		claims := fmt.Sprintf(`{"tid":%q,"oid":"%08d-0000-4000-8000-%012d","azp":"%08d-1111-4000-8000-000000000000","scp":"Heroes.Read Heroes.Create","exp":%d}`,
			testTenant, i, i, i%3, now.Add(time.Hour).Unix())
		jt, err := parseToken(b64(`{"alg":"RS256","kid":"k0"}`) + "." + b64(claims) + ".AA") // parsed, not verified
		if err != nil {
			t.Fatal(err)
		}
		tc.put(jt.sum, &jt.claims, k, now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := tc.len(); got != n {
		t.Fatalf("cache holds %d tokens after %d; want %d", got, n, n)
	}
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("cache of %d tokens holds %d KiB of heap, %d bytes a token", n, held>>10, held/int64(n))
	if held > perEntry*int64(n) {
		t.Errorf("cache holds %d bytes of heap, %d a token; want at most %d a token", held, held/int64(n), perEntry)
	}
	runtime.KeepAlive(tc)
}

// TestCheckTimeEdges: exactly at exp plus the leeway the token is expired
// (RFC 7519 §4.1.4: the current time must be before exp); exactly at nbf
// minus the leeway it is valid (§4.1.5: not before nbf).
func TestCheckTimeEdges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	skew := 5 * time.Minute
	tests := []struct {
		name string
		c    claims
		want error
	}{
		{"one second before exp+skew is valid", claims{Expiry: now.Add(-skew + time.Second)}, nil},
		{"exactly exp+skew is expired", claims{Expiry: now.Add(-skew)}, errTokenExpired},
		{"exactly nbf-skew is valid", claims{Expiry: now.Add(time.Hour), NotBefore: now.Add(skew)}, nil},
		{"one second before nbf-skew is not yet valid", claims{Expiry: now.Add(time.Hour), NotBefore: now.Add(skew + time.Second)}, errNotYetValid},
	}
	for _, tc := range tests {
		if err := checkTime(&tc.c, now, skew); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: checkTime = %v; want %v", tc.name, err, tc.want)
		}
	}
}
