package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
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
// order, and its idempotency keys by key id, oldest first, with what they
// take of the heroes file (upper bounds, see recordBytes) and how many keys
// each caller holds. It is not safe for concurrent use; localStore guards
// it.
type heroSet struct {
	byID      map[string]storedHero
	ids       []string // sorted ascending
	heroBytes int64    // the heroes' records

	keys       map[string]idemRecord
	keyOrder   []string       // key ids, oldest first
	keyBytes   int64          // the key records
	callerKeys map[string]int // keys held, by idemRecord.Caller
}

func newHeroSet() *heroSet {
	return &heroSet{byID: map[string]storedHero{}, keys: map[string]idemRecord{}, callerKeys: map[string]int{}}
}

// liveKey returns the record of key id when it is younger than
// idempotencyTTL at now.
func (s *heroSet) liveKey(id string, now time.Time) (idemRecord, bool) {
	rec, ok := s.keys[id]
	return rec, ok && rec.live(now)
}

// keysToForget returns the set of the ids of the keys that remembering rec
// at now forgets, so that the keys stay within lim: an earlier record of
// rec.Key (rec replaces it, so no key is ever held twice) and every expired
// key, wherever it stands (the wall clock may step back, so keyOrder is the
// order keys were stored in, not that of their Created); then, while rec's
// caller would hold more than lim.callerKeys, its own oldest; then, while
// the keys would be more than lim.keys or take more than lim.keyBytes, the
// oldest of the caller holding the most (rec's caller counted with rec, and
// chosen on a tie). It is errStoreFull when rec alone takes more than
// lim.keyBytes. s is not changed.
func (s *heroSet) keysToForget(rec idemRecord, now time.Time, lim storeLimits) (map[string]bool, error) {
	gone := map[string]bool{}
	held := map[string]int{rec.Caller: 1} // changes to s.callerKeys
	n, size := len(s.keyOrder)+1, s.keyBytes+rec.recordBytes()
	forget := func(id string) {
		r := s.keys[id]
		gone[id] = true
		held[r.Caller]--
		n, size = n-1, size-r.recordBytes()
	}
	for _, id := range s.keyOrder {
		if id == rec.Key || !s.keys[id].live(now) {
			forget(id)
		}
	}
	for s.callerKeys[rec.Caller]+held[rec.Caller] > lim.callerKeys {
		id := s.oldestKeyOf(rec.Caller, gone)
		if id == "" {
			break // lim.callerKeys < 1: only the new key is left
		}
		forget(id)
	}
	for n > lim.keys || size > lim.keyBytes {
		id := s.oldestKeyOf(s.largestHolder(rec.Caller, held), gone)
		if id == "" {
			return nil, fmt.Errorf("%w: an idempotency key record of %d bytes is over the keys' bound of %d", errStoreFull, rec.recordBytes(), lim.keyBytes)
		}
		forget(id)
	}
	return gone, nil
}

// oldestKeyOf is the id of caller's oldest key not in gone; "" when it has
// none.
func (s *heroSet) oldestKeyOf(caller string, gone map[string]bool) string {
	for _, id := range s.keyOrder {
		if !gone[id] && s.keys[id].Caller == caller {
			return id
		}
	}
	return ""
}

// largestHolder is the caller holding the most keys, counting the changes
// in held: requester when it holds as many as any other and has a key
// stored, else the first such caller in string order; "" when no caller
// holds a stored key.
func (s *heroSet) largestHolder(requester string, held map[string]int) string {
	best, most := "", 0
	for c, n := range s.callerKeys {
		n += held[c]
		stored := n
		if c == requester {
			stored-- // its new key is not stored yet
		}
		if stored > 0 && (n > most || n == most && (c == requester || best != requester && c < best)) {
			best, most = c, n
		}
	}
	return best
}

// addKey remembers rec, forgetting the keys in forget (keysToForget).
func (s *heroSet) addKey(rec idemRecord, forget map[string]bool) {
	for id := range forget {
		s.uncountKey(s.keys[id])
		delete(s.keys, id)
	}
	s.keyOrder = slices.DeleteFunc(s.keyOrder, func(id string) bool { return forget[id] })
	s.appendKey(rec)
}

// uncountKey takes r out of keyBytes and callerKeys; the caller removes it
// from keys and keyOrder.
func (s *heroSet) uncountKey(r idemRecord) {
	s.keyBytes -= r.recordBytes()
	if s.callerKeys[r.Caller]--; s.callerKeys[r.Caller] <= 0 {
		delete(s.callerKeys, r.Caller)
	}
}

// appendKey adds rec as the newest key, replacing (and reporting) an
// earlier record of the same key, so a key is never held twice.
func (s *heroSet) appendKey(rec idemRecord) (replaced bool) {
	if old, ok := s.keys[rec.Key]; ok {
		s.uncountKey(old)
		s.keyOrder = slices.DeleteFunc(s.keyOrder, func(id string) bool { return id == rec.Key })
		replaced = true
	}
	s.keyOrder = append(s.keyOrder, rec.Key)
	s.keys[rec.Key] = rec
	s.keyBytes += rec.recordBytes()
	s.callerKeys[rec.Caller]++
	return replaced
}

// keyRecordsWith returns the key records, oldest first, as they are after
// addKey(*rec, forget), or as they are when rec is nil; s is not changed.
func (s *heroSet) keyRecordsWith(rec *idemRecord, forget map[string]bool) []idemRecord {
	out := make([]idemRecord, 0, len(s.keyOrder)+1)
	for _, id := range s.keyOrder {
		if !forget[id] {
			out = append(out, s.keys[id])
		}
	}
	if rec != nil {
		out = append(out, *rec)
	}
	return out
}

// fitsHero checks that storing sh (over the hero with its id, if any)
// keeps the heroes within lim.heroBytes; a change that does not grow them
// always fits, so a full store can still shrink.
func (s *heroSet) fitsHero(sh storedHero, lim storeLimits) error {
	grow := sh.recordBytes()
	if old, ok := s.byID[sh.ID]; ok {
		grow -= old.recordBytes()
	}
	if grow > 0 && s.heroBytes+grow > lim.heroBytes {
		return fmt.Errorf("%w: the heroes would take %d bytes, over their bound of %d", errStoreFull, s.heroBytes+grow, lim.heroBytes)
	}
	return nil
}

// put stores sh under sh.ID, adding the id in order when it is new.
func (s *heroSet) put(sh storedHero) {
	if old, ok := s.byID[sh.ID]; ok {
		s.heroBytes -= old.recordBytes()
	} else {
		i, _ := slices.BinarySearch(s.ids, sh.ID)
		s.ids = slices.Insert(s.ids, i, sh.ID)
	}
	s.byID[sh.ID] = sh
	s.heroBytes += sh.recordBytes()
}

func (s *heroSet) remove(id string) {
	if i, found := slices.BinarySearch(s.ids, id); found {
		s.ids = slices.Delete(s.ids, i, i+1)
	}
	if old, ok := s.byID[id]; ok {
		s.heroBytes -= old.recordBytes()
		delete(s.byID, id)
	}
}

// The heroes file's records take at most this many bytes each
// (recordBytes), with the comma after them, and the document around them
// at most fileEnvelopeBytes: {"version":1,"heroes":[…],"idempotency_keys":[…]}
// and a newline.
const fileEnvelopeBytes = 64

// recordBytes is an upper bound of the bytes sh takes in the heroes file,
// comma included: {"id":…,"etag":…,"hero":…}, its hero as stored (already
// compact, so the encoder never lengthens it).
func (sh storedHero) recordBytes() int64 {
	return int64(len(sh.Hero)) + jsonStringBound(sh.ID) + jsonStringBound(sh.ETag) + 24
}

// recordBytes is an upper bound of the bytes r takes in the heroes file,
// comma included: its seven members' names take 72 bytes, created at most
// 20 digits.
func (r idemRecord) recordBytes() int64 {
	return int64(len(r.Hero)) + jsonStringBound(r.Key) + jsonStringBound(r.Fingerprint) + jsonStringBound(r.HeroID) +
		jsonStringBound(r.ETag) + jsonStringBound(r.Caller) + 92
}

// jsonStringBound is an upper bound of the length of s as a JSON string:
// its quotes, and at most 6 bytes for each byte the encoder may escape or
// replace (control characters, quote, backslash, any non-ASCII byte).
func jsonStringBound(s string) int64 {
	n := int64(2)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			n += 6
		} else {
			n++
		}
	}
	return n
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
		i, _ := slices.BinarySearchFunc(out, sh.ID, func(r storedHero, id string) int { return strings.Compare(r.ID, id) })
		out = slices.Insert(out, i, *sh)
	}
	return out
}

// fileWith returns the heroes file as it is after setting id to sh (nil
// removes it) and remembering key (when not nil), forgetting the keys
// in forget; fileWith("", nil, nil, nil) is the file as s holds it. s
// itself is not changed.
func (s *heroSet) fileWith(id string, sh *storedHero, key *idemRecord, forget map[string]bool) heroesFile {
	return heroesFile{Version: 1, Heroes: s.recordsWith(id, sh), IdempotencyKey: s.keyRecordsWith(key, forget)}
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

	// fsync flushes a file to stable storage: the temporary file before
	// its rename, then the folder after it (writeHeroesFile). It is
	// (*os.File).Sync, fsync(2); tests replace it to watch the order. Set
	// before the store is used, never changed after.
	fsync func(*os.File) error
	// now is the clock of idempotency keys and readiness probes: time.Now
	// outside tests. Set before the store is used.
	now func() time.Time
	// limits bound what the store holds (setMaxBytes). Set before the
	// store is used, never changed after.
	limits storeLimits
	// staleTemps is how many temporary files of crashed writers
	// openFileStore removed, and staleErr why it could not remove others.
	staleTemps int
	staleErr   error
	// duplicateKeys is how many idempotency key records openFileStore
	// dropped because a later record held the same key (readKeyRecords).
	duplicateKeys int

	mu     sync.RWMutex // guards the fields below
	set    *heroSet
	closed bool
	// writeFailed is why the last write of the file failed (no space,
	// no permission, a read-only or failing disk), nil once one succeeds;
	// Ready reports it. lastProbe is when Ready last tried a write.
	writeFailed error
	lastProbe   time.Time
}

// newMemoryStore returns an empty store that lives in memory only, bounded
// to defaultMaxStoreBytes.
func newMemoryStore() *localStore {
	s := &localStore{set: newHeroSet(), fsync: (*os.File).Sync, now: time.Now}
	s.setMaxBytes(0)
	return s
}

// maxHeroesFile (256 MiB) is the most a local store may be told to hold,
// and defaultMaxStoreBytes (64 MiB) what it holds unless told otherwise.
// A file store's process peaks at about 2.2 times the file (measured
// resident memory; README "Storing heroes"), so 64 MiB is what a 0.5 GiB
// container holds with room to spare: the file is read and written record
// by record, and a change allocates little more than one record beside
// the store (BenchmarkFileStoreOpen, BenchmarkFileStoreCreate). minStoreBytes
// (1 MiB) is the least a setting may ask for: a quarter of it still holds
// the key record of a hero at maxHeroJSONBytes.
const (
	maxHeroesFile        = 256 << 20
	defaultMaxStoreBytes = 64 << 20
	minStoreBytes        = 1 << 20
)

// storeLimits bound a local store, in bytes of the heroes file (its
// records' recordBytes) whether or not there is a file: heroBytes for the
// heroes (a create or a growing replace beyond it is errStoreFull),
// keyBytes, keys and callerKeys for the idempotency keys (beyond them keys
// are forgotten, see heroSet.keysToForget).
type storeLimits struct {
	fileBytes           int64 // the whole file: heroBytes, keyBytes and fileEnvelopeBytes
	heroBytes, keyBytes int64
	keys, callerKeys    int
}

// setMaxBytes bounds the store to n bytes of file (0: defaultMaxStoreBytes;
// anything above maxHeroesFile: maxHeroesFile): a quarter for idempotency
// keys, the rest (less the document's own fileEnvelopeBytes) for heroes.
// The memory store keeps the same bound, so it cannot grow without limit.
// Call it before the store is used.
func (s *localStore) setMaxBytes(n int64) {
	if n <= 0 {
		n = defaultMaxStoreBytes
	}
	n = min(n, maxHeroesFile)
	s.limits = storeLimits{
		fileBytes: n, heroBytes: n - n/4 - fileEnvelopeBytes, keyBytes: n / 4,
		keys: maxIdempotencyKeys, callerKeys: maxCallerIdempotencyKeys,
	}
}

// heroesFile is the JSON document of the file store, in UTF-8:
//
//	{"version": 1, "heroes": [
//	  {"id": "<UUID>", "etag": "\"<entity-tag>\"", "hero": {<the hero, as the API answers it>}},
//	  …
//	]}
//
// version is 1; heroes are ordered by id; each record's id is the hero's
// own id, and etag is the ETag the API gives for it (RFC 9110 §8.8.3,
// quotes included). idempotency_keys, absent when there are none, lists the
// idempotency keys remembered (idemRecord), oldest first. No other member is
// allowed.
type heroesFile struct {
	Version        int          `json:"version"`                    // 1
	Heroes         []storedHero `json:"heroes"`                     // ordered by id
	IdempotencyKey []idemRecord `json:"idempotency_keys,omitempty"` // oldest first
}

// openFileStore opens the file store at path, a JSON document
// {"version":1,"heroes":[{"id":…,"etag":…,"hero":{…}},…]} described at
// heroesFile. A missing file gives an empty store (the file is created on
// the first change); a file that cannot be read or parsed is an error naming
// it and saying what is wrong at which byte offset, and is left untouched. Every change
// is then written durably before it is acknowledged: a temporary file in the
// same folder, fsync, rename over path, fsync of the folder, so a crash at
// any point leaves either the old or the new file, never a torn one. Each
// change rewrites the whole file, which suits the hundreds or few thousand
// heroes of one machine; several replicas share the azuretable store. The
// file is owned by one store at a time (lockHeroesFile). maxBytes bounds
// the store as setMaxBytes says; a file already larger is refused, naming
// HEROES_MAX_BYTES, and left untouched.
func openFileStore(path string, maxBytes int64) (*localStore, error) {
	s := newMemoryStore()
	s.setMaxBytes(maxBytes)
	lock, err := lockHeroesFile(path)
	if err != nil {
		return nil, err
	}
	set, dups, err := readHeroesFile(path, s.limits.fileBytes)
	if err != nil {
		if lock != nil {
			lock.Close() // releases the lock; start-up fails anyway
		}
		return nil, err
	}
	s.path, s.lock, s.set, s.duplicateKeys = path, lock, set, dups
	s.staleTemps, s.staleErr = removeStaleTemps(path)
	return s, nil
}

// removeStaleTemps removes the temporary files writeHeroesFile makes for
// path (".<name>.tmp-<digits>" beside it) that a writer killed mid-write
// left: each is a whole copy of the data, and repeated crashes would fill
// the disk. Only the holder of the file's lock calls it, so no write is in
// progress. It returns how many it removed, and an error naming the first
// it could not list or remove.
func removeStaleTemps(path string) (int, error) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+".tmp-"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("heroes: listing %s for stale temporary files: %w", dir, err)
	}
	removed, errs := 0, []error{}
	for _, e := range entries {
		digits, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("heroes: removing stale temporary file: %w", err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// readHeroesFile loads the file store's file: an empty set when it does not
// exist, an error naming it when it cannot be read or parsed or is larger
// than maxBytes. dups is how many duplicate idempotency key records it
// dropped (readKeyRecords).
func readHeroesFile(path string, maxBytes int64) (set *heroSet, dups int, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return newHeroSet(), 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("heroes: reading %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("heroes: reading %s: %w", path, err)
	}
	if fi.Size() > maxBytes {
		return nil, 0, fmt.Errorf("heroes: %s is %d bytes, over the store's bound of %d (HEROES_MAX_BYTES); "+
			"raise HEROES_MAX_BYTES (at most %d) to open it, or move it (it was not changed)", path, fi.Size(), maxBytes, maxHeroesFile)
	}
	// Decoded from the file itself, so the whole file is in memory once
	// (in the decoder) rather than twice; a refused hero's byte offset is
	// found by reading the file again.
	locate := func(raw []byte) int64 {
		data, err := os.ReadFile(path)
		if err != nil {
			return 0 // the offset is a hint; the error says what is wrong
		}
		return int64(max(bytes.Index(data, raw), 0))
	}
	set, dups, err = parseHeroesFile(io.LimitReader(f, maxBytes), fi.Size(), maxBytes, locate)
	if err != nil {
		return nil, 0, fmt.Errorf("heroes: %s is corrupt (fix or move it; it was not changed): %w", path, err)
	}
	return set, dups, nil
}

// parseHeroesFile parses the file store's document (heroesFile), of size
// bytes, from r and checks each record as it comes (readHeroRecord,
// readKeyRecord), so the decoder holds one record at a time, never the
// whole file. Errors say in plain words what is wrong and near which byte
// offset (describeJSONError; locate finds a record's hero in the file),
// never in Go's type names. dups is how many duplicate idempotency key
// records it dropped. Records that would take more than maxBytes once
// written back in the store's own form are refused as they come (0: no
// bound), so an edited file can neither pass the store's bound nor its
// memory by holding heroes written shorter than the store writes them.
func parseHeroesFile(r io.Reader, size, maxBytes int64, locate func(raw []byte) int64) (set *heroSet, dups int, err error) {
	p := &fileParser{dec: json.NewDecoder(r), size: size, max: maxBytes, locate: locate, set: newHeroSet()}
	p.dec.DisallowUnknownFields()
	if err := p.delim('{', "the document", `an object {"version":1,"heroes":[…]}`); err != nil {
		return nil, 0, err
	}
	version, seen := 0, map[string]bool{}
	for p.dec.More() {
		tok, err := p.dec.Token()
		name, _ := tok.(string)      // a member's name is always a string
		name = strings.ToLower(name) // names match without regard to case, as encoding/json matches them
		switch {
		case err != nil:
			return nil, 0, p.fail(err, 0, "the document")
		case seen[name]:
			return nil, 0, fmt.Errorf("%s appears twice in the document", name)
		case name == "version":
			err = p.value(&version, "version")
		case name == "heroes":
			err = p.list(name, p.hero)
		case name == "idempotency_keys":
			err = p.list(name, p.key)
		default:
			err = fmt.Errorf("unknown field %q in the document (it holds only version, heroes and idempotency_keys)", name)
		}
		if err != nil {
			return nil, 0, err
		}
		seen[name] = true
	}
	if _, err := p.dec.Token(); err != nil { // the document's }
		return nil, 0, p.fail(err, 0, "the document")
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, 0, fmt.Errorf("data after the JSON document at byte offset %d", p.dec.InputOffset())
	}
	if version != 1 {
		return nil, 0, fmt.Errorf("version is %d, but this program reads only version 1", version)
	}
	return p.set, p.dups, nil
}

// fileParser is parseHeroesFile's state: the decoder reading the file, the
// set it fills, encodeHeroTo's buffer reused from hero to hero, and the
// duplicate key records dropped.
type fileParser struct {
	dec    *json.Decoder
	size   int64
	max    int64 // bound of the records written back (parseHeroesFile); 0 none
	locate func(raw []byte) int64
	set    *heroSet
	buf    bytes.Buffer
	dups   int
}

// fail rewords err met at base (describeJSONError); the file ending before
// the document does is the JSON ending early.
func (p *fileParser) fail(err error, base int64, what string) error {
	if errors.Is(err, io.EOF) && p.dec.InputOffset() > 0 {
		err = io.ErrUnexpectedEOF
	}
	return describeJSONError(err, base, p.size, what)
}

// delim reads the next token, which must be want: else what is named as
// the JSON it is and should, what it should be.
func (p *fileParser) delim(want json.Delim, what, should string) error {
	tok, err := p.dec.Token()
	if err != nil {
		return p.fail(err, 0, what)
	}
	if tok != want {
		return fmt.Errorf("near byte offset %d: %s is a JSON %s, but should be %s", p.dec.InputOffset(), what, tokenKind(tok), should)
	}
	return nil
}

// tokenKind names the JSON value a json.Decoder token starts, in
// encoding/json's words (UnmarshalTypeError.Value).
func tokenKind(tok json.Token) string {
	switch tok := tok.(type) {
	case json.Delim:
		return map[json.Delim]string{'[': "array", '{': "object"}[tok]
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// value decodes the next value into v; what names it in errors.
func (p *fileParser) value(v any, what string) error {
	base := p.dec.InputOffset() + 1 // past the ':' or ',' (offsets within the value count from there)
	err := p.dec.Decode(v)
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		// The decoder's offset of a syntax error inside a value is not one
		// of the file; the value's start (or the separator before it) is.
		return fmt.Errorf("not valid JSON in %s, which starts near byte offset %d: %s", what, base-1, se.Error())
	} else if err != nil {
		return p.fail(err, base, what)
	}
	return nil
}

// list reads the JSON list named what, calling item for each of its
// elements with its index; null is no elements, as encoding/json reads it
// (and builds before this one did).
func (p *fileParser) list(what string, item func(i int) error) error {
	tok, err := p.dec.Token()
	switch {
	case err != nil:
		return p.fail(err, 0, what)
	case tok == nil:
		return nil
	case tok != json.Delim('['):
		return fmt.Errorf("near byte offset %d: %s is a JSON %s, but should be a list", p.dec.InputOffset(), what, tokenKind(tok))
	}
	for i := 0; p.dec.More(); i++ {
		if err := item(i); err != nil {
			return err
		}
	}
	if _, err := p.dec.Token(); err != nil { // the list's ]
		return p.fail(err, 0, what)
	}
	return nil
}

// hero reads hero record i into the set.
func (p *fileParser) hero(i int) error {
	var sh storedHero
	if err := p.value(&sh, "the record"); err != nil {
		return fmt.Errorf("hero record %d: %w", i, err)
	}
	if err := readHeroRecord(p.set, sh, i, &p.buf, p.locate); err != nil {
		return err
	}
	return p.bounded()
}

// bounded refuses the records read so far when the store would write them
// back (recordBytes) as a file over p.max: a store that could not write its
// own file would refuse every change, deletes included.
func (p *fileParser) bounded() error {
	if n := p.set.heroBytes + p.set.keyBytes + fileEnvelopeBytes; p.max > 0 && n > p.max {
		return fmt.Errorf("its records take %d bytes or more when the store writes them back (heroes in its own form), "+
			"over the store's bound of %d (HEROES_MAX_BYTES): raise HEROES_MAX_BYTES (at most %d)", n, p.max, maxHeroesFile)
	}
	return nil
}

// key reads idempotency key record i into the set.
func (p *fileParser) key(i int) error {
	var rec idemRecord
	if err := p.value(&rec, "the record"); err != nil {
		return fmt.Errorf("idempotency key record %d: %w", i, err)
	}
	dup, err := readKeyRecord(p.set, rec, i)
	if dup {
		p.dups++
	}
	return cmp.Or(err, p.bounded())
}

// readHeroRecord checks hero record i of a heroes file, sh, and adds it to
// set: a UUID id matching the hero's own, a non-empty etag, an id not seen
// before, and a hero that decodes. buf is encodeHeroTo's, reused from
// record to record. locate finds the hero's byte offset in the file (an
// identical earlier hero gives the same), only when the record is refused.
func readHeroRecord(set *heroSet, sh storedHero, i int, buf *bytes.Buffer, locate func(raw []byte) int64) error {
	at := int64(-1)
	offset := func() int64 { // read the file again only for a refused record, once
		if at < 0 {
			at = locate(sh.Hero)
		}
		return at
	}
	where := func() string { return fmt.Sprintf("hero record %d (byte offset %d)", i, offset()) }
	var h hero
	if err := json.Unmarshal(sh.Hero, &h); err != nil {
		return fmt.Errorf("%s: %w", where(), describeJSONError(err, offset(), offset()+int64(len(sh.Hero)), "the hero"))
	}
	switch _, dup := set.byID[sh.ID]; {
	case !isGUID(sh.ID):
		return fmt.Errorf("%s: id %q is not a UUID", where(), sh.ID)
	case h.ID != sh.ID:
		return fmt.Errorf("%s: id %s differs from the hero's own id %q", where(), sh.ID, h.ID)
	case sh.ETag == "":
		return fmt.Errorf("%s: etag is empty", where())
	case dup:
		return fmt.Errorf("%s: id %s appears twice", where(), sh.ID)
	}
	// Kept as encodeHero writes it (ListJSON answers it as it is): an
	// edited file may hold other spacing, escapes or unknown fields. A
	// hero over the store's limit is kept as it is written. The record's
	// own copy is kept when it is the same, as it is in a file this store
	// wrote: it is exactly as long as the hero, the encoder's buffer longer.
	if data, err := encodeHeroTo(buf, h); err == nil && !bytes.Equal(data, sh.Hero) {
		sh.Hero = bytes.Clone(data)
	}
	set.put(sh)
	return nil
}

// readKeyRecord checks idempotency key record i of a heroes file, rec, and
// adds it to set: a 64-digit hex key, a UUID hero id and a hero that is
// JSON. A key given twice (builds before this one could store an expired
// key again after the wall clock stepped back) keeps its later record, the
// one those builds answered with; dup reports an earlier record so
// dropped, for a warning. Refusing such a file would stop the service over
// a remembered answer.
func readKeyRecord(set *heroSet, rec idemRecord, i int) (dup bool, err error) {
	switch {
	case len(rec.Key) != 64 || strings.Trim(rec.Key, "0123456789abcdef") != "":
		return false, fmt.Errorf("idempotency key record %d: key is not 64 hexadecimal digits", i)
	case !isGUID(rec.HeroID) || !json.Valid(rec.Hero):
		return false, fmt.Errorf("idempotency key record %d: hero_id is not a UUID, or hero is not JSON", i)
	case rec.Caller != "" && (len(rec.Caller) != 32 || strings.Trim(rec.Caller, "0123456789abcdef") != ""):
		return false, fmt.Errorf("idempotency key record %d: caller is not 32 hexadecimal digits", i)
	}
	return set.appendKey(rec), nil
}

// describeJSONError rewords an encoding/json error about a heroes file in
// plain words with the byte offset where it happened, as encoding/json
// counts it (just after the offending byte or value): base is the offset
// of the decoded text within the file and end that of its end. what names
// the decoded value ("the document", "the hero").
func describeJSONError(err error, base, end int64, what string) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New(`the file is empty; a heroes file holds {"version":1,"heroes":[…]}`)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("the JSON ends early, at byte offset %d (the file is cut short)", end)
	case errors.As(err, &se):
		return fmt.Errorf("not valid JSON near byte offset %d: %s", base+se.Offset, se.Error())
	case errors.As(err, &te):
		name := what
		if te.Field != "" {
			name = te.Field
		}
		want := jsonKindOf(te.Type)
		if te.Field == "" && what == "the document" {
			want = `an object {"version":1,"heroes":[…]}`
		}
		return fmt.Errorf("near byte offset %d: %s is a JSON %s, but should be %s", base+te.Offset, name, te.Value, want)
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s in %s (a hero record holds only id, etag and hero; a key record only key, fingerprint, hero_id, etag, hero, created and caller)", field, what)
	}
	return fmt.Errorf("in %s: %s", what, strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKindOf names the JSON value a Go type is decoded from, in the words
// of RFC 8259 rather than Go's.
func jsonKindOf(t reflect.Type) string {
	if t == nil {
		return "another JSON value"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number within range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return jsonKindOf(t.Elem()) + " or null"
	}
	return "another JSON value"
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

func (s *localStore) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.set.ids)
}

// ListJSON returns up to limit heroes after skipping offset, ordered by
// id, as the store keeps them: encodeHero's JSON, shared (read only).
func (s *localStore) ListJSON(ctx context.Context, offset, limit int) ([]json.RawMessage, error) {
	return s.page(limit, func(*heroSet) int { return offset })
}

// List is ListJSON's heroes, decoded.
func (s *localStore) List(ctx context.Context, offset, limit int) ([]hero, error) {
	return decodeStored(s.ListJSON(ctx, offset, limit))
}

// ListAfter returns up to limit heroes whose id sorts after after, ordered
// by id; it finds the first by binary search.
func (s *localStore) ListAfter(ctx context.Context, after string, limit int) ([]hero, error) {
	return decodeStored(s.page(limit, func(set *heroSet) int {
		i, found := slices.BinarySearch(set.ids, after)
		if found {
			i++
		}
		return i
	}))
}

// page returns the JSON of up to limit heroes in id order from the one at
// index start(set) on, never nil.
func (s *localStore) page(limit int, start func(*heroSet) int) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	err := s.read(func(set *heroSet) error {
		i := start(set)
		if i < 0 || i >= len(set.ids) || limit <= 0 {
			return nil
		}
		ids := set.ids[i:]
		ids = ids[:min(limit, len(ids))]
		out = make([]json.RawMessage, len(ids))
		for i, id := range ids {
			out[i] = set.byID[id].Hero
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// decodeStored decodes the heroes of a page, passing err on.
func decodeStored(stored []json.RawMessage, err error) ([]hero, error) {
	if err != nil {
		return nil, err
	}
	out := make([]hero, len(stored))
	for i, data := range stored {
		if err := json.Unmarshal(data, &out[i]); err != nil {
			return nil, fmt.Errorf("heroes: stored hero %d of the page: %w", i, err)
		}
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
	return s.change(h.ID, &h, absent(h.ID))
}

// absent is the precondition of a create: no hero with id exists.
func absent(id string) func(old storedHero, exists bool) error {
	return func(_ storedHero, exists bool) error {
		if exists {
			return fmt.Errorf("%w: id %s already exists", errHeroConflict, id)
		}
		return nil
	}
}

// CreateOnce stores h unless key was used within idempotencyTTL (see
// heroStore). The hero and the key are written in one change, so neither
// is ever stored without the other.
func (s *localStore) CreateOnce(ctx context.Context, h hero, key idempotencyKey) (idemRecord, bool, error) {
	data, err := encodeHero(h)
	if err != nil {
		return idemRecord{}, false, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var rec idemRecord
	var found bool
	if err := s.read(func(set *heroSet) error { rec, found = set.liveKey(key.ID, s.now()); return nil }); err != nil {
		return idemRecord{}, false, err
	}
	switch {
	case found && rec.Fingerprint != key.Fingerprint:
		return idemRecord{}, false, errIdempotencyMismatch
	case found:
		return rec, true, nil
	}
	rec = idemRecord{Key: key.ID, Fingerprint: key.Fingerprint, HeroID: h.ID, Hero: data, Created: s.now().Unix(), Caller: key.Caller}
	rec.ETag, err = s.changeLocked(h.ID, data, absent(h.ID), &rec)
	return rec, false, err
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
// the hero with id, if check passes on the stored version. h is encoded
// before the lock is taken, so a hero too large is refused whether or not
// the id exists, as by the table store. With a file the whole new content
// is written durably first, so a failed write changes nothing and an
// acknowledged change survives a crash.
func (s *localStore) change(id string, h *hero, check func(old storedHero, exists bool) error) (string, error) {
	var data []byte
	if h != nil {
		var err error
		if data, err = encodeHero(*h); err != nil {
			return "", err
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.changeLocked(id, data, check, nil)
}

// changeLocked is change with s.writeMu held and the hero's JSON as
// encodeHero wrote it (nil deletes); key, when not nil, is remembered with
// the hero (its ETag set to the new hero's).
func (s *localStore) changeLocked(id string, data []byte, check func(old storedHero, exists bool) error, key *idemRecord) (string, error) {
	// Only writers change the set and this one holds writeMu, so reading it
	// under the read lock and changing it later under the write lock is safe.
	var p changePlan
	now := s.now()
	err := s.read(func(set *heroSet) (err error) {
		p, err = s.plan(set, id, data, check, key, now)
		return err
	})
	if err != nil {
		return "", err
	}
	if err := s.writeFile(p.doc); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if key != nil {
		s.set.addKey(*key, p.forget)
	}
	if p.sh == nil {
		s.set.remove(id)
		return "", nil
	}
	s.set.put(*p.sh)
	return p.sh.ETag, nil
}

// changePlan is one change worked out on a heroSet before it is made: the
// hero's new version (nil deletes it), the keys remembering a new key
// forgets, and for the file store the document to write.
type changePlan struct {
	sh     *storedHero
	forget map[string]bool
	doc    heroesFile
}

// plan works out a change of set (not changed): data stores the hero id
// (nil deletes it) if check passes on the stored version and it fits
// s.limits (else errStoreFull), and key, when not nil, is remembered with
// it (its ETag set to the new hero's), forgetting keys as keysToForget
// says.
func (s *localStore) plan(set *heroSet, id string, data []byte, check func(old storedHero, exists bool) error, key *idemRecord, now time.Time) (changePlan, error) {
	var p changePlan
	old, exists := set.byID[id]
	if err := check(old, exists); err != nil {
		return p, err
	}
	if data != nil {
		p.sh = &storedHero{ID: id, ETag: newETag(), Hero: data}
		if err := set.fitsHero(*p.sh, s.limits); err != nil {
			return p, err
		}
	}
	if key != nil {
		key.ETag = p.sh.ETag
		var err error
		if p.forget, err = set.keysToForget(*key, now, s.limits); err != nil {
			return p, err
		}
	}
	if s.path != "" {
		p.doc = set.fileWith(id, p.sh, key, p.forget)
	}
	return p, nil
}

// writeFile writes doc to the file (nothing for the memory store) and
// remembers the outcome for Ready: a failure until a write succeeds.
// s.writeMu must be held.
func (s *localStore) writeFile(doc heroesFile) error {
	if s.path == "" {
		return nil
	}
	err := writeHeroesFile(s.path, doc, s.limits.fileBytes, s.fsync)
	if errors.Is(err, errStoreFull) {
		return err // nothing was written: the disk is not at fault
	}
	s.mu.Lock()
	s.writeFailed = err
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", errStoreUnavailable, err)
	}
	return nil
}

// newETag returns a fresh strong entity-tag (RFC 9110 §8.8.3): a random
// 26-character base32 string in quotes, unique across restarts without any
// counter to persist.
func newETag() string { return `"` + rand.Text() + `"` }

// writeHeroesFile writes doc to path durably: a temporary file in the same
// folder (so the rename stays on one file system), fsync of it, rename over
// path, then fsync of the folder so the rename itself survives a crash.
// The document is streamed record by record through a bufio.Writer, so a
// write holds one record's encoding beside the store, never a copy of the
// whole file. A document over maxBytes is errStoreFull and writes nothing
// at path. fsync is (*os.File).Sync outside tests.
func writeHeroesFile(path string, doc heroesFile, maxBytes int64, fsync func(*os.File) error) (err error) {
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
	if err = encodeHeroesFile(tmp, doc, maxBytes); err != nil {
		return fmt.Errorf("heroes: writing %s: %w", path, err)
	}
	if err = fsync(tmp); err != nil {
		return fmt.Errorf("heroes: syncing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("heroes: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("heroes: replacing %s: %w", path, err)
	}
	return syncDir(dir, fsync)
}

// encodeHeroesFile writes doc to f as the heroes file's JSON and a
// newline, one record at a time through a bufio.Writer: the same bytes as
// a json.Encoder without HTML escaping would write for the whole document.
// Past maxBytes it stops with errStoreFull (the limits keep the file
// smaller; should they ever fail to, the file must still be one the next
// start reads back).
func encodeHeroesFile(f io.Writer, doc heroesFile, maxBytes int64) error {
	e := &fileEncoder{w: bufio.NewWriterSize(f, 64<<10), max: maxBytes}
	e.enc = json.NewEncoder(&e.rec)
	e.enc.SetEscapeHTML(false) // as encodeHero: heroes are written as stored
	e.raw(`{"version":`)
	e.value(doc.Version)
	e.raw(`,"heroes":`)
	encodeList(e, doc.Heroes, e.storedHero)
	if len(doc.IdempotencyKey) > 0 {
		e.raw(`,"idempotency_keys":`)
		encodeList(e, doc.IdempotencyKey, func(r idemRecord) { e.value(r) })
	}
	e.raw("}\n")
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

// encodeList writes items as a JSON list, each written by item.
func encodeList[T any](e *fileEncoder, items []T, item func(T)) {
	e.raw("[")
	for i, v := range items {
		if i > 0 {
			e.raw(",")
		}
		item(v)
	}
	e.raw("]")
}

// fileEncoder writes the heroes file through w, encoding one value at a
// time into rec and counting the bytes written in n; err is its first
// failure, after which it writes nothing more.
type fileEncoder struct {
	w      *bufio.Writer
	rec    bytes.Buffer
	enc    *json.Encoder // writes to rec
	n, max int64
	err    error
}

// raw writes s as it is.
func (e *fileEncoder) raw(s string) {
	if e.err == nil {
		e.count(e.w.WriteString(s))
	}
}

// value writes v as JSON, without the newline json.Encoder ends it with.
func (e *fileEncoder) value(v any) {
	if e.err != nil {
		return
	}
	e.rec.Reset()
	if e.err = e.enc.Encode(v); e.err == nil {
		e.count(e.w.Write(bytes.TrimSuffix(e.rec.Bytes(), []byte("\n"))))
	}
}

// storedHero writes sh as json.Encoder would, its hero as it is: stored
// heroes are already compact (encodeHero), and compacting them again took
// half of a write's time.
func (e *fileEncoder) storedHero(sh storedHero) {
	e.raw(`{"id":`)
	e.value(sh.ID)
	e.raw(`,"etag":`)
	e.value(sh.ETag)
	e.raw(`,"hero":`)
	if e.err == nil {
		e.count(e.w.Write(sh.Hero))
	}
	e.raw("}")
}

// count adds k bytes written to n, keeping err, errStoreFull past max.
func (e *fileEncoder) count(k int, err error) {
	e.n += int64(k)
	if e.err = err; err == nil && e.n > e.max {
		e.err = fmt.Errorf("the file would be over the %d bytes it is read back with: %w", e.max, errStoreFull)
	}
}

// syncDir flushes a folder with fsync so a rename in it is durable.
// Windows cannot open a folder for syncing (and makes renames durable
// itself), so it is skipped there.
func syncDir(dir string, fsync func(*os.File) error) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("heroes: syncing folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := fsync(d); err != nil {
		return fmt.Errorf("heroes: syncing folder %s: %w", dir, err)
	}
	return nil
}

// readyProbeEvery is how often Ready tries a write while the last one
// failed: at most one write per this interval, whatever the probe rate.
const readyProbeEvery = 15 * time.Second

// Ready reports nil while the store is open and, for the file store, its
// last write succeeded. After a failed write (no space, no permission, a
// read-only or failing disk) it reports errStoreUnavailable, so a load
// balancer stops sending writes here, and at most once per readyProbeEvery
// it rewrites the file as it is: when that succeeds (the disk has room
// again) the store is ready again, as it is after any change that
// succeeds. Probes in between write nothing.
func (s *localStore) Ready(ctx context.Context) error {
	var failed error
	if err := s.read(func(*heroSet) error { failed = s.writeFailed; return nil }); err != nil || failed == nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var doc heroesFile
	now, probe := s.now(), false
	s.mu.Lock()
	if failed = s.writeFailed; failed != nil && now.Sub(s.lastProbe) >= readyProbeEvery {
		s.lastProbe, probe = now, true
		doc = s.set.fileWith("", nil, nil, nil)
	}
	s.mu.Unlock()
	if probe {
		return s.writeFile(doc)
	} else if failed != nil {
		return fmt.Errorf("%w: the last write of the heroes file failed: %w", errStoreUnavailable, failed)
	}
	return nil
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
