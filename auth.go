package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
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
)

// authFlow is the client half of the service: a confidential OAuth 2.0
// client (RFC 6749 §2.1) using the authorization code grant with PKCE
// (RFC 7636) and OpenID Connect (Core §3.1), following RFC 9700. It keeps no
// server-side session: each login's state, nonce and code_verifier travel in
// a sealed cookie; the only state it keeps is the set of spent states (see
// spentStates). Its fields are not changed after newAuthFlow, and it is safe
// for concurrent use.
type authFlow struct {
	cfg    config
	p      metadataSource
	v      tokenVerifier
	client *http.Client
	logger *slog.Logger
	seal   *sealer
	// cert is the client certificate when cfg.ClientAuth is "certificate",
	// else nil.
	cert *clientCertificate
	// now is the clock for login ages and assertion times (time.Now).
	now func() time.Time
	// spent holds the states whose callback was accepted, so each is used
	// once in this process.
	spent *spentStates
}

// newAuthFlow builds the client half from cfg. p gives the endpoints (never
// hard-coded), v verifies returned tokens, client (which must carry a
// Timeout) calls the token endpoint. It loads the client certificate when
// cfg.ClientAuth is "certificate" and fails with an "auth:" error naming the
// problem if the certificate or the session key is unusable. It does no
// network I/O.
func newAuthFlow(cfg config, p metadataSource, v tokenVerifier, client *http.Client, logger *slog.Logger) (*authFlow, error) {
	if p == nil || v == nil || client == nil || logger == nil {
		return nil, errors.New("auth: newAuthFlow needs a provider, a verifier, a client and a logger")
	}
	seal, err := newSealer(cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	af := &authFlow{cfg: cfg, p: p, v: v, client: client, logger: logger, seal: seal, now: time.Now,
		spent: newSpentStates(maxSpentStates)}
	switch cfg.ClientAuth {
	case clientAuthCertificate:
		if cfg.ClientCertPath == "" {
			return nil, errors.New("auth: AZURE_CLIENT_AUTH=certificate needs AZURE_CLIENT_CERTIFICATE_PATH")
		}
		af.cert, err = loadClientCertificate(cfg.ClientCertPath, time.Now())
		if err != nil {
			return nil, err
		}
		logger.Info("auth: client certificate loaded", "x5t#S256", af.cert.thumbprint, "not_after", af.cert.notAfter.UTC().Format(time.RFC3339))
		if time.Until(af.cert.notAfter) < 30*24*time.Hour {
			logger.Warn("auth: client certificate expires within 30 days; upload a new one to the app registration", "not_after", af.cert.notAfter.UTC().Format(time.RFC3339))
		}
	case clientAuthPost, clientAuthBasic:
		if cfg.ClientSecret == "" {
			return nil, errors.New("auth: AZURE_CLIENT_SECRET is empty")
		}
	default:
		return nil, fmt.Errorf("auth: unknown client authentication %q", cfg.ClientAuth)
	}
	return af, nil
}

// scope is the scope requested at login and on token requests: OpenID
// Connect's openid and profile, offline_access for a refresh token, and the
// API's scopes (config.APIScopes).
func (af *authFlow) scope() string {
	return strings.Join(append([]string{"openid", "profile", "offline_access"}, af.cfg.APIScopes...), " ")
}

// handleLogin serves GET /auth/login[?return_to=/path][&prompt=…]
// [&login_hint=…][&domain_hint=…]: it makes a fresh state, nonce and PKCE
// code_verifier (crypto/rand), seals them with return_to into a login cookie
// of their own, and redirects (302) to the authorization endpoint from the
// discovery document (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect Core
// §3.1.2.1). Unusable return_to values become "/". 503 when the provider's
// metadata cannot be loaded.
func (af *authFlow) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		md, err := af.p.metadata(r.Context())
		if err != nil {
			af.providerDown(w, r, err)
			return
		}
		q := r.URL.Query()
		ls := loginState{
			State:        rand.Text(),
			Nonce:        rand.Text(),
			CodeVerifier: rand.Text() + rand.Text(), // 52 characters of [A-Z2-7], 256 bits (RFC 7636 §4.1)
			ReturnTo:     safeReturnTo(q.Get("return_to")),
			Created:      af.now().Unix(),
		}
		target, err := af.authorizeURL(md, ls, q)
		if err != nil {
			af.logger.Error("auth: unusable authorization_endpoint in the discovery document", "err", err)
			af.fail(w, r, http.StatusBadGateway, "the identity provider's authorization endpoint is unusable", "", "")
			return
		}
		name := loginCookieName(ls.State)
		value, err := af.seal.seal(name, ls)
		if err != nil {
			af.logger.Error("auth: sealing the login cookie", "err", err)
			af.fail(w, r, http.StatusInternalServerError, "internal error", "", "")
			return
		}
		for _, old := range af.seal.staleLogins(r, af.now()) {
			http.SetCookie(w, expiredCookie(old, af.cfg.secureCookies()))
		}
		http.SetCookie(w, loginCookie(name, value, af.cfg.secureCookies()))
		af.logger.Info("auth: login started", "login", loginCookieID(ls.State))
		http.Redirect(w, r, target, http.StatusFound)
	})
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
// well-formed (others are dropped).
func (af *authFlow) authorizeURL(md providerMetadata, ls loginState, in url.Values) (string, error) {
	u, err := parseEndpoint(md.AuthorizationEndpoint)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("client_id", af.cfg.ClientID)
	q.Set("response_type", "code")
	q.Set("redirect_uri", af.cfg.RedirectURI)
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
	u.RawQuery = q.Encode()
	return u.String(), nil
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

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
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
// the browser back (RFC 6749 §4.1.2). It deletes the login cookie of state
// first (so a replayed callback finds none), answers an IdP error
// (§4.1.2.1) with a 4xx naming it (idpError), checks state against the
// sealed cookie, spends the state (a state this process has already
// accepted is refused, for a client that kept the cookie: spentStates,
// RFC 9700 §2.1; replicas do not share that set), redeems the code with the
// PKCE code_verifier (§4.1.3, RFC 7636 §4.5), verifies the ID token (nonce
// included) and the access token, and answers the tokens as JSON, or as an
// HTML page when Accept prefers text/html.
// Answers carry Cache-Control: no-store and Referrer-Policy: no-referrer
// (the URL holds the code).
//
// When the login carried a return_to other than "/", the service does not
// redirect: it keeps no session, and the tokens must not travel in a URL or a
// cookie, so the answer names return_to (JSON "return_to", and a "Continue"
// link on the HTML page) and the client goes there with its token.
//
// heroes, when not nil, lets the HTML page show the first heroes the new
// access token may read, so a person in a browser sees the API answer
// without copying the token (a browser cannot send a bearer header itself).
func (af *authFlow) handleCallback(heroes heroLister) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		q := r.URL.Query()
		state, code := q.Get("state"), q.Get("code")
		if state != "" && len(state) <= maxStateLen {
			http.SetCookie(w, expiredCookie(loginCookieName(state), af.cfg.secureCookies()))
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
		if err == nil && !af.spent.spend(ls.State, ls.Created, af.now()) {
			err = errStateSpent
		}
		if err != nil {
			af.logger.Warn("auth: callback rejected", "login", loginCookieID(state), "err", err)
			af.fail(w, r, http.StatusBadRequest, "this sign-in is unknown, expired or already finished; "+restartLogin, "invalid_request", "")
			return
		}
		af.finishLogin(w, r, ls, code, heroes)
	})
}

// finishLogin redeems code for the login ls, verifies the tokens and answers
// them.
func (af *authFlow) finishLogin(w http.ResponseWriter, r *http.Request, ls loginState, code string, heroes heroLister) {
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
		"redirect_uri":  {af.cfg.RedirectURI},
		"code_verifier": {ls.CodeVerifier},
		"scope":         {af.scope()},
	})
	if err != nil {
		af.tokenFailure(w, r, err, id, restartLogin)
		return
	}
	if tr.IDToken == "" {
		af.logger.Warn("auth: token endpoint answered without an id_token", "login", id)
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
	af.logger.Info("auth: signed in", "login", id, "oid", idc.ObjectID, "tid", idc.TenantID)
	ans := newTokenAnswer(tr, idc, atc, af.now())
	ans.ReturnTo = ls.ReturnTo
	if ans.ReturnTo == "/" {
		ans.ReturnTo = ""
	}
	if prefersHTML(r.Header.Get("Accept")) {
		names, note := af.heroesPreview(r.Context(), atc, heroes)
		af.renderSignedIn(w, r, ans, idc, names, note)
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
	ans := tokenAnswer{
		TokenType:    "Bearer",
		AccessToken:  tr.AccessToken,
		ExpiresIn:    int64(tr.ExpiresIn),
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
// craft such a link, so the page shows only what is safe to show:
//   - the error code when it is at most maxIdPErrorCode bytes of the RFC's
//     NQSCHAR set (%x20-21 / %x23-5B / %x5D-7E, Appendix A.7); any other
//     value is shown as invalid_request;
//   - error_description only when it is in that set too (Entra's CR, LF and
//     tabs are read as spaces first) and state opens a live login cookie of
//     this browser, i.e. this browser started the login; otherwise a generic
//     message naming the code and any AADSTS code in the description.
//
// What is shown is cut to maxShownIdPText bytes and escaped by writeJSON or
// html/template.
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
	af.logger.Warn("auth: identity provider answered the login with an error", "login", id, "error", code, "aadsts", aadsts, "own_login", live)
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
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// aadstsPattern finds an Entra error code such as AADSTS70008 in a text.
var aadstsPattern = regexp.MustCompile(`AADSTS[0-9]{1,9}`)

// truncate cuts s to at most n bytes (plus "…") without splitting a UTF-8
// sequence, and replaces invalid UTF-8: for putting untrusted values (claims,
// headers, provider messages) into errors and logs without letting them flood
// either.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

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
	af.logger.Warn("auth: identity provider metadata unavailable", "err", err)
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
	af.logger.Warn("auth: token from the identity provider failed verification", "login", id, "token", which, "err", err)
	af.fail(w, r, http.StatusBadGateway, "the identity provider returned a token that failed verification", "", "")
}

// Errors of redeem besides *tokenError.
var (
	errTokenTimeout     = errors.New("auth: token endpoint timed out")
	errTokenUnreachable = errors.New("auth: token endpoint unreachable")
	errTokenAnswer      = errors.New("auth: token endpoint answer unusable")
)

// tokenResponse is a successful token endpoint answer (RFC 6749 §5.1, OpenID
// Connect Core §3.1.3.3). Unknown members (ext_expires_in, …) are ignored.
type tokenResponse struct {
	TokenType    string    `json:"token_type"`
	AccessToken  string    `json:"access_token"`
	ExpiresIn    expiresIn `json:"expires_in"`
	Scope        string    `json:"scope"`
	RefreshToken string    `json:"refresh_token"`
	IDToken      string    `json:"id_token"`
}

// expiresIn is the expires_in member, in seconds (RFC 6749 §5.1). Entra's v2
// endpoint sends a JSON number and its v1 endpoint a numeric string; both are
// accepted. Negative, fractional or non-numeric values are errors.
type expiresIn int64

// UnmarshalJSON accepts 3599 or "3599" (and null, as 0).
func (e *expiresIn) UnmarshalJSON(data []byte) error {
	s := string(data)
	if s == "null" {
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("auth: expires_in %q is not a non-negative integer", truncate(s, 20))
	}
	*e = expiresIn(n)
	return nil
}

// tokenError is an error answer of the token endpoint: RFC 6749 §5.2's error
// and error_description, plus Entra's error_codes (AADSTS numbers),
// trace_id and correlation_id. Status is the HTTP status. Text fields are
// bounded by parseTokenAnswer.
type tokenError struct {
	Status        int    `json:"-"`
	Code          string `json:"error"`
	Description   string `json:"error_description"`
	ErrorCodes    []int  `json:"error_codes"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
}

// Error returns "auth: token endpoint: <error> <AADSTS code>".
func (e *tokenError) Error() string {
	return strings.TrimSpace("auth: token endpoint: " + e.Code + " " + e.aadsts())
}

// aadsts returns the first Entra error code as "AADSTS<n>", from error_codes
// or else from the description, or "".
func (e *tokenError) aadsts() string {
	if len(e.ErrorCodes) > 0 {
		return "AADSTS" + strconv.Itoa(e.ErrorCodes[0])
	}
	return aadstsPattern.FindString(e.Description)
}

// configFault returns the operator's fix when the answer carries an Entra
// error code listed in configFaults.
func (e *tokenError) configFault() (string, bool) {
	codes := e.ErrorCodes
	if len(codes) == 0 {
		if n, err := strconv.Atoi(strings.TrimPrefix(e.aadsts(), "AADSTS")); err == nil {
			codes = []int{n}
		}
	}
	for _, c := range codes {
		if fix, ok := configFaults[c]; ok {
			return fix, true
		}
	}
	return "", false
}

// hasCode reports whether the answer carries Entra error code n.
func (e *tokenError) hasCode(n int) bool {
	for _, c := range e.ErrorCodes {
		if c == n {
			return true
		}
	}
	return e.aadsts() == "AADSTS"+strconv.Itoa(n)
}

// redeem posts a hand-built application/x-www-form-urlencoded token request
// (RFC 6749 §3.2, §4.1.3, §6) with form plus client_id and the client
// authentication of cfg.ClientAuth: client_secret in the body (§2.3.1,
// "post"), HTTP Basic with form-encoded id and secret ("basic"), or a client
// assertion signed with the certificate (RFC 7523 §2.2, "certificate"). It
// waits at most idpTimeout and reads at most maxTokenAnswer bytes. Errors:
// errTokenTimeout, errTokenUnreachable, errTokenAnswer (wrapped, naming what
// was wrong), or *tokenError. Neither the form nor the answer is logged.
func (af *authFlow) redeem(ctx context.Context, md providerMetadata, form url.Values) (*tokenResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	if _, err := parseEndpoint(md.TokenEndpoint); err != nil {
		return nil, fmt.Errorf("%w: %w", errTokenUnreachable, err)
	}
	form.Set("client_id", af.cfg.ClientID)
	switch af.cfg.ClientAuth {
	case clientAuthCertificate:
		assertion, err := af.cert.assertion(af.cfg.ClientID, md.TokenEndpoint, af.now())
		if err != nil {
			return nil, err
		}
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", assertion)
	case clientAuthPost:
		form.Set("client_secret", af.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTokenUnreachable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if af.cfg.ClientAuth == clientAuthBasic {
		req.SetBasicAuth(url.QueryEscape(af.cfg.ClientID), url.QueryEscape(af.cfg.ClientSecret))
	}
	resp, err := af.client.Do(req)
	if err != nil {
		return nil, networkError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenAnswer+1))
	if err != nil {
		return nil, networkError(err)
	}
	if len(body) > maxTokenAnswer {
		return nil, fmt.Errorf("%w: larger than %d bytes", errTokenAnswer, maxTokenAnswer)
	}
	return parseTokenAnswer(resp.StatusCode, resp.Header.Get("Content-Type"), body)
}

// networkError classifies a failed exchange: errTokenTimeout when a deadline
// passed (the client's Timeout or the context's), else errTokenUnreachable.
func networkError(err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", errTokenTimeout, err)
	}
	return fmt.Errorf("%w: %w", errTokenUnreachable, err)
}

// parseTokenAnswer reads a token endpoint answer: a 200 JSON success with an
// access_token of token_type Bearer (RFC 6749 §5.1), or a JSON error
// (§5.2) returned as *tokenError. Anything else, non-JSON included, is
// errTokenAnswer.
func parseTokenAnswer(status int, contentType string, body []byte) (*tokenResponse, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	isJSON := err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
	if !isJSON {
		return nil, fmt.Errorf("%w: status %d, content type %q", errTokenAnswer, status, truncate(contentType, 60))
	}
	var te tokenError
	if status != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		if err := json.Unmarshal(body, &te); err == nil && te.Code != "" {
			te.Status = status
			te.Code = truncate(te.Code, 64)
			te.Description = truncate(te.Description, maxShownIdPText)
			te.TraceID, te.CorrelationID = truncate(te.TraceID, 64), truncate(te.CorrelationID, 64)
			te.ErrorCodes = te.ErrorCodes[:min(len(te.ErrorCodes), 8)]
			return nil, &te
		}
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d without an OAuth error", errTokenAnswer, status)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, fmt.Errorf("%w: %w", errTokenAnswer, err)
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("%w: no access_token", errTokenAnswer)
	}
	if !strings.EqualFold(tr.TokenType, "Bearer") {
		return nil, fmt.Errorf("%w: token_type %q is not Bearer", errTokenAnswer, truncate(tr.TokenType, 20))
	}
	return &tr, nil
}

// configFaults are Entra error codes that mean the service is misconfigured,
// with the fix an operator should make (Microsoft's AADSTS error reference).
// They are looked up before userFixable, so a fault answered as
// invalid_grant is still a 502 for the operator, not a 400 for the user.
var configFaults = map[int]string{
	7000215: "AZURE_CLIENT_SECRET is not a valid secret of the app registration (use the secret's Value, not its Secret ID)",
	7000222: "AZURE_CLIENT_SECRET has expired: add a new client secret to the app registration",
	50011:   "REDIRECT_URI does not exactly match a redirect URI registered on the app (Authentication > Web)",
	// Entra answers a redirect URI mismatch at the token endpoint with
	// 500112, as invalid_client or invalid_grant
	// (AzureAD/microsoft-identity-web#3114): no new sign-in fixes it.
	500112:  "REDIRECT_URI must be registered on the app exactly as set (Authentication > Web; scheme, host, port, path and trailing slash count) and reach the provider unchanged in both the authorization and the token request",
	700016:  "AZURE_CLIENT_ID is not an application in tenant AZURE_TENANT_ID",
	700027:  "the client assertion was rejected: upload the certificate of AZURE_CLIENT_CERTIFICATE_PATH to the app registration",
	700024:  "the client assertion is outside its validity window: check the server clock",
	7000218: "the request carried no client credential: set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH",
	500011:  "API_SCOPE names a resource that is not in the tenant: check the App ID URI",
	70011:   "API_SCOPE is not a valid scope of the API: check Expose an API in the app registration",
	90002:   "AZURE_TENANT_ID does not name an existing tenant",
	900023:  "AZURE_TENANT_ID is not a valid tenant id",
}

// userFixable are OAuth error codes a fresh sign-in fixes: an expired,
// reused or revoked code or refresh token (AADSTS70008, 54005, 700082,
// 50173…), or a grant that now needs user interaction (MFA, consent).
var userFixable = map[string]bool{
	"invalid_grant": true, "interaction_required": true, "consent_required": true, "login_required": true,
}

// tokenFailure answers a failed redeem (Entra's AADSTS error reference):
//   - a configuration fault (configFaults: bad or expired secret, redirect
//     URI mismatch, unknown app, rejected certificate…): 502 with the AADSTS
//     code in the body, and an error log line naming the fix;
//   - a user-fixable error (userFixable: expired or redeemed code, expired
//     refresh token, interaction needed): 400 ending with restart;
//   - temporarily_unavailable or a 503: 503 with Retry-After;
//   - any other OAuth error: 502 naming it;
//   - no OAuth error: 504 on a timeout, else 502 (classifyNetworkFailure).
//
// id correlates the log line with the login ("" for refresh).
func (af *authFlow) tokenFailure(w http.ResponseWriter, r *http.Request, err error, id, restart string) {
	var te *tokenError
	if !errors.As(err, &te) {
		status, detail := classifyNetworkFailure(err)
		af.logger.Warn("auth: token request failed", "login", id, "err", err)
		af.fail(w, r, status, detail, "", "")
		return
	}
	aadsts := te.aadsts()
	if fix, ok := te.configFault(); ok {
		af.logger.Error("auth: the identity provider rejected the service's configuration",
			"login", id, "error", te.Code, "aadsts", aadsts, "fix", fix,
			"description", te.Description, "trace_id", te.TraceID, "correlation_id", te.CorrelationID)
		af.fail(w, r, http.StatusBadGateway, "the service is misconfigured for the identity provider ("+aadsts+"); an operator must fix it", te.Code, aadsts)
		return
	}
	af.logger.Warn("auth: token endpoint returned an error", "login", id, "status", te.Status, "error", te.Code,
		"aadsts", aadsts, "description", te.Description, "trace_id", te.TraceID, "correlation_id", te.CorrelationID)
	switch {
	case userFixable[te.Code]:
		detail := describeGrantError(te)
		af.fail(w, r, http.StatusBadRequest, detail+" ("+strings.TrimSpace(te.Code+" "+aadsts)+"); "+restart, te.Code, aadsts)
	case te.Code == "temporarily_unavailable" || te.Status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
		af.fail(w, r, http.StatusServiceUnavailable, "the identity provider is temporarily unavailable; try again shortly", te.Code, aadsts)
	default:
		af.fail(w, r, http.StatusBadGateway, "the identity provider refused the token request ("+strings.TrimSpace(te.Code+" "+aadsts)+")", te.Code, aadsts)
	}
}

// grantErrorText describes, by Entra error code, why the identity provider
// refused a code or refresh token (Microsoft's AADSTS error reference).
var grantErrorText = []struct {
	code int
	text string
}{
	{70008, "the sign-in code or refresh token has expired"},
	{54005, "the sign-in code was already redeemed"},
	{70000, "the sign-in code or refresh token is invalid or was already used"},
	{700082, "the refresh token has expired after a long time unused"},
	{50173, "the grant was revoked (for example after a password change)"},
	{50076, "the sign-in now needs multi-factor authentication"},
	{65001, "the user or an administrator has not consented to the app"},
}

// describeGrantError describes a user-fixable token error by its Entra error
// code (grantErrorText), by its OAuth error code for interaction_required,
// consent_required and login_required, and otherwise as a grant that is
// "invalid, expired or already used" (RFC 6749 §5.2 invalid_grant).
func describeGrantError(te *tokenError) string {
	for _, g := range grantErrorText {
		if te.hasCode(g.code) {
			return g.text
		}
	}
	switch te.Code {
	case "interaction_required", "login_required":
		return "the sign-in needs the user again"
	case "consent_required":
		return "the user or an administrator has not consented to the app"
	}
	return "the sign-in code or refresh token is invalid, expired or already used"
}

// classifyNetworkFailure maps a redeem error that is not a *tokenError to a
// status and message: 504 for errTokenTimeout, 502 otherwise.
func classifyNetworkFailure(err error) (int, string) {
	switch {
	case errors.Is(err, errTokenTimeout):
		return http.StatusGatewayTimeout, "the identity provider did not answer in time"
	case errors.Is(err, errTokenAnswer):
		return http.StatusBadGateway, "the identity provider's token endpoint gave an unusable answer"
	default:
		return http.StatusBadGateway, "the identity provider's token endpoint could not be reached"
	}
}

// handleRefresh serves POST /auth/refresh: it takes refresh_token from an
// application/x-www-form-urlencoded or application/json body (at most
// maxRefreshBody bytes; 413 beyond, 415 for other types, 400 when missing)
// and redeems it (grant_type=refresh_token, RFC 6749 §6) with the same client
// authentication and error mapping as the callback. The new access token is
// verified before it is handed out, and a new ID token when one comes. An
// answer without a new refresh token or ID token is normal (Entra rotates
// refresh tokens at will; OpenID Connect Core §12.2): the JSON notes say so.
func (af *authFlow) handleRefresh() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		rt, status, detail := readRefreshToken(w, r)
		if status != 0 {
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
		af.logger.Info("auth: tokens refreshed", "oid", atc.ObjectID, "tid", atc.TenantID)
		writeJSON(w, http.StatusOK, ans)
	})
}

// readRefreshToken reads refresh_token from the body of r. On failure it
// returns the status (400, 413 or 415) and a message; status is 0 on success.
func readRefreshToken(w http.ResponseWriter, r *http.Request) (token string, status int, detail string) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = ""
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRefreshBody)
	switch mt {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return "", bodyErrorStatus(err), "the form body is unreadable or too large"
		}
		token = r.PostForm.Get("refresh_token")
	case "application/json":
		var in struct {
			RefreshToken string `json:"refresh_token"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return "", bodyErrorStatus(err), "the JSON body must be {\"refresh_token\": \"…\"}"
		}
		if dec.More() {
			return "", http.StatusBadRequest, "the JSON body must hold one object"
		}
		token = in.RefreshToken
	default:
		return "", http.StatusUnsupportedMediaType, "send refresh_token as application/x-www-form-urlencoded or application/json"
	}
	if token == "" {
		return "", http.StatusBadRequest, "refresh_token is required"
	}
	return token, 0, ""
}

// bodyErrorStatus is 413 when err comes from http.MaxBytesReader, else 400.
func bodyErrorStatus(err error) int {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
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
			http.SetCookie(w, expiredCookie(name, af.cfg.secureCookies()))
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
			af.logger.Error("auth: unusable end_session_endpoint in the discovery document", "err", err)
			af.fail(w, r, http.StatusBadGateway, "the identity provider's logout endpoint is unusable", "", "")
			return
		}
		if af.cfg.PostLogoutRedirectURI != "" {
			q := u.Query()
			q.Set("post_logout_redirect_uri", af.cfg.PostLogoutRedirectURI)
			u.RawQuery = q.Encode()
		}
		af.logger.Info("auth: logout")
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
}

// handleIndex serves GET /: a plain HTML page (no external assets) with a
// sign-in link and links to the API and its OpenAPI document.
func handleIndex(cfg config) http.Handler {
	data := map[string]any{"Dev": cfg.Dev, "Scopes": cfg.APIScopes}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renderPage(w, http.StatusOK, "index", data)
	})
}

// prefersHTML reports whether an Accept header (RFC 9110 §12.5.1) ranks
// text/html above application/json, each taking the q of its most specific
// matching range. A tie (such as curl's */*) means JSON, the API's default.
// Only the first maxAcceptLen bytes are read.
func prefersHTML(accept string) bool {
	if len(accept) > maxAcceptLen {
		accept = accept[:maxAcceptLen]
	}
	htmlQ, jsonQ := 0.0, 0.0
	htmlSpec, jsonSpec := -1, -1
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || !(f >= 0 && f <= 1) {
				continue
			}
			q = f
		}
		if s := rangeSpecificity(mt, "text/html"); s > htmlSpec {
			htmlSpec, htmlQ = s, q
		}
		if s := rangeSpecificity(mt, "application/json"); s > jsonSpec {
			jsonSpec, jsonQ = s, q
		}
	}
	return htmlQ > jsonQ
}

// rangeSpecificity is how specifically the media range rng matches the media
// type want: 2 exactly, 1 as type/*, 0 as */*, -1 not at all.
func rangeSpecificity(rng, want string) int {
	switch {
	case rng == want:
		return 2
	case rng == "*/*":
		return 0
	case strings.HasSuffix(rng, "/*") && strings.HasPrefix(want, strings.TrimSuffix(rng, "*")):
		return 1
	}
	return -1
}

// renderSignedIn answers the callback with the signed-in HTML page.
// heroLister is the part of the hero store the signed-in page reads.
type heroLister interface {
	List(ctx context.Context, offset, limit int) ([]hero, error)
}

// heroesPreview is what GET /api/heroes/?limit=10 would answer to the access
// token atc, for the signed-in page: the heroes' names, or a sentence saying
// why there are none to show. It applies the same permission rule as the
// API (hasPermission) and reads nothing when heroes is nil.
func (af *authFlow) heroesPreview(ctx context.Context, atc *claims, heroes heroLister) (names []string, note string) {
	switch {
	case heroes == nil:
		return nil, ""
	case !hasPermission(atc, permRead):
		return nil, "This token does not grant " + permRead + ", so the API would answer 403."
	}
	list, err := heroes.List(ctx, 0, 10)
	if err != nil {
		af.logger.Warn("auth: heroes for the signed-in page", "err", err)
		return nil, "The heroes could not be read just now."
	}
	for _, h := range list {
		names = append(names, h.Name)
	}
	if len(names) == 0 {
		return nil, "There are no heroes yet."
	}
	return names, ""
}

func (af *authFlow) renderSignedIn(w http.ResponseWriter, r *http.Request, ans tokenAnswer, idc *claims, heroNames []string, heroNote string) {
	// The API lives next to the callback: REDIRECT_URI without its
	// /auth/callback suffix (which keeps a reverse proxy's path prefix).
	base := "http://localhost:8000"
	if u, err := url.Parse(af.cfg.RedirectURI); err == nil && u.Host != "" {
		base = u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/auth/callback")
	}
	af.render(w, http.StatusOK, "signedin", map[string]any{
		"Name":         idc.Name,
		"Username":     idc.PreferredUsername,
		"TenantID":     idc.TenantID,
		"Scopes":       strings.Fields(ans.Scope),
		"ExpiresIn":    ans.ExpiresIn,
		"ExpiresAt":    af.now().Add(time.Duration(ans.ExpiresIn) * time.Second).UTC().Format(time.RFC1123),
		"Token":        ans.AccessToken,
		"Curl":         "curl -H 'Authorization: Bearer " + ans.AccessToken + "' " + base + "/api/heroes/",
		"RefreshToken": ans.RefreshToken,
		"RefreshCurl":  "curl -X POST --data-urlencode 'refresh_token=" + ans.RefreshToken + "' " + base + "/auth/refresh",
		"ReturnTo":     ans.ReturnTo,
		"Heroes":       heroNames,
		"HeroesNote":   heroNote,
	})
}

// render writes page name of pages with status, logging template errors.
func (af *authFlow) render(w http.ResponseWriter, status int, name string, data any) {
	if err := renderPage(w, status, name, data); err != nil {
		af.logger.Error("auth: rendering page", "page", name, "err", err)
	}
}

// renderPage executes page name into a buffer, then writes it as text/html
// with status; a template error becomes a 500 JSON error.
func renderPage(w http.ResponseWriter, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
	return nil
}

// pages are the HTML pages of the client half: index, signedin and error.
// html/template escapes every value by context. Parsed once; read-only
// afterwards, and so safe for concurrent use.
var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · heroes-auth</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
pre{background:#f4f4f4;padding:.75rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}</style>
</head><body>{{end}}

{{define "index"}}{{template "head" "Heroes API"}}
<h1>Heroes API</h1>
<p>A small REST API protected by Microsoft Entra ID with the OAuth 2.0 authorization code flow.</p>
{{if .Dev}}<p><strong>Development mode:</strong> sign-in goes to the local identity provider; it is not for production.</p>{{end}}
<ul>
<li><a href="/auth/login">Sign in</a> (or <a href="/auth/login?prompt=select_account">pick another account</a>) to get an access token</li>
<li><a href="/api/heroes/">/api/heroes/</a>: the API (needs <code>Authorization: Bearer &lt;token&gt;</code>)</li>
<li><a href="/openapi.json">/openapi.json</a>: the API's description</li>
<li><a href="/auth/logout">Sign out</a></li>
</ul>
{{with .Scopes}}<p>Scopes asked for: {{range .}}<code>{{.}}</code> {{end}}</p>{{end}}
</body></html>{{end}}

{{define "signedin"}}{{template "head" "Signed in"}}
<h1>Signed in</h1>
<p>Signed in as <strong>{{or .Name "(no name)"}}</strong>{{with .Username}} ({{.}}){{end}}{{with .TenantID}} in tenant <code>{{.}}</code>{{end}}.</p>
<p>Granted scopes: {{range .Scopes}}<code>{{.}}</code> {{else}}none{{end}}</p>
<p>The access token expires in {{.ExpiresIn}} seconds, at {{.ExpiresAt}}.</p>
<p>Call the API:</p>
<pre>{{.Curl}}</pre>
{{if or .Heroes .HeroesNote}}<p>What <code>GET /api/heroes/</code> answers with this token, first ten:</p>
{{with .Heroes}}<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}{{with .HeroesNote}}<p>{{.}}</p>{{end}}{{end}}
<details><summary>Access token</summary><pre>{{.Token}}</pre></details>
{{with .RefreshToken}}<p>A refresh token was issued: POST it to <code>/auth/refresh</code> for a new access token when this one expires:</p>
<pre>{{$.RefreshCurl}}</pre>
<details><summary>Refresh token</summary><pre>{{.}}</pre></details>{{end}}
<p>Keep these tokens private; this page is not stored by the browser cache.</p>
{{with .ReturnTo}}<p><a href="{{.}}">Continue to {{.}}</a></p>{{end}}
<p><a href="/">Home</a> · <a href="/auth/logout">Sign out</a></p>
</body></html>{{end}}

{{define "error"}}{{template "head" "Sign-in failed"}}
<h1>{{.Status}} {{.StatusText}}</h1>
<p>{{.Detail}}</p>
{{with .Error}}<p>Error: <code>{{.}}</code>{{with $.Code}} (<code>{{.}}</code>){{end}}</p>{{end}}
<p><a href="/auth/login">Sign in again</a> · <a href="/">Home</a></p>
</body></html>{{end}}
`))

// Permissions, with the hierarchy Admin ⊇ Heroes.Create ⊇ Heroes.Read. They
// are delegated scopes (scp) or application permissions (roles) of the API's
// Entra app registration, compared exactly.
const (
	permRead   = "Heroes.Read"
	permCreate = "Heroes.Create"
	permAdmin  = "Admin"
)

// bearerRealm is the realm of every WWW-Authenticate challenge (RFC 6750 §3).
const bearerRealm = "heroes-auth"

// requireAuth is the bearer middleware (RFC 6750 §2.1, §3): it takes the
// access token from the Authorization header only (never a query string or
// form field), verifies it with v, checks that its scp/scope or roles grant
// perm, then puts the claims in the request context (principalFrom) and
// calls notePrincipal before next. Answers, with the JSON error body:
//   - no Authorization header, or another scheme: 401 with a bare
//     `Bearer realm="heroes-auth"` challenge;
//   - a malformed header (several headers, no token, not one token68):
//     400 error="invalid_request";
//   - any token fault: 401 error="invalid_token" and an error_description
//     naming the failed check, never echoing the token;
//   - a missing permission: 403 error="insufficient_scope", scope="perm";
//   - no discovery document or key ever loaded: 503 with Retry-After.
//
// The reason is logged at info level, without the token.
func requireAuth(logger *slog.Logger, v *verifier, perm string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, err := bearerToken(r)
			if err != nil {
				rejectBearer(w, logger, err)
				return
			}
			c, err := v.verifyAccessToken(r.Context(), raw)
			if err != nil {
				rejectBearer(w, logger, err)
				return
			}
			notePrincipal(r.Context(), c) // the caller is known, allowed or not
			if !hasPermission(c, perm) {
				logger.Info("auth: bearer token lacks permission", "need", perm, "oid", c.ObjectID, "tid", c.TenantID)
				challenge(w, http.StatusForbidden, "insufficient_scope", "the token does not grant "+perm, `, scope="`+perm+`"`)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, c)))
		})
	}
}

// principalKey is the context key of the verified claims.
type principalKey struct{}

// principalFrom returns the verified claims requireAuth put in ctx. The
// claims may be shared with other requests: read them, never change them.
func principalFrom(ctx context.Context) (*claims, bool) {
	c, ok := ctx.Value(principalKey{}).(*claims)
	return c, ok && c != nil
}

// hasPermission reports whether c's scopes or roles grant perm, with the
// hierarchy Admin ⊇ Heroes.Create ⊇ Heroes.Read. An unknown perm is granted
// to nobody.
func hasPermission(c *claims, perm string) bool {
	var accepted []string
	switch perm {
	case permRead:
		accepted = []string{permRead, permCreate, permAdmin}
	case permCreate:
		accepted = []string{permCreate, permAdmin}
	case permAdmin:
		accepted = []string{permAdmin}
	}
	for _, p := range accepted {
		if contains(c.Scopes, p) || contains(c.Roles, p) {
			return true
		}
	}
	return false
}

// Errors of bearerToken (RFC 6750 §3.1).
var (
	errNoCredentials  = errors.New("auth: no bearer credentials")
	errBadAuthzHeader = errors.New("auth: malformed Authorization header")
)

// bearerToken extracts the token of "Authorization: Bearer <token>"
// (RFC 6750 §2.1, RFC 7235 §2.1): the scheme is matched without regard to
// case, followed by one or more spaces and exactly one token68. It returns
// errNoCredentials when there is no header or another scheme, errBadAuthzHeader
// for a malformed one, and errMalformedToken for a token longer than
// maxTokenBytes.
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", errNoCredentials
	case 1:
	default:
		return "", fmt.Errorf("%w: more than one", errBadAuthzHeader)
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if scheme == "" {
			return "", fmt.Errorf("%w: no scheme", errBadAuthzHeader)
		}
		return "", errNoCredentials
	}
	token := strings.TrimLeft(rest, " ")
	if len(token) > maxTokenBytes {
		return "", fmt.Errorf("%w: longer than %d bytes", errMalformedToken, maxTokenBytes)
	}
	if !isToken68(token) {
		return "", fmt.Errorf("%w: the credentials are not one token68", errBadAuthzHeader)
	}
	return token, nil
}

// isToken68 reports whether s is a token68 (RFC 7235 §2.1):
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for i < len(s) && (isBase64URLByte(s[i]) || strings.IndexByte(".~+/", s[i]) >= 0) {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	return i == len(s)
}

// rejectBearer answers a request whose credentials failed, per RFC 6750 §3.
func rejectBearer(w http.ResponseWriter, logger *slog.Logger, err error) {
	switch {
	case errors.Is(err, errNoCredentials):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+bearerRealm+`"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Detail: "authentication required"})
		return
	case errors.Is(err, errBadAuthzHeader):
		logger.Info("auth: malformed Authorization header", "err", err)
		challenge(w, http.StatusBadRequest, "invalid_request", "the Authorization header is not Bearer and one token", "")
		return
	case errors.Is(err, errIDPUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		logger.Warn("auth: cannot verify bearer token", "err", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Detail: "the identity provider's keys are not available yet; retry later"})
		return
	}
	logger.Info("auth: bearer token refused", "err", err)
	challenge(w, http.StatusUnauthorized, "invalid_token", describeTokenError(err), "")
}

// challenge writes an error answer with a Bearer challenge carrying code and
// description (RFC 6750 §3), extra appended to the challenge as is, and the
// same code and description in the JSON body.
func challenge(w http.ResponseWriter, status int, code, description, extra string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error=%q, error_description=%q%s`, bearerRealm, code, description, extra))
	writeJSON(w, status, apiError{Detail: description, Error: code})
}

// tokenErrorText names, for each verification sentinel, the check that
// failed, in words fit for error_description (RFC 6750 §3: printable ASCII
// without '"' or '\').
var tokenErrorText = []struct {
	err  error
	text string
}{
	{errTokenExpired, "the token expired"},
	{errNotYetValid, "the token is not valid yet (nbf)"},
	{errIssuedInFuture, "the token was issued in the future (iat)"},
	{errBadAudience, "wrong audience"},
	{errBadIssuer, "wrong issuer"},
	{errKeyIssuer, "the signing key belongs to another issuer"},
	{errTenantForbidden, "the tenant is not allowed"},
	{errUnknownKID, "unknown signing key"},
	{errNoKeyID, "the token names no signing key (kid)"},
	{errBadSignature, "bad signature"},
	{errUnsupportedAlg, "unsupported algorithm (only RS256)"},
	{errBadHeader, "unacceptable token header"},
	{errNoPermissions, "the token has neither scp nor roles"},
	{errMalformedToken, "malformed token"},
}

// describeTokenError returns the error_description for a verification error.
func describeTokenError(err error) string {
	for _, t := range tokenErrorText {
		if errors.Is(err, t.err) {
			return t.text
		}
	}
	return "invalid token"
}
