package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// What a listed origin may do, as the CORS answers say it (Fetch Standard,
// "CORS protocol"). The API is called with a bearer token, never with
// cookies, so no answer carries Access-Control-Allow-Credentials.
const (
	// corsAllowMethods are the methods of the API's routes.
	corsAllowMethods = "GET, POST, PUT, DELETE"
	// corsAllowHeaders are the request headers the API reads besides the
	// CORS-safelisted ones: the bearer token, a JSON body's type, the
	// hero's version to change, a create's idempotency key, and the
	// request id and W3C trace context a browser client may send.
	corsAllowHeaders = "Authorization, Content-Type, If-Match, Idempotency-Key, X-Request-Id, traceparent"
	// corsExposeHeaders are the answer headers a script may read besides
	// the safelisted ones: the bearer challenge (RFC 6750 §3), the hero's
	// version, where a new hero is, whether a create was the first answer
	// replayed (Idempotency-Key), when to retry, the request id.
	corsExposeHeaders = "WWW-Authenticate, ETag, Location, Idempotent-Replayed, Retry-After, X-Request-Id"
	// corsMaxAge is how long, in seconds, a browser may reuse a preflight
	// answer (Chromium caps it at 7200).
	corsMaxAge = "600"
)

// allowCORS lets browser pages on the listed origins (exact strings, as
// parseOrigin gives them) call the service. For a listed Origin it answers a
// preflight (OPTIONS with Access-Control-Request-Method) itself with 204,
// before any route or authentication runs, and adds
// Access-Control-Allow-Origin (that origin, never "*") and the exposed
// headers to every other answer. A preflight from any other origin is
// answered 403 with no CORS header, saying why; any other request from
// another origin, or without one, gets no CORS header and is served as if
// CORS did not exist. With origins listed, every answer carries
// Vary: Origin, so no cache hands one origin's answer to another. With
// none, next is returned unchanged: no answer has a CORS header.
func allowCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		values := r.Header.Values("Origin")
		preflight := r.Method == http.MethodOptions && len(values) > 0 && r.Header.Get("Access-Control-Request-Method") != ""
		if len(values) != 1 || !slices.Contains(origins, values[0]) {
			if preflight {
				writeError(w, http.StatusForbidden, "this origin may not call the service from a browser: it is not in CORS_ALLOWED_ORIGINS")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", values[0])
		if preflight {
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}

// parseOrigin reads one origin of CORS_ALLOWED_ORIGINS and returns it as a
// browser serializes it in the Origin header (RFC 6454 §6.2): lower-case
// scheme and host, the port only when it is not the scheme's default. It
// must be http or https with a host and nothing else: no path (a trailing
// "/" included), query, fragment or user; "*" is refused, as a wildcard
// would let any site read the API's answers.
func parseOrigin(s string) (string, error) {
	if s == "*" {
		return "", fmt.Errorf(`"*" is not allowed: list the origins, e.g. https://app.example.com`)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || !isHostPort(u.Host) {
		return "", fmt.Errorf("%q is not an origin: write scheme://host[:port] with nothing after it, e.g. https://app.example.com", truncate(s, 100))
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return strings.ToLower(u.Scheme) + "://" + host, nil
}

// isHostPort reports whether s is a host name, IPv4 address or bracketed
// IPv6 address, with an optional port: letters, digits, dots, dashes, and
// for IPv6 colons inside the brackets. It keeps settings that end up in a
// header or a Content-Security-Policy free of separators.
func isHostPort(s string) bool {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
		if port == "" || strings.ContainsFunc(port, func(r rune) bool { return r < '0' || r > '9' }) {
			return false
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		inner := host[1 : len(host)-1]
		return inner != "" && !strings.ContainsFunc(inner, func(r rune) bool { return !isHexDigit(r) && r != ':' && r != '.' })
	}
	return host != "" && !strings.ContainsFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-')
	})
}

// isHexDigit reports whether r is 0-9, a-f or A-F.
func isHexDigit(r rune) bool {
	return '0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F'
}
