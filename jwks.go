package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// providerMetadata is the part of the OpenID Connect discovery document
// (OpenID Connect Discovery 1.0 §3) the service uses.
type providerMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
}

// provider fetches and caches the discovery document of cfg.discoveryURL().
type provider struct{}

// errIDPUnavailable: discovery or keys could not be loaded (maps to 503).
var errIDPUnavailable = errors.New("jwks: identity provider metadata unavailable")

func newProvider(cfg config, client *http.Client, logger *slog.Logger) *provider { return &provider{} }

// metadata returns the discovery document, fetching it on first use.
func (p *provider) metadata(ctx context.Context) (providerMetadata, error) {
	return providerMetadata{}, errIDPUnavailable
}

// keySet is the cached JWKS.
type keySet struct{}

func newKeySet(cfg config, p *provider, client *http.Client, logger *slog.Logger) *keySet {
	return &keySet{}
}

// run refreshes the key set in the background until ctx is done.
func (ks *keySet) run(ctx context.Context) {}

// claims are the verified claims of an Entra access or ID token
// (RFC 7519 §4.1; Microsoft identity platform token claims reference).
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
	Name              string    // name
	PreferredUsername string    // preferred_username (v2) or upn/unique_name (v1)
	Nonce             string    // nonce (ID tokens)
	Version           string    // ver: "1.0" or "2.0"
	Scopes            []string  // scp split on spaces (or RFC 9068 scope)
	Roles             []string  // roles
}

// verifier checks RS256 JWTs against the cached key set and the configured
// issuer, audience and time rules.
type verifier struct{}

func newVerifier(cfg config, p *provider, ks *keySet, now func() time.Time) *verifier {
	return &verifier{}
}

// verifyAccessToken verifies a bearer access token.
func (v *verifier) verifyAccessToken(ctx context.Context, raw string) (*claims, error) {
	return nil, errIDPUnavailable
}

// verifyIDToken verifies an ID token (audience = client id) and its nonce.
func (v *verifier) verifyIDToken(ctx context.Context, raw, nonce string) (*claims, error) {
	return nil, errIDPUnavailable
}

// ready reports nil once the discovery document and at least one key are loaded.
func (v *verifier) ready() error { return errIDPUnavailable }
