package main

// Idempotency-Key on POST /api/heroes/ (IETF httpapi draft "The
// Idempotency-Key HTTP Header Field", draft-ietf-httpapi-idempotency-key-header):
// a client that did not get the answer to a create (a timeout, a 503, a
// dropped connection) sends it again with the same key and gets the first
// answer instead of a second hero.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Limits of idempotency keys.
const (
	// idempotencyTTL is how long a key is remembered: the same key within
	// it gets the first answer; after it, the key is free again.
	idempotencyTTL = 24 * time.Hour
	// maxIdempotencyKeyLen bounds the Idempotency-Key value, in characters.
	maxIdempotencyKeyLen = 255
	// maxIdempotencyKeys bounds the keys a memory or file store remembers
	// in all, and maxCallerIdempotencyKeys those of one caller. A caller
	// at its own bound forgets its own oldest key; when all keys together
	// are at their bound (or take a quarter of the store's bytes, see
	// localStore.limits), the caller holding the most keys forgets its
	// oldest. So a caller creating many keys never makes another caller's
	// retry create a duplicate, unless that caller holds as many keys.
	maxIdempotencyKeys       = 10_000
	maxCallerIdempotencyKeys = 1_000
)

// idempotencyKey is an Idempotency-Key as a store keeps it: ID is the hex
// SHA-256 of the caller and the key (idempotencyKeyOf), so one caller's key
// never finds another caller's answer and no key is stored as sent;
// Caller is 32 hex digits of a SHA-256 of the caller alone, by which the
// local stores count each caller's keys; Fingerprint is the hex SHA-256 of
// the request's hero (heroFingerprint).
type idempotencyKey struct {
	ID, Caller, Fingerprint string
}

// idemRecord is the first answer to a create made under an idempotency key:
// the hero's id, its ETag ("" when it could not be learnt: the table store
// lost the answer of the write and the hero has changed since) and its JSON
// as the answer's body, when the key was first used (seconds since the
// Unix epoch), and the key's Caller ("" in files written before callers
// were recorded; the table store leaves it empty). It is also the record
// format of the heroes file's idempotency_keys.
type idemRecord struct {
	Key         string          `json:"key"`
	Fingerprint string          `json:"fingerprint"`
	HeroID      string          `json:"hero_id"`
	ETag        string          `json:"etag"`
	Hero        json.RawMessage `json:"hero"`
	Created     int64           `json:"created"`
	Caller      string          `json:"caller,omitempty"`
}

// live reports whether r is still remembered at now (younger than
// idempotencyTTL).
func (r idemRecord) live(now time.Time) bool {
	return now.Sub(time.Unix(r.Created, 0)) < idempotencyTTL
}

// errIdempotencyMismatch is CreateOnce's error for a key used before with
// another hero; it is answered 422.
var errIdempotencyMismatch = errors.New("heroes: idempotency key used with another request body")

// errBadIdempotencyKey is a malformed Idempotency-Key field; it is answered
// 400.
var errBadIdempotencyKey = errors.New("heroes: malformed Idempotency-Key")

// idempotencyKeyOf reads the Idempotency-Key field of r: nil when there is
// none. The draft makes it a Structured Field String (RFC 8941 §3.3.3, such
// as "8e03978e-40d5-43e8-bc93-6894a57f9324"); the bare form many clients
// send (8e03978e-…) is read too, as the same key. The key is 1 to
// maxIdempotencyKeyLen printable ASCII characters; anything else, or the
// field given twice, is errBadIdempotencyKey. caller names who is calling
// (nil: everyone is one caller), and the key is bound to it. The
// Fingerprint is left for the caller to fill.
func idempotencyKeyOf(r *http.Request, caller func(*http.Request) string) (*idempotencyKey, error) {
	values := r.Header.Values("Idempotency-Key")
	if len(values) == 0 {
		return nil, nil
	} else if len(values) > 1 {
		return nil, fmt.Errorf("%w: given %d times", errBadIdempotencyKey, len(values))
	}
	key, ok := strings.TrimSpace(values[0]), true
	if strings.HasPrefix(key, `"`) {
		key, ok = unquoteSFString(key)
	} else {
		ok = !strings.ContainsAny(key, "\"\\ \t")
	}
	if !ok || key == "" || len(key) > maxIdempotencyKeyLen ||
		strings.ContainsFunc(key, func(c rune) bool { return c < 0x20 || c > 0x7e }) {
		return nil, fmt.Errorf("%w: not 1 to %d printable ASCII characters, or a String", errBadIdempotencyKey, maxIdempotencyKeyLen)
	}
	who := ""
	if caller != nil {
		who = caller(r)
	}
	sum := sha256.Sum256([]byte(who + "\x00" + key))
	whoSum := sha256.Sum256([]byte("caller\x00" + who))
	return &idempotencyKey{ID: hex.EncodeToString(sum[:]), Caller: hex.EncodeToString(whoSum[:16])}, nil
}

// unquoteSFString decodes a Structured Field String (RFC 8941 §3.3.3):
// DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE, with nothing after
// it (no parameters).
func unquoteSFString(s string) (string, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i++
		case c == '"':
			return b.String(), i == len(s)-1
		case c == '\\':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false // no closing quote
}

// heroFingerprint is the hex SHA-256 of h's JSON without its id: the same
// hero however the body spelled it (white space, member order, lax values
// such as "5" for 5). errHeroTooLarge when the hero cannot be stored.
func heroFingerprint(h hero) (string, error) {
	h.ID = ""
	data, err := encodeHero(h)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// writeIdempotentCreate answers a create made under an idempotency key from
// its record: 201 with Location, the ETag when known and the hero as it was
// first answered; a replayed answer also carries Idempotent-Replayed: true.
func writeIdempotentCreate(w http.ResponseWriter, rec idemRecord, replay bool) {
	w.Header().Set("Location", "/api/heroes/"+rec.HeroID)
	if rec.ETag != "" {
		w.Header().Set("ETag", etagHeader(rec.ETag))
	}
	if replay {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusCreated, rec.Hero)
}

// idempotencyMismatchAnswer is the 422 for a key used before with another
// body (the draft's answer for a reused key), in the validation shape.
var idempotencyMismatchAnswer = apiError{Detail: []fieldError{{
	Loc:  []any{"header", "Idempotency-Key"},
	Msg:  "This Idempotency-Key was used in the last 24 hours with a different request body; use a new key for a new hero",
	Type: "idempotency_key_reused",
}}}

// badIdempotencyKeyDetail is the 400 answer to a malformed Idempotency-Key.
const badIdempotencyKeyDetail = `Idempotency-Key must be one field holding 1 to 255 printable ASCII characters, as a String such as "8e03978e-40d5-43e8-bc93-6894a57f9324" or bare`
