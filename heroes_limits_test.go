package main

import (
	"bytes"
	"math"
	"runtime"
	"strings"
	"testing"
)

// hostileBodies are 1 MiB request bodies shaped to make a parser allocate:
// one huge list, one huge string, many object names, lists of lists, and
// strings full of escapes.
func hostileBodies() []struct {
	name string
	body []byte
} {
	fill := func(prefix, unit, suffix string) []byte {
		n := (maxBodyBytes - len(prefix) - len(suffix)) / len(unit)
		var b bytes.Buffer
		b.WriteString(prefix)
		b.WriteString(strings.TrimSuffix(strings.Repeat(unit, n), ","))
		b.WriteString(suffix)
		return b.Bytes()
	}
	inner := "[" + strings.TrimSuffix(strings.Repeat("0,", maxListItems), ",") + "],"
	squares := func(num string) []byte {
		row := "[" + strings.TrimSuffix(strings.Repeat(num+",", maxListItems), ",") + "],"
		square := "[" + strings.TrimSuffix(strings.Repeat(row, maxListItems), ",") + "]"
		var b strings.Builder
		b.WriteString("{")
		for i := 0; b.Len()+len(square)+20 < maxBodyBytes; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"k` + itoa(i) + `":` + square)
		}
		b.WriteString("}")
		return []byte(b.String())
	}
	var keys strings.Builder
	keys.WriteString("{")
	for i := 0; keys.Len() < maxBodyBytes-20; i++ {
		if i > 0 {
			keys.WriteString(",")
		}
		keys.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i) + `":0`)
	}
	keys.WriteString("}")
	return []struct {
		name string
		body []byte
	}{
		{"one list of a million zeros", fill(`{"equipment":{"items":[`, "0,", `]}}`)},
		{"one string of a million characters", fill(`{"name":"`, "<", `"}`)},
		{"many strings of escapes", fill(`{"equipment":{"items":[`, `"\u003c\u003c\u003c\u003c",`, `]}}`)},
		{"lists of lists of numbers", fill(`{"spells":[`, inner, `]}`)},
		{"many object names", []byte(keys.String())},
		{"many names holding 100 lists of 100 numbers", squares("0")},
		{"many names holding 100 lists of 100 two-digit numbers", squares("10")},
	}
}

// itoa is strconv.Itoa without the import for one use.
func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// maxParseAllocFactor bounds the bytes parseJSON plus validateHero may
// allocate per byte of body, whatever the body's shape. The worst shape
// keeps the most values per byte: lists of one-digit numbers, where each
// kept item costs a 16-byte interface for 2 bytes of body (8x).
const maxParseAllocFactor = 10

// TestParseAllocationBounded checks that parsing and validating a hostile
// 1 MiB body allocates at most maxParseAllocFactor times its size (it was
// about 100 times for a list of zeros when the whole tree was built before
// the list limit was checked).
func TestParseAllocationBounded(t *testing.T) {
	for _, tc := range hostileBodies() {
		t.Run(tc.name, func(t *testing.T) {
			parse := func() {
				v, err := parseJSON(tc.body)
				if err != nil {
					t.Fatalf("parseJSON: %v", err)
				}
				if _, probs := validateHero(v); len(probs) == 0 {
					t.Fatal("validateHero found no problem in a hostile body")
				}
			}
			// The least of three runs, so another goroutine's allocations
			// cannot fail the test.
			got := uint64(math.MaxUint64)
			for range 3 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				parse()
				runtime.ReadMemStats(&after)
				got = min(got, after.TotalAlloc-before.TotalAlloc)
			}
			if limit := uint64(maxParseAllocFactor * len(tc.body)); got > limit {
				t.Errorf("parsing %d bytes allocated %d bytes; want at most %d", len(tc.body), got, limit)
			}
			t.Logf("%d bytes of body, %d bytes allocated (%.2fx)", len(tc.body), got, float64(got)/float64(len(tc.body)))
		})
	}
}

// BenchmarkParseHostile reports the allocation of parsing each hostile body.
func BenchmarkParseHostile(b *testing.B) {
	for _, tc := range hostileBodies() {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				v, _ := parseJSON(tc.body)
				validateHero(v)
			}
		})
	}
}
