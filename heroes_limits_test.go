package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// hostileBodies are 1 MiB request bodies shaped to make a parser allocate:
// one huge list, one huge string, many object names, lists of lists, and
// strings full of escapes.
func hostileBodies() []struct {
	name string
	body []byte
} {
	fill := func(prefix, unit, suffix string) []byte {
		n := (maxBodyBytes - len(prefix) - len(suffix)) / len(unit)
		var b bytes.Buffer
		b.WriteString(prefix)
		b.WriteString(strings.TrimSuffix(strings.Repeat(unit, n), ","))
		b.WriteString(suffix)
		return b.Bytes()
	}
	inner := "[" + strings.TrimSuffix(strings.Repeat("0,", maxListItems), ",") + "],"
	squares := func(num string) []byte {
		row := "[" + strings.TrimSuffix(strings.Repeat(num+",", maxListItems), ",") + "],"
		square := "[" + strings.TrimSuffix(strings.Repeat(row, maxListItems), ",") + "]"
		var b strings.Builder
		b.WriteString("{")
		for i := 0; b.Len()+len(square)+20 < maxBodyBytes; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"k` + strconv.Itoa(i) + `":` + square)
		}
		b.WriteString("}")
		return []byte(b.String())
	}
	var keys strings.Builder
	keys.WriteString("{")
	for i := 0; keys.Len() < maxBodyBytes-20; i++ {
		if i > 0 {
			keys.WriteString(",")
		}
		keys.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strconv.Itoa(i) + `":0`)
	}
	keys.WriteString("}")
	return []struct {
		name string
		body []byte
	}{
		{"one list of a million zeros", fill(`{"equipment":{"items":[`, "0,", `]}}`)},
		{"one string of a million characters", fill(`{"name":"`, "<", `"}`)},
		{"many strings of escapes", fill(`{"equipment":{"items":[`, `"\u003c\u003c\u003c\u003c",`, `]}}`)},
		{"lists of lists of numbers", fill(`{"spells":[`, inner, `]}`)},
		{"many object names", []byte(keys.String())},
		{"many names holding 100 lists of 100 numbers", squares("0")},
		{"many names holding 100 lists of 100 two-digit numbers", squares("10")},
	}
}

// maxParseAllocFactor bounds the bytes checkJSON plus validateHero may
// allocate per byte of body, whatever the body's shape. Neither builds a
// tree: validation reads raw members and keeps at most maxObjectMembers
// names per object, so the worst body, many object names, costs less than
// a tenth of its size (measured 0.08x).
const maxParseAllocFactor = 1

// TestParseAllocationBounded checks that parsing and validating a hostile
// 1 MiB body allocates at most maxParseAllocFactor times its size (it was
// about 100 times for a list of zeros when the whole tree was built before
// the list limit was checked, 9 times for lists of one-digit numbers when
// the items within the limit were kept as a tree, and encoding/json into an
// any costs up to 55 times).
func TestParseAllocationBounded(t *testing.T) {
	for _, tc := range hostileBodies() {
		t.Run(tc.name, func(t *testing.T) {
			parse := func() {
				if err := checkJSON(tc.body); err != nil {
					t.Fatalf("checkJSON: %v", err)
				}
				if _, probs := validateHero(tc.body); len(probs) == 0 {
					t.Fatal("validateHero found no problem in a hostile body")
				}
			}
			// The least of three runs, so another goroutine's allocations
			// cannot fail the test.
			got := uint64(math.MaxUint64)
			for range 3 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				parse()
				runtime.ReadMemStats(&after)
				got = min(got, after.TotalAlloc-before.TotalAlloc)
			}
			if limit := uint64(maxParseAllocFactor * len(tc.body)); got > limit {
				t.Errorf("parsing %d bytes allocated %d bytes; want at most %d", len(tc.body), got, limit)
			}
			t.Logf("%d bytes of body, %d bytes allocated (%.2fx)", len(tc.body), got, float64(got)/float64(len(tc.body)))
		})
	}
}

// BenchmarkParseHostile reports the allocation of parsing each hostile body.
func BenchmarkParseHostile(b *testing.B) {
	for _, tc := range hostileBodies() {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				checkJSON(tc.body)
				validateHero(tc.body)
			}
		})
	}
}

// bigHeroJSON is a valid request body whose items and texts are full of c
// (200 characters each, 100 items); with components > 0 it also knows a
// spell with that many 200-character components.
func bigHeroJSON(c string, components int) string {
	long := strings.Repeat(c, maxStringRunes)
	str, _ := json.Marshal(long)
	items := "[" + strings.TrimSuffix(strings.Repeat(string(str)+",", maxListItems), ",") + "]"
	body := withField("equipment", `{"weapon":`+string(str)+`,"items":`+items+`}`)
	for _, k := range []string{"personality_traits", "ideals", "bonds", "flaws", "background"} {
		var m map[string]json.RawMessage
		json.Unmarshal([]byte(body), &m) // body is valid JSON
		m[k] = str
		b, _ := json.Marshal(m) // a map of valid raw messages always encodes
		body = string(b)
	}
	if components > 0 {
		comps := "[" + strings.TrimSuffix(strings.Repeat(string(str)+",", components), ",") + "]"
		body = withFieldOf(body, "spells", `[{"name":"Fireball","level":3,"casting_time":"1 action","range":"150 feet","components":`+comps+`,"duration":"Instantaneous"}]`)
	}
	return body
}

// withFieldOf returns the JSON object body with key set to raw.
func withFieldOf(body, key, raw string) string {
	var m map[string]json.RawMessage
	json.Unmarshal([]byte(body), &m) // body is valid JSON
	m[key] = json.RawMessage(raw)
	b, _ := json.Marshal(m) // a map of valid raw messages always encodes
	return string(b)
}

// TestHeroSizeLimitEveryStore checks the one limit on a stored hero,
// 64 KiB of JSON counted in UTF-16 (maxHeroJSONBytes), through the API for
// the memory and file stores (the table store in its own tests): over it,
// POST and PUT answer 422 too_large and nothing is written; a hero of
// 20,000 "<" fits, because it is stored without HTML escaping.
func TestHeroSizeLimitEveryStore(t *testing.T) {
	fits := bigHeroJSON("<", 0)
	over := bigHeroJSON("x", maxListItems)
	stores := []struct {
		name string
		open func(t *testing.T) *localStore
	}{
		{"memory", func(t *testing.T) *localStore { return newMemoryStore() }},
		{"file", func(t *testing.T) *localStore {
			s, err := openFileStore(filepath.Join(t.TempDir(), "heroes.json"), 0)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			defer s.Close()
			h := heroMux(s)
			w := do(h, http.MethodPost, "/api/heroes/", fits)
			if w.Code != http.StatusCreated {
				t.Fatalf("POST of a hero of 20,000 '<' = %d %s; want 201", w.Code, w.Body)
			}
			loc := w.Header().Get("Location")
			for _, req := range []struct{ method, target string }{{http.MethodPost, "/api/heroes/"}, {http.MethodPut, loc}} {
				w := do(h, req.method, req.target, over)
				if ps := problems(t, w); w.Code != http.StatusUnprocessableEntity || len(ps) != 1 || ps[0].Type != "too_large" {
					t.Errorf("%s of a hero over %d bytes = %d %s; want 422 too_large", req.method, maxHeroJSONBytes, w.Code, w.Body)
				}
			}
			if got := s.count(); got != 1 {
				t.Errorf("store holds %d heroes after refused writes; want 1", got)
			}
			if got, _, _ := s.Get(context.Background(), strings.TrimPrefix(loc, "/api/heroes/")); len(got.Spells) != 1 || len(got.Spells[0].Components) != 3 {
				t.Errorf("refused PUT changed the stored hero")
			}
		})
	}
}

// TestAnswersWithoutHTMLEscaping checks "<", ">" and "&" are stored and
// answered as themselves, not as \u003c…, for every hero answer and in the
// heroes file.
func TestAnswersWithoutHTMLEscaping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heroes.json")
	s, err := openFileStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := heroMux(s)
	const name = "<b>Tom & Jerry</b>"
	w := do(h, http.MethodPost, "/api/heroes/", validHeroJSON(`<b>Tom & Jerry</b>`))
	if w.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	answers := map[string]*httptest.ResponseRecorder{
		"POST":     w,
		"GET":      do(h, http.MethodGet, loc, ""),
		"list":     do(h, http.MethodGet, "/api/heroes/", ""),
		"fireball": do(h, http.MethodGet, "/api/heroes-fireball-low-ac", ""),
	}
	for what, w := range answers {
		if !strings.Contains(w.Body.String(), `"name":"`+name+`"`) {
			t.Errorf("%s answer %s; want the name unescaped", what, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s Content-Type = %q; want application/json", what, ct)
		}
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(file, []byte(name)) {
		t.Errorf("heroes file holds %s; want the name unescaped", file)
	}
}

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct{}

// Header returns a throwaway header map.
func (discardWriter) Header() http.Header { return http.Header{} }

// Write discards b.
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// WriteHeader discards the status.
func (discardWriter) WriteHeader(int) {}

// writeSizes is an http.ResponseWriter that records the size of each Write.
type writeSizes struct {
	*httptest.ResponseRecorder
	largest int
}

// Write records len(b) and passes b on.
func (w *writeSizes) Write(b []byte) (int, error) {
	w.largest = max(w.largest, len(b))
	return w.ResponseRecorder.Write(b)
}

// TestListAnswersStream checks the list and fireball answers are written a
// hero at a time (no Write larger than one hero), are valid JSON arrays,
// and that serving 30 heroes of 20,000 "<" each allocates at most 6 times
// their JSON (measured: 3; with the answer built whole and HTML-escaped,
// one copy of the answer alone was 6 times, and building it more than 12).
func TestListAnswersStream(t *testing.T) {
	s := newMemoryStore()
	h := heroMux(s)
	body := bigHeroJSON("<", 0)
	const heroes = 30
	for range heroes {
		if w := do(h, http.MethodPost, "/api/heroes/", body); w.Code != http.StatusCreated {
			t.Fatalf("POST = %d %s", w.Code, w.Body)
		}
	}
	one, err := s.List(context.Background(), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	heroJSON, err := encodeHero(one[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/api/heroes/?limit=1000", "/api/heroes-fireball-low-ac"} {
		t.Run(target, func(t *testing.T) {
			serve := func() *writeSizes {
				w := &writeSizes{ResponseRecorder: httptest.NewRecorder()}
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
				return w
			}
			w := serve()
			var got []hero
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK || len(got) != heroes {
				t.Fatalf("GET %s = %d, %d heroes, %v; want 200 and a JSON array of %d", target, w.Code, len(got), err, heroes)
			}
			if w.largest > len(heroJSON)+1 {
				t.Errorf("GET %s wrote %d bytes at once; want at most one hero (%d bytes)", target, w.largest, len(heroJSON)+1)
			}
			// Allocation of serving the answer into a writer that keeps
			// nothing: the least of three runs, so another goroutine's
			// allocations cannot fail the test.
			data := uint64(heroes * len(heroJSON))
			alloc := uint64(math.MaxUint64)
			for range 3 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				h.ServeHTTP(discardWriter{}, httptest.NewRequest(http.MethodGet, target, nil))
				runtime.ReadMemStats(&after)
				alloc = min(alloc, after.TotalAlloc-before.TotalAlloc)
			}
			if limit := 6 * data; alloc > limit {
				t.Errorf("GET %s of %d heroes of %d bytes allocated %d bytes; want at most %d", target, heroes, len(heroJSON), alloc, limit)
			}
			t.Logf("%d bytes of heroes answered, %d allocated", data, alloc)
		})
	}
}

// failingAfter is a heroStore whose ListAfter fails for every page but
// the first.
type failingAfter struct{ heroStore }

// ListAfter fails unless after is "".
func (f failingAfter) ListAfter(ctx context.Context, after string, limit int) ([]hero, error) {
	if after != "" {
		return nil, errStoreUnavailable
	}
	return f.heroStore.ListAfter(ctx, after, limit)
}

// TestFireballStoreFailsMidAnswer checks a store failure after the 200 was
// sent cuts the answer off, so the client sees a broken answer rather than
// a complete-looking list missing heroes.
func TestFireballStoreFailsMidAnswer(t *testing.T) {
	mem := newMemoryStore()
	for range maxLimit {
		if _, err := mem.Create(context.Background(), testHero(newHeroID(), "Caster")); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(heroMux(failingAfter{mem}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/api/heroes-fireball-low-ac")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("reading an answer cut off mid-way gave no error")
	}
	if json.Valid(body) {
		t.Errorf("answer cut off mid-way is valid JSON (%d bytes); want a broken answer", len(body))
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d; want the 200 already sent", resp.StatusCode)
	}
}

// TestCreateAllocationBounded checks a whole POST of each hostile 1 MiB
// body (reading, parsing, validating, answering 422) allocates at most
// maxParseAllocFactor+4 times the body: the parse bound plus what
// readBody's io.ReadAll costs, its chunks and the final copy (measured 2.2x,
// 4.3x under the race detector).
func TestCreateAllocationBounded(t *testing.T) {
	h := heroMux(newMemoryStore())
	for _, tc := range hostileBodies() {
		t.Run(tc.name, func(t *testing.T) {
			post := func() {
				r := httptest.NewRequest(http.MethodPost, "/api/heroes/", bytes.NewReader(tc.body))
				r.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(discardWriter{}, r)
			}
			post()
			got := uint64(math.MaxUint64)
			for range 3 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				post()
				runtime.ReadMemStats(&after)
				got = min(got, after.TotalAlloc-before.TotalAlloc)
			}
			if limit := uint64((maxParseAllocFactor + 4) * len(tc.body)); got > limit {
				t.Errorf("POST of %d bytes allocated %d bytes; want at most %d", len(tc.body), got, limit)
			}
			t.Logf("%d bytes of body, %d bytes allocated (%.2fx)", len(tc.body), got, float64(got)/float64(len(tc.body)))
		})
	}
}
