package main

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The on-behalf-of grant (RFC 7523 §2.1 assertion grant, as Microsoft's
// "Microsoft identity platform and OAuth 2.0 On-Behalf-Of flow" profiles
// it): the API trades the access token its caller sent for a token of
// another API (Microsoft Graph), acting as that user.

// OBO grant parameters (Microsoft Learn, On-Behalf-Of flow, "Middle-tier
// access token request").
const (
	jwtBearerGrant   = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	onBehalfOf       = "on_behalf_of" // requested_token_use
	maxOBOCacheItems = 10000          // downstream tokens kept (users × scopes)
)

// oboTokens gets downstream tokens through the on-behalf-of grant, at the
// token endpoint of af's discovery document and with af's client
// credential, whatever kind is configured (tokenRequest: secret,
// certificate, federated token or managed identity). It caches them per
// (tenant, user oid, scope) until tokenRefreshMargin before they expire and
// never past the exp of the caller's token they came from; at most max are
// kept. Tokens are never logged. Two requests of one user that miss the
// cache at once both ask Entra; the later answer is kept. Safe for
// concurrent use.
type oboTokens struct {
	af *authFlow
	// tenant is the configured AZURE_TENANT_ID: for organizations or
	// common, the grant goes to the caller's own tenant's endpoint.
	tenant string
	now    func() time.Time
	max    int

	mu    sync.Mutex // guards cache
	cache map[oboKey]oboToken
}

// oboKey is whose token, for what: tenant, user object id, scope.
type oboKey struct{ tenant, oid, scope string }

// oboToken is a cached downstream token and when it stops being used.
type oboToken struct {
	token string
	until time.Time
}

// newOBOTokens makes an empty cache of at most maxOBOCacheItems tokens, for
// the configured tenant (a GUID, a domain name, organizations or common).
func newOBOTokens(af *authFlow, tenant string) *oboTokens {
	return &oboTokens{af: af, tenant: tenant, now: time.Now, max: maxOBOCacheItems, cache: map[oboKey]oboToken{}}
}

// token returns a token for scope on behalf of the caller whose verified
// access token is assertion, with claims c (a user's: it must have an oid).
// Errors are metadata's and redeem's: errIDPUnavailable, errTokenTimeout,
// errTokenUnreachable, errTokenAnswer, errClientCredential or *tokenError
// (consent missing, a claims challenge, an expired assertion …).
func (o *oboTokens) token(ctx context.Context, assertion string, c *principal, scope string) (string, error) {
	key := oboKey{c.TenantID, c.ObjectID, scope}
	if tok, ok := o.get(key); ok {
		return tok, nil
	}
	md, err := o.af.p.metadata(ctx)
	if err != nil {
		return "", err
	}
	if o.tenant == "organizations" || o.tenant == "common" {
		// The grant belongs at the user's tenant-specific endpoint
		// (Microsoft Learn, On-Behalf-Of flow); requireAuth checked tid.
		md.TokenEndpoint = strings.Replace(md.TokenEndpoint, "/"+o.tenant+"/", "/"+c.TenantID+"/", 1)
	}
	tr, err := o.af.redeem(ctx, md, url.Values{
		"grant_type":          {jwtBearerGrant},
		"assertion":           {assertion},
		"scope":               {scope},
		"requested_token_use": {onBehalfOf},
	})
	if err != nil {
		return "", err
	}
	life, _ := tr.lifetime() // parseTokenAnswer checked it
	until := o.now().Add(time.Duration(life)*time.Second - tokenRefreshMargin)
	if c.Expiry.Before(until) {
		until = c.Expiry // the caller's token is over: so is what came from it
	}
	o.put(key, oboToken{token: tr.AccessToken, until: until})
	return tr.AccessToken, nil
}

// get returns the cached token of key while it is usable; an unusable one
// is dropped.
func (o *oboTokens) get(key oboKey) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.cache[key]
	if ok && o.now().Before(t.until) {
		return t.token, true
	}
	delete(o.cache, key)
	return "", false
}

// put keeps t under key unless it is already unusable. When the cache is
// full, room is made (makeRoom).
func (o *oboTokens) put(key oboKey, t oboToken) {
	now := o.now()
	if !now.Before(t.until) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.cache[key]; !ok && len(o.cache) >= o.max {
		o.makeRoom(now)
	}
	o.cache[key] = t
}

// makeRoom drops the expired tokens, then those expiring soonest until one
// more fits. It is linear in the cache size, and runs only when the cache
// is full. o.mu must be held.
func (o *oboTokens) makeRoom(now time.Time) {
	for k, v := range o.cache {
		if !now.Before(v.until) {
			delete(o.cache, k)
		}
	}
	for len(o.cache) >= o.max {
		var victim oboKey
		var soonest time.Time
		for k, v := range o.cache {
			if soonest.IsZero() || v.until.Before(soonest) {
				victim, soonest = k, v.until
			}
		}
		delete(o.cache, victim)
	}
}

// drop forgets the token of key: Graph refused it (a claims challenge, a
// revoked session), so the next request asks Entra again.
func (o *oboTokens) drop(key oboKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.cache, key)
}
