package main

import (
	"cmp"
	"container/list"
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
)

// Limits of token verification, in bytes unless stated.
const (
	maxTokenBytes  = 16 << 10     // a compact JWS longer than this is refused unread
	maxKeyIDLen    = 256          // longest kid or x5t accepted in a token header
	tokenCacheSize = 10000        // verified access tokens kept (LRU)
	maxNumericDate = 253402300799 // latest exp, nbf or iat: 9999-12-31T23:59:59Z, in seconds since the epoch
)

// verifyOptions are the settings of the resource-server half (provider,
// key set, verifier). The service fills them from its environment (env.go);
// a program that takes this half fills them itself. Read-only once passed in.
type verifyOptions struct {
	AuthorityHost     string           // base URL, such as https://login.microsoftonline.com (see discoveryURL)
	TenantID          string           // tenant GUID, or "organizations" or "common" for a multi-tenant API
	AllowedTenants    []string         // lowercase tenant GUIDs a multi-tenant API accepts
	AnyTenant         bool             // a multi-tenant API accepts every tenant
	ClientID          string           // application (client) id: the audience of ID tokens
	CustomSigningKeys bool             // key set read with ?appid=ClientID (for apps with claims-mapping policies)
	Audiences         []string         // accepted access token audiences, compared exactly
	AcceptV1Tokens    bool             // admits access tokens of the v1 issuer (V1Issuer)
	V1Issuer          string           // the cloud's v1 issuer template; "" is v1IssuerTemplate (the public cloud's)
	Leeway            time.Duration    // clock skew allowed on exp, nbf and iat, both ways
	Now               func() time.Time // clock of time checks and backoffs; nil means time.Now
	Client            *http.Client     // for discovery and keys: with a Timeout, following no redirects
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
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observe == nil {
		o.Observe = func(string, error) {}
	}
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
	errUnknownKID      = &verifyError{"jwks: unknown signing key", "unknown signing key"}
	errBadSignature    = &verifyError{"jwks: bad signature", "bad signature"}
	errBadIssuer       = &verifyError{"jwks: wrong issuer", "wrong issuer"}
	errKeyIssuer       = &verifyError{"jwks: signing key belongs to another issuer", "the signing key belongs to another issuer"}
	errBadAudience     = &verifyError{"jwks: wrong audience", "wrong audience"}
	errTokenExpired    = &verifyError{"jwks: token expired", "the token expired"}
	errNotYetValid     = &verifyError{"jwks: token not yet valid", "the token is not valid yet (nbf)"}
	errIssuedInFuture  = &verifyError{"jwks: token issued in the future", "the token was issued in the future (iat)"}
	errTenantForbidden = &verifyError{"jwks: tenant not allowed", "the tenant is not allowed"}
	errNoPermissions   = &verifyError{"jwks: token has neither scp nor roles", "the token has neither scp nor roles"}
)

// jws is a parsed compact JWS whose signature is not yet checked.
type jws struct {
	alg, kid, x5t, typ string
	signingInput       []byte // ASCII "header.payload", exactly as received
	signature          []byte // decoded third segment
	claims             claims
}

// parseTokenInto splits and decodes a compact JWS (RFC 7515 §7.1) and its
// claims, refusing before any cryptography: more than maxTokenBytes;
// anything but three segments of canonical unpadded base64url; a header or
// payload that is not a JSON object, holds duplicate member names, or nests
// deeper than maxJSONDepth; and what parseHeader refuses. Claims are
// type-checked (parseClaims) but not yet validated. The token is copied and
// decoded into *scratch (grown when too small): signingInput and signature
// alias it until it is reused; header values and claims do not. Errors wrap
// errMalformedToken, errUnsupportedAlg, errBadHeader or errNoKeyID.
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
	enc := base64.RawURLEncoding.Strict()
	need := len(raw) + enc.DecodedLen(len(h)) + enc.DecodedLen(len(p)) + enc.DecodedLen(len(sg))
	if cap(*scratch) < need {
		*scratch = make([]byte, need)
	}
	buf := (*scratch)[:need]
	src := buf[:copy(buf, raw):len(raw)]
	buf = buf[len(raw):]
	hEnd := len(h) + 1 + len(p)
	var seg [3][]byte // header, payload, signature
	for i, s := range [3][]byte{src[:len(h)], src[len(h)+1 : hEnd], src[hEnd+1:]} {
		n, err := enc.Decode(buf, s)
		if err != nil {
			return nil, fmt.Errorf("%w: segment is not canonical base64url", errMalformedToken)
		}
		seg[i], buf = buf[:n:n], buf[n:]
	}
	t := &jws{signingInput: src[:hEnd], signature: seg[2]}
	if err := t.parseHeader(seg[0]); err != nil {
		return nil, err
	}
	if err := parseClaims(seg[1], &t.claims); err != nil {
		return nil, err
	}
	return t, nil
}

// isBase64URLByte reports whether b is in the base64url alphabet (RFC 4648 §5).
func isBase64URLByte(b byte) bool {
	return 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}

// parseHeader reads the JOSE header (RFC 7515 §4) and refuses an alg other
// than exactly "RS256" (so none, HS256, PS256, RS512 and case variants); a
// crit member (RFC 7515 §4.1.11: we understand no extension); a typ other
// than JWT or at+jwt, with or without "application/" (RFC 9068 §2.1); a kid
// or x5t longer than maxKeyIDLen; and neither kid nor x5t. The jku, x5u, jwk
// and x5c members are never used: keys come only from our key set.
func (t *jws) parseHeader(data []byte) error {
	d := decoder{data: data, text: string(data)}
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
// (RFC 7519 §4.1; Microsoft identity platform token claims reference). A
// *claims returned by the verifier may be shared between requests (see
// tokenCache): treat it, and its slices, as read-only.
type claims struct {
	Issuer            string    // iss
	Subject           string    // sub
	Audience          []string  // aud, a string or an array in the token
	Expiry            time.Time // exp, zero when absent (then refused)
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
	AuthContexts      []string  // acrs: Conditional Access authentication context ids (c1…c99) satisfied
	AccountType       string    // acct (optional claim): "0" a member of the tenant, "1" a guest
	IdentityProvider  string    // idp: who authenticated the user, when not the issuer (guests)
}

// parseClaims decodes a JWT claims set (RFC 7519 §4) into c. Registered and
// Entra claims must have their documented JSON types: strings; aud a string
// or an array of strings; roles an array of strings; exp, nbf and iat
// NumericDates (decodeNumericDate). Other claims are ignored. Errors wrap
// errMalformedToken.
func parseClaims(data []byte, c *claims) error {
	r := claimReader{claims: c, d: decoder{data: data, text: string(data)}}
	if err := parseObject(data, r.read); err != nil {
		return malformed("payload", err)
	}
	if !r.hasScp {
		r.scp = r.scope // RFC 9068 §2.2.3, used only when Entra's scp is absent
	}
	c.Scopes = splitScope(r.scp)
	c.AuthorizedParty = cmp.Or(c.AuthorizedParty, r.appid)
	c.PreferredUsername = cmp.Or(c.PreferredUsername, r.upn, r.uniqueName)
	return nil
}

// claimReader reads claim set members into claims, and keeps aside the v1
// and RFC 9068 claims that stand in for others when those are absent.
type claimReader struct {
	*claims
	d                                  decoder
	scp, scope, upn, uniqueName, appid string
	hasScp                             bool
}

func (r *claimReader) read(m member) (err error) {
	c, d := r.claims, r.d
	switch string(m.key) {
	case "iss":
		c.Issuer, err = d.str(m)
	case "sub":
		c.Subject, err = d.str(m)
	case "aud":
		c.Audience, err = d.strs(m, true)
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
		c.AuthorizedParty, err = d.str(m)
		c.AZP = c.AuthorizedParty
	case "appid":
		r.appid, err = d.str(m)
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
		c.Roles, err = d.strs(m, false)
	case "acrs":
		c.AuthContexts, err = d.strs(m, false)
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

// splitScope splits a scope string on single spaces (%x20) and drops empty
// items (RFC 6749 §3.3: scope-token *( SP scope-token )). Tabs, no-break
// spaces and other white space stay inside a scope, which then matches none.
func splitScope(s string) []string {
	return slices.DeleteFunc(strings.Split(s, " "), func(item string) bool { return item == "" })
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

var errNotString, errNotStrings = errors.New("not a string"), errors.New("not an array of strings")

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
	err := walk(d.data, m.off, func(item member) error {
		s, err := d.str(item)
		out = append(out, s)
		return err
	})
	if err != nil {
		return nil, errNotStrings
	}
	return out, nil
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
// RFC 8017 §8.2.2) of signingInput, the ASCII "header.payload" of a compact
// JWS, under pub. The signature must be exactly as long as the modulus. It
// applies no key policy (size, exponent): parseJWKS does.
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

// verifier checks Entra RS256 JWTs against the key set and the discovery
// issuer, with opts.Leeway on the time claims (verify lists the checks in
// their order). Verified access tokens are cached (tokenCache) so a repeated
// token skips RSA. Safe for concurrent use.
//
// It does not check: azp/appid of access tokens (any client of our API may
// call it; verifyIDToken in auth.go checks an ID token's azp), acr/amr, the
// at_hash/c_hash of hybrid flows, token revocation (Entra access tokens are
// not revocable before exp), or the x5c chain of keys.
type verifier struct {
	opts  verifyOptions
	p     *provider
	ks    *keySet
	cache *tokenCache
	bufs  sync.Pool // of *[]byte: scratch space to hash and decode tokens in
}

func newVerifier(opts verifyOptions, p *provider, ks *keySet) *verifier {
	return &verifier{opts: opts.withDefaults(), p: p, ks: ks, cache: newTokenCache(tokenCacheSize),
		bufs: sync.Pool{New: func() any { return new([]byte) }}}
}

// verifyAccessToken verifies a bearer access token: every check of verify,
// an audience in opts.Audiences, and scp, scope or roles present (a token
// with none is unconsented or meant for someone else, Microsoft.Identity.Web
// IDW10201). A token verified before comes from the cache (tokenCache).
// Errors wrap the sentinels, errIDPUnavailable, or ctx's error.
func (v *verifier) verifyAccessToken(ctx context.Context, raw string) (*claims, error) {
	bp := v.bufs.Get().(*[]byte) // hashing a copy allocates nothing, unlike []byte(raw)
	*bp = append((*bp)[:0], raw...)
	sum := sha256.Sum256(*bp)
	v.bufs.Put(bp)
	now := v.opts.Now()
	if c := v.cache.get(sum, now, v.opts.Leeway, v.ks); c != nil {
		v.opts.Observe("token_cached", nil)
		return c, nil
	}
	t, k, err := v.checkAccessToken(ctx, raw, now)
	if v.opts.Observe("token", err); err != nil {
		return nil, err
	}
	v.cache.put(sum, &t.claims, k)
	return &t.claims, nil
}

// checkAccessToken is verifyAccessToken without the cache.
func (v *verifier) checkAccessToken(ctx context.Context, raw string, now time.Time) (*jws, *publicKey, error) {
	t, k, err := v.verify(ctx, raw, now, v.opts.AcceptV1Tokens)
	switch {
	case err != nil:
		return nil, nil, err
	case !slices.ContainsFunc(t.claims.Audience, func(aud string) bool { return slices.Contains(v.opts.Audiences, aud) }):
		return nil, nil, fmt.Errorf("%w: %q", errBadAudience, truncate(strings.Join(t.claims.Audience, " "), 64))
	case len(t.claims.Scopes) == 0 && len(t.claims.Roles) == 0:
		return nil, nil, errNoPermissions
	}
	return t, k, nil
}

// verify does the checks both token kinds share, in this order: parse,
// refusing any alg but RS256 (parseTokenInto); find the key by kid or x5t;
// check the signature; then the tenant, the issuer and the signing key's
// issuer (checkIssuer; the v1 issuer only when v1), and exp, nbf and iat
// (checkTime). The signature comes first so that the claims of an
// unauthenticated token are never evaluated or reported. go-oidc checks the
// claims first to spare key refetches for tokens that fail anyway; here an
// unknown kid refetches at most once per minKeyRefetch (keySet.key), which
// removes that reason.
func (v *verifier) verify(ctx context.Context, raw string, now time.Time, v1 bool) (*jws, *publicKey, error) {
	scratch := v.bufs.Get().(*[]byte)
	defer v.bufs.Put(scratch)
	t, err := parseTokenInto(raw, scratch)
	if err != nil {
		return nil, nil, err
	}
	k, err := v.ks.key(ctx, t.kid, t.x5t)
	if err != nil {
		return nil, nil, err
	}
	err = verifyRS256(k.pub, t.signingInput, t.signature)
	t.signingInput, t.signature = nil, nil // they alias scratch, which the next request reuses
	if err != nil {
		return nil, nil, err
	}
	md, err := v.p.metadata(ctx)
	if err == nil {
		err = cmp.Or(v.checkIssuer(md, &t.claims, k, v1), checkTime(&t.claims, now, v.opts.Leeway))
	}
	if err != nil {
		return nil, nil, err
	}
	return t, k, nil
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
	isV1 := v1 && issuerMatches(cmp.Or(v.opts.V1Issuer, v1IssuerTemplate), tid, c.Issuer)
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

// tokenCache keeps verified access tokens by the SHA-256 of the compact
// token, the least recently used dropped beyond max. An entry is used only
// while its token is inside exp/nbf (with the skew) and the key that
// verified it is current (keySet.current). Safe for concurrent use.
type tokenCache struct {
	max int

	mu      sync.Mutex // guards lru and entries
	lru     *list.List // of *cacheEntry, most recently used at the front
	entries map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	sum [sha256.Size]byte
	c   *claims
	k   *publicKey // the key that verified the token
}

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
	if checkTime(e.c, now, skew) != nil || !ks.current(e.k) {
		tc.lru.Remove(el)
		delete(tc.entries, sum)
		return nil
	}
	tc.lru.MoveToFront(el)
	return e.c
}

func (tc *tokenCache) put(sum [sha256.Size]byte, c *claims, k *publicKey) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if el := tc.entries[sum]; el != nil {
		tc.lru.MoveToFront(el)
		return
	}
	tc.entries[sum] = tc.lru.PushFront(&cacheEntry{sum: sum, c: c, k: k})
	for tc.lru.Len() > tc.max {
		old := tc.lru.Back()
		tc.lru.Remove(old)
		delete(tc.entries, old.Value.(*cacheEntry).sum)
	}
}
