package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// hero is one hero of the API, wire-compatible with the original FastAPI
// service: the same JSON names, class written as "class_", and optional
// fields written as null when absent. ID is a server-assigned UUIDv4
// (RFC 9562 §5.4). Requests are read by decodeHero, which validates; stored
// heroes are read back with encoding/json. A hero value is not safe for
// concurrent mutation; stores hand out copies.
type hero struct {
	ID                 string             `json:"id"`
	Name               string             `json:"name"`
	Race               string             `json:"race"`
	Class              string             `json:"class_"`
	Level              int                `json:"level"`
	Background         *string            `json:"background"`
	Alignment          *string            `json:"alignment"`
	AbilityScores      abilityScores      `json:"ability_scores"`
	SkillProficiencies skillProficiencies `json:"skill_proficiencies"`
	Equipment          equipment          `json:"equipment"`
	Spells             []spell            `json:"spells"` // nil (null) when the hero knows none
	HitPoints          int                `json:"hit_points"`
	ArmorClass         int                `json:"armor_class"`
	Speed              int                `json:"speed"`
	PersonalityTraits  *string            `json:"personality_traits"`
	Ideals             *string            `json:"ideals"`
	Bonds              *string            `json:"bonds"`
	Flaws              *string            `json:"flaws"`
}

// abilityScores are the six D&D ability scores, each 1 to 30.
type abilityScores struct {
	Strength     int `json:"strength"`
	Dexterity    int `json:"dexterity"`
	Constitution int `json:"constitution"`
	Intelligence int `json:"intelligence"`
	Wisdom       int `json:"wisdom"`
	Charisma     int `json:"charisma"`
}

// skillProficiencies are the 18 D&D skills; each defaults to false.
type skillProficiencies struct {
	Acrobatics     bool `json:"acrobatics"`
	AnimalHandling bool `json:"animal_handling"`
	Arcana         bool `json:"arcana"`
	Athletics      bool `json:"athletics"`
	Deception      bool `json:"deception"`
	History        bool `json:"history"`
	Insight        bool `json:"insight"`
	Intimidation   bool `json:"intimidation"`
	Investigation  bool `json:"investigation"`
	Medicine       bool `json:"medicine"`
	Nature         bool `json:"nature"`
	Perception     bool `json:"perception"`
	Performance    bool `json:"performance"`
	Persuasion     bool `json:"persuasion"`
	Religion       bool `json:"religion"`
	SleightOfHand  bool `json:"sleight_of_hand"`
	Stealth        bool `json:"stealth"`
	Survival       bool `json:"survival"`
}

// equipment is what a hero carries. Items is never nil once validated, so it
// is written as [] rather than null.
type equipment struct {
	Weapon *string  `json:"weapon"`
	Armor  *string  `json:"armor"`
	Items  []string `json:"items"`
}

// spell is one spell a hero knows. Level is 0 (a cantrip) to 9.
type spell struct {
	Name        string   `json:"name"`
	Level       int      `json:"level"`
	CastingTime string   `json:"casting_time"`
	Range       string   `json:"range"`
	Components  []string `json:"components"`
	Duration    string   `json:"duration"`
}

// newHeroID returns a random UUID version 4 (RFC 9562 §5.4) in its lowercase
// 8-4-4-4-12 form, from crypto/rand.
func newHeroID() string {
	var b [16]byte
	rand.Read(b[:])         // never fails (crypto/rand documents it)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10 (RFC 9562 §4.1)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// heroStore keeps heroes. Implementations are safe for concurrent use.
// List returns heroes ordered by id. Get, Replace and Delete return
// errHeroNotFound for an unknown id. etag is an opaque version string of the
// stored hero; Replace and Delete with a non-empty ifMatch fail with
// errHeroConflict when the stored version differs. Any failure to reach the
// backing store wraps errStoreUnavailable (maps to 503).
//
// More precisely, for every implementation:
//   - etag is an HTTP entity-tag (RFC 9110 §8.8.3), quotes included (`"…"` or
//     `W/"…"`), so handlers send it in ETag unchanged and pass the request's
//     If-Match to Replace and Delete unchanged; ifMatch "*" matches any
//     stored version, and a change always gives a new etag;
//   - List skips offset heroes and returns at most limit, never nil;
//   - Create fails with errHeroConflict when h.ID is already stored;
//   - Replace and Delete of an unknown id give errHeroNotFound whatever
//     ifMatch holds;
//   - a hero the store cannot hold gives errHeroTooLarge (maps to 422).
type heroStore interface {
	List(ctx context.Context, offset, limit int) ([]hero, error)
	Get(ctx context.Context, id string) (h hero, etag string, err error)
	Create(ctx context.Context, h hero) (etag string, err error)
	Replace(ctx context.Context, h hero, ifMatch string) (etag string, err error)
	Delete(ctx context.Context, id string, ifMatch string) error
	Ready(ctx context.Context) error
	Close() error
}

var (
	errHeroNotFound     = errors.New("heroes: hero not found")
	errHeroConflict     = errors.New("heroes: hero was changed by someone else")
	errHeroTooLarge     = errors.New("heroes: hero is too large for the store")
	errStoreUnavailable = errors.New("heroes: store unavailable")
)

// openStore opens the store cfg.HeroesStore selects: "memory" (empty, lost
// at exit), "file" (cfg.HeroesFile, see openFileStore) or "azuretable"
// (openTableStore). Errors name the store and, for the file store, the file.
func openStore(ctx context.Context, cfg config, client *http.Client, logger *slog.Logger) (heroStore, error) {
	switch cfg.HeroesStore {
	case "memory", "":
		logger.Info("heroes: in-memory store; heroes are lost at exit")
		return newMemoryStore(), nil
	case "file":
		s, err := openFileStore(cfg.HeroesFile)
		if err != nil {
			return nil, err
		}
		logger.Info("heroes: file store", "file", cfg.HeroesFile, "heroes", s.count())
		return s, nil
	case "azuretable":
		return openTableStore(ctx, cfg, client, logger)
	default:
		return nil, fmt.Errorf("heroes: unknown store %q", cfg.HeroesStore)
	}
}

// storedHero is one hero as a local store keeps it: its JSON (so no caller
// can reach into stored slices) and its entity-tag. It is also the record
// format of the heroes file.
type storedHero struct {
	ID   string          `json:"id"`
	ETag string          `json:"etag"`
	Hero json.RawMessage `json:"hero"`
}

// heroSet holds a local store's heroes by id and the ids in ascending
// order. It is not safe for concurrent use; localStore guards it.
type heroSet struct {
	byID map[string]storedHero
	ids  []string // sorted ascending
}

// newHeroSet returns an empty set.
func newHeroSet() *heroSet { return &heroSet{byID: map[string]storedHero{}} }

// put stores sh under sh.ID, adding the id in order when it is new.
func (s *heroSet) put(sh storedHero) {
	if i, found := slices.BinarySearch(s.ids, sh.ID); !found {
		s.ids = slices.Insert(s.ids, i, sh.ID)
	}
	s.byID[sh.ID] = sh
}

// remove deletes id, if present.
func (s *heroSet) remove(id string) {
	if i, found := slices.BinarySearch(s.ids, id); found {
		s.ids = slices.Delete(s.ids, i, i+1)
	}
	delete(s.byID, id)
}

// recordsWith returns the records of s, ordered by id, as they are after
// setting id to sh (nil removes it); s itself is not changed.
func (s *heroSet) recordsWith(id string, sh *storedHero) []storedHero {
	out := make([]storedHero, 0, len(s.ids)+1)
	for _, k := range s.ids {
		if k != id {
			out = append(out, s.byID[k])
		}
	}
	if sh != nil {
		out = append(out, *sh)
	}
	slices.SortFunc(out, func(a, b storedHero) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// localStore is the memory store, and with a path the file store: heroes in
// a heroSet, every change written to the file (when there is one) before it
// is visible or acknowledged. Safe for concurrent use.
type localStore struct {
	path string   // "" for the memory store
	lock *os.File // holds the file's single-writer lock; nil for memory

	// writeMu is the single writer lock: it serializes changes, so each
	// write of the file holds every change acknowledged before it, while
	// readers go on reading under mu until the change is applied.
	writeMu sync.Mutex

	mu     sync.RWMutex // guards the fields below
	set    *heroSet
	closed bool
}

// newMemoryStore returns an empty store that lives in memory only.
func newMemoryStore() *localStore { return &localStore{set: newHeroSet()} }

// maxHeroesFile bounds the heroes file read at start (256 MiB).
const maxHeroesFile = 256 << 20

// heroesFile is the JSON document of the file store.
type heroesFile struct {
	Version int          `json:"version"` // 1
	Heroes  []storedHero `json:"heroes"`  // ordered by id
}

// openFileStore opens the file store at path. A missing file gives an empty
// store (the file is created on the first change); a file that cannot be
// read or parsed is an error naming it, and is left untouched. Every change
// is then written durably before it is acknowledged: a temporary file in the
// same folder, fsync, rename over path, fsync of the folder, so a crash at
// any point leaves either the old or the new file, never a torn one. Each
// change rewrites the whole file, which suits the hundreds or few thousand
// heroes of one machine; several replicas share the azuretable store. The
// file is owned by one store at a time (lockHeroesFile).
func openFileStore(path string) (*localStore, error) {
	lock, err := lockHeroesFile(path)
	if err != nil {
		return nil, err
	}
	set, err := readHeroesFile(path)
	if err != nil {
		if lock != nil {
			lock.Close() // releases the lock; start-up fails anyway
		}
		return nil, err
	}
	s := newMemoryStore()
	s.path, s.lock, s.set = path, lock, set
	return s, nil
}

// readHeroesFile loads the file store's file: an empty set when it does not
// exist, an error naming it when it cannot be read or parsed.
func readHeroesFile(path string) (*heroSet, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return newHeroSet(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("heroes: reading %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHeroesFile+1))
	if err != nil {
		return nil, fmt.Errorf("heroes: reading %s: %w", path, err)
	}
	if len(data) > maxHeroesFile {
		return nil, fmt.Errorf("heroes: reading %s: larger than %d bytes", path, maxHeroesFile)
	}
	set, err := parseHeroesFile(data)
	if err != nil {
		return nil, fmt.Errorf("heroes: %s is corrupt (fix or move it; it was not changed): %w", path, err)
	}
	return set, nil
}

// parseHeroesFile parses the file store's document and checks each record:
// version 1, a UUID id matching the hero's own, a non-empty etag, no
// duplicate id, and a hero that decodes.
func parseHeroesFile(data []byte) (*heroSet, error) {
	var doc heroesFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON document")
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("version %d is not 1", doc.Version)
	}
	set := newHeroSet()
	for i, sh := range doc.Heroes {
		var h hero
		if err := json.Unmarshal(sh.Hero, &h); err != nil {
			return nil, fmt.Errorf("hero %d: %w", i, err)
		}
		if !isGUID(sh.ID) || h.ID != sh.ID || sh.ETag == "" {
			return nil, fmt.Errorf("hero %d: bad id or etag", i)
		}
		if _, dup := set.byID[sh.ID]; dup {
			return nil, fmt.Errorf("hero %d: duplicate id %s", i, sh.ID)
		}
		set.put(sh)
	}
	return set, nil
}

// read runs f on the set under the read lock, or fails with
// errStoreUnavailable after Close.
func (s *localStore) read(f func(set *heroSet) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("%w: closed", errStoreUnavailable)
	}
	return f(s.set)
}

// count is the number of heroes stored.
func (s *localStore) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.set.ids)
}

// List returns up to limit heroes after skipping offset, ordered by id.
func (s *localStore) List(ctx context.Context, offset, limit int) ([]hero, error) {
	out := []hero{}
	err := s.read(func(set *heroSet) error {
		if offset < 0 || offset >= len(set.ids) || limit <= 0 {
			return nil
		}
		ids := set.ids[offset:]
		for _, id := range ids[:min(limit, len(ids))] {
			var h hero
			if err := json.Unmarshal(set.byID[id].Hero, &h); err != nil {
				return fmt.Errorf("heroes: stored hero %s: %w", id, err)
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Get returns the hero with id and its entity-tag.
func (s *localStore) Get(ctx context.Context, id string) (hero, string, error) {
	var sh storedHero
	err := s.read(func(set *heroSet) error {
		var ok bool
		if sh, ok = set.byID[id]; !ok {
			return errHeroNotFound
		}
		return nil
	})
	if err != nil {
		return hero{}, "", err
	}
	var h hero
	if err := json.Unmarshal(sh.Hero, &h); err != nil {
		return hero{}, "", fmt.Errorf("heroes: stored hero %s: %w", id, err)
	}
	return h, sh.ETag, nil
}

// Create stores a new hero under h.ID.
func (s *localStore) Create(ctx context.Context, h hero) (string, error) {
	return s.change(h.ID, &h, func(_ storedHero, exists bool) error {
		if exists {
			return fmt.Errorf("%w: id %s already exists", errHeroConflict, h.ID)
		}
		return nil
	})
}

// Replace stores h over the hero with the same id, if ifMatch allows.
func (s *localStore) Replace(ctx context.Context, h hero, ifMatch string) (string, error) {
	return s.change(h.ID, &h, existingMatching(ifMatch))
}

// Delete removes the hero with id, if ifMatch allows.
func (s *localStore) Delete(ctx context.Context, id string, ifMatch string) error {
	_, err := s.change(id, nil, existingMatching(ifMatch))
	return err
}

// existingMatching is the precondition of Replace and Delete: the hero
// exists, and ifMatch is empty, "*" or its entity-tag (RFC 9110 §13.1.1,
// compared as opaque strings).
func existingMatching(ifMatch string) func(old storedHero, exists bool) error {
	return func(old storedHero, exists bool) error {
		if !exists {
			return errHeroNotFound
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != old.ETag {
			return fmt.Errorf("%w: If-Match %s, stored %s", errHeroConflict, ifMatch, old.ETag)
		}
		return nil
	}
}

// change applies one change under the writer lock: h stores (nil deletes)
// the hero with id, if check passes on the stored version. With a file the
// whole new content is written durably first, so a failed write changes
// nothing and an acknowledged change survives a crash.
func (s *localStore) change(id string, h *hero, check func(old storedHero, exists bool) error) (string, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// Only writers change the set and this one holds writeMu, so reading it
	// under the read lock and changing it later under the write lock is safe.
	var records []storedHero
	var sh *storedHero
	err := s.read(func(set *heroSet) error {
		old, exists := set.byID[id]
		if err := check(old, exists); err != nil {
			return err
		}
		if h != nil {
			data, err := json.Marshal(h)
			if err != nil {
				return fmt.Errorf("heroes: encoding hero %s: %w", id, err)
			}
			sh = &storedHero{ID: id, ETag: newETag(), Hero: data}
		}
		if s.path != "" {
			records = set.recordsWith(id, sh)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if s.path != "" {
		if err := writeHeroesFile(s.path, records); err != nil {
			return "", fmt.Errorf("%w: %w", errStoreUnavailable, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh == nil {
		s.set.remove(id)
		return "", nil
	}
	s.set.put(*sh)
	return sh.ETag, nil
}

// newETag returns a fresh strong entity-tag (RFC 9110 §8.8.3): a random
// 26-character base32 string in quotes, unique across restarts without any
// counter to persist.
func newETag() string { return `"` + rand.Text() + `"` }

// writeHeroesFile writes the records to path durably: a temporary file in the same
// folder (so the rename stays on one file system), fsync, rename over path,
// then fsync of the folder so the rename itself survives a crash.
func writeHeroesFile(path string, records []storedHero) (err error) {
	data, err := json.Marshal(heroesFile{Version: 1, Heroes: records})
	if err != nil {
		return fmt.Errorf("heroes: encoding %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("heroes: writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()           // already failed; the close error adds nothing
			os.Remove(tmp.Name()) // best effort: a stray temp file is harmless
		}
	}()
	if _, err = tmp.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("heroes: writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("heroes: syncing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("heroes: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("heroes: replacing %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir fsyncs a folder so a rename in it is durable. Windows cannot open
// a folder for syncing (and makes renames durable itself), so it is skipped
// there.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("heroes: syncing folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("heroes: syncing folder %s: %w", dir, err)
	}
	return nil
}

// Ready reports nil while the store is open.
func (s *localStore) Ready(ctx context.Context) error {
	return s.read(func(*heroSet) error { return nil })
}

// Close marks the store closed and releases the file's lock; it waits for a
// change in progress to finish writing. Every change was already written,
// so there is nothing to flush. Closing twice is harmless.
func (s *localStore) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.lock != nil {
		return s.lock.Close() // releases the flock
	}
	return nil
}

// Limits of a hero request (issue 5). Sizes are bytes, lengths are Unicode
// characters (runes) or list items.
const (
	maxBodyBytes   = 1 << 20       // 1 MiB request body, else 413
	maxJSONDepth   = 32            // nesting of objects and arrays; a hero needs 4
	maxStringRunes = 200           // every string field
	maxListItems   = 100           // every list field
	maxProblems    = 100           // validation problems reported in one 422
	maxIntValue    = math.MaxInt32 // upper bound of open-ended integers (hit points, offset…), portable to 32-bit int

	// maxSafeInt is the largest integer a JSON number carries exactly to a
	// JavaScript client (2^53-1); larger ones are refused as unparseable.
	maxSafeInt int64 = 1<<53 - 1
)

// fieldError is one validation problem in FastAPI's (pydantic v2's) 422
// shape: where (loc, starting with "body" or "query"), a sentence (msg), a
// machine name (type, pydantic's names such as "missing", "int_type",
// "extra_forbidden", "json_invalid") and the rule's parameters (ctx). The
// offending input is not echoed back.
type fieldError struct {
	Loc  []any          `json:"loc"`
	Msg  string         `json:"msg"`
	Type string         `json:"type"`
	Ctx  map[string]any `json:"ctx,omitempty"`
}

// validationError is a request that parsed but broke rules: a 422 listing
// every problem (at most maxProblems).
type validationError []fieldError

func (e validationError) Error() string {
	return fmt.Sprintf("heroes: %d validation problems", len(e))
}

// requestError is a request refused before validation, with its status:
// 413 (body too large) or 415 (not JSON).
type requestError struct {
	status int
	detail string
}

func (e *requestError) Error() string { return "heroes: " + strings.ToLower(e.detail) }

// decodeHero reads a hero from a JSON request body: Content-Type must be
// application/json (charset utf-8 allowed), the body at most maxBodyBytes,
// exactly one JSON value nested at most maxJSONDepth deep, then validated by
// validateHero. Errors are *requestError (413, 415) or validationError (422);
// writeDecodeError answers either.
func decodeHero(w http.ResponseWriter, r *http.Request) (hero, error) {
	if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return hero{}, err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return hero{}, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body is larger than %d bytes", maxBodyBytes)}
	}
	if err != nil {
		return hero{}, validationError{{Loc: []any{"body"}, Msg: "Could not read the request body", Type: "body_read"}}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return hero{}, validationError{{Loc: []any{"body"}, Msg: "Field required", Type: "missing"}}
	}
	v, err := parseJSON(data)
	if err != nil {
		return hero{}, validationError{err.(*jsonSyntaxError).problem()}
	}
	h, problems := validateHero(v)
	if len(problems) > 0 {
		return hero{}, validationError(problems)
	}
	return h, nil
}

// checkJSONContentType accepts application/json with no parameter or a
// utf-8 charset (RFC 8259 §8.1: JSON is UTF-8); anything else is a 415.
func checkJSONContentType(ct string) error {
	bad := &requestError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return bad
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return bad
		}
	}
	return nil
}

// writeDecodeError answers a decodeHero (or query) error: its status with
// {"detail": "..."} for a *requestError, 422 {"detail": [problems]} for a
// validationError.
func writeDecodeError(w http.ResponseWriter, err error) {
	var re *requestError
	if errors.As(err, &re) {
		writeError(w, re.status, re.detail)
		return
	}
	var ve validationError
	if errors.As(err, &ve) {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Detail: []fieldError(ve)})
		return
	}
	writeError(w, http.StatusBadRequest, "Bad request")
}

// jsonSyntaxError is malformed JSON: what broke and where (a byte offset
// from 0, and a line and column from 1).
type jsonSyntaxError struct {
	offset       int64
	line, column int
	msg          string
}

func (e *jsonSyntaxError) Error() string {
	return fmt.Sprintf("heroes: json: %s at line %d, column %d", e.msg, e.line, e.column)
}

// problem is the error in FastAPI's json_invalid shape: loc ["body", offset].
func (e *jsonSyntaxError) problem() fieldError {
	return fieldError{
		Loc:  []any{"body", e.offset},
		Msg:  "JSON decode error",
		Type: "json_invalid",
		Ctx:  map[string]any{"error": fmt.Sprintf("%s (line %d, column %d)", e.msg, e.line, e.column), "line": e.line, "column": e.column},
	}
}

// newJSONSyntaxError locates offset in data.
func newJSONSyntaxError(data []byte, offset int64, msg string) *jsonSyntaxError {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line := bytes.Count(before, []byte{'\n'}) + 1
	column := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return &jsonSyntaxError{offset: offset, line: line, column: column, msg: msg}
}

// parseJSON parses exactly one JSON value (RFC 8259) into map[string]any,
// []any, string, json.Number, bool or nil, refusing nesting deeper than
// maxJSONDepth before building it and any data after the value. A repeated
// object key keeps its last value, as FastAPI does. Errors are
// *jsonSyntaxError.
func parseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseJSONValue(dec, 0)
	if err != nil {
		var se *json.SyntaxError
		var de *jsonSyntaxError
		switch {
		case errors.As(err, &de):
			return nil, newJSONSyntaxError(data, de.offset, de.msg)
		case errors.As(err, &se):
			return nil, newJSONSyntaxError(data, se.Offset, se.Error())
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, newJSONSyntaxError(data, int64(len(data)), "unexpected end of JSON input")
		default:
			return nil, newJSONSyntaxError(data, dec.InputOffset(), err.Error())
		}
	}
	end := dec.InputOffset()
	rest := bytes.TrimLeft(data[end:], " \t\r\n")
	if len(rest) > 0 {
		return nil, newJSONSyntaxError(data, int64(len(data)-len(rest)), "data after the JSON value")
	}
	return v, nil
}

// parseJSONValue reads one value from dec's token stream at the given depth.
func parseJSONValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= maxJSONDepth {
		return nil, &jsonSyntaxError{offset: dec.InputOffset() - 1, msg: fmt.Sprintf("nesting deeper than %d levels", maxJSONDepth)}
	}
	switch d {
	case '{':
		m := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok {
				return nil, &jsonSyntaxError{offset: dec.InputOffset(), msg: "object key is not a string"} // Token already refuses this
			}
			if m[k], err = parseJSONValue(dec, depth+1); err != nil {
				return nil, err
			}
		}
		_, err := dec.Token() // the closing '}'
		return m, err
	case '[':
		a := []any{}
		for dec.More() {
			v, err := parseJSONValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token() // the closing ']'
		return a, err
	}
	return nil, fmt.Errorf("unexpected %q", d)
}

// checker collects validation problems, up to maxProblems (the rest are
// dropped so a hostile body cannot make a huge answer).
type checker struct {
	problems []fieldError
}

// add records a problem at loc.
func (c *checker) add(loc []any, typ, msg string, ctx map[string]any) {
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, fieldError{Loc: loc, Msg: msg, Type: typ, Ctx: ctx})
	}
}

// at returns loc extended by one step, never sharing loc's array.
func at(loc []any, step any) []any { return append(slices.Clip(loc), step) }

// object checks that v is a JSON object holding only the allowed keys
// (pydantic's extra="forbid"), reporting each unknown key in sorted order.
func (c *checker) object(loc []any, v any, allowed ...string) fields {
	m, ok := v.(map[string]any)
	if !ok {
		c.add(loc, "model_attributes_type", "Input should be a valid dictionary or object to extract fields from", nil)
		return fields{c: c, loc: loc}
	}
	var extra []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		c.add(at(loc, k), "extra_forbidden", "Extra inputs are not permitted", nil)
	}
	return fields{c: c, loc: loc, m: m}
}

// fields reads the members of one JSON object; m is nil when the value was
// not an object (its problem is already recorded, so members are not).
type fields struct {
	c   *checker
	loc []any
	m   map[string]any
}

// get returns the member key. A missing member is reported when required;
// null counts as present (the type check decides).
func (f fields) get(key string, required bool) (any, []any, bool) {
	if f.m == nil {
		return nil, nil, false
	}
	v, ok := f.m[key]
	if !ok {
		if required {
			f.c.add(at(f.loc, key), "missing", "Field required", nil)
		}
		return nil, nil, false
	}
	return v, at(f.loc, key), true
}

// str reads a required string member.
func (f fields) str(key string) string {
	v, loc, ok := f.get(key, true)
	if !ok {
		return ""
	}
	s, _ := f.c.stringValue(loc, v)
	return s
}

// optStr reads an optional string member; absent or null gives nil.
func (f fields) optStr(key string) *string {
	v, loc, ok := f.get(key, false)
	if !ok || v == nil {
		return nil
	}
	s, ok := f.c.stringValue(loc, v)
	if !ok {
		return nil
	}
	return &s
}

// integer reads a required integer member between lo and hi inclusive.
func (f fields) integer(key string, lo, hi int) int {
	v, loc, ok := f.get(key, true)
	if !ok {
		return 0
	}
	n, _ := f.c.intValue(loc, v, lo, hi)
	return n
}

// flag reads an optional boolean member; absent gives false.
func (f fields) flag(key string) bool {
	v, loc, ok := f.get(key, false)
	if !ok {
		return false
	}
	b, isBool := v.(bool)
	if !isBool {
		f.c.add(loc, "bool_type", "Input should be a valid boolean", nil)
	}
	return b
}

// list reads a list member of at most maxListItems items, calling item for
// each. A missing optional list gives ok false; null is accepted only when
// nullable.
func (f fields) list(key string, required, nullable bool, item func(loc []any, v any)) (n int, present bool) {
	v, loc, ok := f.get(key, required)
	if !ok || (v == nil && nullable) {
		return 0, false
	}
	a, isList := v.([]any)
	if !isList {
		f.c.add(loc, "list_type", "Input should be a valid list", nil)
		return 0, false
	}
	if len(a) > maxListItems {
		f.c.add(loc, "too_long", fmt.Sprintf("List should have at most %d items after validation, not %d", maxListItems, len(a)),
			map[string]any{"field_type": "List", "max_length": maxListItems, "actual_length": len(a)})
		return 0, false
	}
	for i, x := range a {
		item(at(loc, i), x)
	}
	return len(a), true
}

// strList reads a list of strings; a missing optional list gives [].
func (f fields) strList(key string, required bool) []string {
	out := []string{}
	f.list(key, required, false, func(loc []any, v any) {
		s, _ := f.c.stringValue(loc, v)
		out = append(out, s)
	})
	return out
}

// stringValue checks v is a string of at most maxStringRunes characters.
func (c *checker) stringValue(loc []any, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		c.add(loc, "string_type", "Input should be a valid string", nil)
		return "", false
	}
	if n := utf8.RuneCountInString(s); n > maxStringRunes {
		c.add(loc, "string_too_long", fmt.Sprintf("String should have at most %d characters", maxStringRunes), map[string]any{"max_length": maxStringRunes})
		return "", false
	}
	return s, true
}

// intValue checks v is an integer between lo and hi inclusive. A number
// with a fraction is refused (3.0 and 1e2 are integers, as in pydantic's
// lax mode); so is one beyond ±(2^53-1), which JavaScript clients could not
// hold exactly.
func (c *checker) intValue(loc []any, v any, lo, hi int) (int, bool) {
	num, ok := v.(json.Number)
	if !ok {
		c.add(loc, "int_type", "Input should be a valid integer", nil)
		return 0, false
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(num), 64)
		switch {
		case ferr == nil && f != math.Trunc(f):
			c.add(loc, "int_from_float", "Input should be a valid integer, got a number with a fractional part", nil)
			return 0, false
		case ferr != nil || math.Abs(f) > float64(maxSafeInt):
			c.add(loc, "int_parsing_size", fmt.Sprintf("Input integer should be between -%d and %d", maxSafeInt, maxSafeInt), nil)
			return 0, false
		}
		n = int64(f)
	}
	if n > maxSafeInt || n < -maxSafeInt {
		c.add(loc, "int_parsing_size", fmt.Sprintf("Input integer should be between -%d and %d", maxSafeInt, maxSafeInt), nil)
		return 0, false
	}
	if n < int64(lo) {
		c.add(loc, "greater_than_equal", fmt.Sprintf("Input should be greater than or equal to %d", lo), map[string]any{"ge": lo})
		return 0, false
	}
	if n > int64(hi) {
		c.add(loc, "less_than_equal", fmt.Sprintf("Input should be less than or equal to %d", hi), map[string]any{"le": hi})
		return 0, false
	}
	return int(n), true
}

// Names of the skill proficiencies, in skillProficiencies' order.
var skillNames = []string{
	"acrobatics", "animal_handling", "arcana", "athletics", "deception", "history",
	"insight", "intimidation", "investigation", "medicine", "nature", "perception",
	"performance", "persuasion", "religion", "sleight_of_hand", "stealth", "survival",
}

// validateHero turns a parsed JSON body into a hero, listing every problem
// at once with its loc under "body". Rules (issue 5): level 1–20, ability
// scores 1–30, hit points, armor class and speed 0 to 2^31-1, spell level
// 0–9, strings at most 200 characters, lists at most 100 items, no unknown
// member. "class"
// is an alias of "class_"; giving both is a problem (which one would win is
// a guess we refuse to make). "id" may be sent (a client PUTting back what
// it read) and is returned in h.ID for the handler to check; create ignores
// it.
//
// Required: name, race, class_, level, ability_scores (all six), equipment,
// hit_points, armor_class, speed. Optional (null or absent): background,
// alignment, personality_traits, ideals, bonds, flaws, spells, and inside
// equipment weapon and armor. skill_proficiencies and each of its skills,
// and equipment.items, default to false and [] when absent.
func validateHero(v any) (hero, []fieldError) {
	c := &checker{}
	f := c.object([]any{"body"}, v, "id", "name", "race", "class_", "class", "level", "background", "alignment",
		"ability_scores", "skill_proficiencies", "equipment", "spells", "hit_points", "armor_class", "speed",
		"personality_traits", "ideals", "bonds", "flaws")
	var h hero
	if id := f.optStr("id"); id != nil {
		h.ID = *id
	}
	h.Name = f.str("name")
	h.Race = f.str("race")
	h.Class = f.class()
	h.Level = f.integer("level", 1, 20)
	h.Background = f.optStr("background")
	h.Alignment = f.optStr("alignment")
	h.AbilityScores = f.abilityScores()
	h.SkillProficiencies = f.skills()
	h.Equipment = f.equipment()
	h.Spells = f.spells()
	h.HitPoints = f.integer("hit_points", 0, maxIntValue)
	h.ArmorClass = f.integer("armor_class", 0, maxIntValue)
	h.Speed = f.integer("speed", 0, maxIntValue)
	h.PersonalityTraits = f.optStr("personality_traits")
	h.Ideals = f.optStr("ideals")
	h.Bonds = f.optStr("bonds")
	h.Flaws = f.optStr("flaws")
	return h, c.problems
}

// class reads "class_" or its alias "class" (exactly one of them).
func (f fields) class() string {
	if f.m == nil {
		return ""
	}
	_, alias := f.m["class"]
	_, canonical := f.m["class_"]
	switch {
	case alias && canonical:
		f.c.add(at(f.loc, "class"), "value_error", "Value error, give class_ or its alias class, not both", nil)
		return ""
	case alias:
		return f.str("class")
	default:
		return f.str("class_")
	}
}

// abilityScores reads the required ability_scores object.
func (f fields) abilityScores() abilityScores {
	v, loc, ok := f.get("ability_scores", true)
	if !ok {
		return abilityScores{}
	}
	a := f.c.object(loc, v, "strength", "dexterity", "constitution", "intelligence", "wisdom", "charisma")
	return abilityScores{
		Strength:     a.integer("strength", 1, 30),
		Dexterity:    a.integer("dexterity", 1, 30),
		Constitution: a.integer("constitution", 1, 30),
		Intelligence: a.integer("intelligence", 1, 30),
		Wisdom:       a.integer("wisdom", 1, 30),
		Charisma:     a.integer("charisma", 1, 30),
	}
}

// skills reads the optional skill_proficiencies object.
func (f fields) skills() skillProficiencies {
	v, loc, ok := f.get("skill_proficiencies", false)
	if !ok {
		return skillProficiencies{}
	}
	s := f.c.object(loc, v, skillNames...)
	var out skillProficiencies
	dst := []*bool{
		&out.Acrobatics, &out.AnimalHandling, &out.Arcana, &out.Athletics, &out.Deception, &out.History,
		&out.Insight, &out.Intimidation, &out.Investigation, &out.Medicine, &out.Nature, &out.Perception,
		&out.Performance, &out.Persuasion, &out.Religion, &out.SleightOfHand, &out.Stealth, &out.Survival,
	}
	for i, name := range skillNames {
		*dst[i] = s.flag(name)
	}
	return out
}

// equipment reads the required equipment object.
func (f fields) equipment() equipment {
	v, loc, ok := f.get("equipment", true)
	if !ok {
		return equipment{Items: []string{}}
	}
	e := f.c.object(loc, v, "weapon", "armor", "items")
	return equipment{Weapon: e.optStr("weapon"), Armor: e.optStr("armor"), Items: e.strList("items", false)}
}

// spells reads the optional spells list; absent or null gives nil.
func (f fields) spells() []spell {
	var out []spell
	_, present := f.list("spells", false, true, func(loc []any, v any) {
		s := f.c.object(loc, v, "name", "level", "casting_time", "range", "components", "duration")
		out = append(out, spell{
			Name:        s.str("name"),
			Level:       s.integer("level", 0, 9),
			CastingTime: s.str("casting_time"),
			Range:       s.str("range"),
			Components:  s.strList("components", true),
			Duration:    s.str("duration"),
		})
	})
	if present && out == nil {
		out = []spell{}
	}
	return out
}

// List paging (issue 5): ?limit= defaults to 100, at most 1000; ?offset=
// defaults to 0.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// parsePaging reads limit and offset from a query. Bad values are a
// validationError with loc ["query", name], as FastAPI answers.
func parsePaging(q url.Values) (offset, limit int, err error) {
	c := &checker{}
	read := func(name string, def, lo, hi int) int {
		if !q.Has(name) {
			return def
		}
		loc := []any{"query", name}
		raw := q.Get(name)
		n, perr := strconv.ParseInt(raw, 10, 64)
		if perr != nil {
			if errors.Is(perr, strconv.ErrRange) {
				c.add(loc, "int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size", nil)
			} else {
				c.add(loc, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", nil)
			}
			return def
		}
		v, _ := c.intValue(loc, json.Number(strconv.FormatInt(n, 10)), lo, hi)
		return v
	}
	limit = read("limit", defaultLimit, 1, maxLimit)
	offset = read("offset", 0, 0, maxIntValue)
	if len(c.problems) > 0 {
		return 0, 0, validationError(c.problems)
	}
	return offset, limit, nil
}

// writeStoreError answers a store error: 404 {"detail":"Hero not found"},
// 409 for a stale If-Match, 422 for a hero too large for the store, 503 with
// Retry-After when the store is unavailable (the storage error is logged,
// never sent), 500 otherwise.
func writeStoreError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	switch {
	case errors.Is(err, errHeroNotFound):
		writeError(w, http.StatusNotFound, "Hero not found")
	case errors.Is(err, errHeroConflict):
		writeError(w, http.StatusConflict, "The hero was changed since you read it: its ETag no longer matches If-Match. GET it again, re-apply your change and retry")
	case errors.Is(err, errHeroTooLarge):
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Detail: []fieldError{{
			Loc: []any{"body"}, Msg: "The hero is too large for the store", Type: "too_large",
		}}})
	case errors.Is(err, errStoreUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		logger.Warn("heroes: store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "The hero store is unavailable; try again shortly")
	default:
		logger.Error("heroes: store failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "Internal error")
	}
}

// etagHeader is a store etag as an ETag header value (RFC 9110 §8.8.3):
// unchanged when already quoted, quoted otherwise.
func etagHeader(etag string) string {
	if strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/"`) {
		return etag
	}
	return `"` + etag + `"`
}

// heroID reads the {id} path value. Only a UUID can name a hero, so anything
// else is answered 404 here (the hero cannot exist) without asking the store.
func heroID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !isGUID(id) {
		writeError(w, http.StatusNotFound, "Hero not found")
		return "", false
	}
	return id, true
}

// handleHeroList serves GET /api/heroes/ (and /api/heroes): 200 with a JSON
// list of heroes ordered by id, ?limit= (default 100, 1 to 1000) and
// ?offset= (default 0); 422 for bad paging values. Needs Heroes.Read.
func handleHeroList(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offset, limit, err := parsePaging(r.URL.Query())
		if err != nil {
			writeDecodeError(w, err)
			return
		}
		heroes, err := store.List(r.Context(), offset, limit)
		if err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		if heroes == nil {
			heroes = []hero{}
		}
		writeJSON(w, http.StatusOK, heroes)
	})
}

// handleHeroGet serves GET /api/heroes/{id}: 200 with the hero and its ETag,
// 404 {"detail":"Hero not found"}. Needs Heroes.Read.
func handleHeroGet(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := heroID(w, r)
		if !ok {
			return
		}
		h, etag, err := store.Get(r.Context(), id)
		if err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		w.Header().Set("ETag", etagHeader(etag))
		writeJSON(w, http.StatusOK, h)
	})
}

// handleHeroCreate serves POST /api/heroes/ (and /api/heroes): 201 with the
// stored hero under a new UUIDv4 id, its Location and ETag; 413, 415 or 422
// for a bad body (decodeHero). An id in the body is ignored. Needs
// Heroes.Create.
func handleHeroCreate(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, err := decodeHero(w, r)
		if err != nil {
			writeDecodeError(w, err)
			return
		}
		h.ID = newHeroID()
		etag, err := store.Create(r.Context(), h)
		if err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		w.Header().Set("Location", "/api/heroes/"+h.ID)
		w.Header().Set("ETag", etagHeader(etag))
		writeJSON(w, http.StatusCreated, h)
	})
}

// handleHeroReplace serves PUT /api/heroes/{id}: 200 with the replaced hero
// and its new ETag; 404 when absent; 409 when If-Match (RFC 9110 §13.1.1)
// is given and stale; 413, 415 or 422 for a bad body. An id in the body must
// equal the path's. Needs Heroes.Create.
func handleHeroReplace(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := heroID(w, r)
		if !ok {
			return
		}
		h, err := decodeHero(w, r)
		if err == nil && h.ID != "" && h.ID != id {
			err = validationError{{Loc: []any{"body", "id"}, Msg: "Value error, id must be the id in the path", Type: "value_error"}}
		}
		if err != nil {
			writeDecodeError(w, err)
			return
		}
		h.ID = id
		etag, err := store.Replace(r.Context(), h, strings.TrimSpace(r.Header.Get("If-Match")))
		if err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		w.Header().Set("ETag", etagHeader(etag))
		writeJSON(w, http.StatusOK, h)
	})
}

// handleHeroDelete serves DELETE /api/heroes/{id}: 200 {"message": "Hero
// with id '…' deleted successfully"}; 404 when absent; 409 when If-Match is
// given and stale. Needs Admin.
func handleHeroDelete(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := heroID(w, r)
		if !ok {
			return
		}
		if err := store.Delete(r.Context(), id, strings.TrimSpace(r.Header.Get("If-Match"))); err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"message": fmt.Sprintf("Hero with id '%s' deleted successfully", id)})
	})
}

// fireballACBelow is the armor class the fireball query stays under.
const fireballACBelow = 20

// handleFireballLowAC serves GET /api/heroes-fireball-low-ac: 200 with the
// heroes that know a spell named Fireball (case-insensitive) and have an
// armor class below 20, ordered by id. Heroes without spells simply do not
// match. Needs Heroes.Read.
func handleFireballLowAC(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := []hero{}
		for offset := 0; ; offset += maxLimit {
			page, err := store.List(r.Context(), offset, maxLimit)
			if err != nil {
				writeStoreError(w, r, logger, err)
				return
			}
			for _, h := range page {
				if knowsFireballLowAC(h) {
					out = append(out, h)
				}
			}
			if len(page) < maxLimit {
				break
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// knowsFireballLowAC reports whether h knows Fireball and has AC below 20.
func knowsFireballLowAC(h hero) bool {
	if h.ArmorClass >= fireballACBelow {
		return false
	}
	return slices.ContainsFunc(h.Spells, func(s spell) bool { return strings.EqualFold(s.Name, "fireball") })
}

// seedHeroes adds a handful of sample heroes (for -dev): a wizard who knows
// Fireball with armor class 12 (the fireball query finds her), a fighter
// without spells, a sorcerer with Fireball but armor class 20 (the query
// leaves him out) and a cleric without Fireball. A store that already holds
// heroes (a file kept from an earlier run) is left as it is.
func seedHeroes(ctx context.Context, s heroStore) error {
	if existing, err := s.List(ctx, 0, 1); err != nil {
		return fmt.Errorf("heroes: seeding: %w", err)
	} else if len(existing) > 0 {
		return nil
	}
	str := func(v string) *string { return &v }
	fireball := spell{Name: "Fireball", Level: 3, CastingTime: "1 action", Range: "150 feet", Components: []string{"V", "S", "M"}, Duration: "Instantaneous"}
	heroes := []hero{
		{Name: "Elara Moonwhisper", Race: "Elf", Class: "Wizard", Level: 7, Background: str("Sage"), Alignment: str("Neutral Good"),
			AbilityScores:      abilityScores{8, 14, 12, 18, 13, 10},
			SkillProficiencies: skillProficiencies{Arcana: true, History: true, Investigation: true},
			Equipment:          equipment{Weapon: str("Quarterstaff"), Items: []string{"Spellbook", "Component pouch"}},
			Spells:             []spell{fireball, {Name: "Mage Armor", Level: 1, CastingTime: "1 action", Range: "Touch", Components: []string{"V", "S", "M"}, Duration: "8 hours"}},
			HitPoints:          38, ArmorClass: 12, Speed: 30, PersonalityTraits: str("Quotes old books at every turn")},
		{Name: "Thorin Ironfist", Race: "Dwarf", Class: "Fighter", Level: 5, Background: str("Soldier"), Alignment: str("Lawful Neutral"),
			AbilityScores:      abilityScores{17, 12, 16, 9, 11, 8},
			SkillProficiencies: skillProficiencies{Athletics: true, Intimidation: true},
			Equipment:          equipment{Weapon: str("Battleaxe"), Armor: str("Chain mail"), Items: []string{"Shield", "Rations"}},
			HitPoints:          49, ArmorClass: 18, Speed: 25},
		{Name: "Ignis Vale", Race: "Tiefling", Class: "Sorcerer", Level: 9, Alignment: str("Chaotic Neutral"),
			AbilityScores: abilityScores{10, 14, 14, 12, 10, 18},
			Equipment:     equipment{Weapon: str("Dagger"), Armor: str("Enchanted plate"), Items: []string{}},
			Spells:        []spell{fireball},
			HitPoints:     58, ArmorClass: 20, Speed: 30},
		{Name: "Brother Aldric", Race: "Human", Class: "Cleric", Level: 4, Background: str("Acolyte"), Alignment: str("Lawful Good"),
			AbilityScores:      abilityScores{14, 10, 13, 10, 16, 12},
			SkillProficiencies: skillProficiencies{Medicine: true, Religion: true, Insight: true},
			Equipment:          equipment{Weapon: str("Mace"), Armor: str("Scale mail"), Items: []string{"Holy symbol"}},
			Spells:             []spell{{Name: "Cure Wounds", Level: 1, CastingTime: "1 action", Range: "Touch", Components: []string{"V", "S"}, Duration: "Instantaneous"}},
			HitPoints:          31, ArmorClass: 16, Speed: 30},
	}
	for _, h := range heroes {
		h.ID = newHeroID()
		if _, err := s.Create(ctx, h); err != nil {
			return fmt.Errorf("heroes: seeding %s: %w", h.Name, err)
		}
	}
	return nil
}
