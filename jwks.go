package main

import (
	"bytes"
	"container/list"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Limits and intervals of the identity provider client and the token
// verifier. Durations are time.Duration; sizes are bytes.
const (
	maxTokenBytes     = 16 << 10         // a compact JWS longer than this is refused unread (issue 3)
	maxIDPResponse    = 1 << 20          // discovery document and key set are read up to 1 MiB
	maxIDPErrorBody   = 64 << 10         // of a failed discovery or JWKS answer, read for its error
	maxIDPErrorText   = 200              // of the provider's error text kept for the log, in bytes
	idpFetchTimeout   = 10 * time.Second // one discovery or JWKS request, whatever the caller's deadline
	keyRefreshEvery   = 24 * time.Hour   // scheduled JWKS refresh
	minKeyRefetch     = 5 * time.Minute  // at most one unknown-kid refetch per this interval
	maxRetryBackoff   = time.Minute      // cap of the retry backoff after failed fetches
	maxJSONDepth      = 32               // nesting limit of JOSE headers, claim sets and key sets
	minRSABits        = 2048             // RFC 7518 §3.3: keys of 2048 bits or more
	maxRSABits        = 8192             // bounds the cost of one verification
	maxKeyIDLen       = 256              // longest kid or x5t accepted in a token header
	tokenCacheSize    = 10000            // verified access tokens kept (LRU)
	maxJWKSKeys       = 100              // keys in one key set (Entra publishes about ten)
	tenantPlaceholder = "{tenantid}"     // Entra's multi-tenant issuer template
)

// Sentinel errors of token verification (RFC 7515, RFC 7519, RFC 8725). They
// are wrapped with detail; match them with errors.Is. requireAuth turns each
// into an RFC 6750 error_description.
var (
	errMalformedToken  = errors.New("jwks: malformed token")
	errUnsupportedAlg  = errors.New("jwks: unsupported alg (only RS256 is accepted)")
	errBadHeader       = errors.New("jwks: unacceptable token header")
	errNoKeyID         = errors.New("jwks: token header has no kid or x5t")
	errUnknownKID      = errors.New("jwks: unknown signing key")
	errBadSignature    = errors.New("jwks: bad signature")
	errBadIssuer       = errors.New("jwks: wrong issuer")
	errKeyIssuer       = errors.New("jwks: signing key belongs to another issuer")
	errBadAudience     = errors.New("jwks: wrong audience")
	errTokenExpired    = errors.New("jwks: token expired")
	errNotYetValid     = errors.New("jwks: token not yet valid")
	errIssuedInFuture  = errors.New("jwks: token issued in the future")
	errTenantForbidden = errors.New("jwks: tenant not allowed")
	errNoPermissions   = errors.New("jwks: token has neither scp nor roles")
	errBadNonce        = errors.New("jwks: nonce mismatch")
	errBadAZP          = errors.New("jwks: azp is not the client id")
)

// errIDPUnavailable: the discovery document or the key set could not be
// loaded and nothing was loaded before, so no token can be checked.
// requireAuth answers 503 with Retry-After on it.
var errIDPUnavailable = errors.New("jwks: identity provider metadata unavailable")

// ---------------------------------------------------------------------------
// Discovery (OpenID Connect Discovery 1.0)

// providerMetadata is the part of the OpenID Connect discovery document
// (OpenID Connect Discovery 1.0 §3) the service uses.
type providerMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
}

// provider fetches the discovery document of cfg.discoveryURL() on first use
// and caches it for the life of the process. A failed fetch is retried on a
// later call, but not before a backoff (1 s doubling to maxRetryBackoff) has
// passed; concurrent callers share one fetch. Safe for concurrent use.
type provider struct {
	cfg    config
	client *http.Client
	logger *slog.Logger
	now    func() time.Time // clock of the backoff; tests may replace it

	mu       sync.Mutex // guards the fields below
	md       providerMetadata
	loaded   bool
	failures int       // consecutive failed fetches
	lastTry  time.Time // start of the last fetch
	lastErr  error
	inflight *fetchCall
}

// fetchCall is one fetch in progress; done is closed when err is set.
type fetchCall struct {
	done chan struct{}
	err  error
}

// newProvider makes a provider for cfg. It does no network I/O.
func newProvider(cfg config, client *http.Client, logger *slog.Logger) *provider {
	return &provider{cfg: cfg, client: client, logger: logger, now: time.Now}
}

// metadata returns the discovery document, fetching it on first use. It
// returns an error wrapping errIDPUnavailable while the document cannot be
// loaded (including during the backoff after a failure), and ctx's error if
// ctx ends first.
func (p *provider) metadata(ctx context.Context) (providerMetadata, error) {
	p.mu.Lock()
	if p.loaded {
		md := p.md
		p.mu.Unlock()
		return md, nil
	}
	call := p.inflight
	if call == nil {
		if wait := backoff(p.failures) - p.now().Sub(p.lastTry); p.failures > 0 && wait > 0 {
			err := p.lastErr
			p.mu.Unlock()
			return providerMetadata{}, fmt.Errorf("%w: retry in %v: %w", errIDPUnavailable, wait.Round(time.Second), err)
		}
		call = &fetchCall{done: make(chan struct{})}
		p.inflight, p.lastTry = call, p.now()
		go p.fetch(context.WithoutCancel(ctx), call)
	}
	p.mu.Unlock()

	select {
	case <-call.done:
	case <-ctx.Done():
		return providerMetadata{}, ctx.Err()
	}
	if call.err != nil {
		return providerMetadata{}, call.err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.md, nil
}

// loadedOK reports whether the discovery document is loaded.
func (p *provider) loadedOK() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loaded
}

// fetch loads the discovery document and records the outcome in p.
func (p *provider) fetch(ctx context.Context, call *fetchCall) {
	ctx, cancel := context.WithTimeout(ctx, idpFetchTimeout)
	defer cancel()
	var md providerMetadata
	body, err := getJSON(ctx, p.client, p.cfg.discoveryURL())
	if err == nil {
		err = json.Unmarshal(body, &md)
	}
	if err == nil {
		err = p.validate(md)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight = nil
	if err != nil {
		p.failures++
		p.lastErr = err
		call.err = fmt.Errorf("%w: discovery: %w", errIDPUnavailable, err)
		p.logger.Warn("jwks: discovery document not loaded", "url", p.cfg.discoveryURL(), "failures", p.failures, "err", err)
	} else {
		p.md, p.loaded, p.failures, p.lastErr = md, true, 0, nil
		p.logger.Info("jwks: discovery document loaded", "issuer", md.Issuer)
	}
	close(call.done)
}

// validate checks that a discovery document names the endpoints the service
// needs as absolute https URLs (http only on a loopback host, for tests and
// -dev; RFC 6749 §3.1, §3.2, OpenID Connect Discovery 1.0 §3), an optional
// end_session_endpoint likewise, and an issuer for the configured tenant:
// holding the tenant GUID, or Entra's {tenantid} placeholder for
// organizations/common (OpenID Connect Discovery 1.0 §4.3, adapted to
// Entra's multi-tenant issuer).
func (p *provider) validate(md providerMetadata) error {
	for _, u := range []struct{ name, value string }{
		{"issuer", md.Issuer},
		{"authorization_endpoint", md.AuthorizationEndpoint},
		{"token_endpoint", md.TokenEndpoint},
		{"jwks_uri", md.JWKSURI},
		{"end_session_endpoint", md.EndSessionEndpoint},
	} {
		if u.value == "" && u.name == "end_session_endpoint" {
			continue // optional (OpenID Connect RP-Initiated Logout 1.0 §2.1)
		}
		if !isSecureURL(u.value) {
			return fmt.Errorf("jwks: discovery %s is not an absolute https URL (http only on a loopback host)", u.name)
		}
	}
	want := p.cfg.TenantID
	if p.cfg.isMultiTenant() {
		want = tenantPlaceholder
	}
	if !strings.Contains(md.Issuer, want) {
		return fmt.Errorf("jwks: discovery issuer %q is not for tenant %s", md.Issuer, p.cfg.TenantID)
	}
	return nil
}

// backoff is the wait after n consecutive failures: 0, then 1 s doubling up
// to maxRetryBackoff.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := time.Second << min(n-1, 16)
	return min(d, maxRetryBackoff)
}

// getJSON GETs u and returns its body: at most maxIDPResponse bytes, status
// 200, and a JSON media type (application/json or any +json type).
func getJSON(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// An error in the body is best effort: a read error leaves it out.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxIDPErrorBody))
		return nil, fmt.Errorf("jwks: %s answered %s%s", req.URL.Redacted(), resp.Status, providerErrorText(body))
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil, fmt.Errorf("jwks: %s answered content type %q, not JSON", req.URL.Redacted(), truncate(resp.Header.Get("Content-Type"), 64))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIDPResponse+1))
	if err != nil {
		return nil, fmt.Errorf("jwks: reading %s: %w", req.URL.Redacted(), err)
	}
	if len(body) > maxIDPResponse {
		return nil, fmt.Errorf("jwks: %s answered more than %d bytes", req.URL.Redacted(), maxIDPResponse)
	}
	return body, nil
}

// providerErrorText returns ": <error>: <error_description>" when body is a
// JSON object with the error members of RFC 6749 §5.2, as Entra answers a
// discovery request for an unknown tenant (invalid_tenant, "AADSTS90002:
// Tenant '…' not found"), with a hint for the tenant errors; else "". The
// text is for the log: it is cut to maxIDPErrorText bytes, and every byte
// outside printable ASCII becomes a space or "?", so it cannot forge log
// lines. A discovery or JWKS request carries no secret, so the provider's
// text cannot echo one.
func providerErrorText(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		ErrorCodes  []int  `json:"error_codes"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	text := sanitizeIDPText(e.Error)
	if e.Description != "" {
		text += ": " + sanitizeIDPText(e.Description)
	}
	if slices.Contains(e.ErrorCodes, 90002) || slices.Contains(e.ErrorCodes, 900023) || strings.Contains(e.Description, "AADSTS90002") {
		text += " (check AZURE_TENANT_ID: the tenant GUID, organizations or common)"
	}
	return ": " + text
}

// sanitizeIDPText makes text from the identity provider safe to log: CR, LF
// and tab become spaces, other bytes outside printable ASCII become "?", and
// the result is cut to maxIDPErrorText bytes.
func sanitizeIDPText(s string) string {
	b := []byte(s[:min(len(s), maxIDPErrorText)])
	for i, c := range b {
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			b[i] = ' '
		case c < 0x20 || c > 0x7e:
			b[i] = '?'
		}
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// ---------------------------------------------------------------------------
// Key set (RFC 7517)

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
func (ix *keyIndex) lookup(id string, isX5T bool) *publicKey {
	if ix == nil {
		return nil
	}
	if isX5T {
		if k := ix.byX5T[id]; k != nil {
			return k
		}
	}
	return ix.byKID[id]
}

// keySet is the cached JWKS of the provider's jwks_uri (RFC 7517 §5). Keys
// are loaded by run (at once, then every keyRefreshEvery) and on demand when
// a token names an unknown key, at most once per minKeyRefetch; concurrent
// demands share one fetch. A failed fetch keeps the keys already loaded.
// Safe for concurrent use; lookups take no lock.
type keySet struct {
	cfg    config
	p      *provider
	client *http.Client
	logger *slog.Logger

	now          func() time.Time // clock of the rate limits; tests may replace it
	minRefetch   time.Duration    // minKeyRefetch; tests may change it
	refreshEvery time.Duration    // keyRefreshEvery; tests may change it

	keys atomic.Pointer[keyIndex] // nil until the first successful load

	mu        sync.Mutex // guards the fields below
	lastFetch time.Time  // start of the last fetch, successful or not
	lastMiss  time.Time  // start of the last fetch an unknown key asked for
	failures  int        // consecutive failed fetches
	inflight  *fetchCall
}

// newKeySet makes a key set that loads keys from p's jwks_uri. It does no
// network I/O; run or the first token does.
func newKeySet(cfg config, p *provider, client *http.Client, logger *slog.Logger) *keySet {
	return &keySet{cfg: cfg, p: p, client: client, logger: logger,
		now: time.Now, minRefetch: minKeyRefetch, refreshEvery: keyRefreshEvery}
}

// run loads the key set at once and then every refreshEvery until ctx is
// done. After a failed load it retries with backoff (1 s doubling to
// maxRetryBackoff), keeping the keys it has.
func (ks *keySet) run(ctx context.Context) {
	for {
		wait := ks.refreshEvery
		if err := ks.refresh(ctx); err != nil {
			ks.mu.Lock()
			wait = backoff(ks.failures)
			ks.mu.Unlock()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh fetches the key set now, or waits for the fetch in progress. It
// returns the fetch's error, or ctx's error if ctx ends first.
func (ks *keySet) refresh(ctx context.Context) error {
	ks.mu.Lock()
	call := ks.startFetchLocked(ctx)
	ks.mu.Unlock()
	return call.wait(ctx)
}

// startFetchLocked returns the fetch in progress or starts one. ks.mu must be
// held. The fetch runs detached from ctx's cancellation, so one impatient
// caller cannot fail the others sharing it.
func (ks *keySet) startFetchLocked(ctx context.Context) *fetchCall {
	if ks.inflight != nil {
		return ks.inflight
	}
	call := &fetchCall{done: make(chan struct{})}
	ks.inflight, ks.lastFetch = call, ks.now()
	go ks.fetch(context.WithoutCancel(ctx), call)
	return call
}

// wait blocks until the fetch is done or ctx ends.
func (c *fetchCall) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetch loads the key set and records the outcome in ks.
func (ks *keySet) fetch(ctx context.Context, call *fetchCall) {
	ctx, cancel := context.WithTimeout(ctx, idpFetchTimeout)
	defer cancel()
	ix, skipped, err := ks.load(ctx)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.inflight = nil
	if err != nil {
		ks.failures++
		call.err = err
		level := slog.LevelWarn
		if errors.Is(err, errIDPUnavailable) {
			// No discovery document: provider.fetch has already logged
			// this attempt at WARN, and one line per failure is enough.
			level = slog.LevelDebug
		}
		ks.logger.Log(ctx, level, "jwks: key set not loaded; keeping the previous keys", "failures", ks.failures, "err", err)
	} else {
		ks.failures = 0
		ks.keys.Store(ix)
		ks.logger.Info("jwks: key set loaded", "keys", len(ix.byKID), "skipped", len(skipped))
		for _, s := range skipped {
			ks.logger.Debug("jwks: key skipped", "reason", s)
		}
	}
	close(call.done)
}

// load fetches and parses the key set named by the discovery document.
func (ks *keySet) load(ctx context.Context) (*keyIndex, []error, error) {
	md, err := ks.p.metadata(ctx)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(md.JWKSURI)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: jwks_uri: %w", err)
	}
	if ks.cfg.CustomSigningKeys {
		q := u.Query()
		q.Set("appid", ks.cfg.ClientID)
		u.RawQuery = q.Encode()
	}
	body, err := getJSON(ctx, ks.client, u.String())
	if err != nil {
		return nil, nil, err
	}
	return parseJWKS(body)
}

// key returns the key a token header names (by kid, or by x5t when isX5T).
// On a miss it refetches the key set, sharing a fetch in progress, but starts
// a new fetch only when minRefetch has passed since the last fetch a miss
// started (or, while no key was ever loaded, when the failure backoff has
// passed since the last fetch). It returns
// errUnknownKID when the key is still unknown, and errIDPUnavailable when no
// key set was ever loaded.
func (ks *keySet) key(ctx context.Context, id string, isX5T bool) (*publicKey, error) {
	if k := ks.keys.Load().lookup(id, isX5T); k != nil {
		return k, nil
	}
	ks.mu.Lock()
	call := ks.inflight
	if call == nil {
		now := ks.now()
		loaded := ks.keys.Load() != nil
		// Only fetches that tokens asked for count against minRefetch:
		// a rotation just after run's scheduled load is still picked up
		// at once.
		if (loaded && now.Sub(ks.lastMiss) >= ks.minRefetch) || (!loaded && now.Sub(ks.lastFetch) >= backoff(ks.failures)) {
			call = ks.startFetchLocked(ctx)
			ks.lastMiss = now
		}
	}
	ks.mu.Unlock()
	if call != nil {
		if err := call.wait(ctx); err != nil && ks.keys.Load() == nil {
			return nil, fmt.Errorf("%w: %w", errIDPUnavailable, err)
		}
	}
	ix := ks.keys.Load()
	if ix == nil {
		return nil, errIDPUnavailable
	}
	if k := ix.lookup(id, isX5T); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %q", errUnknownKID, id)
}

// current reports whether k is still the key the key set holds under id; a
// cached token verified with k is dropped once it is not.
func (ks *keySet) current(k *publicKey, id string, isX5T bool) bool {
	return ks.keys.Load().lookup(id, isX5T) == k
}

// loaded reports whether at least one key is loaded.
func (ks *keySet) loaded() bool {
	ix := ks.keys.Load()
	return ix != nil && len(ix.byKID)+len(ix.byX5T) > 0
}

// parseJWKS parses a JWK Set document (RFC 7517 §5) and keeps the keys fit
// to verify RS256 signatures: kty "RSA" (RFC 7518 §6.3), use absent or "sig",
// alg absent (Entra keys carry none) or "RS256", key_ops absent or holding
// "verify", n and e in unpadded base64url (RFC 7518 §6.3.1; the standard
// base64 some 2014 documents used is refused), a modulus of minRSABits to
// maxRSABits bits, an odd public exponent from 65537 to 2^31-1, and a kid or
// x5t to find it by. It returns the usable keys, one error per key skipped
// (with the reason), and an error when the document itself is not a key set
// or no key is usable. A kid that two keys share is dropped: the token could
// not say which one it means. The x5c chain is not read: n and e are the key.
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
	ix := &keyIndex{byKID: map[string]*publicKey{}, byX5T: map[string]*publicKey{}}
	var skipped []error
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

// parseJWK checks one JWK (RFC 7517 §4) against parseJWKS's rules.
func parseJWK(m map[string]json.RawMessage) (*publicKey, error) {
	str := func(name string) (string, error) {
		raw, ok := m[name]
		if !ok {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%s is not a string", name)
		}
		return s, nil
	}
	var f struct{ kty, use, alg, kid, x5t, n, e, issuer string }
	for _, x := range []struct {
		name string
		dst  *string
	}{{"kty", &f.kty}, {"use", &f.use}, {"alg", &f.alg}, {"kid", &f.kid}, {"x5t", &f.x5t}, {"n", &f.n}, {"e", &f.e}, {"issuer", &f.issuer}} {
		s, err := str(x.name)
		if err != nil {
			return nil, err
		}
		*x.dst = s
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
		if err := json.Unmarshal(raw, &ops); err != nil || !contains(ops, "verify") {
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
	n := new(big.Int).SetBytes(nb)
	var e uint64
	for _, b := range eb {
		e = e<<8 | uint64(b)
	}
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("modulus of %d bits is outside %d..%d", bits, minRSABits, maxRSABits)
	}
	if e < 65537 || e > math.MaxInt32 || e%2 == 0 {
		return nil, fmt.Errorf("public exponent %d is not an odd number from 65537 to 2^31-1", e)
	}
	return &publicKey{kid: f.kid, x5t: f.x5t, issuer: f.issuer, pub: &rsa.PublicKey{N: n, E: int(e)}}, nil
}

// contains reports whether list holds s exactly.
func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Token parsing (RFC 7515 §7.1, RFC 7519 §7.2, RFC 8725 §3)

// jws is a parsed compact JWS whose signature is not yet checked.
// signingInput and signature may alias a scratch buffer (parseTokenInto).
type jws struct {
	alg, kid, x5t, typ string
	signingInput       []byte // ASCII "header.payload", exactly as received
	signature          []byte // decoded third segment
	claims             claims
}

// parseToken splits and decodes a compact JWS and its claims, refusing
// before any cryptography: more than maxTokenBytes; anything but three
// segments of canonical unpadded base64url; a header or payload that is not
// a JSON object, holds duplicate member names, or nests deeper than
// maxJSONDepth; an alg other than exactly "RS256" (so none, HS256, PS256,
// RS512 and case variants); a crit member (RFC 7515 §4.1.11: we understand
// no extension); a typ other than JWT or at+jwt (RFC 9068 §2.1); and a header
// with neither kid nor x5t. The jku, x5u, jwk and x5c header members are
// never used: keys come only from our key set. Claims are type-checked
// (see parseClaims) but not yet validated. Errors wrap errMalformedToken,
// errUnsupportedAlg, errBadHeader or errNoKeyID.
func parseToken(raw string) (*jws, error) {
	return parseTokenInto(raw, new([]byte))
}

// parseTokenInto is parseToken using *scratch (grown when too small) for
// the copy of the token and the decoded segments: the returned
// signingInput and signature alias it, and are valid only until *scratch
// is reused. Claims and header values do not alias it.
func parseTokenInto(raw string, scratch *[]byte) (*jws, error) {
	if len(raw) > maxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", errMalformedToken, maxTokenBytes)
	}
	// Strict base64url decoding refuses every byte outside the alphabet,
	// padding included, except CR and LF, which it skips: refuse those here.
	if strings.IndexByte(raw, '\r') >= 0 || strings.IndexByte(raw, '\n') >= 0 {
		return nil, fmt.Errorf("%w: line break inside", errMalformedToken)
	}
	h, p, ok1 := strings.Cut(raw, ".")
	p, sg, ok2 := strings.Cut(p, ".")
	if !ok1 || !ok2 || strings.IndexByte(sg, '.') >= 0 {
		return nil, fmt.Errorf("%w: not three segments", errMalformedToken)
	}
	// One buffer holds a copy of the token (the signing input, and the
	// decoder's source) followed by room for the three decoded segments.
	enc := base64.RawURLEncoding.Strict()
	need := len(raw) + enc.DecodedLen(len(h)) + enc.DecodedLen(len(p)) + enc.DecodedLen(len(sg))
	if cap(*scratch) < need {
		*scratch = make([]byte, need)
	}
	buf := (*scratch)[:need]
	src := buf[:copy(buf, raw):len(raw)]
	buf = buf[len(raw):]
	hEnd := len(h) + 1 + len(p)
	header, buf, err1 := decodeBase64Segment(enc, buf, src[:len(h)])
	payload, buf, err2 := decodeBase64Segment(enc, buf, src[len(h)+1:hEnd])
	sig, _, err3 := decodeBase64Segment(enc, buf, src[hEnd+1:])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, fmt.Errorf("%w: segment is not canonical base64url", errMalformedToken)
	}
	t := &jws{signingInput: src[:hEnd], signature: sig}
	if err := t.parseHeader(header); err != nil {
		return nil, err
	}
	if err := parseClaims(payload, &t.claims); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeBase64Segment decodes one base64url segment into the front of buf and
// returns it and the rest of buf.
func decodeBase64Segment(enc *base64.Encoding, buf, seg []byte) (out, rest []byte, err error) {
	n, err := enc.Decode(buf, seg)
	return buf[:n:n], buf[n:], err
}

// isBase64URLByte reports whether b is in the base64url alphabet (RFC 4648 §5).
func isBase64URLByte(b byte) bool {
	return 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}

// parseHeader reads and checks the JOSE header (RFC 7515 §4).
func (t *jws) parseHeader(data []byte) error {
	d := newDecoder(data)
	err := parseObject(data, func(m member) (err error) {
		switch string(m.key) {
		case "alg":
			t.alg, err = d.str(m)
		case "kid":
			t.kid, err = d.str(m)
		case "x5t":
			t.x5t, err = d.str(m)
		case "typ":
			t.typ, err = d.str(m)
		case "crit":
			return fmt.Errorf("%w: crit is not supported", errBadHeader)
		}
		if err != nil {
			return fmt.Errorf("%w: header %s: %w", errMalformedToken, m.key, err)
		}
		return nil
	})
	if errors.Is(err, errMalformedToken) || errors.Is(err, errBadHeader) {
		return err
	} else if err != nil {
		return fmt.Errorf("%w: header: %w", errMalformedToken, err)
	}
	if t.alg != "RS256" {
		return fmt.Errorf("%w: %q", errUnsupportedAlg, truncate(t.alg, 64))
	}
	if t.typ != "" {
		typ := t.typ
		if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
			typ = typ[len("application/"):]
		}
		if !strings.EqualFold(typ, "JWT") && !strings.EqualFold(typ, "at+jwt") {
			return fmt.Errorf("%w: typ %q", errBadHeader, truncate(t.typ, 64))
		}
	}
	if len(t.kid) > maxKeyIDLen || len(t.x5t) > maxKeyIDLen {
		return fmt.Errorf("%w: kid or x5t longer than %d bytes", errBadHeader, maxKeyIDLen)
	}
	if t.kid == "" && t.x5t == "" {
		return errNoKeyID
	}
	return nil
}

// keyID is the id a token names its key by: kid, or x5t when kid is absent
// (isX5T true).
func (t *jws) keyID() (id string, isX5T bool) {
	if t.kid != "" {
		return t.kid, false
	}
	return t.x5t, true
}

// claims are the verified claims of an Entra access or ID token
// (RFC 7519 §4.1; Microsoft identity platform token claims reference). A
// *claims returned by the verifier may be shared between requests (see
// tokenCache): treat it, and its slices, as read-only.
type claims struct {
	Issuer            string    // iss
	Subject           string    // sub
	Audience          []string  // aud, a string or an array in the token
	Expiry            time.Time // exp
	NotBefore         time.Time // nbf, zero when absent
	IssuedAt          time.Time // iat, zero when absent
	TenantID          string    // tid
	ObjectID          string    // oid
	AuthorizedParty   string    // azp (v2) or appid (v1)
	AZP               string    // azp alone, "" when absent (OpenID Connect Core §2)
	Name              string    // name
	PreferredUsername string    // preferred_username (v2) or upn/unique_name (v1)
	Nonce             string    // nonce (ID tokens)
	Version           string    // ver: "1.0" or "2.0"
	Scopes            []string  // scp split on spaces (or RFC 9068 scope)
	Roles             []string  // roles

	hasExp bool // exp was present
}

// parseClaims decodes a JWT claims set (RFC 7519 §4) into c. The payload must
// be a JSON object without duplicate member names. Registered and Entra
// claims must have their documented JSON types: strings; aud a string or an
// array of strings; roles an array of strings; exp, nbf and iat NumericDates
// (RFC 7519 §2: JSON numbers, integer or decimal, not negative, at most year
// 9999). Other claims are ignored. Errors wrap errMalformedToken.
func parseClaims(data []byte, c *claims) error {
	d := newDecoder(data)
	var scp, scope, upn, uniqueName, appid string
	hasScp := false
	err := parseObject(data, func(m member) (err error) {
		switch string(m.key) {
		case "iss":
			c.Issuer, err = d.str(m)
		case "sub":
			c.Subject, err = d.str(m)
		case "aud":
			c.Audience, err = d.strs(m, true)
		case "exp":
			c.Expiry, err = decodeNumericDate(m.val)
			c.hasExp = err == nil
		case "nbf":
			c.NotBefore, err = decodeNumericDate(m.val)
		case "iat":
			c.IssuedAt, err = decodeNumericDate(m.val)
		case "tid":
			c.TenantID, err = d.str(m)
		case "oid":
			c.ObjectID, err = d.str(m)
		case "azp":
			c.AuthorizedParty, err = d.str(m)
			c.AZP = c.AuthorizedParty
		case "appid":
			appid, err = d.str(m)
		case "name":
			c.Name, err = d.str(m)
		case "preferred_username":
			c.PreferredUsername, err = d.str(m)
		case "upn":
			upn, err = d.str(m)
		case "unique_name":
			uniqueName, err = d.str(m)
		case "nonce":
			c.Nonce, err = d.str(m)
		case "ver":
			c.Version, err = d.str(m)
		case "scp":
			scp, err = d.str(m)
			hasScp = true
		case "scope":
			scope, err = d.str(m)
		case "roles":
			c.Roles, err = d.strs(m, false)
		}
		if err != nil {
			return fmt.Errorf("%w: claim %s: %w", errMalformedToken, m.key, err)
		}
		return nil
	})
	if errors.Is(err, errMalformedToken) {
		return err
	} else if err != nil {
		return fmt.Errorf("%w: payload: %w", errMalformedToken, err)
	}
	if !hasScp {
		scp = scope // RFC 9068 §2.2.3, used only when Entra's scp is absent
	}
	c.Scopes = splitScope(scp)
	c.AuthorizedParty = firstNonEmpty(c.AuthorizedParty, appid)
	c.PreferredUsername = firstNonEmpty(c.PreferredUsername, upn, uniqueName)
	return nil
}

// splitScope splits a scope string on single spaces (%x20) and drops empty
// items (RFC 6749 §3.3: scope-token *( SP scope-token )). Tabs, no-break
// spaces and other white space stay inside a scope, which then matches none.
func splitScope(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, " ") {
		if item != "" {
			out = append(out, item)
		}
	}
	return out
}

// firstNonEmpty returns the first non-empty string (like cmp.Or).
func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// decoder turns the values of parsed members into Go strings. Every string
// without escapes is a substring of one copy of the JSON text, so a claim
// set costs one allocation for all its strings.
type decoder struct {
	data []byte // the JSON text parseObject checked
	text string // the same, as a string
}

// newDecoder makes a decoder for the JSON text data.
func newDecoder(data []byte) decoder { return decoder{data: data, text: string(data)} }

// str decodes a member whose value must be a JSON string.
func (d decoder) str(m member) (string, error) {
	return d.strAt(m.off, m.val)
}

// strAt decodes the JSON string val found at offset off of d.data.
func (d decoder) strAt(off int, val []byte) (string, error) {
	if len(val) < 2 || val[0] != '"' {
		return "", errNotString
	}
	if bytes.IndexByte(val, '\\') >= 0 { // escapes: rare in tokens
		var s string
		err := json.Unmarshal(val, &s)
		return s, err
	}
	return d.text[off+1 : off+len(val)-1], nil
}

// Type errors of claim values.
var (
	errNotString  = errors.New("not a string")
	errNotStrings = errors.New("not an array of strings")
)

// strs decodes a member whose value must be an array of strings, or, when
// single is true, also a lone string (RFC 7519 §4.1.3 aud).
func (d decoder) strs(m member, single bool) ([]string, error) {
	if single && m.val[0] == '"' {
		s, err := d.str(m)
		return []string{s}, err
	}
	if m.val[0] != '[' {
		return nil, errNotStrings
	}
	out := make([]string, 0, 4)
	sc := scanner{data: d.data[:m.off+len(m.val)], pos: m.off + 1}
	sc.skipSpace()
	if sc.peek() == ']' {
		return out, nil
	}
	for {
		sc.skipSpace()
		start := sc.pos
		if sc.peek() != '"' {
			return nil, errNotStrings
		}
		if _, err := sc.str(); err != nil {
			return nil, errNotStrings
		}
		s, err := d.strAt(start, d.data[start:sc.pos])
		if err != nil {
			return nil, errNotStrings
		}
		out = append(out, s)
		sc.skipSpace()
		switch sc.peek() {
		case ',':
			sc.pos++
		case ']':
			return out, nil
		default:
			return nil, errNotStrings
		}
	}
}

// maxNumericDate is 9999-12-31T23:59:59Z in seconds since the epoch; a
// NumericDate above it is refused as an overflow.
const maxNumericDate = 253402300799

// decodeNumericDate decodes a NumericDate (RFC 7519 §2): seconds since the
// epoch as a JSON number, integer or decimal. Strings, null, negative values
// and values beyond maxNumericDate are errors.
func decodeNumericDate(val []byte) (time.Time, error) {
	if len(val) == 0 || !(val[0] >= '0' && val[0] <= '9') {
		return time.Time{}, errors.New("not a non-negative number")
	}
	var n int64
	for i, c := range val {
		if c < '0' || c > '9' || i >= 15 {
			n = -1
			break
		}
		n = n*10 + int64(c-'0')
	}
	if n >= 0 { // an integer: the usual case, parsed without allocating
		if n > maxNumericDate {
			return time.Time{}, errors.New("out of range")
		}
		return time.Unix(n, 0), nil
	}
	f, err := strconv.ParseFloat(string(val), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f > maxNumericDate {
		return time.Time{}, errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// ---------------------------------------------------------------------------
// A strict JSON object scanner (RFC 8259), used because encoding/json keeps
// the last of duplicate member names and matches field names without regard
// to case: both let two parsers read one token differently (RFC 8725 §3.6
// asks that such input be refused).

// member is one member of a JSON object: its name, unescaped, its value as
// raw JSON, and the value's offset in the text parsed.
type member struct {
	key []byte
	val []byte
	off int
}

// parseObject checks that data is exactly one JSON object (RFC 8259), valid
// UTF-8, nested at most maxJSONDepth deep, with no duplicate member names in
// any object, and calls each (unless nil) on its top-level members in order.
// It stops at, and returns, the first error of each.
func parseObject(data []byte, each func(member) error) error {
	if !utf8.Valid(data) {
		return errors.New("not UTF-8")
	}
	s := &scanner{data: data}
	s.skipSpace()
	if s.peek() != '{' {
		return errors.New("not a JSON object")
	}
	if err := s.object(1, each); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// scanner walks JSON text; pos is the next byte to read.
type scanner struct {
	data []byte
	pos  int
}

// errJSONSyntax is any violation of the JSON grammar (RFC 8259 §2).
var errJSONSyntax = errors.New("invalid JSON")

// peek returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// skipSpace skips JSON whitespace (RFC 8259 §2).
func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value skips one JSON value nested at depth.
func (s *scanner) value(depth int) error {
	s.skipSpace()
	switch c := s.peek(); {
	case c == '{':
		return s.object(depth+1, nil)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return errJSONSyntax
}

// object reads the object at s.pos, checking its member names for
// duplicates, and calls each (unless nil) on every member.
func (s *scanner) object(depth int, each func(member) error) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deep")
	}
	var keyBuf [32][]byte // names seen, while few
	keys := keyBuf[:0]
	var many map[string]bool // names seen, once there are many
	s.pos++                  // {
	s.skipSpace()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.peek() != '"' {
			return errJSONSyntax
		}
		start := s.pos
		escaped, err := s.str()
		if err != nil {
			return err
		}
		key := s.data[start+1 : s.pos-1]
		if escaped {
			var k string
			if err := json.Unmarshal(s.data[start:s.pos], &k); err != nil {
				return errJSONSyntax
			}
			key = []byte(k)
		}
		if dup := seenKey(keys, many, key); dup {
			return fmt.Errorf("duplicate member %q", truncate(string(key), 64))
		}
		switch {
		case many != nil:
			many[string(key)] = true
		case len(keys) < cap(keys):
			keys = append(keys, key)
		default: // many names: a map keeps a 16 KiB object linear, not quadratic
			many = make(map[string]bool, 2*len(keys))
			for _, k := range keys {
				many[string(k)] = true
			}
			many[string(key)] = true
		}
		s.skipSpace()
		if s.peek() != ':' {
			return errJSONSyntax
		}
		s.pos++
		s.skipSpace()
		vstart := s.pos
		if err := s.value(depth); err != nil {
			return err
		}
		if each != nil {
			if err := each(member{key: key, val: s.data[vstart:s.pos], off: vstart}); err != nil {
				return err
			}
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// seenKey reports whether key is among keys or many.
func seenKey(keys [][]byte, many map[string]bool, key []byte) bool {
	if many != nil {
		return many[string(key)]
	}
	for _, k := range keys {
		if string(k) == string(key) {
			return true
		}
	}
	return false
}

// array skips the array at s.pos.
func (s *scanner) array(depth int) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deep")
	}
	s.pos++ // [
	s.skipSpace()
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// str skips the string at s.pos and reports whether it holds an escape.
func (s *scanner) str() (escaped bool, err error) {
	d := s.data
	for i := s.pos + 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			s.pos = i + 1
			return escaped, nil
		case c < 0x20:
			return false, errJSONSyntax
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				return false, errJSONSyntax
			}
			i++
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d) || !isHex(d[i+1]) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) {
					return false, errJSONSyntax
				}
				i += 4
			default:
				return false, errJSONSyntax
			}
		}
	}
	return false, errJSONSyntax
}

// isHex reports whether c is a hexadecimal digit.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number skips a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return errJSONSyntax
	}
	if s.peek() == '.' {
		s.pos++
		if s.digits() == 0 {
			return errJSONSyntax
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if s.digits() == 0 {
			return errJSONSyntax
		}
	}
	return nil
}

// digits skips decimal digits and returns how many it skipped.
func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

// literal skips lit (true, false or null), which must come next.
func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return errJSONSyntax
	}
	s.pos += len(lit)
	return nil
}

// ---------------------------------------------------------------------------
// Signature (RFC 7515 §5.2, RFC 7518 §3.3)

// verifyRS256 checks an RSASSA-PKCS1-v1_5 SHA-256 signature (RFC 7518 §3.3,
// RFC 8017 §8.2.2) of signingInput, the ASCII "header.payload" of a compact
// JWS, under pub. The signature must be exactly as long as the modulus. It
// applies no key policy (size, exponent): parseJWKS does. Returns
// errBadSignature.
func verifyRS256(pub *rsa.PublicKey, signingInput []byte, sig []byte) error {
	if len(sig) != pub.Size() {
		return fmt.Errorf("%w: %d bytes for a %d-byte modulus", errBadSignature, len(sig), pub.Size())
	}
	sum := sha256.Sum256(signingInput)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return errBadSignature
	}
	return nil
}

// ---------------------------------------------------------------------------
// Verification (RFC 7519 §7.2, OpenID Connect Core §3.1.3.7, RFC 9068 §4)

// verifier checks Entra RS256 JWTs: the signature against the cached key set,
// then the issuer, the signing key's issuer, the audience, the tenant and the
// time claims, with cfg.ClockSkew of leeway. Verified access tokens are
// cached (tokenCache) so a repeated token skips RSA. Safe for concurrent use.
//
// It does not check: azp/appid of access tokens (any client of our API may
// call it; verifyIDToken checks an ID token's azp), acr/amr,
// the at_hash/c_hash of hybrid flows, token revocation (Entra access tokens
// are not revocable before exp), or the x5c chain of keys.
type verifier struct {
	cfg   config
	p     *provider
	ks    *keySet
	now   func() time.Time
	cache *tokenCache
	bufs  sync.Pool // of *[]byte: scratch space to hash and decode tokens in, reused across requests
}

// newVerifier makes a verifier. now is the clock of the time checks.
func newVerifier(cfg config, p *provider, ks *keySet, now func() time.Time) *verifier {
	return &verifier{cfg: cfg, p: p, ks: ks, now: now, cache: newTokenCache(tokenCacheSize)}
}

// verifyAccessToken verifies a bearer access token: every check of verify,
// an audience in cfg.Audiences, and scp, scope or roles present (a token
// with none is unconsented or meant for someone else, Microsoft.Identity.Web
// IDW10201). A token verified before comes from the cache, still subject to
// its exp and nbf and to its key being in the key set. Errors wrap the
// sentinels above, errIDPUnavailable, or ctx's error.
func (v *verifier) verifyAccessToken(ctx context.Context, raw string) (*claims, error) {
	if len(raw) > maxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", errMalformedToken, maxTokenBytes)
	}
	sum := v.tokenHash(raw)
	now := v.now()
	if c := v.cache.get(sum, now, v.cfg.ClockSkew, v.ks); c != nil {
		return c, nil
	}
	t, k, err := v.checkAccessToken(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	id, isX5T := t.keyID()
	v.cache.put(sum, &t.claims, k, id, isX5T)
	return &t.claims, nil
}

// tokenHash is the SHA-256 of raw, the key of the verified-token cache.
func (v *verifier) tokenHash(raw string) [sha256.Size]byte {
	bp := v.scratch()
	b := append((*bp)[:0], raw...)
	sum := sha256.Sum256(b)
	*bp = b
	v.bufs.Put(bp)
	return sum
}

// scratch returns a buffer from v.bufs; give it back with v.bufs.Put.
func (v *verifier) scratch() *[]byte {
	if bp, ok := v.bufs.Get().(*[]byte); ok {
		return bp
	}
	return new([]byte)
}

// checkAccessToken is verifyAccessToken without the cache: the whole job of
// one request.
func (v *verifier) checkAccessToken(ctx context.Context, raw string, now time.Time) (*jws, *publicKey, error) {
	t, k, err := v.verify(ctx, raw, now)
	if err != nil {
		return nil, nil, err
	}
	c := &t.claims
	if !containsAny(c.Audience, v.cfg.Audiences) {
		return nil, nil, fmt.Errorf("%w: %q", errBadAudience, truncate(strings.Join(c.Audience, " "), 64))
	}
	if len(c.Scopes) == 0 && len(c.Roles) == 0 {
		return nil, nil, errNoPermissions
	}
	return t, k, nil
}

// verifyIDToken verifies an OpenID Connect ID token (OpenID Connect Core
// §3.1.3.7): every check of verify, then iss exactly the discovery issuer
// (step 2; idTokenIssuer), the client id among the audiences (step 3), azp
// present when there are several audiences (step 4) and equal to the client
// id whenever present (step 5; errBadAZP), and the nonce equal to nonce
// (constant-time). An empty nonce skips the nonce check: only for ID tokens
// from a refresh (OpenID Connect Core §12.2), which carry none of ours. ID
// tokens need no scp or roles and are not cached.
func (v *verifier) verifyIDToken(ctx context.Context, raw, nonce string) (*claims, error) {
	t, _, err := v.verify(ctx, raw, v.now())
	if err != nil {
		return nil, err
	}
	c := &t.claims
	if err := v.idTokenIssuer(ctx, c); err != nil {
		return nil, err
	}
	if !contains(c.Audience, v.cfg.ClientID) {
		return nil, fmt.Errorf("%w: %q", errBadAudience, truncate(strings.Join(c.Audience, " "), 64))
	}
	if len(c.Audience) > 1 && c.AZP == "" {
		return nil, fmt.Errorf("%w: %d audiences and no azp", errBadAZP, len(c.Audience))
	}
	if c.AZP != "" && c.AZP != v.cfg.ClientID {
		return nil, fmt.Errorf("%w: %q", errBadAZP, truncate(c.AZP, 64))
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(nonce)) != 1 {
		return nil, errBadNonce
	}
	return c, nil
}

// idTokenIssuer checks the iss of an ID token (OpenID Connect Core §3.1.3.7
// step 2): it must be exactly the discovery document's issuer, with
// {tenantid} replaced by the token's tid for organizations and common
// (Microsoft identity platform ID token reference: iss). verify's issuer
// rule also admits the v1 issuer https://sts.windows.net/{tid}/ while
// ACCEPT_V1_TOKENS is on, for access tokens issued to v1 APIs; an ID token
// comes from the v2 endpoint this service signs in with, so a v1 issuer
// there is refused (errBadIssuer). verify has already checked tid. Other
// errors are the metadata's (errIDPUnavailable, wrapped).
func (v *verifier) idTokenIssuer(ctx context.Context, c *claims) error {
	md, err := v.p.metadata(ctx)
	if err != nil {
		return err
	}
	tid := c.TenantID
	if tid == "" && !v.cfg.isMultiTenant() {
		tid = v.cfg.TenantID
	}
	if !issuerMatches(md.Issuer, tid, c.Issuer) {
		return fmt.Errorf("%w: ID token issuer %q is not the discovery issuer", errBadIssuer, truncate(c.Issuer, 64))
	}
	return nil
}

// verify does the checks both token kinds share, in go-oidc's order: parse
// (parseToken), find the key (kid, or x5t), check the signature, then the
// tenant, the issuer, the signing key's issuer and the time claims.
func (v *verifier) verify(ctx context.Context, raw string, now time.Time) (*jws, *publicKey, error) {
	scratch := v.scratch()
	defer v.bufs.Put(scratch)
	t, err := parseTokenInto(raw, scratch)
	if err != nil {
		return nil, nil, err
	}
	id, isX5T := t.keyID()
	k, err := v.ks.key(ctx, id, isX5T)
	if err != nil {
		return nil, nil, err
	}
	err = verifyRS256(k.pub, t.signingInput, t.signature)
	t.signingInput, t.signature = nil, nil // they alias scratch, which the next request reuses
	if err != nil {
		return nil, nil, err
	}
	md, err := v.p.metadata(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := v.checkIssuer(md, &t.claims, k); err != nil {
		return nil, nil, err
	}
	if err := checkTime(&t.claims, now, v.cfg.ClockSkew); err != nil {
		return nil, nil, err
	}
	return t, k, nil
}

// checkIssuer checks tid and iss. For a tenant GUID the token's tid, when
// present, must be that tenant; for organizations/common tid must be a GUID
// in cfg.AllowedTenants (unless cfg.AnyTenant). iss must then equal the
// discovery issuer with {tenantid} replaced by tid (v2 tokens), or, unless
// ACCEPT_V1_TOKENS=false, https://sts.windows.net/{tid}/ (v1 tokens). When
// the signing key has an issuer member (Entra v2 keys do), it must equal iss
// after the same replacement, or, for a v1 token, the v2 issuer of its
// tenant (as Microsoft.IdentityModel's signing-key issuer validation does).
func (v *verifier) checkIssuer(md providerMetadata, c *claims, k *publicKey) error {
	tid := c.TenantID
	if v.cfg.isMultiTenant() {
		if !isGUID(tid) {
			return fmt.Errorf("%w: tid %q is not a tenant GUID", errTenantForbidden, truncate(tid, 64))
		}
		if !v.cfg.AnyTenant && !contains(v.cfg.AllowedTenants, strings.ToLower(tid)) {
			return fmt.Errorf("%w: %q", errTenantForbidden, truncate(tid, 64))
		}
	} else {
		if tid != "" && !strings.EqualFold(tid, v.cfg.TenantID) {
			return fmt.Errorf("%w: %q", errTenantForbidden, truncate(tid, 64))
		}
		if tid == "" {
			tid = v.cfg.TenantID
		}
	}
	isV1 := v.cfg.AcceptV1Tokens && issuerMatches(v1IssuerTemplate, tid, c.Issuer)
	if !isV1 && !issuerMatches(md.Issuer, tid, c.Issuer) {
		return fmt.Errorf("%w: %q", errBadIssuer, truncate(c.Issuer, 64))
	}
	if k.issuer != "" && !issuerMatches(k.issuer, tid, c.Issuer) &&
		!(isV1 && issuerMatches(k.issuer, tid, strings.ReplaceAll(md.Issuer, tenantPlaceholder, tid))) {
		return fmt.Errorf("%w: key issuer %q, token issuer %q", errKeyIssuer, k.issuer, truncate(c.Issuer, 64))
	}
	return nil
}

// v1IssuerTemplate is the issuer of Entra v1 tokens (Microsoft identity
// platform access token reference: iss).
const v1IssuerTemplate = "https://sts.windows.net/" + tenantPlaceholder + "/"

// issuerMatches reports whether iss equals template with {tenantid}
// replaced by tid, exactly. It builds no string for the usual single
// placeholder.
func issuerMatches(template, tid, iss string) bool {
	before, after, found := strings.Cut(template, tenantPlaceholder)
	switch {
	case !found:
		return iss == template
	case strings.Contains(after, tenantPlaceholder):
		return iss == strings.ReplaceAll(template, tenantPlaceholder, tid)
	}
	return len(iss) == len(before)+len(tid)+len(after) &&
		strings.HasPrefix(iss, before) && strings.HasSuffix(iss, after) &&
		iss[len(before):len(before)+len(tid)] == tid
}

// checkTime checks exp (required), nbf and iat (when present) against now
// with skew of leeway both ways (RFC 7519 §4.1.4-6).
func checkTime(c *claims, now time.Time, skew time.Duration) error {
	switch {
	case !c.hasExp:
		return fmt.Errorf("%w: no exp", errMalformedToken)
	case !now.Before(c.Expiry.Add(skew)): // RFC 7519 §4.1.4: now must be before exp (plus leeway)
		return fmt.Errorf("%w: at %s", errTokenExpired, c.Expiry.UTC().Format(time.RFC3339))
	case !c.NotBefore.IsZero() && now.Add(skew).Before(c.NotBefore):
		return fmt.Errorf("%w: until %s", errNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	case !c.IssuedAt.IsZero() && now.Add(skew).Before(c.IssuedAt):
		return fmt.Errorf("%w: at %s", errIssuedInFuture, c.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// containsAny reports whether any of got is exactly one of want.
func containsAny(got, want []string) bool {
	for _, g := range got {
		if contains(want, g) {
			return true
		}
	}
	return false
}

// ready reports nil once the discovery document and at least one key are
// loaded, and an error wrapping errIDPUnavailable naming what is missing.
// It does no I/O.
func (v *verifier) ready() error {
	switch {
	case !v.p.loadedOK():
		return fmt.Errorf("%w: discovery document not loaded", errIDPUnavailable)
	case !v.ks.loaded():
		return fmt.Errorf("%w: no signing key loaded", errIDPUnavailable)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Verified-token cache

// tokenCache keeps verified access tokens by the SHA-256 of the compact
// token, least recently used first out beyond max entries. An entry is used
// only while its token is inside exp/nbf (with the skew) and the key that
// verified it is still in the key set under the same id; otherwise it is
// dropped. Safe for concurrent use.
type tokenCache struct {
	max int

	mu      sync.Mutex // guards lru and entries
	lru     *list.List // of *cacheEntry, most recently used at the front
	entries map[[sha256.Size]byte]*list.Element
}

// cacheEntry is one verified token.
type cacheEntry struct {
	sum   [sha256.Size]byte
	c     *claims
	k     *publicKey
	id    string
	isX5T bool
}

// newTokenCache makes an empty cache of at most max tokens.
func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, lru: list.New(), entries: map[[sha256.Size]byte]*list.Element{}}
}

// get returns the claims cached under sum, or nil.
func (tc *tokenCache) get(sum [sha256.Size]byte, now time.Time, skew time.Duration, ks *keySet) *claims {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	el := tc.entries[sum]
	if el == nil {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if checkTime(e.c, now, skew) != nil || !ks.current(e.k, e.id, e.isX5T) {
		tc.lru.Remove(el)
		delete(tc.entries, sum)
		return nil
	}
	tc.lru.MoveToFront(el)
	return e.c
}

// put caches c, verified with key k found under id.
func (tc *tokenCache) put(sum [sha256.Size]byte, c *claims, k *publicKey, id string, isX5T bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if el := tc.entries[sum]; el != nil {
		tc.lru.MoveToFront(el)
		return
	}
	tc.entries[sum] = tc.lru.PushFront(&cacheEntry{sum: sum, c: c, k: k, id: id, isX5T: isX5T})
	for tc.lru.Len() > tc.max {
		old := tc.lru.Back()
		tc.lru.Remove(old)
		delete(tc.entries, old.Value.(*cacheEntry).sum)
	}
}

// len is the number of cached tokens.
func (tc *tokenCache) len() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.lru.Len()
}
