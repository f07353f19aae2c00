package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// boundedStores open a memory and a file store of maxBytes through
// openStore, as the service does.
var boundedStores = []struct {
	name string
	open func(t *testing.T, maxBytes int64) (*localStore, string)
}{
	{"memory", func(t *testing.T, maxBytes int64) (*localStore, string) {
		return openBounded(t, storeOptions{Kind: "memory", MaxBytes: maxBytes}), ""
	}},
	{"file", func(t *testing.T, maxBytes int64) (*localStore, string) {
		path := t.TempDir() + "/heroes.json"
		return openBounded(t, storeOptions{Kind: "file", File: path, MaxBytes: maxBytes}), path
	}},
}

// openBounded opens the local store opts describe, closed when the test
// ends.
func openBounded(t *testing.T, opts storeOptions) *localStore {
	t.Helper()
	s, err := openStore(context.Background(), opts, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*localStore)
}

// checkAccounting checks what s counts against its limits is what it
// holds, and that the file, when there is one, is no larger than the
// bound the counts give nor than maxBytes.
func checkAccounting(t *testing.T, s *localStore, path string, maxBytes int64) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var heroBytes, keyBytes int64
	callers := map[string]int{}
	for _, sh := range s.set.byID {
		heroBytes += sh.recordBytes()
	}
	for _, rec := range s.set.keys {
		keyBytes += rec.recordBytes()
		callers[rec.Caller]++
	}
	if heroBytes != s.set.heroBytes || keyBytes != s.set.keyBytes || len(s.set.keyOrder) != len(s.set.keys) || !maps.Equal(callers, s.set.callerKeys) {
		t.Fatalf("store counts %d hero bytes, %d key bytes, %d keys by caller %v; holds %d, %d, %d %v",
			s.set.heroBytes, s.set.keyBytes, len(s.set.keyOrder), s.set.callerKeys, heroBytes, keyBytes, len(s.set.keys), callers)
	}
	if heroBytes > s.limits.heroBytes || keyBytes > s.limits.keyBytes {
		t.Errorf("heroes take %d bytes (bound %d), keys %d (bound %d)", heroBytes, s.limits.heroBytes, keyBytes, s.limits.keyBytes)
	}
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return // not written yet
	}
	if bound := fileEnvelopeBytes + heroBytes + keyBytes; fi.Size() > bound || fi.Size() > maxBytes {
		t.Errorf("the file is %d bytes; want at most the counted %d and the store's %d", fi.Size(), bound, maxBytes)
	}
}

// TestFullStoreRefusesAndKeepsEverything fills a small memory and file
// store through the API: the create that would pass the bound is 507 with
// a JSON detail saying the store is full, and changes nothing (heroes,
// file bytes); a replace that grows is refused too, one that does not is
// not; a delete makes room again; the file never outgrows the bound and
// reads back.
func TestFullStoreRefusesAndKeepsEverything(t *testing.T) {
	const maxBytes = 8 << 10
	for _, st := range boundedStores {
		t.Run(st.name, func(t *testing.T) {
			s, path := st.open(t, maxBytes)
			h := heroMux(s)
			var full *httptest.ResponseRecorder
			var ids []string
			for i := 0; i < 100 && full == nil; i++ {
				w := do(h, "POST", "/api/heroes/", validHeroJSON(fmt.Sprintf("Hero %02d", i)))
				checkAccounting(t, s, path, maxBytes)
				switch w.Code {
				case http.StatusCreated:
					ids = append(ids, strings.TrimPrefix(w.Header().Get("Location"), "/api/heroes/"))
				case http.StatusInsufficientStorage:
					full = w
				default:
					t.Fatalf("POST %d = %d %s", i, w.Code, w.Body)
				}
			}
			if full == nil || len(ids) == 0 {
				t.Fatalf("%d creates in a store of %d bytes and none was refused", len(ids), maxBytes)
			}
			var detail struct{ Detail string }
			if json.Unmarshal(full.Body.Bytes(), &detail); !strings.Contains(detail.Detail, "hero store is full") || full.Header().Get("Retry-After") != "" {
				t.Errorf("full answer = %s (Retry-After %q); want a JSON detail saying the hero store is full, no Retry-After", full.Body, full.Header().Get("Retry-After"))
			}
			before := fileBytes(t, path)
			for _, req := range []struct {
				name, method, target, body string
				want                       int
			}{
				{"another create", "POST", "/api/heroes/", validHeroJSON("One too many"), 507},
				{"a keyed create", "POST", "/api/heroes/", validHeroJSON("Keyed"), 507},
				{"a replace that grows", "PUT", "/api/heroes/" + ids[0], strings.Replace(validHeroJSON("Hero 00"), `"Spellbook"`, strings.Repeat(`"`+strings.Repeat("x", 200)+`",`, 10)+`"Spellbook"`, 1), 507},
			} {
				w := do(h, req.method, req.target, req.body, "Idempotency-Key", strings.ReplaceAll(req.name, " ", "-"))
				if w.Code != req.want {
					t.Errorf("%s = %d %s; want %d", req.name, w.Code, w.Body, req.want)
				}
				if got, _ := s.List(t.Context(), 0, 1000); len(got) != len(ids) || got[slices.IndexFunc(got, func(h hero) bool { return h.ID == ids[0] })].Name != "Hero 00" {
					t.Errorf("after %s the store holds %d heroes; want the %d it had, unchanged", req.name, len(got), len(ids))
				}
				if !bytes.Equal(fileBytes(t, path), before) {
					t.Errorf("%s changed the file", req.name)
				}
			}
			for _, step := range []struct {
				name, method, target, body string
				want                       int
			}{
				{"a replace of the same size", "PUT", "/api/heroes/" + ids[0], validHeroJSON("Hero 99"), 200},
				{"a replace that shrinks", "PUT", "/api/heroes/" + ids[0], validHeroJSON("H"), 200},
				{"a delete", "DELETE", "/api/heroes/" + ids[1], "", 200},
				{"the refused keyed create again", "POST", "/api/heroes/", validHeroJSON("Keyed"), 201},
			} {
				var headers []string
				if step.method == "POST" { // the key the refused create was sent with: it was not kept
					headers = []string{"Idempotency-Key", "a-keyed-create"}
				}
				w := do(h, step.method, step.target, step.body, headers...)
				if w.Code != step.want || w.Header().Get("Idempotent-Replayed") != "" {
					t.Errorf("%s = %d %s (replayed %q); want %d, not a replay", step.name, w.Code, w.Body, w.Header().Get("Idempotent-Replayed"), step.want)
				}
				checkAccounting(t, s, path, maxBytes)
			}
			if path != "" {
				s.Close()
				again, err := openFileStore(path, 0)
				if err != nil || again.count() != len(ids) {
					t.Fatalf("reopening the full file = %v; want its %d heroes", err, len(ids))
				}
				again.Close()
			}
		})
	}
}

// fileBytes is the content of path, nil when path is "".
func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestIdempotencyKeysBoundedInBytes creates heroes under keys and deletes
// them again, so only the keys pile up: they stay within their quarter of
// a small store, the newest keys still replay, and heroes can still be
// created.
func TestIdempotencyKeysBoundedInBytes(t *testing.T) {
	const maxBytes = 32 << 10
	for _, st := range boundedStores {
		t.Run(st.name, func(t *testing.T) {
			s, path := st.open(t, maxBytes)
			srv := idemServer{heroMux(s)}
			for i := range 60 {
				w := srv.post(fmt.Sprintf("key-%d", i), "alice", validHeroJSON("Spent"))
				if w.Code != http.StatusCreated {
					t.Fatalf("POST %d = %d %s", i, w.Code, w.Body)
				}
				if d := do(srv.h, "DELETE", w.Header().Get("Location"), ""); d.Code != http.StatusOK {
					t.Fatalf("DELETE %d = %d", i, d.Code)
				}
				checkAccounting(t, s, path, maxBytes)
			}
			if n := len(s.set.keys); n >= 60 || n == 0 {
				t.Errorf("the store remembers %d of 60 keys; want fewer, within %d bytes", n, s.limits.keyBytes)
			}
			if w := srv.post("key-59", "alice", validHeroJSON("Spent")); w.Header().Get("Idempotent-Replayed") != "true" {
				t.Errorf("the newest key was forgotten: %d", w.Code)
			}
			if w := srv.post("", "alice", validHeroJSON("Room")); w.Code != http.StatusCreated {
				t.Errorf("a create after the keys piled up = %d %s; want 201", w.Code, w.Body)
			}
		})
	}
}

// TestCallerKeysSurviveAnotherCallersFlood checks one caller, or several,
// creating many idempotency keys never make another caller's retry create
// a duplicate: bob's key survives the flood whichever bound it reaches,
// while the flooders forget their own oldest keys.
func TestCallerKeysSurviveAnotherCallersFlood(t *testing.T) {
	tests := []struct {
		name     string
		maxBytes int64 // 0: the default
		keys     int   // 0: the default
		perCall  int   // 0: the default
		flooders []string
		each     int
		// wantGone is a flooder key forgotten; wantKept one remembered.
		wantGone, wantKept string
	}{
		{"one caller past its own bound", 0, 100, 5, []string{"mallory"}, 50, "mallory/0", "mallory/45"},
		{"several callers to the global count", 0, 10, 5, []string{"m1", "m2", "m3"}, 5, "m1/0", "m3/4"},
		{"one caller to the keys' bytes", 24 << 10, 0, 0, []string{"mallory"}, 40, "mallory/0", "mallory/39"},
		{"several callers to the keys' bytes", 24 << 10, 0, 0, []string{"m1", "m2"}, 20, "m1/0", "m2/19"},
	}
	for _, tc := range tests {
		for _, st := range boundedStores {
			t.Run(tc.name+"/"+st.name, func(t *testing.T) {
				s, path := st.open(t, tc.maxBytes)
				if tc.keys > 0 {
					s.limits.keys, s.limits.callerKeys = tc.keys, tc.perCall
				}
				srv := idemServer{heroMux(s)}
				post := func(caller, key string) *httptest.ResponseRecorder {
					t.Helper()
					w := srv.post(key, caller, validHeroJSON(strings.ReplaceAll(key, "/", " ")))
					if w.Code != http.StatusCreated {
						t.Fatalf("POST %s by %s = %d %s", key, caller, w.Code, w.Body)
					}
					return w
				}
				first := post("bob", "bob/0")
				for i := range tc.each {
					for _, m := range tc.flooders {
						w := post(m, fmt.Sprintf("%s/%d", m, i))
						do(srv.h, "DELETE", w.Header().Get("Location"), "") // room for more heroes
					}
					checkAccounting(t, s, path, cmp.Or(tc.maxBytes, defaultMaxStoreBytes))
				}
				again := post("bob", "bob/0")
				if again.Header().Get("Idempotent-Replayed") != "true" || again.Header().Get("Location") != first.Header().Get("Location") {
					t.Errorf("bob's retry after the flood made %s; want his first hero %s replayed", again.Header().Get("Location"), first.Header().Get("Location"))
				}
				caller, _, _ := strings.Cut(tc.wantKept, "/")
				if w := post(caller, tc.wantKept); w.Header().Get("Idempotent-Replayed") != "true" {
					t.Errorf("%s was forgotten; want the flooder's newest keys kept", tc.wantKept)
				}
				caller, _, _ = strings.Cut(tc.wantGone, "/")
				if w := post(caller, tc.wantGone); w.Header().Get("Idempotent-Replayed") == "true" {
					t.Errorf("%s is still remembered; want the flooder's oldest keys forgotten", tc.wantGone)
				}
			})
		}
	}
}

// TestHolderOfMostKeysForgetsItsOwn checks who forgets a key when all keys
// together are at their bound: the caller holding the most, which is the
// caller asking when it holds as many as anyone, never a caller holding
// fewer.
func TestHolderOfMostKeysForgetsItsOwn(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	s := newMemoryStore()
	s.now = clock.now
	s.limits.keys, s.limits.callerKeys = 4, 10
	create := func(caller string, i int) bool {
		t.Helper()
		clock.advance(time.Second)
		key := idempotencyKey{ID: fmt.Sprintf("%s%063x", caller[:1], i), Caller: caller, Fingerprint: "fp"}
		_, replay, err := s.CreateOnce(t.Context(), testHero(newHeroID(), "Keyed"), key)
		if err != nil {
			t.Fatal(err)
		}
		return replay
	}
	create("a", 1)
	for i := range 3 {
		create("b", i)
	}
	create("b", 3) // b holds 4 with it, a 1: b forgets b/0
	for _, k := range []struct {
		caller string
		i      int
		want   bool
	}{{"a", 1, true}, {"b", 1, true}, {"b", 3, true}, {"b", 0, false}} {
		s.mu.RLock()
		_, got := s.set.keys[fmt.Sprintf("%s%063x", k.caller[:1], k.i)]
		s.mu.RUnlock()
		if got != k.want {
			t.Errorf("key %s/%d remembered = %v; want %v", k.caller, k.i, got, k.want)
		}
	}
}

// countingTransport counts the entities the Table service answers queries
// with, so a test can see how often a walk reads each hero.
type countingTransport struct {
	next     http.RoundTripper
	entities int
	keyScans int // queries selecting only RowKey
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "()") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var page struct{ Value []json.RawMessage }
	json.Unmarshal(body, &page) // an answer that is no page counts as none; the store reports it
	c.entities += len(page.Value)
	if r.URL.Query().Get("$select") == "RowKey" {
		c.keyScans++
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// TestFireballReadsEachHeroOnce checks the fireball query on the table
// store reads each hero once however many pages it takes (ListAfter), not
// once per page after it (List with a growing offset: quadratic).
func TestFireballReadsEachHeroOnce(t *testing.T) {
	const heroes = 2*maxLimit + 500
	table := newMemTable(t)
	table.mu.Lock()
	table.rows[tablePartition] = map[string]map[string]any{}
	for i := range heroes {
		h := testHero(newHeroID(), fmt.Sprintf("Hero %d", i))
		data, _ := encodeHero(h)
		table.rows[tablePartition][h.ID] = map[string]any{"PartitionKey": tablePartition, "RowKey": h.ID, tableHeroProperty: string(data)}
	}
	table.mu.Unlock()
	s := table.store(t, 5*time.Second)
	count := &countingTransport{next: http.DefaultTransport}
	s.client.Transport = count
	w := do(heroMux(s), "GET", "/api/heroes-fireball-low-ac", "")
	var got []hero
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK || len(got) != heroes {
		t.Fatalf("fireball = %d, %d heroes, %v; want 200 with all %d", w.Code, len(got), err, heroes)
	}
	if count.entities != heroes || count.keyScans != 0 {
		t.Errorf("fireball read %d entities in %d key-only scans besides; want each of the %d heroes once, no scan", count.entities, count.keyScans, heroes)
	}
}

// TestTableKeySweepKeepsUp checks the table store's sweep deletes every
// expired key, not only the first maxKeySweep, so keys cannot pile up in
// the table faster than an hourly sweep deletes them.
func TestTableKeySweepKeepsUp(t *testing.T) {
	const expired = 2*maxKeySweep + 100
	table := newMemTable(t)
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	old := now.Add(-idempotencyTTL - time.Hour).Format(time.RFC3339)
	table.mu.Lock()
	table.rows[tableKeyPartition] = map[string]map[string]any{}
	for i := range expired {
		rk := fmt.Sprintf("%064x", i)
		table.rows[tableKeyPartition][rk] = map[string]any{"PartitionKey": tableKeyPartition, "RowKey": rk, "Fingerprint": "fp",
			"HeroID": newHeroID(), "HeroETag": "", tableHeroProperty: "{}", "Created": old, "Done": "true"}
		table.etags[tableKeyPartition+"/"+rk] = fmt.Sprintf(`W/"datetime'k%d'"`, i)
	}
	table.mu.Unlock()
	s := table.store(t, 5*time.Second)
	n, err := s.sweepAllKeys(t.Context(), now)
	if err != nil || n != expired || table.count(tableKeyPartition) != 0 {
		t.Errorf("sweepAllKeys() = %d, %v, leaving %d keys; want all %d deleted", n, err, table.count(tableKeyPartition), expired)
	}
}

// TestFileOverBoundStopsStart checks a heroes file larger than the store's
// bound (one written under a higher HEROES_MAX_BYTES, or before the
// default was lowered) stops the start with an error naming
// HEROES_MAX_BYTES, leaves the file as it was, and opens once the bound
// holds it.
func TestFileOverBoundStopsStart(t *testing.T) {
	path := t.TempDir() + "/heroes.json"
	size := writeBenchFile(t, path, minStoreBytes+minStoreBytes/2)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		maxBytes int64
		wantErr  []string // all in the error; none: it opens
	}{
		{"over the bound", minStoreBytes, []string{"HEROES_MAX_BYTES", fmt.Sprint(size), "over the store's bound of 1048576", "not changed"}},
		{"within the bound", 2 * minStoreBytes, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := openStore(t.Context(), storeOptions{Kind: "file", File: path, MaxBytes: tc.maxBytes}, nil, discardLogger())
			if err == nil {
				s.Close()
			}
			if (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("openStore(MaxBytes %d) for a file of %d bytes = %v; want error %v", tc.maxBytes, size, err, tc.wantErr != nil)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("openStore() = %q; want it to say %q", err, want)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Errorf("the file changed on open")
			}
		})
	}
}

// TestShortHeroesFileWithinBound: heroes written shorter than the store
// writes them (an edited file: members left out) are counted as the store
// would write them back, so a file under HEROES_MAX_BYTES that would come
// back over it stops the start, naming the setting, rather than open a store
// that refuses every change, deletes included; one that fits opens and
// shrinks.
func TestShortHeroesFileWithinBound(t *testing.T) {
	tests := []struct {
		heroes int
		opens  bool
	}{
		{20, true},      // a few KiB written back
		{12_000, false}, // about 900 KiB on disk, several MiB written back
	}
	for _, tc := range tests {
		path := t.TempDir() + "/heroes.json"
		var b strings.Builder
		b.WriteString(`{"version":1,"heroes":[`)
		for i := range tc.heroes {
			id := fmt.Sprintf("6f1c1f7e-3c7a-4c55-9a55-%012x", i)
			fmt.Fprintf(&b, `%s{"id":%q,"etag":"\"e\"","hero":{"id":%q,"name":"A"}}`, map[bool]string{true: ",", false: ""}[i > 0], id, id)
		}
		b.WriteString("]}\n")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openFileStore(path, minStoreBytes)
		if !tc.opens {
			if err == nil || !strings.Contains(err.Error(), "HEROES_MAX_BYTES") {
				t.Errorf("%d short heroes (%d bytes) under a %d-byte bound: open = %v; want an error naming HEROES_MAX_BYTES", tc.heroes, b.Len(), minStoreBytes, err)
			}
			if err == nil {
				s.lock.Close()
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d short heroes: open = %v", tc.heroes, err)
		}
		if err := s.Delete(context.Background(), "6f1c1f7e-3c7a-4c55-9a55-000000000000", ""); err != nil {
			t.Errorf("Delete after opening %d short heroes = %v; want it done", tc.heroes, err)
		}
		s.lock.Close()
	}
}
