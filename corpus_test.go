package main

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// corpusDir is the shared corpus of real tokens and key sets, relative to
// the repository root. It is not part of this repository: the project's CI
// and developer machines put it beside the clone (its own README.md, there,
// describes each case); without it the corpus tests skip with
// corpusMissing (README.md, "Testing").
const corpusDir = "../shared/corpus"

// corpusMissing is the reason the corpus tests give when they skip.
const corpusMissing = "corpus not found at " + corpusDir + " (a folder beside the repository, not in it, " +
	"that the project's CI and developer machines provide; README.md, Testing); skipping"

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
		tb.Skip(corpusMissing)
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
				if verifyRS256(pub, sha256.Sum256([]byte(h64+"."+p64)), sig) == nil {
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

// TestCorpusIDTokensAreNotAccessTokens: every real Entra ID token of the
// corpus that verifies as an ID token is refused as an access token for
// naming no client application (Entra's access tokens carry azp or appid,
// its ID tokens neither).
func TestCorpusIDTokensAreNotAccessTokens(t *testing.T) {
	t.Parallel()
	n := 0
	for _, c := range loadCorpus(t) {
		if _, special := corpusWant[c.Name]; special || !strings.HasPrefix(c.Name, "azure_") || c.Expect != "valid-signature" {
			continue
		}
		v, access, _ := corpusVerifier(t, c)
		if access {
			continue
		}
		n++
		if _, err := v.verifyAccessToken(context.Background(), c.Token); !errors.Is(err, errNoClient) {
			t.Errorf("%s: verifyAccessToken = %v; want %v", c.Name, err, errNoClient)
		}
	}
	if n == 0 {
		t.Fatal("no Entra ID token in the corpus")
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
		t.Skip(corpusMissing)
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
		t.Skip(corpusMissing)
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
			err := verifyRS256(pub, sha256.Sum256(msg), sig)
			if got, want := err == nil, tc.Result == "valid"; got != want {
				t.Errorf("tcId %d (%s, %s): verifyRS256 = %v; want valid %v", tc.TcID, tc.Result, tc.Comment, err, want)
			}
		}
	}
	if n != 259 {
		t.Errorf("ran %d vectors; want 259", n)
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
