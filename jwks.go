package main

import (
	"cmp"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net/url"
	"slices"
	"sync/atomic"
	"time"
)

// Limits of the key set. Durations are time.Duration.
const (
	keyRefreshEvery = 24 * time.Hour  // scheduled JWKS refresh
	minKeyRefetch   = 5 * time.Minute // at most one unknown-kid refetch per this interval
	minRSABits      = 2048            // RFC 7518 §3.3: keys of 2048 bits or more
	maxRSABits      = 8192            // bounds the cost of one verification
	maxJWKSKeys     = 100             // keys in one key set (Entra publishes about ten)
)

// publicKey is one usable signing key of the key set. Values are never
// changed after parseJWKS makes them, so they are shared freely.
type publicKey struct {
	kid    string
	x5t    string
	issuer string // Entra's issuer member, possibly holding {tenantid}; "" when absent
	pub    *rsa.PublicKey
}

// keyIndex is an immutable snapshot of the loaded keys, by kid and by x5t.
type keyIndex struct {
	byKID map[string]*publicKey
	byX5T map[string]*publicKey
}

// lookup finds the key a token header names: by kid, or, when the header
// has only x5t (Entra v1 tokens of 2013–2014), by the key's x5t or kid.
func (ix *keyIndex) lookup(kid, x5t string) *publicKey {
	switch {
	case ix == nil:
		return nil
	case kid != "":
		return ix.byKID[kid]
	}
	return cmp.Or(ix.byX5T[x5t], ix.byKID[x5t])
}

// keySet is the cached JWKS of the provider's jwks_uri (RFC 7517 §5), loaded
// by run and, for a token naming an unknown key, by key; a failed fetch keeps
// the keys already loaded. Safe for concurrent use; lookups take no lock.
type keySet struct {
	opts     verifyOptions
	p        *provider
	keys     atomic.Pointer[keyIndex] // nil until the first successful load, which has a key
	f        fetcher
	lastMiss time.Time // start of the last fetch an unknown key asked for; guarded by f.mu
}

// newKeySet does no network I/O: run or the first token does.
func newKeySet(opts verifyOptions, p *provider) *keySet {
	return &keySet{opts: opts.withDefaults(), p: p}
}

// run loads the key set at once and then every keyRefreshEvery until ctx is
// done; after a failed load it retries after the backoff.
func (ks *keySet) run(ctx context.Context) {
	for {
		wait := keyRefreshEvery
		if err := ks.refresh(ctx); err != nil {
			ks.f.mu.Lock()
			wait = backoff(ks.f.failures)
			ks.f.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// refresh fetches the key set now, or waits for the fetch in progress.
func (ks *keySet) refresh(ctx context.Context) error {
	return ks.f.start(ctx, ks.opts.Now(), ks.fetch, nil).wait(ctx)
}

// fetch loads the key set (fetcher.start's fetch).
func (ks *keySet) fetch(ctx context.Context, attempt int) error {
	ix, skipped, err := ks.load(ctx)
	if ks.opts.Observe("keys_fetch", err); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, errIDPUnavailable) { // no discovery document: provider.fetch logged this attempt at WARN
			level = slog.LevelDebug
		}
		ks.opts.Logger.Log(ctx, level, "jwks: key set not loaded; keeping the previous keys", "failures", attempt, "err", err)
		return err
	}
	ks.keys.Store(ix)
	ks.opts.Logger.Info("jwks: key set loaded", "keys", len(ix.byKID), "skipped", len(skipped))
	for _, s := range skipped {
		ks.opts.Logger.Debug("jwks: key skipped", "reason", s)
	}
	return nil
}

func (ks *keySet) load(ctx context.Context) (*keyIndex, []error, error) {
	md, err := ks.p.metadata(ctx)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(md.JWKSURI)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: jwks_uri: %w", err)
	}
	if ks.opts.CustomSigningKeys {
		q := u.Query()
		q.Set("appid", ks.opts.ClientID)
		u.RawQuery = q.Encode()
	}
	body, err := getJSON(ctx, ks.opts.Client, u.String())
	if err != nil {
		return nil, nil, err
	}
	return parseJWKS(body)
}

// key returns the key a token header names (lookup). On a miss it waits for
// the fetch in progress, or starts one if minKeyRefetch has passed since the
// last fetch a miss started (while no key was ever loaded: if the backoff
// has passed). Only fetches that tokens ask for count against minKeyRefetch,
// so a rotation just after run's scheduled load is still picked up at once.
// Errors wrap errUnknownKID, or errIDPUnavailable while no key is loaded.
func (ks *keySet) key(ctx context.Context, kid, x5t string) (*publicKey, error) {
	if k := ks.keys.Load().lookup(kid, x5t); k != nil {
		return k, nil
	}
	now := ks.opts.Now()
	call := ks.f.start(ctx, now, ks.fetch, func() bool {
		ok := now.Sub(ks.f.lastTry) >= backoff(ks.f.failures)
		if ks.keys.Load() != nil {
			ok = now.Sub(ks.lastMiss) >= minKeyRefetch
		}
		if ok {
			ks.lastMiss = now
		}
		return ok
	})
	var err error
	if call != nil {
		err = call.wait(ctx)
	}
	switch ix := ks.keys.Load(); {
	case ix == nil && err != nil:
		return nil, fmt.Errorf("%w: %w", errIDPUnavailable, err)
	case ix == nil:
		return nil, errIDPUnavailable
	case ix.lookup(kid, x5t) != nil:
		return ix.lookup(kid, x5t), nil
	}
	return nil, fmt.Errorf("%w: %q", errUnknownKID, cmp.Or(kid, x5t))
}

// current reports whether k is in the key set loaded last. A refresh makes
// new keys, so a token verified with k and cached is checked again after one.
func (ks *keySet) current(k *publicKey) bool {
	ix := ks.keys.Load()
	return ix != nil && (ix.byKID[k.kid] == k || ix.byX5T[k.x5t] == k)
}

// parseJWKS parses a JWK Set document (RFC 7517 §5) and keeps the keys fit
// to verify RS256 signatures (parseJWK). It returns the usable keys, one
// error per key skipped (with the reason), and an error when the document
// itself is not a key set or no key is usable. A kid that two keys share is
// dropped: the token could not say which one it means.
func parseJWKS(data []byte) (*keyIndex, []error, error) {
	if err := parseObject(data, nil); err != nil {
		return nil, nil, fmt.Errorf("jwks: key set: %w", err)
	}
	var doc map[string]json.RawMessage // exact member names, unlike struct fields
	var keys []map[string]json.RawMessage
	if json.Unmarshal(data, &doc) != nil || json.Unmarshal(doc["keys"], &keys) != nil || keys == nil {
		return nil, nil, errors.New("jwks: key set has no keys array")
	}
	if len(keys) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("jwks: key set has %d keys, more than %d", len(keys), maxJWKSKeys)
	}
	ix, skipped := &keyIndex{byKID: map[string]*publicKey{}, byX5T: map[string]*publicKey{}}, []error(nil)
	dupKID, dupX5T := map[string]bool{}, map[string]bool{}
	for i, m := range keys {
		k, err := parseJWK(m)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("jwks: key %d: %w", i, err))
			continue
		}
		addUnique(ix.byKID, dupKID, k.kid, k)
		addUnique(ix.byX5T, dupX5T, k.x5t, k)
	}
	if len(ix.byKID)+len(ix.byX5T) == 0 {
		return nil, skipped, fmt.Errorf("jwks: key set has no usable RS256 key (%d skipped)", len(skipped))
	}
	return ix, skipped, nil
}

// addUnique adds k under id unless id is empty; an id seen twice is removed
// and never added again.
func addUnique(m map[string]*publicKey, dup map[string]bool, id string, k *publicKey) {
	switch {
	case id == "" || dup[id]:
	case m[id] != nil:
		delete(m, id)
		dup[id] = true
	default:
		m[id] = k
	}
}

// parseJWK checks that one JWK (RFC 7517 §4, RFC 7518 §6.3) is an RS256
// signing key. alg may be absent, as on Entra's keys. n and e must be
// unpadded base64url (RFC 7518 §6.3.1), not the standard base64 of some 2014
// documents. The x5c chain is not read: n and e are the key.
func parseJWK(m map[string]json.RawMessage) (*publicKey, error) {
	var f struct{ kty, use, alg, kid, x5t, n, e, issuer string }
	for _, x := range []struct {
		name string
		dst  *string
	}{{"kty", &f.kty}, {"use", &f.use}, {"alg", &f.alg}, {"kid", &f.kid}, {"x5t", &f.x5t}, {"n", &f.n}, {"e", &f.e}, {"issuer", &f.issuer}} {
		if raw, ok := m[x.name]; ok && json.Unmarshal(raw, x.dst) != nil {
			return nil, fmt.Errorf("%s is not a string", x.name)
		}
	}
	switch {
	case f.kty != "RSA":
		return nil, fmt.Errorf("kty %q is not RSA", f.kty)
	case f.use != "" && f.use != "sig":
		return nil, fmt.Errorf("use %q is not sig", f.use)
	case f.alg != "" && f.alg != "RS256":
		return nil, fmt.Errorf("alg %q is not RS256", f.alg)
	case f.kid == "" && f.x5t == "":
		return nil, errors.New("no kid or x5t")
	}
	if raw, ok := m["key_ops"]; ok {
		var ops []string
		if err := json.Unmarshal(raw, &ops); err != nil || !slices.Contains(ops, "verify") {
			return nil, errors.New("key_ops does not allow verify")
		}
	}
	nb, err := base64.RawURLEncoding.Strict().DecodeString(f.n)
	if err != nil || len(nb) == 0 {
		return nil, errors.New("n is not unpadded base64url")
	}
	eb, err := base64.RawURLEncoding.Strict().DecodeString(f.e)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("e is not a base64url integer of at most 4 bytes")
	}
	n, e := new(big.Int).SetBytes(nb), new(big.Int).SetBytes(eb).Uint64()
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("modulus of %d bits is outside %d..%d", bits, minRSABits, maxRSABits)
	}
	if e < 65537 || e > math.MaxInt32 || e%2 == 0 {
		return nil, fmt.Errorf("public exponent %d is not an odd number from 65537 to 2^31-1", e)
	}
	return &publicKey{kid: f.kid, x5t: f.x5t, issuer: f.issuer, pub: &rsa.PublicKey{N: n, E: int(e)}}, nil
}
