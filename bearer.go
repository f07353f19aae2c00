package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// bearerRealm is the realm of every WWW-Authenticate challenge (RFC 6750 §3).
const bearerRealm = "heroes-auth"

// requireAuth is the bearer middleware (RFC 6750 §2.1, §3): it takes the
// access token from the Authorization header only (never a query string or
// form field), verifies it (verifier.authenticate), checks that its scp,
// scope or roles grant perm, and puts its principal in the request context
// (principalFrom) for next. It tells a caller hook why it refused
// (withCallerHook), or logs it, never the token, and answers in JSON:
//   - no Authorization header, or another scheme: 401 with a bare
//     `Bearer realm="heroes-auth"` challenge;
//   - a malformed header (several headers, no token, not one token68):
//     400 error="invalid_request";
//   - any token fault: 401 error="invalid_token" and an error_description
//     naming the failed check, never echoing the token;
//   - a missing permission: 403 error="insufficient_scope", scope="perm";
//   - no discovery document or key ever loaded: 503 with Retry-After.
func requireAuth(logger *slog.Logger, v *verifier, perm string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, err := bearerToken(r)
			var p *principal
			if err == nil {
				p, err = v.authenticate(r.Context(), raw)
			}
			if err == nil && !hasPermission(p, perm) {
				err = fmt.Errorf("%w %s", errNotGranted, perm)
			}
			if hook, ok := r.Context().Value(callerHookKey{}).(func(*principal, error)); ok {
				hook(p, err) // one log line per request: the request log's
			} else if err != nil && !errors.Is(err, errNoCredentials) {
				logger.InfoContext(r.Context(), "auth: bearer credentials refused", "err", err)
			}
			if err != nil {
				rejectBearer(w, r, logger, perm, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
		})
	}
}

type principalKey struct{}  // context key of the principal
type callerHookKey struct{} // context key of withCallerHook's hook

// withCallerHook returns ctx with hook, which requireAuth calls with the
// principal of every verified token (allowed or not) and why it refused the
// credentials: how a request log that wraps requireAuth learns who called.
func withCallerHook(ctx context.Context, hook func(p *principal, refused error)) context.Context {
	return context.WithValue(ctx, callerHookKey{}, hook)
}

// principalFrom returns the principal requireAuth put in ctx, for a handler
// that needs its caller.
func principalFrom(ctx context.Context) (*principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*principal)
	return p, ok && p != nil
}

// Errors of bearerToken (RFC 6750 §3.1), and of a token without the permission.
var (
	errNoCredentials  = errors.New("auth: no bearer credentials")
	errBadAuthzHeader = errors.New("auth: malformed Authorization header")
	errNotGranted     = errors.New("auth: the token does not grant")
)

// bearerToken extracts the token of "Authorization: Bearer <token>" (RFC 6750
// §2.1, RFC 7235 §2.1): the scheme matched without regard to case, one or
// more spaces, exactly one token68. It returns errNoCredentials when there is
// no header or another scheme, errBadAuthzHeader for a malformed one, and
// errMalformedToken for a token longer than maxTokenBytes.
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", errNoCredentials
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	token := strings.TrimLeft(rest, " ")
	switch {
	case len(values) > 1:
		return "", fmt.Errorf("%w: more than one", errBadAuthzHeader)
	case scheme == "":
		return "", fmt.Errorf("%w: no scheme", errBadAuthzHeader)
	case !strings.EqualFold(scheme, "Bearer"):
		return "", errNoCredentials
	case len(token) > maxTokenBytes:
		return "", fmt.Errorf("%w: longer than %d bytes", errMalformedToken, maxTokenBytes)
	case !isToken68(token):
		return "", fmt.Errorf("%w: the credentials are not one token68", errBadAuthzHeader)
	}
	return token, nil
}

// isToken68 reports whether s is a token68 (RFC 7235 §2.1):
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	for i := range len(body) {
		if c := body[i]; c >= 128 || token68[c/64]&(1<<(c%64)) == 0 {
			return false
		}
	}
	return body != ""
}

// token68 has bit c%64 of word c/64 set for each byte c of a token68's body
// (one lookup a byte in isToken68, where a chain of tests would mispredict).
var token68 = [2]uint64{0x3ff<<'0' | 1<<'-' | 1<<'.' | 1<<'+' | 1<<'/', 0x3ffffff<<('A'-64) | 0x3ffffff<<('a'-64) | 1<<('_'-64) | 1<<('~'-64)}

// rejectBearer answers a request whose credentials failed, per RFC 6750 §3,
// and logs at Warn why it could not verify them.
func rejectBearer(w http.ResponseWriter, r *http.Request, logger *slog.Logger, perm string, err error) {
	switch {
	case errors.Is(err, errNoCredentials):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+bearerRealm+`"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Detail: "authentication required"})
	case errors.Is(err, errNotGranted):
		challenge(w, http.StatusForbidden, "insufficient_scope", "the token does not grant "+perm, `, scope="`+perm+`"`)
	case errors.Is(err, errBadAuthzHeader):
		challenge(w, http.StatusBadRequest, "invalid_request", "the Authorization header is not Bearer and one token", "")
	case errors.Is(err, errIDPUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		logger.WarnContext(r.Context(), "auth: cannot verify bearer token", "err", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Detail: "the identity provider's keys are not available yet; retry later"})
	default:
		hint := "invalid token"
		if ve, ok := errors.AsType[*verifyError](err); ok {
			hint = ve.hint
		}
		challenge(w, http.StatusUnauthorized, "invalid_token", hint, "")
	}
}

// challenge writes an error answer with a Bearer challenge carrying code and
// description (RFC 6750 §3), extra appended as is, and the same code and
// description in the JSON body. Both are printable ASCII without '"' or '\'
// (verifyError), so they are written as they are, as writeJSON would.
func challenge(w http.ResponseWriter, status int, code, description, extra string) {
	h := w.Header()
	h.Set("WWW-Authenticate", `Bearer realm="`+bearerRealm+`", error="`+code+`", error_description="`+description+`"`+extra)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"detail":"`+description+`","error":"`+code+`"}`+"\n")
}
