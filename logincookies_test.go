package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestJunkLoginCookiesDoNotAmplify sends /auth/login and /auth/logout
// thousands of junk heroes_login_* cookies, as the fault tests did (1,900
// cookies, 62 KB, answered with 174 KB of Set-Cookie): an answer expires at
// most maxLoginCookieDeletes of them, however many arrive and whatever their
// names, and stays a small fraction of the request.
func TestJunkLoginCookiesDoNotAmplify(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	junkHeader := func(n int, name func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = name(i) + "=" + strings.Repeat("x", 20)
		}
		return strings.Join(parts, "; ")
	}
	ourShape := func(i int) string { return fmt.Sprintf("%s%016x", loginCookiePrefix, i) }
	tests := []struct {
		name   string
		cookie string
	}{
		{"1,900 junk names", junkHeader(1900, func(i int) string { return fmt.Sprintf("%sjunk%d", loginCookiePrefix, i) })},
		{"1,900 names of our shape", junkHeader(1900, ourShape)},
		{"5,000 names of our shape", junkHeader(5000, ourShape)},
		{"one name 3,000 times", junkHeader(3000, func(int) string { return ourShape(7) })},
	}
	for _, tc := range tests {
		for _, path := range []string{"/auth/login", "/auth/logout"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodGet, path, nil)
				r.Header.Set("Cookie", tc.cookie)
				w := h.do(r)
				if w.Code != http.StatusFound {
					t.Fatalf("GET %s = %d %s; want 302", path, w.Code, w.Body)
				}
				expired, size := 0, 0
				for _, sc := range w.Header().Values("Set-Cookie") {
					size += len(sc)
					if strings.Contains(sc, "Max-Age=0") {
						expired++
					}
				}
				if expired > maxLoginCookieDeletes {
					t.Errorf("GET %s expired %d login cookies; want at most %d", path, expired, maxLoginCookieDeletes)
				}
				if size > len(tc.cookie)/4 && size > 4096 {
					t.Errorf("GET %s answered %d bytes of Set-Cookie to %d bytes of Cookie", path, size, len(tc.cookie))
				}
			})
		}
	}
}

// TestStaleLoginsStillPruned checks the cap leaves the pruning of a real
// browser's cookies as it was: a genuine expired or foreign-key cookie
// among a handful is still expired, junk names are not echoed back.
func TestStaleLoginsStillPruned(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	c1, _ := h.login(t, "")
	other := newHarness(t, harnessOptions{}) // another session key: its cookie does not open here
	foreign, _ := other.login(t, "")
	r := httptest.NewRequest(http.MethodGet, "/auth/login", nil)
	r.AddCookie(c1)
	r.AddCookie(foreign)
	r.AddCookie(&http.Cookie{Name: loginCookiePrefix + "not-ours", Value: "x"})
	w := h.do(r)
	deleted := map[string]bool{}
	for _, sc := range w.Result().Cookies() {
		if sc.MaxAge < 0 {
			deleted[sc.Name] = true
		}
	}
	if !deleted[foreign.Name] || deleted[c1.Name] || deleted[loginCookiePrefix+"not-ours"] {
		t.Errorf("login expired %v; want only %s (sealed under another key)", deleted, foreign.Name)
	}
}

// BenchmarkLoginWithJunkCookies measures /auth/login with 2,500 junk login
// cookies of our shape: linear in the Cookie header (the quadratic
// de-duplication took far longer per cookie as their number grew).
func BenchmarkLoginWithJunkCookies(b *testing.B) {
	h := newHarness(b, harnessOptions{})
	parts := make([]string, 2500)
	for i := range parts {
		parts[i] = fmt.Sprintf("%s%016x=%s", loginCookiePrefix, i, strings.Repeat("x", 20))
	}
	cookie := strings.Join(parts, "; ")
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/auth/login", nil)
		r.Header.Set("Cookie", cookie)
		h.do(r)
	}
}
