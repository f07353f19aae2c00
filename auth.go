package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// metadataSource gives the identity provider's discovery document (OpenID
// Connect Discovery 1.0 §3). *provider implements it; tests use fakes.
type metadataSource interface {
	metadata(ctx context.Context) (providerMetadata, error)
}

// tokenVerifier verifies the tokens the token endpoint returns. *verifier
// implements it; tests use fakes. Both methods return errIDPUnavailable
// (wrapped) when keys or metadata cannot be loaded, and another error naming
// the failed check otherwise.
type tokenVerifier interface {
	verifyIDToken(ctx context.Context, raw, nonce string) (*claims, error)
	verifyAccessToken(ctx context.Context, raw string) (*claims, error)
}

// Limits of the client half, in bytes unless stated.
const (
	maxTokenAnswer  = 1 << 20  // a token endpoint answer (RFC 6749 §5.1, §5.2)
	maxRefreshBody  = 64 << 10 // the body of POST /auth/refresh
	maxCodeLen      = 8 << 10  // the code query parameter (Entra's are 1–2 KiB)
	maxHintLen      = 256      // login_hint and domain_hint
	maxReturnToLen  = 512      // return_to
	maxShownIdPText = 300      // IdP error text echoed to the user or logged
	maxAcceptLen    = 1024     // the part of Accept that prefersHTML reads
	maxClaimsLen    = 4096     // the claims parameter of /auth/login, as sent
)

// loginOptions are the settings of the client half. The service fills them
// from its environment (env.go); a program that takes this half fills them
// itself. Read-only once passed in.
type loginOptions struct {
	// ClientID is the app registration's application (client) id.
	ClientID string
	// ClientAuth is how the token endpoint is authenticated to:
	// clientAuthPost (client_secret in the form, RFC 6749 §2.3.1),
	// clientAuthBasic (HTTP Basic), clientAuthCertificate (a signed
	// client assertion, RFC 7523 §2.2), clientAuthFederated or
	// clientAuthManagedIdentity (an assertion another issuer signed).
	ClientAuth string
	// ClientSecret is the secret of clientAuthPost and clientAuthBasic.
	ClientSecret string
	// ClientCertPath is the PEM file (certificate and RSA key) of
	// clientAuthCertificate.
	ClientCertPath string
	// FederatedTokenFile is the file of clientAuthFederated: a JWT another
	// issuer signed for this app (AKS workload identity's projected service
	// account token), read again for every token request.
	FederatedTokenFile string
	// ManagedIdentity is where clientAuthManagedIdentity gets its assertion.
	ManagedIdentity managedIdentityOptions
	// APIScopes are the API scopes asked for at sign-in, besides openid,
	// profile and offline_access.
	APIScopes []string
	// RedirectURI is the registered redirect URI, ending in /auth/callback;
	// an https one makes the login cookie Secure.
	RedirectURI string
	// PostLogoutRedirectURI, when set, is sent to the end_session_endpoint.
	PostLogoutRedirectURI string
	// SessionKey is the 32-byte AES-256-GCM key sealing login cookies.
	SessionKey []byte
	// RefreshDisabled turns refresh off: the sign-in does not ask for
	// offline_access, so Entra issues no refresh token, and POST
	// /auth/refresh answers 404 (handleRefresh says why). false (the zero
	// value) serves it.
	RefreshDisabled bool
	// StepUpAuthContext, when set, is the Conditional Access authentication
	// context id (c1…c99) some operations of the API need: the signed-in
	// page offers to sign in again with it when the new access token lacks
	// it. "" offers nothing.
	StepUpAuthContext string
}

// serviceBase is the service's own base URL as browsers reach it, taken
// from a redirect URI (never from a request): its origin, plus the path
// before /auth/callback when the path ends so (a reverse proxy's prefix).
// For "http://localhost:8000/auth/callback" it is "http://localhost:8000".
// It is "" for a redirect URI that is not an absolute URL.
func serviceBase(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	prefix, ok := strings.CutSuffix(u.EscapedPath(), "/auth/callback")
	if !ok {
		prefix = "" // not the callback's path: no prefix to keep
	}
	return u.Scheme + "://" + u.Host + prefix
}

// secureCookies reports whether cookies carry the Secure attribute: whenever
// the redirect URI is https.
func (o loginOptions) secureCookies() bool {
	return strings.HasPrefix(o.RedirectURI, "https://")
}

// authFlow is the client half of the service: a confidential OAuth 2.0
// client (RFC 6749 §2.1) using the authorization code grant with PKCE
// (RFC 7636) and OpenID Connect (Core §3.1), following RFC 9700. It keeps no
// server-side session: each login's state, nonce and code_verifier travel in
// a sealed cookie; the only state it keeps is the set of spent states (see
// spentStates). Its fields are not changed after newAuthFlow, and it is safe
// for concurrent use.
type authFlow struct {
	opts   loginOptions
	p      metadataSource
	v      tokenVerifier
	client *http.Client
	logger *slog.Logger
	seal   *sealer
	// cred is the client credential opts.ClientAuth names (certificate,
	// assertion source), loaded by loadClientCredential.
	cred clientCredential
	// now is the clock for login ages and assertion times (time.Now).
	now func() time.Time
	// spent holds the states whose callback was accepted, so each is used
	// once in this process.
	spent *spentStates
}

// newAuthFlow builds the client half from cfg. p gives the endpoints (never
// hard-coded), v verifies returned tokens, client (which must carry a
// Timeout) calls the token endpoint. It fails with an "auth:" error naming
// the problem if the session key or the client credential
// (loadClientCredential) is unusable. It does no network I/O.
func newAuthFlow(cfg loginOptions, p metadataSource, v tokenVerifier, client *http.Client, logger *slog.Logger) (*authFlow, error) {
	if p == nil || v == nil || client == nil || logger == nil {
		return nil, errors.New("auth: newAuthFlow needs a provider, a verifier, a client and a logger")
	}
	seal, err := newSealer(cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	af := &authFlow{opts: cfg, p: p, v: v, client: client, logger: logger, seal: seal, now: time.Now,
		spent: newSpentStates(maxSpentStates)}
	if af.cred, err = loadClientCredential(cfg, logger, func() time.Time { return af.now() }); err != nil {
		return nil, err
	}
	return af, nil
}

// scope is the scope requested at login and on token requests: OpenID
// Connect's openid and profile, offline_access for a refresh token (unless
// RefreshDisabled), and the API's scopes (config.APIScopes).
func (af *authFlow) scope() string {
	s := []string{"openid", "profile", "offline_access"}
	if af.opts.RefreshDisabled {
		s = s[:2]
	}
	return strings.Join(append(s, af.opts.APIScopes...), " ")
}

// handleLogin serves GET /auth/login[?return_to=/path][&prompt=…]
// [&login_hint=…][&domain_hint=…][&claims=…]: it makes a fresh state, nonce and PKCE
// code_verifier (crypto/rand), seals them with return_to into a login cookie
// of their own, and redirects (302) to the authorization endpoint from the
// discovery document (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect Core
// §3.1.2.1). Unusable return_to values become "/"; a claims parameter that
// is not a claims request (readClaimsRequest), or is given twice, is a 400.
// 503 when the provider's metadata cannot be loaded.
func (af *authFlow) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		md, err := af.p.metadata(r.Context())
		if err != nil {
			af.providerDown(w, r, err)
			return
		}
		q := r.URL.Query()
		claims, err := readClaimsRequest(q.Get("claims"))
		if err != nil || len(q["claims"]) > 1 {
			af.fail(w, r, http.StatusBadRequest, "the claims parameter must be one claims challenge: a JSON object (OpenID Connect Core §5.5), "+
				"or its base64, of at most "+strconv.Itoa(maxClaimsLen)+" bytes", "invalid_request", "")
			return
		}
		q.Set("claims", claims)
		ls := loginState{
			State:        rand.Text(),
			Nonce:        rand.Text(),
			CodeVerifier: rand.Text() + rand.Text(), // 52 characters of [A-Z2-7], 256 bits (RFC 7636 §4.1)
			ReturnTo:     safeReturnTo(q.Get("return_to")),
			Created:      af.now().Unix(),
		}
		target, err := af.authorizeURL(md, ls, q)
		if err != nil {
			af.logger.ErrorContext(r.Context(), "auth: unusable authorization_endpoint in the discovery document", "err", err)
			af.fail(w, r, http.StatusBadGateway, "the identity provider's authorization endpoint is unusable", "", "")
			return
		}
		name := loginCookieName(ls.State)
		value, err := af.seal.seal(name, ls)
		if err != nil {
			af.logger.ErrorContext(r.Context(), "auth: sealing the login cookie", "err", err)
			af.fail(w, r, http.StatusInternalServerError, "internal error", "", "")
			return
		}
		for _, old := range af.seal.staleLogins(r, af.now()) {
			http.SetCookie(w, expiredCookie(old, af.opts.secureCookies()))
		}
		http.SetCookie(w, loginCookie(name, value, af.opts.secureCookies()))
		af.logger.InfoContext(r.Context(), "auth: login started", "login", loginCookieID(ls.State))
		http.Redirect(w, r, target, http.StatusFound)
	})
}

// onServiceHost sends a browser that reached next on another host than
// RedirectURI's (127.0.0.1 for localhost, a second DNS name …) to the same
// path and query under serviceBase first (302), since the login cookie is
// set for the host the login starts on and must come back with the
// callback, which the identity provider sends to RedirectURI. The target's
// origin comes from the settings only, so the redirect can lead nowhere
// else. The host compared is the request's Host, or the first
// X-Forwarded-Host when a reverse proxy sets one (a proxy that rewrites Host
// must pass the original there, or every request would be redirected).
// addRoutes wraps the pages a sign-in starts from: /, /auth/login, /docs.
func (af *authFlow) onServiceHost(next http.Handler) http.Handler {
	want, err := url.Parse(af.opts.RedirectURI)
	base := serviceBase(af.opts.RedirectURI)
	if err != nil || base == "" {
		return next
	}
	// Host names are compared with a port, a missing one being the
	// scheme's default; RedirectURI's is worked out once, here.
	defaultPort := map[string]string{"http": "80", "https": "443"}[want.Scheme]
	wantHost := withPort(want.Host, defaultPort)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if fwd := r.Header.Get("X-Forwarded-Host"); fwd != "" {
			host, _, _ = strings.Cut(fwd, ",")
		}
		if strings.EqualFold(withPort(strings.TrimSpace(host), defaultPort), wantHost) { // case ignored
			next.ServeHTTP(w, r)
			return
		}
		target := base + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusFound)
	})
}

// withPort returns host (a Host header: name or address, optional port)
// with defaultPort added when it names none.
func withPort(host, defaultPort string) string {
	if _, _, err := net.SplitHostPort(host); err != nil {
		return net.JoinHostPort(strings.Trim(host, "[]"), defaultPort)
	}
	return host
}

// promptValues are the prompt values passed through to the authorization
// endpoint (OpenID Connect Core §3.1.2.1; Entra adds "create").
var promptValues = map[string]bool{"login": true, "none": true, "consent": true, "select_account": true, "create": true}

// pkceS256 is the S256 code_challenge of a code_verifier (RFC 7636 §4.2):
// BASE64URL(SHA256(ASCII(code_verifier))), without padding.
func pkceS256(codeVerifier string) string {
	sum := sha256.Sum256([]byte(codeVerifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL builds the authorization request of ls at the discovery
// document's authorization_endpoint, keeping any query it already has, and
// passing through prompt, login_hint and domain_hint from in when they are
// well-formed (others are dropped), and claims, which handleLogin has
// checked, when not empty.
func (af *authFlow) authorizeURL(md providerMetadata, ls loginState, in url.Values) (string, error) {
	u, err := parseEndpoint(md.AuthorizationEndpoint)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("client_id", af.opts.ClientID)
	q.Set("response_type", "code")
	q.Set("redirect_uri", af.opts.RedirectURI)
	q.Set("response_mode", "query")
	q.Set("scope", af.scope())
	q.Set("state", ls.State)
	q.Set("nonce", ls.Nonce)
	q.Set("code_challenge", pkceS256(ls.CodeVerifier))
	q.Set("code_challenge_method", "S256")
	if p := in.Get("prompt"); promptValues[p] {
		q.Set("prompt", p)
	}
	for _, k := range []string{"login_hint", "domain_hint"} {
		if v := in.Get(k); v != "" && len(v) <= maxHintLen && printable(v) {
			q.Set(k, v)
		}
	}
	if c := in.Get("claims"); c != "" {
		q.Set("claims", c) // OpenID Connect Core §5.5, Entra's access_token member included
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// readClaimsRequest returns the OpenID Connect claims request (Core §5.5) a
// claims challenge carries, or "" for an empty s. s is the JSON object
// itself, or its base64 in either alphabet, padded or not: Entra's
// challenges are padded standard base64, MSAL clients pass the decoded JSON
// (Microsoft Learn, "Claims challenges, claims requests and client
// capabilities"), and Microsoft.Identity.Web writes raw JSON. It must be at
// most maxClaimsLen bytes and decode to one JSON object with no member name
// given twice (parseObject); whatever else it asks for is Entra's to judge.
func readClaimsRequest(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	data := []byte(s)
	if len(s) <= maxClaimsLen && !strings.HasPrefix(strings.TrimSpace(s), "{") {
		data = nil
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.Strict().DecodeString(s); err == nil {
				data = b
				break
			}
		}
	}
	if len(s) > maxClaimsLen || data == nil || parseObject(data, nil) != nil {
		return "", errors.New("auth: not a claims request (a JSON object, or its base64)")
	}
	return strings.TrimSpace(string(data)), nil
}

// authContextClaims is the claims request that asks Entra for an access
// token carrying the authentication context id in acrs, as Microsoft's
// "Developer guide to Conditional Access authentication context" builds it:
// {"access_token":{"acrs":{"essential":true,"value":"c1"}}}.
func authContextClaims(id string) string {
	return `{"access_token":{"acrs":{"essential":true,"value":"` + id + `"}}}`
}

// parseEndpoint parses an endpoint URL of the discovery document, which must
// be absolute http(s).
func parseEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("auth: endpoint: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth: endpoint %q is not an absolute http(s) URL", truncate(s, 100))
	}
	return u, nil
}

// printable reports whether s is valid UTF-8 without ASCII control
// characters (C0 and DEL).
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// safeReturnTo returns s when it is a local path that is safe to redirect to
// after login or logout, and "/" otherwise (no open redirect, RFC 9700
// §4.11): it must start with one "/", hold no backslash or control
// character, have no scheme, host or user, not decode to a path starting
// with "//", have no "." or ".." segment (plain or percent-encoded: a
// browser resolves "/..//evil.example" to "//evil.example", another host;
// RFC 3986 §5.2.4), and be at most maxReturnToLen bytes.
func safeReturnTo(s string) string {
	if s == "" || len(s) > maxReturnToLen || s[0] != '/' || strings.HasPrefix(s, "//") ||
		strings.Contains(s, `\`) || !printable(s) {
		return "/"
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		strings.HasPrefix(u.Path, "//") || strings.Contains(u.Path, `\`) || !printable(u.Path) ||
		hasDotSegment(u.Path) || hasDotSegment(u.EscapedPath()) {
		return "/"
	}
	return s
}

// hasDotSegment reports whether the path p has a "." or ".." segment
// (RFC 3986 §3.3), which reference resolution removes (§5.2.4).
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// restartLogin is the hint every "start again" answer of the callback ends with.
const restartLogin = "start again at /auth/login"

// handleCallback serves GET /auth/callback, where the identity provider sends
// the browser back (RFC 6749 §4.1.2). In order: it deletes the login cookie
// of state (so a replayed callback finds none), answers an IdP error
// (idpError), checks state against the sealed cookie and spends it
// (spentStates, RFC 9700 §2.1); finishLogin then redeems the code with the
// PKCE code_verifier (RFC 7636 §4.5), verifies both tokens, and answers them
// as JSON, or as the signed-in page when Accept prefers text/html, with
// Cache-Control: no-store and Referrer-Policy: no-referrer (the URL holds the
// code). A return_to other than "/" is named in the answer, not redirected
// to: the service keeps no session, and tokens must not travel in a URL or a
// cookie. preview, when not nil, fills the page's heroes preview.
// TestCallbackRejectsBadState, TestCallbackReplayIsRejected and
// TestCallbackAnswersVerifiedTokens pin these answers.
func (af *authFlow) handleCallback(preview signedInPreview) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		q := r.URL.Query()
		state, code := q.Get("state"), q.Get("code")
		if state != "" && len(state) <= maxStateLen {
			http.SetCookie(w, expiredCookie(loginCookieName(state), af.opts.secureCookies()))
		}
		if e := q.Get("error"); e != "" {
			af.idpError(w, r, e, q.Get("error_description"), state)
			return
		}
		if state == "" || code == "" || len(state) > maxStateLen || len(code) > maxCodeLen ||
			len(q["state"]) > 1 || len(q["code"]) > 1 { // RFC 6749 §3.1: no parameter twice
			af.fail(w, r, http.StatusBadRequest, "the callback needs a code and a state; "+restartLogin, "invalid_request", "")
			return
		}
		ls, err := af.seal.openLogin(r, state, af.now())
		if err == nil && !af.spent.spend(ls.State, ls.Created, af.now()) ||
			errors.Is(err, errLoginMissing) && af.spent.has(state, af.now()) {
			err = errStateSpent // a reload of the finished callback, most likely
		}
		if err != nil {
			af.logger.WarnContext(r.Context(), "auth: callback rejected", "login", loginCookieID(state), "err", err)
			af.fail(w, r, http.StatusBadRequest, af.callbackRefusal(err), "invalid_request", "")
			return
		}
		af.finishLogin(w, r, ls, code, preview)
	})
}

// callbackRefusal is the detail of a callback refused for its state (err
// from openLogin or errStateSpent): a finished sign-in says that tokens are
// shown once; a callback without its login cookie names the address a
// sign-in must start on (the cookie stays with the host the login began
// on).
func (af *authFlow) callbackRefusal(err error) string {
	switch {
	case errors.Is(err, errStateSpent):
		return "this sign-in has finished: tokens are shown once, and reloading the page does not show them again; to get new ones, " + restartLogin
	case errors.Is(err, errLoginMissing):
		return "this sign-in is unknown, expired or already finished: its login cookie did not come back with it, as happens when a sign-in " +
			"starts on another address than " + serviceBase(af.opts.RedirectURI) + "; " + restartLogin
	}
	return "this sign-in is unknown, expired or already finished; " + restartLogin
}

// finishLogin redeems code for the login ls, verifies the tokens and answers
// them.
func (af *authFlow) finishLogin(w http.ResponseWriter, r *http.Request, ls loginState, code string, preview signedInPreview) {
	ctx := r.Context()
	md, err := af.p.metadata(ctx)
	if err != nil {
		af.providerDown(w, r, err)
		return
	}
	id := loginCookieID(ls.State)
	tr, err := af.redeem(ctx, md, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {af.opts.RedirectURI},
		"code_verifier": {ls.CodeVerifier},
		"scope":         {af.scope()},
	})
	if err != nil {
		af.tokenFailure(w, r, err, id, restartLogin)
		return
	}
	if tr.IDToken == "" {
		af.logger.WarnContext(ctx, "auth: token endpoint answered without an id_token", "login", id)
		af.fail(w, r, http.StatusBadGateway, "the identity provider returned no ID token", "", "")
		return
	}
	idc, err := af.v.verifyIDToken(ctx, tr.IDToken, ls.Nonce)
	if err != nil {
		af.verifyFailure(w, r, "id_token", id, err)
		return
	}
	atc, err := af.v.verifyAccessToken(ctx, tr.AccessToken)
	if err != nil {
		af.verifyFailure(w, r, "access_token", id, err)
		return
	}
	af.logger.InfoContext(ctx, "auth: signed in", "login", id, "oid", idc.ObjectID, "tid", idc.TenantID)
	ans := newTokenAnswer(tr, idc, atc, af.now())
	ans.ReturnTo = ls.ReturnTo
	if ans.ReturnTo == "/" {
		ans.ReturnTo = ""
	}
	if prefersHTML(r.Header.Get("Accept")) {
		var p *apiPreview
		if preview != nil {
			v := preview(r.Context(), atc)
			p = &v
		}
		af.renderSignedIn(w, ans, idc, atc, p)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// tokenAnswer is the JSON answer of /auth/callback and /auth/refresh: the
// RFC 6749 §5.1 fields the client needs, the verified ID token claims, and
// notes on what the provider did not send.
type tokenAnswer struct {
	TokenType     string         `json:"token_type"`
	AccessToken   string         `json:"access_token"`
	ExpiresIn     int64          `json:"expires_in"` // seconds from now
	Scope         string         `json:"scope"`
	RefreshToken  string         `json:"refresh_token,omitempty"`
	IDTokenClaims map[string]any `json:"id_token_claims,omitempty"`
	ReturnTo      string         `json:"return_to,omitempty"`
	Notes         []string       `json:"notes,omitempty"`
}

// newTokenAnswer builds the answer from a token response and the verified
// claims of its ID token (idc, nil when none) and access token (atc). When
// expires_in or scope is missing it is taken from the access token.
func newTokenAnswer(tr *tokenResponse, idc, atc *claims, now time.Time) tokenAnswer {
	secs, _ := tr.lifetime() // valid: parseTokenAnswer checked it
	ans := tokenAnswer{
		TokenType:    "Bearer",
		AccessToken:  tr.AccessToken,
		ExpiresIn:    secs,
		Scope:        tr.Scope,
		RefreshToken: tr.RefreshToken,
	}
	if ans.ExpiresIn == 0 && atc != nil && !atc.Expiry.IsZero() {
		ans.ExpiresIn = max(0, int64(atc.Expiry.Sub(now)/time.Second))
	}
	if ans.Scope == "" && atc != nil {
		ans.Scope = strings.Join(atc.Scopes, " ")
	}
	if idc != nil {
		ans.IDTokenClaims = claimsView(idc)
	}
	return ans
}

// claimsView shows verified claims under their JWT names (RFC 7519 §4.1,
// Microsoft's tid, oid, name, preferred_username, ver), times in seconds
// since the epoch, leaving out the empty ones.
func claimsView(c *claims) map[string]any {
	m := map[string]any{}
	put := func(k string, v string) {
		if v != "" {
			m[k] = v
		}
	}
	put("iss", c.Issuer)
	put("sub", c.Subject)
	put("tid", c.TenantID)
	put("oid", c.ObjectID)
	put("name", c.Name)
	put("preferred_username", c.PreferredUsername)
	put("ver", c.Version)
	if len(c.Audience) > 0 {
		m["aud"] = c.Audience
	}
	for k, t := range map[string]time.Time{"exp": c.Expiry, "nbf": c.NotBefore, "iat": c.IssuedAt} {
		if !t.IsZero() {
			m[k] = t.Unix()
		}
	}
	return m
}

// maxIdPErrorCode bounds the error parameter of a callback, in bytes; the
// codes of RFC 6749 §4.1.2.1 and OpenID Connect Core §3.1.2.6 are at most 26.
const maxIdPErrorCode = 64

// idpError answers an error sent to the callback (RFC 6749 §4.1.2.1, OpenID
// Connect Core §3.1.2.6): 403 for access_denied, 400 otherwise. Anyone can
// craft such a link, so it shows only RFC 6749's NQSCHAR text (isNQSChars):
// another error code becomes invalid_request, and error_description
// (Entra's CR, LF and tabs read as spaces) is shown, cut to maxShownIdPText,
// only when state opens a live login cookie of this browser; otherwise just
// its AADSTS code. TestCallbackErrorParametersAreNotAMegaphone pins each
// case.
func (af *authFlow) idpError(w http.ResponseWriter, r *http.Request, code, desc, state string) {
	if len(code) > maxIdPErrorCode || !isNQSChars(code) {
		code = "invalid_request"
	}
	desc = strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' || c == '\t' {
			return ' '
		}
		return c
	}, desc)
	status := http.StatusBadRequest
	if code == "access_denied" {
		status = http.StatusForbidden
	}
	aadsts := aadstsPattern.FindString(truncate(desc, maxShownIdPText))
	id, live := "", false
	if state != "" && len(state) <= maxStateLen {
		id = loginCookieID(state)
		_, err := af.seal.openLogin(r, state, af.now())
		live = err == nil
	}
	af.logger.WarnContext(r.Context(), "auth: identity provider answered the login with an error", "login", id, "error", code, "aadsts", aadsts, "own_login", live)
	detail := "sign-in failed: the identity provider answered " + code
	switch {
	case live && isNQSChars(desc):
		detail += " (" + truncate(desc, maxShownIdPText) + ")"
	case aadsts != "":
		detail += " (" + aadsts + ")"
	}
	af.fail(w, r, status, detail+"; "+restartLogin, code, aadsts)
}

// isNQSChars reports whether s is non-empty and made only of RFC 6749's
// NQSCHAR (%x20-21 / %x23-5B / %x5D-7E, Appendix A.7): printable ASCII
// without the double quote and the backslash.
func isNQSChars(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e || r == '"' || r == '\\' })
}

// aadstsPattern finds an Entra error code such as AADSTS70008 in a text.
var aadstsPattern = regexp.MustCompile(`AADSTS[0-9]{1,9}`)

// fail answers an error: JSON apiError, or a small HTML page when the request
// prefers text/html. oauthErr and code fill apiError.Error and apiError.Code
// when non-empty.
func (af *authFlow) fail(w http.ResponseWriter, r *http.Request, status int, detail, oauthErr, code string) {
	if prefersHTML(r.Header.Get("Accept")) {
		af.render(w, status, "error", map[string]any{"Status": status, "StatusText": http.StatusText(status), "Detail": detail, "Error": oauthErr, "Code": code})
		return
	}
	writeJSON(w, status, apiError{Detail: detail, Error: oauthErr, Code: code})
}

// providerDown answers 503 when the discovery document or keys cannot be
// loaded (errIDPUnavailable or any other metadata error).
func (af *authFlow) providerDown(w http.ResponseWriter, r *http.Request, err error) {
	af.logger.WarnContext(r.Context(), "auth: identity provider metadata unavailable", "err", err)
	w.Header().Set("Retry-After", "5")
	af.fail(w, r, http.StatusServiceUnavailable, "the identity provider is unavailable; try again shortly", "temporarily_unavailable", "")
}

// verifyFailure answers a token that failed verification: 503 when the keys
// could not be loaded (errIDPUnavailable), else 502. The log line names the
// token (which, "id_token" or "access_token") and the failed check; never
// the token.
func (af *authFlow) verifyFailure(w http.ResponseWriter, r *http.Request, which, id string, err error) {
	if errors.Is(err, errIDPUnavailable) {
		af.providerDown(w, r, err)
		return
	}
	af.logger.WarnContext(r.Context(), "auth: token from the identity provider failed verification", "login", id, "token", which, "err", err)
	af.fail(w, r, http.StatusBadGateway, "the identity provider returned a token that failed verification", "", "")
}

// handleRefresh serves POST /auth/refresh: it takes refresh_token from an
// application/x-www-form-urlencoded or application/json body
// (readRefreshToken: 400 invalid_request for a missing, repeated or
// malformed one, without calling the identity provider; 408, 413, 415) and
// redeems it (grant_type=refresh_token, RFC 6749 §6) with the same client
// authentication and error mapping as the callback. The new access token is
// verified before it is handed out, and a new ID token when one comes. An
// answer without a new refresh token or ID token is normal (Entra rotates
// refresh tokens at will; OpenID Connect Core §12.2): the JSON notes say so.
//
// Security: the handler lends the service's client credential to whoever
// sends a refresh token. A refresh token issued to a confidential client is
// useless without that client's credential; here anyone holding one (a
// leaked or stolen token included) gets new access tokens for as long as it
// lives, and the service, keeping no session, cannot tell. A deployment
// whose clients never refresh here should turn it off
// (loginOptions.RefreshDisabled: 404, and no refresh token is issued);
// README "Security notes: /auth/refresh" says what else to do.
func (af *authFlow) handleRefresh() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if af.opts.RefreshDisabled {
			writeError(w, http.StatusNotFound, "this service does not redeem refresh tokens (AUTH_REFRESH_ENABLED=false); sign in again at /auth/login")
			return
		}
		rt, status, detail := readRefreshToken(w, r)
		if status == http.StatusBadRequest {
			writeJSON(w, status, apiError{Detail: detail, Error: "invalid_request"}) // RFC 6749 §5.2
			return
		} else if status != 0 {
			writeError(w, status, detail)
			return
		}
		ctx := r.Context()
		md, err := af.p.metadata(ctx)
		if err != nil {
			af.providerDown(w, r, err)
			return
		}
		tr, err := af.redeem(ctx, md, url.Values{
			"grant_type":    {"refresh_token"},
			"refresh_token": {rt},
			"scope":         {af.scope()},
		})
		if err != nil {
			af.tokenFailure(w, r, err, "", "sign in again at /auth/login")
			return
		}
		var idc *claims
		if tr.IDToken != "" {
			if idc, err = af.v.verifyIDToken(ctx, tr.IDToken, ""); err != nil {
				af.verifyFailure(w, r, "id_token", "", err)
				return
			}
		}
		atc, err := af.v.verifyAccessToken(ctx, tr.AccessToken)
		if err != nil {
			af.verifyFailure(w, r, "access_token", "", err)
			return
		}
		ans := newTokenAnswer(tr, idc, atc, af.now())
		if tr.RefreshToken == "" {
			ans.Notes = append(ans.Notes, "no new refresh_token was issued: keep using the one you sent")
		}
		if tr.IDToken == "" {
			ans.Notes = append(ans.Notes, "no new ID token was issued: the identity is the one from sign-in")
		}
		af.logger.InfoContext(ctx, "auth: tokens refreshed", "oid", atc.ObjectID, "tid", atc.TenantID)
		writeJSON(w, http.StatusOK, ans)
	})
}

// maxRefreshTokenLen bounds refresh_token, in bytes. Entra's refresh tokens
// are opaque strings of one to a few KB; a longer value cannot be one and
// is refused without calling the identity provider.
const maxRefreshTokenLen = 8 << 10

// readRefreshToken reads refresh_token from the body of r, as strictly as
// hero bodies are read: application/x-www-form-urlencoded or
// application/json, UTF-8 only (a charset parameter other than utf-8 is a
// 415), at most maxRefreshBody bytes (413), each form parameter or JSON
// member given once, no other JSON member. The token must be 1 to
// maxRefreshTokenLen characters of RFC 6749's VSCHAR (Appendix A.17). On
// failure it returns the status (400, 408, 413 or 415) and a message; status
// is 0 on success.
func readRefreshToken(w http.ResponseWriter, r *http.Request) (token string, status int, detail string) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/x-www-form-urlencoded" && mt != "application/json") ||
		len(params) > 1 || (len(params) == 1 && !strings.EqualFold(params["charset"], "utf-8")) {
		return "", http.StatusUnsupportedMediaType, "send refresh_token as application/x-www-form-urlencoded or application/json, in UTF-8"
	}
	data, status, err := readBody(w, r, maxRefreshBody)
	switch status {
	case 0:
	case http.StatusRequestTimeout:
		return "", status, "the body did not arrive in time; send it again"
	default:
		return "", status, "the body is unreadable or too large"
	}
	if mt == "application/json" {
		token, detail = refreshTokenFromJSON(data)
	} else {
		token, detail = refreshTokenFromForm(data)
	}
	switch {
	case detail != "":
		return "", http.StatusBadRequest, detail
	case token == "":
		return "", http.StatusBadRequest, "refresh_token is required"
	case len(token) > maxRefreshTokenLen || strings.ContainsFunc(token, func(c rune) bool { return c < 0x20 || c > 0x7e }):
		return "", http.StatusBadRequest, fmt.Sprintf("refresh_token is not a refresh token: at most %d printable ASCII characters", maxRefreshTokenLen)
	}
	return token, 0, ""
}

// refreshTokenFromForm reads refresh_token from a form body (the WHATWG
// urlencoded format url.ParseQuery reads): no parameter twice (RFC 6749
// §3.2), names and values UTF-8. Other parameters are ignored. detail is ""
// on success.
func refreshTokenFromForm(data []byte) (token, detail string) {
	form, err := url.ParseQuery(string(data))
	if err != nil {
		return "", "the form body is malformed"
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return "", "the form gives " + truncate(k, 40) + " more than once"
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) {
			return "", "the form body is not UTF-8"
		}
	}
	return form.Get("refresh_token"), ""
}

// refreshTokenFromJSON reads refresh_token from a JSON body: one object
// (parseObject: UTF-8, no member twice) whose only member is refresh_token,
// a string. detail is "" on success.
func refreshTokenFromJSON(data []byte) (token, detail string) {
	const want = `the JSON body must be one object {"refresh_token": "…"}`
	err := parseObject(data, func(m member) error {
		if string(m.key) != "refresh_token" || m.val[0] != '"' {
			return errors.New("not the refresh_token string")
		}
		token = unquote(m.val)
		return nil
	})
	if err != nil {
		return "", want
	}
	return token, ""
}

// handleLogout serves GET /auth/logout[?return_to=/path]: it deletes every
// login cookie and redirects (302) to the discovery document's
// end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0 §2) with
// post_logout_redirect_uri when config.PostLogoutRedirectURI is set; the
// provider then returns the browser there, so return_to is not used. When the
// provider has no end_session_endpoint, it redirects to return_to (a safe
// local path, "/" otherwise). 503 when the metadata cannot be loaded. The
// service keeps no session, so a client must also drop its tokens.
func (af *authFlow) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		for _, name := range loginCookieNames(r) {
			http.SetCookie(w, expiredCookie(name, af.opts.secureCookies()))
		}
		md, err := af.p.metadata(r.Context())
		if err != nil {
			af.providerDown(w, r, err)
			return
		}
		if md.EndSessionEndpoint == "" {
			http.Redirect(w, r, safeReturnTo(r.URL.Query().Get("return_to")), http.StatusFound)
			return
		}
		u, err := parseEndpoint(md.EndSessionEndpoint)
		if err != nil {
			af.logger.ErrorContext(r.Context(), "auth: unusable end_session_endpoint in the discovery document", "err", err)
			af.fail(w, r, http.StatusBadGateway, "the identity provider's logout endpoint is unusable", "", "")
			return
		}
		if af.opts.PostLogoutRedirectURI != "" {
			q := u.Query()
			q.Set("post_logout_redirect_uri", af.opts.PostLogoutRedirectURI)
			u.RawQuery = q.Encode()
		}
		af.logger.InfoContext(r.Context(), "auth: logout")
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
}

// Errors of verifyIDToken besides verify's.
var (
	errBadNonce = &verifyError{"jwks: nonce mismatch", "invalid token"}
	errBadAZP   = &verifyError{"jwks: azp is not the client id", "invalid token"}
)

// verifyAccessToken verifies an access token of the login flow as
// requireAuth does (verifier.verify), without the cache, and returns all its
// claims: only the login flow needs them, so it lives here.
func (v *verifier) verifyAccessToken(ctx context.Context, raw string) (*claims, error) {
	t, err := v.verifyRaw(ctx, raw, true)
	if v.opts.Observe("token", err); err != nil {
		return nil, err
	}
	return &t.claims, nil
}

// verifyRaw is verifier.verify of raw, in a jws of its own.
func (v *verifier) verifyRaw(ctx context.Context, raw string, access bool) (*jws, error) {
	t := new(jws)
	if err := t.screen(raw); err != nil {
		return nil, err
	}
	_, err := v.verify(ctx, t, v.opts.Now(), access)
	return t, err
}

// verifyIDToken verifies an OpenID Connect ID token (OpenID Connect Core
// §3.1.3.7); it lives here because only the login flow needs it. It does
// every check of verify, with iss the discovery issuer (step 2; never the v1
// issuer: an ID token comes from the v2 endpoint the service signs in with),
// then the client id among the audiences (step 3), azp
// present when there are several (step 4) and the client id whenever present
// (step 5), and the nonce, compared in constant time. An empty nonce skips
// that check: only for ID tokens from a refresh (§12.2), which carry none of
// ours. Not cached.
func (v *verifier) verifyIDToken(ctx context.Context, raw, nonce string) (*claims, error) {
	t, err := v.verifyRaw(ctx, raw, false)
	if err != nil {
		return nil, err
	}
	switch c := &t.claims; {
	case !slices.Contains(c.Audience, v.opts.ClientID):
		return nil, fmt.Errorf("%w: %q", errBadAudience, truncate(strings.Join(c.Audience, " "), 64))
	case len(c.Audience) > 1 && c.AZP == "":
		return nil, fmt.Errorf("%w: %d audiences and no azp", errBadAZP, len(c.Audience))
	case c.AZP != "" && c.AZP != v.opts.ClientID:
		return nil, fmt.Errorf("%w: %q", errBadAZP, truncate(c.AZP, 64))
	case nonce != "" && subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(nonce)) != 1:
		return nil, errBadNonce
	}
	return &t.claims, nil
}
