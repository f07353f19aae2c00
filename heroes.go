package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
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
// 8-4-4-4-12 form, from crypto/rand. The dev provider's trace ids use it too.
func newHeroID() string {
	var b [16]byte
	rand.Read(b[:])         // never fails (crypto/rand documents it)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10 (RFC 9562 §4.1)
	return formatUUID(b)
}

// formatUUID writes 16 bytes in the UUID's 8-4-4-4-12 hexadecimal form.
func formatUUID(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// maxHeroJSONBytes is the size limit of one stored hero, the same for every
// store: its JSON (as encodeHero writes it) may take at most 64 KiB counted
// in UTF-16, as Azure Table Storage counts a String property ("Understanding
// the Table service data model": up to 64 KiB). That is 32,768 characters
// of ASCII, or of any character outside the astral planes. Any valid hero of
// the API's own limits fits in the request body's 1 MiB but not necessarily
// here; a larger one is refused with errHeroTooLarge (422) before any write.
const maxHeroJSONBytes = 64 << 10

// encodeHero returns h's JSON as every store keeps it, or errHeroTooLarge
// when it is over maxHeroJSONBytes. Every store encodes through it, so the
// limit is checked in this one place. HTML characters (<, >, &) are written
// as themselves, not as \u003c…: stored heroes are only ever sent as
// application/json with X-Content-Type-Options: nosniff, where escaping buys
// nothing and would make a hero full of "<" six times its size.
func encodeHero(h hero) ([]byte, error) {
	return encodeHeroTo(new(bytes.Buffer), h)
}

// encodeHeroTo is encodeHero into buf, emptied first: the JSON returned
// shares buf's memory, so a caller encoding many heroes reuses one buffer.
func encodeHeroTo(buf *bytes.Buffer, h hero) ([]byte, error) {
	buf.Reset()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(h); err != nil {
		return nil, fmt.Errorf("heroes: encoding hero %s: %w", h.ID, err)
	}
	data := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if n := utf16Bytes(string(data)); n > maxHeroJSONBytes {
		return nil, fmt.Errorf("heroes: hero JSON is %d bytes of UTF-16, over %d: %w", n, maxHeroJSONBytes, errHeroTooLarge)
	}
	return data, nil
}

// utf16Bytes is the size of s in UTF-16, the unit of the Table service's
// limits.
func utf16Bytes(s string) int {
	n := 0
	for _, r := range s {
		n += 2 * utf16.RuneLen(r)
	}
	return n
}

// heroStore keeps heroes. Implementations are safe for concurrent use.
// List returns heroes ordered by id. Get, Replace and Delete return
// errHeroNotFound for an unknown id. etag is an opaque version string of the
// stored hero; Replace and Delete with a non-empty ifMatch fail with
// errHeroConflict when the stored version differs. Any failure to reach the
// backing store wraps errStoreUnavailable (maps to 503); an answer of the
// backing store that makes no sense (a refusal the store cannot explain, a
// malformed or oversized answer) wraps errStoreBadAnswer (maps to 502).
//
// More precisely, for every implementation:
//   - etag is a strong HTTP entity-tag (RFC 9110 §8.8.3), quotes included
//     (`"…"`, never `W/"…"`), so handlers send it in ETag unchanged and pass
//     one entity-tag of the request's If-Match, exactly as sent, to Replace
//     and Delete (parseIfMatch, ifMatchFor); ifMatch matches when it is the
//     very string the store gave (strong comparison, RFC 9110 §13.1.1: a
//     weak tag never matches), or "*" for any stored version; a change
//     always gives a new etag;
//   - List skips offset heroes and returns at most limit, never nil;
//     ListAfter returns at most limit heroes whose id sorts after after
//     ("" for the first), never nil, without reading the heroes before it
//     (a walk through every hero costs each hero once, not once a page);
//     ListJSON returns the same heroes, each as encodeHero writes it (the
//     local stores keep that JSON, so a list answer decodes nothing; it may
//     be the store's own copy: read only);
//   - Create fails with errHeroConflict when h.ID is already stored;
//   - Replace and Delete of an unknown id give errHeroNotFound whatever
//     ifMatch holds;
//   - a hero the store cannot hold gives errHeroTooLarge (maps to 422);
//   - a create or a growing replace that would take the store past its
//     size bound gives errStoreFull (maps to 507) and changes nothing;
//   - CreateOnce is Create under an idempotency key: unless key.ID was
//     used within idempotencyTTL it creates h and remembers the answer
//     (replay false); otherwise it creates nothing and returns the first
//     answer (replay true), or errIdempotencyMismatch when that one was for
//     another key.Fingerprint. The key lives where the heroes do, so
//     replicas of a shared store agree and durable stores keep it across a
//     restart; a create that failed, or whose answer was lost, and is
//     retried with its key never stores h twice.
type heroStore interface {
	List(ctx context.Context, offset, limit int) ([]hero, error)
	ListAfter(ctx context.Context, after string, limit int) ([]hero, error)
	ListJSON(ctx context.Context, offset, limit int) ([]json.RawMessage, error)
	Get(ctx context.Context, id string) (h hero, etag string, err error)
	Create(ctx context.Context, h hero) (etag string, err error)
	CreateOnce(ctx context.Context, h hero, key idempotencyKey) (rec idemRecord, replay bool, err error)
	Replace(ctx context.Context, h hero, ifMatch string) (etag string, err error)
	Delete(ctx context.Context, id string, ifMatch string) error
	Ready(ctx context.Context) error
	Close() error
}

// Errors of every heroStore, matched with errors.Is; writeStoreError maps
// them to 404, 409, 422, 507, 503 and 502.
var (
	errHeroNotFound     = errors.New("heroes: hero not found")
	errHeroConflict     = errors.New("heroes: hero was changed by someone else")
	errHeroTooLarge     = errors.New("heroes: hero is too large for the store")
	errStoreUnavailable = errors.New("heroes: store unavailable")
	errStoreFull        = errors.New("heroes: store is full")
	errStoreBadAnswer   = errors.New("heroes: store gave an unexpected answer")
)

// storeOptions choose and place the hero store; the service fills them from
// HEROES_STORE, HEROES_FILE, AZURE_STORAGE_CONNECTION_STRING and HEROES_TABLE.
type storeOptions struct {
	Kind             string // "memory" (or ""), "file" or "azuretable"
	File             string // the file store's JSON file
	ConnectionString string // the table store's Azure Storage connection string; never logged
	Table            string // the table store's table name
	// MaxBytes bounds the memory and file stores in bytes of the heroes
	// file (localStore.setMaxBytes): 0 is defaultMaxStoreBytes (64 MiB);
	// values above maxHeroesFile (256 MiB) are lowered to it. A heroes
	// file already larger stops the file store's start.
	MaxBytes int64
	// TokenSource gets an Entra access token for storageResource, used by
	// the table store when ConnectionString has no AccountKey; nil when
	// there is none. It must be safe for concurrent use and cache tokens.
	TokenSource func(ctx context.Context) (string, error)
}

// openStore opens the store opts.Kind selects: "memory" (empty, lost at
// exit), "file" (opts.File, see openFileStore) or "azuretable"
// (openTableStore). Errors name the store and, for the file store, the file.
func openStore(ctx context.Context, opts storeOptions, client *http.Client, logger *slog.Logger) (heroStore, error) {
	switch opts.Kind {
	case "memory", "":
		logger.Info("heroes: in-memory store; heroes are lost at exit")
		s := newMemoryStore()
		s.setMaxBytes(opts.MaxBytes)
		return s, nil
	case "file":
		s, err := openFileStore(opts.File, opts.MaxBytes)
		if err != nil {
			return nil, err
		}
		logger.Info("heroes: file store", "file", opts.File, "heroes", s.count(), "stale_temporary_files", s.staleTemps)
		if s.staleErr != nil {
			logger.Warn("heroes: stale temporary files left in place", "err", s.staleErr)
		}
		if s.duplicateKeys > 0 {
			logger.Warn("heroes: the file held an idempotency key more than once; kept the latest record of each, the next change rewrites it",
				"file", opts.File, "dropped_records", s.duplicateKeys)
		}
		return s, nil
	case "azuretable":
		return openTableStore(ctx, opts.ConnectionString, opts.Table, client, logger, opts.TokenSource)
	default:
		return nil, fmt.Errorf("heroes: unknown store %q", opts.Kind)
	}
}

// List paging: ?limit= defaults to 100, at most 1000; ?offset= defaults
// to 0.
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
		input, _ := json.Marshal(raw) // a string: Marshal cannot fail
		n, perr := strconv.ParseInt(raw, 10, 64)
		if perr != nil {
			if errors.Is(perr, strconv.ErrRange) {
				c.add(loc, input, "int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size", nil)
			} else {
				c.add(loc, input, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", nil)
			}
			return def
		}
		v, _ := c.intValue(loc, input, json.Number(strconv.FormatInt(n, 10)), lo, hi)
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
// 409 for a stale If-Match, 422 for a hero too large for the store, 507
// Insufficient Storage (RFC 4918 §11.5) when the store is full, 503 with
// Retry-After when the store is unavailable (unreachable, throttling, busy),
// 502 when it gave an answer that makes no sense (RFC 9110 §15.6.3: an
// invalid response from an upstream server), 500 otherwise. The storage
// error is logged, never sent.
func writeStoreError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	switch {
	case errors.Is(err, errHeroNotFound):
		writeError(w, http.StatusNotFound, "Hero not found")
	case errors.Is(err, errHeroConflict):
		writeError(w, http.StatusConflict, "The hero was changed since you read it: its ETag no longer matches If-Match. GET it again, re-apply your change and retry")
	case errors.Is(err, errHeroTooLarge):
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Detail: []fieldError{{
			Loc:  []any{"body"},
			Msg:  fmt.Sprintf("The hero is too large for the store: its JSON may take at most %d bytes counted in UTF-16 (%d ASCII characters); shorten its lists or strings", maxHeroJSONBytes, maxHeroJSONBytes/2),
			Type: "too_large",
			Ctx:  map[string]any{"max_bytes": maxHeroJSONBytes},
		}}})
	case errors.Is(err, errStoreFull):
		// Not a 503: the store stays full until heroes are deleted, so a
		// Retry-After would only invite retries that cannot succeed.
		logger.WarnContext(r.Context(), "heroes: store full", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInsufficientStorage, "The hero store is full; nothing was changed. Delete heroes you no longer need, or ask the operator for room")
	case errors.Is(err, errStoreUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		logger.WarnContext(r.Context(), "heroes: store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "The hero store is unavailable; try again shortly")
	case errors.Is(err, errStoreBadAnswer):
		logger.ErrorContext(r.Context(), "heroes: store gave an unexpected answer", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusBadGateway, "The hero store gave an unexpected answer")
	default:
		logger.ErrorContext(r.Context(), "heroes: store failed", "method", r.Method, "path", r.URL.Path, "err", err)
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

// maxIfMatchTags bounds the entity-tags one request may list in If-Match.
const maxIfMatchTags = 32

// errBadIfMatch is an If-Match field that is not "*" or a list of
// entity-tags; it is answered 400.
var errBadIfMatch = errors.New("heroes: malformed If-Match")

// parseIfMatch reads the If-Match precondition (RFC 9110 §13.1.1) from
// every If-Match field line of h, combined into one comma-separated list as
// RFC 9110 §5.3 says a recipient may. It returns nil when there is no
// If-Match, []string{"*"} for "*", and otherwise the entity-tags (§8.8.3:
// [W/]"…") exactly as sent, weak prefix and quotes included, because
// stores compare them as opaque strings against the etag they gave (see
// heroStore). Empty list elements are skipped (§5.6.1). Anything else is
// errBadIfMatch: a field with no entity-tag, "*" together with tags, text
// that is not an entity-tag, or more than maxIfMatchTags tags.
func parseIfMatch(h http.Header) ([]string, error) {
	lines, present := h["If-Match"]
	if !present {
		return nil, nil
	}
	var tags []string
	for _, line := range lines {
		for rest := line; ; {
			rest = strings.TrimLeft(rest, " \t,")
			if rest == "" {
				break
			}
			tag, after, ok := cutEntityTag(rest)
			if !ok {
				return nil, fmt.Errorf("%w: %q is not an entity-tag", errBadIfMatch, rest)
			}
			if after = strings.TrimLeft(after, " \t"); after != "" && after[0] != ',' {
				return nil, fmt.Errorf("%w: no comma after %s", errBadIfMatch, tag)
			}
			if tags = append(tags, tag); len(tags) > maxIfMatchTags {
				return nil, fmt.Errorf("%w: more than %d entity-tags", errBadIfMatch, maxIfMatchTags)
			}
			rest = after
		}
	}
	switch {
	case len(tags) == 0:
		return nil, fmt.Errorf("%w: no entity-tag", errBadIfMatch)
	case slices.Contains(tags, "*") && len(tags) > 1:
		return nil, fmt.Errorf("%w: * with other entity-tags", errBadIfMatch)
	}
	return tags, nil
}

// cutEntityTag cuts one list element off the front of s: "*" or an
// entity-tag, [W/] DQUOTE *etagc DQUOTE where etagc is any visible
// character but DQUOTE, or obs-text (RFC 9110 §8.8.3). A comma is an etagc,
// so it ends an element only outside the quotes.
func cutEntityTag(s string) (tag, rest string, ok bool) {
	if strings.HasPrefix(s, "*") {
		return "*", s[1:], true
	}
	open := 0
	if strings.HasPrefix(s, "W/") {
		open = 2
	}
	if len(s) <= open || s[open] != '"' {
		return "", "", false
	}
	for i := open + 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[:i+1], s[i+1:], true
		case c < 0x21 || c == 0x7f:
			return "", "", false
		}
	}
	return "", "", false // no closing quote
}

// ifMatchFor turns the If-Match list of a request into the one ifMatch a
// heroStore takes: "" when there is no precondition, "*", or a single
// entity-tag. If-Match uses the strong comparison (RFC 9110 §13.1.1), so
// weak tags (W/"…") are dropped first: they never match, whatever the
// store. When one tag is left it goes to the store as it is; otherwise it
// reads the hero's current etag and passes it on if listed, so the store's
// own check still makes the write conditional on that version (a change in
// between is a conflict); if none is listed (or only weak tags were) the
// answer is errHeroConflict, and errHeroNotFound when the hero does not
// exist.
func ifMatchFor(ctx context.Context, store heroStore, id string, tags []string) (string, error) {
	if len(tags) == 0 {
		return "", nil
	}
	strong := slices.DeleteFunc(slices.Clone(tags), func(tag string) bool { return strings.HasPrefix(tag, "W/") })
	if len(strong) == 1 {
		return strong[0], nil
	}
	_, current, err := store.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if !slices.Contains(strong, current) {
		return "", fmt.Errorf("%w: none of %d If-Match entity-tags matches the current one strongly", errHeroConflict, len(tags))
	}
	return current, nil
}

// badIfMatchDetail is the 400 answer to a malformed If-Match.
const badIfMatchDetail = `If-Match must be * or a comma-separated list of entity-tags such as "abc", as the ETag header gives them (RFC 9110 §13.1.1; a weak W/"abc" is well-formed but never matches)`

// heroID reads the {id} path value. Only a UUID can name a hero, so anything
// else is answered 404 here (the hero cannot exist; FastAPI's original gave
// 404 too) without asking the store. UUIDs are compared in lowercase, the
// form newHeroID makes (RFC 9562 §4: hex digits are case-insensitive on
// input).
func heroID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !isGUID(id) {
		writeError(w, http.StatusNotFound, "Hero not found")
		return "", false
	}
	return strings.ToLower(id), true
}

// heroArray writes a 200 answer holding a JSON array of heroes one hero at
// a time, so an answer is never held in memory whole: the status and
// headers go first, then "[", each hero (encoded as writeJSON does, without
// HTML escaping), and "]" from close. Once the status is sent a failure can
// no longer become an error answer, so abort cuts the answer off (see
// there). Not safe for concurrent use; one handler owns it.
type heroArray struct {
	w   http.ResponseWriter
	buf bytes.Buffer
	enc *json.Encoder // made by the first add
	n   int           // heroes written
	err error         // the first write error; later writes are skipped
}

// startHeroArray sends the status 200, Content-Type and "[".
func startHeroArray(w http.ResponseWriter) *heroArray {
	a := &heroArray{w: w}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	a.write([]byte("["))
	return a
}

// add writes one hero. It reports false once writing has failed (the
// client has gone), so the caller can stop early.
func (a *heroArray) add(h hero) bool {
	if a.enc == nil {
		a.enc = json.NewEncoder(&a.buf)
		a.enc.SetEscapeHTML(false)
	}
	a.buf.Reset()
	if err := a.enc.Encode(h); err != nil && a.err == nil {
		a.err = fmt.Errorf("heroes: encoding hero %s: %w", h.ID, err)
	}
	return a.addJSON(bytes.TrimSuffix(a.buf.Bytes(), []byte("\n")))
}

// addJSON is add for a hero encoded as encodeHero does.
func (a *heroArray) addJSON(data []byte) bool {
	if a.err != nil {
		return false
	}
	if a.n > 0 {
		a.write([]byte(","))
	}
	a.write(data)
	a.n++
	return a.err == nil
}

func (a *heroArray) write(b []byte) {
	if a.err == nil {
		_, a.err = a.w.Write(b)
	}
}

func (a *heroArray) close() { a.write([]byte("]\n")) }

// abort ends an answer that cannot be completed after its 200 was sent,
// such as the store failing on a later page: it logs err and panics with
// http.ErrAbortHandler, which makes net/http drop the connection (HTTP/1.1,
// without the final chunk) or reset the stream (HTTP/2). The client thus
// sees a broken answer, never a valid-looking but incomplete list.
func (a *heroArray) abort(logger *slog.Logger, r *http.Request, err error) {
	logger.ErrorContext(r.Context(), "heroes: answer cut off after its status was sent", "method", r.Method, "path", r.URL.Path, "heroes_sent", a.n, "err", err)
	panic(http.ErrAbortHandler)
}

// handleHeroList serves GET /api/heroes/ (and /api/heroes): 200 with a JSON
// list of heroes ordered by id, ?limit= (default 100, 1 to 1000) and
// ?offset= (default 0); 422 for bad paging values. Needs Heroes.Read. The
// page is read from the store in one call (one consistent view), as the
// JSON it keeps (ListJSON), and written hero by hero (heroArray).
func handleHeroList(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offset, limit, err := parsePaging(r.URL.Query())
		if err != nil {
			writeDecodeError(w, err)
			return
		}
		heroes, err := store.ListJSON(r.Context(), offset, limit)
		if err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		a := startHeroArray(w)
		for _, h := range heroes {
			if !a.addJSON(h) {
				return // the client has gone
			}
		}
		a.close()
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
// Heroes.Create. With an Idempotency-Key (idempotencyKeyOf; 400 when
// malformed) bound to the caller callerID names, the same key and hero
// within idempotencyTTL get the first answer again and create nothing, and
// the same key with another hero gets 422 (heroStore.CreateOnce).
func handleHeroCreate(logger *slog.Logger, store heroStore, callerID func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := idempotencyKeyOf(r, callerID)
		if err != nil {
			writeError(w, http.StatusBadRequest, badIdempotencyKeyDetail)
			return
		}
		h, err := decodeHero(w, r)
		if err != nil {
			writeDecodeError(w, err)
			return
		}
		if key != nil {
			createOnce(w, r, logger, store, h, *key)
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

// createOnce is handleHeroCreate under the idempotency key key.
func createOnce(w http.ResponseWriter, r *http.Request, logger *slog.Logger, store heroStore, h hero, key idempotencyKey) {
	var err error
	if key.Fingerprint, err = heroFingerprint(h); err == nil {
		h.ID = newHeroID()
		var rec idemRecord
		var replay bool
		if rec, replay, err = store.CreateOnce(r.Context(), h, key); err == nil {
			writeIdempotentCreate(w, rec, replay)
			return
		}
	}
	if errors.Is(err, errIdempotencyMismatch) {
		writeJSON(w, http.StatusUnprocessableEntity, idempotencyMismatchAnswer)
		return
	}
	writeStoreError(w, r, logger, err)
}

// conditionalTarget reads what PUT and DELETE act on: the hero id of the
// path (404 when malformed, see heroID) and the request's If-Match list (400
// when malformed). ok is false when an error answer was written.
func conditionalTarget(w http.ResponseWriter, r *http.Request) (id string, tags []string, ok bool) {
	if id, ok = heroID(w, r); !ok {
		return "", nil, false
	}
	tags, err := parseIfMatch(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, badIfMatchDetail)
		return "", nil, false
	}
	return id, tags, true
}

// handleHeroReplace serves PUT /api/heroes/{id}: 200 with the replaced hero
// and its new ETag; 404 when absent; 409 when If-Match (RFC 9110 §13.1.1,
// every field line read as one list) is given and lists neither "*" nor the
// current ETag; 400 for a malformed If-Match; 413, 415 or 422 for a bad
// body. An id in the body must equal the path's. Needs Heroes.Create.
func handleHeroReplace(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, tags, ok := conditionalTarget(w, r)
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
		ifMatch, err := ifMatchFor(r.Context(), store, id, tags)
		if err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		etag, err := store.Replace(r.Context(), h, ifMatch)
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
// given and lists neither "*" nor the current ETag; 400 for a malformed
// If-Match. Needs Admin.
func handleHeroDelete(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, tags, ok := conditionalTarget(w, r)
		if !ok {
			return
		}
		ifMatch, err := ifMatchFor(r.Context(), store, id, tags)
		if err == nil {
			err = store.Delete(r.Context(), id, ifMatch)
		}
		if err != nil {
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
// match. Needs Heroes.Read. The store is read a page of maxLimit heroes at
// a time, each page from the last id of the one before (ListAfter), so the
// walk reads each hero once; matches are written as they are found
// (heroArray), so memory holds one page, not every hero. A store failure
// on the first page is the usual error answer; on a later one the 200 is
// already sent, so the answer is cut off (heroArray.abort).
func handleFireballLowAC(logger *slog.Logger, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, err := store.ListAfter(r.Context(), "", maxLimit)
		if err != nil {
			writeStoreError(w, r, logger, err)
			return
		}
		a := startHeroArray(w)
		for {
			for _, h := range page {
				if knowsFireballLowAC(h) && !a.add(h) {
					return // the client has gone
				}
			}
			if len(page) < maxLimit {
				break
			}
			if page, err = store.ListAfter(r.Context(), page[len(page)-1].ID, maxLimit); err != nil {
				a.abort(logger, r, err)
			}
		}
		a.close()
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
