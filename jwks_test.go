package main

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	prov := newProvider(cfg, client, logger)
	prov.now = clock.now
	ks := newKeySet(cfg, prov, client, logger)
	ks.now = clock.now
	return &testVerifier{verifier: newVerifier(cfg, prov, ks, clock.now), prov: prov, keys: ks, clock: clock}
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
			tok := sign(t, key, stdHeader, map[string]any{"iss": tc.iss, "tid": tid, "aud": testClientID, "scp": "Heroes.Read", "exp": now.Add(time.Hour).Unix()})
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
	cfg := config{TenantID: tenant, ClientID: audiences[0], Audiences: audiences, ClockSkew: 5 * time.Minute,
		AcceptV1Tokens: true, AuthorityHost: "http://127.0.0.1:1"}
	logger := slog.New(slog.DiscardHandler)
	client := &http.Client{Timeout: time.Second}
	prov := newProvider(cfg, client, logger)
	prov.md, prov.loaded = providerMetadata{Issuer: issuer}, true
	ks := newKeySet(cfg, prov, client, logger)
	ks.keys.Store(ix)
	ks.lastFetch = now.Add(time.Hour) // never refetch: no I/O in these tests
	ks.now = func() time.Time { return now }
	return newVerifier(cfg, prov, ks, func() time.Time { return now })
}

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	pub := &testKeys()[0].PublicKey
	good := publicJWK(pub, "k0", "")
	with := func(changes map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		for k, v := range changes {
			if v == nil {
				delete(m, k)
				continue
			}
			m[k] = v
		}
		return m
	}
	small, _ := rsa.GenerateKey(testRand{}, 1024)
	stdN := base64.StdEncoding.EncodeToString(pub.N.Bytes())
	tests := []struct {
		name    string
		key     map[string]any
		usable  bool
		wantErr string // substring of the skip reason
	}{
		{"Entra-shaped key without alg is usable", with(nil), true, ""},
		{"alg RS256 is usable", with(map[string]any{"alg": "RS256"}), true, ""},
		{"use absent is usable", with(map[string]any{"use": nil}), true, ""},
		{"key_ops with verify is usable", with(map[string]any{"key_ops": []string{"verify"}}), true, ""},
		{"x5t alone is usable", with(map[string]any{"kid": nil, "x5t": "t0"}), true, ""},
		{"kty EC is skipped", with(map[string]any{"kty": "EC"}), false, "kty"},
		{"use enc is skipped", with(map[string]any{"use": "enc"}), false, "use"},
		{"alg RS512 is skipped", with(map[string]any{"alg": "RS512"}), false, "alg"},
		{"alg SHA256 of the 2014 fixture is skipped", with(map[string]any{"alg": "SHA256"}), false, "alg"},
		{"key_ops without verify is skipped", with(map[string]any{"key_ops": []string{"encrypt"}}), false, "key_ops"},
		{"1024-bit modulus is skipped", with(map[string]any{"n": base64.RawURLEncoding.EncodeToString(small.N.Bytes())}), false, "1024 bits"},
		{"standard base64 n is skipped", with(map[string]any{"n": stdN}), false, "base64url"},
		{"padded n is skipped", with(map[string]any{"n": good["n"] + "="}), false, "base64url"},
		{"e=3 is skipped", with(map[string]any{"e": "Aw"}), false, "exponent"},
		{"even e is skipped", with(map[string]any{"e": "AQAC"}), false, "exponent"},
		{"e longer than 4 bytes is skipped", with(map[string]any{"e": "AQAAAAAB"}), false, "e is not"},
		{"no kid and no x5t is skipped", with(map[string]any{"kid": nil}), false, "no kid"},
		{"kid not a string is skipped", with(map[string]any{"kid": 7}), false, "kid"},
		{"n missing is skipped", with(map[string]any{"n": nil}), false, "n is not"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, _ := json.Marshal(map[string]any{"keys": []any{tc.key}})
			ix, skipped, err := parseJWKS(doc)
			if tc.usable {
				if err != nil || ix.lookup("k0", false) == nil && ix.lookup("t0", true) == nil {
					t.Fatalf("parseJWKS = %v, %v; want the key usable", err, skipped)
				}
				return
			}
			if err == nil || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), tc.wantErr) {
				t.Fatalf("parseJWKS = %v, %v; want the key skipped for %q", err, skipped, tc.wantErr)
			}
		})
	}
}

func TestParseJWKSDocument(t *testing.T) {
	t.Parallel()
	k0 := publicJWK(&testKeys()[0].PublicKey, "k0", "")
	k1 := publicJWK(&testKeys()[1].PublicKey, "k1", "")
	k1dup := publicJWK(&testKeys()[2].PublicKey, "k1", "")
	tests := []struct {
		name     string
		doc      any
		wantErr  bool
		wantKIDs []string
	}{
		{"two keys are both usable", map[string]any{"keys": []any{k0, k1}}, false, []string{"k0", "k1"}},
		{"a kid two keys share is dropped", map[string]any{"keys": []any{k0, k1, k1dup}}, false, []string{"k0"}},
		{"no keys array is an error", map[string]any{"key": []any{k0}}, true, nil},
		{"empty keys is an error", map[string]any{"keys": []any{}}, true, nil},
		{"not an object is an error", []any{k0}, true, nil},
		{"keys not an array is an error", map[string]any{"keys": "x"}, true, nil},
		{"more than maxJWKSKeys keys is an error", map[string]any{"keys": slices.Repeat([]any{k0}, maxJWKSKeys+1)}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, _ := json.Marshal(tc.doc)
			ix, _, err := parseJWKS(doc)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseJWKS = %v; want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if len(ix.byKID) != len(tc.wantKIDs) {
				t.Fatalf("parseJWKS kids = %d; want %q", len(ix.byKID), tc.wantKIDs)
			}
			for _, kid := range tc.wantKIDs {
				if ix.lookup(kid, false) == nil {
					t.Errorf("parseJWKS lost kid %q", kid)
				}
			}
		})
	}
	if _, _, err := parseJWKS([]byte(`{"keys":[],"keys":[]}`)); err == nil {
		t.Errorf("parseJWKS(duplicate keys member) = nil; want error")
	}
}

// testRand is a deterministic, insecure byte source so a small test key can
// be made quickly; never use it outside tests.
type testRand struct{}

// Read fills b with a fixed pattern.
func (testRand) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return len(b), nil
}

// setJWKSHandler makes p answer its jwks_uri with h.
func setJWKSHandler(p *testIDP, h http.HandlerFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jwksHandler = h
}

// signWith signs p's standard claims with key under kid.
func signWith(tb testing.TB, p *testIDP, key *rsa.PrivateKey, kid string) string {
	tb.Helper()
	tok, err := signRS256(key, kid, p.claims(time.Now()))
	if err != nil {
		tb.Fatalf("signRS256: %v", err)
	}
	return tok
}

func TestKeySetRotation(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	k0, k1 := testKeys()[0], testKeys()[1]
	v := newTestVerifier(t, p, nil)
	ctx := context.Background()
	if p.jwksHits.Load() != 0 || p.discoveryHits.Load() != 0 {
		t.Fatalf("constructors fetched: %d JWKS, %d discovery requests; want none", p.jwksHits.Load(), p.discoveryHits.Load())
	}
	if err := v.keys.refresh(ctx); err != nil { // as run does at start
		t.Fatalf("first load: %v", err)
	}
	tok0 := signWith(t, p, k0, "k0")
	if _, err := v.verifyAccessToken(ctx, tok0); err != nil {
		t.Fatalf("first token: %v", err)
	}
	if err := v.ready(); err != nil {
		t.Fatalf("ready() after a load = %v", err)
	}

	t.Run("new kid right after the scheduled load is accepted after one fetch", func(t *testing.T) {
		p.publish(map[string]*rsa.PrivateKey{"k0": k0, "k1": k1})
		if _, err := v.verifyAccessToken(ctx, signWith(t, p, k1, "k1")); err != nil || p.jwksHits.Load() != 2 {
			t.Fatalf("verify = %v after %d JWKS requests; want nil after 2", err, p.jwksHits.Load())
		}
	})
	t.Run("a second unknown kid within the refetch interval fetches nothing", func(t *testing.T) {
		_, err := v.verifyAccessToken(ctx, signWith(t, p, k1, "k9"))
		if !errors.Is(err, errUnknownKID) || p.jwksHits.Load() != 2 {
			t.Fatalf("verify = %v after %d JWKS requests; want errUnknownKID after 2", err, p.jwksHits.Load())
		}
	})
	t.Run("after the interval an unknown kid fetches again", func(t *testing.T) {
		v.clock.advance(minKeyRefetch)
		p.publish(map[string]*rsa.PrivateKey{"k0": k0, "k1": k1, "k9": k1})
		if _, err := v.verifyAccessToken(ctx, signWith(t, p, k1, "k9")); err != nil || p.jwksHits.Load() != 3 {
			t.Fatalf("verify = %v after %d JWKS requests; want nil after 3", err, p.jwksHits.Load())
		}
	})
	t.Run("a dropped kid is refused after the refresh, cached token included", func(t *testing.T) {
		if v.cache.len() == 0 {
			t.Fatalf("the k0 token is not cached")
		}
		p.publish(map[string]*rsa.PrivateKey{"k1": k1})
		if err := v.keys.refresh(ctx); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if _, err := v.verifyAccessToken(ctx, tok0); !errors.Is(err, errUnknownKID) {
			t.Fatalf("verify(k0 token) = %v; want errUnknownKID", err)
		}
	})
	t.Run("a key replaced under the same kid drops cached tokens", func(t *testing.T) {
		tok1 := signWith(t, p, k1, "k1")
		if _, err := v.verifyAccessToken(ctx, tok1); err != nil {
			t.Fatalf("verify(k1 token) = %v", err)
		}
		p.publish(map[string]*rsa.PrivateKey{"k1": testKeys()[2]})
		if err := v.keys.refresh(ctx); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if _, err := v.verifyAccessToken(ctx, tok1); !errors.Is(err, errBadSignature) {
			t.Fatalf("verify(k1 token, key replaced) = %v; want errBadSignature", err)
		}
	})
}

func TestKeySetConcurrentUnknownKIDsShareOneFetch(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	k0 := testKeys()[0]
	tests := []struct {
		name    string
		preload bool
	}{
		{"before any key is loaded", false},
		{"after the refetch interval", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, p, nil)
			ctx := context.Background()
			if tc.preload {
				if err := v.keys.refresh(ctx); err != nil {
					t.Fatalf("refresh: %v", err)
				}
				v.clock.advance(minKeyRefetch + time.Second)
			}
			tokens := make([]string, 20) // signing 1000 tokens would dominate the test's time
			for i := range tokens {
				tokens[i] = signWith(t, p, k0, "unknown-"+strconv.Itoa(i))
			}
			before := p.jwksHits.Load()
			var wg sync.WaitGroup
			for i := range 1000 {
				wg.Go(func() {
					_, err := v.verifyAccessToken(ctx, tokens[i%len(tokens)])
					if !errors.Is(err, errUnknownKID) {
						t.Errorf("verify = %v; want errUnknownKID", err)
					}
				})
			}
			wg.Wait()
			if got := p.jwksHits.Load() - before; got > 1 {
				t.Fatalf("1000 unknown-kid requests made %d JWKS requests; want at most 1", got)
			}
		})
	}
}

func TestKeySetKeepsKeysWhenFetchFails(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	huge := `{"keys":[` + strings.Repeat(" ", maxIDPResponse) + `]}`
	ec := `{"keys":[{"kty":"EC","kid":"e1","crv":"P-256","x":"AA","y":"AA"}]}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"endpoint down (500)", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) }},
		{"endpoint slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}},
		{"garbage body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("<html>oops</html>"))
		}},
		{"huge body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(huge))
		}},
		{"not JSON content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`{"keys":[]}`))
		}},
		{"no usable key", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(ec))
		}},
	}
	tok := signWith(t, p, testKeys()[0], "k0")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newTestVerifier(t, p, nil)
			v.keys.client = &http.Client{Transport: p.srv.Client().Transport, Timeout: 300 * time.Millisecond}
			ctx := context.Background()
			if err := v.keys.refresh(ctx); err != nil {
				t.Fatalf("first refresh: %v", err)
			}
			bad := newTestIDP(t) // a second provider whose key set is broken
			setJWKSHandler(bad, tc.handler)
			v.prov.mu.Lock()
			v.prov.md.JWKSURI = bad.srv.URL + "/" + testTenant + "/discovery/v2.0/keys"
			v.prov.mu.Unlock()
			if err := v.keys.refresh(ctx); err == nil {
				t.Fatalf("refresh against a broken endpoint = nil; want an error")
			}
			v.cache = newTokenCache(10)
			if _, err := v.verifyAccessToken(ctx, tok); err != nil {
				t.Fatalf("verify with the old keys = %v; want nil", err)
			}
			if err := v.ready(); err != nil {
				t.Fatalf("ready() = %v; want ready with the old keys", err)
			}
		})
	}
}

func TestKeySetCustomSigningKeys(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	got := make(chan string, 1)
	setJWKSHandler(p, func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query().Get("appid")
		writeJSON(w, 200, map[string]any{"keys": []any{publicJWK(&testKeys()[0].PublicKey, "k0", "")}})
	})
	v := newTestVerifier(t, p, map[string]string{"AZURE_CUSTOM_SIGNING_KEYS": "true"})
	if err := v.keys.refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if appid := <-got; appid != testClientID {
		t.Fatalf("JWKS request appid = %q; want %q", appid, testClientID)
	}
}

func TestKeySetRunLoadsAndRetries(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	var healthy atomic.Bool // the endpoint fails until set
	setJWKSHandler(p, func(w http.ResponseWriter, r *http.Request) {
		if healthy.Load() {
			writeJSON(w, 200, map[string]any{"keys": []any{publicJWK(&testKeys()[0].PublicKey, "k0", "")}})
			return
		}
		http.Error(w, "down", 503)
	})
	v := newTestVerifier(t, p, nil)
	v.keys.now = time.Now // run sleeps on real timers
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.keys.run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for p.jwksHits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := v.ready(); err == nil {
		t.Fatalf("ready() = nil while the key set endpoint fails")
	}
	healthy.Store(true)
	for v.ready() != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := v.ready(); err != nil {
		t.Fatalf("run did not retry after a failure: %v", err)
	}
}

func TestProviderMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("fetched once and cached", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, nil)
		for range 5 {
			md, err := v.prov.metadata(ctx)
			if err != nil || md.Issuer != p.issuer(testTenant) || md.TokenEndpoint == "" || md.JWKSURI == "" {
				t.Fatalf("metadata = %+v, %v", md, err)
			}
		}
		if n := p.discoveryHits.Load(); n != 1 {
			t.Fatalf("discovery requests = %d; want 1", n)
		}
	})
	t.Run("failure is retried only after the backoff", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, map[string]string{"AZURE_TENANT_ID": "dddddddd-86f1-41af-91ab-2d7cd011db47"})
		v.prov.cfg.AuthorityHost = p.srv.URL + "/nowhere"
		if _, err := v.prov.metadata(ctx); !errors.Is(err, errIDPUnavailable) {
			t.Fatalf("metadata = %v; want errIDPUnavailable", err)
		}
		if _, err := v.prov.metadata(ctx); !errors.Is(err, errIDPUnavailable) {
			t.Fatalf("metadata (in backoff) = %v; want errIDPUnavailable", err)
		}
		v.prov.cfg.AuthorityHost = p.srv.URL
		v.clock.advance(2 * time.Second)
		if _, err := v.prov.metadata(ctx); err != nil {
			t.Fatalf("metadata after the backoff = %v", err)
		}
	})
	t.Run("plain-http endpoints are refused unless loopback", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, nil)
		good := providerMetadata{Issuer: "https://login.example/" + testTenant + "/v2.0",
			AuthorizationEndpoint: "https://login.example/a", TokenEndpoint: "https://login.example/t",
			JWKSURI: "https://login.example/k", EndSessionEndpoint: "https://login.example/l"}
		tests := []struct {
			name string
			edit func(*providerMetadata)
			ok   bool
		}{
			{"all https is accepted", func(*providerMetadata) {}, true},
			{"no end_session_endpoint is accepted", func(md *providerMetadata) { md.EndSessionEndpoint = "" }, true},
			{"http on localhost is accepted", func(md *providerMetadata) { md.TokenEndpoint = "http://localhost:8000/t" }, true},
			{"http on 127.0.0.2 is accepted", func(md *providerMetadata) { md.TokenEndpoint = "http://127.0.0.2/t" }, true},
			{"http on ::1 is accepted", func(md *providerMetadata) { md.TokenEndpoint = "http://[::1]:9/t" }, true},
			{"http issuer is refused", func(md *providerMetadata) { md.Issuer = "http://login.example/" + testTenant + "/v2.0" }, false},
			{"http authorization_endpoint is refused", func(md *providerMetadata) { md.AuthorizationEndpoint = "http://login.example/a" }, false},
			{"http token_endpoint is refused", func(md *providerMetadata) { md.TokenEndpoint = "http://login.example/t" }, false},
			{"http jwks_uri is refused", func(md *providerMetadata) { md.JWKSURI = "http://login.example/k" }, false},
			{"http end_session_endpoint is refused", func(md *providerMetadata) { md.EndSessionEndpoint = "http://login.example/l" }, false},
			{"http on a name ending in localhost is refused", func(md *providerMetadata) { md.TokenEndpoint = "http://localhost.evil.example/t" }, false},
		}
		for _, tc := range tests {
			md := good
			tc.edit(&md)
			if err := v.prov.validate(md); (err == nil) != tc.ok {
				t.Errorf("%s: validate = %v; want ok=%v", tc.name, err, tc.ok)
			}
		}
	})
	t.Run("the provider's error is logged once, sanitized", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{
				"error": "invalid_tenant", "error_codes": []int{90002},
				"error_description": "AADSTS90002: Tenant 'contoso' not found.\r\nTrace ID: t-1\r\nlevel=ERROR msg=forged\u202e" + strings.Repeat("x", 5000),
			})
		}))
		t.Cleanup(srv.Close)
		p := newTestIDP(t)
		var logs syncBuffer
		cfg := p.config(t, map[string]string{"AZURE_AUTHORITY_HOST": srv.URL})
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		prov := newProvider(cfg, srv.Client(), logger)
		ks := newKeySet(cfg, prov, srv.Client(), logger)
		if err := ks.refresh(ctx); !errors.Is(err, errIDPUnavailable) {
			t.Fatalf("refresh = %v; want errIDPUnavailable", err)
		}
		out := logs.String()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if n := strings.Count(out, "level=WARN"); n != 1 || len(lines) != 1 {
			t.Errorf("one failed discovery attempt logged %d WARN lines in %d lines; want 1:\n%s", n, len(lines), out)
		}
		for _, want := range []string{"invalid_tenant", "AADSTS90002", "Tenant 'contoso' not found", "check AZURE_TENANT_ID"} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "\u202e") || strings.Contains(out, `\u202e`) || strings.Contains(out, "\\r\\n") || strings.Contains(out, strings.Repeat("x", maxIDPErrorText)) {
			t.Errorf("log holds the provider's text unsanitized or uncapped:\n%s", out)
		}
		if hits.Load() != 1 {
			t.Errorf("discovery requests = %d; want 1", hits.Load())
		}
	})
	t.Run("issuer of another tenant is refused", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, nil)
		err := v.prov.validate(providerMetadata{Issuer: p.issuer("eeeeeeee-86f1-41af-91ab-2d7cd011db47"),
			AuthorizationEndpoint: p.srv.URL, TokenEndpoint: p.srv.URL, JWKSURI: p.srv.URL})
		if err == nil {
			t.Fatalf("validate(other tenant's issuer) = nil; want error")
		}
	})
}

func TestVerifiedTokenCache(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	ctx := context.Background()
	t.Run("a cached token still expires", func(t *testing.T) {
		t.Parallel()
		v := newTestVerifier(t, p, nil)
		tok := p.token(t, nil)
		if _, err := v.verifyAccessToken(ctx, tok); err != nil {
			t.Fatalf("verify: %v", err)
		}
		if v.cache.len() != 1 {
			t.Fatalf("cache len = %d; want 1", v.cache.len())
		}
		v.clock.advance(time.Hour + 6*time.Minute)
		if _, err := v.verifyAccessToken(ctx, tok); !errors.Is(err, errTokenExpired) {
			t.Fatalf("verify after exp = %v; want errTokenExpired", err)
		}
	})
	t.Run("a hit returns the same claims without verifying again", func(t *testing.T) {
		t.Parallel()
		v := newTestVerifier(t, p, nil)
		tok := p.token(t, nil)
		first, err := v.verifyAccessToken(ctx, tok)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		second, err := v.verifyAccessToken(ctx, tok)
		if err != nil || second != first {
			t.Fatalf("second verify = %p, %v; want the cached %p", second, err, first)
		}
	})
	t.Run("refused tokens are not cached", func(t *testing.T) {
		t.Parallel()
		v := newTestVerifier(t, p, nil)
		v.verifyAccessToken(ctx, p.token(t, map[string]any{"aud": "x"}))
		v.verifyAccessToken(ctx, p.token(t, map[string]any{"scp": nil}))
		if v.cache.len() != 0 {
			t.Fatalf("cache len = %d; want 0", v.cache.len())
		}
	})
	t.Run("the cache is bounded, least recently used out first", func(t *testing.T) {
		t.Parallel()
		tc := newTokenCache(2)
		ks := &keySet{}
		ks.keys.Store(&keyIndex{byKID: map[string]*publicKey{"k": {kid: "k"}}})
		k := ks.keys.Load().byKID["k"]
		c := &claims{Expiry: time.Now().Add(time.Hour), hasExp: true}
		a, b, d := [32]byte{1}, [32]byte{2}, [32]byte{3}
		tc.put(a, c, k, "k", false)
		tc.put(b, c, k, "k", false)
		tc.get(a, time.Now(), 0, ks) // a is now the most recent
		tc.put(d, c, k, "k", false)
		if tc.len() != 2 || tc.get(b, time.Now(), 0, ks) != nil || tc.get(a, time.Now(), 0, ks) == nil {
			t.Fatalf("after 3 puts in a cache of 2: len %d; want b evicted and a kept", tc.len())
		}
	})
}

// corpusDir is the shared corpus of real tokens and key sets, relative to
// the repository root (../shared/corpus/README.md describes it).
const corpusDir = "../shared/corpus"

// corpusCase is one case file of the corpus.
type corpusCase struct {
	Name        string          `json:"name"`
	Token       string          `json:"token"`
	JWKS        json.RawMessage `json:"jwks"`
	Expect      string          `json:"expect"` // "valid-signature" or "invalid-signature"
	ValidAtUnix *int64          `json:"valid_at_unix"`
}

// loadCorpus reads every case file, skipping the test when the corpus is
// absent (a plain clone of the project has none).
func loadCorpus(tb testing.TB) []corpusCase {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.json"))
	if err != nil || len(files) == 0 {
		tb.Skipf("corpus not found at %s (see the README there); skipping", corpusDir)
	}
	var cases []corpusCase
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatalf("reading %s: %v", f, err)
		}
		var c corpusCase
		if err := json.Unmarshal(data, &c); err != nil {
			tb.Fatalf("parsing %s: %v", f, err)
		}
		cases = append(cases, c)
	}
	return cases
}

// rawJWK is an RSA key of a corpus key set, read without any policy.
type rawJWK struct {
	Kty, Kid, X5t, N, E string
}

// corpusKeys returns the RSA keys of a corpus key set that match the token
// header as the corpus README's checker picked them: by kid, or by x5t (or
// kid) when the header has no kid, or every RSA key when nothing matches.
func corpusKeys(tb testing.TB, jwks json.RawMessage, kid, x5t string) []*rsa.PublicKey {
	tb.Helper()
	var doc struct{ Keys []rawJWK }
	if err := json.Unmarshal(jwks, &doc); err != nil {
		tb.Fatalf("corpus key set: %v", err)
	}
	var all, matched []*rsa.PublicKey
	for _, k := range doc.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil {
			tb.Fatalf("corpus key %q: n/e not base64url", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		all = append(all, pub)
		if kid != "" && k.Kid == kid || kid == "" && x5t != "" && (k.X5t == x5t || k.Kid == x5t) {
			matched = append(matched, pub)
		}
	}
	if len(matched) == 0 {
		return all
	}
	return matched
}

// TestCorpusSignatures runs verifyRS256 alone on every corpus case: the
// verdict must equal the case's expect. The signature segment is decoded
// leniently here (the corpus has non-canonical ones; parseToken refuses
// those, which TestCorpusFullVerification asserts).
func TestCorpusSignatures(t *testing.T) {
	t.Parallel()
	for _, c := range loadCorpus(t) {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			h64, rest, _ := strings.Cut(c.Token, ".")
			p64, s64, _ := strings.Cut(rest, ".")
			var header struct{ Kid, X5t string }
			hb, _ := base64.RawURLEncoding.DecodeString(h64)
			json.Unmarshal(hb, &header)
			sig, err := base64.RawURLEncoding.DecodeString(s64)
			if err != nil {
				t.Fatalf("signature segment: %v", err)
			}
			valid := false
			for _, pub := range corpusKeys(t, c.JWKS, header.Kid, header.X5t) {
				if verifyRS256(pub, []byte(h64+"."+p64), sig) == nil {
					valid = true
				}
			}
			if want := c.Expect == "valid-signature"; valid != want {
				t.Fatalf("verifyRS256 valid = %v; want %v (expect %s)", valid, want, c.Expect)
			}
		})
	}
}

// corpusWant is the reason full verification refuses a case, where it is
// not the default (accepted for valid-signature, errBadSignature for
// invalid-signature). Each entry says why.
var corpusWant = map[string]error{
	// No kid and no x5t in the header: refused before any key lookup.
	"connect-op_2015_id-token_no-kid":              errNoKeyID,
	"golang-jwt_rsa_test_basic_rs256_valid":        errNoKeyID,
	"golang-jwt_rsa_test_foo_bar_invalid":          errNoKeyID,
	"rfc7515_A2_rs256_example":                     errNoKeyID,
	"google_2015-05_id-token_1024-bit-key":         errUnknownKID,     // the 1024-bit key is dropped from the key set
	"omniauth-azure-ad_synthetic_id_token_bad_kid": errUnknownKID,     // kid abc1234 is not in the set
	"omniauth-azure-ad_synthetic_id_token":         errMalformedToken, // no exp claim
	"rfc7520_4_1_rsa_v15_signature":                errMalformedToken, // the payload is not a JSON object
	// App-only v1 access tokens (appid, no nonce) that carry no roles: the
	// mark of an app without application permissions, refused as
	// Microsoft.Identity.Web refuses them.
	"azure_v1_2024_msal-dotnet-perf_app-only-access-token": errNoPermissions,
	"azure_v1_2013_adal-node_aad-graph-app-token":          errNoPermissions,
	// An Auth0 access token without scp, so verified as an ID token: its azp
	// is not its aud (OpenID Connect Core §3.1.3.7 step 5).
	"auth0_2019_access-token_pyjwt": errBadAZP,
	// The last signature character was changed in its unused low bits too:
	// not canonical base64url, refused before any crypto.
	"azure_invalid_b2c_2016_passport-azure-ad_last-char-changed-1474696424": errMalformedToken,
	"azure_invalid_b2c_2016_passport-azure-ad_last-char-changed-1475798812": errMalformedToken,
	"azure_invalid_v1_2016_passport-azure-ad_last-char-changed-1471317317":  errMalformedToken,
	"azure_invalid_v1_2016_passport-azure-ad_last-char-changed-1471472066":  errMalformedToken,
	"azure_invalid_docs_v1_sample-id-token_7_Zuf1":                          errMalformedToken, // "=" padding inside the payload segment
}

// TestCorpusFullVerification verifies every corpus token with the project's
// whole verifier: the case's key set through parseJWKS (so the key policy
// applies), its valid_at_unix as the clock, and its own iss, aud and tid as
// the configuration (the discovery issuer is the token's iss, or for a v1
// iss the v2 issuer of its tenant). Tokens with scp, scope or roles are
// verified as access tokens; the others are ID tokens (OpenID Connect has no
// scp) and are verified as such, with the token's own nonce as the expected
// one. Valid signatures must be accepted unless corpusWant names the policy
// that refuses them; invalid ones must be refused with the reason asserted.
func TestCorpusFullVerification(t *testing.T) {
	t.Parallel()
	for _, c := range loadCorpus(t) {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			want, special := corpusWant[c.Name]
			if !special && c.Expect == "invalid-signature" {
				want = errBadSignature
			}
			v, access, nonce := corpusVerifier(t, c)
			var err error
			if access {
				_, err = v.verifyAccessToken(context.Background(), c.Token)
			} else {
				_, err = v.verifyIDToken(context.Background(), c.Token, nonce)
			}
			if !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Fatalf("verify = %v; want %v", err, want)
			}
		})
	}
}

// corpusVerifier builds a verifier for a corpus case (see
// TestCorpusFullVerification) and says whether the token is an access token
// and which nonce it carries.
func corpusVerifier(tb testing.TB, c corpusCase) (v *verifier, access bool, nonce string) {
	tb.Helper()
	var payload struct {
		Iss   string          `json:"iss"`
		Aud   json.RawMessage `json:"aud"`
		Tid   string          `json:"tid"`
		Nonce string          `json:"nonce"`
		Scp   *string         `json:"scp"`
		Scope *string         `json:"scope"`
		Roles []string        `json:"roles"`
		AppID *string         `json:"appid"`
	}
	_, rest, _ := strings.Cut(c.Token, ".")
	p64, _, _ := strings.Cut(rest, ".")
	pb, _ := base64.URLEncoding.WithPadding(base64.NoPadding).DecodeString(strings.TrimRight(p64, "="))
	json.Unmarshal(pb, &payload) // a non-JSON payload leaves the zero values
	var auds []string
	if json.Unmarshal(payload.Aud, &auds) != nil {
		var aud string
		json.Unmarshal(payload.Aud, &aud)
		auds = []string{aud}
	}
	if len(auds) == 0 || auds[0] == "" {
		auds = []string{"none"}
	}
	tenant := "00000000-0000-0000-0000-000000000001"
	if isGUID(payload.Tid) {
		tenant = strings.ToLower(payload.Tid)
	}
	// Access tokens are checked against the v2 discovery issuer of their
	// tenant, so v1 ones (https://sts.windows.net/{tid}/) exercise the
	// ACCEPT_V1_TOKENS rule. An ID token must carry exactly the issuer of the
	// endpoint that issued it (OpenID Connect Core §3.1.3.7 step 2): for v1
	// ID tokens that is the v1 endpoint's discovery issuer, their own iss.
	access = payload.Scp != nil || payload.Scope != nil || payload.Roles != nil || payload.AppID != nil
	issuer := payload.Iss
	if access && strings.HasPrefix(issuer, "https://sts.windows.net/") && isGUID(payload.Tid) {
		issuer = "https://login.microsoftonline.com/" + tenant + "/v2.0"
	}
	now := time.Now()
	if c.ValidAtUnix != nil {
		now = time.Unix(*c.ValidAtUnix, 0)
	}
	ix, _, err := parseJWKS(c.JWKS)
	if err != nil {
		ix = &keyIndex{} // nothing usable: every kid is unknown
	}
	v = staticVerifierIndex(tb, tenant, issuer, auds, ix, now)
	return v, access, payload.Nonce
}

// TestCorpusKeySets parses every standalone Entra key set of the corpus:
// all keys are usable, except in the original 2014 IdentityModel fixture,
// whose keys have alg "SHA256" and standard-base64 n (RFC 7518 §6.3.1 asks
// for base64url): that document yields no usable key, and is refused.
func TestCorpusKeySets(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join(corpusDir, "jwks", "*.json"))
	if len(files) == 0 {
		t.Skipf("corpus not found at %s (see the README there); skipping", corpusDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct{ Keys []json.RawMessage }
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			ix, skipped, err := parseJWKS(data)
			if strings.Contains(f, "ORIGINAL") {
				if err == nil || len(skipped) != len(doc.Keys) {
					t.Fatalf("parseJWKS = %v, %d skipped; want every key skipped", err, len(skipped))
				}
				return
			}
			if err != nil || len(skipped) != 0 || len(ix.byKID) != len(doc.Keys) {
				t.Fatalf("parseJWKS = %v, skipped %v; want all %d keys usable", err, skipped, len(doc.Keys))
			}
		})
	}
}

// TestWycheproofRSASSAPKCS1SHA256 runs Project Wycheproof's RSASSA-PKCS1-v1_5
// 2048-bit SHA-256 vectors through verifyRS256: valid ones are accepted;
// invalid and acceptable (a DigestInfo without NULL) ones are refused. The
// e=3 keys of two groups are valid there: verifyRS256 applies no key policy.
func TestWycheproofRSASSAPKCS1SHA256(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(corpusDir, "wycheproof", "rsa_signature_2048_sha256_test.json"))
	if err != nil {
		t.Skipf("corpus not found at %s (see the README there); skipping", corpusDir)
	}
	var file struct {
		TestGroups []struct {
			PublicKey struct{ Modulus, PublicExponent string }
			Tests     []struct {
				TcID              int `json:"tcId"`
				Comment, Msg, Sig string
				Result            string
			}
		}
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range file.TestGroups {
		mod, _ := new(big.Int).SetString(g.PublicKey.Modulus, 16)
		e, _ := new(big.Int).SetString(g.PublicKey.PublicExponent, 16)
		pub := &rsa.PublicKey{N: mod, E: int(e.Int64())}
		for _, tc := range g.Tests {
			n++
			msg, err1 := hex.DecodeString(tc.Msg)
			sig, err2 := hex.DecodeString(tc.Sig)
			if err1 != nil || err2 != nil {
				t.Fatalf("tcId %d: bad hex", tc.TcID)
			}
			err := verifyRS256(pub, msg, sig)
			if got, want := err == nil, tc.Result == "valid"; got != want {
				t.Errorf("tcId %d (%s, %s): verifyRS256 = %v; want valid %v", tc.TcID, tc.Result, tc.Comment, err, want)
			}
		}
	}
	if n != 259 {
		t.Errorf("ran %d vectors; want 259", n)
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
	if _, _, err := v.checkAccessToken(context.Background(), tok, now); err != nil {
		tb.Fatalf("benchmark token refused: %v", err)
	}
	return v, tok
}

// BenchmarkVerifyRS256 is the whole per-request job without the cache:
// parse, key lookup, RSA verification and every claim check. Compare it with
// BenchmarkRSAFloor, run in the same invocation.
func BenchmarkVerifyRS256(b *testing.B) {
	v, tok := benchVerifier(b)
	ctx, now := context.Background(), v.now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.checkAccessToken(ctx, tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSAFloor is only what no verifier can skip: SHA-256 of the
// signing input and rsa.VerifyPKCS1v15, on the same token.
func BenchmarkRSAFloor(b *testing.B) {
	_, tok := benchVerifier(b)
	i := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:i])
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	pub := &testKeys()[0].PublicKey
	b.ReportAllocs()
	for b.Loop() {
		sum := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached is a token verified before: the cache answers
// without RSA.
func BenchmarkVerifyCached(b *testing.B) {
	v, tok := benchVerifier(b)
	ctx := context.Background()
	if _, err := v.verifyAccessToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.verifyAccessToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseToken is parseToken alone on the benchmark token.
func BenchmarkParseToken(b *testing.B) {
	_, tok := benchVerifier(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseToken(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// corpusSeeds returns the corpus tokens and key sets as fuzz seeds, or
// nothing when the corpus is absent.
func corpusSeeds() (tokens []string, keySets [][]byte) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var c corpusCase
		if json.Unmarshal(data, &c) == nil {
			tokens = append(tokens, c.Token)
			keySets = append(keySets, c.JWKS)
		}
	}
	more, _ := filepath.Glob(filepath.Join(corpusDir, "jwks", "*.json"))
	for _, f := range more {
		if data, err := os.ReadFile(f); err == nil {
			keySets = append(keySets, data)
		}
	}
	return tokens, keySets
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
		"scp": "Heroes.Read", "exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "roles": []string{"Admin"}})
	f.Add(good)
	f.Add(sign(f, key, map[string]string{"alg": "RS256", "x5t": "k0"}, map[string]any{"iss": iss, "aud": []string{testClientID}, "scp": "x", "exp": 1.8e9}))
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

// FuzzParseJWKS feeds arbitrary documents to parseJWKS. It must never panic,
// and every key it keeps must meet the key policy.
func FuzzParseJWKS(f *testing.F) {
	_, keySets := corpusSeeds()
	for _, ks := range keySets {
		f.Add(ks)
	}
	doc, _ := json.Marshal(map[string]any{"keys": []any{publicJWK(&testKeys()[0].PublicKey, "k0", "https://login.microsoftonline.com/{tenantid}/v2.0")}})
	f.Add(doc)
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","kid":"b"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, _, err := parseJWKS(data)
		if err != nil {
			return
		}
		for _, m := range []map[string]*publicKey{ix.byKID, ix.byX5T} {
			for id, k := range m {
				if id == "" || k.pub.N.BitLen() < minRSABits || k.pub.N.BitLen() > maxRSABits || k.pub.E < 65537 || k.pub.E%2 == 0 {
					t.Fatalf("parseJWKS kept key %q of %d bits, e=%d", id, k.pub.N.BitLen(), k.pub.E)
				}
			}
		}
	})
}

// FuzzParseObject checks the strict JSON scanner against encoding/json: what
// it accepts must be valid JSON holding an object.
func FuzzParseObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":[1,{"b":null}],"c":"\u00e9"}`, `{"a":1,"a":2}`, ` {"x":-0.5e+3} `, `[1]`, `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if parseObject(data, nil) != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("parseObject accepted %q, which encoding/json refuses: %v", data, err)
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

func TestParseObject(t *testing.T) {
	t.Parallel()
	many := func(n int, dupAt int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			name := "k" + strconv.Itoa(i)
			if i == dupAt {
				name = "k0"
			}
			b.WriteString(`"` + name + `":1`)
		}
		b.WriteString("}")
		return b.String()
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty object", `{}`, true},
		{"nested values of every kind", ` {"a":[1,-0.5,2e10,1E-2,true,false,null,"x\n\u00e9\"\\/"],"b":{"c":{}}} `, true},
		{"same name in sibling objects", `{"a":{"x":1},"b":{"x":1}}`, true},
		{"duplicate name", `{"a":1,"a":1}`, false},
		{"duplicate name in a nested object", `{"a":{"x":1,"x":2}}`, false},
		{"duplicate name written with an escape", `{"alg":1,"\u0061lg":2}`, false},
		{"duplicate among many names", many(200, 150), false},
		{"many distinct names", many(200, -1), true},
		{"array at top level", `[1]`, false},
		{"string at top level", `"a"`, false},
		{"data after the object", `{} {}`, false},
		{"trailing comma", `{"a":1,}`, false},
		{"missing colon", `{"a" 1}`, false},
		{"unquoted name", `{a:1}`, false},
		{"single quotes", `{'a':1}`, false},
		{"leading zero", `{"a":01}`, false},
		{"bare minus", `{"a":-}`, false},
		{"dot without digits", `{"a":1.}`, false},
		{"exponent without digits", `{"a":1e}`, false},
		{"plus sign", `{"a":+1}`, false},
		{"NaN", `{"a":NaN}`, false},
		{"truncated literal", `{"a":tru}`, false},
		{"raw control character in a string", "{\"a\":\"x\x01\"}", false},
		{"raw newline in a string", "{\"a\":\"x\ny\"}", false},
		{"bad escape", `{"a":"\x"}`, false},
		{"short unicode escape", `{"a":"\u12"}`, false},
		{"unterminated string", `{"a":"x}`, false},
		{"unterminated object", `{"a":1`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"nesting at the limit", strings.Repeat(`{"a":`, maxJSONDepth) + `1` + strings.Repeat(`}`, maxJSONDepth), true},
		{"nesting beyond the limit", strings.Repeat(`{"a":`, maxJSONDepth+1) + `1` + strings.Repeat(`}`, maxJSONDepth+1), false},
		{"arrays beyond the limit", `{"a":` + strings.Repeat(`[`, maxJSONDepth) + strings.Repeat(`]`, maxJSONDepth) + `}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := parseObject([]byte(tc.in), nil)
			if (err == nil) != tc.ok {
				t.Fatalf("parseObject(%.60q) = %v; want ok %v", tc.in, err, tc.ok)
			}
			if tc.ok && !json.Valid([]byte(tc.in)) {
				t.Fatalf("test input %q is not valid JSON", tc.in)
			}
		})
	}
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

func TestKeySetImpatientCallerDoesNotCancelTheFetch(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	release := make(chan struct{})
	setJWKSHandler(p, func(w http.ResponseWriter, r *http.Request) {
		<-release
		writeJSON(w, 200, map[string]any{"keys": []any{publicJWK(&testKeys()[0].PublicKey, "k0", "")}})
	})
	v := newTestVerifier(t, p, nil)
	tok := p.token(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.verifyAccessToken(ctx, tok); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("verify with an impatient context = %v; want context.DeadlineExceeded", err)
	}
	close(release)
	if _, err := v.verifyAccessToken(context.Background(), tok); err != nil {
		t.Fatalf("verify after the shared fetch finished = %v", err)
	}
	if n := p.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS requests = %d; want the one fetch, shared", n)
	}
}

// TestTokenCacheMemoryBound presents 100,000 distinct verified tokens to the
// cache (as many distinct callers would) and checks that it keeps at most
// tokenCacheSize of them and that the heap it holds stays under 16 MiB (the
// bound README documents; about 1 KiB per entry). Signing 100,000 real
// tokens would take minutes, so entries are put directly; the claims are
// shaped like an Entra access token's, each with its own strings.
func TestTokenCacheMemoryBound(t *testing.T) {
	const presented = 100_000
	const bound = 16 << 20
	key := &publicKey{}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tc := newTokenCache(tokenCacheSize)
	for i := range presented {
		id := fmt.Sprintf("%08d-0000-4000-8000-%012d", i, i)
		c := &claims{
			Issuer: "https://login.microsoftonline.com/" + testTenant + "/v2.0", Subject: "sub-" + id,
			Audience: []string{"api://" + testClientID}, TenantID: testTenant, ObjectID: id,
			AuthorizedParty: testClientID, Name: "User " + id, PreferredUsername: "user" + id + "@contoso.example",
			Version: "2.0", Scopes: []string{"Heroes.Read", "Heroes.Create"},
			Expiry: time.Now().Add(time.Hour), IssuedAt: time.Now(), NotBefore: time.Now(),
		}
		tc.put(sha256.Sum256([]byte(id)), c, key, "k0", false)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := tc.len(); got != tokenCacheSize {
		t.Errorf("cache holds %d tokens after %d; want %d", got, presented, tokenCacheSize)
	}
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("cache of %d tokens holds %d KiB of heap", tc.len(), held>>10)
	if held > bound {
		t.Errorf("cache holds %d bytes of heap; want at most %d", held, bound)
	}
	runtime.KeepAlive(tc)
}

// FuzzProviderErrorText: whatever a failed discovery or JWKS answer holds,
// the text kept for the log is bounded printable ASCII on one line.
func FuzzProviderErrorText(f *testing.F) {
	f.Add([]byte(`{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'x' not found.\r\nTrace ID: 1","error_codes":[90002]}`))
	f.Add([]byte(`{"error":"\u202e\n","error_description":null}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := providerErrorText(body)
		if len(got) > 2*maxIDPErrorText+100 {
			t.Fatalf("providerErrorText = %d bytes; want at most about %d", len(got), 2*maxIDPErrorText+100)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x20 || got[i] > 0x7e {
				t.Fatalf("providerErrorText = %q holds byte %#x", got, got[i])
			}
		}
	})
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
		{"one second before exp+skew is valid", claims{hasExp: true, Expiry: now.Add(-skew + time.Second)}, nil},
		{"exactly exp+skew is expired", claims{hasExp: true, Expiry: now.Add(-skew)}, errTokenExpired},
		{"exactly nbf-skew is valid", claims{hasExp: true, Expiry: now.Add(time.Hour), NotBefore: now.Add(skew)}, nil},
		{"one second before nbf-skew is not yet valid", claims{hasExp: true, Expiry: now.Add(time.Hour), NotBefore: now.Add(skew + time.Second)}, errNotYetValid},
	}
	for _, tc := range tests {
		if err := checkTime(&tc.c, now, skew); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: checkTime = %v; want %v", tc.name, err, tc.want)
		}
	}
}
