package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// idpTimeout bounds every call to the identity provider's token endpoint,
// whatever the caller's deadline; the service's IdP client has the same
// Timeout.
const idpTimeout = 10 * time.Second

// Errors of redeem besides *tokenError.
var (
	errTokenTimeout     = errors.New("auth: token endpoint timed out")
	errTokenUnreachable = errors.New("auth: token endpoint unreachable")
	errTokenAnswer      = errors.New("auth: token endpoint answer unusable")
	// errClientCredential: the client assertion could not be had (the
	// federated token file is missing or empty, the managed identity
	// endpoint failed); no request was sent.
	errClientCredential = errors.New("auth: client credential unavailable")
)

// tokenResponse is a token endpoint answer, decoded once whatever it holds,
// as x/oauth2's internal tokenJSON: the success members (RFC 6749 §5.1,
// OpenID Connect Core §3.1.3.3) and the error members (RFC 6749 §5.2, with
// Entra's error_codes, suberror, claims, trace_id and correlation_id).
// Unknown members (ext_expires_in, …) are ignored.
type tokenResponse struct {
	TokenType   string `json:"token_type"`
	AccessToken string `json:"access_token"`
	// ExpiresIn is the access token's lifetime in seconds: a number from
	// Entra's v2 endpoint, a numeric string from its v1 endpoint, "" when
	// absent. Read it with lifetime.
	ExpiresIn    json.Number `json:"expires_in"`
	Scope        string      `json:"scope"`
	RefreshToken string      `json:"refresh_token"`
	IDToken      string      `json:"id_token"`

	ErrorCode        string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"` // AADSTS numbers
	Suberror         string `json:"suberror"`    // Entra's refinement: consent_required, basic_action, message_only…
	// Claims is the claims challenge a Conditional Access policy answers an
	// on-behalf-of or refresh request with: JSON text in a JSON string
	// (Microsoft Learn, "On-Behalf-Of flow", error response example).
	Claims        string `json:"claims"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
}

// lifetime returns expires_in in seconds (0 when absent) and whether it is
// the non-negative integer RFC 6749 §5.1 asks for: 3599 and "3599" are,
// -1, 1.5 and "soon" are not.
func (tr *tokenResponse) lifetime() (int64, bool) {
	if tr.ExpiresIn == "" {
		return 0, true
	}
	n, err := tr.ExpiresIn.Int64()
	return n, err == nil && n >= 0
}

// tokenError is an error answer of the token endpoint (tokenResponse's error
// members) with its HTTP status. parseTokenAnswer bounds and cleans its text
// fields (cleanIdPText).
type tokenError struct {
	Status        int
	Code          string // RFC 6749 §5.2 error
	Description   string
	ErrorCodes    []int
	Suberror      string
	Claims        string // a claims challenge (JSON), "" when none or longer than maxClaimsLen
	TraceID       string
	CorrelationID string
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

// codes returns the answer's Entra error codes: error_codes, or else the
// AADSTS code in the description (all Entra's v1 endpoint may give).
func (e *tokenError) codes() []int {
	if len(e.ErrorCodes) > 0 {
		return e.ErrorCodes
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(e.aadsts(), "AADSTS")); err == nil {
		return []int{n}
	}
	return nil
}

// configFault returns the operator's fix when the answer carries an Entra
// error code listed in configFaults.
func (e *tokenError) configFault() (string, bool) {
	for _, c := range e.codes() {
		if fix, ok := configFaults[c]; ok {
			return fix, true
		}
	}
	return "", false
}

// redeem posts form to the token endpoint (RFC 6749 §3.2, §4.1.3, §6) as
// tokenRequest builds it, waits at most idpTimeout and reads at most
// maxTokenAnswer bytes. Errors: errTokenTimeout, errTokenUnreachable,
// errTokenAnswer (wrapped, naming what was wrong), or *tokenError; one that
// refuses the client assertion (rejectsAssertion) drops the held one
// (clientCredential.forget). Neither the form nor the answer is logged.
func (af *authFlow) redeem(ctx context.Context, md providerMetadata, form url.Values) (*tokenResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	if _, err := parseEndpoint(md.TokenEndpoint); err != nil {
		return nil, fmt.Errorf("%w: %w", errTokenUnreachable, err)
	}
	req, err := af.tokenRequest(ctx, md.TokenEndpoint, form)
	if err != nil {
		return nil, err
	}
	resp, body, err := callAtMost(af.client, req, maxTokenAnswer, errTokenTimeout, errTokenUnreachable, errTokenAnswer)
	if err != nil {
		return nil, err
	}
	tr, err := parseTokenAnswer(resp.StatusCode, resp.Header.Get("Content-Type"), body)
	if te, ok := errors.AsType[*tokenError](err); ok && te.rejectsAssertion() {
		af.cred.forget(ctx, form.Get("client_assertion"))
	}
	return tr, err
}

// rejectsAssertion reports whether the answer refuses the client's
// authentication: invalid_client (RFC 6749 §5.2), or AADSTS700024 (the
// assertion is outside its validity window), which Entra may send as
// invalid_grant. A client assertion held for later requests must then go.
func (e *tokenError) rejectsAssertion() bool {
	return e.Code == "invalid_client" || slices.Contains(e.codes(), 700024)
}

// callAtMost sends req with client and reads at most max bytes of the
// answer, closing its body: the one call-and-read of the token endpoint
// (redeem) and of Microsoft Graph (graphProfiles.me), each passing its own
// errors. An answer over max is answer ("larger than max bytes"); a failed
// call or read is networkError's.
func callAtMost(client *http.Client, req *http.Request, max int64, timeout, unreachable, answer error) (*http.Response, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, networkError(err, timeout, unreachable)
	}
	defer resp.Body.Close()
	body, err := readAtMost(resp.Body, max)
	if errors.Is(err, errTooLarge) {
		return nil, nil, fmt.Errorf("%w: larger than %d bytes", answer, max)
	}
	if err != nil {
		return nil, nil, networkError(err, timeout, unreachable)
	}
	return resp, body, nil
}

// networkError classifies a failed exchange: timeout (wrapping err) when a
// deadline passed (the client's Timeout or the context's), else
// unreachable.
func networkError(err, timeout, unreachable error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", timeout, err)
	}
	return fmt.Errorf("%w: %w", unreachable, err)
}

// parseTokenAnswer reads a token endpoint answer into one tokenResponse. An
// error member makes it a *tokenError, even on a 200 (some servers send one
// so, RFC 6749 §5.2). Otherwise it is a success only with status 200 and
// JSON holding an access_token of token_type Bearer and a valid expires_in
// (§5.1, tokenResponse.lifetime); anything else, non-JSON included, is
// errTokenAnswer.
func parseTokenAnswer(status int, contentType string, body []byte) (*tokenResponse, error) {
	if !isJSONType(contentType) {
		return nil, fmt.Errorf("%w: status %d, content type %q", errTokenAnswer, status, truncate(contentType, 60))
	}
	var tr tokenResponse
	err := json.Unmarshal(body, &tr)
	switch {
	case err == nil && tr.ErrorCode != "":
		te := &tokenError{
			Status:        status,
			Code:          cleanIdPText(tr.ErrorCode, 64),
			Description:   cleanIdPText(tr.ErrorDescription, maxShownIdPText),
			ErrorCodes:    tr.ErrorCodes[:min(len(tr.ErrorCodes), 8)],
			Suberror:      cleanIdPText(tr.Suberror, 64),
			TraceID:       cleanIdPText(tr.TraceID, 64),
			CorrelationID: cleanIdPText(tr.CorrelationID, 64),
		}
		if len(tr.Claims) <= maxClaimsLen {
			te.Claims = tr.Claims // a longer one is no challenge Entra sends
		}
		return nil, te
	case status != http.StatusOK:
		return nil, fmt.Errorf("%w: status %d without an OAuth error", errTokenAnswer, status)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errTokenAnswer, err)
	}
	if _, ok := tr.lifetime(); !ok {
		return nil, fmt.Errorf("%w: expires_in %q is not a non-negative integer", errTokenAnswer, truncate(tr.ExpiresIn.String(), 20))
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("%w: no access_token", errTokenAnswer)
	}
	if !strings.EqualFold(tr.TokenType, "Bearer") {
		return nil, fmt.Errorf("%w: token_type %q is not Bearer", errTokenAnswer, truncate(tr.TokenType, 20))
	}
	return &tr, nil
}

// cleanIdPText makes an identity provider's text fit for a log line or an
// answer: each control character (C0, DEL, C1: Entra ends lines of its
// descriptions with CR LF) becomes a space, the bidirectional embedding,
// override and isolate controls (U+202A to U+202E, U+2066 to U+2069), which
// could make a log line read other than it is, are dropped, and the result
// is cut to n bytes (truncate, which also replaces invalid UTF-8).
func cleanIdPText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return ' '
		case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			return -1
		}
		return r
	}, truncate(s, 4*n))
	return truncate(s, n)
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
	700027:  "the client assertion was rejected: upload the certificate of AZURE_CLIENT_CERTIFICATE_PATH to the app registration, or check the issuer of the federated credential",
	700024:  "the client assertion is outside its validity window: check the server clock (or the rotation of AZURE_FEDERATED_TOKEN_FILE)",
	7000218: "the request carried no client credential: set AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE or AZURE_CLIENT_ASSERTION=managed-identity",
	500011:  "API_SCOPE names a resource that is not in the tenant: check the App ID URI",
	70011:   "API_SCOPE is not a valid scope of the API: check Expose an API in the app registration",
	90002:   "AZURE_TENANT_ID does not name an existing tenant",
	900023:  "AZURE_TENANT_ID is not a valid tenant id",
	// Workload identity federation: no federated credential on the app
	// registration matches the assertion (Microsoft Learn, "Workload
	// identity federation considerations").
	700211: "no federated credential of the app registration has the assertion's issuer: add one (README, federated credentials)",
	700212: "no federated credential of the app registration has the assertion's audience (api://AzureADTokenExchange, or AZURE_TOKEN_EXCHANGE_AUDIENCE)",
	700213: "no federated credential of the app registration has the assertion's subject (the managed identity's principal id, or system:serviceaccount:<namespace>:<name>)",
}

// userFixable are OAuth error codes a fresh sign-in fixes: an expired,
// reused or revoked code or refresh token (AADSTS70008, 54005, 700082,
// 50173…), or a grant that now needs user interaction (MFA, consent).
var userFixable = map[string]bool{
	"invalid_grant": true, "interaction_required": true, "consent_required": true, "login_required": true,
}

// tokenFailure answers a failed redeem (Entra's AADSTS error reference):
//   - the client assertion could not be had (errClientCredential: federated
//     token file missing or empty, managed identity endpoint failing): 502,
//     and an error log line saying why (never the assertion);
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
	if errors.Is(err, errClientCredential) {
		af.logger.ErrorContext(r.Context(), "auth: the service's client credential is unavailable; an operator must fix it", "login", id, "err", err)
		af.fail(w, r, http.StatusBadGateway, "the service cannot authenticate to the identity provider just now (client credential unavailable); an operator must fix it", "", "")
		return
	}
	if !errors.As(err, &te) {
		status, detail := classifyNetworkFailure(err)
		af.logger.WarnContext(r.Context(), "auth: token request failed", "login", id, "err", err)
		af.fail(w, r, status, detail, "", "")
		return
	}
	aadsts := te.aadsts()
	if fix, ok := te.configFault(); ok {
		af.logger.ErrorContext(r.Context(), "auth: the identity provider rejected the service's configuration",
			"login", id, "error", te.Code, "aadsts", aadsts, "fix", fix,
			"description", te.Description, "entra_trace_id", te.TraceID, "entra_correlation_id", te.CorrelationID)
		af.fail(w, r, http.StatusBadGateway, "the service is misconfigured for the identity provider ("+aadsts+"); an operator must fix it", te.Code, aadsts)
		return
	}
	af.logger.WarnContext(r.Context(), "auth: token endpoint returned an error", "login", id, "status", te.Status, "error", te.Code,
		"aadsts", aadsts, "description", te.Description, "entra_trace_id", te.TraceID, "entra_correlation_id", te.CorrelationID)
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
	// Entra's own text for 70008 is "has expired due to inactivity, or is
	// not valid": it also answers so for a token it cannot place.
	{70008, "the sign-in code or refresh token has expired or is not valid"},
	{54005, "the sign-in code was already redeemed"},
	{70000, "the sign-in code or refresh token is invalid or was already used"},
	// A value that is no refresh token or code of Entra's at all (cut,
	// mistyped, from another service or an older -dev run): Entra answers
	// invalid_grant AADSTS9002313, "Request is malformed or invalid".
	{9002313, "the refresh token or code is malformed: it is not one the identity provider issued (check it was copied whole)"},
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
	codes := te.codes()
	for _, g := range grantErrorText {
		if slices.Contains(codes, g.code) {
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
