package main

import (
	"log/slog"
	"net/http"
)

// devIDP is the local identity provider that -dev serves under /devidp/.
type devIDP struct{}

func newDevIDP() (*devIDP, error) { return &devIDP{}, nil }

// getenv returns a getenv that answers the identity settings (client id,
// tenant, secret, authority host, API scope, redirect URI) with the dev
// provider's values for a service reached at base, and everything else from
// getenv.
func (d *devIDP) getenv(getenv func(string) string, base string) func(string) string { return getenv }

// addRoutes registers the provider's endpoints under /devidp/.
func (d *devIDP) addRoutes(mux *http.ServeMux, logger *slog.Logger) {}
