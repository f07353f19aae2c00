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
	"unicode/utf16"
	"unicode/utf8"
)

// Limits of a hero request (issue 5). Sizes are bytes, lengths are Unicode
// characters (runes) or list items.
const (
	maxBodyBytes   = 1 << 20       // 1 MiB request body, else 413
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

// Error counts the problems; the list itself is the 422 body.
func (e validationError) Error() string {
	return fmt.Sprintf("heroes: %d validation problems", len(e))
}

// requestError is a request refused before validation, with its status:
// 413 (body too large) or 415 (not JSON).
type requestError struct {
	status int
	detail string
}

// Error is the detail, lowercased, with the heroes: prefix.
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
	// Sized from Content-Length when given (and bounded by the limit), so
	// reading costs one buffer rather than io.ReadAll's doublings.
	buf := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 0), maxBodyBytes)+bytes.MinRead))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	data := buf.Bytes()
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return hero{}, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body is larger than %d bytes", maxBodyBytes)}
	}
	if err != nil {
		return hero{}, validationError{{Loc: []any{"body"}, Msg: "Could not read the request body", Type: "body_read"}}
	}
	// A leading UTF-8 byte order mark is dropped, as Starlette's json.loads
	// of the body's bytes does (it detects the encoding, BOM included);
	// positions in json_invalid count from after it, as Python's do.
	data = bytes.TrimPrefix(data, utf8BOM)
	if len(bytes.TrimSpace(data)) == 0 {
		return hero{}, validationError{{Loc: []any{"body"}, Msg: "Field required", Type: "missing"}}
	}
	v, err := parseJSON(data)
	var se *jsonSyntaxError
	if errors.As(err, &se) {
		return hero{}, validationError{se.problem()}
	}
	if err != nil {
		return hero{}, err // parseJSON documents only *jsonSyntaxError; answered 400
	}
	h, problems := validateHero(v)
	if len(problems) > 0 {
		return hero{}, validationError(problems)
	}
	return h, nil
}

// utf8BOM is the UTF-8 encoding of U+FEFF, the byte order mark.
var utf8BOM = []byte{0xef, 0xbb, 0xbf}

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

// jsonSyntaxError is malformed JSON: what broke and where. offset is the
// position in characters (Unicode code points, each byte of invalid UTF-8
// counting as one) from 0, as Python's json module reports it in
// JSONDecodeError.pos and FastAPI in loc; line and column count from 1,
// the column in characters too.
type jsonSyntaxError struct {
	offset       int64
	line, column int
	msg          string
}

// Error says what broke and where.
func (e *jsonSyntaxError) Error() string {
	return fmt.Sprintf("heroes: json: %s at line %d, column %d", e.msg, e.line, e.column)
}

// problem is the error in FastAPI's json_invalid shape: loc ["body",
// offset], offset in characters.
func (e *jsonSyntaxError) problem() fieldError {
	return fieldError{
		Loc:  []any{"body", e.offset},
		Msg:  "JSON decode error",
		Type: "json_invalid",
		Ctx:  map[string]any{"error": fmt.Sprintf("%s (line %d, column %d)", e.msg, e.line, e.column), "line": e.line, "column": e.column},
	}
}

// newJSONSyntaxError locates the byte offset in data, as a character
// offset and a line and column.
func newJSONSyntaxError(data []byte, offset int64, msg string) *jsonSyntaxError {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line := bytes.Count(before, []byte{'\n'}) + 1
	column := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return &jsonSyntaxError{offset: int64(utf8.RuneCount(before)), line: line, column: column, msg: msg}
}

// tooLongList stands, in a parsed body, for a JSON array of more than
// maxListItems items: the parser counts its items (and checks their syntax)
// but keeps none of them, so a body of a million tiny items costs no more
// memory than one of a hundred.
type tooLongList struct{ n int }

// tooLongString stands, in a parsed body, for a JSON string of more than
// maxStringRunes characters; the parser does not keep its text.
type tooLongString struct{}

// maxObjectMembers bounds the members the parser keeps per JSON object:
// far more than any object of the hero model has (the hero itself has 21
// names), so only a body that already breaks the rules with unknown members
// reaches it. Later new names are checked for syntax and dropped.
const maxObjectMembers = 256

// parseJSON parses exactly one JSON value (RFC 8259) into map[string]any,
// []any, string, json.Number, bool or nil, with any data after the value
// refused. It applies the request limits while parsing, so memory stays a
// small multiple of len(data) whatever its shape: nesting deeper than
// maxJSONDepth is an error; an array of more than maxListItems items
// becomes tooLongList and a string of more than maxStringRunes characters
// tooLongString (validation reports both); an object keeps at most
// maxObjectMembers names. A repeated object name keeps its last value, as
// FastAPI does. Text that is not UTF-8 is an error (RFC 8259 §8.1), not
// replaced with U+FFFD. Errors are *jsonSyntaxError.
func parseJSON(data []byte) (any, error) {
	p := &jsonParser{data: data}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos < len(data) {
		return nil, p.fail("data after the JSON value")
	}
	return v, nil
}

// jsonParser is a recursive-descent JSON (RFC 8259) parser over one
// request body. It is used once, by one goroutine.
type jsonParser struct {
	data []byte
	pos  int // next byte to read
	// skipping is set while parsing values no one will keep (items past
	// maxListItems): their syntax is checked, nothing is built.
	skipping bool
	// items holds the items of the arrays being parsed, innermost last;
	// each array is copied out at its exact length when it closes, so
	// no array pays for append's spare capacity.
	items []any
	// numbers shares the interface value of each distinct short number
	// text, up to maxSharedNumbers of them.
	numbers map[string]any
}

// maxSharedNumbers bounds jsonParser.numbers.
const maxSharedNumbers = 1024

// skip parses one value at depth without building it.
func (p *jsonParser) skip(depth int) error {
	saved := p.skipping
	p.skipping = true
	_, err := p.value(depth)
	p.skipping = saved
	return err
}

// fail returns a *jsonSyntaxError at the current position.
func (p *jsonParser) fail(msg string) error {
	return newJSONSyntaxError(p.data, int64(p.pos), msg)
}

// space skips JSON whitespace (RFC 8259 §2).
func (p *jsonParser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses one value at the given nesting depth.
func (p *jsonParser) value(depth int) (any, error) {
	p.space()
	if p.pos >= len(p.data) {
		return nil, p.fail("unexpected end of JSON input")
	}
	switch c := p.data[p.pos]; {
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return nil, p.fail(fmt.Sprintf("nesting deeper than %d levels", maxJSONDepth))
		}
		if c == '{' {
			return p.object(depth)
		}
		return p.array(depth)
	case c == '"':
		return p.stringValue()
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	}
	for _, lit := range []struct {
		text string
		v    any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if bytes.HasPrefix(p.data[p.pos:], []byte(lit.text)) {
			p.pos += len(lit.text)
			return lit.v, nil
		}
	}
	return nil, p.fail(fmt.Sprintf("invalid character %q looking for beginning of value", rune(p.data[p.pos])))
}

// object parses an object; p.pos is at its '{'.
func (p *jsonParser) object(depth int) (any, error) {
	p.pos++
	var m map[string]any
	if !p.skipping {
		m = map[string]any{}
	}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return m, nil
	}
	for {
		p.space()
		if p.pos >= len(p.data) {
			return nil, p.fail("unexpected end of JSON input")
		}
		if p.data[p.pos] != '"' {
			return nil, p.fail("object key is not a string")
		}
		limit := -1
		if p.skipping {
			limit = 0
		}
		k, err := p.str(limit)
		if errors.Is(err, errStringTooLong) {
			err = nil
		}
		if err != nil {
			return nil, err
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.end("':' after object key")
		}
		p.pos++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if _, seen := m[k]; !p.skipping && (seen || len(m) < maxObjectMembers) {
			m[k] = v
		}
		if done, err := p.next('}'); done || err != nil {
			return m, err
		}
	}
}

// array parses an array; p.pos is at its '['.
func (p *jsonParser) array(depth int) (any, error) {
	p.pos++
	n := 0
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return []any{}, nil
	}
	mark := len(p.items)
	defer func() { p.items = p.items[:mark] }()
	for {
		if n++; n <= maxListItems && !p.skipping {
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			p.items = append(p.items, v)
		} else {
			if err := p.skip(depth + 1); err != nil {
				return nil, err
			}
		}
		done, err := p.next(']')
		if err != nil {
			return nil, err
		}
		if done && p.skipping {
			return nil, nil
		}
		if done && n > maxListItems {
			return tooLongList{n: n}, nil
		}
		if done {
			return slices.Clone(p.items[mark:]), nil
		}
	}
}

// next reads the ',' between members or the closing delimiter; done
// reports the closing one.
func (p *jsonParser) next(closing byte) (done bool, err error) {
	p.space()
	if p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ',':
			p.pos++
			return false, nil
		case closing:
			p.pos++
			return true, nil
		}
	}
	return false, p.end(fmt.Sprintf("',' or '%c'", closing))
}

// end is the error for a missing want: the end of input, or another byte.
func (p *jsonParser) end(want string) error {
	if p.pos >= len(p.data) {
		return p.fail("unexpected end of JSON input")
	}
	return p.fail(fmt.Sprintf("invalid character %q, want %s", rune(p.data[p.pos]), want))
}

// stringValue parses a string value: a string, or tooLongString past
// maxStringRunes characters.
func (p *jsonParser) stringValue() (any, error) {
	limit := maxStringRunes
	if p.skipping {
		limit = 0
	}
	s, err := p.str(limit)
	if p.skipping && errors.Is(err, errStringTooLong) {
		return nil, nil
	}
	if errors.Is(err, errStringTooLong) {
		return tooLongString{}, nil
	}
	return s, err
}

// errStringTooLong is str's answer for a string over its limit.
var errStringTooLong = errors.New("heroes: string too long")

// str parses a string (RFC 8259 §7); p.pos is at its opening quote. With
// limit >= 0, a string of more than limit characters is checked to its end
// but not built, and gives errStringTooLong. Raw bytes must be valid UTF-8
// (RFC 8259 §8.1); escapes, surrogate pairs included, are decoded, and a
// lone surrogate escape becomes U+FFFD as in encoding/json.
func (p *jsonParser) str(limit int) (string, error) {
	p.pos++
	start := p.pos
	var b []byte // the decoded text, built from the first escape on
	runes := 0
	for {
		kept := limit < 0 || runes <= limit
		if p.pos >= len(p.data) {
			return "", p.fail("unexpected end of JSON input")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			switch {
			case !kept:
				return "", errStringTooLong
			case b != nil:
				return string(b), nil
			}
			return string(p.data[start : p.pos-1]), nil
		case c < 0x20:
			return "", p.fail("invalid control character in string")
		case c == '\\':
			escStart := p.pos
			r, err := p.escape()
			if err != nil {
				return "", err
			}
			if kept {
				if b == nil {
					b = append([]byte{}, p.data[start:escStart]...)
				}
				b = utf8.AppendRune(b, r)
			}
		case c < utf8.RuneSelf:
			p.pos++
			if b != nil && kept {
				b = append(b, c)
			}
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.fail("invalid UTF-8 in string")
			}
			if b != nil && kept {
				b = append(b, p.data[p.pos:p.pos+size]...)
			}
			p.pos += size
		}
		runes++
		if limit >= 0 && runes > limit {
			b = nil // over the limit: stop building
		}
	}
}

// escape decodes one escape sequence; p.pos is at its backslash. A \u
// escape of a high surrogate followed by one of a low surrogate is one
// character.
func (p *jsonParser) escape() (rune, error) {
	if p.pos+1 >= len(p.data) {
		p.pos = len(p.data)
		return 0, p.fail("unexpected end of JSON input")
	}
	c := p.data[p.pos+1]
	if i := strings.IndexByte(`"\/bfnrt`, c); i >= 0 {
		p.pos += 2
		return rune("\"\\/\b\f\n\r\t"[i]), nil
	}
	if c != 'u' {
		p.pos++
		return 0, p.fail("invalid escape in string")
	}
	r, err := p.hex4()
	if err != nil || !utf16.IsSurrogate(r) {
		return r, err
	}
	if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
		save := p.pos
		r2, err := p.hex4()
		if err != nil {
			return 0, err
		}
		if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
			return dec, nil
		}
		p.pos = save // not a pair: the second escape stands on its own
	}
	return utf8.RuneError, nil
}

// hex4 reads the \uXXXX at p.pos.
func (p *jsonParser) hex4() (rune, error) {
	if p.pos+6 > len(p.data) {
		p.pos = len(p.data)
		return 0, p.fail("unexpected end of JSON input")
	}
	var r rune
	for _, c := range p.data[p.pos+2 : p.pos+6] {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			p.pos += 2
			return 0, p.fail("invalid \\u escape in string")
		}
		r = r<<4 | rune(v)
	}
	p.pos += 6
	return r, nil
}

// number parses a number (RFC 8259 §6) into a json.Number.
func (p *jsonParser) number() (any, error) {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && '0' <= p.data[p.pos] && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	more := func(set string) bool {
		if p.pos < len(p.data) && strings.IndexByte(set, p.data[p.pos]) >= 0 {
			p.pos++
			return true
		}
		return false
	}
	more("-")
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return nil, p.end("a digit")
	}
	if more(".") && digits() == 0 {
		return nil, p.end("a digit after the decimal point")
	}
	if more("eE") {
		more("+-")
		if digits() == 0 {
			return nil, p.end("a digit in the exponent")
		}
	}
	if p.skipping {
		return nil, nil
	}
	text := p.data[start:p.pos]
	if len(text) > 16 {
		return json.Number(text), nil
	}
	if v, ok := p.numbers[string(text)]; ok {
		return v, nil // a repeated number costs no allocation
	}
	v := any(json.Number(text))
	if len(p.numbers) < maxSharedNumbers {
		if p.numbers == nil {
			p.numbers = map[string]any{}
		}
		p.numbers[string(text)] = v
	}
	return v, nil
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
	b, _ := f.c.boolValue(loc, v)
	return b
}

// boolValue checks v is a boolean as pydantic v2's lax mode reads one
// (Conversion Table, bool): true or false; the numbers 0 and 1 (1.0 too);
// or, in any letter case, one of the strings "true", "t", "yes", "y", "on",
// "1" and "false", "f", "no", "n", "off", "0". Another number or string is
// bool_parsing, any other JSON value bool_type.
func (c *checker) boolValue(loc []any, v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case json.Number:
		switch f, err := strconv.ParseFloat(string(x), 64); {
		case err == nil && f == 0:
			return false, true
		case err == nil && f == 1:
			return true, true
		}
	case string:
		switch strings.ToLower(x) {
		case "true", "t", "yes", "y", "on", "1":
			return true, true
		case "false", "f", "no", "n", "off", "0":
			return false, true
		}
	case tooLongString:
	default:
		c.add(loc, "bool_type", "Input should be a valid boolean", nil)
		return false, false
	}
	c.add(loc, "bool_parsing", "Input should be a valid boolean, unable to interpret input", nil)
	return false, false
}

// list reads a list member of at most maxListItems items, calling item for
// each. A missing optional list gives ok false; null is accepted only when
// nullable.
func (f fields) list(key string, required, nullable bool, item func(loc []any, v any)) (n int, present bool) {
	v, loc, ok := f.get(key, required)
	if !ok || (v == nil && nullable) {
		return 0, false
	}
	if long, ok := v.(tooLongList); ok {
		f.c.add(loc, "too_long", fmt.Sprintf("List should have at most %d items after validation, not %d", maxListItems, long.n),
			map[string]any{"field_type": "List", "max_length": maxListItems, "actual_length": long.n})
		return 0, false
	}
	a, isList := v.([]any)
	if !isList {
		f.c.add(loc, "list_type", "Input should be a valid list", nil)
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
	_, long := v.(tooLongString)
	if !ok && !long {
		c.add(loc, "string_type", "Input should be a valid string", nil)
		return "", false
	}
	if long || utf8.RuneCountInString(s) > maxStringRunes {
		c.add(loc, "string_too_long", fmt.Sprintf("String should have at most %d characters", maxStringRunes), map[string]any{"max_length": maxStringRunes})
		return "", false
	}
	return s, true
}

// intValue checks v is an integer between lo and hi inclusive, read as
// pydantic v2's lax mode reads an int (Conversion Table, int): a JSON
// number without a fraction (3.0 and 1e2 are integers; 2.5 is
// int_from_float); true and false as 1 and 0; or a string holding an
// integer (laxIntString; anything else is int_parsing). Any other JSON value
// is int_type. A number beyond ±(2^53-1), which JavaScript clients could not
// hold exactly, is refused as int_parsing_size.
func (c *checker) intValue(loc []any, v any, lo, hi int) (int, bool) {
	var num json.Number
	switch x := v.(type) {
	case json.Number:
		num = x
	case bool:
		num = "0"
		if x {
			num = "1"
		}
	case string:
		n, ok := laxIntString(x)
		if !ok {
			c.add(loc, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", nil)
			return 0, false
		}
		num = n
	case tooLongString:
		c.add(loc, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", nil)
		return 0, false
	default:
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

// validateHero turns a parsed JSON body into a hero, listing every problem
// at once with its loc under "body". Values are read as pydantic v2's lax
// mode reads them (intValue, boolValue; strings stay strict). Rules (issue
// 5): level 1–20, ability
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
