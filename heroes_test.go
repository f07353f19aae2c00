package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

// discardLogger is a logger for tests that do not look at logs.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// heroMux registers the hero handlers on the same patterns addRoutes uses,
// without requireAuth (auth has its own tests), so patterns and PathValue
// are exercised.
func heroMux(store heroStore) http.Handler {
	logger := discardLogger()
	mux := http.NewServeMux()
	for _, path := range []string{"/api/heroes/{$}", "/api/heroes"} {
		mux.Handle("GET "+path, handleHeroList(logger, store))
		mux.Handle("POST "+path, handleHeroCreate(logger, store, testCaller))
	}
	mux.Handle("GET /api/heroes/{id}", handleHeroGet(logger, store))
	mux.Handle("PUT /api/heroes/{id}", handleHeroReplace(logger, store))
	mux.Handle("DELETE /api/heroes/{id}", handleHeroDelete(logger, store))
	mux.Handle("GET /api/heroes-fireball-low-ac", handleFireballLowAC(logger, store))
	return mux
}

// testCaller names the caller of a request to heroMux by its X-Test-Caller
// header, as heroesCaller names it by its token.
func testCaller(r *http.Request) string { return r.Header.Get("X-Test-Caller") }

// do sends one request to h and returns the recorder. A non-empty body is
// sent as application/json unless headers say otherwise.
func do(h http.Handler, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// validHeroJSON is a valid request body for a hero named name.
func validHeroJSON(name string) string {
	return `{"name":"` + name + `","race":"Elf","class_":"Wizard","level":5,"alignment":"Neutral Good",
	"ability_scores":{"strength":8,"dexterity":14,"constitution":12,"intelligence":18,"wisdom":13,"charisma":10},
	"skill_proficiencies":{"arcana":true},
	"equipment":{"weapon":"Staff","items":["Spellbook"]},
	"spells":[{"name":"Fireball","level":3,"casting_time":"1 action","range":"150 feet","components":["V","S","M"],"duration":"Instantaneous"}],
	"hit_points":27,"armor_class":12,"speed":30}`
}

// withField returns validHeroJSON("Test") with key set to the raw JSON value
// (or removed when raw is "").
func withField(key, raw string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(validHeroJSON("Test")), &m); err != nil {
		panic(err)
	}
	if raw == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(raw)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// problems decodes a 422 answer into its list of problems.
func problems(t *testing.T, w *httptest.ResponseRecorder) []fieldError {
	t.Helper()
	if w.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status = %d; want 422 (body %s)", w.Code, w.Body)
	}
	var body struct {
		Detail []fieldError `json:"detail"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("422 body %s: %v", w.Body, err)
	}
	return body.Detail
}

// locString renders a loc as "body.ability_scores.strength".
func locString(loc []any) string {
	parts := make([]string, len(loc))
	for i, p := range loc {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, ".")
}

// TestHeroLifecycle walks create, get, list, replace and delete through the
// routes, checking statuses, headers and bodies.
func TestHeroLifecycle(t *testing.T) {
	h := heroMux(newMemoryStore())

	w := do(h, "POST", "/api/heroes/", validHeroJSON("Gandalf"))
	if w.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s; want 201", w.Code, w.Body)
	}
	var created hero
	if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	if !isGUID(created.ID) || created.ID[14] != '4' {
		t.Errorf("POST id = %q; want a UUIDv4", created.ID)
	}
	if got, want := w.Header().Get("Location"), "/api/heroes/"+created.ID; got != want {
		t.Errorf("POST Location = %q; want %q", got, want)
	}
	etag := w.Header().Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Errorf("POST ETag = %q; want a quoted entity-tag", etag)
	}
	if !strings.Contains(w.Body.String(), `"class_":"Wizard"`) || !strings.Contains(w.Body.String(), `"background":null`) {
		t.Errorf("POST body = %s; want class_ written and absent optionals as null", w.Body)
	}

	w = do(h, "GET", "/api/heroes/"+created.ID, "")
	if w.Code != http.StatusOK || w.Header().Get("ETag") != etag {
		t.Errorf("GET = %d ETag %q; want 200 ETag %q", w.Code, w.Header().Get("ETag"), etag)
	}

	for _, path := range []string{"/api/heroes/", "/api/heroes"} {
		w = do(h, "GET", path, "")
		var list []hero
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 || len(list) != 1 || list[0].ID != created.ID {
			t.Errorf("GET %s = %d %s; want the one hero", path, w.Code, w.Body)
		}
	}

	w = do(h, "PUT", "/api/heroes/"+created.ID, withField("name", `"Gandalf the White"`), "If-Match", etag)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Gandalf the White") {
		t.Fatalf("PUT = %d %s; want 200 with the new name", w.Code, w.Body)
	}
	if newTag := w.Header().Get("ETag"); newTag == "" || newTag == etag {
		t.Errorf("PUT ETag = %q; want a new one (old %q)", newTag, etag)
	}

	w = do(h, "DELETE", "/api/heroes/"+created.ID, "")
	want := `{"message":"Hero with id '` + created.ID + `' deleted successfully"}`
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("DELETE = %d %s; want 200 %s", w.Code, w.Body, want)
	}
	for _, method := range []string{"GET", "DELETE"} {
		w = do(h, method, "/api/heroes/"+created.ID, "")
		if w.Code != http.StatusNotFound || strings.TrimSpace(w.Body.String()) != `{"detail":"Hero not found"}` {
			t.Errorf("%s after delete = %d %s; want 404 Hero not found", method, w.Code, w.Body)
		}
	}
	w = do(h, "PUT", "/api/heroes/"+created.ID, validHeroJSON("Ghost"))
	if w.Code != http.StatusNotFound {
		t.Errorf("PUT after delete = %d; want 404", w.Code)
	}
}

// TestHeroRoutesStatus checks the answer of each route to ill-formed
// requests that are not about the hero's fields.
func TestHeroRoutesStatus(t *testing.T) {
	store := newMemoryStore()
	h := heroMux(store)
	existing := testHero(newHeroID(), "Existing")
	etag, err := store.Create(context.Background(), existing)
	if err != nil {
		t.Fatal(err)
	}
	big := `{"name":"` + strings.Repeat("a", maxBodyBytes) + `"}`
	tests := []struct {
		name       string
		method     string
		target     string
		body       string
		headers    []string
		wantStatus int
		wantDetail string // substring of the body
	}{
		{"id that is not a UUID is not found", "GET", "/api/heroes/not-a-uuid", "", nil, 404, "Hero not found"},
		{"unknown UUID is not found", "GET", "/api/heroes/" + newHeroID(), "", nil, 404, "Hero not found"},
		{"uppercase UUID finds the hero", "GET", "/api/heroes/" + strings.ToUpper(existing.ID), "", nil, 200, existing.ID},
		{"delete of a non-UUID is not found", "DELETE", "/api/heroes/..%2f", "", nil, 404, "Hero not found"},
		{"missing Content-Type is read as JSON, as FastAPI does", "POST", "/api/heroes/", validHeroJSON("x"), []string{"Content-Type", ""}, 201, `"name":"x"`},
		{"missing Content-Type, body not JSON: 422 json_invalid", "POST", "/api/heroes/", "name=x", []string{"Content-Type", ""}, 422, `"type":"json_invalid","input":{}`},
		{"text/plain is 415", "POST", "/api/heroes/", validHeroJSON("x"), []string{"Content-Type", "text/plain"}, 415, "application/json"},
		{"json with another charset is 415", "POST", "/api/heroes/", validHeroJSON("x"), []string{"Content-Type", "application/json; charset=latin1"}, 415, "application/json"},
		{"json with utf-8 charset is accepted", "POST", "/api/heroes/", validHeroJSON("x"), []string{"Content-Type", "Application/JSON; charset=UTF-8"}, 201, `"name":"x"`},
		{"body over 1 MiB is 413", "POST", "/api/heroes/", big, nil, 413, "larger than"},
		{"PUT body over 1 MiB is 413", "PUT", "/api/heroes/" + existing.ID, big, nil, 413, "larger than"},
		{"stale If-Match on PUT is 409", "PUT", "/api/heroes/" + existing.ID, validHeroJSON("x"), []string{"If-Match", `"stale"`}, 409, "If-Match"},
		{"stale If-Match on DELETE is 409", "DELETE", "/api/heroes/" + existing.ID, "", []string{"If-Match", `"stale"`}, 409, "If-Match"},
		{"PUT with a different body id is 422", "PUT", "/api/heroes/" + existing.ID, withField("id", `"`+newHeroID()+`"`), nil, 422, `"loc":["body","id"]`},
		{"PUT with the same body id is accepted", "PUT", "/api/heroes/" + existing.ID, withField("id", `"`+existing.ID+`"`), []string{"If-Match", etag}, 200, existing.ID},
		{"If-Match * on DELETE matches any version", "DELETE", "/api/heroes/" + existing.ID, "", []string{"If-Match", "*"}, 200, "deleted successfully"},
		{"POST ignores a body id", "POST", "/api/heroes", withField("id", `"`+existing.ID+`"`), nil, 201, `"name":"Test"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := do(h, tc.method, tc.target, tc.body, tc.headers...)
			if w.Code != tc.wantStatus || !strings.Contains(w.Body.String(), tc.wantDetail) {
				t.Errorf("%s %s = %d %.200s; want %d containing %q", tc.method, tc.target, w.Code, w.Body, tc.wantStatus, tc.wantDetail)
			}
			if w.Code >= 400 && w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("error Content-Type = %q; want application/json", w.Header().Get("Content-Type"))
			}
		})
	}
	if _, _, err := store.Get(context.Background(), existing.ID); !errors.Is(err, errHeroNotFound) {
		t.Errorf("after the table Get() = %v; want the hero deleted by the If-Match * case", err)
	}
}

// TestETagHeader checks store etags become valid ETag header values.
func TestETagHeader(t *testing.T) {
	tests := []struct{ etag, want string }{
		{`"abc"`, `"abc"`},
		{`W/"datetime'2024-01-01T00%3A00%3A00Z'"`, `W/"datetime'2024-01-01T00%3A00%3A00Z'"`},
		{`abc`, `"abc"`},
	}
	for _, tc := range tests {
		if got := etagHeader(tc.etag); got != tc.want {
			t.Errorf("etagHeader(%q) = %q; want %q", tc.etag, got, tc.want)
		}
	}
}

// TestHeroValidation checks each validation rule reports the FastAPI loc and
// type, and that valid variants are accepted.
func TestHeroValidation(t *testing.T) {
	long := `"` + strings.Repeat("é", maxStringRunes+1) + `"`
	tests := []struct {
		name string
		body string
		want []string // "loc type" of every expected problem, in order; nil means accepted
	}{
		{"valid hero is accepted", validHeroJSON("ok"), nil},
		{"class alias is accepted", strings.Replace(validHeroJSON("ok"), `"class_"`, `"class"`, 1), nil},
		{"class and class_ together are refused", withField("class", `"Rogue"`), []string{"body.class value_error"}},
		{"missing required field", withField("name", ""), []string{"body.name missing"}},
		{"missing class reported at class_", withField("class_", ""), []string{"body.class_ missing"}},
		{"null for a required string", withField("race", "null"), []string{"body.race string_type"}},
		{"null for an optional string is accepted", withField("background", "null"), nil},
		{"null spells are accepted", withField("spells", "null"), nil},
		{"absent skill proficiencies default to false", withField("skill_proficiencies", ""), nil},
		{"wrong type for an integer", withField("level", `[]`), []string{"body.level int_type"}},
		{"string that is no integer", withField("level", `"five"`), []string{"body.level int_parsing"}},
		{"fractional integer", withField("level", `5.5`), []string{"body.level int_from_float"}},
		{"integral float is an integer", withField("level", `5.0`), nil},
		{"huge integer", withField("hit_points", `1e300`), []string{"body.hit_points int_parsing_size"}},
		{"integer beyond 2^53", withField("speed", `9007199254740993`), []string{"body.speed int_parsing_size"}},
		{"open-ended integer above 2^31-1", withField("hit_points", `2147483648`), []string{"body.hit_points less_than_equal"}},
		{"level below 1", withField("level", `0`), []string{"body.level greater_than_equal"}},
		{"level above 20", withField("level", `21`), []string{"body.level less_than_equal"}},
		{"negative armor class", withField("armor_class", `-1`), []string{"body.armor_class greater_than_equal"}},
		{"ability score out of range has a nested loc", withField("ability_scores",
			`{"strength":31,"dexterity":0,"constitution":12,"intelligence":18,"wisdom":13}`),
			[]string{"body.ability_scores.strength less_than_equal", "body.ability_scores.dexterity greater_than_equal", "body.ability_scores.charisma missing"}},
		{"ability scores not an object", withField("ability_scores", `[]`), []string{"body.ability_scores model_attributes_type"}},
		{"unknown field", withField("weight", `80`), []string{"body.weight extra_forbidden"}},
		{"unknown skill", withField("skill_proficiencies", `{"flying":true}`), []string{"body.skill_proficiencies.flying extra_forbidden"}},
		{"skill string that is no boolean", withField("skill_proficiencies", `{"arcana":"maybe"}`), []string{"body.skill_proficiencies.arcana bool_parsing"}},
		{"skill not a boolean", withField("skill_proficiencies", `{"arcana":[]}`), []string{"body.skill_proficiencies.arcana bool_type"}},
		{"string over 200 characters", withField("name", long), []string{"body.name string_too_long"}},
		{"200 multibyte characters are accepted", withField("name", `"`+strings.Repeat("é", maxStringRunes)+`"`), nil},
		{"list over 100 items", withField("equipment", `{"items":[`+strings.TrimSuffix(strings.Repeat(`"x",`, maxListItems+1), ",")+`]}`),
			[]string{"body.equipment.items too_long"}},
		{"item of the wrong type has its index in loc", withField("equipment", `{"items":["a",2]}`), []string{"body.equipment.items.1 string_type"}},
		{"spell problems have the spell index", withField("spells", `[{"name":"Fireball","level":10,"casting_time":"1 action","range":"150 feet","duration":"x"}]`),
			[]string{"body.spells.0.level less_than_equal", "body.spells.0.components missing"}},
		{"spells not a list", withField("spells", `{}`), []string{"body.spells list_type"}},
		{"body not an object", `[1,2]`, []string{"body model_attributes_type"}},
		{"every problem is listed at once", `{"name":1,"level":"x","extra":true}`, []string{
			"body.extra extra_forbidden", "body.name string_type", "body.race missing", "body.class_ missing",
			"body.level int_parsing", "body.ability_scores missing", "body.equipment missing",
			"body.hit_points missing", "body.armor_class missing", "body.speed missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := do(heroMux(newMemoryStore()), "POST", "/api/heroes/", tc.body)
			if tc.want == nil {
				if w.Code != http.StatusCreated {
					t.Fatalf("POST = %d %.300s; want 201", w.Code, w.Body)
				}
				return
			}
			var got []string
			for _, p := range problems(t, w) {
				got = append(got, locString(p.Loc)+" "+p.Type)
				if p.Msg == "" {
					t.Errorf("problem %v has no msg", p)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems = %q; want %q", got, tc.want)
			}
		})
	}
}

// TestHeroValidationDefaults checks what validation fills in.
func TestHeroValidationDefaults(t *testing.T) {
	h, probs := validateHero([]byte(withField("equipment", `{}`)))
	if len(probs) > 0 {
		t.Fatalf("validateHero() problems = %v", probs)
	}
	if h.Equipment.Items == nil || h.Equipment.Weapon != nil || h.SkillProficiencies.Stealth || !h.SkillProficiencies.Arcana {
		t.Errorf("validateHero() = %+v; want items [], weapon nil, stealth false, arcana true", h)
	}
}

// TestMalformedJSON checks malformed bodies answer 422 json_invalid with the
// offset in loc and the line and column in ctx.
func TestMalformedJSON(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantType   string
		wantOffset float64
		wantLine   float64
	}{
		{"syntax error", "{\n  \"name\": ,\n}", "json_invalid", 12, 2},
		{"truncated", `{"name": "x"`, "json_invalid", 12, 1},
		{"trailing data", `{"name": "x"} {"name": "y"}`, "json_invalid", 14, 1},
		{"trailing garbage after whitespace", "{}\n\n  x", "json_invalid", 6, 3},
		{"too deep", strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1), "json_invalid", maxJSONDepth, 1},
		{"invalid UTF-8 in a string (RFC 8259 §8.1)", "{\"name\": \"a\xffb\"}", "json_invalid", 11, 1},
		{"invalid UTF-8 in a name", "{\n\"n\xc3\": 1}", "json_invalid", 4, 2},
		{"truncated UTF-8 sequence", "{\"name\": \"\xe2\x82\"}", "json_invalid", 10, 1},
		{"UTF-16 surrogate encoded as UTF-8", "{\"name\": \"\xed\xa0\x80\"}", "json_invalid", 10, 1},
		{"invalid escape", `{"name": "\q"}`, "json_invalid", 11, 1},
		{"bad number", `{"level": 01}`, "json_invalid", 11, 1},
		{"position counts characters, not bytes (FastAPI's loc)", `{"a": "é", }`, "json_invalid", 11, 1},
		{"astral characters count once, as in Python", "{\"a\": \"😀😀\", }", "json_invalid", 12, 1},
		{"position on a later line counts characters", "{\"é\": 1,\n \"ü\": }", "json_invalid", 15, 2},
		{"position after a byte order mark counts from after it", "\ufeff{\"a\": }", "json_invalid", 6, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := do(heroMux(newMemoryStore()), "POST", "/api/heroes/", tc.body)
			var body struct {
				Detail []struct {
					Loc  []any          `json:"loc"`
					Type string         `json:"type"`
					Ctx  map[string]any `json:"ctx"`
				} `json:"detail"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 422 || len(body.Detail) != 1 {
				t.Fatalf("POST %q = %d %s; want 422 with one problem", tc.body, w.Code, w.Body)
			}
			p := body.Detail[0]
			if p.Type != tc.wantType || len(p.Loc) != 2 || p.Loc[0] != "body" || p.Loc[1] != tc.wantOffset || p.Ctx["line"] != tc.wantLine {
				t.Errorf("POST %q problem = %+v; want type %s at offset %v line %v", tc.body, p, tc.wantType, tc.wantOffset, tc.wantLine)
			}
		})
	}
	w := do(heroMux(newMemoryStore()), "POST", "/api/heroes/", " ")
	if got := problems(t, w); len(got) != 1 || got[0].Type != "missing" {
		t.Errorf("empty body problems = %v; want one missing", got)
	}
}

// seededMemoryStore returns a memory store holding n test heroes and their
// ids in ascending order (the list order).
func seededMemoryStore(tb testing.TB, n int) (*localStore, []string) {
	tb.Helper()
	store := newMemoryStore()
	ids := make([]string, 0, n)
	for i := range n {
		h := testHero(newHeroID(), fmt.Sprint(i))
		if _, err := store.Create(context.Background(), h); err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, h.ID)
	}
	slices.Sort(ids)
	return store, ids
}

// TestHeroListPaging checks limit and offset and their 422s.
func TestHeroListPaging(t *testing.T) {
	store, ids := seededMemoryStore(t, 5)
	h := heroMux(store)
	tests := []struct {
		query   string
		wantIDs []string
		wantErr string // "loc type" of the one problem
	}{
		{"", ids, ""},
		{"?limit=2", ids[:2], ""},
		{"?limit=2&offset=2", ids[2:4], ""},
		{"?offset=4", ids[4:], ""},
		{"?offset=99", []string{}, ""},
		{"?limit=1000", ids, ""},
		{"?limit=0", nil, "query.limit greater_than_equal"},
		{"?limit=1001", nil, "query.limit less_than_equal"},
		{"?limit=abc", nil, "query.limit int_parsing"},
		{"?limit=", nil, "query.limit int_parsing"},
		{"?limit=1.5", nil, "query.limit int_parsing"},
		{"?offset=-1", nil, "query.offset greater_than_equal"},
		{"?offset=99999999999999999999", nil, "query.offset int_parsing_size"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			w := do(h, "GET", "/api/heroes/"+tc.query, "")
			if tc.wantErr != "" {
				got := problems(t, w)
				if len(got) != 1 || locString(got[0].Loc)+" "+got[0].Type != tc.wantErr {
					t.Errorf("GET %s problems = %v; want %s", tc.query, got, tc.wantErr)
				}
				return
			}
			var list []hero
			if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
				t.Fatalf("GET %s = %d %s", tc.query, w.Code, w.Body)
			}
			if got := heroIDs(list); !slices.Equal(got, tc.wantIDs) {
				t.Errorf("GET %s ids = %v; want %v", tc.query, got, tc.wantIDs)
			}
		})
	}
}

// failingStore is a heroStore whose every method fails with err.
type failingStore struct{ err error }

func (s failingStore) List(context.Context, int, int) ([]hero, error) { return nil, s.err }
func (s failingStore) ListAfter(context.Context, string, int) ([]hero, error) {
	return nil, s.err
}
func (s failingStore) ListJSON(context.Context, int, int) ([]json.RawMessage, error) {
	return nil, s.err
}
func (s failingStore) Get(context.Context, string) (hero, string, error) {
	return hero{}, "", s.err
}
func (s failingStore) Create(context.Context, hero) (string, error) { return "", s.err }
func (s failingStore) CreateOnce(context.Context, hero, idempotencyKey) (idemRecord, bool, error) {
	return idemRecord{}, false, s.err
}
func (s failingStore) Replace(context.Context, hero, string) (string, error) { return "", s.err }
func (s failingStore) Delete(context.Context, string, string) error          { return s.err }
func (s failingStore) Ready(context.Context) error                           { return s.err }
func (s failingStore) Close() error                                          { return nil }

// TestStoreErrorAnswers checks how store errors reach the client: never
// with the storage error's text.
func TestStoreErrorAnswers(t *testing.T) {
	const secret = "AccountKey=c2VjcmV0 at 10.0.0.7"
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantRetry  bool
	}{
		{"unavailable is 503 with Retry-After", fmt.Errorf("%w: %s", errStoreUnavailable, secret), 503, true},
		{"timeout is 503 with Retry-After", fmt.Errorf("table: %s: %w", secret, context.DeadlineExceeded), 503, true},
		{"too large is 422", fmt.Errorf("%w: %s", errHeroTooLarge, secret), 422, false},
		{"full is 507 without Retry-After", fmt.Errorf("%w: %s", errStoreFull, secret), 507, false},
		{"conflict is 409", fmt.Errorf("%w: %s", errHeroConflict, secret), 409, false},
		{"an unexpected store answer is 502 without Retry-After", fmt.Errorf("%w: %s", errStoreBadAnswer, secret), 502, false},
		{"anything else is 500", errors.New(secret), 500, false},
	}
	id := newHeroID()
	for _, tc := range tests {
		h := heroMux(failingStore{tc.err})
		for _, req := range []struct{ method, target, body string }{
			{"GET", "/api/heroes/", ""}, {"POST", "/api/heroes/", validHeroJSON("x")},
			{"PUT", "/api/heroes/" + id, validHeroJSON("x")}, {"DELETE", "/api/heroes/" + id, ""},
			{"GET", "/api/heroes-fireball-low-ac", ""},
		} {
			t.Run(tc.name+"/"+req.method+" "+req.target, func(t *testing.T) {
				w := do(h, req.method, req.target, req.body)
				if (tc.wantStatus == 422 || tc.wantStatus == 409 || tc.wantStatus == 507) && req.method == "GET" {
					return // GET cannot give these errors; the fake is not realistic there
				}
				if w.Code != tc.wantStatus {
					t.Errorf("status = %d; want %d", w.Code, tc.wantStatus)
				}
				if strings.Contains(w.Body.String(), "AccountKey") || strings.Contains(w.Body.String(), "10.0.0.7") {
					t.Errorf("body %s leaks the storage error", w.Body)
				}
				if got := w.Header().Get("Retry-After") != ""; got != tc.wantRetry {
					t.Errorf("Retry-After present = %v; want %v", got, tc.wantRetry)
				}
			})
		}
	}
}

// TestFireballLowAC checks the query matches Fireball in any case with
// armor class below 20, and that heroes without spells do not break it.
func TestFireballLowAC(t *testing.T) {
	ctx := context.Background()
	store := newMemoryStore()
	if err := seedHeroes(ctx, store); err != nil {
		t.Fatal(err)
	}
	add := func(name string, ac int, spells ...string) {
		h := testHero(newHeroID(), name)
		h.ArmorClass, h.Spells = ac, nil
		for _, s := range spells {
			h.Spells = append(h.Spells, spell{Name: s, Level: 3, Components: []string{}})
		}
		if _, err := store.Create(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	add("lowercase fireball, AC 19", 19, "Shield", "fireball")
	add("FIREBALL, AC 0", 0, "FIREBALL")
	add("fireball, AC 20", 20, "Fireball")
	add("no spells, AC 10", 10)
	add("other spells, AC 10", 10, "Fire Bolt", "Fireballs")

	w := do(heroMux(store), "GET", "/api/heroes-fireball-low-ac", "")
	var list []hero
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
		t.Fatalf("GET = %d %s", w.Code, w.Body)
	}
	var got []string
	for _, h := range list {
		got = append(got, h.Name)
	}
	slices.Sort(got)
	want := []string{"Elara Moonwhisper", "FIREBALL, AC 0", "lowercase fireball, AC 19"}
	if !slices.Equal(got, want) {
		t.Errorf("fireball-low-ac = %q; want %q", got, want)
	}
}

// TestSeedHeroes checks the sample heroes the -dev mode relies on, and that
// seeding a store that already holds heroes adds none.
func TestSeedHeroes(t *testing.T) {
	ctx := context.Background()
	store := newMemoryStore()
	if err := seedHeroes(ctx, store); err != nil {
		t.Fatal(err)
	}
	list, err := store.List(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var fireball, noSpells bool
	for _, h := range list {
		fireball = fireball || knowsFireballLowAC(h)
		noSpells = noSpells || len(h.Spells) == 0
		body, _ := json.Marshal(h) // a hero always marshals
		if _, probs := validateHero(body); len(probs) > 0 {
			t.Errorf("seed hero %s is not valid: %v", h.Name, probs)
		}
	}
	if len(list) < 3 || !fireball || !noSpells {
		t.Errorf("seed = %d heroes, fireball low AC %v, one without spells %v; want ≥3, true, true", len(list), fireball, noSpells)
	}
	if err := seedHeroes(ctx, store); err != nil {
		t.Fatal(err)
	}
	if again, _ := store.List(ctx, 0, 100); len(again) != len(list) {
		t.Errorf("second seed: %d heroes; want %d (unchanged)", len(again), len(list))
	}
}

// TestOpenStore checks the store each HEROES_STORE setting opens.
func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.json")
	writeFile("{")(t, corrupt)
	tests := []struct {
		name    string
		cfg     config
		wantErr string // substring; "" means success
	}{
		{"memory", config{HeroesStore: "memory"}, ""},
		{"file that is missing starts empty", config{HeroesStore: "file", HeroesFile: filepath.Join(dir, "new.json")}, ""},
		{"corrupt file names the file", config{HeroesStore: "file", HeroesFile: corrupt}, corrupt},
		{"unknown store", config{HeroesStore: "carrier-pigeon"}, "carrier-pigeon"},
		{"azuretable goes to openTableStore", config{HeroesStore: "azuretable"}, "table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := openStore(ctx, tc.cfg.storeOptions(), http.DefaultClient, discardLogger())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("openStore() = %v; want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("openStore() = %v", err)
			}
			defer s.Close()
			if list, err := s.List(ctx, 0, 10); err != nil || len(list) != 0 {
				t.Errorf("new store List() = %v, %v; want empty", list, err)
			}
		})
	}
}

// FuzzParseJSON checks checkJSON never panics, accepts only valid JSON,
// refuses valid JSON only for nesting depth, and locates what it refuses;
// and that validateHero takes any JSON it accepts.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2,{"b":null}]}`, `"x"`, `1e400`, `{"a":1}{}`, `[[[[`, `"\ud83d\ude00\ud800x\u00e9"`, `{"a":1,"a":[2]}`, `-0.5e+3`, "{\"a\":\"\xff\"}", ` `, validHeroJSON("f")} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkJSON(data)
		if err == nil {
			if !json.Valid(data) || !utf8.Valid(data) {
				t.Fatalf("checkJSON(%q) accepted invalid JSON", data)
			}
			validateHero(data) // must not panic on any shape
			return
		}
		var se *syntaxError
		if !errors.As(err, &se) || se.off < 0 || se.off > len(data) {
			t.Fatalf("checkJSON(%q) error %#v; want a located *syntaxError", data, err)
		}
		if p := jsonInvalid(data, se); p.Loc[1].(int) > utf8.RuneCount(data) || p.Ctx["line"].(int) < 1 || p.Ctx["column"].(int) < 1 {
			t.Fatalf("jsonInvalid(%q) = %+v; want a position inside the body", data, p)
		}
		if json.Valid(data) && utf8.Valid(data) && !strings.Contains(se.msg, "nesting") {
			t.Fatalf("checkJSON(%q) refused valid JSON: %v", data, err)
		}
	})
}

// FuzzHeroCreate sends arbitrary bodies to POST: the answer is 201 with a
// hero that validates again, or 413/422, never a panic or a 500.
func FuzzHeroCreate(f *testing.F) {
	for _, s := range []string{validHeroJSON("f"), withField("level", "2.5"), `{"class":"x","class_":"y"}`, `[`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		w := do(heroMux(newMemoryStore()), "POST", "/api/heroes/", body, "Content-Type", "application/json")
		switch w.Code {
		case http.StatusCreated:
			var h hero
			if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil {
				t.Fatalf("201 body %s: %v", w.Body, err)
			}
		case http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("POST %q = %d %s", body, w.Code, w.Body)
		}
	})
}

// FuzzParsePaging checks parsePaging never panics and returns only values
// in range.
func FuzzParsePaging(f *testing.F) {
	for _, s := range []string{"limit=10&offset=5", "limit=-1", "offset=1e3", "limit=99999999999999999999999", "limit=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		offset, limit, err := parsePaging(q)
		if err == nil && (limit < 1 || limit > maxLimit || offset < 0) {
			t.Fatalf("parsePaging(%q) = %d, %d; out of range", raw, offset, limit)
		}
	})
}

// Example_validateHero shows the 422 problems of a body with several faults.
func Example_validateHero() {
	_, problems := validateHero([]byte(`{"name":"Bob","race":"Orc","class":"Bard","level":25,"alignment":null,
		"ability_scores":{"strength":10,"dexterity":10,"constitution":10,"intelligence":10,"wisdom":10,"charisma":40},
		"equipment":{},"hit_points":1,"armor_class":"ten","speed":30,"hat":"red"}`))
	out, _ := json.Marshal(problems)
	fmt.Println(string(out))
	// Output:
	// [{"loc":["body","hat"],"msg":"Extra inputs are not permitted","type":"extra_forbidden","input":"red"},{"loc":["body","level"],"msg":"Input should be less than or equal to 20","type":"less_than_equal","input":25,"ctx":{"le":20}},{"loc":["body","ability_scores","charisma"],"msg":"Input should be less than or equal to 30","type":"less_than_equal","input":40,"ctx":{"le":30}},{"loc":["body","armor_class"],"msg":"Input should be a valid integer, unable to parse string as an integer","type":"int_parsing","input":"ten"}]
}

// BenchmarkDecodeHero measures parsing and validating a typical hero body.
func BenchmarkDecodeHero(b *testing.B) {
	body := []byte(validHeroJSON("Bench"))
	for b.Loop() {
		if err := checkJSON(body); err != nil {
			b.Fatal(err)
		}
		if _, probs := validateHero(body); len(probs) > 0 {
			b.Fatal(probs)
		}
	}
}

// BenchmarkStoreCreate measures Create on the memory store and on the file
// store (one durable write per create, fsyncs included) holding 100 heroes.
func BenchmarkStoreCreate(b *testing.B) {
	ctx := context.Background()
	stores := []struct {
		name string
		open func(b *testing.B) *localStore
	}{
		{"memory", func(b *testing.B) *localStore { return newMemoryStore() }},
		{"file", func(b *testing.B) *localStore {
			s, err := openFileStore(filepath.Join(b.TempDir(), "heroes.json"), 0)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.Close()
			for range 100 {
				if _, err := s.Create(ctx, testHero(newHeroID(), "Filler")); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if _, err := s.Create(ctx, testHero(newHeroID(), "Bench")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPydanticLaxMode checks the request bodies FastAPI (pydantic v2 in its
// default lax mode, "Conversion Table") accepts are accepted with the same
// values, and that the ones it refuses are refused with its error types:
// numeric strings and booleans for ints, the boolean words and 0/1 for
// bools, strings kept strict, and a body starting with a UTF-8 BOM.
func TestPydanticLaxMode(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantLevel int    // checked when wantProblem is ""
		wantArc   bool   // arcana, checked when wantProblem is ""
		want      string // "loc type" of the one problem; "" means accepted
	}{
		{"numeric string for an int", withField("level", `"5"`), 5, true, ""},
		{"numeric string with surrounding whitespace", withField("level", `" 7\n"`), 7, true, ""},
		{"numeric string with a plus sign", withField("level", `"+3"`), 3, true, ""},
		{"numeric string with leading zeros", withField("level", `"007"`), 7, true, ""},
		{"numeric string with underscores between digits", withField("hit_points", `"1_000"`), 5, true, ""},
		{"numeric string with a zero fraction", withField("level", `"6.0"`), 6, true, ""},
		{"numeric string ending in a point", withField("level", `"6."`), 6, true, ""},
		{"true for an int is 1", withField("level", `true`), 1, true, ""},
		{"integral float for an int", withField("level", `5.0`), 5, true, ""},
		{"string with a fraction is int_parsing", withField("level", `"5.5"`), 0, false, "body.level int_parsing"},
		{"string with an exponent is int_parsing", withField("level", `"1e1"`), 0, false, "body.level int_parsing"},
		{"word for an int is int_parsing", withField("level", `"five"`), 0, false, "body.level int_parsing"},
		{"empty string for an int is int_parsing", withField("level", `""`), 0, false, "body.level int_parsing"},
		{"leading underscore is int_parsing", withField("level", `"_5"`), 0, false, "body.level int_parsing"},
		{"double underscore is int_parsing", withField("level", `"1__0"`), 0, false, "body.level int_parsing"},
		{"numeric string out of range is checked", withField("level", `"21"`), 0, false, "body.level less_than_equal"},
		{"negative numeric string is checked", withField("level", `"-1"`), 0, false, "body.level greater_than_equal"},
		{"list for an int is int_type", withField("level", `[]`), 0, false, "body.level int_type"},
		{"null for an int is int_type", withField("level", `null`), 0, false, "body.level int_type"},
		{"numeric string for an ability score", withField("ability_scores",
			`{"strength":"8","dexterity":14,"constitution":12,"intelligence":18,"wisdom":13,"charisma":10}`), 5, true, ""},
		{"bool word true", withField("skill_proficiencies", `{"arcana":"true"}`), 5, true, ""},
		{"bool word in capitals", withField("skill_proficiencies", `{"arcana":"YES"}`), 5, true, ""},
		{"bool word on", withField("skill_proficiencies", `{"arcana":"on"}`), 5, true, ""},
		{"bool letter t", withField("skill_proficiencies", `{"arcana":"t"}`), 5, true, ""},
		{"bool letter y", withField("skill_proficiencies", `{"arcana":"y"}`), 5, true, ""},
		{"bool string 1", withField("skill_proficiencies", `{"arcana":"1"}`), 5, true, ""},
		{"bool number 1", withField("skill_proficiencies", `{"arcana":1}`), 5, true, ""},
		{"bool number 1.0", withField("skill_proficiencies", `{"arcana":1.0}`), 5, true, ""},
		{"bool word false", withField("skill_proficiencies", `{"arcana":"False"}`), 5, false, ""},
		{"bool word off", withField("skill_proficiencies", `{"arcana":"off"}`), 5, false, ""},
		{"bool word no", withField("skill_proficiencies", `{"arcana":"no"}`), 5, false, ""},
		{"bool letter f", withField("skill_proficiencies", `{"arcana":"f"}`), 5, false, ""},
		{"bool letter n", withField("skill_proficiencies", `{"arcana":"N"}`), 5, false, ""},
		{"bool string 0", withField("skill_proficiencies", `{"arcana":"0"}`), 5, false, ""},
		{"bool number 0", withField("skill_proficiencies", `{"arcana":0}`), 5, false, ""},
		{"bool word maybe is bool_parsing", withField("skill_proficiencies", `{"arcana":"maybe"}`), 0, false, "body.skill_proficiencies.arcana bool_parsing"},
		{"bool word with spaces is bool_parsing", withField("skill_proficiencies", `{"arcana":" true"}`), 0, false, "body.skill_proficiencies.arcana bool_parsing"},
		{"bool number 2 is bool_parsing", withField("skill_proficiencies", `{"arcana":2}`), 0, false, "body.skill_proficiencies.arcana bool_parsing"},
		{"null for a bool is bool_type", withField("skill_proficiencies", `{"arcana":null}`), 0, false, "body.skill_proficiencies.arcana bool_type"},
		{"number for a string stays string_type", withField("name", `5`), 0, false, "body.name string_type"},
		{"bool for a string stays string_type", withField("race", `true`), 0, false, "body.race string_type"},
		{"body starting with a UTF-8 BOM", "\ufeff" + validHeroJSON("Bom"), 5, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := do(heroMux(newMemoryStore()), "POST", "/api/heroes/", tc.body)
			if tc.want != "" {
				got := problems(t, w)
				if len(got) != 1 || locString(got[0].Loc)+" "+got[0].Type != tc.want {
					t.Fatalf("POST problems = %+v; want one %q", got, tc.want)
				}
				return
			}
			if w.Code != http.StatusCreated {
				t.Fatalf("POST = %d %.300s; want 201", w.Code, w.Body)
			}
			var h hero
			if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil {
				t.Fatal(err)
			}
			if h.Level != tc.wantLevel || h.SkillProficiencies.Arcana != tc.wantArc {
				t.Errorf("stored level %d, arcana %v; want %d, %v", h.Level, h.SkillProficiencies.Arcana, tc.wantLevel, tc.wantArc)
			}
		})
	}
}

// TestLaxIntString checks the integer strings pydantic's lax mode reads,
// and the text intValue gets for them.
func TestLaxIntString(t *testing.T) {
	tests := []struct {
		in     string
		want   json.Number
		wantOK bool
	}{
		{"5", "5", true}, {" 5 ", "5", true}, {"\t-12\n", "-12", true}, {"+3", "3", true},
		{"007", "7", true}, {"-0", "0", true}, {"000", "0", true}, {"1_000", "1000", true},
		{"5.0", "5", true}, {"5.", "5", true}, {"5.000", "5", true},
		{"", "", false}, {" ", "", false}, {"-", "", false}, {"5.5", "", false}, {"5.01", "", false},
		{".0", "", false}, {"1e2", "", false}, {"0x1f", "", false}, {"_1", "", false}, {"1_", "", false},
		{"1__0", "", false}, {"++1", "", false}, {"1 2", "", false}, {"٣", "", false},
	}
	for _, tc := range tests {
		got, ok := laxIntString(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("laxIntString(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

// FuzzLaxIntString checks laxIntString never panics and gives valid JSON
// integer text whenever it accepts.
func FuzzLaxIntString(f *testing.F) {
	for _, s := range []string{"5", " -1_000.00 ", "1e2", "", "+", "_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := laxIntString(s)
		if !ok {
			return
		}
		if err := checkJSON([]byte(got)); err != nil {
			t.Fatalf("laxIntString(%q) = %q; not a JSON number: %v", s, got, err)
		}
		if strings.ContainsAny(string(got), ".eE+") {
			t.Fatalf("laxIntString(%q) = %q; not an integer", s, got)
		}
	})
}

// TestHeroListLimits checks the paging defaults with literal numbers: with
// 1,001 heroes stored, no limit gives exactly 100, limit=1000 gives 1,000,
// and 1001 is refused.
func TestHeroListLimits(t *testing.T) {
	store, ids := seededMemoryStore(t, 1001)
	h := heroMux(store)
	tests := []struct {
		name    string
		query   string
		wantIDs []string // nil: a 422
	}{
		{"default limit is 100", "", ids[:100]},
		{"default limit applies after an offset", "?offset=950", ids[950:1001]},
		{"default limit applies from the middle", "?offset=500", ids[500:600]},
		{"limit up to 1000 is honoured", "?limit=1000", ids[:1000]},
		{"limit 1001 is refused", "?limit=1001", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := do(h, http.MethodGet, "/api/heroes/"+tc.query, "")
			if tc.wantIDs == nil {
				if w.Code != http.StatusUnprocessableEntity {
					t.Fatalf("GET %s = %d; want 422", tc.query, w.Code)
				}
				return
			}
			var list []hero
			if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != http.StatusOK {
				t.Fatalf("GET %s = %d: %v", tc.query, w.Code, err)
			}
			if got := heroIDs(list); !slices.Equal(got, tc.wantIDs) {
				t.Errorf("GET %s gave %d heroes; want %d", tc.query, len(got), len(tc.wantIDs))
			}
		})
	}
}

// TestHeroRequestLimits checks the request limits with literal numbers, so
// a change of a constant shows here (issue 5): a body of 1,048,576 bytes is
// read and validated, 1,048,577 is 413; lists of 100 items are accepted and
// 101 refused, in every list field; strings of 200 characters (multibyte
// too) are accepted and 201 refused, in every string field.
func TestHeroRequestLimits(t *testing.T) {
	items := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	spell := `{"name":"S","level":1,"casting_time":"1 action","range":"Self","components":["V"],"duration":"1 round"}`
	spellWith := func(key, raw string) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(spell), &m); err != nil {
			t.Fatal(err)
		}
		m[key] = json.RawMessage(raw)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return "[" + string(b) + "]"
	}
	str := func(n int) string { return `"` + strings.Repeat("é", n) + `"` }
	pad := func(body string, size int) string { return body + strings.Repeat(" ", size-len(body)) }
	type limit struct {
		name       string
		body       string
		wantStatus int
		want       string // "loc type" of the one problem when wantStatus is 422
	}
	tests := []limit{
		{"body of 1048576 bytes is read", pad(validHeroJSON("Big"), 1048576), http.StatusCreated, ""},
		{"body of 1048577 bytes is 413", pad(validHeroJSON("Big"), 1048577), http.StatusRequestEntityTooLarge, ""},
		{"invalid body of 1048576 bytes is validated", pad(withField("level", "0"), 1048576), http.StatusUnprocessableEntity, "body.level greater_than_equal"},
		{"100 items", withField("equipment", `{"items":`+items(100, `"x"`)+`}`), http.StatusCreated, ""},
		{"101 items", withField("equipment", `{"items":`+items(101, `"x"`)+`}`), http.StatusUnprocessableEntity, "body.equipment.items too_long"},
		{"100 spells", withField("spells", items(100, spell)), http.StatusCreated, ""},
		{"101 spells", withField("spells", items(101, spell)), http.StatusUnprocessableEntity, "body.spells too_long"},
		{"100 components", withField("spells", spellWith("components", items(100, `"V"`))), http.StatusCreated, ""},
		{"101 components", withField("spells", spellWith("components", items(101, `"V"`))), http.StatusUnprocessableEntity, "body.spells.0.components too_long"},
		{"200 characters in an item", withField("equipment", `{"items":[`+str(200)+`]}`), http.StatusCreated, ""},
		{"201 characters in an item", withField("equipment", `{"items":[`+str(201)+`]}`), http.StatusUnprocessableEntity, "body.equipment.items.0 string_too_long"},
		{"200 characters in weapon", withField("equipment", `{"weapon":`+str(200)+`}`), http.StatusCreated, ""},
		{"201 characters in weapon", withField("equipment", `{"weapon":`+str(201)+`}`), http.StatusUnprocessableEntity, "body.equipment.weapon string_too_long"},
		{"200 characters in armor", withField("equipment", `{"armor":`+str(200)+`}`), http.StatusCreated, ""},
		{"201 characters in armor", withField("equipment", `{"armor":`+str(201)+`}`), http.StatusUnprocessableEntity, "body.equipment.armor string_too_long"},
		{"200 characters in a component", withField("spells", spellWith("components", "["+str(200)+"]")), http.StatusCreated, ""},
		{"201 characters in a component", withField("spells", spellWith("components", "["+str(201)+"]")), http.StatusUnprocessableEntity, "body.spells.0.components.0 string_too_long"},
		{"200 astral characters count as 200", withField("name", `"`+strings.Repeat("😀", 200)+`"`), http.StatusCreated, ""},
	}
	for _, f := range []string{"name", "race", "class_", "background", "alignment", "personality_traits", "ideals", "bonds", "flaws"} {
		tests = append(tests,
			limit{"200 characters in " + f, withField(f, str(200)), http.StatusCreated, ""},
			limit{"201 characters in " + f, withField(f, str(201)), http.StatusUnprocessableEntity, "body." + f + " string_too_long"})
	}
	for _, f := range []string{"name", "casting_time", "range", "duration"} {
		tests = append(tests,
			limit{"200 characters in spell " + f, withField("spells", spellWith(f, str(200))), http.StatusCreated, ""},
			limit{"201 characters in spell " + f, withField("spells", spellWith(f, str(201))), http.StatusUnprocessableEntity, "body.spells.0." + f + " string_too_long"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := do(heroMux(newMemoryStore()), http.MethodPost, "/api/heroes/", tc.body)
			if w.Code != tc.wantStatus {
				t.Fatalf("POST of %d bytes = %d %.200s; want %d", len(tc.body), w.Code, w.Body, tc.wantStatus)
			}
			if tc.want != "" {
				if got := problems(t, w); len(got) != 1 || locString(got[0].Loc)+" "+got[0].Type != tc.want {
					t.Errorf("problems = %+v; want one %q", got, tc.want)
				}
			}
		})
	}
}

// TestHeroFieldBounds checks every range bound of every integer field at
// both edges (issue 5): level 1–20, each ability score 1–30, spell level
// 0–9, hit points, armor class and speed from 0.
func TestHeroFieldBounds(t *testing.T) {
	abilities := func(name, raw string) string {
		m := map[string]json.RawMessage{}
		for _, a := range abilityNames {
			m[a] = json.RawMessage("10")
		}
		m[name] = json.RawMessage(raw)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	spellLevel := func(raw string) string {
		return `[{"name":"S","level":` + raw + `,"casting_time":"a","range":"b","components":[],"duration":"c"}]`
	}
	type bound struct {
		name, body string
		want       string // "" accepted, else "loc type"
	}
	tests := []bound{
		{"level 1", withField("level", "1"), ""},
		{"level 20", withField("level", "20"), ""},
		{"level 0", withField("level", "0"), "body.level greater_than_equal"},
		{"level 21", withField("level", "21"), "body.level less_than_equal"},
		{"spell level 0", withField("spells", spellLevel("0")), ""},
		{"spell level 9", withField("spells", spellLevel("9")), ""},
		{"spell level -1", withField("spells", spellLevel("-1")), "body.spells.0.level greater_than_equal"},
		{"spell level 10", withField("spells", spellLevel("10")), "body.spells.0.level less_than_equal"},
	}
	for _, a := range abilityNames {
		tests = append(tests,
			bound{a + " 1", withField("ability_scores", abilities(a, "1")), ""},
			bound{a + " 30", withField("ability_scores", abilities(a, "30")), ""},
			bound{a + " 0", withField("ability_scores", abilities(a, "0")), "body.ability_scores." + a + " greater_than_equal"},
			bound{a + " 31", withField("ability_scores", abilities(a, "31")), "body.ability_scores." + a + " less_than_equal"})
	}
	for _, f := range []string{"hit_points", "armor_class", "speed"} {
		tests = append(tests,
			bound{f + " 0", withField(f, "0"), ""},
			bound{f + " -1", withField(f, "-1"), "body." + f + " greater_than_equal"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := do(heroMux(newMemoryStore()), http.MethodPost, "/api/heroes/", tc.body)
			if tc.want == "" {
				if w.Code != http.StatusCreated {
					t.Fatalf("POST = %d %.300s; want 201", w.Code, w.Body)
				}
				return
			}
			if got := problems(t, w); len(got) != 1 || locString(got[0].Loc)+" "+got[0].Type != tc.want {
				t.Errorf("problems = %+v; want one %q", got, tc.want)
			}
		})
	}
}

// TestNewHeroIDIsUUIDv4 checks new ids are random UUIDs of version 4 and
// variant 10 (RFC 9562 §4.1, §5.4), lowercase, and different each time.
func TestNewHeroIDIsUUIDv4(t *testing.T) {
	pattern := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newHeroID()
		if !pattern.MatchString(id) {
			t.Fatalf("newHeroID() = %q; want a lowercase UUIDv4 (version nibble 4, variant 8, 9, a or b)", id)
		}
		if seen[id] {
			t.Fatalf("newHeroID() repeated %q", id)
		}
		seen[id] = true
	}
}

// flakyStore is a memory store whose Ready fails while down is set.
type flakyStore struct {
	*localStore
	down *atomic.Bool
}

// Ready fails with errStoreUnavailable while s.down is set.
func (s flakyStore) Ready(ctx context.Context) error {
	if s.down.Load() {
		return fmt.Errorf("%w: test store is down", errStoreUnavailable)
	}
	return s.localStore.Ready(ctx)
}

// TestReadyzFollowsStore checks /readyz through newServer: 503 with
// Retry-After naming the store while the store cannot be reached, 200 once
// it answers again (the signing keys are loaded first, so only the store
// decides).
func TestReadyzFollowsStore(t *testing.T) {
	var down atomic.Bool
	h := newServerWithKeys(t, flakyStore{newMemoryStore(), &down})
	tests := []struct {
		name      string
		down      bool
		want      int
		wantRetry bool
	}{
		{"store unreachable is not ready", true, http.StatusServiceUnavailable, true},
		{"store answering again is ready", false, http.StatusOK, false},
		{"store unreachable again is not ready", true, http.StatusServiceUnavailable, true},
	}
	for _, tc := range tests {
		down.Store(tc.down)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if w.Code != tc.want || (w.Header().Get("Retry-After") != "") != tc.wantRetry {
			t.Errorf("%s: /readyz = %d (Retry-After %q) %s; want %d", tc.name, w.Code, w.Header().Get("Retry-After"), w.Body, tc.want)
		}
		if tc.down && !strings.Contains(w.Body.String(), `"store":"unavailable"`) {
			t.Errorf("%s: /readyz body %s does not name the store", tc.name, w.Body)
		}
	}
}

// TestValidationInputEcho: every 422 item carries pydantic's input member,
// the offending value as sent: whole when short, cut past maxInputEcho
// bytes of JSON (a string to maxStringRunes characters) with "…", so a
// huge body never makes a huge answer.
func TestValidationInputEcho(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", maxStringRunes+50)
	escaped := `"` + strings.Repeat(`\u00e9`, maxStringRunes+5) + `"`
	bigList := "[" + strings.Repeat(`"x",`, maxListItems+20) + `"x"]`
	tests := []struct {
		name, raw, want string
	}{
		{"number", "25", "25"},
		{"short string with an escape", `"t\u00e9n"`, `"t\u00e9n"`},
		{"object, compacted", `{"a": [1, 2]}`, `{"a":[1,2]}`},
		{"long string: 200 characters and …", `"` + long + `"`, mustJSON(t, strings.Repeat("é", maxStringRunes)+"…")},
		{"long escaped string", escaped, mustJSON(t, strings.Repeat("é", maxStringRunes)+"…")},
		{"long JSON text of a short string is whole", `"` + strings.Repeat(`\u00e9`, 100) + `"`, mustJSON(t, strings.Repeat("é", 100))},
		{"long list: its first bytes as a string", bigList, mustJSON(t, bigList[:maxInputEcho]+"…")},
		{"cut at a character boundary", "[" + strings.Repeat(`"é",`, 80) + `"é"]`, ""},
		{"none", "", "null"},
	}
	for _, tc := range tests {
		var raw []byte
		if tc.raw != "" {
			raw = []byte(tc.raw)
		}
		got, err := json.Marshal(echoInput(raw))
		if err != nil || !json.Valid(got) || !utf8.Valid(got) {
			t.Errorf("%s: echoInput gave %s (%v); want valid JSON", tc.name, got, err)
			continue
		}
		if len(got) > 3*maxInputEcho {
			t.Errorf("%s: echoInput gave %d bytes; want it bounded", tc.name, len(got))
		}
		if tc.want != "" && string(got) != tc.want {
			t.Errorf("%s: echoInput = %s; want %s", tc.name, got, tc.want)
		}
	}

	// Through the API: a missing member's input is the object it is missing
	// from; an unknown member's is its value; a bad query value's is the
	// string sent.
	h := heroMux(newMemoryStore())
	w := do(h, "POST", "/api/heroes/", `{"name":"x","hat":"red"}`)
	for _, want := range []string{
		`{"loc":["body","hat"],"msg":"Extra inputs are not permitted","type":"extra_forbidden","input":"red"}`,
		`{"loc":["body","race"],"msg":"Field required","type":"missing","input":{"name":"x","hat":"red"}}`,
	} {
		if w.Code != 422 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("POST = %d %s; want 422 with %s", w.Code, w.Body, want)
		}
	}
	if w := do(h, "GET", "/api/heroes/?limit=many", ""); w.Code != 422 || !strings.Contains(w.Body.String(), `"type":"int_parsing","input":"many"`) {
		t.Errorf("GET ?limit=many = %d %s; want 422 with the input", w.Code, w.Body)
	}
	if w := do(h, "POST", "/api/heroes/", ""); w.Code != 422 || !strings.Contains(w.Body.String(), `"type":"missing","input":null`) {
		t.Errorf("POST without a body = %d %s; want 422 missing with input null", w.Code, w.Body)
	}
}

// mustJSON is the JSON encoding of v.
func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// FuzzEchoInput: for any JSON value checkJSON accepts, the echoed input is
// valid JSON, valid UTF-8 and bounded, however long the value.
func FuzzEchoInput(f *testing.F) {
	for _, s := range []string{`"a"`, `"\u00e9\ud83d\ude00"`, `[1,{"a":null}]`, `"` + strings.Repeat(`\n`, 300) + `"`, `"` + strings.Repeat("é", 300) + `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := bytes.TrimSpace([]byte(s))
		if len(v) == 0 || checkJSON(v) != nil {
			return
		}
		got, err := json.Marshal(echoInput(v))
		if err != nil || !utf8.Valid(got) || len(got) > 12*maxStringRunes+16 {
			t.Fatalf("echoInput(%q) = %q, %v; want bounded valid JSON", s, got, err)
		}
	})
}
