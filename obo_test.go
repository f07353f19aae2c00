package main

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// oboClaims is a caller's verified principal for the cache tests: a user of
// testTenant whose token expires at exp.
func oboClaims(oid string, exp time.Time) *principal {
	p := newPrincipal(&claims{TenantID: testTenant, ObjectID: oid, Scopes: []string{permRead}, Expiry: exp})
	return &p
}

// TestOBOTokenCache: downstream tokens are kept per tenant, user and scope,
// until tokenRefreshMargin before they expire and never past the caller's
// token; a token that is too short-lived is not kept; the cache is bounded.
func TestOBOTokenCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lifetime := 3599 // seconds, of each downstream token answered
	g := newGraphHarness(t)
	g.set(func(w http.ResponseWriter, r *http.Request) {
		tokenJSON(w, map[string]any{"token_type": "Bearer", "expires_in": lifetime, "access_token": "t" + strconv.Itoa(g.oboCount())})
	}, nil)
	clock := newFakeClock(time.Now())
	o := g.gp.obo
	o.now = clock.now
	ask := func(c *principal, scope string) string {
		t.Helper()
		tok, err := o.token(ctx, "the caller's token", c, scope)
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		return tok
	}
	const scope = "https://graph.microsoft.com/User.Read"
	ada := oboClaims("a", clock.now().Add(2*time.Hour))
	first := ask(ada, scope)
	if again := ask(ada, scope); again != first || g.oboCount() != 1 {
		t.Errorf("same user and scope: %q then %q with %d requests; want the cached token", first, again, g.oboCount())
	}
	if ask(ada, "https://graph.microsoft.com/Mail.Read") == first || ask(oboClaims("b", ada.Expiry), scope) == first {
		t.Errorf("another scope or user got the first user's token")
	}
	other := *ada
	other.TenantID = "eeeeeeee-86f1-41af-91ab-2d7cd011db47"
	if ask(&other, scope) == first {
		t.Errorf("the same oid in another tenant got the first tenant's token")
	}
	n := g.oboCount()
	clock.advance(time.Duration(lifetime)*time.Second - tokenRefreshMargin)
	if ask(ada, scope) == first || g.oboCount() != n+1 {
		t.Errorf("a token within tokenRefreshMargin of its expiry was used again")
	}

	t.Run("never past the caller's token", func(t *testing.T) {
		short := oboClaims("c", clock.now().Add(10*time.Minute))
		tok := ask(short, scope)
		clock.advance(10 * time.Minute)
		if ask(short, scope) == tok {
			t.Errorf("the downstream token outlived the caller's token it came from")
		}
	})
	t.Run("a token shorter than the margin is not kept", func(t *testing.T) {
		lifetime = int(tokenRefreshMargin/time.Second) - 1
		defer func() { lifetime = 3599 }()
		c := oboClaims("d", clock.now().Add(time.Hour))
		if ask(c, scope) == ask(c, scope) {
			t.Errorf("a token expiring within the margin was cached")
		}
	})
	t.Run("bounded, the soonest expiring dropped first", func(t *testing.T) {
		o.mu.Lock()
		o.cache, o.max = map[oboKey]oboToken{}, 2
		o.mu.Unlock()
		soon, later := oboClaims("e", clock.now().Add(20*time.Minute)), oboClaims("f", clock.now().Add(time.Hour))
		ask(soon, scope)
		keep := ask(later, scope)
		ask(oboClaims("g", clock.now().Add(time.Hour)), scope)
		o.mu.Lock()
		size := len(o.cache)
		_, hasSoon := o.cache[oboKey{testTenant, "e", scope}]
		o.mu.Unlock()
		if size != 2 || hasSoon || ask(later, scope) != keep {
			t.Errorf("cache of 2 after 3 users: %d entries, soonest kept %v; want 2, the soonest dropped", size, hasSoon)
		}
	})
}
