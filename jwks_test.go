package main

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
				if err != nil || ix.lookup("k0", "") == nil && ix.lookup("", "t0") == nil {
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
				if ix.lookup(kid, "") == nil {
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
	if _, err := v.authenticate(ctx, tok0); err != nil {
		t.Fatalf("first token: %v", err)
	}
	if err := v.ready(); err != nil {
		t.Fatalf("ready() after a load = %v", err)
	}

	t.Run("new kid right after the scheduled load is accepted after one fetch", func(t *testing.T) {
		p.publish(map[string]*rsa.PrivateKey{"k0": k0, "k1": k1})
		if _, err := v.authenticate(ctx, signWith(t, p, k1, "k1")); err != nil || p.jwksHits.Load() != 2 {
			t.Fatalf("verify = %v after %d JWKS requests; want nil after 2", err, p.jwksHits.Load())
		}
	})
	t.Run("a second unknown kid within the refetch interval fetches nothing", func(t *testing.T) {
		_, err := v.authenticate(ctx, signWith(t, p, k1, "k9"))
		if !errors.Is(err, errUnknownKID) || p.jwksHits.Load() != 2 {
			t.Fatalf("verify = %v after %d JWKS requests; want errUnknownKID after 2", err, p.jwksHits.Load())
		}
	})
	t.Run("after the interval an unknown kid fetches again", func(t *testing.T) {
		v.clock.advance(minKeyRefetch)
		p.publish(map[string]*rsa.PrivateKey{"k0": k0, "k1": k1, "k9": k1})
		if _, err := v.authenticate(ctx, signWith(t, p, k1, "k9")); err != nil || p.jwksHits.Load() != 3 {
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
		if _, err := v.authenticate(ctx, tok0); !errors.Is(err, errUnknownKID) {
			t.Fatalf("verify(k0 token) = %v; want errUnknownKID", err)
		}
	})
	t.Run("a key replaced under the same kid drops cached tokens", func(t *testing.T) {
		tok1 := signWith(t, p, k1, "k1")
		if _, err := v.authenticate(ctx, tok1); err != nil {
			t.Fatalf("verify(k1 token) = %v", err)
		}
		p.publish(map[string]*rsa.PrivateKey{"k1": testKeys()[2]})
		if err := v.keys.refresh(ctx); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if _, err := v.authenticate(ctx, tok1); !errors.Is(err, errBadSignature) {
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
			v.keys.opts.Client = &http.Client{Transport: p.srv.Client().Transport, Timeout: 300 * time.Millisecond}
			ctx := context.Background()
			if err := v.keys.refresh(ctx); err != nil {
				t.Fatalf("first refresh: %v", err)
			}
			bad := newTestIDP(t) // a second provider whose key set is broken
			setJWKSHandler(bad, tc.handler)
			md := *v.prov.md.Load()
			md.JWKSURI = bad.srv.URL + "/" + testTenant + "/discovery/v2.0/keys"
			v.prov.md.Store(&md)
			if err := v.keys.refresh(ctx); err == nil {
				t.Fatalf("refresh against a broken endpoint = nil; want an error")
			}
			v.cache = &tokenCache{half: 5}
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
	v.keys.opts.Now = time.Now // run sleeps on real timers
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
