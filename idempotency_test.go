package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// memTable is a small Table service in memory on a loopback server: insert,
// read, update and delete of entities, and queries by PartitionKey (with an
// optional "and <property> lt|gt '<value>'", $top and continuation
// headers), with ETags and If-Match as the service has them. It does not check signatures (fakeTable does that).
// stallNext makes the service apply the next requests matching a predicate,
// then hold their answer for stallFor: a frozen backend whose writes land
// although the client gave up. Safe for concurrent use.
type memTable struct {
	srv *httptest.Server

	mu       sync.Mutex                           // guards the fields below
	rows     map[string]map[string]map[string]any // partition → row → properties
	etags    map[string]string                    // partition+"/"+row → ETag
	version  int
	stallN   int
	stallIf  func(r *http.Request, body []byte) bool
	stallFor time.Duration
	stalled  int // answers held so far
	// onRequest, when set, is called with each request (m.mu held).
	onRequest func(r *http.Request)
}

// newMemTable starts a memTable serving the account "fakeacct".
func newMemTable(tb testing.TB) *memTable {
	m := &memTable{rows: map[string]map[string]map[string]any{}, etags: map[string]string{}}
	m.srv = httptest.NewServer(m)
	tb.Cleanup(m.srv.Close)
	return m
}

// store returns a table store on m's "heroes" table whose calls give up
// after timeout.
func (m *memTable) store(tb testing.TB, timeout time.Duration) *tableStore {
	u, err := url.Parse(m.srv.URL + "/fakeacct")
	if err != nil {
		tb.Fatal(err)
	}
	acct := storageAccount{name: "fakeacct", key: []byte("k"), endpoint: u}
	s := newTableStore(acct, "heroes", &http.Client{Timeout: timeout}, discardLogger(), time.Now)
	tb.Cleanup(func() { s.Close() })
	return s
}

// stallNext makes the next n requests for which match reports true be
// applied and then answered only after d.
func (m *memTable) stallNext(n int, d time.Duration, match func(r *http.Request, body []byte) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stallN, m.stallFor, m.stallIf = n, d, match
}

// count is how many entities partition holds.
func (m *memTable) count(partition string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows[partition])
}

// entityPathPattern matches an entity path, keys decoded.
var entityPathPattern = regexp.MustCompile(`^/fakeacct/heroes\(PartitionKey='([^']*)',RowKey='([^']*)'\)$`)

func (m *memTable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	if m.onRequest != nil {
		m.onRequest(r)
	}
	stall := m.stallN > 0 && m.stallIf(r, body)
	if stall {
		m.stallN--
		m.stalled++
	}
	rec := httptest.NewRecorder()
	m.serve(rec, r, body)
	d := m.stallFor
	m.mu.Unlock()
	if stall {
		time.Sleep(d) // the write is done; its answer is late
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// serve answers one request with m.mu held.
func (m *memTable) serve(w http.ResponseWriter, r *http.Request, body []byte) {
	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && path == "/fakeacct/Tables":
		tableFail(w, http.StatusConflict, "TableAlreadyExists")
	case r.Method == http.MethodPost && path == "/fakeacct/heroes":
		var e map[string]any
		json.Unmarshal(body, &e)
		pk, rk := e["PartitionKey"].(string), e["RowKey"].(string)
		if _, ok := m.rows[pk][rk]; ok {
			tableFail(w, http.StatusConflict, "EntityAlreadyExists")
			return
		}
		m.put(w, pk, rk, e)
	case r.Method == http.MethodGet && path == "/fakeacct/heroes()":
		m.query(w, r.URL.Query())
	default:
		match := entityPathPattern.FindStringSubmatch(path)
		if match == nil {
			tableFail(w, http.StatusBadRequest, "InvalidInput")
			return
		}
		m.entity(w, r, match[1], match[2], body)
	}
}

// entity answers a read, update or delete of one entity.
func (m *memTable) entity(w http.ResponseWriter, r *http.Request, pk, rk string, body []byte) {
	e, ok := m.rows[pk][rk]
	if !ok {
		tableFail(w, http.StatusNotFound, "ResourceNotFound")
		return
	}
	if r.Method == http.MethodGet {
		tableJSON(w, m.etags[pk+"/"+rk], e)
		return
	}
	if im := r.Header.Get("If-Match"); im != "*" && im != m.etags[pk+"/"+rk] {
		tableFail(w, http.StatusPreconditionFailed, "UpdateConditionNotSatisfied")
		return
	}
	switch r.Method {
	case http.MethodPut:
		var ne map[string]any
		json.Unmarshal(body, &ne)
		m.put(w, pk, rk, ne)
	case http.MethodDelete:
		delete(m.rows[pk], rk)
		w.WriteHeader(http.StatusNoContent)
	}
}

// put stores e under pk, rk with a new ETag and answers 204 with it.
func (m *memTable) put(w http.ResponseWriter, pk, rk string, e map[string]any) {
	if m.rows[pk] == nil {
		m.rows[pk] = map[string]map[string]any{}
	}
	m.version++
	m.rows[pk][rk] = e
	m.etags[pk+"/"+rk] = fmt.Sprintf(`W/"datetime'%d'"`, m.version)
	w.Header().Set("ETag", m.etags[pk+"/"+rk])
	w.WriteHeader(http.StatusNoContent)
}

// queryPattern is the filter shapes the store sends.
var queryPattern = regexp.MustCompile(`^PartitionKey eq '([^']*)'(?: and (\w+) (lt|gt) '([^']*)')?$`)

// query answers a query of one partition, ordered by RowKey, at most $top.
func (m *memTable) query(w http.ResponseWriter, q url.Values) {
	match := queryPattern.FindStringSubmatch(q.Get("$filter"))
	if match == nil {
		tableFail(w, http.StatusBadRequest, "InvalidInput")
		return
	}
	var rks []string
	for rk, e := range m.rows[match[1]] {
		v := rk
		if match[2] != "RowKey" {
			v, _ = e[match[2]].(string)
		}
		if match[2] == "" || (match[3] == "lt") == (v < match[4]) && v != match[4] {
			rks = append(rks, rk)
		}
	}
	sort.Strings(rks)
	if next := q.Get("NextRowKey"); next != "" {
		rks = rks[sort.SearchStrings(rks, next):]
	}
	if top, err := strconv.Atoi(q.Get("$top")); err == nil && len(rks) > top {
		w.Header().Set("x-ms-continuation-NextPartitionKey", match[1])
		w.Header().Set("x-ms-continuation-NextRowKey", rks[top])
		rks = rks[:top]
	}
	page := []map[string]any{}
	for _, rk := range rks {
		page = append(page, m.rows[match[1]][rk])
	}
	tableJSON(w, "", map[string]any{"value": page})
}

// postWithRetries posts body to url with the Idempotency-Key key as a
// client told to retry on 503 does, up to 20 times, and returns the last
// answer's status, Location and the number of 503s.
func postWithRetries(t *testing.T, url, key, body string) (status int, location string, unavailable int) {
	t.Helper()
	for range 20 {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		req.Header.Set("X-Test-Caller", "caller-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return resp.StatusCode, resp.Header.Get("Location"), unavailable
		}
		unavailable++
		time.Sleep(20 * time.Millisecond) // Retry-After, shortened for the test
	}
	t.Fatalf("POST %s was still 503 after 20 tries", url)
	return 0, "", 0
}

// TestRetriedCreateOnStalledTableMakesOneHero reproduces the fault test of
// a frozen table backend: writes land but their answers come after the
// store's timeout, so the API answers 503 "retry" although the hero (or the
// claim of its key) was stored. A client retrying each create with its
// Idempotency-Key until it gets an answer must end with exactly one hero
// per create, whichever write the stall hit.
func TestRetriedCreateOnStalledTableMakesOneHero(t *testing.T) {
	heroInsert := func(r *http.Request, body []byte) bool {
		return r.Method == http.MethodPost && bytes.Contains(body, []byte(`"PartitionKey":"heroes"`))
	}
	tests := []struct {
		name  string
		n     int
		match func(r *http.Request, body []byte) bool
	}{
		{"the hero's insert lands late", 1, heroInsert},
		{"the hero's insert lands late twice", 2, heroInsert},
		{"every write lands late, three times", 3, func(r *http.Request, _ []byte) bool { return r.Method != http.MethodGet }},
		{"every request is late, five times", 5, func(*http.Request, []byte) bool { return true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			table := newMemTable(t)
			api := httptest.NewServer(heroMux(table.store(t, 100*time.Millisecond)))
			defer api.Close()
			for i := range 3 {
				table.stallNext(tc.n, 250*time.Millisecond, tc.match)
				status, loc, retries := postWithRetries(t, api.URL+"/api/heroes/", fmt.Sprintf("create-%d", i), validHeroJSON(fmt.Sprintf("Hero %d", i)))
				if status != http.StatusCreated || loc == "" {
					t.Fatalf("create %d ended with %d (Location %q) after %d 503s; want 201", i, status, loc, retries)
				}
				if retries == 0 {
					t.Errorf("create %d never saw the stall", i)
				}
			}
			if got := table.count("heroes"); got != 3 {
				t.Errorf("the table holds %d heroes after 3 retried creates; want 3", got)
			}
		})
	}
}

// TestRetriedCreateThroughStalledAzurite runs the retry against Azurite
// behind a proxy that forwards every request but holds the answer to the
// next few writes past the store's timeout.
func TestRetriedCreateThroughStalledAzurite(t *testing.T) {
	base := strings.TrimRight(os.Getenv(envAzurite), "/")
	if base == "" {
		t.Skipf("%s is unset: Azurite tests skipped", envAzurite)
	}
	cfg := azuriteConfig(t)
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	stall := 0
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		mu.Lock()
		late := stall > 0 && r.Method != http.MethodGet
		if late {
			stall--
		}
		mu.Unlock()
		if late {
			time.Sleep(400 * time.Millisecond)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer front.Close()
	acct, err := parseConnectionString(strings.Replace(cfg.StorageConnectionString, base, front.URL, 1))
	if err != nil {
		t.Fatal(err)
	}
	store := newTableStore(acct, cfg.HeroesTable, &http.Client{Timeout: 200 * time.Millisecond}, discardLogger(), time.Now)
	defer store.Close()
	api := httptest.NewServer(heroMux(store))
	defer api.Close()
	for i := range 3 {
		mu.Lock()
		stall = i + 1
		mu.Unlock()
		status, _, retries := postWithRetries(t, api.URL+"/api/heroes/", fmt.Sprintf("azurite-%d", i), validHeroJSON(fmt.Sprintf("Hero %d", i)))
		if status != http.StatusCreated || retries == 0 {
			t.Fatalf("create %d = %d after %d 503s; want 201 after at least one", i, status, retries)
		}
	}
	directAcct, err := parseConnectionString(cfg.StorageConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	direct := newTableStore(directAcct, cfg.HeroesTable, &http.Client{Timeout: 5 * time.Second}, discardLogger(), time.Now)
	got, err := direct.List(t.Context(), 0, 100)
	if err != nil || len(got) != 3 {
		t.Errorf("Azurite holds %d heroes (%v) after 3 retried creates; want 3", len(got), err)
	}
}

// idemServer is heroMux on store, with a helper posting a hero body with an
// Idempotency-Key as caller.
type idemServer struct{ h http.Handler }

func (s idemServer) post(key, caller, body string) *httptest.ResponseRecorder {
	headers := []string{"X-Test-Caller", caller}
	if key != "" {
		headers = append(headers, "Idempotency-Key", key)
	}
	return do(s.h, http.MethodPost, "/api/heroes/", body, headers...)
}

// TestIdempotencyKeyAnswers checks the answers of POST /api/heroes/ with an
// Idempotency-Key in each store: the same key and hero get the first answer
// byte for byte (status, Location, ETag, body) and create nothing; another
// hero under the key is 422; another caller's key is its own; a malformed
// key is 400; white space and member order do not make another body.
func TestIdempotencyKeyAnswers(t *testing.T) {
	for _, st := range []struct {
		name string
		open func(t *testing.T) heroStore
	}{
		{"memory", func(*testing.T) heroStore { return newMemoryStore() }},
		{"file", func(t *testing.T) heroStore {
			s, err := openFileStore(t.TempDir()+"/heroes.json", 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		t.Run(st.name, func(t *testing.T) {
			store := st.open(t)
			s := idemServer{heroMux(store)}
			body := validHeroJSON("Keyed")
			first := s.post(`"k-1"`, "alice", body)
			if first.Code != http.StatusCreated || first.Header().Get("Idempotent-Replayed") != "" {
				t.Fatalf("first POST = %d %s; want 201, not a replay", first.Code, first.Body)
			}
			var spaced bytes.Buffer
			json.Indent(&spaced, []byte(body), "", "   ")
			for _, retry := range []struct{ key, body string }{{`"k-1"`, body}, {"k-1", body}, {"k-1", spaced.String()}} {
				again := s.post(retry.key, "alice", retry.body)
				if again.Code != http.StatusCreated || again.Body.String() != first.Body.String() ||
					again.Header().Get("Location") != first.Header().Get("Location") || again.Header().Get("ETag") != first.Header().Get("ETag") {
					t.Errorf("retry with key %s = %d %s; want the first answer %s", retry.key, again.Code, again.Body, first.Body)
				}
				if again.Header().Get("Idempotent-Replayed") != "true" {
					t.Errorf("retry has no Idempotent-Replayed: true")
				}
			}
			if w := s.post("k-1", "alice", validHeroJSON("Other")); w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), "idempotency_key_reused") {
				t.Errorf("same key, other hero = %d %s; want 422 idempotency_key_reused", w.Code, w.Body)
			}
			if w := s.post("k-1", "bob", body); w.Code != http.StatusCreated || w.Header().Get("Location") == first.Header().Get("Location") {
				t.Errorf("bob's k-1 = %d at %q; want a hero of his own", w.Code, w.Header().Get("Location"))
			}
			for _, bad := range []string{`"unclosed`, `"a" extra`, "with space", strings.Repeat("k", 256), "caf\u00e9", `""`, `"a";p=1`} {
				if w := s.post(bad, "alice", body); w.Code != http.StatusBadRequest {
					t.Errorf("Idempotency-Key %q = %d; want 400", bad, w.Code)
				}
			}
			r := httptest.NewRequest(http.MethodPost, "/api/heroes/", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Add("Idempotency-Key", "a")
			r.Header.Add("Idempotency-Key", "b")
			w := httptest.NewRecorder()
			if s.h.ServeHTTP(w, r); w.Code != http.StatusBadRequest {
				t.Errorf("two Idempotency-Key fields = %d; want 400", w.Code)
			}
			if list, _ := store.List(t.Context(), 0, 100); len(list) != 2 {
				t.Errorf("store holds %d heroes; want 2 (alice's and bob's)", len(list))
			}
		})
	}
}

// TestIdempotencyKeysSurviveRestart checks the file store keeps its keys:
// a create retried after the process restarted gets the first answer.
func TestIdempotencyKeysSurviveRestart(t *testing.T) {
	path := t.TempDir() + "/heroes.json"
	open := func() *localStore {
		s, err := openFileStore(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	first := idemServer{heroMux(s)}.post("restart-1", "alice", validHeroJSON("Durable"))
	if first.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s", first.Code, first.Body)
	}
	s.Close()
	s = open()
	defer s.Close()
	again := idemServer{heroMux(s)}.post("restart-1", "alice", validHeroJSON("Durable"))
	if again.Code != http.StatusCreated || again.Body.String() != first.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry after restart = %d %s; want the first answer replayed", again.Code, again.Body)
	}
	if n := s.count(); n != 1 {
		t.Errorf("store holds %d heroes; want 1", n)
	}
}

// TestIdempotencyKeysAreBounded checks a local store forgets a key after
// idempotencyTTL (the same key then creates a new hero) and keeps at most
// maxIdempotencyKeys, forgetting the oldest first.
func TestIdempotencyKeysAreBounded(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	s := newMemoryStore()
	s.now = clock.now
	key := func(i int) idempotencyKey { return idempotencyKey{ID: fmt.Sprintf("%064x", i), Fingerprint: "fp"} }
	create := func(i int) bool {
		t.Helper()
		_, replay, err := s.CreateOnce(ctx, testHero(newHeroID(), "Bounded"), key(i))
		if err != nil {
			t.Fatal(err)
		}
		return replay
	}
	create(0)
	clock.advance(idempotencyTTL - time.Second)
	if !create(0) {
		t.Errorf("key reused just within %v was not replayed", idempotencyTTL)
	}
	clock.advance(2 * time.Second)
	if create(0) {
		t.Errorf("key reused after %v was replayed; want a new hero", idempotencyTTL)
	}
	for i := 1; i <= maxIdempotencyKeys; i++ {
		create(i)
	}
	if len(s.set.keys) > maxIdempotencyKeys || len(s.set.keyOrder) != len(s.set.keys) {
		t.Errorf("store remembers %d keys (%d in order); want at most %d", len(s.set.keys), len(s.set.keyOrder), maxIdempotencyKeys)
	}
	if create(0) {
		t.Errorf("the oldest key is still remembered beyond %d keys", maxIdempotencyKeys)
	}
	if !create(maxIdempotencyKeys) {
		t.Errorf("the newest key was forgotten")
	}
}

// TestTableIdempotencyKeysExpire checks the table store takes over a key
// older than idempotencyTTL (a new hero, no replay) and that the sweep
// deletes expired key entities and nothing else.
func TestTableIdempotencyKeysExpire(t *testing.T) {
	ctx := t.Context()
	table := newMemTable(t)
	s := table.store(t, 2*time.Second)
	clock := newFakeClock(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	s.now = clock.now
	key := idempotencyKey{ID: strings.Repeat("e", 64), Fingerprint: "fp"}
	first, _, err := s.CreateOnce(ctx, testHero(newHeroID(), "Old"), key)
	if err != nil {
		t.Fatal(err)
	}
	other := idempotencyKey{ID: strings.Repeat("f", 64), Fingerprint: "fp"}
	if _, _, err := s.CreateOnce(ctx, testHero(newHeroID(), "Gone"), other); err != nil {
		t.Fatal(err)
	}
	clock.advance(idempotencyTTL + time.Minute)
	again, replay, err := s.CreateOnce(ctx, testHero(newHeroID(), "New"), key)
	if err != nil || replay || again.HeroID == first.HeroID {
		t.Fatalf("CreateOnce() after %v = %s, %v, %v; want a new hero", idempotencyTTL, again.HeroID, replay, err)
	}
	n, err := s.sweepKeys(ctx, clock.now())
	if err != nil || n != 1 {
		t.Errorf("sweepKeys() = %d, %v; want the one expired key deleted", n, err)
	}
	if got := table.count(tableKeyPartition); got != 1 {
		t.Errorf("table holds %d keys after the sweep; want the live one", got)
	}
	if got := table.count(tablePartition); got != 3 {
		t.Errorf("table holds %d heroes; want 3 (the sweep deletes no hero)", got)
	}
}

// TestIdempotencyKeyBoundToCaller checks through the whole service that a
// key belongs to the token's caller (tid, oid, azp): another user, or the
// same user through another client, sending the same key and hero gets a
// hero of their own, never the first caller's answer.
func TestIdempotencyKeyBoundToCaller(t *testing.T) {
	p := newTestIDP(t)
	h := newTestServer(t, p, nil, io.Discard)
	post := func(claims map[string]any) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/api/heroes/", strings.NewReader(validHeroJSON("Shared")))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", `"same-key"`)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, bearer(r, p.token(t, claims)))
		return w
	}
	alice := map[string]any{"oid": "00000000-0000-0000-0000-00000000a11c", "scp": "Heroes.Create"}
	first := post(alice)
	if first.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s", first.Code, first.Body)
	}
	if again := post(alice); again.Header().Get("Location") != first.Header().Get("Location") {
		t.Errorf("alice's retry made %q; want her first hero %q", again.Header().Get("Location"), first.Header().Get("Location"))
	}
	for name, claims := range map[string]map[string]any{
		"another user":   {"oid": "00000000-0000-0000-0000-000000000b0b", "scp": "Heroes.Create"},
		"another client": {"oid": alice["oid"], "azp": "99999999-2222-3333-4444-555555555555", "scp": "Heroes.Create"},
	} {
		w := post(claims)
		if w.Code != http.StatusCreated || w.Header().Get("Location") == first.Header().Get("Location") {
			t.Errorf("%s with alice's key = %d %q; want a hero of its own", name, w.Code, w.Header().Get("Location"))
		}
	}
}

// TestTableReplicasShareIdempotencyKeys checks two table stores on one
// table, as two replicas: a create answered by one is replayed by the
// other, and a key used with another body there is a mismatch.
func TestTableReplicasShareIdempotencyKeys(t *testing.T) {
	table := newMemTable(t)
	one, two := heroMux(table.store(t, 2*time.Second)), heroMux(table.store(t, 2*time.Second))
	first := idemServer{one}.post("replica-key", "alice", validHeroJSON("Shared"))
	again := idemServer{two}.post("replica-key", "alice", validHeroJSON("Shared"))
	if first.Code != http.StatusCreated || again.Code != http.StatusCreated || again.Body.String() != first.Body.String() ||
		again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("the other replica answered %d %s; want the first answer %d %s replayed", again.Code, again.Body, first.Code, first.Body)
	}
	if w := (idemServer{two}).post("replica-key", "alice", validHeroJSON("Other")); w.Code != http.StatusUnprocessableEntity {
		t.Errorf("other body on the other replica = %d; want 422", w.Code)
	}
	if got := table.count("heroes"); got != 1 {
		t.Errorf("the table holds %d heroes; want 1", got)
	}
}

// TestIdempotencyKeysUnderClockSteps checks a key is never stored twice
// whatever the wall clock does: after it steps back, an expired key can
// stand behind a live one in the order keys were stored, and reusing it
// must replace its record (a new hero, counted once), not add a second,
// which a file store would refuse to open at the next start. Expired keys
// are forgotten wherever they stand.
func TestIdempotencyKeysUnderClockSteps(t *testing.T) {
	type step struct {
		advance    time.Duration // moves the clock before the create
		key        int
		wantReplay bool
	}
	tests := []struct {
		name     string
		steps    []step
		wantKeys int // remembered after the last step
	}{
		{"expired key behind a live one after the clock steps back", []step{
			{0, 1, false}, {-2 * time.Hour, 2, false}, {idempotencyTTL + time.Minute, 2, false},
			{time.Minute, 2, true}, {0, 1, true}}, 2},
		{"expired keys behind a live one are forgotten", []step{
			{0, 1, false}, {-2 * time.Hour, 2, false}, {0, 3, false}, {idempotencyTTL + time.Minute, 4, false}}, 2},
		{"clock steps forward past the TTL then back", []step{
			{0, 1, false}, {idempotencyTTL + time.Hour, 1, false}, {-idempotencyTTL - time.Hour, 1, true}}, 1},
		{"expired key at the front", []step{
			{0, 1, false}, {time.Hour, 2, false}, {idempotencyTTL - time.Minute, 1, false}, {0, 2, true}}, 2},
	}
	for _, st := range boundedStores {
		for _, tc := range tests {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				s, path := st.open(t, 0)
				clock := newFakeClock(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
				s.now = clock.now
				for i, sp := range tc.steps {
					clock.advance(sp.advance)
					key := idempotencyKey{ID: fmt.Sprintf("%064x", sp.key), Fingerprint: "fp", Caller: fmt.Sprintf("%032x", 1)}
					_, replay, err := s.CreateOnce(t.Context(), testHero(newHeroID(), "Keyed"), key)
					if err != nil || replay != sp.wantReplay {
						t.Fatalf("step %d: CreateOnce(key %d) = replay %v, %v; want replay %v", i, sp.key, replay, err, sp.wantReplay)
					}
					checkAccounting(t, s, path, defaultMaxStoreBytes)
				}
				s.mu.RLock()
				order := slices.Clone(s.set.keyOrder)
				s.mu.RUnlock()
				if len(order) != tc.wantKeys || len(slices.Compact(slices.Sorted(slices.Values(order)))) != len(order) {
					t.Errorf("keys remembered = %d in order %v; want %d, each once", len(order), order, tc.wantKeys)
				}
				if path == "" {
					return
				}
				s.Close()
				if _, dups, err := readHeroesFile(path, maxHeroesFile); err != nil || dups != 0 {
					t.Errorf("reading the file back = %d duplicate keys, %v; want none, nil", dups, err)
				}
			})
		}
	}
}

// TestFileStoreLoadsDuplicateKeyRecords checks a heroes file in which an
// older build stored one idempotency key twice still opens: the later
// record is kept (the answer that build gave last), the drop is logged as
// a warning, the counts hold each key once, and the next change writes the
// key once.
func TestFileStoreLoadsDuplicateKeyRecords(t *testing.T) {
	const first, second = "6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11", "7f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"
	key := strings.Repeat("a", 64)
	record := func(heroID string, created int) string {
		return fmt.Sprintf(`{"key":%q,"fingerprint":"fp","hero_id":%q,"etag":"\"e\"","hero":{"id":%q},"created":%d,"caller":%q}`,
			key, heroID, heroID, created, strings.Repeat("1", 32))
	}
	tests := []struct {
		name    string
		records []string
		want    string // hero id of the record kept
		dropped int
	}{
		{"the same key twice", []string{record(first, 100), record(second, 50)}, second, 1},
		{"the same key three times", []string{record(first, 100), record(second, 50), record(first, 10)}, first, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "heroes.json")
			doc := `{"version":1,"heroes":[],"idempotency_keys":[` + strings.Join(tc.records, ",") + `]}`
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			hs, err := openStore(t.Context(), storeOptions{Kind: "file", File: path}, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("openStore() = %v; want the file opened", err)
			}
			s := hs.(*localStore)
			defer s.Close()
			if got := s.set.keys[key].HeroID; got != tc.want || len(s.set.keyOrder) != 1 {
				t.Errorf("key kept for hero %s, %d keys in order; want %s, 1", got, len(s.set.keyOrder), tc.want)
			}
			if want := fmt.Sprintf(`"dropped_records":%d`, tc.dropped); !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), want) {
				t.Errorf("logs = %s; want a warning with %s", logs.String(), want)
			}
			if _, err := s.Create(t.Context(), testHero(newHeroID(), "Next")); err != nil {
				t.Fatal(err)
			}
			checkAccounting(t, s, path, defaultMaxStoreBytes)
			if _, dups, err := readHeroesFile(path, maxHeroesFile); err != nil || dups != 0 {
				t.Errorf("the file after a change = %d duplicate keys, %v; want none", dups, err)
			}
		})
	}
}
