package main

import (
	"encoding/json"
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
	})
}

func TestParseObject(t *testing.T) {
	t.Parallel()
	many := func(n int, dupAt int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			name := "k" + strconv.Itoa(i)
			if i == dupAt {
				name = "k0"
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
		{"duplicate among many names", many(200, 150), false},
		{"many distinct names", many(200, -1), true},
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
