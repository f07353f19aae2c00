package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxJSONDepth is the nesting limit of JOSE headers, claim sets and key sets.
const maxJSONDepth = 32

// member is one member of a JSON object: its name, unescaped, its value as
// raw JSON, and the value's offset in the text parsed.
type member struct {
	key []byte
	val []byte
	off int
}

// parseObject checks that data is exactly one JSON object (RFC 8259), valid
// UTF-8, nested at most maxJSONDepth deep, with no duplicate member names in
// any object, and calls each (unless nil) on its top-level members in order.
// It stops at, and returns, the first error of each.
func parseObject(data []byte, each func(member) error) error {
	if !utf8.Valid(data) {
		return errors.New("not UTF-8")
	}
	s := &scanner{data: data}
	s.skipSpace()
	if s.peek() != '{' {
		return errors.New("not a JSON object")
	}
	if err := s.object(1, each); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// scanner walks JSON text; pos is the next byte to read.
type scanner struct {
	data []byte
	pos  int
}

// errJSONSyntax is any violation of the JSON grammar (RFC 8259 §2).
var errJSONSyntax = errors.New("invalid JSON")

// peek returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// skipSpace skips JSON whitespace (RFC 8259 §2).
func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value skips one JSON value nested at depth.
func (s *scanner) value(depth int) error {
	s.skipSpace()
	switch c := s.peek(); {
	case c == '{':
		return s.object(depth+1, nil)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return errJSONSyntax
}

// object reads the object at s.pos, checking its member names for
// duplicates, and calls each (unless nil) on every member.
func (s *scanner) object(depth int, each func(member) error) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deep")
	}
	var keyBuf [32][]byte // names seen, while few
	keys := keyBuf[:0]
	var many map[string]bool // names seen, once there are many
	s.pos++                  // {
	s.skipSpace()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.peek() != '"' {
			return errJSONSyntax
		}
		start := s.pos
		escaped, err := s.str()
		if err != nil {
			return err
		}
		key := s.data[start+1 : s.pos-1]
		if escaped {
			var k string
			if err := json.Unmarshal(s.data[start:s.pos], &k); err != nil {
				return errJSONSyntax
			}
			key = []byte(k)
		}
		if dup := seenKey(keys, many, key); dup {
			return fmt.Errorf("duplicate member %q", truncate(string(key), 64))
		}
		switch {
		case many != nil:
			many[string(key)] = true
		case len(keys) < cap(keys):
			keys = append(keys, key)
		default: // many names: a map keeps a 16 KiB object linear, not quadratic
			many = make(map[string]bool, 2*len(keys))
			for _, k := range keys {
				many[string(k)] = true
			}
			many[string(key)] = true
		}
		s.skipSpace()
		if s.peek() != ':' {
			return errJSONSyntax
		}
		s.pos++
		s.skipSpace()
		vstart := s.pos
		if err := s.value(depth); err != nil {
			return err
		}
		if each != nil {
			if err := each(member{key: key, val: s.data[vstart:s.pos], off: vstart}); err != nil {
				return err
			}
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// seenKey reports whether key is among keys or many.
func seenKey(keys [][]byte, many map[string]bool, key []byte) bool {
	if many != nil {
		return many[string(key)]
	}
	for _, k := range keys {
		if string(k) == string(key) {
			return true
		}
	}
	return false
}

// array skips the array at s.pos.
func (s *scanner) array(depth int) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deep")
	}
	s.pos++ // [
	s.skipSpace()
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// str skips the string at s.pos and reports whether it holds an escape.
func (s *scanner) str() (escaped bool, err error) {
	d := s.data
	for i := s.pos + 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			s.pos = i + 1
			return escaped, nil
		case c < 0x20:
			return false, errJSONSyntax
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				return false, errJSONSyntax
			}
			i++
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d) || !isHex(d[i+1]) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) {
					return false, errJSONSyntax
				}
				i += 4
			default:
				return false, errJSONSyntax
			}
		}
	}
	return false, errJSONSyntax
}

// isHex reports whether c is a hexadecimal digit.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number skips a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return errJSONSyntax
	}
	if s.peek() == '.' {
		s.pos++
		if s.digits() == 0 {
			return errJSONSyntax
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if s.digits() == 0 {
			return errJSONSyntax
		}
	}
	return nil
}

// digits skips decimal digits and returns how many it skipped.
func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

// literal skips lit (true, false or null), which must come next.
func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return errJSONSyntax
	}
	s.pos += len(lit)
	return nil
}
