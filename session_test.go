package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// testSealer is a sealer under a fixed test key.
func testSealer(tb testing.TB, fill byte) *sealer {
	tb.Helper()
	s, err := newSealer(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestSealerRoundTripAndRefusals(t *testing.T) {
	t.Parallel()
	s := testSealer(t, 1)
	ls := loginState{State: "STATE", Nonce: "NONCE", CodeVerifier: "VERIFIER", ReturnTo: "/x", Created: time.Now().Unix()}
	name := loginCookieName(ls.State)
	value, err := s.seal(name, ls)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.open(name, value); err != nil || got != ls {
		t.Fatalf("open(seal(ls)) = %+v, %v; want %+v", got, err, ls)
	}
	noNonce, _ := s.seal(name, loginState{State: "STATE", CodeVerifier: "V", Created: ls.Created})
	again, _ := s.seal(name, ls)
	if again == value {
		t.Errorf("two seals of the same state are equal; want a random nonce each time")
	}
	tests := []struct {
		name, cookieName, value string
		s                       *sealer
	}{
		{"other key", name, value, testSealer(t, 2)},
		{"other cookie name", loginCookieName("OTHER"), value, s},
		{"truncated", name, value[:len(value)-1], s},
		{"not base64url", name, value + "!", s},
		{"empty", name, "", s},
		{"oversized", name, string(bytes.Repeat([]byte{'A'}, maxLoginCookieLen+1)), s},
		{"authentic but without a nonce", name, noNonce, s},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.s.open(tc.cookieName, tc.value); err != errLoginTampered {
				t.Errorf("open = %v; want errLoginTampered", err)
			}
		})
	}
}

// TestSealedCookieHasOneSpelling: a login cookie value opens only as seal
// wrote it. Every one-byte change, at every position and to every other
// base64url character, and every CR or LF inserted anywhere, is refused. The
// plaintext lengths are chosen so that values of length 2 and 3 modulo 4
// (whose last character has unused bits, RFC 4648 §3.5) are both covered.
func TestSealedCookieHasOneSpelling(t *testing.T) {
	t.Parallel()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	s := testSealer(t, 1)
	name := loginCookieName("S")
	covered := map[int]bool{}
	for n := 1; n <= 3; n++ {
		ls := loginState{State: "S", Nonce: "N", CodeVerifier: "V", ReturnTo: "/" + strings.Repeat("a", n), Created: 1}
		value, err := s.seal(name, ls)
		if err != nil {
			t.Fatal(err)
		}
		covered[len(value)%4] = true
		t.Run(fmt.Sprintf("length %d mod 4 = %d", len(value), len(value)%4), func(t *testing.T) {
			if _, err := s.open(name, value); err != nil {
				t.Fatalf("open(seal(ls)) = %v; want it to open", err)
			}
			opened := 0
			refuse := func(what, changed string) {
				t.Helper()
				if _, err := s.open(name, changed); err != errLoginTampered {
					if opened++; opened <= 5 {
						t.Errorf("open(value with %s) = %v; want errLoginTampered", what, err)
					}
				}
			}
			for i := range len(value) {
				for _, c := range []byte(alphabet) {
					if c != value[i] {
						refuse(fmt.Sprintf("byte %d changed %q→%q", i, value[i], c), value[:i]+string(c)+value[i+1:])
					}
				}
				for _, ins := range []string{"\r", "\n", "\r\n", "="} {
					refuse(fmt.Sprintf("%q inserted at %d", ins, i), value[:i]+ins+value[i:])
				}
			}
			if opened > 5 {
				t.Errorf("… %d changed values opened in all", opened)
			}
		})
	}
	if !covered[2] || !covered[3] {
		t.Errorf("value lengths modulo 4 covered: %v; want 2 and 3 (the lengths with unused bits)", covered)
	}
}

func TestNewSealerRefusesShortKeys(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := newSealer(make([]byte, n)); err == nil {
			t.Errorf("newSealer(%d bytes) = nil error; want a refusal (AES-256 needs 32)", n)
		}
	}
}

func TestOpenLoginChecksAgeAndState(t *testing.T) {
	t.Parallel()
	s := testSealer(t, 1)
	now := time.Now()
	mk := func(state string, created time.Time) *http.Request {
		v, err := s.seal(loginCookieName(state), loginState{State: state, Nonce: "N", CodeVerifier: "V", Created: created.Unix()})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/auth/callback", nil)
		r.AddCookie(&http.Cookie{Name: loginCookieName(state), Value: v})
		return r
	}
	tests := []struct {
		name  string
		r     *http.Request
		state string
		want  error
	}{
		{"fresh", mk("S", now.Add(-time.Minute)), "S", nil},
		{"expired", mk("S", now.Add(-loginTTL-time.Second)), "S", errLoginExpired},
		{"from the future", mk("S", now.Add(2*time.Minute)), "S", errLoginExpired},
		{"missing", mk("S", now), "T", errLoginMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.openLogin(tc.r, tc.state, now); err != tc.want {
				t.Errorf("openLogin = %v; want %v", err, tc.want)
			}
		})
	}
}

// FuzzOpenLoginCookie: open never panics on any cookie value, and nothing
// but a value this key sealed for this name opens. (Fuzz workers each seal
// their own seed, so the check is on what opens, not on the exact value.)
func FuzzOpenLoginCookie(f *testing.F) {
	s := testSealer(f, 1)
	good, _ := s.seal("heroes_login_x", loginState{State: "S", Nonce: "N", CodeVerifier: "V", Created: 1})
	f.Add("heroes_login_x", good)
	f.Add("heroes_login_x", "")
	f.Add("heroes_login_y", good)
	f.Fuzz(func(t *testing.T, name, value string) {
		ls, err := s.open(name, value)
		if err != nil {
			return
		}
		if name != "heroes_login_x" || ls != (loginState{State: "S", Nonce: "N", CodeVerifier: "V", Created: 1}) {
			t.Errorf("open(%q, %q) = %+v; want errLoginTampered", name, value, ls)
		}
		// Whatever opens is spelled as seal spells it: no second spelling.
		if b, err := decodeCookieValue(value); err != nil || cookieEncoding.EncodeToString(b) != value {
			t.Errorf("open(%q) succeeded on a value that is not its own canonical spelling", value)
		}
	})
}

// BenchmarkSealOpen measures one login cookie sealed and opened again.
func BenchmarkSealOpen(b *testing.B) {
	s := testSealer(b, 1)
	ls := loginState{State: "STATE", Nonce: "NONCE", CodeVerifier: "VERIFIER", ReturnTo: "/", Created: time.Now().Unix()}
	for b.Loop() {
		v, err := s.seal("heroes_login_x", ls)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.open("heroes_login_x", v); err != nil {
			b.Fatal(err)
		}
	}
}

// len returns how many states the set holds.
func (s *spentStates) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.expires)
}

func TestSpentStates(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_800_000_000, 0)
	created := t0.Unix()
	t.Run("a state is spent once", func(t *testing.T) {
		s := newSpentStates(10)
		if !s.spend("state-a", created, t0) {
			t.Fatal("spend(state-a) = false on first use; want true")
		}
		if s.spend("state-a", created, t0.Add(time.Second)) {
			t.Error("spend(state-a) = true on second use; want false (replay)")
		}
		if !s.spend("state-b", created, t0) {
			t.Error("spend(state-b) = false; want true: another state is independent")
		}
	})
	t.Run("entries live until the login's life ends", func(t *testing.T) {
		s := newSpentStates(10)
		s.spend("state-a", created, t0)
		s.spend("state-b", created, t0.Add(loginTTL-time.Second))
		if got := s.len(); got != 2 {
			t.Fatalf("len = %d before expiry; want 2", got)
		}
		s.spend("state-c", created, t0.Add(loginTTL+time.Second))
		if got := s.len(); got != 1 {
			t.Errorf("len = %d after the logins expired; want 1 (only state-c)", got)
		}
	})
	t.Run("the set is bounded, dropping the oldest", func(t *testing.T) {
		s := newSpentStates(3)
		for i := range 5 {
			s.spend(fmt.Sprint("state-", i), created, t0)
		}
		if got := s.len(); got != 3 {
			t.Errorf("len = %d; want the bound 3", got)
		}
		if s.spend("state-4", created, t0) {
			t.Error("spend(state-4) = true; want false: the newest entries are kept")
		}
	})
	t.Run("only a hash of the state is kept", func(t *testing.T) {
		s := newSpentStates(3)
		s.spend("state-secret", created, t0)
		if got := fmt.Sprintf("%v %x", s.expires, s.order); strings.Contains(got, "state-secret") || strings.Contains(got, fmt.Sprintf("%x", "state-secret")) {
			t.Errorf("the set holds the state itself: %s", got)
		}
	})
}

// FuzzDecodeCookieValue: decodeCookieValue never panics, and whatever it
// decodes is the one spelling of its bytes (cookieEncoding re-encodes it to
// the input), so no two cookie values open to the same sealed bytes.
func FuzzDecodeCookieValue(f *testing.F) {
	f.Add("")
	f.Add("AAAA")
	f.Add("AB")
	f.Add("AAB")
	f.Add("AA\nAA")
	f.Add("AA==")
	f.Fuzz(func(t *testing.T, value string) {
		b, err := decodeCookieValue(value)
		if err == nil && cookieEncoding.EncodeToString(b) != value {
			t.Errorf("decodeCookieValue(%q) = %x, which encodes to %q", value, b, cookieEncoding.EncodeToString(b))
		}
	})
}

func TestLoginCookiesAreCapped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	var jar []*http.Cookie
	for i := range maxPendingLogins + 3 {
		r := httptest.NewRequest("GET", "/auth/login", nil)
		for _, c := range jar {
			r.AddCookie(c)
		}
		h.af.now = func() time.Time { return time.Now().Add(time.Duration(i) * time.Second) }
		w := h.do(r)
		// Apply Set-Cookie like a browser: deletions, then the new cookie.
		for _, sc := range w.Result().Cookies() {
			jar = slices.DeleteFunc(jar, func(c *http.Cookie) bool { return c.Name == sc.Name })
			if sc.MaxAge > 0 {
				jar = append(jar, sc)
			}
		}
		if len(jar) > maxPendingLogins {
			t.Fatalf("after login %d the browser holds %d login cookies; want at most %d", i+1, len(jar), maxPendingLogins)
		}
	}
	if len(jar) != maxPendingLogins {
		t.Errorf("browser holds %d login cookies; want the newest %d kept", len(jar), maxPendingLogins)
	}
}

// TestCallbackRefusesAChangedLoginCookie: a login cookie whose last
// character is changed to any other base64url character, or any other
// character changed, is refused with 400 "start again", including the
// values whose last character carries unused bits (lengths 2 and 3 modulo
// 4, RFC 4648 §3.5); the unchanged cookie then still completes the sign-in.
func TestCallbackRefusesAChangedLoginCookie(t *testing.T) {
	t.Parallel()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	h := newHarness(t, harnessOptions{})
	covered := map[int]bool{}
	for n := 1; n <= 3; n++ {
		c, authURL := h.login(t, "?return_to=/"+strings.Repeat("a", n))
		covered[len(c.Value)%4] = true
		t.Run(fmt.Sprintf("length %d mod 4 = %d", len(c.Value), len(c.Value)%4), func(t *testing.T) {
			code, state := h.ti.authorize(authURL)
			q := url.Values{"code": {code}, "state": {state}}
			refuse := func(i int, ch byte) {
				t.Helper()
				changed := &http.Cookie{Name: c.Name, Value: c.Value[:i] + string(ch) + c.Value[i+1:]}
				if w := h.callback(q, "", changed); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), restartLogin) {
					t.Fatalf("callback with character %d changed %q→%q = %d %s; want 400 %q", i, c.Value[i], ch, w.Code, w.Body, restartLogin)
				}
			}
			last := len(c.Value) - 1
			for _, ch := range []byte(alphabet) {
				if ch != c.Value[last] {
					refuse(last, ch)
				}
			}
			for i := range last { // every other position, to its neighbour in the alphabet
				refuse(i, alphabet[strings.IndexByte(alphabet, c.Value[i])^1])
			}
			if w := h.callback(q, "", c); w.Code != http.StatusOK {
				t.Errorf("callback with the unchanged cookie = %d %s; want 200", w.Code, w.Body)
			}
		})
	}
	if !covered[2] || !covered[3] {
		t.Errorf("cookie lengths modulo 4 covered: %v; want 2 and 3", covered)
	}
}
