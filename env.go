package main

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config holds every setting of the service. It is read once at start by
// loadConfig and passed down by value; nothing changes it afterwards, so it is
// safe for concurrent use. Each field names its environment variable and its
// default.
type config struct {
	// Addr is the listen address (ADDR). When ADDR is unset and PORT is
	// set (as container platforms do), it is ":PORT", every interface;
	// otherwise the default is "localhost:8000".
	Addr string

	// ClientID is the application (client) id of the Entra app registration
	// (AZURE_CLIENT_ID), a GUID. Required.
	ClientID string
	// ClientSecret is the client secret (AZURE_CLIENT_SECRET). Required unless
	// another client credential is set (ClientCertPath, FederatedTokenFile,
	// ManagedIdentity); never together with one. Never logged.
	ClientSecret string
	// ClientAuth is how the service authenticates to the token endpoint
	// (AZURE_CLIENT_AUTH): "post" (default: client_secret in the form body,
	// RFC 6749 §2.3.1) or "basic" (HTTP Basic). The other credentials choose
	// it themselves: "certificate" (a signed client assertion, RFC 7523
	// §2.2), "federated" (FederatedTokenFile) or "managed-identity".
	ClientAuth string
	// ClientCertPath is a PEM file holding the certificate and its RSA private
	// key (AZURE_CLIENT_CERTIFICATE_PATH), default empty.
	ClientCertPath string

	// Client credentials with no stored secret (workload identity
	// federation). At most one of ClientSecret, ClientCertPath,
	// FederatedTokenFile and ManagedIdentity is set.

	// FederatedTokenFile is a file holding a JWT that another issuer signed
	// for the app (AZURE_FEDERATED_TOKEN_FILE, as AKS workload identity sets
	// it), default empty. It is sent as the client assertion and read again
	// for every token request, since the platform rotates it.
	FederatedTokenFile string
	// ManagedIdentity is true with AZURE_CLIENT_ASSERTION=managed-identity:
	// the client assertion is a token of the platform's managed identity
	// for TokenExchangeAudience. Default false.
	ManagedIdentity bool
	// ManagedIdentityClientID selects a user-assigned managed identity by
	// its client id (AZURE_MANAGED_IDENTITY_CLIENT_ID, a GUID), default
	// empty: the system-assigned one.
	ManagedIdentityClientID string
	// IdentityEndpoint and IdentityHeader are the managed-identity endpoint
	// that App Service and Container Apps set (IDENTITY_ENDPOINT,
	// IDENTITY_HEADER; the header is never logged). Empty: the instance
	// metadata endpoint (virtual machines, scale sets, AKS nodes).
	IdentityEndpoint string
	IdentityHeader   string
	// TokenExchangeAudience is the audience of the managed identity's
	// assertion (AZURE_TOKEN_EXCHANGE_AUDIENCE); the default follows
	// AuthorityHost's cloud (cloudFor): api://AzureADTokenExchange, or the
	// US Government or China cloud's own.
	TokenExchangeAudience string

	// TenantID is the directory (tenant) id (AZURE_TENANT_ID): a GUID, the
	// tenant's {name}.onmicrosoft.com domain (as External ID documents it),
	// or "organizations" or "common" (multi-tenant; then AllowedTenants is
	// required). Required.
	TenantID string
	// AllowedTenants lists the tenant GUIDs whose tokens are accepted when
	// TenantID is "organizations" or "common" (ALLOWED_TENANTS, comma list).
	// AnyTenant is true when ALLOWED_TENANTS is "*".
	AllowedTenants []string
	AnyTenant      bool

	// APIScopes are the API's scopes the sign-in asks for (API_SCOPE,
	// space-separated), e.g. "api://<client-id>/Heroes.Read". Required.
	APIScopes []string
	// Audiences are the accepted token audiences: the client id, every App ID
	// URI taken from APIScopes (the part before the last "/"), and the values
	// of AZURE_AUDIENCE (comma or space separated). Compared exactly.
	Audiences []string

	// RedirectURI is the OAuth redirect URI (REDIRECT_URI), default
	// "http://localhost:8000/auth/callback". It must be registered in Entra.
	RedirectURI string
	// PostLogoutRedirectURI is sent to the end_session_endpoint on logout
	// (POST_LOGOUT_REDIRECT_URI), default empty (not sent).
	PostLogoutRedirectURI string

	// AuthorityHost is the identity provider's base URL (AZURE_AUTHORITY_HOST),
	// default "https://login.microsoftonline.com". The discovery document is
	// read from {AuthorityHost}/{TenantID}/v2.0/.well-known/openid-configuration.
	AuthorityHost string

	// ClockSkew is the leeway applied to exp, nbf and iat, both ways
	// (CLOCK_SKEW, a Go duration), default 5m, as Microsoft.Identity.Web.
	ClockSkew time.Duration
	// AcceptV1Tokens accepts v1 tokens (issuer https://sts.windows.net/{tid}/)
	// besides v2 ones (ACCEPT_V1_TOKENS), default true.
	AcceptV1Tokens bool
	// CustomSigningKeys fetches the key set with ?appid=<client id>
	// (AZURE_CUSTOM_SIGNING_KEYS), default false.
	CustomSigningKeys bool

	// SessionKey is the 32-byte AES-256-GCM key that seals the login cookie
	// (SESSION_KEY, standard base64). When unset, a random key is made per
	// process and SessionKeyRandom is true.
	SessionKey       []byte
	SessionKeyRandom bool

	// HeroesStore selects the store (HEROES_STORE): "memory" (default),
	// "file" (HEROES_FILE alone also selects it) or "azuretable".
	HeroesStore string
	// HeroesFile is the JSON file of the file store (HEROES_FILE).
	HeroesFile string
	// StorageConnectionString is the Azure Storage connection string of the
	// azuretable store (AZURE_STORAGE_CONNECTION_STRING). Never logged.
	StorageConnectionString string
	// HeroesTable is the table name of the azuretable store (HEROES_TABLE),
	// default "heroes".
	HeroesTable string

	// HeroesMaxBytes bounds the memory and file stores, in bytes of the
	// heroes file (HEROES_MAX_BYTES, minStoreBytes to maxHeroesFile: 1 MiB
	// to 256 MiB), default defaultMaxStoreBytes (64 MiB, what a 0.5 GiB
	// container holds). A quarter is for idempotency keys.
	HeroesMaxBytes int64

	// LogFormat is "text" (default) or "json" (LOG_FORMAT).
	LogFormat string
	// LogLevel is the lowest level logged (LOG_LEVEL: debug, info, warn,
	// error), default info.
	LogLevel slog.Level
	// ShutdownGrace is how long in-flight requests may run after SIGINT or
	// SIGTERM (SHUTDOWN_GRACE, a Go duration), default 15s.
	ShutdownGrace time.Duration

	// What browsers reach besides the sign-in: the /docs page (docs.go) and
	// cross-origin calls (cors.go).

	// CORSAllowedOrigins are the origins a browser may call the service from
	// (CORS_ALLOWED_ORIGINS, comma-separated, each scheme://host[:port] as a
	// browser sends it in Origin), default none: no CORS headers at all.
	CORSAllowedOrigins []string
	// DocsAssetsURL is the folder /docs loads Swagger UI's files from
	// (DOCS_ASSETS_URL, without the trailing slash, its host lower-cased
	// as assetsBase writes it), default
	// docsDefaultAssetsURL: swagger-ui-dist at the pinned version on a CDN.
	// Whatever serves them must serve that version's files unchanged, as
	// the page checks them against Subresource Integrity hashes.
	DocsAssetsURL string
	// OpenAPIClientID is the application (client) id Swagger UI signs in
	// with at /docs (OPENAPI_CLIENT_ID), a GUID, default ClientID. Its app
	// registration needs the single-page-application redirect URI
	// .../docs/oauth2-redirect.
	OpenAPIClientID string

	// Authorization beyond permissions (policy.go) and the on-behalf-of
	// call to Microsoft Graph (obo.go, graph.go).

	// StepUpAuthContext is the Conditional Access authentication context id,
	// c1 to c99, that every operation needing Admin also needs in the
	// access token's acrs claim (STEP_UP_AUTH_CONTEXT), default "" (no
	// step-up); with -dev, c1.
	StepUpAuthContext string
	// AllowGuestUsers admits the tokens of guests (acct 1, or an idp other
	// than the issuer) (ALLOW_GUEST_USERS), default true.
	AllowGuestUsers bool
	// GraphScope is the scope GET /api/me asks the on-behalf-of grant for
	// (GRAPH_SCOPE, space-separated), default {cloud's Graph host}/User.Read.
	GraphScope string
	// GraphBaseURL is Microsoft Graph's service root, without /v1.0
	// (GRAPH_BASE_URL), default the cloud's Graph host (cloudFor).
	GraphBaseURL string

	// TokenCacheSize is how many verified access tokens are kept, so that a
	// token seen before skips RSA (TOKEN_CACHE_SIZE, 2 to 10,000,000),
	// default 100,000: about 20 MB when full (README, "Performance").
	TokenCacheSize int

	// MetricsAddr is the listen address of GET /metrics, a listener of its
	// own (METRICS_ADDR, host:port), default "" (no metrics). Keep it off
	// the public network: the metrics name routes, outcomes and latencies.
	MetricsAddr string

	// Exposure: how often GET /readyz reaches the store, and whether
	// POST /auth/refresh is served.

	// ReadyzCache is how long GET /readyz reuses the store's answer,
	// success or failure alike (READYZ_CACHE, a Go duration from 0 to 1m),
	// default 5s: callers of /readyz cost a remote store at most one request
	// per interval. 0 asks the store on every request.
	ReadyzCache time.Duration
	// RefreshEnabled serves POST /auth/refresh and asks for offline_access
	// at sign-in (AUTH_REFRESH_ENABLED), default true. false: no refresh
	// token is issued and /auth/refresh answers 404, so the service never
	// lends its client credential to a refresh token (README, "Security
	// notes: /auth/refresh").
	RefreshEnabled bool

	// Dev is true when the service runs with -dev and serves its own local
	// identity provider under /devidp/. Only run sets it, from the flag; no
	// variable can.
	Dev bool
}

// verifyOptions are the resource-server half's settings: discovery, key set
// and token checks. client makes the provider calls; logger gets their
// outcomes.
func (c config) verifyOptions(client *http.Client, logger *slog.Logger) verifyOptions {
	return verifyOptions{
		AuthorityHost: c.AuthorityHost, TenantID: c.TenantID, ClientID: c.ClientID,
		Audiences: c.Audiences, AllowedTenants: c.AllowedTenants, AnyTenant: c.AnyTenant,
		AcceptV1Tokens: c.AcceptV1Tokens, V1Issuer: cloudFor(c.AuthorityHost).v1Issuer, CustomSigningKeys: c.CustomSigningKeys,
		Leeway: c.ClockSkew, Now: time.Now, Client: client, Logger: logger, TokenCacheSize: c.TokenCacheSize,
	}
}

// storeOptions are the heroes store's settings.
func (c config) storeOptions() storeOptions {
	return storeOptions{Kind: c.HeroesStore, File: c.HeroesFile, ConnectionString: c.StorageConnectionString, Table: c.HeroesTable,
		MaxBytes: c.HeroesMaxBytes}
}

// loginOptions are the client half's settings.
func (c config) loginOptions() loginOptions {
	return loginOptions{
		ClientID: c.ClientID, ClientAuth: c.ClientAuth, ClientSecret: c.ClientSecret, ClientCertPath: c.ClientCertPath,
		FederatedTokenFile: c.FederatedTokenFile,
		ManagedIdentity: managedIdentityOptions{Endpoint: c.IdentityEndpoint, Header: c.IdentityHeader,
			ClientID: c.ManagedIdentityClientID, Audience: c.TokenExchangeAudience},
		APIScopes: c.APIScopes, RedirectURI: c.RedirectURI, PostLogoutRedirectURI: c.PostLogoutRedirectURI,
		SessionKey: c.SessionKey, StepUpAuthContext: c.StepUpAuthContext,
		RefreshDisabled: !c.RefreshEnabled,
	}
}

// loadConfig reads every setting through getenv, applies defaults and
// validates them. It returns one error naming every problem at once; the
// error never contains a secret's value.
func loadConfig(getenv func(string) string) (config, error) {
	e := &envReader{getenv: getenv}
	c := config{Addr: e.get("ADDR")}
	if c.Addr == "" {
		c.Addr = e.port()
	} else {
		e.get("PORT") // ADDR wins; asked anyway, so a PORT in .env_oauth is no unknown key
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		e.bad("ADDR is not host:port")
	}
	e.identity(&c)
	e.endpoints(&c)
	e.clientCredential(&c)
	e.tokens(&c)
	e.store(&c)
	e.storeBound(&c)
	e.logging(&c)
	e.browser(&c)
	e.observability(&c)
	e.beyondSignIn(&c)
	e.tokenCache(&c)
	e.certificate(&c)
	e.readiness(&c)
	e.refresh(&c)
	if len(e.problems) > 0 {
		msg := strings.Join(e.problems, "\n  ")
		if c.ClientID == "" || c.TenantID == "" || len(c.APIScopes) == 0 {
			msg += "\n" + firstRunHint
		}
		return config{}, fmt.Errorf("%w:\n  %s", errConfig, msg)
	}
	return c, nil
}

// firstRunHint ends the error of a start without the identity settings:
// the two ways to get going.
const firstRunHint = `To try the service on this machine without Azure, start it with -dev (from the source folder: go run . -dev).
To use your Entra app registration, put AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID and
API_SCOPE in a file named .env_oauth in the folder it is started from (README.md, "Setting it up with Entra ID").`

// browser reads the settings of the /docs page and of CORS. A bad origin or
// assets URL is a problem; OPENAPI_CLIENT_ID defaults to the client id,
// whose problems identity reports once.
func (e *envReader) browser(c *config) {
	if c.OpenAPIClientID = e.get("OPENAPI_CLIENT_ID"); c.OpenAPIClientID == "" {
		c.OpenAPIClientID = c.ClientID
	} else if !isGUID(c.OpenAPIClientID) {
		e.bad("OPENAPI_CLIENT_ID is not a GUID")
	}
	var err error
	if c.DocsAssetsURL, err = assetsBase(strings.TrimRight(e.or("DOCS_ASSETS_URL", docsDefaultAssetsURL), "/")); err != nil {
		e.bad("DOCS_ASSETS_URL %v", err)
	}
	for o := range strings.SplitSeq(e.get("CORS_ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		origin, err := parseOrigin(o)
		if err != nil {
			e.bad("CORS_ALLOWED_ORIGINS: %v", err)
			continue
		}
		if !slices.Contains(c.CORSAllowedOrigins, origin) {
			c.CORSAllowedOrigins = append(c.CORSAllowedOrigins, origin)
		}
	}
}

// placeholderGUID is the all-zero GUID the README's examples use.
const placeholderGUID = "00000000-0000-0000-0000-000000000000"

// warnings are the settings that start the service but are likely
// mistakes, one sentence each: the README's placeholder ids, API_SCOPE
// entries that Entra would not read as this API's scopes, and a
// REDIRECT_URI whose path the callback is not served at.
func (c config) warnings() []string {
	var out []string
	for _, v := range []struct{ name, value string }{
		{"AZURE_CLIENT_ID", c.ClientID}, {"AZURE_TENANT_ID", c.TenantID}, {"OPENAPI_CLIENT_ID", c.OpenAPIClientID},
	} {
		if v.value == placeholderGUID {
			out = append(out, v.name+" is the README's placeholder "+placeholderGUID+": put your app registration's id there")
		}
	}
	for _, s := range c.APIScopes {
		switch {
		case s == "openid" || s == "profile" || s == "email" || s == "offline_access":
			// OpenID Connect's own scopes: the sign-in asks for them anyway.
		case strings.Contains(s, placeholderGUID):
			out = append(out, fmt.Sprintf("API_SCOPE entry %q holds the README's placeholder id: put your app registration's client id there", truncate(s, 100)))
		case !strings.HasPrefix(s, "api://") && !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, c.ClientID+"/"):
			out = append(out, fmt.Sprintf("API_SCOPE entry %q names no App ID URI: Entra reads a bare name as a Microsoft Graph "+
				"permission, whose tokens this API refuses; write api://%s/<scope>", truncate(s, 100), c.ClientID))
		}
	}
	if u, err := url.Parse(c.RedirectURI); err == nil && !strings.HasSuffix(u.Path, "/auth/callback") {
		out = append(out, fmt.Sprintf("REDIRECT_URI's path is %q, but the service answers the sign-in at /auth/callback: "+
			"unless a proxy maps one to the other, every sign-in will end in a 404", truncate(u.Path, 100)))
	}
	return out
}

// envReader reads settings through getenv and collects the problems found,
// in the order they are found.
type envReader struct {
	getenv   func(string) string
	problems []string
}

// get is the variable k without surrounding spaces.
func (e *envReader) get(k string) string { return strings.TrimSpace(e.getenv(k)) }

// or is the variable k, or def when it is unset or blank.
func (e *envReader) or(k, def string) string { return cmp.Or(e.get(k), def) }

func (e *envReader) bad(format string, args ...any) {
	e.problems = append(e.problems, fmt.Sprintf(format, args...))
}

// identity reads the app registration: client id and the tenant (with
// ALLOWED_TENANTS when multi-tenant). clientCredential reads how the client
// authenticates.
func (e *envReader) identity(c *config) {
	c.ClientID = e.get("AZURE_CLIENT_ID")
	if c.ClientID == "" {
		e.bad("AZURE_CLIENT_ID is required")
	} else if !isGUID(c.ClientID) {
		e.bad("AZURE_CLIENT_ID is not a GUID")
	}

	c.TenantID = strings.ToLower(e.get("AZURE_TENANT_ID"))
	allowed := e.get("ALLOWED_TENANTS") // read whatever the tenant, so .env_oauth knows it (unknownKeys)
	switch {
	case c.TenantID == "":
		e.bad("AZURE_TENANT_ID is required")
	case c.TenantID == "consumers":
		e.bad("AZURE_TENANT_ID=consumers is not supported: use a tenant GUID, organizations or common")
	case (verifyOptions{TenantID: c.TenantID}).isMultiTenant():
		c.AllowedTenants, c.AnyTenant = parseAllowedTenants(allowed, e.bad)
		if len(c.AllowedTenants) == 0 && !c.AnyTenant {
			e.bad("ALLOWED_TENANTS is required when AZURE_TENANT_ID is %s: list the tenant GUIDs that may sign in, or * to accept any tenant on purpose", c.TenantID)
		}
	case !isGUID(c.TenantID) && !tenantDomainPattern.MatchString(c.TenantID):
		e.bad("AZURE_TENANT_ID is not a GUID, a {name}.onmicrosoft.com domain, organizations or common")
	}
}

// endpoints reads the API's scopes and audiences and the URLs: redirect,
// post-logout and the identity provider's.
func (e *envReader) endpoints(c *config) {
	c.APIScopes = strings.Fields(e.getenv("API_SCOPE"))
	if len(c.APIScopes) == 0 {
		e.bad("API_SCOPE is required (e.g. api://<client-id>/Heroes.Read)")
	}
	c.Audiences = audiences(c.ClientID, c.APIScopes, e.getenv("AZURE_AUDIENCE"))

	c.RedirectURI = e.or("REDIRECT_URI", "http://localhost:8000/auth/callback")
	c.PostLogoutRedirectURI = e.get("POST_LOGOUT_REDIRECT_URI")
	c.AuthorityHost = strings.TrimRight(e.or("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com"), "/")
	if u, err := url.Parse(c.AuthorityHost); err == nil && u.Host != "" {
		// Discovery issuers are compared exactly (provider.go): write
		// scheme and host as Entra's issuers do, in lower case.
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		c.AuthorityHost = u.String()
	}
	for _, u := range []struct{ name, value string }{
		{"REDIRECT_URI", c.RedirectURI},
		{"AZURE_AUTHORITY_HOST", c.AuthorityHost},
		{"POST_LOGOUT_REDIRECT_URI", c.PostLogoutRedirectURI},
	} {
		if u.value != "" && !isHTTPURL(u.value) {
			e.bad("%s is not an absolute http(s) URL", u.name)
		}
	}
	if isHTTPURL(c.AuthorityHost) && !isSecureURL(c.AuthorityHost) {
		// The client secret, codes and tokens travel to it (RFC 6749 §3.1, §3.2).
		e.bad("AZURE_AUTHORITY_HOST must be an https URL (http only for localhost, 127.0.0.0/8 or ::1)")
	}
}

// port is the listen address PORT asks for: ":PORT" (every interface, as
// a container needs), or "localhost:8000" when PORT is unset.
func (e *envReader) port() string {
	p := e.get("PORT")
	if p == "" {
		return "localhost:8000"
	}
	if !isPortNumber(p) {
		e.bad("PORT is not a port number from 1 to 65535")
		return "localhost:8000"
	}
	return ":" + p
}

// isPortNumber reports whether p is a TCP port number from 1 to 65535,
// written in decimal without a sign or leading zeros. port and listenDev
// check PORT with it.
func isPortNumber(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}

// clientCredential reads the app's client credential: a secret (sent as
// AZURE_CLIENT_AUTH says), a certificate, a federated token file, or the
// managed identity (AZURE_CLIENT_ASSERTION=managed-identity). Exactly one
// must be set; when several are, the problem names each of them.
func (e *envReader) clientCredential(c *config) {
	c.ClientSecret = e.getenv("AZURE_CLIENT_SECRET")
	c.ClientAuth = e.or("AZURE_CLIENT_AUTH", clientAuthPost)
	c.ClientCertPath = e.get("AZURE_CLIENT_CERTIFICATE_PATH")
	c.FederatedTokenFile = e.get("AZURE_FEDERATED_TOKEN_FILE")
	switch e.get("AZURE_CLIENT_ASSERTION") {
	case "":
	case clientAuthManagedIdentity:
		c.ManagedIdentity = true
	default:
		e.bad("AZURE_CLIENT_ASSERTION must be managed-identity (or unset)")
	}
	var set []string
	for _, cred := range []struct {
		name string
		set  bool
	}{
		{"AZURE_CLIENT_SECRET", c.ClientSecret != ""},
		{"AZURE_CLIENT_CERTIFICATE_PATH", c.ClientCertPath != ""},
		{"AZURE_FEDERATED_TOKEN_FILE", c.FederatedTokenFile != ""},
		{"AZURE_CLIENT_ASSERTION=managed-identity", c.ManagedIdentity},
	} {
		if cred.set {
			set = append(set, cred.name)
		}
	}
	switch {
	case len(set) > 1:
		e.bad("%s are set: configure exactly one client credential", strings.Join(set, " and "))
	case len(set) == 0:
		e.bad("AZURE_CLIENT_SECRET is required (or set AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE or AZURE_CLIENT_ASSERTION=managed-identity)")
	case c.ClientCertPath != "":
		c.ClientAuth = clientAuthCertificate
	case c.FederatedTokenFile != "":
		c.ClientAuth = clientAuthFederated
	case c.ManagedIdentity:
		c.ClientAuth = clientAuthManagedIdentity
	case c.ClientAuth != clientAuthPost && c.ClientAuth != clientAuthBasic:
		e.bad("AZURE_CLIENT_AUTH must be post or basic (the other credentials choose their own)")
	}
	e.managedIdentity(c)
}

// managedIdentity reads where the managed identity's tokens come from and
// for which audience. AZURE_MANAGED_IDENTITY_CLIENT_ID without
// AZURE_CLIENT_ASSERTION=managed-identity is refused (it would be ignored);
// IDENTITY_ENDPOINT and IDENTITY_HEADER, which the platform sets whether
// they are used or not, are checked only when they are used.
func (e *envReader) managedIdentity(c *config) {
	c.ManagedIdentityClientID = e.get("AZURE_MANAGED_IDENTITY_CLIENT_ID")
	c.IdentityEndpoint = e.get("IDENTITY_ENDPOINT")
	c.IdentityHeader = e.get("IDENTITY_HEADER")
	c.TokenExchangeAudience = e.or("AZURE_TOKEN_EXCHANGE_AUDIENCE", cloudFor(c.AuthorityHost).exchangeAud)
	switch {
	case !c.ManagedIdentity:
		if c.ManagedIdentityClientID != "" {
			e.bad("AZURE_MANAGED_IDENTITY_CLIENT_ID is set but AZURE_CLIENT_ASSERTION is not managed-identity")
		}
		return
	case c.ManagedIdentityClientID != "" && !isGUID(c.ManagedIdentityClientID):
		e.bad("AZURE_MANAGED_IDENTITY_CLIENT_ID is not a GUID")
	}
	switch {
	case c.IdentityEndpoint == "":
	case !isHTTPURL(c.IdentityEndpoint):
		e.bad("IDENTITY_ENDPOINT is not an absolute http(s) URL")
	case c.IdentityHeader == "":
		e.bad("IDENTITY_HEADER is required with IDENTITY_ENDPOINT (the platform sets both)")
	}
}

// tokens reads the durations, the token checks and the session key; an
// unset SESSION_KEY gives a random key and SessionKeyRandom.
func (e *envReader) tokens(c *config) {
	var err error
	if c.ClockSkew, err = parseDuration(e.or("CLOCK_SKEW", "5m"), time.Hour); err != nil {
		e.bad("CLOCK_SKEW %v", err)
	}
	if c.ShutdownGrace, err = parseDuration(e.or("SHUTDOWN_GRACE", "15s"), 10*time.Minute); err != nil {
		e.bad("SHUTDOWN_GRACE %v", err)
	}
	if c.AcceptV1Tokens, err = strconv.ParseBool(e.or("ACCEPT_V1_TOKENS", "true")); err != nil {
		e.bad("ACCEPT_V1_TOKENS is not true or false")
	}
	if c.CustomSigningKeys, err = strconv.ParseBool(e.or("AZURE_CUSTOM_SIGNING_KEYS", "false")); err != nil {
		e.bad("AZURE_CUSTOM_SIGNING_KEYS is not true or false")
	}

	if k := e.get("SESSION_KEY"); k != "" {
		c.SessionKey, err = base64.StdEncoding.DecodeString(k)
		if err != nil || len(c.SessionKey) != 32 {
			e.bad("SESSION_KEY is not 32 bytes in standard base64 (make one with: openssl rand -base64 32)")
		}
	} else {
		c.SessionKey, c.SessionKeyRandom = make([]byte, 32), true
		rand.Read(c.SessionKey) // never fails (crypto/rand documents it)
	}
}

// store reads the hero store's settings. HEROES_STORE defaults to "file"
// when HEROES_FILE is set, else "memory".
func (e *envReader) store(c *config) {
	c.HeroesFile = e.get("HEROES_FILE")
	c.StorageConnectionString = e.get("AZURE_STORAGE_CONNECTION_STRING")
	c.HeroesTable = e.or("HEROES_TABLE", "heroes")
	c.HeroesStore = e.get("HEROES_STORE")
	if c.HeroesStore == "" {
		c.HeroesStore = "memory"
		if c.HeroesFile != "" {
			c.HeroesStore = "file"
		}
	}
	switch c.HeroesStore {
	case "memory":
	case "file":
		if c.HeroesFile == "" {
			e.bad("HEROES_FILE is required when HEROES_STORE=file")
		} else if fi, err := os.Stat(filepath.Dir(c.HeroesFile)); err != nil || !fi.IsDir() {
			e.bad("HEROES_FILE is in %s, which is not an existing folder: create it first", filepath.Dir(c.HeroesFile))
		}
	case "azuretable":
		if c.StorageConnectionString == "" {
			e.bad("AZURE_STORAGE_CONNECTION_STRING is required when HEROES_STORE=azuretable")
		}
		if !tableNamePattern.MatchString(c.HeroesTable) {
			e.bad("HEROES_TABLE must be 3 to 63 letters or digits, starting with a letter")
		}
	default:
		e.bad("HEROES_STORE must be memory, file or azuretable")
	}
}

// storeBound reads HEROES_MAX_BYTES: a whole number of bytes from
// minStoreBytes to maxHeroesFile, default defaultMaxStoreBytes.
func (e *envReader) storeBound(c *config) {
	n, err := strconv.ParseInt(e.or("HEROES_MAX_BYTES", strconv.Itoa(defaultMaxStoreBytes)), 10, 64)
	if err != nil || n < minStoreBytes || n > maxHeroesFile {
		e.bad("HEROES_MAX_BYTES is not a whole number of bytes from %d to %d", minStoreBytes, maxHeroesFile)
	}
	c.HeroesMaxBytes = n
}

// logging reads LOG_FORMAT and LOG_LEVEL.
func (e *envReader) logging(c *config) {
	c.LogFormat = e.or("LOG_FORMAT", "text")
	if c.LogFormat != "text" && c.LogFormat != "json" {
		e.bad("LOG_FORMAT must be text or json")
	}
	if err := c.LogLevel.UnmarshalText([]byte(e.or("LOG_LEVEL", "info"))); err != nil {
		e.bad("LOG_LEVEL must be debug, info, warn or error")
	}
}

// observability reads METRICS_ADDR: unset, or host:port other than ADDR
// (port 0, any free port, may be given for both).
func (e *envReader) observability(c *config) {
	c.MetricsAddr = e.get("METRICS_ADDR")
	if c.MetricsAddr == "" {
		return
	}
	if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil {
		e.bad("METRICS_ADDR is not host:port")
	} else if c.MetricsAddr == c.Addr && port != "0" {
		e.bad("METRICS_ADDR must differ from ADDR: the metrics have a listener of their own")
	}
}

// tenantDomainPattern is a tenant's initial domain, {name}.onmicrosoft.com.
var tenantDomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}\.onmicrosoft\.com$`)

// authContextPattern is a Conditional Access authentication context id:
// c1 to c99 (Microsoft Graph authenticationContextClassReference).
var authContextPattern = regexp.MustCompile(`^c[1-9][0-9]?$`)

// beyondSignIn reads the step-up and guest policies and the Graph call's
// scope and host, whose defaults follow the cloud of AuthorityHost.
func (e *envReader) beyondSignIn(c *config) {
	c.StepUpAuthContext = strings.ToLower(e.get("STEP_UP_AUTH_CONTEXT"))
	if c.StepUpAuthContext != "" && !authContextPattern.MatchString(c.StepUpAuthContext) {
		e.bad("STEP_UP_AUTH_CONTEXT is not an authentication context id c1 to c99")
	}
	var err error
	if c.AllowGuestUsers, err = strconv.ParseBool(e.or("ALLOW_GUEST_USERS", "true")); err != nil {
		e.bad("ALLOW_GUEST_USERS is not true or false")
	}
	graph := cloudFor(c.AuthorityHost).graphHost
	c.GraphBaseURL = strings.TrimRight(e.or("GRAPH_BASE_URL", graph), "/")
	if !isSecureURL(c.GraphBaseURL) {
		e.bad("GRAPH_BASE_URL must be an https URL (http only on loopback)")
	}
	c.GraphScope = strings.Join(strings.Fields(e.or("GRAPH_SCOPE", graph+"/User.Read")), " ")
	if len(c.GraphScope) > 1024 || !isNQSChars(c.GraphScope) {
		e.bad("GRAPH_SCOPE must be scopes of printable ASCII, space-separated")
	}
}

// tokenCache reads TOKEN_CACHE_SIZE: a whole number from 2 to 10,000,000.
func (e *envReader) tokenCache(c *config) {
	n, err := strconv.Atoi(e.or("TOKEN_CACHE_SIZE", "100000"))
	if err != nil || n < 2 || n > 10_000_000 {
		e.bad("TOKEN_CACHE_SIZE is not a whole number from 2 to 10000000")
	}
	c.TokenCacheSize = n
}

// certificate loads AZURE_CLIENT_CERTIFICATE_PATH when it is the client
// credential, so that a file that cannot be read, a PEM without a
// certificate or an RSA key, a key that does not match the certificate, or
// an expired certificate is reported with the other problems, naming the
// variable (loadClientCertificate says which). newAuthFlow loads it again to
// use it.
func (e *envReader) certificate(c *config) {
	if c.ClientAuth != clientAuthCertificate {
		return
	}
	if _, err := loadClientCertificate(c.ClientCertPath, time.Now()); err != nil {
		e.bad("AZURE_CLIENT_CERTIFICATE_PATH: %s", strings.TrimPrefix(err.Error(), "auth: "))
	}
}

// readiness reads READYZ_CACHE, a duration from 0 to 1m.
func (e *envReader) readiness(c *config) {
	var err error
	if c.ReadyzCache, err = parseDuration(e.or("READYZ_CACHE", "5s"), time.Minute); err != nil {
		e.bad("READYZ_CACHE %v", err)
	}
}

// refresh reads AUTH_REFRESH_ENABLED, true or false.
func (e *envReader) refresh(c *config) {
	var err error
	if c.RefreshEnabled, err = strconv.ParseBool(e.or("AUTH_REFRESH_ENABLED", "true")); err != nil {
		e.bad("AUTH_REFRESH_ENABLED is not true or false")
	}
}

// unknownKeys returns the keys of .env_oauth (vars) that were not read
// (read: every key loadConfig asked for), sorted: likely misspelt
// settings, which run warns about, naming the key and never its value.
func unknownKeys(vars map[string]string, read map[string]bool) []string {
	var out []string
	for k := range vars {
		if !read[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// errConfig marks every error of loadConfig; run exits with status 2 on it.
var errConfig = errors.New("config: invalid settings")

// parseAllowedTenants reads ALLOWED_TENANTS: "*" or a comma list of GUIDs.
func parseAllowedTenants(s string, bad func(string, ...any)) (tenants []string, any bool) {
	if s == "*" {
		return nil, true
	}
	for _, t := range strings.Split(s, ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		if t == "" {
			continue
		}
		if !isGUID(t) {
			bad("ALLOWED_TENANTS holds %q, which is not a GUID", t)
			continue
		}
		tenants = append(tenants, t)
	}
	return tenants, false
}

// audiences builds the accepted token audiences: the client id, the App ID
// URI of each API scope ("api://x/Heroes.Read" gives "api://x"), and the
// extra values, with duplicates dropped.
func audiences(clientID string, scopes []string, extra string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(clientID)
	for _, s := range scopes {
		if i := strings.LastIndex(s, "/"); i > 0 && strings.Contains(s, "://") {
			add(s[:i])
		}
	}
	for _, a := range strings.FieldsFunc(extra, func(r rune) bool { return r == ',' || r == ' ' }) {
		add(a)
	}
	return out
}

// isHTTPURL reports whether s is an absolute http or https URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// parseDuration parses a Go duration between 0 and max inclusive.
func parseDuration(s string, max time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("is not a duration such as 30s or 5m")
	}
	if d < 0 || d > max {
		return 0, fmt.Errorf("must be between 0 and %v", max)
	}
	return d, nil
}

// maxDotEnvSize bounds the .env_oauth file (64 KiB).
const maxDotEnvSize = 64 << 10

// parseDotEnv parses a .env_oauth file: KEY=VALUE lines, blank lines and
// lines starting with # ignored, an optional "export " prefix, and a value
// optionally wrapped in single or double quotes (taken literally, no escapes).
// Unquoted values end at " #" (an inline comment), and an unquoted value that
// starts with # is empty; quote a value that must hold " #" or start with #.
// It returns an errConfig error naming the first bad line; the error never
// holds the line's value.
func parseDotEnv(data []byte) (map[string]string, error) {
	if len(data) > maxDotEnvSize {
		return nil, fmt.Errorf("%w: .env_oauth is larger than %d bytes", errConfig, maxDotEnvSize)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxDotEnvSize+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !envKeyPattern.MatchString(key) {
			return nil, fmt.Errorf("%w: .env_oauth line %d is not KEY=VALUE", errConfig, n)
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		} else if len(value) > 0 && (value[0] == '"' || value[0] == '\'') {
			return nil, fmt.Errorf("%w: .env_oauth line %d has an unclosed quote", errConfig, n)
		} else if strings.HasPrefix(value, "#") {
			value = "" // KEY=   # a comment
		} else if i := strings.Index(value, " #"); i >= 0 {
			value = strings.TrimSpace(value[:i])
		}
		vars[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: .env_oauth: %w", errConfig, err)
	}
	return vars, nil
}

// envKeyPattern is the shape of a variable name in .env_oauth.
var envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withFallback returns a getenv that answers from getenv first and from vars
// when getenv gives "" (real environment variables win over .env_oauth).
func withFallback(getenv func(string) string, vars map[string]string) func(string) string {
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vars[k]
	}
}
