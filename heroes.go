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
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
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
	Alignment          string             `json:"alignment"`
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
	ETag string          `json:"etag"`
	Hero json.RawMessage `json:"hero"`
}

// heroSet is an immutable snapshot of a local store: heroes by id and the ids
// in ascending order. Writers build a new set (with) and swap it in, so
// readers never wait for a file write.
type heroSet struct {
	byID map[string]storedHero
	ids  []string // sorted ascending
}

// with returns a copy of s with id set to sh, or removed when sh is nil.
func (s *heroSet) with(id string, sh *storedHero) *heroSet {
	next := &heroSet{byID: make(map[string]storedHero, len(s.byID)+1), ids: slices.Clone(s.ids)}
	for k, v := range s.byID {
		next.byID[k] = v
	}
	i, found := slices.BinarySearch(next.ids, id)
	switch {
	case sh == nil && found:
		next.ids = slices.Delete(next.ids, i, i+1)
		delete(next.byID, id)
	case sh != nil:
		if !found {
			next.ids = slices.Insert(next.ids, i, id)
		}
		next.byID[id] = *sh
	}
	return next
}

// localStore is the memory store, and with a path the file store: heroes in
// a heroSet, every change written to the file (when there is one) before it
// is visible or acknowledged. Safe for concurrent use.
type localStore struct {
	path string // "" for the memory store

	// writeMu is the single writer lock: it serializes changes, so each
	// write of the file holds every change acknowledged before it.
	writeMu sync.Mutex

	mu     sync.RWMutex // guards the fields below
	cur    *heroSet
	closed bool
}

// newMemoryStore returns an empty store that lives in memory only.
func newMemoryStore() *localStore {
	return &localStore{cur: &heroSet{byID: map[string]storedHero{}}}
}

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
// any point leaves either the old or the new file, never a torn one.
func openFileStore(path string) (*localStore, error) {
	s := newMemoryStore()
	s.path = path
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
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
	s.cur = set
	return s, nil
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
	set := &heroSet{byID: make(map[string]storedHero, len(doc.Heroes))}
	for i, sh := range doc.Heroes {
		var h hero
		if err := json.Unmarshal(sh.Hero, &h); err != nil {
			return nil, fmt.Errorf("hero %d: %w", i, err)
		}
		if !isGUID(h.ID) || sh.ETag == "" {
			return nil, fmt.Errorf("hero %d: bad id or etag", i)
		}
		if _, dup := set.byID[h.ID]; dup {
			return nil, fmt.Errorf("hero %d: duplicate id %s", i, h.ID)
		}
		set.byID[h.ID] = sh
		set.ids = append(set.ids, h.ID)
	}
	slices.Sort(set.ids)
	return set, nil
}

// snapshot returns the current set, or errStoreUnavailable after Close.
func (s *localStore) snapshot() (*heroSet, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("%w: closed", errStoreUnavailable)
	}
	return s.cur, nil
}

// count is the number of heroes stored.
func (s *localStore) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.cur.ids)
}

// List returns up to limit heroes after skipping offset, ordered by id.
func (s *localStore) List(ctx context.Context, offset, limit int) ([]hero, error) {
	set, err := s.snapshot()
	if err != nil {
		return nil, err
	}
	out := []hero{}
	if offset < 0 || offset >= len(set.ids) || limit <= 0 {
		return out, nil
	}
	ids := set.ids[offset:]
	ids = ids[:min(limit, len(ids))]
	for _, id := range ids {
		var h hero
		if err := json.Unmarshal(set.byID[id].Hero, &h); err != nil {
			return nil, fmt.Errorf("heroes: stored hero %s: %w", id, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// Get returns the hero with id and its entity-tag.
func (s *localStore) Get(ctx context.Context, id string) (hero, string, error) {
	set, err := s.snapshot()
	if err != nil {
		return hero{}, "", err
	}
	sh, ok := set.byID[id]
	if !ok {
		return hero{}, "", errHeroNotFound
	}
	var h hero
	if err := json.Unmarshal(sh.Hero, &h); err != nil {
		return hero{}, "", fmt.Errorf("heroes: stored hero %s: %w", id, err)
	}
	return h, sh.ETag, nil
}

// Create stores a new hero under h.ID.
func (s *localStore) Create(ctx context.Context, h hero) (string, error) {
	return s.change(h.ID, &h, "", func(_ storedHero, exists bool) error {
		if exists {
			return fmt.Errorf("%w: id %s already exists", errHeroConflict, h.ID)
		}
		return nil
	})
}

// Replace stores h over the hero with the same id, if ifMatch allows.
func (s *localStore) Replace(ctx context.Context, h hero, ifMatch string) (string, error) {
	return s.change(h.ID, &h, ifMatch, nil)
}

// Delete removes the hero with id, if ifMatch allows.
func (s *localStore) Delete(ctx context.Context, id string, ifMatch string) error {
	_, err := s.change(id, nil, ifMatch, nil)
	return err
}

// change applies one change under the writer lock: h stores (nil deletes)
// the hero with id. With check nil the hero must exist and match ifMatch;
// otherwise check decides. The new set is written to the file, if any,
// before it replaces the current one, so a failed write changes nothing.
func (s *localStore) change(id string, h *hero, ifMatch string, check func(old storedHero, exists bool) error) (string, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	set, err := s.snapshot()
	if err != nil {
		return "", err
	}
	old, exists := set.byID[id]
	if check == nil {
		check = func(old storedHero, exists bool) error {
			if !exists {
				return errHeroNotFound
			}
			if ifMatch != "" && ifMatch != "*" && ifMatch != old.ETag {
				return fmt.Errorf("%w: If-Match %s, stored %s", errHeroConflict, ifMatch, old.ETag)
			}
			return nil
		}
	}
	if err := check(old, exists); err != nil {
		return "", err
	}
	var sh *storedHero
	if h != nil {
		data, err := json.Marshal(h)
		if err != nil {
			return "", fmt.Errorf("heroes: encoding hero %s: %w", id, err)
		}
		sh = &storedHero{ETag: newETag(), Hero: data}
	}
	next := set.with(id, sh)
	if s.path != "" {
		if err := writeHeroesFile(s.path, next); err != nil {
			return "", fmt.Errorf("%w: %w", errStoreUnavailable, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", fmt.Errorf("%w: closed", errStoreUnavailable)
	}
	s.cur = next
	if sh == nil {
		return "", nil
	}
	return sh.ETag, nil
}

// newETag returns a fresh strong entity-tag (RFC 9110 §8.8.3): a random
// 26-character base32 string in quotes, unique across restarts without any
// counter to persist.
func newETag() string { return `"` + rand.Text() + `"` }

// writeHeroesFile writes set to path durably: a temporary file in the same
// folder (so the rename stays on one file system), fsync, rename over path,
// then fsync of the folder so the rename itself survives a crash.
func writeHeroesFile(path string, set *heroSet) (err error) {
	doc := heroesFile{Version: 1, Heroes: make([]storedHero, 0, len(set.ids))}
	for _, id := range set.ids {
		doc.Heroes = append(doc.Heroes, set.byID[id])
	}
	data, err := json.Marshal(doc)
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
	_, err := s.snapshot()
	return err
}

// Close marks the store closed; it waits for a change in progress to finish
// writing. Every change was already written, so there is nothing to flush.
func (s *localStore) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// seedHeroes adds a handful of sample heroes (for -dev).
func seedHeroes(ctx context.Context, s heroStore) error { return nil }

func handleHeroList(logger *slog.Logger, store heroStore) http.Handler { return http.NotFoundHandler() }
func handleHeroGet(logger *slog.Logger, store heroStore) http.Handler  { return http.NotFoundHandler() }
func handleHeroCreate(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}
func handleHeroReplace(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}
func handleHeroDelete(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}
func handleFireballLowAC(logger *slog.Logger, store heroStore) http.Handler {
	return http.NotFoundHandler()
}

// handleOpenAPI serves GET /openapi.json.
func handleOpenAPI(cfg config, prov *provider) http.Handler { return http.NotFoundHandler() }
