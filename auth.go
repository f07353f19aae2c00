package main

import (
	"context"
	"log/slog"
	"net/http"
)

// authFlow is the client half: login, callback, refresh and logout.
type authFlow struct{}

func newAuthFlow(cfg config, p *provider, v *verifier, client *http.Client, logger *slog.Logger) (*authFlow, error) {
	return &authFlow{}, nil
}

func (af *authFlow) handleLogin() http.Handler    { return http.NotFoundHandler() }
func (af *authFlow) handleCallback() http.Handler { return http.NotFoundHandler() }
func (af *authFlow) handleRefresh() http.Handler  { return http.NotFoundHandler() }
func (af *authFlow) handleLogout() http.Handler   { return http.NotFoundHandler() }

// handleIndex serves GET /: a plain HTML page with a sign-in link.
func handleIndex(cfg config) http.Handler { return http.NotFoundHandler() }

// Permissions, with the hierarchy Admin ⊇ Heroes.Create ⊇ Heroes.Read.
const (
	permRead   = "Heroes.Read"
	permCreate = "Heroes.Create"
	permAdmin  = "Admin"
)

// requireAuth is the bearer middleware (RFC 6750): it verifies the access
// token and checks perm, then puts the claims in the request context.
func requireAuth(logger *slog.Logger, v *verifier, perm string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusUnauthorized, "not implemented")
		})
	}
}

// principalFrom returns the verified claims requireAuth put in ctx.
func principalFrom(ctx context.Context) (*claims, bool) { return nil, false }
