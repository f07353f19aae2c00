package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// The service's one JSON reader (RFC 8259). It builds nothing: it hands out
// members and items as raw JSON with their offsets, to token parsing
// (parseObject) and to hero validation (checkJSON, then walk).

// maxJSONDepth is the nesting limit of JOSE headers, claim sets, key sets and
// hero bodies: at most 32 objects and arrays inside one another.
const maxJSONDepth = 32

// member is one member of a JSON object (its name unescaped, its value raw)
// or one item of an array (key nil); off is the value's offset in the text.
type member struct {
	key, val []byte
	off      int
}

// syntaxError is text that is not JSON: what broke, worded as hero bodies'
// json_invalid answers show it, and where, in bytes from the start.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off) }

// parseObject checks that data is exactly one JSON object (RFC 8259), valid
// UTF-8, nested at most maxJSONDepth deep, with no member name given twice
// in any object (RFC 7515 §4, RFC 8725 §3.6: parsers disagree on which one
// counts; names differing in case are different names), and calls each
// (unless nil) on its top-level members in order, stopping at its error.
func parseObject(data []byte, each func(member) error) error {
	if !utf8.Valid(data) { // before any member is read, so no other error hides it
		return errors.New("not UTF-8")
	}
	s := &scanner{data: data, unique: true}
	if s.space(); s.pos == len(data) || data[s.pos] != '{' {
		return errors.New("not a JSON object")
	}
	return s.end(s.list(0, each))
}

// checkJSON checks that data is exactly one JSON value, valid UTF-8, nested
// at most maxJSONDepth deep; names may repeat. Errors are *syntaxError.
func checkJSON(data []byte) error {
	s := &scanner{data: data}
	return s.end(s.value(0))
}

// walk calls each on the members of the object, or the items of the array,
// at data[off:], which parseObject or checkJSON has checked.
func walk(data []byte, off int, each func(member) error) error {
	return (&scanner{data: data, pos: off}).list(0, each)
}

// unquote decodes the JSON string raw, which the scanner has checked; escapes
// through encoding/json, so a lone surrogate becomes U+FFFD.
func unquote(raw []byte) (s string) {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	json.Unmarshal(raw, &s) // cannot fail: the scanner checked raw
	return s
}

// scanner reads JSON text from data[pos:]; unique refuses repeated names.
type scanner struct {
	data   []byte
	pos    int
	unique bool
}

func (s *scanner) fail(msg string) error { return &syntaxError{s.pos, msg} }

func (s *scanner) eof() error { return &syntaxError{len(s.data), "unexpected end of JSON input"} }

// want is the error for a missing what: the end, or another character.
func (s *scanner) want(what string) error {
	if s.pos >= len(s.data) {
		return s.eof()
	}
	return s.fail(fmt.Sprintf("invalid character %q, want %s", rune(s.data[s.pos]), what))
}

// end returns err, or an error when more than white space follows the value.
func (s *scanner) end(err error) error {
	if s.space(); err == nil && s.pos < len(s.data) {
		return s.fail("data after the JSON value")
	}
	return err
}

func (s *scanner) skip(c byte) bool {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// space skips JSON white space (RFC 8259 §2).
func (s *scanner) space() {
	for s.pos < len(s.data) && (s.data[s.pos] == ' ' || s.data[s.pos] == '\t' || s.data[s.pos] == '\n' || s.data[s.pos] == '\r') {
		s.pos++
	}
}

// value reads one value nested in depth objects and arrays.
func (s *scanner) value(depth int) error {
	s.space()
	if s.pos >= len(s.data) {
		return s.eof()
	}
	switch c := s.data[s.pos]; {
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return s.fail(fmt.Sprintf("nesting deeper than %d levels", maxJSONDepth))
		}
		return s.list(depth, nil)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if rest := s.data[s.pos:]; len(rest) >= len(lit) && string(rest[:len(lit)]) == lit {
			s.pos += len(lit)
			return nil
		}
	}
	return s.fail(fmt.Sprintf("invalid character %q looking for beginning of value", rune(s.data[s.pos])))
}

// list reads the object or array at s.pos and calls each (unless nil) on
// every member or item.
func (s *scanner) list(depth int, each func(member) error) error {
	closing := s.data[s.pos] + 2 // in ASCII, '}' follows '{' by 2, and ']' '[' too
	var seen names
	var key []byte // stays nil in an array
	s.pos++
	if s.space(); s.skip(closing) {
		return nil
	}
	for {
		if closing == '}' { // the member's name, unescaped, and its colon
			if s.space(); s.pos < len(s.data) && s.data[s.pos] != '"' {
				return s.fail("object key is not a string")
			}
			start := s.pos
			escaped, err := s.str()
			if err != nil {
				return err
			}
			if key = s.data[start+1 : s.pos-1]; escaped {
				key = []byte(unquote(s.data[start:s.pos]))
			}
			if s.unique && seen.add(key) {
				return fmt.Errorf("duplicate member %q", truncate(string(key), 64))
			}
			if s.space(); !s.skip(':') {
				return s.want("':' after object key")
			}
		}
		s.space()
		off := s.pos
		err := s.value(depth + 1)
		if err == nil && each != nil {
			err = each(member{key, s.data[off:s.pos], off})
		}
		if err != nil {
			return err
		}
		if s.space(); !s.skip(',') {
			if s.skip(closing) {
				return nil
			}
			return s.want(fmt.Sprintf("',' or '%c'", closing))
		}
	}
}

// str reads the string at s.pos (RFC 8259 §7), whose text must be UTF-8
// (§8.1), and reports whether it holds an escape.
func (s *scanner) str() (escaped bool, err error) {
	d, i := s.data, s.pos+1
	for i < len(d) {
		switch c := d[i]; {
		case c == '"':
			s.pos = i + 1
			return escaped, nil
		case c == '\\':
			s.pos, escaped = i, true
			if err := s.escape(); err != nil {
				return false, err
			}
			i = s.pos
		case c-0x20 < utf8.RuneSelf-0x20: // printable ASCII: one test for the usual byte
			i++
		case c < 0x20:
			return false, &syntaxError{i, "invalid control character in string"}
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				return false, &syntaxError{i, "invalid UTF-8 in string"}
			}
			i += size
		}
	}
	return false, s.eof()
}

// escape reads the escape at s.pos, a backslash.
func (s *scanner) escape() error {
	d, i := s.data, s.pos
	switch {
	case i+1 >= len(d) || d[i+1] == 'u' && i+6 > len(d):
		return s.eof()
	case d[i+1] == 'u':
		if len(bytes.Trim(d[i+2:i+6], "0123456789abcdefABCDEF")) > 0 {
			return &syntaxError{i + 2, `invalid \u escape in string`}
		}
		s.pos += 6
	case strings.IndexByte(`"\/bfnrt`, d[i+1]) >= 0:
		s.pos += 2
	default:
		return &syntaxError{i + 1, "invalid escape in string"}
	}
	return nil
}

// number reads a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	s.skip('-')
	if !s.skip('0') && s.digits() == 0 {
		return s.want("a digit")
	}
	if s.skip('.') && s.digits() == 0 {
		return s.want("a digit after the decimal point")
	}
	if s.skip('e') || s.skip('E') {
		_ = s.skip('+') || s.skip('-') // an optional sign
		if s.digits() == 0 {
			return s.want("a digit in the exponent")
		}
	}
	return nil
}

func (s *scanner) digits() int {
	start := s.pos
	for s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9' {
		s.pos++
	}
	return s.pos - start
}

// names is the set of member names of one object: the first 32 in a list
// (no allocation), the rest in a map, so that many names cost linear time.
type names struct {
	few    [32][]byte
	n      int
	many   map[string]bool
	hashes uint64 // bit h%64 set for each name's hash h (add): spares comparing most names
}

// add adds key and reports whether it was there already.
func (ns *names) add(key []byte) bool {
	h := len(key) // then a hash of it, of its length and three of its bytes
	if h > 0 {
		h += int(key[0])*7 + int(key[h/2])*3 + int(key[h-1])
	}
	if bit := uint64(1) << (h % 64); ns.hashes&bit == 0 {
		ns.hashes |= bit
	} else if ns.many[string(key)] || slices.ContainsFunc(ns.few[:ns.n], func(k []byte) bool { return string(k) == string(key) }) {
		return true
	}
	switch {
	case ns.n < len(ns.few):
		ns.few[ns.n], ns.n = key, ns.n+1
	case ns.many == nil:
		ns.many = map[string]bool{string(key): true}
	default:
		ns.many[string(key)] = true
	}
	return false
}
