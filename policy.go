package main

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
)

// Authorization policies beyond the permission requireAuth checks: step-up
// with a Conditional Access authentication context, and refusing guests.
// Each is middleware that reads the claims requireAuth verified
// (principalFrom), so it must be wrapped by requireAuth; addRoutes chains
// them per route.

// chain applies middleware in order: chain(a, b)(h) is a(b(h)), so a runs
// first.
func chain(mws ...func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		for _, mw := range slices.Backward(mws) {
			h = mw(h)
		}
		return h
	}
}

// requireAuthContext is the step-up policy (Microsoft Learn, "Developer
// guide to Conditional Access authentication context"): a request goes
// through when its access token's acrs claim holds id (c1…c99). Otherwise
// it answers 401 with a claims challenge asking for exactly that
// (claimsChallenge): the client signs in again passing those claims (for
// this service's sign-in, /auth/login?claims=…), Entra enforces the
// Conditional Access policy tagged with id, and the new token carries it.
// A token whose acrs holds other ids gets the same answer. An empty id lets
// every request through. authorizeURI is the tenant's authorization
// endpoint, for the challenge's authorization_uri.
//
// App-only tokens cannot carry an authentication context (the developer
// guide's prerequisites), so while id is set they cannot pass.
func requireAuthContext(logger *slog.Logger, id, authorizeURI string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if id == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := principalFrom(r.Context())
			if ok && slices.Contains(c.AuthContexts, id) {
				next.ServeHTTP(w, r)
				return
			}
			if ok {
				logger.InfoContext(r.Context(), "auth: token lacks the authentication context", "need", id, "oid", c.ObjectID, "tid", c.TenantID)
			}
			claimsChallenge(w, authorizeURI, authContextClaims(id),
				"this operation needs authentication context "+id+" (a second step at sign-in): sign in again with the claims of this challenge; "+
					"with this service's sign-in, open /auth/login?claims=<the claims value of this challenge>")
		})
	}
}

// claimsChallenge answers 401 with a claims challenge (Microsoft Learn,
// "Claims challenges, claims requests and client capabilities"):
//
//	WWW-Authenticate: Bearer realm="heroes-auth", error="insufficient_claims",
//	  error_description="…", authorization_uri="…", claims="<base64>"
//
// claimsJSON is the claims request (OpenID Connect Core §5.5) the client
// must pass when it signs in again; it travels in standard base64 with
// padding, as Entra's own challenges do and as MSAL.NET's parser requires.
// The JSON body carries detail and the error code.
func claimsChallenge(w http.ResponseWriter, authorizeURI, claimsJSON, detail string) {
	challenge(w, http.StatusUnauthorized, "insufficient_claims", detail,
		fmt.Sprintf(`, authorization_uri=%q, claims=%q`, authorizeURI, base64.StdEncoding.EncodeToString([]byte(claimsJSON))))
}

// refuseGuests is the guest policy (ALLOW_GUEST_USERS=false): a token of a
// guest (isGuest) is answered 403 with error="insufficient_scope", as
// fastapi-azure-auth refuses guests; other tokens go through. allow lets
// every token through.
func refuseGuests(logger *slog.Logger, allow bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if allow {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, ok := principalFrom(r.Context()); ok && c.Guest {
				logger.InfoContext(r.Context(), "auth: guest refused", "oid", c.ObjectID, "tid", c.TenantID)
				challenge(w, http.StatusForbidden, "insufficient_scope", "guest users are not allowed: sign in with an account of the tenant itself", "")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
