package main

import (
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The dev provider's on-behalf-of grant and a fake Microsoft Graph, so that
// GET /api/me works with -dev on a machine with no tenant: the service
// trades the caller's dev access token at the dev token endpoint, exactly
// as it does at Entra's, and reads /devgraph/v1.0/me with the token it got.

// devGraphPath is the fake Graph's service root under the service, the
// GRAPH_BASE_URL of -dev.
const devGraphPath = "/devgraph"

// Microsoft Graph as the dev provider issues tokens for it: Entra's v1
// Graph tokens have aud https://graph.microsoft.com and the v1 issuer
// (Microsoft Learn, On-Behalf-Of flow: "This access token is a
// v1.0-formatted token for Microsoft Graph").
const (
	devGraphResource = "https://graph.microsoft.com"
	devGraphScope    = "User.Read"
)

// devGraphIssuer is the issuer of the dev provider's Graph tokens.
func devGraphIssuer() string {
	return strings.ReplaceAll(v1IssuerTemplate, tenantPlaceholder, devTenantID)
}

// onBehalfOf answers the on-behalf-of grant (Microsoft Learn, "OAuth 2.0
// On-Behalf-Of flow"; the client has already authenticated): the assertion
// must be a user's access token the dev provider issued to the dev API
// (checkOBOAssertion), and scope Graph's User.Read (as
// https://graph.microsoft.com/User.Read, User.Read or …/.default; openid,
// profile, email and offline_access may come along). Another Graph
// permission is answered as Entra answers one nobody consented to:
// invalid_grant AADSTS65001, suberror consent_required. The token minted is
// shaped like Entra's v1 Graph tokens, for the user of the assertion.
func (d *devIDP) onBehalfOf(base string, f url.Values, now time.Time) (map[string]any, *devOAuthError) {
	switch {
	case f.Get("requested_token_use") == "":
		return nil, devMissing("requested_token_use")
	case f.Get("requested_token_use") != onBehalfOf:
		return nil, &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 9002313,
			desc: "requested_token_use must be on_behalf_of."}
	case f.Get("assertion") == "":
		return nil, devMissing("assertion")
	case f.Get("scope") == "":
		return nil, devMissing("scope")
	}
	user, e := d.checkOBOAssertion(base, f.Get("assertion"), now)
	if e != nil {
		return nil, e
	}
	if e := devCheckGraphScope(f.Get("scope")); e != nil {
		return nil, e
	}
	tok, err := signRS256(d.key, d.kid, map[string]any{
		"aud": devGraphResource, "iss": devGraphIssuer(), "ver": "1.0", "tid": devTenantID,
		"oid": user.ObjectID, "sub": user.Subject, "name": user.Name, "upn": user.PreferredUsername,
		"appid": devClientID, "scp": devGraphScope, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(devTokenTTL).Unix(),
	})
	if err != nil {
		return nil, errDevSigning
	}
	return map[string]any{"token_type": "Bearer", "scope": devGraphResource + "/" + devGraphScope,
		"expires_in": int(devTokenTTL / time.Second), "ext_expires_in": int(devTokenTTL / time.Second), "access_token": tok}, nil
}

// checkOBOAssertion checks the assertion of an on-behalf-of request as
// Entra does and returns its claims: signed by the dev key, the dev
// tenant's v2 issuer, aud the dev client (the app making the request),
// scp present (a user's token: app-only tokens cannot be exchanged), and
// within exp (AADSTS500133, as Entra words it). Any other fault is
// invalid_grant AADSTS50013.
func (d *devIDP) checkOBOAssertion(base, raw string, now time.Time) (*claims, *devOAuthError) {
	bad := func(desc string) *devOAuthError {
		return &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 50013, desc: "Assertion failed: " + desc}
	}
	c := d.ownClaims(raw)
	if c == nil {
		return nil, bad("it is not a token of this identity provider.")
	}
	switch {
	case c.Issuer != devIssuer(base) || c.TenantID != devTenantID:
		return nil, bad("the issuer is not the dev tenant's.")
	case !slices.Contains(c.Audience, devClientID):
		return nil, bad("the audience is not the application making the request; an API may only exchange tokens sent to it.")
	case len(c.Scopes) == 0:
		return nil, bad("app-only tokens cannot be exchanged on behalf of a user.")
	case checkTime(c, now, 0) != nil:
		return nil, &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 500133,
			desc: "Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token."}
	}
	return c, nil
}

// devCheckGraphScope accepts a scope parameter asking for Graph's
// User.Read (compared without regard to case, as Entra compares scopes).
func devCheckGraphScope(scope string) *devOAuthError {
	userRead := false
	for s := range strings.FieldsSeq(scope) {
		switch {
		case slices.Contains([]string{"openid", "profile", "email", "offline_access"}, s):
		case strings.EqualFold(s, devGraphResource+"/"+devGraphScope), strings.EqualFold(s, devGraphScope), s == devGraphResource+"/.default":
			userRead = true
		case strings.HasPrefix(s, devGraphResource+"/") || !strings.Contains(s, "/"):
			return &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 65001, suberror: "consent_required",
				desc: "The user or administrator has not consented to use the application with ID '" + devClientID + "' for " + truncate(s, 100) +
					". Send an interactive authorization request for this user and resource."}
		default:
			return &devOAuthError{status: http.StatusBadRequest, code: "invalid_scope", aadsts: 70011,
				desc: "The dev provider issues on-behalf-of tokens for Microsoft Graph's User.Read only."}
		}
	}
	if !userRead {
		return &devOAuthError{status: http.StatusBadRequest, code: "invalid_scope", aadsts: 70011, desc: "The scope names no Microsoft Graph permission."}
	}
	return nil
}

// handleGraphMe serves GET /devgraph/v1.0/me: Microsoft Graph's "Get user"
// for the signed-in user, faked for -dev. It checks the bearer token as
// Graph does (devGraphToken) and answers the user from its claims: id,
// displayName, mail (null: dev users have none) and userPrincipalName. A
// refused token is a 401 in Graph's shape: a Bearer challenge and
// {"error":{"code":"InvalidAuthenticationToken","message":…}}.
func (d *devIDP) handleGraphMe(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		devPageHeaders(w)
		c, problem := d.devGraphToken(r)
		if problem != "" {
			logger.Info("devgraph: token refused", "problem", problem)
			w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="`+devTenantBase(d.baseURL())+`/oauth2/v2.0/authorize", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]string{"code": "InvalidAuthenticationToken", "message": problem}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.context":    d.baseURL() + devGraphPath + "/v1.0/$metadata#users(id,displayName,mail,userPrincipalName)/$entity",
			"id":                c.ObjectID,
			"displayName":       c.Name,
			"mail":              nil,
			"userPrincipalName": c.PreferredUsername,
		})
	})
}

// devGraphToken checks the bearer token of a fake Graph request: signed by
// the dev key, iss the dev Graph issuer, aud Graph, unexpired, scp holding
// User.Read. It returns the claims, or why the token is refused.
func (d *devIDP) devGraphToken(r *http.Request) (*claims, string) {
	raw, err := bearerToken(r)
	if err != nil {
		return nil, "Access token is empty or malformed."
	}
	c := d.ownClaims(raw)
	if c == nil {
		return nil, "Access token validation failure: not signed by the dev identity provider."
	}
	switch {
	case c.Issuer != devGraphIssuer() || !slices.Contains(c.Audience, devGraphResource):
		return nil, "Access token validation failure: invalid audience or issuer (a token for the heroes API is not one for Microsoft Graph)."
	case checkTime(c, d.now(), 0) != nil:
		return nil, "Lifetime validation failed, the token is expired."
	case !slices.ContainsFunc(c.Scopes, func(s string) bool { return strings.EqualFold(s, devGraphScope) }):
		return nil, "Insufficient privileges: the token lacks User.Read."
	}
	return c, ""
}

// ownClaims parses raw and returns its claims when the dev provider's key
// signed it, else nil. It checks nothing else: the callers check issuer,
// audience, time and scopes as the party they play would.
func (d *devIDP) ownClaims(raw string) *claims {
	t := new(jws)
	if t.screen(raw) != nil || t.parse() != nil || verifyRS256(&d.key.PublicKey, t.sum, t.signature) != nil {
		return nil
	}
	return &t.claims
}

// baseURL is the service's URL that getenv recorded ("" before).
func (d *devIDP) baseURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.base
}
