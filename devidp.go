package main

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"math/big"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// The dev provider's fixed identities. They are GUIDs, as Entra's are, and
// read as fake on sight. Only the client secret and the signing key change
// per process.
const (
	// devTenantID is the one tenant the dev provider serves (tid).
	devTenantID = "decaf000-0000-4000-8000-000000000001"
	// devClientID is the one registered client (aud, azp, client_id).
	devClientID = "decaf000-0000-4000-8000-000000000002"
	// devIdentityClientID and devIdentityPrincipalID are the client id and
	// the principal (object) id, the sub of its tokens, of the one
	// user-assigned managed identity the dev identity endpoint serves. The
	// dev client trusts it as a federated credential (devFederatedCredential).
	devIdentityClientID    = "decaf000-0000-4000-8000-000000000003"
	devIdentityPrincipalID = "decaf000-0000-4000-8000-000000000004"
	// devIdentityPath is the dev managed identity endpoint, the
	// IDENTITY_ENDPOINT of -dev with AZURE_CLIENT_ASSERTION=managed-identity.
	devIdentityPath = "/devidp/msi/token"
)

// Lifetimes and bounds of the dev provider. Durations are time.Duration.
const (
	devCodeTTL    = 60 * time.Second // an authorization code, single use (RFC 6749 §4.1.2 says at most 10 minutes)
	devTokenTTL   = time.Hour        // access and ID tokens, as Entra's default
	devRefreshTTL = 24 * time.Hour   // a refresh token, single use and rotated on every redemption
	devMaxCodes   = 1000             // outstanding codes; beyond it authorize answers temporarily_unavailable
	devMaxRefresh = 1000             // outstanding refresh tokens; beyond it the one expiring soonest is dropped
	devMaxSpent   = 2000             // remembered redeemed codes and refresh tokens, for replay detection
	devMaxForm    = 16 << 10         // bytes of a form body (sign-in form, token request)
	devMaxParam   = 1024             // bytes of state, nonce, login_hint, a code or a refresh token
	devMaxScope   = 2048             // bytes of a scope parameter
	devMaxUser    = 64               // characters (runes) of a user name
)

// devAPIScopes are the heroes API's scope names (the part after the App ID
// URI), in the order the sign-in form lists them: the permissions
// requireAuth checks, with Admin above Heroes.Create above Heroes.Read.
func devAPIScopes() []string { return []string{"Heroes.Read", "Heroes.Create", "Admin"} }

// devIDP is the local identity provider that -dev serves under
// /devidp/{tenant}/. It mimics the Microsoft identity platform v2.0
// endpoints closely enough that the service talks to it through the very
// code path it uses for Entra: discovery, authorize, token, keys, logout.
// It knows one tenant (devTenantID) and one confidential client
// (devClientID with a random secret), and signs RS256 tokens with a key made
// per process. It is safe for concurrent use. It is for local development
// only: anyone who can reach it can sign in as anyone.
type devIDP struct {
	key    *rsa.PrivateKey  // the signing key, RSA 2048, made per process
	kid    string           // the key's random id, in the JWKS and every token header
	secret string           // the client secret (AZURE_CLIENT_SECRET), random per process
	now    func() time.Time // the clock; tests replace it before serving
	// identityHeader is the IDENTITY_HEADER the dev identity endpoint
	// wants as X-IDENTITY-HEADER, random per process.
	identityHeader string

	mu sync.Mutex // guards the fields below
	// base is the service's own URL ("http://localhost:8000"), recorded by
	// getenv; the issuer and the redirect URI derive from it.
	base string
	// codes are the outstanding authorization codes, by code.
	codes map[string]devCode
	// refresh are the outstanding refresh tokens, by token.
	refresh map[string]devGrant
	// spent are redeemed codes and refresh tokens, kept until they would
	// have expired, so that a replay is recognised and revokes its family.
	spent map[string]devSpent
	// revoked are the families a replay revoked, by family.
	revoked map[string]devSpent
}

// devGrant is what a user allowed at the sign-in form, carried by a code and
// by each refresh token descending from it.
type devGrant struct {
	clientID string
	user     string   // the user name typed in the form
	scopes   []string // granted API scope names, in devAPIScopes order
	openid   bool     // openid was asked for: issue ID tokens (OIDC Core §3.1.2.1)
	offline  bool     // offline_access was asked for: issue refresh tokens
	public   bool     // issued to the public (single-page application) client: no secret was shown
	acrs     []string // authentication context ids the user stepped up to (a claims request asked for them)
	// family is shared by a code and every refresh token issued from it,
	// so that a replay can revoke them all (RFC 6749 §4.1.2, RFC 9700 §4.14.2).
	family  string
	expires time.Time
}

func (g devGrant) expiry() time.Time { return g.expires }
func (g devGrant) grant() devGrant   { return g }

// devCode is an outstanding authorization code: the grant, bound to the
// redirect URI, the PKCE challenge (RFC 7636 §4.4) and the OIDC nonce of the
// request that made it.
type devCode struct {
	devGrant
	redirectURI string
	challenge   string // BASE64URL(SHA256(code_verifier)), 43 characters
	nonce       string
}

// devSpent remembers a redeemed code or refresh token until it would have
// expired.
type devSpent struct {
	family  string
	expires time.Time
}

func (s devSpent) expiry() time.Time { return s.expires }

// newDevIDP makes the dev provider: a fresh RSA-2048 signing key with a
// random kid and a random client secret. It does no I/O beyond reading
// crypto/rand. The issuer is unknown until getenv records the service's URL.
func newDevIDP() (*devIDP, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devidp: making the signing key: %w", err)
	}
	return &devIDP{
		key:            key,
		kid:            rand.Text(),
		secret:         rand.Text(),
		identityHeader: rand.Text(),
		now:            time.Now,
		codes:          map[string]devCode{},
		refresh:        map[string]devGrant{},
		spent:          map[string]devSpent{},
		revoked:        map[string]devSpent{},
	}, nil
}

// getenv returns a getenv that answers the identity settings with the dev
// provider's values for a service reached at base (e.g.
// "http://localhost:8000"), and every other key from getenv. The dev values
// win over the environment, and the settings that would mix a real
// registration with the dev provider (certificate, client auth method,
// allowed tenants, extra audiences, post-logout URI, federated token file)
// are blanked. With AZURE_CLIENT_ASSERTION=managed-identity the client
// authenticates with no secret at all: with a token of the dev managed
// identity, from the dev identity endpoint, as its federated credential
// (devIdentity). GET /api/me reads the fake Graph (GRAPH_BASE_URL, devgraph.go),
// and STEP_UP_AUTH_CONTEXT defaults to c1, so that deleting a hero shows
// the step-up. It records base as the provider's own origin.
func (d *devIDP) getenv(getenv func(string) string, base string) func(string) string {
	base = strings.TrimRight(base, "/")
	d.mu.Lock()
	d.base = base
	d.mu.Unlock()

	dev := map[string]string{
		"AZURE_CLIENT_ID":               devClientID,
		"AZURE_TENANT_ID":               devTenantID,
		"AZURE_CLIENT_SECRET":           d.secret,
		"AZURE_AUTHORITY_HOST":          base + "/devidp",
		"API_SCOPE":                     devScopeURIs(devClientID, devAPIScopes()),
		"REDIRECT_URI":                  base + "/auth/callback",
		"AZURE_CLIENT_CERTIFICATE_PATH": "",
		"AZURE_CLIENT_AUTH":             "",
		"ALLOWED_TENANTS":               "",
		"AZURE_AUDIENCE":                "",
		"POST_LOGOUT_REDIRECT_URI":      "",
		"AZURE_FEDERATED_TOKEN_FILE":    "",
		"AZURE_TOKEN_EXCHANGE_AUDIENCE": "",
		"OPENAPI_CLIENT_ID":             "",
		"GRAPH_BASE_URL":                base + devGraphPath,
		"GRAPH_SCOPE":                   "",
	}
	if getenv("STEP_UP_AUTH_CONTEXT") == "" {
		dev["STEP_UP_AUTH_CONTEXT"] = "c1" // deleting a hero shows the step-up
	}
	maps.Copy(dev, d.identityEnv(getenv, base))
	return func(k string) string {
		if v, ok := dev[k]; ok {
			return v
		}
		return getenv(k)
	}
}

// identityEnv is the managed identity part of getenv's settings: the dev
// identity endpoint and identity, and no secret, when getenv asks for
// AZURE_CLIENT_ASSERTION=managed-identity; else none of them.
func (d *devIDP) identityEnv(getenv func(string) string, base string) map[string]string {
	if strings.TrimSpace(getenv("AZURE_CLIENT_ASSERTION")) != clientAuthManagedIdentity {
		return map[string]string{"AZURE_CLIENT_ASSERTION": "", "AZURE_MANAGED_IDENTITY_CLIENT_ID": ""}
	}
	return map[string]string{
		"AZURE_CLIENT_SECRET":              "",
		"AZURE_CLIENT_ASSERTION":           clientAuthManagedIdentity,
		"AZURE_MANAGED_IDENTITY_CLIENT_ID": devIdentityClientID,
		"IDENTITY_ENDPOINT":                base + devIdentityPath,
		"IDENTITY_HEADER":                  d.identityHeader,
	}
}

// listenDev listens on ADDR (default localhost:PORT, or localhost:8000
// when PORT is unset too), which must be a loopback address, and makes the
// dev identity provider. It returns the
// listener, the provider, and a getenv that answers the identity settings
// with the provider's values for the URL the listener is reached at.
func listenDev(getenv func(string) string) (net.Listener, *devIDP, func(string) string, error) {
	addr := getenv("ADDR")
	if addr == "" {
		port := cmp.Or(getenv("PORT"), "8000")
		if !isPortNumber(port) {
			return nil, nil, nil, fmt.Errorf("%w: PORT is not a port number from 1 to 65535", errConfig)
		}
		addr = "localhost:" + port
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, nil, listenError(addr, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String()) // a TCP listener's address always has a port
	if !isLoopbackHost(host) {
		ln.Close()
		return nil, nil, nil, fmt.Errorf("%w: -dev listens on loopback only; ADDR %s is not", errConfig, addr)
	}
	idp, err := newDevIDP()
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	return ln, idp, idp.getenv(getenv, publicBase(addr, port)), nil
}

// publicBase is the base URL a browser uses to reach the listener: the host
// of ADDR as written (so "localhost" stays localhost for cookies) with the
// port actually bound (ADDR may ask for port 0).
func publicBase(addr, port string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// addRoutes registers the provider's endpoints under /devidp/{tenant}/, as
// the Microsoft identity platform lays them out under
// login.microsoftonline.com/{tenant}/.
func (d *devIDP) addRoutes(mux router, logger *slog.Logger) {
	const p = "/devidp/{tenant}/"
	mux.Handle("GET "+p+"v2.0/.well-known/openid-configuration", d.handleDiscovery())
	mux.Handle("GET "+p+"discovery/v2.0/keys", d.handleKeys())
	mux.Handle("GET "+p+"oauth2/v2.0/authorize", d.handleAuthorize(logger))
	mux.Handle("POST "+p+"oauth2/v2.0/authorize", d.handleSignIn(logger))
	mux.Handle("POST "+p+"oauth2/v2.0/token", d.handleToken(logger))
	mux.Handle("GET "+p+"oauth2/v2.0/logout", d.handleLogout(logger))
	mux.Handle("GET "+devIdentityPath, d.handleIdentity(logger))
	mux.Handle("GET "+devGraphPath+"/v1.0/me", d.handleGraphMe(logger))
}

// ready returns the service's URL that getenv recorded, or the error to
// answer: 503 before getenv, and AADSTS90002 for a {tenant} other than the
// dev one (GUIDs compare case-insensitively, as Entra's do).
func (d *devIDP) ready(r *http.Request) (string, *devOAuthError) {
	base := d.baseURL()
	switch {
	case base == "":
		return "", errDevNotConfigured
	case !strings.EqualFold(r.PathValue("tenant"), devTenantID):
		return "", errDevUnknownTenant
	}
	return base, nil
}

// The errors of ready.
var (
	errDevNotConfigured = &devOAuthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", aadsts: 90033,
		desc: "The dev identity provider is not configured yet."}
	errDevUnknownTenant = &devOAuthError{status: http.StatusBadRequest, code: "invalid_tenant", aadsts: 90002,
		desc: "Tenant not found. The dev identity provider serves only tenant " + devTenantID + "."}
)

// devIssuer is the v2 issuer of the dev tenant: {base}/devidp/{tenant}/v2.0.
func devIssuer(base string) string { return base + "/devidp/" + devTenantID + "/v2.0" }

// devTenantBase is the prefix of the dev tenant's endpoints.
func devTenantBase(base string) string { return base + "/devidp/" + devTenantID }

// handleDiscovery serves GET /devidp/{tenant}/v2.0/.well-known/openid-configuration:
// the OpenID Provider Metadata (OpenID Connect Discovery 1.0 §3), shaped
// like Entra's v2.0 document but listing only what the dev provider does.
func (d *devIDP) handleDiscovery() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, e := d.ready(r)
		if e != nil {
			devWriteError(w, e)
			return
		}
		t := devTenantBase(base)
		w.Header().Set("Cache-Control", "no-cache")
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                devIssuer(base),
			"authorization_endpoint":                t + "/oauth2/v2.0/authorize",
			"token_endpoint":                        t + "/oauth2/v2.0/token",
			"jwks_uri":                              t + "/discovery/v2.0/keys",
			"end_session_endpoint":                  t + "/oauth2/v2.0/logout",
			"response_types_supported":              []string{"code"},
			"response_modes_supported":              []string{"query"},
			"grant_types_supported":                 []string{"authorization_code", "refresh_token", jwtBearerGrant},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt", "none"},
			"code_challenge_methods_supported":      []string{"S256"},
			"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
			"claims_supported": []string{"sub", "iss", "aud", "exp", "iat", "nbf", "nonce",
				"name", "preferred_username", "oid", "tid", "ver", "azp", "scp", "acrs"},
			"claims_parameter_supported":      true,
			"request_uri_parameter_supported": false,
			"http_logout_supported":           true,
			"tenant_region_scope":             "WW",
			"cloud_instance_name":             "devidp.localhost",
		})
	})
}

// handleKeys serves GET /devidp/{tenant}/discovery/v2.0/keys: the JWK Set
// (RFC 7517 §5) with the one signing key. Like Entra's v2 keys, the key
// carries an issuer member with the {tenantid} template.
func (d *devIDP) handleKeys() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, e := d.ready(r)
		if e != nil {
			devWriteError(w, e)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		jwk := publicJWK(&d.key.PublicKey, d.kid, base+"/devidp/{tenantid}/v2.0")
		writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{jwk}})
	})
}

// devOAuthError is an OAuth error answer (RFC 6749 §4.1.2.1 for the
// authorization endpoint, §5.2 for the token endpoint) with Entra's
// AADSTS number. A zero status means the error is sent back to the client's
// redirect URI; a non-zero one means it is shown to the user (authorize) or
// is the HTTP status of the JSON answer (token).
type devOAuthError struct {
	status int    // HTTP status when answered directly
	code   string // the OAuth error code, e.g. invalid_grant
	aadsts int    // Entra's error number, e.g. 70008
	desc   string // error_description without the AADSTS prefix
	// suberror refines code as Entra's answers do (consent_required …);
	// "" sends none.
	suberror string
}

// Error returns "devidp: <code>: AADSTS<n>: <description>".
func (e *devOAuthError) Error() string {
	return fmt.Sprintf("devidp: %s: AADSTS%d: %s", e.code, e.aadsts, e.desc)
}

// Code is the OAuth error code, for the error page.
func (e *devOAuthError) Code() string { return e.code }

// Description is the error_description as Entra writes it, AADSTS number
// first.
func (e *devOAuthError) Description() string { return fmt.Sprintf("AADSTS%d: %s", e.aadsts, e.desc) }

// devWriteError writes e in the shape of Entra's JSON error answers:
// error, error_description (with the trace and correlation ids and the
// time appended), error_codes, timestamp, trace_id and correlation_id,
// and suberror when e has one.
func devWriteError(w http.ResponseWriter, e *devOAuthError) {
	trace, corr := newHeroID(), newHeroID()
	ts := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	devPageHeaders(w)
	body := map[string]any{
		"error":             e.code,
		"error_description": fmt.Sprintf("%s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", e.Description(), trace, corr, ts),
		"error_codes":       []int{e.aadsts},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
	}
	if e.suberror != "" {
		body["suberror"] = e.suberror
	}
	writeJSON(w, e.status, body)
}

// devObjectID is the user's oid: a UUID derived from the user name
// (case-insensitively), so the same name is the same user in every run.
// It is a version 8 (custom) UUID of RFC 9562 §5.8, made from SHA-256.
func devObjectID(user string) string {
	sum := sha256.Sum256([]byte("devidp oid\x00" + strings.ToLower(user)))
	var b [16]byte
	copy(b[:], sum[:16])
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// devSubject is the user's sub for the dev client: like Entra's, a
// pairwise identifier (unique per user and application), 43 base64url
// characters.
func devSubject(clientID, oid string) string {
	sum := sha256.Sum256([]byte("devidp sub\x00" + clientID + "\x00" + oid))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// devScope is a parsed scope parameter (RFC 6749 §3.3).
type devScope struct {
	api     []string // API scope names asked for, in devAPIScopes order, no duplicates
	openid  bool
	offline bool
}

// errDevBadScope is wrapped by parseDevScope's errors.
var errDevBadScope = errors.New("devidp: invalid scope")

// parseDevScope parses a scope parameter: space-delimited, case-sensitive
// values (RFC 6749 §3.3). It accepts the OpenID Connect scopes openid,
// profile, email and offline_access, and the dev API's scopes written as
// Entra takes them, "api://<client id>/<name>" or "<client id>/<name>", where
// <name> is a devAPIScopes name or ".default" (every API scope). Any other
// value, or a parameter longer than devMaxScope bytes, is an error wrapping
// errDevBadScope that names the value.
func parseDevScope(s string) (devScope, error) {
	var sc devScope
	if len(s) > devMaxScope {
		return devScope{}, fmt.Errorf("%w: longer than %d bytes", errDevBadScope, devMaxScope)
	}
	asked := map[string]bool{}
	for _, v := range strings.Split(s, " ") {
		switch v {
		case "", "profile", "email":
			continue
		case "openid":
			sc.openid = true
			continue
		case "offline_access":
			sc.offline = true
			continue
		}
		name, ok := strings.CutPrefix(v, "api://"+devClientID+"/")
		if !ok {
			name, ok = strings.CutPrefix(v, devClientID+"/")
		}
		switch {
		case ok && name == ".default":
			for _, n := range devAPIScopes() {
				asked[n] = true
			}
		case ok && slices.Contains(devAPIScopes(), name):
			asked[name] = true
		default:
			return devScope{}, fmt.Errorf("%w: the scope %q is not valid", errDevBadScope, truncate(v, 40))
		}
	}
	sc.api = slices.DeleteFunc(devAPIScopes(), func(n string) bool { return !asked[n] })
	return sc, nil
}

// devAuthRequest is a validated authorization request (RFC 6749 §4.1.1,
// RFC 7636 §4.3, OpenID Connect Core §3.1.2.1). Its exported fields are the
// request's parameters, carried through the sign-in form as hidden fields.
type devAuthRequest struct {
	ClientID            string
	RedirectURI         string
	ResponseType        string
	ResponseMode        string
	Scope               string
	State               string
	Nonce               string
	CodeChallenge       string
	CodeChallengeMethod string
	Prompt              string
	LoginHint           string
	Claims              string // the claims request (OpenID Connect Core §5.5), as sent

	scope devScope // Scope, parsed
	acrs  []string // authentication context ids Claims asks the access token for
}

// devAuthParams are the authorization request's parameters, each of which
// may appear at most once (RFC 6749 §3.1).
var devAuthParams = []string{"client_id", "redirect_uri", "response_type", "response_mode", "scope",
	"state", "nonce", "code_challenge", "code_challenge_method", "prompt", "login_hint", "claims"}

// devRedirectURIs are the dev client's registered redirect URIs for a
// service at base: the sign-in's, a "Web" redirect URI (confidential client),
// and Swagger UI's at /docs, a "Single-page application" one (public client:
// PKCE, no secret, redeemed by the browser; see devSPARedirect).
func devRedirectURIs(base string) []string {
	return []string{base + "/auth/callback", base + docsRedirectPath}
}

// devSPARedirect reports whether uri is the single-page-application
// redirect URI of a service at base.
func devSPARedirect(base, uri string) bool { return uri == base+docsRedirectPath }

// parseDevAuthRequest validates an authorization request's parameters against
// the one registered client of a service at base (devRedirectURIs). A bad
// client_id or redirect_uri gives an error with a status, to be shown to the
// user and never redirected (RFC 6749 §4.1.2.1); any other problem gives an
// error with status 0, to be sent to the redirect URI. The returned request
// always holds the state when it is usable, so that errors can carry it.
func parseDevAuthRequest(v url.Values, base string) (devAuthRequest, *devOAuthError) {
	for _, p := range []string{"client_id", "redirect_uri"} {
		if len(v[p]) > 1 {
			return devAuthRequest{}, &devOAuthError{status: http.StatusBadRequest, code: "invalid_request",
				aadsts: 90015, desc: "The parameter '" + p + "' is duplicated."}
		}
	}
	req := devAuthRequest{
		ClientID:            v.Get("client_id"),
		RedirectURI:         v.Get("redirect_uri"),
		ResponseType:        v.Get("response_type"),
		ResponseMode:        v.Get("response_mode"),
		Scope:               v.Get("scope"),
		State:               v.Get("state"),
		Nonce:               v.Get("nonce"),
		CodeChallenge:       v.Get("code_challenge"),
		CodeChallengeMethod: v.Get("code_challenge_method"),
		Prompt:              v.Get("prompt"),
		LoginHint:           v.Get("login_hint"),
		Claims:              v.Get("claims"),
	}
	switch {
	case req.ClientID != devClientID:
		return devAuthRequest{}, &devOAuthError{status: http.StatusBadRequest, code: "unauthorized_client", aadsts: 700016,
			desc: "Application with the given client_id was not found in the directory. The dev client id is " + devClientID + "."}
	case !slices.Contains(devRedirectURIs(base), req.RedirectURI):
		return devAuthRequest{}, &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 50011,
			desc: "The redirect URI in the request does not match the redirect URIs configured for the application: " +
				strings.Join(devRedirectURIs(base), " (Web), ") + " (Single-page application)."}
	}
	if len(req.State) > devMaxParam {
		req.State = "" // too long to echo back
		return req, devRedirectable("invalid_request", 9002313, "The state parameter is too long.")
	}
	for _, p := range devAuthParams {
		if len(v[p]) > 1 {
			return req, devRedirectable("invalid_request", 90015, "The parameter '"+p+"' is duplicated.")
		}
	}
	return req, req.validate()
}

// devRedirectable is an error to be sent back to the client's redirect URI.
func devRedirectable(code string, aadsts int, desc string) *devOAuthError {
	return &devOAuthError{code: code, aadsts: aadsts, desc: desc}
}

// validate checks the parameters other than client_id and redirect_uri,
// and fills in req.scope. Its errors are all devRedirectable.
func (req *devAuthRequest) validate() *devOAuthError {
	switch {
	case req.ResponseType == "":
		return devRedirectable("invalid_request", 900144, "The request must contain the parameter 'response_type'.")
	case req.ResponseType != "code":
		return devRedirectable("unsupported_response_type", 70005, "response_type '"+truncate(req.ResponseType, 40)+"' is not enabled for the application; use code.")
	case req.ResponseMode != "" && req.ResponseMode != "query":
		return devRedirectable("invalid_request", 9002313, "The dev identity provider supports response_mode=query only.")
	case req.CodeChallenge == "":
		return devRedirectable("invalid_request", 9002325, "Proof Key for Code Exchange is required: send code_challenge and code_challenge_method=S256.")
	case req.CodeChallengeMethod != "S256":
		return devRedirectable("invalid_request", 9002313, "The code_challenge_method must be S256 (RFC 7636 §4.3); plain is not accepted.")
	case !devIsS256Challenge(req.CodeChallenge):
		return devRedirectable("invalid_request", 9002313, "The code_challenge is not 43 base64url characters (RFC 7636 §4.2).")
	case len(req.Nonce) > devMaxParam || len(req.LoginHint) > devMaxParam:
		return devRedirectable("invalid_request", 9002313, "The nonce or login_hint parameter is too long.")
	case req.Prompt == "none":
		return devRedirectable("login_required", 50058, "A silent sign-in was requested but no user is signed in to the dev identity provider.")
	case req.Prompt != "" && req.Prompt != "login" && req.Prompt != "consent" && req.Prompt != "select_account":
		return devRedirectable("invalid_request", 9002313, "The prompt parameter must be login, none, consent or select_account.")
	case req.Scope == "":
		return devRedirectable("invalid_request", 900144, "The request must contain the parameter 'scope'.")
	}
	sc, err := parseDevScope(req.Scope)
	if err != nil {
		return devRedirectable("invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid: "+strings.TrimPrefix(err.Error(), errDevBadScope.Error()+": ")+".")
	}
	req.scope = sc
	if req.acrs, err = devRequestedAuthContexts(req.Claims); err != nil {
		return devRedirectable("invalid_request", 90100, "The claims parameter is not valid: "+err.Error()+".")
	}
	return nil
}

// devRequestedAuthContexts reads the authentication context ids a claims
// request (OpenID Connect Core §5.5) asks the access token to carry:
// access_token.acrs's value or values (§5.5.1), as Microsoft's developer
// guide for authentication context builds the request. Each must be an id
// c1…c99. Other requested claims are ignored, as §5.5 says of claims not
// understood. "" asks for nothing.
func devRequestedAuthContexts(claims string) ([]string, error) {
	if claims == "" {
		return nil, nil
	}
	var req struct {
		AccessToken struct {
			Acrs *struct {
				Value  string   `json:"value"`
				Values []string `json:"values"`
			} `json:"acrs"`
		} `json:"access_token"`
	}
	if len(claims) > devMaxScope || json.Unmarshal([]byte(claims), &req) != nil {
		return nil, errors.New("it must be a JSON object of at most 2048 bytes")
	}
	if req.AccessToken.Acrs == nil {
		return nil, nil
	}
	ids := append(slices.Clone(req.AccessToken.Acrs.Values), req.AccessToken.Acrs.Value)
	ids = slices.DeleteFunc(ids, func(id string) bool { return id == "" })
	for _, id := range ids {
		if !authContextPattern.MatchString(id) {
			return nil, fmt.Errorf("%q is not an authentication context id c1 to c99", truncate(id, 20))
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// devIsS256Challenge reports whether s can be an S256 code_challenge: the
// unpadded base64url encoding of a SHA-256 hash (RFC 7636 §4.2).
func devIsS256Challenge(s string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// devErrorRedirect is the client's redirect URI with an error response added to
// its query (RFC 6749 §4.1.2.1): error, error_description and state.
func devErrorRedirect(redirectURI, state string, e *devOAuthError) string {
	q := url.Values{"error": {e.code}, "error_description": {e.Description()}}
	if state != "" {
		q.Set("state", state)
	}
	return devWithQuery(redirectURI, q)
}

// devWithQuery adds q to the query of the absolute URL u, keeping what u has.
// u is always a URL the provider checked or built, so a parse error cannot
// happen; if it did, the query is appended as is.
func devWithQuery(u string, q url.Values) string {
	p, err := url.Parse(u)
	if err != nil {
		return u + "?" + q.Encode()
	}
	old := p.Query()
	maps.Copy(old, q)
	p.RawQuery = old.Encode()
	return p.String()
}

// devPageHeaders forbids caching every page, redirect and JSON answer of the
// provider, as they carry state, codes, tokens or user input. The service's
// securityHeaders adds the rest (no framing, no scripts, no Referer).
func devPageHeaders(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// devRenderPage writes the named page of devPages with status and the
// provider's page headers (renderPage), logging a template error.
func devRenderPage(w http.ResponseWriter, logger *slog.Logger, status int, name string, data any) {
	devPageHeaders(w)
	if err := renderPage(w, devPages, status, name, data); err != nil {
		logger.Error("devidp: rendering a page", "page", name, "err", err)
	}
}

// devAnswerAuthError shows e to the user when it cannot be redirected, and
// redirects it to the client otherwise.
func devAnswerAuthError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, req devAuthRequest, e *devOAuthError) {
	logger.Info("devidp: authorization request refused", "error", e.code, "aadsts", e.aadsts)
	if e.status != 0 {
		devRenderPage(w, logger, e.status, "error", e)
		return
	}
	devPageHeaders(w)
	http.Redirect(w, r, devErrorRedirect(req.RedirectURI, req.State, e), http.StatusFound)
}

// devSignInPage is the data of the sign-in form.
type devSignInPage struct {
	Action  string // the form's action: this endpoint's path
	Req     devAuthRequest
	User    string
	Problem string // why the last attempt failed, or ""
	Scopes  []devScopeBox
	// StepUp lists the authentication context ids the claims request asks
	// for: the form then asks the user to confirm a second step.
	StepUp []string
}

// devScopeBox is one scope checkbox of the sign-in form.
type devScopeBox struct {
	Name    string
	Checked bool
}

// devSignInForm builds the sign-in form for req: the API scopes req asked for
// are ticked unless checked says otherwise (a form being shown again).
func devSignInForm(req devAuthRequest, user, problem string, checked []string) devSignInPage {
	p := devSignInPage{Action: "/devidp/" + devTenantID + "/oauth2/v2.0/authorize", Req: req, User: user, Problem: problem, StepUp: req.acrs}
	if checked == nil {
		checked = req.scope.api
	}
	for _, n := range devAPIScopes() {
		p.Scopes = append(p.Scopes, devScopeBox{Name: n, Checked: slices.Contains(checked, n)})
	}
	return p
}

// handleAuthorize serves GET /devidp/{tenant}/oauth2/v2.0/authorize: it
// validates the authorization request (RFC 6749 §4.1.1 with PKCE S256
// required, RFC 7636 §4.3) and shows the sign-in form, on which the user
// types a name and picks the scopes to grant.
func (d *devIDP) handleAuthorize(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, e := d.ready(r)
		if e != nil {
			devRenderPage(w, logger, e.status, "error", e)
			return
		}
		req, e := parseDevAuthRequest(r.URL.Query(), base)
		if e != nil {
			devAnswerAuthError(w, r, logger, req, e)
			return
		}
		devRenderPage(w, logger, http.StatusOK, "signin", devSignInForm(req, req.LoginHint, "", nil))
	})
}

// devParseForm reads a form body of at most devMaxForm bytes into
// r.PostForm; the handlers read only r.PostForm, never the URL's query. It
// returns 0, or the status of the failure: 415 for a body that is not
// application/x-www-form-urlencoded, 413 for one over devMaxForm, 400 for
// one that cannot be read or parsed (a malformed query included, as
// r.ParseForm reads it too).
func devParseForm(w http.ResponseWriter, r *http.Request) int {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return http.StatusUnsupportedMediaType
	}
	r.Body = http.MaxBytesReader(w, r.Body, devMaxForm)
	if err := r.ParseForm(); err != nil {
		return bodyErrorStatus(err)
	}
	return 0
}

// handleSignIn serves POST /devidp/{tenant}/oauth2/v2.0/authorize: the
// sign-in form. It validates the authorization request again (the hidden
// fields are client input like any other), then either sends access_denied
// (the user cancelled), shows the form again (bad user name, no scope
// ticked), or issues a single-use code bound to the client, redirect URI,
// PKCE challenge, nonce, user and granted scopes, and redirects (302) to the
// redirect URI with code and state (RFC 6749 §4.1.2).
func (d *devIDP) handleSignIn(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, e := d.ready(r)
		if e != nil {
			devRenderPage(w, logger, e.status, "error", e)
			return
		}
		if status := devParseForm(w, r); status != 0 {
			devRenderPage(w, logger, status, "error", &devOAuthError{code: "invalid_request", aadsts: 9002313,
				desc: "The sign-in form could not be read: " + http.StatusText(status) + "."})
			return
		}
		f := r.PostForm
		req, e := parseDevAuthRequest(f, base)
		if e != nil {
			devAnswerAuthError(w, r, logger, req, e)
			return
		}
		if f.Get("action") == "cancel" {
			devAnswerAuthError(w, r, logger, req, devRedirectable("access_denied", 65004, "The user declined to sign in."))
			return
		}
		granted := devGrantedScopes(f["grant"])
		user, problem := devUserName(f.Get("username"))
		if problem == "" && len(granted) == 0 {
			// Entra never issues an access token for an API without a
			// scope, and the service refuses one (no scp, no roles).
			problem = "Tick at least one scope. To see the API refuse you, grant Heroes.Read and try to add or delete a hero."
		}
		if problem == "" && len(req.acrs) > 0 && f.Get("stepup") != "confirmed" {
			problem = "Confirm the second step: the application asks for authentication context " + strings.Join(req.acrs, ", ") + "."
		}
		if problem != "" {
			devRenderPage(w, logger, http.StatusBadRequest, "signin", devSignInForm(req, truncate(f.Get("username"), 4*devMaxUser), problem, granted))
			return
		}
		code, e := d.issueCode(req, user, granted, devSPARedirect(base, req.RedirectURI))
		if e != nil {
			devAnswerAuthError(w, r, logger, req, e)
			return
		}
		logger.Info("devidp: signed in", "user", user, "scopes", strings.Join(granted, " "), "acrs", strings.Join(req.acrs, " "))
		devPageHeaders(w)
		q := url.Values{"code": {code}}
		if req.State != "" {
			q.Set("state", req.State) // RFC 6749 §4.1.2: returned when the client sent it
		}
		http.Redirect(w, r, devWithQuery(req.RedirectURI, q), http.StatusFound)
	})
}

// devGrantedScopes keeps the known API scope names among the ticked boxes, in
// devAPIScopes order; anything else is ignored.
func devGrantedScopes(ticked []string) []string {
	return slices.DeleteFunc(devAPIScopes(), func(n string) bool { return !slices.Contains(ticked, n) })
}

// devUserName checks a user name typed in the sign-in form: trimmed, 1 to
// devMaxUser characters of valid UTF-8 without control characters. It
// returns the trimmed name, or a problem: a sentence to show the user.
func devUserName(s string) (name, problem string) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", "Enter a user name."
	case !utf8.ValidString(s):
		return "", "The user name is not valid UTF-8."
	case utf8.RuneCountInString(s) > devMaxUser:
		return "", fmt.Sprintf("The user name is longer than %d characters.", devMaxUser)
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", "The user name contains control characters."
	}
	return s, ""
}

// issueCode stores a new authorization code for req's grant and returns it.
// public marks a code for the single-page-application redirect URI: it is
// redeemed without a secret, and mints no refresh token (Swagger UI asks
// for none). Expired codes are dropped first; when devMaxCodes are still
// outstanding it refuses with temporarily_unavailable rather than evict a
// live one.
func (d *devIDP) issueCode(req devAuthRequest, user string, granted []string, public bool) (string, *devOAuthError) {
	now := d.now()
	code := rand.Text()
	c := devCode{
		devGrant: devGrant{
			clientID: req.ClientID,
			user:     user,
			scopes:   granted,
			openid:   req.scope.openid,
			offline:  req.scope.offline && !public,
			public:   public,
			acrs:     req.acrs,
			family:   rand.Text(),
			expires:  now.Add(devCodeTTL),
		},
		redirectURI: req.RedirectURI,
		challenge:   req.CodeChallenge,
		nonce:       req.Nonce,
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	devPrune(d.codes, now)
	if len(d.codes) >= devMaxCodes {
		return "", devRedirectable("temporarily_unavailable", 90033, "Too many sign-ins are in progress; try again in a minute.")
	}
	d.codes[code] = c
	return code, nil
}

// devPrune deletes the entries of m that have expired at now. It is
// linear in len(m), which the callers bound.
func devPrune[V interface{ expiry() time.Time }](m map[string]V, now time.Time) {
	for k, v := range m {
		if !now.Before(v.expiry()) {
			delete(m, k)
		}
	}
}

// devEvict deletes expired entries of m and, if m still holds max
// entries or more, the ones expiring soonest until one more fits.
func devEvict[V interface{ expiry() time.Time }](m map[string]V, now time.Time, max int) {
	devPrune(m, now)
	for len(m) >= max {
		var victim string
		var at time.Time
		for k, v := range m {
			if victim == "" || v.expiry().Before(at) {
				victim, at = k, v.expiry()
			}
		}
		delete(m, victim)
	}
}

// Token endpoint errors, in Entra's words.
var (
	errDevNoSecret = &devOAuthError{status: http.StatusUnauthorized, code: "invalid_client", aadsts: 7000218,
		desc: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	errDevBadSecret = &devOAuthError{status: http.StatusUnauthorized, code: "invalid_client", aadsts: 7000215,
		desc: "Invalid client secret provided. Use the AZURE_CLIENT_SECRET the dev provider set for this process."}
	errDevUnknownClient = &devOAuthError{status: http.StatusBadRequest, code: "unauthorized_client", aadsts: 700016,
		desc: "Application with the given client_id was not found in the directory."}
	errDevTwoClientAuths = &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 9002313,
		desc: "The client authenticated with more than one method (RFC 6749 §2.3)."}
	errDevBadBasic = &devOAuthError{status: http.StatusUnauthorized, code: "invalid_client", aadsts: 7000215,
		desc: "The HTTP Basic credentials are not form-urlencoded client_id:client_secret (RFC 6749 §2.3.1)."}
	errDevAssertionType = &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 9002313,
		desc: "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer."}
	errDevExpired = &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 70008,
		desc: "The provided authorization code or refresh token has expired due to inactivity, or is not valid. Send a new interactive authorization request."}
	errDevCodeRedeemed = &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 54005,
		desc: "OAuth2 Authorization code was already redeemed, please retry with a new valid code. Tokens issued from it are revoked."}
	errDevRefreshReused = &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 70000,
		desc: "The refresh token was already used. Every refresh token of this sign-in is revoked; sign in again."}
	errDevRevoked = &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 70000,
		desc: "The grant was revoked because a code or refresh token of it was replayed; sign in again."}
	errDevRedirectMismatch = &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 50011,
		desc: "The redirect_uri does not match the one the authorization code was issued for."}
	errDevPKCE = &devOAuthError{status: http.StatusBadRequest, code: "invalid_grant", aadsts: 501481,
		desc: "The code_verifier does not match the code_challenge supplied in the authorization request."}
)

// devMissing is Entra's error for a required parameter left out.
func devMissing(name string) *devOAuthError {
	return &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 900144,
		desc: "The request body must contain the following parameter: '" + name + "'."}
}

// devTokenParams are the token request's parameters, each of which may
// appear at most once (RFC 6749 §3.2).
var devTokenParams = []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token",
	"scope", "client_id", "client_secret", "client_assertion", "client_assertion_type", "assertion", "requested_token_use", "claims"}

// handleToken serves POST /devidp/{tenant}/oauth2/v2.0/token (RFC 6749
// §3.2): grant_type authorization_code (§4.1.3, with the PKCE check of RFC
// 7636 §4.6) and refresh_token (§6, single-use tokens rotated on every
// redemption). The client authenticates with client_secret in the body,
// HTTP Basic (§2.3.1), or a federated client assertion (RFC 7523 §2.2,
// authenticateAssertion). Answers are Entra's: a token response (§5.1) or an
// error JSON with error_codes (§5.2), both with Cache-Control: no-store.
func (d *devIDP) handleToken(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, e := d.token(w, r)
		if e != nil {
			logger.Info("devidp: token request refused", "error", e.code, "aadsts", e.aadsts)
			if _, _, basic := r.BasicAuth(); basic && e.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Basic realm="devidp", charset="UTF-8"`)
			}
			devWriteError(w, e)
			return
		}
		devPageHeaders(w)
		writeJSON(w, http.StatusOK, resp)
	})
}

// token reads and checks a token request and, when it is good, returns the
// token response.
func (d *devIDP) token(w http.ResponseWriter, r *http.Request) (map[string]any, *devOAuthError) {
	base, e := d.ready(r)
	if e != nil {
		return nil, e
	}
	if status := devParseForm(w, r); status != 0 {
		return nil, &devOAuthError{status: status, code: "invalid_request", aadsts: 9002313,
			desc: "The token request body could not be read: " + http.StatusText(status) + "."}
	}
	f := r.PostForm
	for _, p := range devTokenParams {
		if len(f[p]) > 1 {
			return nil, &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 90015,
				desc: "The parameter '" + p + "' is duplicated."}
		}
	}
	spa := f.Get("grant_type") == "authorization_code" && devSPARedirect(base, f.Get("redirect_uri"))
	if e := d.authenticateClient(r, f, base, spa); e != nil {
		return nil, e
	}
	now := d.now()
	switch f.Get("grant_type") {
	case "authorization_code":
		c, e := d.redeemCode(f, now)
		if e != nil {
			return nil, e
		}
		return d.mint(base, c.devGrant, c.scopes, c.nonce, now)
	case "refresh_token":
		g, scopes, e := d.redeemRefresh(f, now)
		if e != nil {
			return nil, e
		}
		return d.mint(base, g, scopes, "", now)
	case jwtBearerGrant:
		return d.onBehalfOf(base, f, now)
	case "":
		return nil, devMissing("grant_type")
	}
	return nil, &devOAuthError{status: http.StatusBadRequest, code: "unsupported_grant_type", aadsts: 70003,
		desc: "The app requested an unsupported grant type; the dev provider knows authorization_code, refresh_token and the on-behalf-of jwt-bearer grant."}
}

// authenticateClient checks the client's credentials: client_id and
// client_secret in the body, or the same form-urlencoded in HTTP Basic
// (RFC 6749 §2.3.1), never both; or a client assertion
// (authenticateAssertion). The secret is compared in constant time.
// As Entra does, a request with an Origin header (a browser's) must be a
// single-page application's (spa: a code for that redirect URI), which
// shows no secret and must come from a browser (authenticatePublic).
func (d *devIDP) authenticateClient(r *http.Request, f url.Values, base string, spa bool) *devOAuthError {
	if spa {
		return authenticatePublic(r, f)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		return &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 9002326,
			desc: "Cross-origin token redemption is permitted only for the 'Single-Page Application' client-type. Request origin: '" + truncate(origin, 100) + "'."}
	}
	if f.Has("client_assertion") || f.Has("client_assertion_type") {
		return d.authenticateAssertion(r, f, base)
	}
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if bu, bp, ok := r.BasicAuth(); ok {
		if f.Has("client_secret") {
			return errDevTwoClientAuths
		}
		bid, err1 := url.QueryUnescape(bu)
		bsecret, err2 := url.QueryUnescape(bp)
		if err1 != nil || err2 != nil || (id != "" && id != bid) {
			return errDevBadBasic
		}
		id, secret = bid, bsecret
	}
	switch {
	case id == "":
		return devMissing("client_id")
	case id != devClientID:
		return errDevUnknownClient
	case secret == "":
		return errDevNoSecret
	case !d.secretMatches(secret):
		return errDevBadSecret
	}
	return nil
}

// authenticateAssertion checks a client assertion (RFC 7521 §4.2, RFC 7523
// §2.2) as Entra checks one against an app's federated credentials: the
// dev client's one federated credential is the dev managed identity
// (devFederatedCredential). No secret or HTTP Basic may come with it.
func (d *devIDP) authenticateAssertion(r *http.Request, f url.Values, base string) *devOAuthError {
	_, _, basic := r.BasicAuth()
	switch {
	case basic || f.Has("client_secret"):
		return errDevTwoClientAuths
	case f.Get("client_assertion_type") != clientAssertionType:
		return errDevAssertionType
	case f.Get("client_assertion") == "":
		return devMissing("client_assertion")
	case f.Get("client_id") == "":
		return devMissing("client_id")
	case f.Get("client_id") != devClientID:
		return errDevUnknownClient
	}
	if code, desc := devFederatedCredential(base, &d.key.PublicKey).check(f.Get("client_assertion"), d.now()); code != 0 {
		return &devOAuthError{status: http.StatusUnauthorized, code: "invalid_client", aadsts: code, desc: desc}
	}
	return nil
}

// federatedCredential is a federated identity credential of an app
// registration as Entra keeps one (Microsoft Learn, "Workload identity
// federation"): the issuer, subject and audience a client assertion must
// carry, and the issuer's signing key (Entra reads it from the issuer's
// discovery document; the dev and test providers are given it).
type federatedCredential struct {
	Issuer, Subject, Audience string
	Key                       *rsa.PublicKey
}

// devFederatedCredential is the dev client's federated credential: the dev
// managed identity's tokens, which the dev provider itself issues (as
// Entra issues a managed identity's): issuer the dev tenant's v2.0 issuer,
// subject the identity's principal id, audience api://AzureADTokenExchange.
func devFederatedCredential(base string, key *rsa.PublicKey) federatedCredential {
	return federatedCredential{Issuer: devIssuer(base), Subject: devIdentityPrincipalID, Audience: defaultExchangeAud, Key: key}
}

// check checks a client assertion against fc as Entra does: a compact JWS
// signed RS256 by fc.Key (parseToken's header rules), whose iss and sub
// equal fc's and whose aud holds fc.Audience, exactly, within exp and nbf
// at now with a minute of leeway. It returns 0 when the assertion passes,
// else Entra's error code and message: AADSTS50027 (not a JWT), 700027
// (signature), 700211 (issuer), 700212 (audience), 700213 (subject),
// 700024 (time).
func (fc federatedCredential) check(raw string, now time.Time) (int, string) {
	t := new(jws)
	if err := t.screen(raw); err != nil || t.parse() != nil {
		return 50027, "The client assertion is not a valid JWT."
	}
	if verifyRS256(fc.Key, t.sum, t.signature) != nil {
		return 700027, "Client assertion failed signature validation."
	}
	switch c := &t.claims; {
	case c.Issuer != fc.Issuer:
		return 700211, "No matching federated identity record found for presented assertion issuer."
	case !slices.Contains(c.Audience, fc.Audience):
		return 700212, "No matching federated identity record found for presented assertion audience."
	case c.Subject != fc.Subject:
		return 700213, "No matching federated identity record found for presented assertion subject."
	case checkTime(c, now, time.Minute) != nil:
		return 700024, "Client assertion is not within its valid time range."
	}
	return 0, ""
}

// authenticatePublic checks a token request of the public client (Entra's
// "Single-page application" redirect URI, RFC 6749 §2.1): the client_id
// alone, no secret or assertion (AADSTS700025), and an Origin header
// (AADSTS9002327: such codes are redeemed by the browser only). PKCE, which
// redeemCode checks, is what binds the code to its client (RFC 7636 §1).
func authenticatePublic(r *http.Request, f url.Values) *devOAuthError {
	_, _, basic := r.BasicAuth()
	switch id := f.Get("client_id"); {
	case basic || f.Has("client_secret") || f.Has("client_assertion") || f.Has("client_assertion_type"):
		return &devOAuthError{status: http.StatusBadRequest, code: "invalid_client", aadsts: 700025,
			desc: "Client is public so neither 'client_assertion' nor 'client_secret' should be presented."}
	case r.Header.Get("Origin") == "":
		return &devOAuthError{status: http.StatusBadRequest, code: "invalid_request", aadsts: 9002327,
			desc: "Tokens issued for the 'Single-Page Application' client-type may only be redeemed via cross-origin requests."}
	case id == "":
		return devMissing("client_id")
	case id != devClientID:
		return errDevUnknownClient
	}
	return nil
}

// secretMatches compares secret with the client secret in constant time.
// Both are hashed first so that not even the length leaks.
func (d *devIDP) secretMatches(secret string) bool {
	got, want := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(d.secret))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// redeemCode takes the code of an authorization_code grant (RFC 6749
// §4.1.3, see take). The redirect URI must match and the code_verifier must
// hash to the challenge (RFC 7636 §4.6).
func (d *devIDP) redeemCode(f url.Values, now time.Time) (devCode, *devOAuthError) {
	code := f.Get("code")
	if code == "" {
		return devCode{}, devMissing("code")
	}
	if len(code) > devMaxParam {
		return devCode{}, errDevExpired // no code is this long: not worth a lookup
	}
	d.mu.Lock()
	c, e := take(d, d.codes, code, f.Get("client_id"), now, errDevCodeRedeemed)
	d.mu.Unlock()
	switch {
	case e != nil:
		return devCode{}, e
	case f.Get("redirect_uri") != c.redirectURI:
		return devCode{}, errDevRedirectMismatch
	case f.Get("code_verifier") == "":
		return devCode{}, devMissing("code_verifier")
	case !devPKCEMatches(f.Get("code_verifier"), c.challenge):
		return devCode{}, errDevPKCE
	}
	return c, nil
}

// take spends the single-use code or refresh token v of m. It is deleted
// under the lock that reads it (d.mu, which the caller holds), so it works
// once even when two requests race, and a failed check after take still
// spends it. It is then remembered until it would have expired, so that a
// replay answers replayErr and revokes every refresh token of its family
// (RFC 6749 §4.1.2, RFC 9700 §4.14.2). An unknown or expired v, or one
// issued to another client than a non-empty clientID, is errDevExpired: it
// does not exist for this client.
func take[V interface{ grant() devGrant }](d *devIDP, m map[string]V, v, clientID string, now time.Time, replayErr *devOAuthError) (V, *devOAuthError) {
	var zero V
	got, ok := m[v]
	if !ok {
		if d.revokeIfSpent(v, now) {
			return zero, replayErr
		}
		return zero, errDevExpired
	}
	delete(m, v)
	g := got.grant()
	devEvict(d.spent, now, devMaxSpent)
	d.spent[v] = devSpent{family: g.family, expires: g.expires}
	if !now.Before(g.expires) || clientID != "" && clientID != g.clientID {
		return zero, errDevExpired
	}
	return got, nil
}

// revokeIfSpent reports whether v is a redeemed code or refresh token that
// has not yet expired, and if so deletes every refresh token of its family
// and marks the family revoked, so that a redemption of the same family
// still in flight mints nothing. d.mu must be held.
func (d *devIDP) revokeIfSpent(v string, now time.Time) bool {
	s, ok := d.spent[v]
	if !ok || !now.Before(s.expires) {
		return false
	}
	maps.DeleteFunc(d.refresh, func(_ string, g devGrant) bool { return g.family == s.family })
	devEvict(d.revoked, now, devMaxSpent)
	d.revoked[s.family] = devSpent{family: s.family, expires: now.Add(devRefreshTTL)}
	return true
}

// devPKCEMatches reports whether BASE64URL(SHA256(ASCII(verifier))) equals
// challenge (RFC 7636 §4.6), compared in constant time. A verifier outside
// 43 to 128 unreserved characters (§4.1) never matches.
func devPKCEMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 || strings.ContainsFunc(verifier, func(c rune) bool { return !devIsUnreserved(c) }) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(pkceS256(verifier)), []byte(challenge)) == 1
}

// devIsUnreserved reports whether c is an RFC 3986 §2.3 unreserved character,
// the alphabet of a code_verifier.
func devIsUnreserved(c rune) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// redeemRefresh takes the refresh token of a refresh_token grant (RFC 6749
// §6). The token is single use: it is deleted under the lock that reads it,
// and a new one replaces it. Reusing a redeemed token revokes its whole
// family (RFC 9700 §4.14.2). A scope parameter may narrow the API scopes of
// the new access token, never widen them (none left is invalid_scope); the
// grant itself, which the new refresh token carries, keeps every scope the
// user allowed.
func (d *devIDP) redeemRefresh(f url.Values, now time.Time) (devGrant, []string, *devOAuthError) {
	rt := f.Get("refresh_token")
	if rt == "" {
		return devGrant{}, nil, devMissing("refresh_token")
	}
	if len(rt) > devMaxParam {
		return devGrant{}, nil, errDevExpired
	}
	var asked []string // API scopes asked for; none means the whole grant
	if s := f.Get("scope"); s != "" {
		sc, err := parseDevScope(s)
		if err != nil {
			return devGrant{}, nil, &devOAuthError{status: http.StatusBadRequest, code: "invalid_scope", aadsts: 70011,
				desc: "The provided value for the input parameter 'scope' is not valid."}
		}
		asked = sc.api
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if g, ok := d.refresh[rt]; ok && now.Before(g.expires) && len(devNarrow(g.scopes, asked)) == 0 {
		// Checked before the token is spent: the client may try again.
		return devGrant{}, nil, &devOAuthError{status: http.StatusBadRequest, code: "invalid_scope", aadsts: 70011,
			desc: "None of the requested scopes was granted at sign-in."}
	}
	g, e := take(d, d.refresh, rt, f.Get("client_id"), now, errDevRefreshReused)
	if e != nil {
		return devGrant{}, nil, e
	}
	return g, devNarrow(g.scopes, asked), nil
}

// devNarrow returns the granted scopes that are also asked for, in granted
// order; when nothing is asked for, all of granted (RFC 6749 §6: an omitted
// scope means the scope originally granted).
func devNarrow(granted, asked []string) []string {
	if len(asked) == 0 {
		return granted
	}
	return slices.DeleteFunc(slices.Clone(granted), func(n string) bool { return !slices.Contains(asked, n) })
}

// mint signs the tokens of a successful token response (RFC 6749 §5.1, OIDC
// Core §3.1.3.3) for grant g: an access token with the given API scopes,
// an ID token when openid was granted (with nonce when non-empty; none on
// refresh, OIDC Core §12.2), and a new refresh token of g's family when
// offline_access was granted. It answers errDevRevoked when a replay
// revoked g's family while the request was being checked.
func (d *devIDP) mint(base string, g devGrant, scopes []string, nonce string, now time.Time) (map[string]any, *devOAuthError) {
	access, err := signRS256(d.key, d.kid, d.accessClaims(base, g, scopes, now))
	if err != nil {
		return nil, errDevSigning
	}
	resp := map[string]any{
		"token_type":     "Bearer",
		"scope":          devScopeURIs(g.clientID, scopes),
		"expires_in":     int(devTokenTTL / time.Second),
		"ext_expires_in": int(devTokenTTL / time.Second),
		"access_token":   access,
	}
	if g.openid {
		id, err := signRS256(d.key, d.kid, d.idClaims(base, g, nonce, now))
		if err != nil {
			return nil, errDevSigning
		}
		resp["id_token"] = id
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// A replay revoked the family while this request was in flight: hand
	// out nothing, so no refresh token outlives the revocation.
	if r, ok := d.revoked[g.family]; ok && now.Before(r.expires) {
		return nil, errDevRevoked
	}
	if g.offline {
		rt := rand.Text() + rand.Text() // 256 bits, opaque like Entra's
		g.expires = now.Add(devRefreshTTL)
		devEvict(d.refresh, now, devMaxRefresh)
		d.refresh[rt] = g
		resp["refresh_token"] = rt
	}
	return resp, nil
}

// errDevSigning answers a token that could not be signed.
var errDevSigning = &devOAuthError{status: http.StatusInternalServerError, code: "server_error", aadsts: 90033, desc: "Signing failed."}

// devScopeURIs is a scope parameter of the API's scope names as full URIs
// under clientID's App ID URI ("api://<client id>/Heroes.Read …").
func devScopeURIs(clientID string, names []string) string {
	full := make([]string, len(names))
	for i, n := range names {
		full[i] = "api://" + clientID + "/" + n
	}
	return strings.Join(full, " ")
}

// accessClaims are the claims of a v2 access token for the dev API, as
// Entra issues them (Microsoft identity platform access token claims
// reference): aud is the client id, scp the granted scope names
// space-separated (absent when none was granted), azpacr "1" (the client
// used a secret) or "0" (a public client, which has none).
func (d *devIDP) accessClaims(base string, g devGrant, scopes []string, now time.Time) map[string]any {
	c := d.userClaims(base, g, now)
	c["azp"] = g.clientID
	c["azpacr"] = "1"
	if g.public {
		c["azpacr"] = "0"
	}
	if len(scopes) > 0 {
		c["scp"] = strings.Join(scopes, " ")
	}
	if len(g.acrs) > 0 {
		c["acrs"] = g.acrs // Entra's acrs: a JSON array of the satisfied context ids
	}
	return c
}

// idClaims are the claims of a v2 ID token (OIDC Core §2, Microsoft's ID
// token claims reference): aud is the client id, nonce as sent to authorize.
func (d *devIDP) idClaims(base string, g devGrant, nonce string, now time.Time) map[string]any {
	c := d.userClaims(base, g, now)
	if nonce != "" {
		c["nonce"] = nonce
	}
	return c
}

// userClaims are the claims access and ID tokens share (RFC 7519 §4.1 and
// Entra's tid, oid, uti, ver). Times are seconds since the epoch.
func (d *devIDP) userClaims(base string, g devGrant, now time.Time) map[string]any {
	oid := devObjectID(g.user)
	uti := make([]byte, 16)
	rand.Read(uti) // never fails (crypto/rand documents it)
	return map[string]any{
		"aud":                g.clientID,
		"iss":                devIssuer(base),
		"iat":                now.Unix(),
		"nbf":                now.Unix(),
		"exp":                now.Add(devTokenTTL).Unix(),
		"name":               g.user,
		"preferred_username": g.user,
		"oid":                oid,
		"sub":                devSubject(g.clientID, oid),
		"tid":                devTenantID,
		"uti":                base64.RawURLEncoding.EncodeToString(uti),
		"ver":                "2.0",
	}
}

// devLogoutPage is the data of the signed-out page.
type devLogoutPage struct {
	Home    string // the service's home page
	Refused string // a post_logout_redirect_uri that was not followed, or ""
}

// handleIdentity serves GET /devidp/msi/token (devIdentityPath): a managed
// identity endpoint as App Service and Container Apps offer one at
// IDENTITY_ENDPOINT (api-version 2019-08-01, the X-IDENTITY-HEADER
// header, optional client_id), for the one dev identity. It answers as they
// do: access_token, expires_on (a string of seconds since the epoch),
// resource, token_type, client_id; an error is {"statusCode", "message"}.
func (d *devIDP) handleIdentity(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		devPageHeaders(w)
		now := d.now()
		claims, status, msg := d.identityClaims(r, now)
		if status != 0 {
			logger.Info("devidp: managed identity token refused", "status", status, "message", msg)
			writeJSON(w, status, map[string]any{"statusCode": status, "message": msg})
			return
		}
		tok, err := signRS256(d.key, d.kid, claims)
		if err != nil {
			logger.Error("devidp: signing a managed identity token", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]any{"statusCode": 500, "message": "signing failed"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{
			"access_token": tok,
			"expires_on":   strconv.FormatInt(now.Add(devTokenTTL).Unix(), 10),
			"resource":     r.URL.Query().Get("resource"),
			"token_type":   "Bearer",
			"client_id":    devIdentityClientID,
		})
	})
}

// identityClaims checks a managed identity token request and returns the
// token's claims, or the status and message to refuse it with. It knows
// two resources: the token exchange audience (a v2.0 token of the dev
// tenant's issuer, the dev client's federated credential) and Azure
// Storage (a v1 token, iss https://sts.windows.net/{tenant}/, as Entra
// issues them for storage and as Azurite's --oauth basic checks them).
func (d *devIDP) identityClaims(r *http.Request, now time.Time) (map[string]any, int, string) {
	base := d.baseURL()
	q := r.URL.Query()
	got, want := sha256.Sum256([]byte(r.Header.Get("X-IDENTITY-HEADER"))), sha256.Sum256([]byte(d.identityHeader))
	switch {
	case base == "":
		return nil, http.StatusServiceUnavailable, "The dev identity endpoint is not configured yet."
	case subtle.ConstantTimeCompare(got[:], want[:]) != 1:
		return nil, http.StatusUnauthorized, "X-IDENTITY-HEADER is missing or wrong; it is IDENTITY_HEADER."
	case q.Get("api-version") != identityAPIVersion:
		return nil, http.StatusBadRequest, "api-version must be " + identityAPIVersion + "."
	case q.Has("principal_id") || q.Has("object_id") || q.Has("mi_res_id"):
		return nil, http.StatusBadRequest, "The dev identity endpoint selects its identity by client_id only."
	case q.Has("client_id") && !strings.EqualFold(q.Get("client_id"), devIdentityClientID):
		return nil, http.StatusBadRequest, "No managed identity with that client_id is assigned; the dev one is " + devIdentityClientID + "."
	}
	c := map[string]any{"sub": devIdentityPrincipalID, "oid": devIdentityPrincipalID, "tid": devTenantID,
		"appid": devIdentityClientID, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(devTokenTTL).Unix()}
	switch strings.TrimSuffix(q.Get("resource"), "/") {
	case defaultExchangeAud:
		c["iss"], c["aud"], c["ver"] = devIssuer(base), defaultExchangeAud, "2.0"
	case strings.TrimSuffix(storageResource, "/"):
		c["iss"], c["aud"], c["ver"] = "https://sts.windows.net/"+devTenantID+"/", strings.TrimSuffix(storageResource, "/"), "1.0"
	default:
		return nil, http.StatusBadRequest, "The dev identity endpoint issues tokens for " + defaultExchangeAud + " and " + storageResource + " only."
	}
	return c, 0, ""
}

// handleLogout serves GET /devidp/{tenant}/oauth2/v2.0/logout, the
// end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0 §2). The dev
// provider keeps no session, so there is nothing to end: it redirects to
// post_logout_redirect_uri (with state) when that is on the service's own
// origin, and otherwise shows a small signed-out page.
func (d *devIDP) handleLogout(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, e := d.ready(r)
		if e != nil {
			devRenderPage(w, logger, e.status, "error", e)
			return
		}
		q := r.URL.Query()
		target := q.Get("post_logout_redirect_uri")
		if target != "" && len(q["post_logout_redirect_uri"]) == 1 && devSameOrigin(base, target) {
			devPageHeaders(w)
			if s := q.Get("state"); s != "" && len(s) <= devMaxParam {
				target = devWithQuery(target, url.Values{"state": {s}})
			}
			http.Redirect(w, r, target, http.StatusFound)
			return
		}
		devRenderPage(w, logger, http.StatusOK, "logout", devLogoutPage{Home: base + "/", Refused: truncate(target, 200)})
	})
}

// devSameOrigin reports whether target is an absolute URL on base's origin
// (scheme and host:port, RFC 6454), without user information.
func devSameOrigin(base, target string) bool {
	b, err1 := url.Parse(base)
	t, err2 := url.Parse(target)
	return err1 == nil && err2 == nil && t.User == nil && t.Opaque == "" &&
		t.Scheme == b.Scheme && t.Host != "" && strings.EqualFold(t.Host, b.Host)
}

// devPages are the provider's HTML pages: sign-in form, error and signed
// out. html/template escapes every value for its context; there are no
// scripts and no external assets. Parsed once, never changed.
var devPages = template.Must(template.New("devidp").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · heroes-auth dev identity provider</title>
<style>
body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.5rem .75rem}
.problem{color:#a00}
label{display:block;margin:.4rem 0}
input[type=text]{width:100%;padding:.3rem;box-sizing:border-box}
code{background:#f2f2f2;padding:0 .2rem}
</style></head><body>
<p class="warn">Local development identity provider of heroes-auth (<code>-dev</code>). Anyone can sign in as anyone: not for production.</p>
{{end}}

{{define "signin"}}{{template "head" "Sign in"}}
<h1>Sign in</h1>
{{with .Problem}}<p class="problem">{{.}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{with .Req}}<input type="hidden" name="client_id" value="{{.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.RedirectURI}}">
<input type="hidden" name="response_type" value="{{.ResponseType}}">
<input type="hidden" name="response_mode" value="{{.ResponseMode}}">
<input type="hidden" name="scope" value="{{.Scope}}">
<input type="hidden" name="state" value="{{.State}}">
<input type="hidden" name="nonce" value="{{.Nonce}}">
<input type="hidden" name="code_challenge" value="{{.CodeChallenge}}">
<input type="hidden" name="code_challenge_method" value="{{.CodeChallengeMethod}}">
<input type="hidden" name="prompt" value="{{.Prompt}}">
<input type="hidden" name="login_hint" value="{{.LoginHint}}">
<input type="hidden" name="claims" value="{{.Claims}}">{{end}}
<label>User name <input type="text" name="username" value="{{.User}}" maxlength="64" required autofocus></label>
<fieldset><legend>Scopes to grant</legend>
{{range .Scopes}}<label><input type="checkbox" name="grant" value="{{.Name}}"{{if .Checked}} checked{{end}}> {{.Name}}</label>
{{end}}</fieldset>
{{with .StepUp}}<fieldset><legend>Second step</legend>
<p>The application asks for authentication context {{range .}}<code>{{.}}</code> {{end}}: Conditional Access would now ask for
a second factor. Here, confirming stands in for it.</p>
<label><input type="checkbox" name="stepup" value="confirmed"> I confirm the second step</label></fieldset>{{end}}
<p>Heroes.Read lists and reads heroes, Heroes.Create also adds and replaces them, Admin also deletes them.
Grant Heroes.Read alone to see the API refuse to add or delete a hero.</p>
<p><button type="submit" name="action" value="signin">Sign in</button>
<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button></p>
</form>
</body></html>
{{end}}

{{define "error"}}{{template "head" "Sign-in error"}}
<h1>Sign-in error</h1>
<p><code>{{.Code}}</code></p>
<p>{{.Description}}</p>
<p>Nothing was sent back to the application. Start again from its sign-in link.</p>
</body></html>
{{end}}

{{define "logout"}}{{template "head" "Signed out"}}
<h1>Signed out</h1>
<p>The dev identity provider keeps no session, so you are signed out.</p>
{{with .Refused}}<p class="problem">The post_logout_redirect_uri <code>{{.}}</code> is not on the service's origin, so it was not followed.</p>{{end}}
<p><a href="{{.Home}}">Back to heroes-auth</a></p>
</body></html>
{{end}}
`))

// signRS256 makes a compact JWS (RFC 7515 §7.1) of claims, signed with
// RSASSA-PKCS1-v1_5 SHA-256 (RFC 7518 §3.3) under key, with the header
// {"alg":"RS256","kid":kid,"typ":"JWT"}. The dev provider and the tests mint
// tokens with it; the service itself never trusts a token it did not verify.
func signRS256(key *rsa.PrivateKey, kid string, claims any) (string, error) {
	header := map[string]string{"alg": "RS256", "kid": kid, "typ": "JWT"}
	return signJWS(key, header, claims)
}

// signJWS signs claims under an arbitrary header (tests use it to forge
// headers). header and claims are marshalled with encoding/json.
func signJWS(key *rsa.PrivateKey, header, claims any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// publicJWK is the JWK (RFC 7517 §4, RFC 7518 §6.3.1) of an RSA public key,
// shaped like an Entra key: kty, use, kid, n, e (base64url, no padding).
// issuer is added when non-empty, as Entra v2 keys carry it.
func publicJWK(pub *rsa.PublicKey, kid, issuer string) map[string]string {
	k := map[string]string{
		"kty": "RSA",
		"use": "sig",
		"kid": kid,
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
	if issuer != "" {
		k["issuer"] = issuer
	}
	return k
}
