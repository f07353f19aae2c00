package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"
)

// Limits of token verification, in bytes unless stated.
const (
	maxTokenBytes         = 16 << 10     // a compact JWS longer than this is refused unread
	maxKeyIDLen           = 256          // longest kid or x5t accepted in a token header
	defaultTokenCacheSize = 100_000      // verified access tokens kept (verifyOptions.TokenCacheSize)
	maxNumericDate        = 253402300799 // latest exp, nbf or iat: 9999-12-31T23:59:59Z, in seconds since the epoch
)

// verifyOptions are the settings of the resource-server half (provider,
// key set, verifier). The service fills them from its environment (env.go);
// a program that takes this half fills them itself. Read-only once passed in.
type verifyOptions struct {
	AuthorityHost     string           // base URL (discoveryURL); "" is https://login.microsoftonline.com; a final "/" is dropped
	TenantID          string           // tenant GUID, or "organizations" or "common" for a multi-tenant API
	AllowedTenants    []string         // lowercase tenant GUIDs a multi-tenant API accepts
	AnyTenant         bool             // a multi-tenant API accepts every tenant
	ClientID          string           // application (client) id: the audience of ID tokens
	CustomSigningKeys bool             // key set read with ?appid=ClientID (for apps with claims-mapping policies)
	Audiences         []string         // accepted access token audiences, compared exactly
	AcceptV1Tokens    bool             // admits access tokens of the v1 issuer (V1Issuer)
	V1Issuer          string           // the cloud's v1 issuer template; "" is v1IssuerTemplate (the public cloud's)
	Leeway            time.Duration    // clock skew allowed on exp, nbf and iat, both ways
	TokenCacheSize    int              // verified access tokens kept (tokenCache); 0 means 100,000, 1 none
	Now               func() time.Time // clock of time checks and backoffs; nil means time.Now
	Client            *http.Client     // for discovery and keys; nil: one of idpFetchTimeout following no redirect (getJSON refuses a redirect answer)
	Logger            *slog.Logger     // receives fetch outcomes; nil discards them
	// Observe, when set, hears of each token check ("token_cached"; "token", err) and key fetch ("keys_fetch", err).
	Observe func(event string, err error)
}

func (o verifyOptions) isMultiTenant() bool {
	return o.TenantID == "organizations" || o.TenantID == "common"
}

// discoveryURL is the authority's OpenID Connect discovery document
// (OpenID Connect Discovery 1.0 §4).
func (o verifyOptions) discoveryURL() string {
	return o.AuthorityHost + "/" + o.TenantID + "/v2.0/.well-known/openid-configuration"
}

func (o verifyOptions) withDefaults() verifyOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Logger = cmp.Or(o.Logger, slog.New(slog.DiscardHandler))
	if o.Observe == nil {
		o.Observe = func(string, error) {}
	}
	o.Client = cmp.Or(o.Client, &http.Client{Timeout: idpFetchTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }})
	o.TokenCacheSize = cmp.Or(o.TokenCacheSize, defaultTokenCacheSize)
	o.V1Issuer = cmp.Or(o.V1Issuer, v1IssuerTemplate)
	o.AuthorityHost = cmp.Or(strings.TrimRight(o.AuthorityHost, "/"), "https://login.microsoftonline.com")
	return o
}

// verifyError is a sentinel error of token verification. hint names the
// failed check for requireAuth's error_description (RFC 6750 §3: printable
// ASCII without '"' or '\').
type verifyError struct{ text, hint string }

func (e *verifyError) Error() string { return e.text }

// Sentinel errors of token verification (RFC 7515, RFC 7519, RFC 8725),
// wrapped with detail; match them with errors.Is.
var (
	errMalformedToken  = &verifyError{"jwks: malformed token", "malformed token"}
	errUnsupportedAlg  = &verifyError{"jwks: unsupported alg (only RS256 is accepted)", "unsupported algorithm (only RS256)"}
	errBadHeader       = &verifyError{"jwks: unacceptable token header", "unacceptable token header"}
	errNoKeyID         = &verifyError{"jwks: token header has no kid or x5t", "the token names no signing key (kid)"}
	errUnknownKID      = &verifyError{"jwks: unknown signing key", "unknown signing key: sign in again for a new token"}
	errBadSignature    = &verifyError{"jwks: bad signature", "bad signature"}
	errBadIssuer       = &verifyError{"jwks: wrong issuer", "wrong issuer"}
	errKeyIssuer       = &verifyError{"jwks: signing key belongs to another issuer", "the signing key belongs to another issuer"}
	errBadAudience     = &verifyError{"jwks: wrong audience", "wrong audience"}
	errTokenExpired    = &verifyError{"jwks: token expired", "the token expired"}
	errNotYetValid     = &verifyError{"jwks: token not yet valid", "the token is not valid yet (nbf)"}
	errIssuedInFuture  = &verifyError{"jwks: token issued in the future", "the token was issued in the future (iat)"}
	errTenantForbidden = &verifyError{"jwks: tenant not allowed", "the tenant is not allowed"}
	errNoPermissions   = &verifyError{"jwks: token has neither scp nor roles", "the token has neither scp nor roles"}
	errNoClient        = &verifyError{"jwks: token names no client application", "the token names no client application (azp, appid): not an access token"}
	errNotBase64URL    = fmt.Errorf("%w: segment is not canonical base64url", errMalformedToken)
	// Details of errMalformedToken.
	errNotString, errNotStrings = errors.New("not a string"), errors.New("not an array of strings")
)

// jws is a compact JWS on its way through the checks (screen, then parse).
// buf holds the token, the sum of its signing input, then the decoded
// segments. verifier.authenticate reuses jws values; it copies what it keeps.
type jws struct {
	buf                []byte
	pEnd, hn           int // end of the signing input in buf, length of the decoded header
	alg, kid, x5t, typ string
	sum                [sha256.Size]byte // of the signing input, ASCII "header.payload" as received
	signature          []byte            // decoded third segment
	claims             claims
	lists              [8]string // holds the claims' lists, so a usual token needs no other array
}

// screen starts t over with raw, refusing with errMalformedToken what costs
// next to nothing to find, so garbage is never hashed: more than
// maxTokenBytes, a line break, other than three segments (RFC 7515 §7.1), a
// header that is not canonical base64url of a JSON object. Then it hashes.
func (t *jws) screen(raw string) error {
	h, p, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(p, ".")
	switch {
	case len(raw) > maxTokenBytes:
		return fmt.Errorf("%w: longer than %d bytes", errMalformedToken, maxTokenBytes)
	case strings.IndexByte(raw, '\r') >= 0 || strings.IndexByte(raw, '\n') >= 0: // the only bytes outside the alphabet strict base64url skips
		return fmt.Errorf("%w: line break inside", errMalformedToken)
	case !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0:
		return fmt.Errorf("%w: not three segments", errMalformedToken)
	}
	n, enc := len(raw)+sha256.Size, base64.RawURLEncoding.Strict() // unpadded, without stray bits: one encoding only
	*t = jws{buf: slices.Grow(t.buf[:0], n+enc.DecodedLen(len(raw)))[:n], pEnd: len(h) + 1 + len(p)}
	copy(t.buf, raw)
	hn, err := enc.Decode(t.buf[n:cap(t.buf)], t.buf[:len(h)])
	if t.hn = hn; err != nil {
		return errNotBase64URL
	} else if err := parseObject(t.buf[n:n+hn], nil); err != nil {
		return malformed("header", err)
	}
	t.sum = sha256.Sum256(t.buf[:t.pEnd])
	copy(t.buf[len(raw):], t.sum[:])
	return nil
}

// parse decodes a screened token, refusing before any cryptography what
// parseHeader refuses and a payload or signature not in canonical unpadded
// base64url. It reads the claim set (RFC 7519 §4) into t.claims: a JSON
// object without duplicate names, at most maxJSONDepth deep, its registered
// and Entra claims of their JSON types (strings; aud one or an array; roles
// and acrs arrays of strings; exp, nbf, iat NumericDates: decodeNumericDate),
// others ignored. Header values and claims share one copy of the JSON texts.
func (t *jws) parse() error {
	n, hn, dec, enc := len(t.buf), t.hn, t.buf[len(t.buf):cap(t.buf)], base64.RawURLEncoding.Strict() // the header is decoded already
	pn, err1 := enc.Decode(dec[hn:], t.buf[bytes.IndexByte(t.buf, '.')+1:t.pEnd])
	sn, err2 := enc.Decode(dec[hn+pn:], t.buf[t.pEnd+1:n-sha256.Size])
	if err1 != nil || err2 != nil {
		return errNotBase64URL
	}
	text := string(dec[:hn+pn])
	t.signature = dec[hn+pn : hn+pn+sn]
	if err := t.parseHeader(decoder{dec[:hn], text[:hn]}); err != nil {
		return err
	}
	r := claimReader{claims: &t.claims, d: decoder{dec[hn : hn+pn], text[hn:]}, lists: t.lists[:0]}
	if err := parseObject(r.d.data, r.read); err != nil {
		return malformed("payload", err)
	}
	if !r.hasScp {
		r.scp = r.scope // RFC 9068 §2.2.3, used only when Entra's scp is absent
	}
	start := len(r.lists)
	for item := range strings.SplitSeq(r.scp, " ") { // RFC 6749 §3.3: other white space stays in a scope
		if item != "" {
			r.lists = append(r.lists, item)
		}
	}
	c := &t.claims
	c.Scopes = r.lists[start:len(r.lists):len(r.lists)]
	c.AuthorizedParty = cmp.Or(c.AZP, r.appid, r.clientID)
	c.PreferredUsername = cmp.Or(c.PreferredUsername, r.upn, r.uniqueName)
	return nil
}

// parseHeader reads the JOSE header (RFC 7515 §4) and refuses an alg other
// than exactly "RS256" (so none, HS256, PS256, RS512 and case variants); a
// crit member (RFC 7515 §4.1.11: we understand no extension); a typ other
// than JWT or at+jwt, with or without "application/" (RFC 9068 §2.1); a kid
// or x5t longer than maxKeyIDLen; and neither kid nor x5t. The jku, x5u, jwk
// and x5c members are never used: keys come only from our key set.
func (t *jws) parseHeader(d decoder) error {
	err := parseObject(d.data, func(m member) (err error) {
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
	if err != nil {
		return malformed("header", err)
	}
	typ := t.typ
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	switch {
	case t.alg != "RS256":
		return fmt.Errorf("%w: %q", errUnsupportedAlg, truncate(t.alg, 64))
	case t.typ != "" && !strings.EqualFold(typ, "JWT") && !strings.EqualFold(typ, "at+jwt"):
		return fmt.Errorf("%w: typ %q", errBadHeader, truncate(t.typ, 64))
	case len(t.kid) > maxKeyIDLen || len(t.x5t) > maxKeyIDLen:
		return fmt.Errorf("%w: kid or x5t longer than %d bytes", errBadHeader, maxKeyIDLen)
	case t.kid == "" && t.x5t == "":
		return errNoKeyID
	}
	return nil
}

// malformed returns err, a syntax error in part what of a token, as
// errMalformedToken; nil and verification errors are returned as they are.
func malformed(what string, err error) error {
	if _, ok := errors.AsType[*verifyError](err); err == nil || ok {
		return err
	}
	return fmt.Errorf("%w: %s: %w", errMalformedToken, what, err)
}

// claims are the verified claims of an Entra access or ID token
// (RFC 7519 §4.1; Microsoft identity platform token claims reference).
type claims struct {
	Issuer            string    // iss
	Subject           string    // sub
	Audience          []string  // aud, a string or an array in the token
	Expiry            time.Time // exp, zero when absent (then refused)
	NotBefore         time.Time // nbf, zero when absent
	IssuedAt          time.Time // iat, zero when absent
	TenantID          string    // tid
	ObjectID          string    // oid
	AuthorizedParty   string    // azp (v2), appid (v1) or client_id (RFC 9068 §2.2)
	AZP               string    // azp alone, "" when absent (OpenID Connect Core §2)
	Name              string    // name
	PreferredUsername string    // preferred_username (v2) or upn/unique_name (v1)
	Nonce             string    // nonce (ID tokens)
	Version           string    // ver: "1.0" or "2.0"
	Scopes            []string  // scp split on spaces (or RFC 9068 scope)
	Roles             []string  // roles
	AuthContexts      []string  // acrs: Conditional Access authentication context ids (c1…c99) satisfied
	AccountType       string    // acct (optional claim): "0" a member of the tenant, "1" a guest
	IdentityProvider  string    // idp: who authenticated the user, when not the issuer (guests)
}

// claimReader reads claim set members into claims, and keeps aside the v1
// and RFC 9068 claims that stand in for others when those are absent.
type claimReader struct {
	*claims
	d                                            decoder
	lists                                        []string // the items of aud, roles and scopes, appended
	scp, scope, upn, uniqueName, appid, clientID string
	hasScp                                       bool
}

func (r *claimReader) read(m member) (err error) {
	c, d := r.claims, r.d
	switch string(m.key) {
	case "iss":
		c.Issuer, err = d.str(m)
	case "sub":
		c.Subject, err = d.str(m)
	case "aud":
		c.Audience, err = r.strs(m, true)
	case "exp":
		c.Expiry, err = decodeNumericDate(m.val)
	case "nbf":
		c.NotBefore, err = decodeNumericDate(m.val)
	case "iat":
		c.IssuedAt, err = decodeNumericDate(m.val)
	case "tid":
		c.TenantID, err = d.str(m)
	case "oid":
		c.ObjectID, err = d.str(m)
	case "azp":
		c.AZP, err = d.str(m)
	case "appid":
		r.appid, err = d.str(m)
	case "client_id":
		r.clientID, err = d.str(m)
	case "name":
		c.Name, err = d.str(m)
	case "preferred_username":
		c.PreferredUsername, err = d.str(m)
	case "upn":
		r.upn, err = d.str(m)
	case "unique_name":
		r.uniqueName, err = d.str(m)
	case "nonce":
		c.Nonce, err = d.str(m)
	case "ver":
		c.Version, err = d.str(m)
	case "scp":
		r.scp, err = d.str(m)
		r.hasScp = true
	case "scope":
		r.scope, err = d.str(m)
	case "roles":
		c.Roles, err = r.strs(m, false)
	case "acrs":
		c.AuthContexts, err = r.strs(m, false)
	case "idp":
		c.IdentityProvider, err = d.str(m)
	case "acct": // a number in Entra's tokens; a string is taken too
		if c.AccountType, err = d.str(m); m.val[0] >= '0' && m.val[0] <= '9' {
			c.AccountType, err = string(m.val), nil
		}
	}
	if err != nil {
		return fmt.Errorf("%w: claim %s: %w", errMalformedToken, m.key, err)
	}
	return nil
}

// decoder turns the values of parsed members into Go strings. Every string
// without escapes is a substring of one copy of the JSON text, so a claim
// set costs one allocation for all its strings.
type decoder struct {
	data []byte // the JSON text parseObject checked
	text string // the same, as a string
}

// str decodes a member whose value must be a JSON string.
func (d decoder) str(m member) (string, error) {
	if m.val[0] != '"' {
		return "", errNotString
	}
	if s := d.text[m.off+1 : m.off+len(m.val)-1]; strings.IndexByte(s, '\\') < 0 {
		return s, nil
	}
	return unquote(m.val), nil // escapes: rare in tokens
}

// strs decodes a member whose value must be an array of strings, or, when
// single is true, also a lone string (RFC 7519 §4.1.3 aud), into r.lists.
func (r *claimReader) strs(m member, single bool) ([]string, error) {
	start, err := len(r.lists), errNotStrings
	add := func(m member) error {
		s, err := r.d.str(m)
		r.lists = append(r.lists, s)
		return err
	}
	if single && m.val[0] == '"' {
		err = add(m)
	} else if m.val[0] == '[' {
		err = walk(r.d.data, m.off, add)
	}
	if err != nil {
		return nil, errNotStrings
	}
	return r.lists[start:len(r.lists):len(r.lists)], nil
}

// decodeNumericDate decodes a NumericDate (RFC 7519 §2): seconds since the
// epoch as a JSON number, integer or decimal. Strings, null, negative values
// and values beyond maxNumericDate are errors.
func decodeNumericDate(val []byte) (time.Time, error) {
	if len(val) == 0 || val[0] < '0' || val[0] > '9' {
		return time.Time{}, errors.New("not a non-negative number")
	}
	if n, err := strconv.Atoi(string(val)); err == nil && int64(n) <= maxNumericDate {
		return time.Unix(int64(n), 0), nil // the usual integer, at a third of ParseFloat's cost
	}
	f, err := strconv.ParseFloat(string(val), 64)
	if err != nil || f > maxNumericDate {
		return time.Time{}, errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// verifyRS256 checks an RSASSA-PKCS1-v1_5 SHA-256 signature (RFC 7518 §3.3,
// RFC 8017 §8.2.2) under pub of a JWS whose signing input has the SHA-256
// sum. The signature must be exactly as long as the modulus. It applies no
// key policy (size, exponent): parseJWKS does.
func verifyRS256(pub *rsa.PublicKey, sum [sha256.Size]byte, sig []byte) error {
	if len(sig) != pub.Size() {
		return fmt.Errorf("%w: %d bytes for a %d-byte modulus", errBadSignature, len(sig), pub.Size())
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return errBadSignature
	}
	return nil
}

// verifier checks Entra RS256 JWTs against the key set and the discovery
// issuer, with opts.Leeway on the time claims (verify lists the checks in
// their order). Access tokens it verified are cached (authenticate) so a
// repeated token skips RSA. Safe for concurrent use.
//
// It does not check which client an access token names (any client of our API
// may call it; verifyIDToken in auth.go checks an ID token's azp), acr/amr, the
// at_hash/c_hash of hybrid flows, token revocation (Entra access tokens are
// not revocable before exp), or the x5c chain of keys.
type verifier struct {
	opts  verifyOptions
	p     *provider
	ks    *keySet
	cache *tokenCache
	jwss  sync.Pool // of *jws, reused by authenticate
}

func newVerifier(opts verifyOptions, p *provider, ks *keySet) *verifier {
	opts = opts.withDefaults()
	return &verifier{opts: opts, p: p, ks: ks, cache: &tokenCache{half: opts.TokenCacheSize / 2, skew: opts.Leeway},
		jwss: sync.Pool{New: func() any { return new(jws) }}}
}

// authenticate verifies a bearer access token (verify) and returns its
// principal; one verified before comes from the cache, keyed by SHA-256 over
// its signature segment and the signing input's sum verify uses too.
func (v *verifier) authenticate(ctx context.Context, raw string) (p *principal, err error) {
	t := v.jwss.Get().(*jws)
	defer v.jwss.Put(t)
	now := v.opts.Now()
	if err = t.screen(raw); err == nil {
		key := sha256.Sum256(t.buf[t.pEnd+1:]) // the signature segment, then the sum
		if p = v.cache.get(key, now, v.ks); p != nil {
			v.opts.Observe("token_cached", nil)
			return p, nil
		}
		var k *publicKey
		if k, err = v.verify(ctx, t, now, true); err == nil {
			p = v.cache.put(key, &t.claims, k, now)
		}
	}
	v.opts.Observe("token", err)
	return p, err
}

// verify checks a screened token in this order: parse (only RS256); the key
// by kid or x5t; the signature; tenant, issuer and signing key's issuer
// (checkIssuer; v1 issuers only for access tokens, with opts.AcceptV1Tokens);
// exp, nbf, iat (checkTime); for an access token, an audience in
// opts.Audiences, a client application (azp, appid or client_id: ID tokens
// name none), and scp, scope or roles (none: unconsented or meant for someone
// else, Microsoft.Identity.Web IDW10201). Claims of an unauthenticated token
// are never evaluated or reported (an unknown kid refetches at most once per
// minKeyRefetch: keySet.key). Errors wrap the sentinels, errIDPUnavailable or
// ctx's; k is then nil unless the signature was good.
func (v *verifier) verify(ctx context.Context, t *jws, now time.Time, access bool) (*publicKey, error) {
	if err := t.parse(); err != nil {
		return nil, err
	}
	k, err := v.ks.key(ctx, t.kid, t.x5t)
	if err != nil {
		return nil, err
	}
	if err := verifyRS256(k.pub, t.sum, t.signature); err != nil {
		return nil, err
	}
	md, err := v.p.metadata(ctx)
	if c := &t.claims; err == nil {
		err = cmp.Or(v.checkIssuer(md, c, k, access && v.opts.AcceptV1Tokens), checkTime(c, now, v.opts.Leeway))
		switch {
		case err != nil || !access:
		case !slices.ContainsFunc(c.Audience, func(aud string) bool { return slices.Contains(v.opts.Audiences, aud) }):
			err = fmt.Errorf("%w: %q", errBadAudience, truncate(strings.Join(c.Audience, " "), 64))
		case c.AuthorizedParty == "": // Entra's ID tokens carry neither azp nor appid
			err = errNoClient
		case len(c.Scopes) == 0 && len(c.Roles) == 0:
			err = errNoPermissions
		}
	}
	return k, err
}

// checkIssuer checks tid and iss. tid must be the discovery issuer's tenant
// when present, or for organizations/common a GUID in opts.AllowedTenants (unless
// opts.AnyTenant). iss must equal the discovery issuer with {tenantid}
// replaced by tid, or, when v1, the v1 issuer of tid. A signing key's issuer
// member (Entra v2 keys have one) must equal iss after the same replacement,
// or, for a v1 token, the v2 issuer of its tenant (as Microsoft.IdentityModel's
// signing-key issuer validation does).
func (v *verifier) checkIssuer(md providerMetadata, c *claims, k *publicKey, v1 bool) error {
	tid, multi := c.TenantID, v.opts.isMultiTenant()
	switch {
	case multi && !isGUID(tid):
		return fmt.Errorf("%w: tid %q is not a tenant GUID", errTenantForbidden, truncate(tid, 64))
	case multi && !v.opts.AnyTenant && !slices.Contains(v.opts.AllowedTenants, strings.ToLower(tid)),
		!multi && tid != "" && !strings.EqualFold(tid, md.tenant):
		return fmt.Errorf("%w: %q", errTenantForbidden, truncate(tid, 64))
	case tid == "":
		tid = md.tenant
	}
	isV1 := v1 && issuerMatches(v.opts.V1Issuer, tid, c.Issuer)
	if !isV1 && !issuerMatches(md.Issuer, tid, c.Issuer) {
		return fmt.Errorf("%w: %q", errBadIssuer, truncate(c.Issuer, 64))
	}
	if k.issuer != "" && !issuerMatches(k.issuer, tid, c.Issuer) &&
		!(isV1 && issuerMatches(k.issuer, tid, strings.ReplaceAll(md.Issuer, tenantPlaceholder, tid))) {
		return fmt.Errorf("%w: key issuer %q, token issuer %q", errKeyIssuer, k.issuer, truncate(c.Issuer, 64))
	}
	return nil
}

// v1IssuerTemplate is the issuer of Entra v1 tokens in the public and US
// Government clouds (Microsoft identity platform access token reference: iss).
const v1IssuerTemplate = "https://sts.windows.net/" + tenantPlaceholder + "/"

// issuerMatches reports whether iss equals template with every {tenantid}
// replaced by tid. It builds no string unless the template holds two.
func issuerMatches(template, tid, iss string) bool {
	before, after, found := strings.Cut(template, tenantPlaceholder)
	if !found || strings.Contains(after, tenantPlaceholder) {
		return iss == strings.ReplaceAll(template, tenantPlaceholder, tid)
	}
	mid, ok1 := strings.CutPrefix(iss, before)
	mid, ok2 := strings.CutSuffix(mid, after)
	return ok1 && ok2 && mid == tid
}

// checkTime checks exp (required), nbf and iat (when present) against now
// with skew both ways (RFC 7519 §4.1.4-6).
func checkTime(c *claims, now time.Time, skew time.Duration) error {
	switch {
	case c.Expiry.IsZero():
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

// ready reports nil once the discovery document and at least one key are
// loaded, else an error wrapping errIDPUnavailable; it does no I/O.
func (v *verifier) ready() error {
	switch {
	case v.p.md.Load() == nil:
		return fmt.Errorf("%w: discovery document not loaded", errIDPUnavailable)
	case v.ks.keys.Load() == nil:
		return fmt.Errorf("%w: no signing key loaded", errIDPUnavailable)
	}
	return nil
}

// Permissions: delegated scopes (scp) or application permissions (roles) of
// the API's Entra app registration, compared exactly. Each grants those
// before it in permissions: Admin ⊇ Heroes.Create ⊇ Heroes.Read.
const (
	permRead   = "Heroes.Read"
	permCreate = "Heroes.Create"
	permAdmin  = "Admin"
)

var permissions = []string{permRead, permCreate, permAdmin} // weakest first

// principal is what requireAuth keeps of a verified access token: what the
// request log, handlers, policies and hasPermission need, so that a cached
// token costs little memory (tokenCache). Shared between requests: read only.
type principal struct {
	TenantID        string    // tid
	ObjectID        string    // oid
	AuthorizedParty string    // azp (v2), appid (v1) or client_id: the client application
	AuthContexts    []string  // acrs: the authentication context ids satisfied (c1…c99), nil for none
	Expiry          time.Time // exp
	grants          uint64    // bit i set: scp or roles hold permissions[i]
	Delegated       bool      // scp is present: a signed-in user's token, not an app-only one
	Guest           bool      // isGuest: a guest's token
}

// newPrincipal is c's principal: copies, not parts of the token's JSON
// text, with tid, azp and acrs, the same for many callers, interned.
func newPrincipal(c *claims) principal {
	p := principal{unique.Make(c.TenantID).Value(), strings.Clone(c.ObjectID), unique.Make(c.AuthorizedParty).Value(),
		nil, c.Expiry, 0, len(c.Scopes) > 0, isGuest(c)}
	for _, id := range c.AuthContexts {
		p.AuthContexts = append(p.AuthContexts, unique.Make(id).Value())
	}
	for i, perm := range permissions {
		if slices.Contains(c.Scopes, perm) || slices.Contains(c.Roles, perm) {
			p.grants |= 1 << i
		}
	}
	return p
}

// isGuest reports whether c is a guest's token, as fastapi-azure-auth decides
// ("Optional claims reference" acct, "Access token claims reference" idp): acct
// is 1, or idp is neither iss nor c's own tenant's v1 issuer (app-only tokens').
func isGuest(c *claims) bool {
	idp, own := c.IdentityProvider, c.TenantID != "" && issuerMatches(v1IssuerTemplate, c.TenantID, c.IdentityProvider)
	return c.AccountType == "1" || idp != "" && idp != c.Issuer && !own
}

// hasPermission reports whether p's scopes or roles grant perm: hold it or
// a permission after it in permissions. An unknown perm is granted to nobody.
func hasPermission(p *principal, perm string) bool {
	i := slices.Index(permissions, perm)
	return i >= 0 && p.grants>>i != 0
}

// tokenCache keeps the principals of verified access tokens by key (see
// authenticate) in two generations of at most max/2: when the young one is
// full, the old one is dropped and the young one becomes old, so a token in
// use is verified again once per max/2 new tokens. An entry serves inside
// exp (with the skew), not before it was verified, and while the key that
// verified it is current (keySet.current). Safe for concurrent use.
type tokenCache struct {
	half       int           // most entries of a generation (max/2); 0 keeps none
	skew       time.Duration // served until exp plus skew
	mu         sync.RWMutex  // guards young and old
	young, old map[[sha256.Size]byte]*cacheEntry
}

// cacheEntry is what the cache keeps of a token: 128 bytes, and its key
// and the maps' share: at most 256 bytes (TestTokenCacheMemory).
type cacheEntry struct {
	p    principal
	from int64      // when verified, nanoseconds since the epoch
	k    *publicKey // the key that verified the token
}

// get returns the principal cached under key, or nil.
func (tc *tokenCache) get(key [sha256.Size]byte, now time.Time, ks *keySet) *principal {
	tc.mu.RLock()
	e := cmp.Or(tc.young[key], tc.old[key])
	tc.mu.RUnlock()
	if e == nil || now.UnixNano() < e.from || !now.Before(e.p.Expiry.Add(tc.skew)) || !ks.current(e.k) {
		return nil
	}
	return &e.p
}

// put keeps the principal of c, verified at now with k, and returns it.
func (tc *tokenCache) put(key [sha256.Size]byte, c *claims, k *publicKey, now time.Time) *principal {
	e := &cacheEntry{p: newPrincipal(c), from: now.UnixNano(), k: k}
	if tc.half > 0 {
		tc.mu.Lock()
		if tc.young == nil || len(tc.young) >= tc.half {
			tc.old, tc.young = tc.young, make(map[[sha256.Size]byte]*cacheEntry, tc.half)
		}
		tc.young[key] = e
		tc.mu.Unlock()
	}
	return &e.p
}
