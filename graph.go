package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// GET /api/me: the caller's Microsoft Graph profile, read on their behalf
// with a token from the on-behalf-of grant (oboTokens).

// Bounds of the Microsoft Graph call, in bytes. The call itself waits at
// most idpTimeout.
const (
	maxGraphAnswer  = 64 << 10 // a /me answer is about 1 KiB
	maxChallengeLen = 8 << 10  // of a WWW-Authenticate value read from Graph
)

// Errors of graphProfiles.me besides *graphError.
var (
	errGraphTimeout     = errors.New("graph: Microsoft Graph timed out")
	errGraphUnreachable = errors.New("graph: Microsoft Graph unreachable")
	errGraphAnswer      = errors.New("graph: Microsoft Graph answer unusable")
)

// graphError is an answer of Microsoft Graph other than 200: its status,
// the code of its error body (bounded), the claims request (JSON) of a 401
// insufficient_claims challenge, and Retry-After.
type graphError struct {
	status            int
	code, claims      string
	retryAfterSeconds string
}

func (e *graphError) Error() string {
	return fmt.Sprintf("graph: Microsoft Graph answered %d %s", e.status, e.code)
}

// graphUser is the part of Microsoft Graph's user resource that /api/me
// answers (Microsoft Learn, "Get user": GET /me). Graph may send null for
// the three strings.
type graphUser struct {
	ID                string  `json:"id"`
	DisplayName       *string `json:"displayName"`
	Mail              *string `json:"mail"`
	UserPrincipalName *string `json:"userPrincipalName"`
}

// graphProfiles serves GET /api/me. base is Graph's service root
// (GRAPH_BASE_URL), scope the on-behalf-of scope (GRAPH_SCOPE),
// authorizeURI the tenant's authorization endpoint for claims challenges.
// Safe for concurrent use.
type graphProfiles struct {
	logger                    *slog.Logger
	obo                       *oboTokens
	client                    *http.Client // with a Timeout, following no redirects
	base, scope, authorizeURI string
}

// handleMe serves GET /api/me behind requireAuth: it exchanges the caller's
// access token through the on-behalf-of grant for a token for scope, reads
// GET {base}/v1.0/me, and answers the user's id, displayName, mail and
// userPrincipalName. A token without scp (app-only: no user, no /me) is a
// 403. Failures are oboFailure's and graphFailure's. Never cached.
func (g *graphProfiles) handleMe() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c, ok := principalFrom(r.Context())
		raw, err := bearerToken(r) // requireAuth read it already: it is well-formed
		if !ok || err != nil || !c.Delegated || c.ObjectID == "" {
			writeError(w, http.StatusForbidden, "GET /api/me needs a signed-in user's token (delegated scopes, scp); an app-only token has no profile")
			return
		}
		tok, err := g.obo.token(r.Context(), raw, c, g.scope)
		if err != nil {
			g.oboFailure(w, r, err)
			return
		}
		u, err := g.me(r.Context(), tok)
		if err != nil {
			if ge, ok := errors.AsType[*graphError](err); ok && ge.status == http.StatusUnauthorized {
				g.obo.drop(oboKey{c.TenantID, c.ObjectID, g.scope}) // refused: never send it again
			}
			g.graphFailure(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, u)
	})
}

// me reads GET {base}/v1.0/me?$select=… with the downstream token: status
// 200, a JSON media type, at most maxGraphAnswer bytes, an id. Other
// statuses are *graphError; a timeout errGraphTimeout, other failures
// errGraphUnreachable or errGraphAnswer.
func (g *graphProfiles) me(ctx context.Context, token string) (*graphUser, error) {
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/v1.0/me?$select=id,displayName,mail,userPrincipalName", nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errGraphUnreachable, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, body, err := callAtMost(g.client, req, maxGraphAnswer, errGraphTimeout, errGraphUnreachable, errGraphAnswer)
	switch {
	case err != nil:
		return nil, err
	case resp.StatusCode != http.StatusOK:
		return nil, newGraphError(resp, body)
	case !isJSONType(resp.Header.Get("Content-Type")):
		return nil, fmt.Errorf("%w: content type %q", errGraphAnswer, truncate(resp.Header.Get("Content-Type"), 60))
	}
	var u graphUser
	if err := json.Unmarshal(body, &u); err != nil || u.ID == "" {
		return nil, fmt.Errorf("%w: not a user with an id", errGraphAnswer)
	}
	return &u, nil
}

// newGraphError reads a non-200 answer: Graph's {"error":{"code":…}} body,
// Retry-After in seconds (at most an hour), and for a 401 the claims of an
// insufficient_claims Bearer challenge (Microsoft Learn, "How to use
// continuous access evaluation enabled APIs in your applications"), in
// whatever form it comes (readClaimsRequest).
func newGraphError(resp *http.Response, body []byte) *graphError {
	e := &graphError{status: resp.StatusCode}
	var b struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &b) == nil && isNQSChars(b.Error.Code) {
		e.code = truncate(b.Error.Code, 64)
	}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n >= 0 && n <= 3600 {
		e.retryAfterSeconds = strconv.Itoa(n)
	}
	for _, h := range resp.Header.Values("WWW-Authenticate") {
		if p := bearerChallengeParams(h); e.status == http.StatusUnauthorized && strings.EqualFold(p["error"], "insufficient_claims") {
			if c, err := readClaimsRequest(p["claims"]); err == nil && c != "" {
				e.claims = c
				break
			}
		}
	}
	return e
}

// bearerChallengeParams returns the auth-params of the first Bearer
// challenge in a WWW-Authenticate value (RFC 7235 §4.1, RFC 6750 §3), names
// lowercased, the first of a repeated name kept: name=token or
// name="quoted-string" (backslash escapes undone), and leniently a value
// that is neither, up to the next comma (Graph sends authorization_uri
// unquoted). Other challenges in the value are skipped. Nil when there is
// no Bearer challenge. At most maxChallengeLen bytes are read.
func bearerChallengeParams(h string) map[string]string {
	h = h[:min(len(h), maxChallengeLen)]
	var params map[string]string
	inBearer := false
	for h != "" {
		h = strings.TrimLeft(h, " \t,")
		n := strings.IndexFunc(h, func(r rune) bool { return !isTokenChar(r) })
		if n < 0 {
			n = len(h)
		}
		name, rest := h[:n], strings.TrimLeft(h[n:], " \t")
		switch {
		case name != "" && strings.HasPrefix(rest, "="):
			var value string
			value, h = authParamValue(rest[1:])
			if _, seen := params[strings.ToLower(name)]; inBearer && !seen {
				params[strings.ToLower(name)] = value
			}
		case name != "": // a scheme starts the next challenge
			if inBearer {
				return params
			}
			if inBearer = strings.EqualFold(name, "Bearer"); inBearer {
				params = map[string]string{}
			}
			h = rest
		default:
			h = h[min(1, len(h)):] // not a token: skip the byte
		}
	}
	return params
}

// authParamValue reads an auth-param value at the start of s: a
// quoted-string, or anything up to the next comma; it returns the value and
// what follows it.
func authParamValue(s string) (value, rest string) {
	s = strings.TrimLeft(s, " \t")
	if !strings.HasPrefix(s, `"`) {
		v, rest, _ := strings.Cut(s, ",")
		return strings.TrimSpace(v), rest
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return b.String(), s[i+1:]
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "" // unterminated: the rest is the value
}

// isTokenChar reports whether r is an RFC 7230 §3.2.6 tchar.
func isTokenChar(r rune) bool {
	return r < 0x7f && ('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

// oboFailure answers a failed on-behalf-of exchange: a refusal of the
// token endpoint by oboRefused; the client credential unavailable (an error
// log line says why) or the endpoint unreachable: 502; the discovery
// document or keys unavailable: 503 with Retry-After; a timeout: 504.
func (g *graphProfiles) oboFailure(w http.ResponseWriter, r *http.Request, err error) {
	if te, ok := errors.AsType[*tokenError](err); ok {
		g.oboRefused(w, r, te)
		return
	}
	switch {
	case errors.Is(err, errClientCredential):
		g.logger.ErrorContext(r.Context(), "graph: the service's client credential is unavailable; an operator must fix it", "err", err)
		writeError(w, http.StatusBadGateway, "the service cannot authenticate to the identity provider just now (client credential unavailable)")
	case errors.Is(err, errIDPUnavailable):
		g.logger.WarnContext(r.Context(), "graph: identity provider metadata unavailable", "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "the identity provider is unavailable; try again shortly")
	default:
		g.logger.WarnContext(r.Context(), "graph: on-behalf-of request failed", "err", err)
		status, detail := classifyNetworkFailure(err)
		writeError(w, status, detail)
	}
}

// oboRefused answers an error of the token endpoint to the on-behalf-of
// grant (Microsoft Learn, On-Behalf-Of flow "Error response example" and
// "Gaining consent"; AADSTS error reference), as Microsoft.Identity.Web
// turns MsalUiRequiredException into a challenge:
//   - a claims challenge (claims in the answer: MFA, a Conditional Access
//     policy of Graph): 401 insufficient_claims passing it on (claimsChallenge);
//   - consent missing (AADSTS65001, consent_required): 403 saying so;
//   - the caller's token expired meanwhile (AADSTS500133): 401 invalid_token;
//   - user interaction needed without claims (interaction_required,
//     AADSTS50076, 50079): 401 invalid_token asking for a new sign-in;
//   - the service's configuration refused (configFaults): 502, error logged;
//   - temporarily_unavailable or a 503: 503 with Retry-After; else 502.
func (g *graphProfiles) oboRefused(w http.ResponseWriter, r *http.Request, te *tokenError) {
	codes, aadsts := te.codes(), te.aadsts()
	g.logger.WarnContext(r.Context(), "graph: on-behalf-of refused", "status", te.Status, "error", te.Code, "aadsts", aadsts,
		"suberror", te.Suberror, "claims_challenge", te.Claims != "", "entra_trace_id", te.TraceID, "entra_correlation_id", te.CorrelationID)
	claims, err := readClaimsRequest(te.Claims)
	switch fix, fault := te.configFault(); {
	case err == nil && claims != "":
		claimsChallenge(w, g.authorizeURI, claims, "Microsoft Graph needs more from the sign-in ("+strings.TrimSpace(te.Code+" "+aadsts)+
			"): sign in again with the claims of this challenge")
	case slices.Contains(codes, 65001) || te.Suberror == "consent_required" || te.Code == "consent_required":
		writeJSON(w, http.StatusForbidden, apiError{Error: "consent_required", Code: aadsts, Detail: "consent is missing: the user or an " +
			"administrator has not consented to this API reading Microsoft Graph (" + g.scope + ") on the user's behalf; grant it on the app registration's API permissions"})
	case slices.Contains(codes, 500133):
		challenge(w, http.StatusUnauthorized, "invalid_token", "the token expired", "")
	case te.Code == "interaction_required" || slices.Contains(codes, 50076) || slices.Contains(codes, 50079):
		challenge(w, http.StatusUnauthorized, "invalid_token", "the user must sign in again ("+strings.TrimSpace(te.Code+" "+aadsts)+")", "")
	case fault:
		g.logger.ErrorContext(r.Context(), "graph: the identity provider rejected the service's configuration", "aadsts", aadsts, "fix", fix)
		writeJSON(w, http.StatusBadGateway, apiError{Detail: "the service is misconfigured for the identity provider (" + aadsts + "); an operator must fix it", Code: aadsts})
	case te.Code == "temporarily_unavailable" || te.Status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "the identity provider is temporarily unavailable; try again shortly")
	default:
		writeJSON(w, http.StatusBadGateway, apiError{Detail: "the identity provider refused the on-behalf-of exchange (" + strings.TrimSpace(te.Code+" "+aadsts) + ")", Code: aadsts})
	}
}

// graphFailure answers a failed Graph call: a 401 claims challenge (such as
// continuous access evaluation's): 401 insufficient_claims passing it on;
// another 401: 502 (Graph refused a token just issued); 403: 403; 429 or
// 503: 503 with Graph's Retry-After (5 s without one); a timeout: 504;
// anything else: 502.
func (g *graphProfiles) graphFailure(w http.ResponseWriter, r *http.Request, err error) {
	g.logger.WarnContext(r.Context(), "graph: GET /me failed", "err", err)
	ge, _ := errors.AsType[*graphError](err)
	switch {
	case ge != nil && ge.claims != "":
		claimsChallenge(w, g.authorizeURI, ge.claims, "Microsoft Graph asks for a new sign-in: sign in again with the claims of this challenge")
	case ge != nil && ge.status == http.StatusForbidden:
		writeError(w, http.StatusForbidden, "Microsoft Graph refused to read the user's profile ("+ge.code+")")
	case ge != nil && (ge.status == http.StatusTooManyRequests || ge.status == http.StatusServiceUnavailable):
		w.Header().Set("Retry-After", cmp.Or(ge.retryAfterSeconds, "5"))
		writeError(w, http.StatusServiceUnavailable, "Microsoft Graph is busy; try again after Retry-After seconds")
	case errors.Is(err, errGraphTimeout):
		writeError(w, http.StatusGatewayTimeout, "Microsoft Graph did not answer in time")
	default:
		writeError(w, http.StatusBadGateway, "Microsoft Graph could not be read just now")
	}
}
