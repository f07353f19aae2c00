package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseObject checks the strict JSON scanner against encoding/json: what
// it accepts must be valid JSON holding an object.
func FuzzParseObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":[1,{"b":null}],"c":"\u00e9"}`, `{"a":1,"a":2}`, ` {"x":-0.5e+3} `, `[1]`, `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if parseObject(data, nil) != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("parseObject accepted %q, which encoding/json refuses: %v", data, err)
		}
		if err := checkJSON(data); err != nil {
			t.Fatalf("parseObject accepted %q, which checkJSON refuses: %v", data, err)
		}
	})
}

func TestParseObject(t *testing.T) {
	t.Parallel()
	many := func(n, dupAt, dupOf int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			name := "k" + strconv.Itoa(i)
			if i == dupAt {
				name = "k" + strconv.Itoa(dupOf)
			}
			b.WriteString(`"` + name + `":1`)
		}
		b.WriteString("}")
		return b.String()
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty object", `{}`, true},
		{"nested values of every kind", ` {"a":[1,-0.5,2e10,1E-2,true,false,null,"x\n\u00e9\"\\/"],"b":{"c":{}}} `, true},
		{"same name in sibling objects", `{"a":{"x":1},"b":{"x":1}}`, true},
		{"duplicate name", `{"a":1,"a":1}`, false},
		{"duplicate name in a nested object", `{"a":{"x":1,"x":2}}`, false},
		{"duplicate name written with an escape", `{"alg":1,"\u0061lg":2}`, false},
		{"names differing in case are different names", `{"iss":1,"ISS":2,"Iss":3}`, true},
		{"duplicate among many names", many(200, 150, 0), false},
		{"duplicate among the first 32 names", many(30, 29, 28), false},
		{"duplicate among names beyond the first 32", many(200, 150, 140), false},
		{"many distinct names", many(200, -1, 0), true},
		{"empty names", `{"":1,"a":{"":2}}`, true},
		{"duplicate empty name", `{"a":1,"":1,"":2}`, false},
		{"array at top level", `[1]`, false},
		{"string at top level", `"a"`, false},
		{"data after the object", `{} {}`, false},
		{"trailing comma", `{"a":1,}`, false},
		{"missing colon", `{"a" 1}`, false},
		{"unquoted name", `{a:1}`, false},
		{"single quotes", `{'a':1}`, false},
		{"leading zero", `{"a":01}`, false},
		{"bare minus", `{"a":-}`, false},
		{"dot without digits", `{"a":1.}`, false},
		{"exponent without digits", `{"a":1e}`, false},
		{"plus sign", `{"a":+1}`, false},
		{"NaN", `{"a":NaN}`, false},
		{"truncated literal", `{"a":tru}`, false},
		{"raw control character in a string", "{\"a\":\"x\x01\"}", false},
		{"raw newline in a string", "{\"a\":\"x\ny\"}", false},
		{"bad escape", `{"a":"\x"}`, false},
		{"short unicode escape", `{"a":"\u12"}`, false},
		{"unterminated string", `{"a":"x}`, false},
		{"unterminated object", `{"a":1`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"nesting at the limit", strings.Repeat(`{"a":`, maxJSONDepth) + `1` + strings.Repeat(`}`, maxJSONDepth), true},
		{"nesting beyond the limit", strings.Repeat(`{"a":`, maxJSONDepth+1) + `1` + strings.Repeat(`}`, maxJSONDepth+1), false},
		{"arrays beyond the limit", `{"a":` + strings.Repeat(`[`, maxJSONDepth) + strings.Repeat(`]`, maxJSONDepth) + `}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := parseObject([]byte(tc.in), nil)
			if (err == nil) != tc.ok {
				t.Fatalf("parseObject(%.60q) = %v; want ok %v", tc.in, err, tc.ok)
			}
			if tc.ok && !json.Valid([]byte(tc.in)) {
				t.Fatalf("test input %q is not valid JSON", tc.in)
			}
		})
	}
}

// TestCheckJSONErrors checks the message and byte offset of each kind of
// syntax error: hero bodies' json_invalid answers show both.
func TestCheckJSONErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in  string
		off int
		msg string
	}{
		{`{"a":1`, 6, "unexpected end of JSON input"},
		{`{"a":"x`, 7, "unexpected end of JSON input"},
		{`{"a":"\u12`, 10, "unexpected end of JSON input"},
		{`{"a" 1}`, 5, "invalid character '1', want ':' after object key"},
		{`{"a":1,}`, 7, "object key is not a string"},
		{`[1 2]`, 3, "invalid character '2', want ',' or ']'"},
		{`{"a":1 "b"}`, 7, `invalid character '"', want ',' or '}'`},
		{`[tru]`, 1, "invalid character 't' looking for beginning of value"},
		{"[\xc3]", 1, "invalid character 'Ã' looking for beginning of value"},
		{"[\"a\x01\"]", 3, "invalid control character in string"},
		{"[\"a\xffb\"]", 3, "invalid UTF-8 in string"},
		{`["\q"]`, 3, "invalid escape in string"},
		{`["\u12x4"]`, 4, `invalid \u escape in string`},
		{`[-]`, 2, "invalid character ']', want a digit"},
		{`[1.]`, 3, "invalid character ']', want a digit after the decimal point"},
		{`[1e+]`, 4, "invalid character ']', want a digit in the exponent"},
		{`{} x`, 3, "data after the JSON value"},
		{strings.Repeat("[", maxJSONDepth+1), maxJSONDepth, "nesting deeper than 32 levels"},
	}
	for _, tc := range tests {
		err := checkJSON([]byte(tc.in))
		se, ok := err.(*syntaxError)
		if !ok || se.off != tc.off || se.msg != tc.msg {
			t.Errorf("checkJSON(%q) = %v; want %q at byte %d", tc.in, err, tc.msg, tc.off)
		}
	}
}

// TestWalk checks walk gives members with their names unescaped and their
// values raw, items without names, and offsets into the whole text.
func TestWalk(t *testing.T) {
	t.Parallel()
	data := []byte(`{"a": [1, "x"], "\u0062": {"c": null}, "a": "\ud800"}`)
	var got []string
	walk(data, 0, func(m member) error {
		got = append(got, fmt.Sprintf("%s=%s@%d", m.key, m.val, m.off))
		return nil
	})
	want := []string{`a=[1, "x"]@6`, `b={"c": null}@26`, `a="\ud800"@44`}
	if !slices.Equal(got, want) {
		t.Errorf("walk(object) = %q; want %q", got, want)
	}
	got = nil
	walk(data, 6, func(m member) error {
		got = append(got, fmt.Sprintf("%s=%s@%d", m.key, m.val, m.off))
		return nil
	})
	if want := []string{`=1@7`, `="x"@10`}; !slices.Equal(got, want) {
		t.Errorf("walk(array) = %q; want %q", got, want)
	}
	if s := unquote([]byte(`"\ud800\u00e9\n"`)); s != "\ufffdé\n" {
		t.Errorf("unquote(lone surrogate, é, newline) = %q; want %q", s, "\ufffdé\n")
	}
}
