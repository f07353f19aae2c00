package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a hero request. Sizes are bytes, lengths are Unicode characters
// (runes) or list items.
const (
	maxBodyBytes   = 1 << 20       // 1 MiB request body, else 413
	maxStringRunes = 200           // every string field
	maxListItems   = 100           // every list field
	maxProblems    = 100           // validation problems reported in one 422
	maxIntValue    = math.MaxInt32 // upper bound of open-ended integers (hit points, offset…), portable to 32-bit int

	// maxSafeInt is the largest integer a JSON number carries exactly to a
	// JavaScript client (2^53-1); larger ones are refused as unparseable.
	maxSafeInt int64 = 1<<53 - 1

	// maxInputEcho bounds the input member of a validation problem, in
	// bytes of JSON: a longer value is echoed cut (see echoInput).
	maxInputEcho = 256

	// maxObjectMembers bounds the names validation reads per JSON object:
	// far more than any object of the hero model has (the hero itself has
	// 21 names), so only a body that already breaks the rules with unknown
	// members reaches it. Later new names are dropped unreported.
	maxObjectMembers = 256
)

// fieldError is one validation problem in FastAPI's (pydantic v2's) 422
// shape: where (loc, starting with "body" or "query"), a sentence (msg), a
// machine name (type, pydantic's names such as "missing", "int_type",
// "extra_forbidden", "json_invalid"), the offending value as sent (input,
// cut by echoInput; for "missing" the object it is missing from, null when
// there is no body) and the rule's parameters (ctx).
type fieldError struct {
	Loc   []any           `json:"loc"`
	Msg   string          `json:"msg"`
	Type  string          `json:"type"`
	Input json.RawMessage `json:"input"`
	Ctx   map[string]any  `json:"ctx,omitempty"`
}

// echoInput is the input member of a problem with the raw JSON value v, as
// sent: v itself when it is at most maxInputEcho bytes; else a string value
// with at most maxStringRunes characters, decoded, and any longer value cut
// and ending in "…": a string value to its first maxStringRunes
// characters, any other value to a string of the first maxInputEcho bytes
// of its JSON text. nil (JSON null) when there is no value.
func echoInput(v []byte) json.RawMessage {
	if len(v) <= maxInputEcho {
		return v
	}
	cut, whole := "", false
	if v[0] == '"' {
		cut, whole = stringPrefix(v, maxStringRunes)
	} else {
		n := maxInputEcho
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		cut = string(v[:n])
	}
	if !whole {
		cut += "…"
	}
	b, _ := json.Marshal(cut) // a string: Marshal cannot fail
	return b
}

// validationError is a request that parsed but broke rules: a 422 listing
// every problem (at most maxProblems).
type validationError []fieldError

// Error counts the problems; the list itself is the 422 body.
func (e validationError) Error() string {
	return fmt.Sprintf("heroes: %d validation problems", len(e))
}

// requestError is a request refused before validation, with its status:
// 408 (body not in time), 413 (body too large) or 415 (not JSON).
type requestError struct {
	status int
	detail string
}

// Error is the detail, lowercased, with the heroes: prefix.
func (e *requestError) Error() string { return "heroes: " + strings.ToLower(e.detail) }

// decodeHero reads a hero from a JSON request body: Content-Type must be
// application/json (charset utf-8 allowed), the body at most maxBodyBytes,
// exactly one JSON value (checkJSON), then validated by validateHero. Errors
// are *requestError (408, 413, 415) or validationError (422);
// writeDecodeError answers either.
func decodeHero(w http.ResponseWriter, r *http.Request) (hero, error) {
	if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return hero{}, err
	}
	data, status, err := readBody(w, r, maxBodyBytes)
	switch status {
	case http.StatusRequestEntityTooLarge:
		return hero{}, &requestError{status, fmt.Sprintf("Request body is larger than %d bytes", maxBodyBytes)}
	case http.StatusRequestTimeout:
		return hero{}, &requestError{status, "The request body did not arrive in time; send it again"}
	}
	if err != nil {
		return hero{}, validationError{{Loc: []any{"body"}, Msg: "Could not read the request body", Type: "body_read", Input: nil}}
	}
	// A leading UTF-8 byte order mark is dropped, as Starlette's json.loads
	// of the body's bytes does (it detects the encoding, BOM included);
	// positions in json_invalid count from after it, as Python's do.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if len(bytes.TrimSpace(data)) == 0 {
		return hero{}, validationError{{Loc: []any{"body"}, Msg: "Field required", Type: "missing", Input: nil}}
	}
	if se := (*syntaxError)(nil); errors.As(checkJSON(data), &se) {
		return hero{}, validationError{jsonInvalid(data, se)}
	}
	h, problems := validateHero(data)
	if len(problems) > 0 {
		return hero{}, validationError(problems)
	}
	return h, nil
}

// stringPrefix decodes the first max characters of the JSON string v
// (which checkJSON has accepted), reading no more of v than they take: a
// character is at most 12 bytes of JSON (a surrogate pair of \u escapes).
// The cut falls between escapes, never inside one. whole reports that the
// string has no more characters.
func stringPrefix(v []byte, max int) (prefix string, whole bool) {
	end := min(len(v)-1, 1+12*max) // after the opening quote
	i := 1
	for i < end {
		n := 1
		if v[i] == '\\' {
			n = 2
			if v[i+1] == 'u' {
				n = 6
			}
		}
		if i+n > end {
			break
		}
		i += n
	}
	s := unquote(append(append([]byte{}, v[:i]...), '"'))
	for j := range s {
		if max == 0 {
			return s[:j], false
		}
		max--
	}
	return s, i == len(v)-1
}

// checkJSONContentType accepts application/json with no parameter or a
// utf-8 charset (RFC 8259 §8.1: JSON is UTF-8), and no Content-Type at all,
// which FastAPI reads as JSON too; anything else is a 415.
func checkJSONContentType(ct string) error {
	if strings.TrimSpace(ct) == "" {
		return nil
	}
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

// jsonInvalid is a checkJSON error in FastAPI's json_invalid shape: loc
// ["body", offset], the offset in characters (Unicode code points, each
// byte of invalid UTF-8 counting as one) from 0, as Python's json module
// reports it in JSONDecodeError.pos; line and column count from 1, the
// column in characters too.
func jsonInvalid(data []byte, e *syntaxError) fieldError {
	before := data[:e.off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	column := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fieldError{
		Loc:   []any{"body", utf8.RuneCount(before)},
		Msg:   "JSON decode error",
		Type:  "json_invalid",
		Input: json.RawMessage("{}"), // what FastAPI sends for a body that is not JSON
		Ctx:   map[string]any{"error": fmt.Sprintf("%s (line %d, column %d)", e.msg, line, column), "line": line, "column": column},
	}
}

// checker collects validation problems, up to maxProblems (the rest are
// dropped so a hostile body cannot make a huge answer).
type checker struct {
	problems []fieldError
}

// add records a problem at loc with the offending raw JSON value input.
func (c *checker) add(loc []any, input []byte, typ, msg string, ctx map[string]any) {
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, fieldError{Loc: loc, Msg: msg, Type: typ, Input: echoInput(input), Ctx: ctx})
	}
}

// at returns loc extended by one step, never sharing loc's array.
func at(loc []any, step any) []any { return append(slices.Clip(loc), step) }

// object checks that v (raw JSON) is an object holding only the allowed
// names (pydantic's extra="forbid"), reporting each unknown name once, in
// sorted order. Of a name given twice the last value counts, as in FastAPI.
func (c *checker) object(loc []any, v []byte, allowed ...string) fields {
	if v[0] != '{' {
		c.add(loc, v, "model_attributes_type", "Input should be a valid dictionary or object to extract fields from", nil)
		return fields{c: c, loc: loc}
	}
	m := map[string][]byte{}
	walk(v, 0, func(mb member) error {
		if _, seen := m[string(mb.key)]; seen || len(m) < maxObjectMembers {
			m[string(mb.key)] = mb.val
		}
		return nil
	})
	var extra []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		c.add(at(loc, k), m[k], "extra_forbidden", "Extra inputs are not permitted", nil)
	}
	return fields{c: c, loc: loc, m: m, raw: v}
}

// fields reads the members of one JSON object, as raw JSON; m is nil when
// the value was not an object (its problem is already recorded, so members
// are not).
type fields struct {
	c   *checker
	loc []any
	m   map[string][]byte
	raw []byte // the object's JSON, the input of a "missing" problem
}

// get returns the member key. A missing member is reported when required;
// null counts as present (the type check decides).
func (f fields) get(key string, required bool) ([]byte, []any, bool) {
	if f.m == nil {
		return nil, nil, false
	}
	v, ok := f.m[key]
	if !ok {
		if required {
			f.c.add(at(f.loc, key), f.raw, "missing", "Field required", nil)
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
	if !ok || string(v) == "null" {
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
	n, _ := f.c.laxInt(loc, v, lo, hi)
	return n
}

// flag reads an optional boolean member; absent gives false.
func (f fields) flag(key string) bool {
	v, loc, ok := f.get(key, false)
	if !ok {
		return false
	}
	b, _ := f.c.boolValue(loc, v)
	return b
}

// list reads a list member of at most maxListItems items, calling item for
// each, and reports whether it was present and a list. null is accepted
// (as absent) only when nullable.
func (f fields) list(key string, required, nullable bool, item func(loc []any, v []byte)) bool {
	v, loc, ok := f.get(key, required)
	if !ok || nullable && string(v) == "null" {
		return false
	}
	if v[0] != '[' {
		f.c.add(loc, v, "list_type", "Input should be a valid list", nil)
		return false
	}
	n := 0
	walk(v, 0, func(member) error { n++; return nil })
	if n > maxListItems {
		f.c.add(loc, v, "too_long", fmt.Sprintf("List should have at most %d items after validation, not %d", maxListItems, n),
			map[string]any{"field_type": "List", "max_length": maxListItems, "actual_length": n})
		return false
	}
	i := 0
	walk(v, 0, func(m member) error {
		item(at(loc, i), m.val)
		i++
		return nil
	})
	return true
}

// strList reads a list of strings; a missing optional list gives [].
func (f fields) strList(key string, required bool) []string {
	out := []string{}
	f.list(key, required, false, func(loc []any, v []byte) {
		s, _ := f.c.stringValue(loc, v)
		out = append(out, s)
	})
	return out
}

// text decodes v when it is a JSON string (isStr); long reports more than
// maxStringRunes characters. A character takes at most 12 bytes of JSON (a
// surrogate pair of \u escapes), so a longer text is long unread, and a
// hostile body costs no copy of its strings.
func text(v []byte) (s string, long, isStr bool) {
	if v[0] != '"' {
		return "", false, false
	}
	if len(v) > 12*maxStringRunes+2 {
		return "", true, true
	}
	s = unquote(v)
	return s, utf8.RuneCountInString(s) > maxStringRunes, true
}

// isNumber reports whether the raw JSON value v is a number.
func isNumber(v []byte) bool { return v[0] == '-' || '0' <= v[0] && v[0] <= '9' }

// stringValue checks v is a string of at most maxStringRunes characters.
func (c *checker) stringValue(loc []any, v []byte) (string, bool) {
	s, long, isStr := text(v)
	if !isStr {
		c.add(loc, v, "string_type", "Input should be a valid string", nil)
		return "", false
	}
	if long {
		c.add(loc, v, "string_too_long", fmt.Sprintf("String should have at most %d characters", maxStringRunes), map[string]any{"max_length": maxStringRunes})
		return "", false
	}
	return s, true
}

// boolValue checks v is a boolean as pydantic v2's lax mode reads one
// (Conversion Table, bool): true or false; the numbers 0 and 1 (1.0 too);
// or, in any letter case, one of the strings "true", "t", "yes", "y", "on",
// "1" and "false", "f", "no", "n", "off", "0". Another number or string is
// bool_parsing, any other JSON value bool_type.
func (c *checker) boolValue(loc []any, v []byte) (bool, bool) {
	s, _, isStr := text(v)
	switch {
	case string(v) == "true" || string(v) == "false":
		return v[0] == 't', true
	case isNumber(v):
		if f, err := strconv.ParseFloat(string(v), 64); err == nil && (f == 0 || f == 1) {
			return f == 1, true
		}
	case isStr:
		switch strings.ToLower(s) {
		case "true", "t", "yes", "y", "on", "1":
			return true, true
		case "false", "f", "no", "n", "off", "0":
			return false, true
		}
	default:
		c.add(loc, v, "bool_type", "Input should be a valid boolean", nil)
		return false, false
	}
	c.add(loc, v, "bool_parsing", "Input should be a valid boolean, unable to interpret input", nil)
	return false, false
}

// laxInt checks v is an integer between lo and hi inclusive, read as
// pydantic v2's lax mode reads an int (Conversion Table, int): a JSON
// number (intValue); true and false as 1 and 0; or a string of at most
// maxStringRunes characters holding an integer (laxIntString; anything else
// is int_parsing). Any other JSON value is int_type.
func (c *checker) laxInt(loc []any, v []byte, lo, hi int) (int, bool) {
	s, long, isStr := text(v)
	switch {
	case isStr:
		if n, ok := laxIntString(s); ok && !long {
			return c.intValue(loc, v, n, lo, hi)
		}
		c.add(loc, v, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", nil)
		return 0, false
	case string(v) == "true":
		return c.intValue(loc, v, "1", lo, hi)
	case string(v) == "false":
		return c.intValue(loc, v, "0", lo, hi)
	case isNumber(v):
		return c.intValue(loc, v, json.Number(v), lo, hi)
	}
	c.add(loc, v, "int_type", "Input should be a valid integer", nil)
	return 0, false
}

// intValue checks the JSON number num, read from the raw JSON value input,
// is an integer between lo and hi inclusive: 3.0 and 1e2 are integers; 2.5
// is int_from_float; a number beyond ±(2^53-1), which JavaScript clients
// could not hold exactly, is refused as int_parsing_size.
func (c *checker) intValue(loc []any, input []byte, num json.Number, lo, hi int) (int, bool) {
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(num), 64)
		switch {
		case ferr == nil && f != math.Trunc(f):
			c.add(loc, input, "int_from_float", "Input should be a valid integer, got a number with a fractional part", nil)
			return 0, false
		case ferr != nil || math.Abs(f) > float64(maxSafeInt):
			c.add(loc, input, "int_parsing_size", fmt.Sprintf("Input integer should be between -%d and %d", maxSafeInt, maxSafeInt), nil)
			return 0, false
		}
		n = int64(f)
	}
	if n > maxSafeInt || n < -maxSafeInt {
		c.add(loc, input, "int_parsing_size", fmt.Sprintf("Input integer should be between -%d and %d", maxSafeInt, maxSafeInt), nil)
		return 0, false
	}
	if n < int64(lo) {
		c.add(loc, input, "greater_than_equal", fmt.Sprintf("Input should be greater than or equal to %d", lo), map[string]any{"ge": lo})
		return 0, false
	}
	if n > int64(hi) {
		c.add(loc, input, "less_than_equal", fmt.Sprintf("Input should be less than or equal to %d", hi), map[string]any{"le": hi})
		return 0, false
	}
	return int(n), true
}

// laxIntString reads a string as pydantic v2's lax mode reads a string
// for an int field: surrounding whitespace is ignored; then an optional
// sign and decimal digits, with single underscores allowed between digits
// (as Python's int() allows) and leading zeros allowed; then optionally a
// "." followed only by zeros ("5.", "5.00"). "5.5", "1e2", "0x1f", "" and
// " " are not integers. It returns the integer as JSON number text (sign
// "-" or none, digits only) for intValue's range checks.
func laxIntString(s string) (json.Number, bool) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '.'); i >= 0 {
		if strings.Trim(s[i+1:], "0") != "" {
			return "", false
		}
		s = s[:i]
	}
	sign := ""
	switch {
	case strings.HasPrefix(s, "-"):
		sign, s = "-", s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return "", false
	}
	digits := strings.ReplaceAll(s, "_", "")
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return "", false
		}
	}
	// Leading zeros would make the text an invalid JSON number; they do
	// not change the value.
	if trimmed := strings.TrimLeft(digits, "0"); trimmed != "" {
		digits = trimmed
	} else {
		digits, sign = "0", ""
	}
	return json.Number(sign + digits), true
}

// Names of the skill proficiencies, in skillProficiencies' order.
var skillNames = []string{
	"acrobatics", "animal_handling", "arcana", "athletics", "deception", "history",
	"insight", "intimidation", "investigation", "medicine", "nature", "perception",
	"performance", "persuasion", "religion", "sleight_of_hand", "stealth", "survival",
}

// validateHero turns a JSON body that checkJSON accepted into a hero,
// listing every problem at once with its loc under "body". Values are read
// as pydantic v2's lax mode reads them (laxInt, boolValue; strings stay
// strict). Rules: level 1–20, ability scores 1–30, hit points, armor class
// and speed 0 to 2^31-1, spell level 0–9, strings at most 200 characters,
// lists at most 100 items, no unknown member. "class" is an alias of
// "class_"; giving both is a problem (which one would win is a guess we
// refuse to make). "id" may be sent (a client PUTting back what it read) and
// is returned in h.ID for the handler to check; create ignores it.
//
// Required: name, race, class_, level, ability_scores (all six), equipment,
// hit_points, armor_class, speed. Optional (null or absent): background,
// alignment, personality_traits, ideals, bonds, flaws, spells, and inside
// equipment weapon and armor. skill_proficiencies and each of its skills,
// and equipment.items, default to false and [] when absent.
func validateHero(data []byte) (hero, []fieldError) {
	c := &checker{}
	f := c.object([]any{"body"}, bytes.TrimSpace(data), "id", "name", "race", "class_", "class", "level", "background", "alignment",
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
		f.c.add(at(f.loc, "class"), f.m["class"], "value_error", "Value error, give class_ or its alias class, not both", nil)
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
	present := f.list("spells", false, true, func(loc []any, v []byte) {
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
