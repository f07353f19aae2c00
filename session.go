package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Login cookie parameters. Each login started at /auth/login gets its own
// cookie, named after its state, so logins in two browser tabs do not
// overwrite each other.
const (
	// loginCookiePrefix starts the name of every login cookie; the rest is
	// loginCookieID(state).
	loginCookiePrefix = "heroes_login_"
	// loginCookiePath scopes the cookies to /auth/…: /auth/callback reads
	// them, and /auth/login and /auth/logout must see them too, to cap how
	// many pile up and to clear them. The browser sends them nowhere else.
	loginCookiePath = "/auth"
	// loginTTL is how long a login may take, from /auth/login to
	// /auth/callback: the cookie's Max-Age and the sealed created-at check.
	loginTTL = 10 * time.Minute
	// maxPendingLogins caps the login cookies a browser holds at once. A new
	// login clears the oldest beyond it, so repeated logins can neither grow
	// the Cookie header past the server's limit nor lock a user out.
	maxPendingLogins = 5
	// maxLoginCookieLen bounds a sealed cookie value, in bytes, before any
	// decoding. A genuine one is about 350 bytes.
	maxLoginCookieLen = 2048
	// maxStateLen bounds the state query parameter, in bytes. Ours are 26.
	maxStateLen = 128
)

// Errors of openLogin. Each maps to 400 "start again at /auth/login".
var (
	errLoginMissing  = errors.New("auth: no login cookie for this state")
	errLoginTampered = errors.New("auth: login cookie does not open")
	errLoginExpired  = errors.New("auth: login cookie expired")
	errStateMismatch = errors.New("auth: state does not match the login cookie")
	errStateSpent    = errors.New("auth: state already used by an earlier callback")
)

// loginState is what a login cookie carries between /auth/login and
// /auth/callback: the state (RFC 6749 §10.12), the nonce (OpenID Connect Core
// §3.1.2.1), the PKCE code_verifier (RFC 7636 §4.1), the local path to return
// to, and when the login started (seconds since the Unix epoch).
type loginState struct {
	State        string `json:"s"`
	Nonce        string `json:"n"`
	CodeVerifier string `json:"v"`
	ReturnTo     string `json:"r"`
	Created      int64  `json:"t"`
}

// sealer seals and opens login cookies with AES-256-GCM under the session
// key. Nonces are random per seal (cipher.NewGCMWithRandomNonce). The cookie
// name is the additional data, so a value cannot be moved to another name.
// A sealer is immutable and safe for concurrent use.
type sealer struct {
	aead cipher.AEAD
}

// newSealer makes a sealer from a 32-byte key (config.SessionKey).
func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("auth: session key is %d bytes; want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("auth: session key: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("auth: session key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts ls for the cookie called name and returns the cookie value
// (base64url, no padding).
func (s *sealer) seal(name string, ls loginState) (string, error) {
	plain, err := json.Marshal(ls)
	if err != nil {
		return "", fmt.Errorf("auth: sealing login state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nil, nil, plain, []byte(name))), nil
}

// open decrypts the value of the cookie called name. It checks that the
// value is the one spelling seal makes (cookieEncoding) and is authentic,
// and that it holds a state, a nonce and a code_verifier; openLogin also
// checks age and state. It returns errLoginTampered for anything else.
func (s *sealer) open(name, value string) (loginState, error) {
	var ls loginState
	if len(value) > maxLoginCookieLen {
		return ls, errLoginTampered
	}
	sealed, err := decodeCookieValue(value)
	if err != nil {
		return ls, errLoginTampered
	}
	plain, err := s.aead.Open(nil, nil, sealed, []byte(name))
	if err != nil {
		return ls, errLoginTampered
	}
	if err := json.Unmarshal(plain, &ls); err != nil || ls.State == "" || ls.Nonce == "" || ls.CodeVerifier == "" {
		// An empty nonce would skip verifyIDToken's nonce check: never
		// sealed by handleLogin, so refused here too.
		return loginState{}, errLoginTampered
	}
	return ls, nil
}

// cookieEncoding decodes login cookie values: base64url without padding
// (RFC 4648 §5), strict, so that the unused low bits of the last character
// must be zero (RFC 4648 §3.5). Without Strict, a value whose length is 2 or
// 3 modulo 4 has other last characters that decode to the same bytes, and a
// changed cookie would still open.
var cookieEncoding = base64.RawURLEncoding.Strict()

// decodeCookieValue decodes a sealed cookie value. Every byte must be of the
// base64url alphabet: strict decoding refuses every other byte but CR and
// LF, which encoding/base64 skips and which would be further spellings of
// the same value, so those are refused first (as jws.screen does). Each
// value has one spelling, so any changed byte is refused here or by AES-GCM.
func decodeCookieValue(value string) ([]byte, error) {
	if i := strings.IndexAny(value, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("auth: login cookie holds byte %#x at %d, outside base64url", value[i], i)
	}
	b, err := cookieEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("auth: login cookie: %w", err)
	}
	return b, nil
}

// loginCookieID is the short, log-safe id of a state: the first 16 hex digits
// of its SHA-256. It names the login cookie and correlates log lines without
// revealing the state.
func loginCookieID(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:8])
}

// loginCookieName is the name of the cookie holding the login of state.
func loginCookieName(state string) string { return loginCookiePrefix + loginCookieID(state) }

// loginCookie makes the Set-Cookie for a login (RFC 6265 §4.1; RFC 9700
// §4.7 on CSRF): HttpOnly, SameSite=Lax (the IdP's redirect back is a
// top-level GET, which Lax allows), Secure when secure, Max-Age loginTTL.
func loginCookie(name, value string, secure bool) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     loginCookiePath,
		MaxAge:   int(loginTTL / time.Second),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
}

// expiredCookie makes the Set-Cookie that deletes the login cookie name.
func expiredCookie(name string, secure bool) *http.Cookie {
	c := loginCookie(name, "", secure)
	c.MaxAge = -1
	return c
}

// openLogin finds the login cookie of state in r, opens it, and checks that
// it is younger than loginTTL at now and holds the same state. Errors:
// errLoginMissing, errLoginTampered, errLoginExpired, errStateMismatch.
func (s *sealer) openLogin(r *http.Request, state string, now time.Time) (loginState, error) {
	name := loginCookieName(state)
	c, err := r.Cookie(name)
	if err != nil {
		return loginState{}, errLoginMissing
	}
	ls, err := s.open(name, c.Value)
	if err != nil {
		return loginState{}, err
	}
	age := now.Sub(time.Unix(ls.Created, 0))
	if age > loginTTL || age < -time.Minute {
		return loginState{}, errLoginExpired
	}
	if subtle.ConstantTimeCompare([]byte(ls.State), []byte(state)) != 1 {
		return loginState{}, errStateMismatch
	}
	return ls, nil
}

// pendingLogin is a login cookie found on a request, for pruning.
type pendingLogin struct {
	name    string
	created int64 // seconds since the Unix epoch; 0 when the cookie does not open
}

// maxLoginCookieDeletes caps the login cookies one answer expires, and
// twice it the ones a request is searched for. A browser holds at most
// maxPendingLogins of ours, and as many again sealed under an earlier
// session key; a request carrying more (thousands of junk heroes_login_*
// cookies, 60 KB of them) was not made by that browser, and answering each
// would turn a small request into a large answer.
const maxLoginCookieDeletes = 2 * maxPendingLogins

// staleLogins returns the names of the login cookies on r to delete so that,
// with one more login added, at most maxPendingLogins remain: every cookie
// that does not open or has expired at now, then the oldest; at most
// maxLoginCookieDeletes of them, in time linear in the Cookie header.
func (s *sealer) staleLogins(r *http.Request, now time.Time) []string {
	var live []pendingLogin
	var stale []string
	for _, c := range loginCookies(r, 2*maxLoginCookieDeletes) {
		ls, err := s.open(c.Name, c.Value)
		if err != nil || now.Sub(time.Unix(ls.Created, 0)) > loginTTL {
			stale = append(stale, c.Name)
			continue
		}
		live = append(live, pendingLogin{name: c.Name, created: ls.Created})
	}
	slices.SortFunc(live, func(a, b pendingLogin) int { return int(a.created - b.created) })
	for len(live) >= maxPendingLogins {
		stale = append(stale, live[0].name)
		live = live[1:]
	}
	return stale[:min(len(stale), maxLoginCookieDeletes)]
}

// loginCookieNames returns the names of the login cookies on r to delete
// at logout: at most maxLoginCookieDeletes (see loginCookies).
func loginCookieNames(r *http.Request) []string {
	var names []string
	for _, c := range loginCookies(r, maxLoginCookieDeletes) {
		names = append(names, c.Name)
	}
	return names
}

// loginCookies returns the first max cookies on r whose name this service
// could have made (loginCookieName: the prefix and 16 lowercase hex
// digits), each name once, in time linear in the Cookie header. Other
// heroes_login_* names are ignored: no login of ours can be under them.
func loginCookies(r *http.Request, max int) []*http.Cookie {
	var out []*http.Cookie
	seen := map[string]bool{}
	for _, c := range r.Cookies() {
		if len(out) == max {
			break
		}
		id, ok := strings.CutPrefix(c.Name, loginCookiePrefix)
		if !ok || len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" || seen[c.Name] {
			continue
		}
		seen[c.Name] = true
		out = append(out, c)
	}
	return out
}

// maxSpentStates bounds the spent-state set: how many finished logins one
// process remembers at once.
const maxSpentStates = 10_000

// spentStates is the per-process set of states whose callback has already
// been accepted, so that a state is used once (RFC 9700 §2.1, §4.7) even
// when a client keeps the login cookie after the callback deleted it. It
// holds the SHA-256 of each state, never the state, until the login's
// loginTTL ends (after which openLogin refuses the cookie anyway). It holds
// at most max entries: when full, expired entries go first, then the oldest
// (a state evicted early is still protected by the cookie deletion and by
// the identity provider's single-use code).
//
// Replicas do not share this set: behind a load balancer, a replay that
// reaches another replica is stopped only by the browser honouring the
// cookie deletion and by the provider refusing the already redeemed code
// (AADSTS54005). Safe for concurrent use.
type spentStates struct {
	max int

	mu sync.Mutex // guards the fields below
	// expires maps a state's hash to the end of its login's life.
	expires map[[sha256.Size]byte]time.Time
	// order lists the hashes in the order they were spent, oldest first.
	order [][sha256.Size]byte
}

// newSpentStates makes an empty set holding at most max states.
func newSpentStates(max int) *spentStates {
	return &spentStates{max: max, expires: map[[sha256.Size]byte]time.Time{}}
}

// spend marks state as used for the login created at created (seconds since
// the Unix epoch) and reports whether it was unused: false means a replayed
// callback. The check and the mark happen under one lock, so two concurrent
// callbacks with one state cannot both pass.
func (s *spentStates) spend(state string, created int64, now time.Time) bool {
	sum := sha256.Sum256([]byte(state))
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.expires[sum]; ok {
		return false
	}
	s.prune(now)
	s.expires[sum] = time.Unix(created, 0).Add(loginTTL)
	s.order = append(s.order, sum)
	return true
}

// has reports whether state was spent by a callback whose login has not
// yet expired at now: a second callback for it is a reload or a replay.
func (s *spentStates) has(state string, now time.Time) bool {
	sum := sha256.Sum256([]byte(state))
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.expires[sum]
	return ok && !now.After(exp)
}

// prune drops, from the oldest, entries that have expired at now, then
// entries beyond max-1 so that one more fits. s.mu must be held.
func (s *spentStates) prune(now time.Time) {
	n := 0
	for n < len(s.order) {
		exp := s.expires[s.order[n]]
		if !now.After(exp) && len(s.order)-n < s.max {
			break
		}
		delete(s.expires, s.order[n])
		n++
	}
	if n > 0 {
		s.order = slices.Delete(s.order, 0, n)
	}
}
