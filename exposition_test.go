package main

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The Prometheus text exposition format (version 0.0.4), checked by hand:
// what a scraper would refuse, and what would make the numbers lie.

var (
	metricNamePattern = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNamePattern  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// sample is one parsed sample line.
type sample struct {
	name   string
	labels map[string]string
	value  float64
	line   int
}

// parseExposition checks text against the text format and returns its
// samples keyed by their line as written (name and label set), or the
// problems found. It checks: UTF-8 ending in a line feed; HELP and TYPE at
// most once per family, TYPE (counter, gauge, histogram, summary, untyped)
// before the family's first sample; metric and label names, label values
// escaped (\\, \", \n only), no label twice; values as Go floats, +Inf,
// -Inf or NaN; a family's samples together; no series twice; counters not
// negative; each histogram series with _bucket lines of rising le ending in
// +Inf, cumulative counts that never fall, the +Inf count equal to _count,
// and a _sum.
func parseExposition(text string) (map[string]float64, []string) {
	var problems []string
	bad := func(n int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("line %d: ", n)+fmt.Sprintf(format, args...))
	}
	if !utf8.ValidString(text) || !strings.HasSuffix(text, "\n") {
		return nil, []string{"not UTF-8 ending in a line feed"}
	}
	types, helps, done := map[string]string{}, map[string]bool{}, map[string]bool{}
	series := map[string]float64{}
	var samples []sample
	current := ""
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n++
		switch {
		case line == "":
			bad(n, "empty line")
		case strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE "):
			fields := strings.SplitN(line[7:], " ", 2)
			name := fields[0]
			if !metricNamePattern.MatchString(name) || len(fields) < 2 {
				bad(n, "malformed %q", line)
				continue
			}
			if line[2] == 'H' {
				if helps[name] {
					bad(n, "second HELP for %s", name)
				}
				helps[name] = true
				continue
			}
			if _, dup := types[name]; dup {
				bad(n, "second TYPE for %s", name)
			}
			if done[name] || current == name {
				bad(n, "TYPE for %s after its samples", name)
			}
			if !slices.Contains([]string{"counter", "gauge", "histogram", "summary", "untyped"}, fields[1]) {
				bad(n, "unknown type %q", fields[1])
			}
			types[name] = fields[1]
		case strings.HasPrefix(line, "#"):
		default:
			s, err := parseSample(line)
			if err != nil {
				bad(n, "%v: %q", err, line)
				continue
			}
			s.line = n
			family := familyOf(s.name, types)
			if family != current {
				if done[family] {
					bad(n, "samples of %s are not together", family)
				}
				if current != "" {
					done[current] = true
				}
				current = family
			}
			if _, ok := types[family]; !ok {
				bad(n, "sample of %s before its TYPE", family)
			}
			key := line[:strings.LastIndexByte(line, ' ')]
			if _, dup := series[key]; dup {
				bad(n, "series %s twice", key)
			}
			series[key] = s.value
			if types[family] == "counter" && s.value < 0 {
				bad(n, "counter below zero")
			}
			samples = append(samples, s)
		}
	}
	problems = append(problems, checkHistograms(samples, types)...)
	return series, problems
}

// familyOf is the family a sample belongs to: its name, or for a
// histogram's or summary's _bucket, _sum and _count the name without them.
func familyOf(name string, types map[string]string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && (types[base] == "histogram" || types[base] == "summary") {
			return base
		}
	}
	return name
}

// parseSample reads `name{l="v",…} value`.
func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.name = line[:i]
	if !metricNamePattern.MatchString(s.name) {
		return s, fmt.Errorf("bad metric name")
	}
	rest := line[i:]
	if rest[0] == '{' {
		var err error
		if rest, err = parseLabels(rest[1:], s.labels); err != nil {
			return s, err
		}
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 || rest[0] != ' ' {
		return s, fmt.Errorf("not one value (and a timestamp)")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil && !slices.Contains([]string{"+Inf", "-Inf", "NaN"}, fields[0]) {
		return s, fmt.Errorf("bad value %q", fields[0])
	}
	if fields[0] == "+Inf" {
		v = math.Inf(1)
	}
	s.value = v
	return s, nil
}

// parseLabels reads `l="v",…}` into labels and returns what follows.
func parseLabels(s string, labels map[string]string) (string, error) {
	for {
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return "", fmt.Errorf("label without =\"")
		}
		name := s[:eq]
		if !labelNamePattern.MatchString(name) || strings.HasPrefix(name, "__") {
			return "", fmt.Errorf("bad label name %q", name)
		}
		if _, dup := labels[name]; dup {
			return "", fmt.Errorf("label %s twice", name)
		}
		var b strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				if i+1 >= len(s) || !strings.ContainsRune(`\"n`, rune(s[i+1])) {
					return "", fmt.Errorf("bad escape in label %s", name)
				}
				i++
			} else if s[i] == '\n' {
				return "", fmt.Errorf("raw line feed in label %s", name)
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", fmt.Errorf("label %s not closed", name)
		}
		labels[name] = b.String()
		s = strings.TrimPrefix(s[i+1:], ",")
	}
}

// checkHistograms checks each histogram series: buckets with rising le
// ending in +Inf, cumulative counts that never fall, +Inf equal to _count,
// and a _sum.
func checkHistograms(samples []sample, types map[string]string) []string {
	type hist struct {
		les    []float64
		counts []float64
		count  float64
		sum    bool
		hasCnt bool
	}
	hs := map[string]*hist{}
	var order []string
	for _, s := range samples {
		family := familyOf(s.name, types)
		if types[family] != "histogram" {
			continue
		}
		rest := map[string]string{}
		for k, v := range s.labels {
			if k != "le" {
				rest[k] = v
			}
		}
		key := family + fmt.Sprint(rest)
		h := hs[key]
		if h == nil {
			h = &hist{}
			hs[key] = h
			order = append(order, key)
		}
		switch {
		case strings.HasSuffix(s.name, "_bucket"):
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err != nil {
				return []string{fmt.Sprintf("line %d: bucket without a numeric le", s.line)}
			}
			h.les, h.counts = append(h.les, le), append(h.counts, s.value)
		case strings.HasSuffix(s.name, "_sum"):
			h.sum = true
		case strings.HasSuffix(s.name, "_count"):
			h.count, h.hasCnt = s.value, true
		}
	}
	var problems []string
	for _, key := range order {
		h := hs[key]
		switch {
		case len(h.les) == 0 || !math.IsInf(h.les[len(h.les)-1], 1):
			problems = append(problems, key+": no +Inf bucket last")
		case !slices.IsSorted(h.les) || !slices.IsSorted(h.counts):
			problems = append(problems, key+": buckets not rising or counts falling")
		case !h.sum || !h.hasCnt || h.counts[len(h.counts)-1] != h.count:
			problems = append(problems, key+": _sum or _count missing, or +Inf bucket differs from _count")
		}
	}
	return problems
}

// TestExpositionChecker checks the checker refuses what a scraper refuses.
func TestExpositionChecker(t *testing.T) {
	good := "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n" +
		"# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 3\nh_sum 0.5\nh_count 3\n"
	if _, problems := parseExposition(good); len(problems) > 0 {
		t.Fatalf("good text refused: %v", problems)
	}
	tests := []struct{ name, text string }{
		{"no final line feed", "# TYPE a gauge\na 1"},
		{"sample before TYPE", "a 1\n# TYPE a gauge\n"},
		{"TYPE twice", "# TYPE a gauge\n# TYPE a gauge\na 1\n"},
		{"unknown type", "# TYPE a thing\na 1\n"},
		{"bad metric name", "# TYPE 1a gauge\n1a 1\n"},
		{"bad label name", "# TYPE a gauge\na{1x=\"v\"} 1\n"},
		{"reserved label name", "# TYPE a gauge\na{__x=\"v\"} 1\n"},
		{"bad escape", "# TYPE a gauge\na{x=\"\\t\"} 1\n"},
		{"unclosed label", "# TYPE a gauge\na{x=\"v} 1\n"},
		{"label twice", "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n"},
		{"bad value", "# TYPE a gauge\na one\n"},
		{"series twice", "# TYPE a gauge\na 1\na 2\n"},
		{"family split", "# TYPE a gauge\n# TYPE b gauge\na{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n"},
		{"negative counter", "# TYPE a_total counter\na_total -1\n"},
		{"histogram without +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram counts falling", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
		{"histogram +Inf differs from count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"},
		{"empty line", "# TYPE a gauge\n\na 1\n"},
	}
	for _, tc := range tests {
		if _, problems := parseExposition(tc.text); len(problems) == 0 {
			t.Errorf("%s: accepted %q", tc.name, tc.text)
		}
	}
}
