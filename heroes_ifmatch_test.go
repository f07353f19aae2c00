package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// azureETag is an entity-tag as the table store hands it out: Azure Table
// Storage's W/"datetime'…'" in its strong form (apiETag).
const azureETag = `"datetime'2026-11-30T11%3A03%3A03.1234567Z'"`

// TestParseIfMatch checks how the If-Match field lines become one list of
// entity-tags (RFC 9110 §13.1.1, §5.3, §8.8.3).
func TestParseIfMatch(t *testing.T) {
	tests := []struct {
		name    string
		lines   []string // nil: no If-Match at all
		want    []string
		wantErr bool
	}{
		{"absent is no precondition", nil, nil, false},
		{"star", []string{"*"}, []string{"*"}, false},
		{"one strong tag", []string{`"abc"`}, []string{`"abc"`}, false},
		{"an Azure tag is kept exactly", []string{azureETag}, []string{azureETag}, false},
		{"a weak tag is kept exactly", []string{"W/" + azureETag}, []string{"W/" + azureETag}, false},
		{"a list on one line", []string{`"a", "b" ,"c"`}, []string{`"a"`, `"b"`, `"c"`}, false},
		{"every line is read", []string{`"a"`, `"b"`}, []string{`"a"`, `"b"`}, false},
		{"an empty line does not hide the next", []string{"", `"stale"`}, []string{`"stale"`}, false},
		{"empty list elements are skipped", []string{`, "a",,`}, []string{`"a"`}, false},
		{"a comma inside quotes belongs to the tag", []string{`"a,b"`}, []string{`"a,b"`}, false},
		{"empty field is malformed", []string{""}, nil, true},
		{"only commas is malformed", []string{" , ,"}, nil, true},
		{"unquoted tag is malformed", []string{"abc"}, nil, true},
		{"unterminated tag is malformed", []string{`"abc`}, nil, true},
		{"lowercase weak prefix is malformed", []string{`w/"abc"`}, nil, true},
		{"tags without a comma are malformed", []string{`"a" "b"`}, nil, true},
		{"star with tags is malformed", []string{`*, "a"`}, nil, true},
		{"space inside a tag is malformed", []string{`"a b"`}, nil, true},
		{"too many tags are malformed", []string{strings.Repeat(`"a",`, maxIfMatchTags+1)}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tc.lines {
				h.Add("If-Match", l)
			}
			got, err := parseIfMatch(h)
			if tc.wantErr {
				if !errors.Is(err, errBadIfMatch) {
					t.Fatalf("parseIfMatch(%q) = %q, %v; want errBadIfMatch", tc.lines, got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("parseIfMatch(%q) = %q, %v; want %q", tc.lines, got, err, tc.want)
			}
		})
	}
}

// TestIfMatchThroughAPI checks PUT and DELETE with every If-Match line read
// as one list: the write goes through when any listed tag is the current
// ETag (compared as the exact string the ETag header gave) or "*", 409 when
// none is, 400 when If-Match is malformed.
func TestIfMatchThroughAPI(t *testing.T) {
	tests := []struct {
		name  string
		lines func(current string) []string
		want  int
	}{
		{"no If-Match", func(string) []string { return nil }, http.StatusOK},
		{"current", func(c string) []string { return []string{c} }, http.StatusOK},
		{"star", func(string) []string { return []string{"*"} }, http.StatusOK},
		{"stale", func(string) []string { return []string{`"STALE"`} }, http.StatusConflict},
		{"empty line then stale", func(string) []string { return []string{"", `"STALE"`} }, http.StatusConflict},
		{"stale and current on one line", func(c string) []string { return []string{`"STALE", ` + c} }, http.StatusOK},
		{"stale and current on two lines", func(c string) []string { return []string{`"STALE"`, c} }, http.StatusOK},
		{"weak form of the current tag", func(c string) []string { return []string{"W/" + c} }, http.StatusConflict},
		{"empty If-Match", func(string) []string { return []string{""} }, http.StatusBadRequest},
		{"unquoted", func(string) []string { return []string{"STALE"} }, http.StatusBadRequest},
	}
	for _, method := range []string{http.MethodPut, http.MethodDelete} {
		for _, tc := range tests {
			t.Run(method+" "+tc.name, func(t *testing.T) {
				t.Parallel()
				s := newMemoryStore()
				h := heroMux(s)
				w := do(h, http.MethodPost, "/api/heroes/", validHeroJSON("Racer"))
				loc, current := w.Header().Get("Location"), w.Header().Get("ETag")
				body := ""
				if method == http.MethodPut {
					body = validHeroJSON("Changed")
				}
				r := httptest.NewRequest(method, loc, strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				for _, l := range tc.lines(current) {
					r.Header.Add("If-Match", l)
				}
				w = httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != tc.want {
					t.Fatalf("%s with If-Match %q (current %s) = %d %s; want %d", method, tc.lines(current), current, w.Code, w.Body, tc.want)
				}
				_, after, err := s.Get(context.Background(), strings.TrimPrefix(loc, "/api/heroes/"))
				if changed := err != nil || after != current; changed != (tc.want == http.StatusOK) {
					t.Errorf("%s answered %d but the hero changed = %v", method, w.Code, changed)
				}
			})
		}
	}
}

// azureTagStore is a heroStore for one hero whose etag has the table
// store's form; Replace and Delete record the ifMatch they get and accept
// only that etag or "*".
type azureTagStore struct {
	heroStore
	got *[]string
}

// Get returns a hero with azureETag.
func (s azureTagStore) Get(_ context.Context, id string) (hero, string, error) {
	return testHero(id, "Table"), azureETag, nil
}

// Replace records ifMatch and accepts azureETag or "*".
func (s azureTagStore) Replace(_ context.Context, _ hero, ifMatch string) (string, error) {
	*s.got = append(*s.got, ifMatch)
	if ifMatch != azureETag && ifMatch != "*" {
		return "", errHeroConflict
	}
	return azureETag, nil
}

// TestIfMatchStrongComparison checks the table store's etags go out in the
// ETag header as they are and come back through If-Match, alone or in a
// list, to the store as the same string; and that a weak tag, even the weak
// form of the current one, never matches (RFC 9110 §13.1.1 strong
// comparison): 409, and the store is never asked to write with it.
func TestIfMatchStrongComparison(t *testing.T) {
	const loc = "/api/heroes/1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	tests := []struct {
		name      string
		ifMatch   string
		want      int
		wantStore []string // the ifMatch values Replace receives
	}{
		{"the current tag matches", azureETag, http.StatusOK, []string{azureETag}},
		{"the current tag in a list matches", `"STALE", ` + azureETag, http.StatusOK, []string{azureETag}},
		{"the weak form of the current tag never matches", "W/" + azureETag, http.StatusConflict, nil},
		{"weak tags in a list never match", `W/"STALE", W/` + azureETag, http.StatusConflict, nil},
		{"a weak tag beside the current strong one is ignored", `W/"STALE", ` + azureETag, http.StatusOK, []string{azureETag}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			h := heroMux(azureTagStore{got: &got})
			if etag := do(h, http.MethodGet, loc, "").Header().Get("ETag"); etag != azureETag {
				t.Fatalf("GET ETag = %s; want %s", etag, azureETag)
			}
			if w := do(h, http.MethodPut, loc, validHeroJSON("Table"), "If-Match", tc.ifMatch); w.Code != tc.want {
				t.Errorf("PUT with If-Match %s = %d %s; want %d", tc.ifMatch, w.Code, w.Body, tc.want)
			}
			if !slices.Equal(got, tc.wantStore) {
				t.Errorf("store got If-Match %q; want %q", got, tc.wantStore)
			}
		})
	}
}

// FuzzParseIfMatch checks parseIfMatch never panics and returns only "*"
// alone or quoted entity-tags.
func FuzzParseIfMatch(f *testing.F) {
	for _, s := range []string{`"a", W/"b"`, "*", "", `"a,b"`, `W/"`, azureETag} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		tags, err := parseIfMatch(http.Header{"If-Match": {line}})
		if err != nil {
			return
		}
		for _, tag := range tags {
			if tag != "*" && !(strings.HasSuffix(tag, `"`) && (strings.HasPrefix(tag, `"`) || strings.HasPrefix(tag, `W/"`)) && len(tag) >= 2) {
				t.Fatalf("parseIfMatch(%q) gave %q", line, tag)
			}
		}
		if len(tags) == 0 || len(tags) > maxIfMatchTags || (slices.Contains(tags, "*") && len(tags) > 1) {
			t.Fatalf("parseIfMatch(%q) = %q", line, tags)
		}
	})
}
