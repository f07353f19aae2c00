package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

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
	var data []byte
	if h != nil {
		// Encoded first, so a hero too large is refused whether or not
		// the id exists, as by the table store.
		var err error
		if data, err = encodeHero(*h); err != nil {
			return "", err
		}
	}
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
	// Without HTML escaping, which json.Marshal would also apply inside
	// each record's already-encoded hero.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(heroesFile{Version: 1, Heroes: records}); err != nil {
		return fmt.Errorf("heroes: encoding %s: %w", path, err)
	}
	data := buf.Bytes() // ends in a newline
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
	if _, err = tmp.Write(data); err != nil {
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
