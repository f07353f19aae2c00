package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testHero returns a valid hero with the given id and name, with a spell and
// equipment so a store's round trip of nested values is exercised.
func testHero(id, name string) hero {
	bg, align := "Sage", "Neutral Good"
	weapon := "Quarterstaff"
	return hero{
		ID: id, Name: name, Race: "Elf", Class: "Wizard", Level: 5,
		Background: &bg, Alignment: &align,
		AbilityScores:      abilityScores{Strength: 8, Dexterity: 14, Constitution: 12, Intelligence: 18, Wisdom: 13, Charisma: 10},
		SkillProficiencies: skillProficiencies{Arcana: true, History: true},
		Equipment:          equipment{Weapon: &weapon, Items: []string{"Spellbook", "Component pouch"}},
		Spells: []spell{{
			Name: "Fireball", Level: 3, CastingTime: "1 action", Range: "150 feet",
			Components: []string{"V", "S", "M"}, Duration: "Instantaneous",
		}},
		HitPoints: 27, ArmorClass: 12, Speed: 30,
	}
}

// testHeroStore is the conformance suite every heroStore passes: memory and
// file here (TestStores), the Azure Table store in tablestore_test.go. open
// must return a new, empty store each time it is called; the suite closes
// it when the subtest ends.
func testHeroStore(t *testing.T, open func(t *testing.T) heroStore) {
	ctx := context.Background()
	newStore := func(t *testing.T) heroStore {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
		})
		return s
	}
	mustCreate := func(t *testing.T, s heroStore, h hero) string {
		t.Helper()
		etag, err := s.Create(ctx, h)
		if err != nil {
			t.Fatalf("Create(%s) = %v", h.ID, err)
		}
		if etag == "" {
			t.Fatalf("Create(%s) gave an empty etag", h.ID)
		}
		return etag
	}
	// createSorted creates n heroes and returns their ids in order.
	createSorted := func(t *testing.T, s heroStore, n int) []string {
		t.Helper()
		var ids []string
		for i := range n {
			h := testHero(newHeroID(), fmt.Sprintf("Hero %d", i))
			mustCreate(t, s, h)
			ids = append(ids, h.ID)
		}
		slices.Sort(ids)
		return ids
	}

	tests := []struct {
		name string
		run  func(t *testing.T, s heroStore)
	}{
		{"ready when open", func(t *testing.T, s heroStore) {
			if err := s.Ready(ctx); err != nil {
				t.Fatalf("Ready() = %v; want nil", err)
			}
		}},
		{"create then get returns the same hero and etag", func(t *testing.T, s heroStore) {
			want := testHero(newHeroID(), "Gandalf")
			etag := mustCreate(t, s, want)
			got, gotTag, err := s.Get(ctx, want.ID)
			if err != nil {
				t.Fatalf("Get() = %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Get() = %+v; want %+v", got, want)
			}
			if gotTag != etag {
				t.Errorf("Get() etag = %q; want the Create etag %q", gotTag, etag)
			}
		}},
		{"get of an unknown id is not found", func(t *testing.T, s heroStore) {
			if _, _, err := s.Get(ctx, newHeroID()); !errors.Is(err, errHeroNotFound) {
				t.Fatalf("Get(unknown) = %v; want errHeroNotFound", err)
			}
		}},
		{"create of an existing id conflicts", func(t *testing.T, s heroStore) {
			h := testHero(newHeroID(), "Twin")
			mustCreate(t, s, h)
			if _, err := s.Create(ctx, h); !errors.Is(err, errHeroConflict) {
				t.Fatalf("Create(same id) = %v; want errHeroConflict", err)
			}
		}},
		{"caller cannot change a stored hero through its slices", func(t *testing.T, s heroStore) {
			h := testHero(newHeroID(), "Aliased")
			mustCreate(t, s, h)
			h.Spells[0].Name = "Changed"
			h.Equipment.Items[0] = "Changed"
			got, _, err := s.Get(ctx, h.ID)
			if err != nil {
				t.Fatalf("Get() = %v", err)
			}
			if got.Spells[0].Name != "Fireball" || got.Equipment.Items[0] != "Spellbook" {
				t.Errorf("stored hero changed through the caller's slices: %+v", got)
			}
		}},
		{"create once stores one hero and replays its first answer", func(t *testing.T, s heroStore) {
			key := idempotencyKey{ID: strings.Repeat("a1", 32), Fingerprint: "fp-1"}
			first := testHero(newHeroID(), "Once")
			rec, replay, err := s.CreateOnce(ctx, first, key)
			if err != nil || replay || rec.HeroID != first.ID || rec.ETag == "" {
				t.Fatalf("first CreateOnce() = %+v, %v, %v; want a new record for %s with an etag", rec, replay, err, first.ID)
			}
			_, etag, err := s.Get(ctx, first.ID)
			if err != nil || etag != rec.ETag {
				t.Fatalf("Get() = %q, %v; want the record's etag %q", etag, err, rec.ETag)
			}
			// The retry is a new request: its hero got another fresh id.
			again, replay, err := s.CreateOnce(ctx, testHero(newHeroID(), "Once"), key)
			if err != nil || !replay || again.HeroID != first.ID || again.ETag != rec.ETag || string(again.Hero) != string(rec.Hero) {
				t.Fatalf("retried CreateOnce() = %+v, %v, %v; want the first record replayed", again, replay, err)
			}
			if got, err := s.List(ctx, 0, 10); err != nil || len(got) != 1 {
				t.Errorf("List() = %d heroes, %v; want the one created once", len(got), err)
			}
		}},
		{"create once with the key of another body is a mismatch", func(t *testing.T, s heroStore) {
			key := idempotencyKey{ID: strings.Repeat("b2", 32), Fingerprint: "fp-1"}
			if _, _, err := s.CreateOnce(ctx, testHero(newHeroID(), "First"), key); err != nil {
				t.Fatal(err)
			}
			key.Fingerprint = "fp-2"
			if _, _, err := s.CreateOnce(ctx, testHero(newHeroID(), "Other"), key); !errors.Is(err, errIdempotencyMismatch) {
				t.Fatalf("CreateOnce(same key, other body) = %v; want errIdempotencyMismatch", err)
			}
			if got, _ := s.List(ctx, 0, 10); len(got) != 1 {
				t.Errorf("List() = %d heroes; want 1", len(got))
			}
		}},
		{"create once replays the first answer after the hero changed", func(t *testing.T, s heroStore) {
			key := idempotencyKey{ID: strings.Repeat("c3", 32), Fingerprint: "fp"}
			h := testHero(newHeroID(), "Before")
			rec, _, err := s.CreateOnce(ctx, h, key)
			if err != nil {
				t.Fatal(err)
			}
			h.Name = "After"
			if _, err := s.Replace(ctx, h, ""); err != nil {
				t.Fatal(err)
			}
			again, replay, err := s.CreateOnce(ctx, testHero(newHeroID(), "Before"), key)
			if err != nil || !replay || string(again.Hero) != string(rec.Hero) || !strings.Contains(string(again.Hero), `"Before"`) {
				t.Errorf("CreateOnce() after a change = %s, %v, %v; want the first answer", again.Hero, replay, err)
			}
		}},
		{"create once with other keys makes other heroes", func(t *testing.T, s heroStore) {
			for i := range 3 {
				key := idempotencyKey{ID: fmt.Sprintf("%064x", i+1), Fingerprint: "fp"}
				if _, replay, err := s.CreateOnce(ctx, testHero(newHeroID(), "Same"), key); err != nil || replay {
					t.Fatalf("CreateOnce(key %d) = %v, %v", i, replay, err)
				}
			}
			if got, _ := s.List(ctx, 0, 10); len(got) != 3 {
				t.Errorf("List() = %d heroes; want 3", len(got))
			}
		}},
		{"list is ordered by id and pages with offset and limit", func(t *testing.T, s heroStore) {
			ids := createSorted(t, s, 7)
			for _, p := range []struct{ offset, limit int }{{0, 100}, {0, 3}, {2, 3}, {5, 10}, {6, 1}, {7, 5}, {100, 5}} {
				got, err := s.List(ctx, p.offset, p.limit)
				if err != nil {
					t.Fatalf("List(%d, %d) = %v", p.offset, p.limit, err)
				}
				if got == nil {
					t.Errorf("List(%d, %d) = nil; want a non-nil slice", p.offset, p.limit)
				}
				want := ids[min(p.offset, len(ids)):min(p.offset+p.limit, len(ids))]
				if gotIDs := heroIDs(got); !slices.Equal(gotIDs, want) {
					t.Errorf("List(%d, %d) ids = %v; want %v", p.offset, p.limit, gotIDs, want)
				}
				js, err := s.ListJSON(ctx, p.offset, p.limit)
				if err != nil || js == nil || len(js) != len(got) {
					t.Fatalf("ListJSON(%d, %d) = %d heroes, %v; want List's %d", p.offset, p.limit, len(js), err, len(got))
				}
				for i := range js {
					if data, _ := encodeHero(got[i]); string(js[i]) != string(data) {
						t.Errorf("ListJSON(%d, %d)[%d] = %s; want List's hero as encodeHero writes it, %s", p.offset, p.limit, i, js[i], data)
					}
				}
			}
		}},
		{"list after an id pages by key", func(t *testing.T, s heroStore) {
			ids := createSorted(t, s, 5)
			between := ids[1][:35] + "z" // after ids[1], before ids[2] unless they share 35 characters
			if between >= ids[2] {
				between = ids[1]
			}
			for _, p := range []struct {
				after string
				limit int
				want  []string
			}{
				{"", 100, ids}, {"", 2, ids[:2]}, {ids[0], 2, ids[1:3]}, {between, 10, ids[2:]},
				{ids[4], 10, []string{}}, {"ffffffff-ffff-4fff-bfff-ffffffffffff", 3, []string{}}, {"", 0, []string{}},
			} {
				got, err := s.ListAfter(ctx, p.after, p.limit)
				if err != nil || got == nil {
					t.Fatalf("ListAfter(%q, %d) = %v, %v; want a non-nil slice", p.after, p.limit, got, err)
				}
				if gotIDs := heroIDs(got); !slices.Equal(gotIDs, p.want) {
					t.Errorf("ListAfter(%q, %d) ids = %v; want %v", p.after, p.limit, gotIDs, p.want)
				}
			}
		}},
		{"list of an empty store is empty, not nil", func(t *testing.T, s heroStore) {
			got, err := s.List(ctx, 0, 100)
			if err != nil || got == nil || len(got) != 0 {
				t.Fatalf("List() = %v, %v; want [], nil", got, err)
			}
			if js, err := s.ListJSON(ctx, 0, 100); err != nil || js == nil || len(js) != 0 {
				t.Fatalf("ListJSON() = %v, %v; want [], nil", js, err)
			}
		}},
		{"replace stores the new hero under a new etag", func(t *testing.T, s heroStore) {
			h := testHero(newHeroID(), "Before")
			old := mustCreate(t, s, h)
			h.Name, h.Spells, h.Level = "After", nil, 6
			etag, err := s.Replace(ctx, h, "")
			if err != nil {
				t.Fatalf("Replace() = %v", err)
			}
			if etag == "" || etag == old {
				t.Errorf("Replace() etag = %q; want a new one (old %q)", etag, old)
			}
			got, gotTag, err := s.Get(ctx, h.ID)
			if err != nil || !reflect.DeepEqual(got, h) || gotTag != etag {
				t.Errorf("Get() = %+v, %q, %v; want %+v, %q", got, gotTag, err, h, etag)
			}
		}},
		{"replace of an unknown id is not found, with or without If-Match", func(t *testing.T, s heroStore) {
			for _, ifMatch := range []string{"", "*", `"stale"`} {
				if _, err := s.Replace(ctx, testHero(newHeroID(), "Ghost"), ifMatch); !errors.Is(err, errHeroNotFound) {
					t.Errorf("Replace(unknown, %q) = %v; want errHeroNotFound", ifMatch, err)
				}
			}
		}},
		{"replace honours If-Match", func(t *testing.T, s heroStore) {
			h := testHero(newHeroID(), "Versioned")
			v1 := mustCreate(t, s, h)
			h.Level = 6
			v2, err := s.Replace(ctx, h, v1)
			if err != nil {
				t.Fatalf("Replace(current etag) = %v", err)
			}
			h.Level = 7
			if _, err := s.Replace(ctx, h, v1); !errors.Is(err, errHeroConflict) {
				t.Fatalf("Replace(stale etag) = %v; want errHeroConflict", err)
			}
			if got, _, _ := s.Get(ctx, h.ID); got.Level != 6 {
				t.Errorf("after a stale Replace level = %d; want 6 (unchanged)", got.Level)
			}
			if _, err := s.Replace(ctx, h, "*"); err != nil {
				t.Errorf("Replace(*) = %v; want nil", err)
			}
			if _, err := s.Replace(ctx, h, v2); !errors.Is(err, errHeroConflict) {
				t.Errorf("Replace(etag before the * replace) = %v; want errHeroConflict", err)
			}
		}},
		{"a hero over the size limit is refused before any write", func(t *testing.T, s heroStore) {
			big := testHero(newHeroID(), "Hoarder")
			for range 40 {
				big.Equipment.Items = append(big.Equipment.Items, strings.Repeat("<", 1000))
			}
			if _, err := s.Create(ctx, big); !errors.Is(err, errHeroTooLarge) {
				t.Fatalf("Create(%d-byte hero) = %v; want errHeroTooLarge", maxHeroJSONBytes+1, err)
			}
			if _, _, err := s.Get(ctx, big.ID); !errors.Is(err, errHeroNotFound) {
				t.Errorf("Get(refused hero) = %v; want errHeroNotFound", err)
			}
			small := testHero(big.ID, "Hoarder")
			mustCreate(t, s, small)
			if _, err := s.Replace(ctx, big, ""); !errors.Is(err, errHeroTooLarge) {
				t.Fatalf("Replace(too large) = %v; want errHeroTooLarge", err)
			}
			if got, _, err := s.Get(ctx, big.ID); err != nil || !reflect.DeepEqual(got, small) {
				t.Errorf("Get() after a refused Replace = %+v, %v; want the hero unchanged", got, err)
			}
		}},
		{"delete removes the hero once", func(t *testing.T, s heroStore) {
			h := testHero(newHeroID(), "Doomed")
			mustCreate(t, s, h)
			if err := s.Delete(ctx, h.ID, ""); err != nil {
				t.Fatalf("Delete() = %v", err)
			}
			if _, _, err := s.Get(ctx, h.ID); !errors.Is(err, errHeroNotFound) {
				t.Errorf("Get(deleted) = %v; want errHeroNotFound", err)
			}
			if err := s.Delete(ctx, h.ID, ""); !errors.Is(err, errHeroNotFound) {
				t.Errorf("Delete(deleted) = %v; want errHeroNotFound", err)
			}
		}},
		{"delete honours If-Match", func(t *testing.T, s heroStore) {
			h := testHero(newHeroID(), "Guarded")
			v1 := mustCreate(t, s, h)
			v2, err := s.Replace(ctx, h, "")
			if err != nil {
				t.Fatalf("Replace() = %v", err)
			}
			if err := s.Delete(ctx, h.ID, v1); !errors.Is(err, errHeroConflict) {
				t.Fatalf("Delete(stale etag) = %v; want errHeroConflict", err)
			}
			if _, _, err := s.Get(ctx, h.ID); err != nil {
				t.Fatalf("Get() after a stale Delete = %v; want the hero kept", err)
			}
			if err := s.Delete(ctx, h.ID, v2); err != nil {
				t.Errorf("Delete(current etag) = %v; want nil", err)
			}
		}},
		{"concurrent creates and deletes lose nothing", func(t *testing.T, s heroStore) {
			const workers, each = 6, 8
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				kept []string
			)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						h := testHero(newHeroID(), fmt.Sprintf("Worker %d hero %d", w, i))
						if _, err := s.Create(ctx, h); err != nil {
							t.Errorf("Create() = %v", err)
							return
						}
						if i%2 == 1 {
							if err := s.Delete(ctx, h.ID, ""); err != nil {
								t.Errorf("Delete() = %v", err)
							}
							continue
						}
						mu.Lock()
						kept = append(kept, h.ID)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			got, err := s.List(ctx, 0, 1000)
			if err != nil {
				t.Fatalf("List() = %v", err)
			}
			sort.Strings(kept)
			if gotIDs := heroIDs(got); !slices.Equal(gotIDs, kept) {
				t.Errorf("after concurrent changes List() has %d heroes %v; want %d %v", len(gotIDs), gotIDs, len(kept), kept)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// heroIDs returns the ids of hs in order.
func heroIDs(hs []hero) []string {
	ids := make([]string, 0, len(hs))
	for _, h := range hs {
		ids = append(ids, h.ID)
	}
	return ids
}

// TestStores runs the conformance suite against the memory and file stores.
func TestStores(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) heroStore
	}{
		{"memory", func(t *testing.T) heroStore { return newMemoryStore() }},
		{"file", func(t *testing.T) heroStore {
			s, err := openFileStore(t.TempDir()+"/heroes.json", 0)
			if err != nil {
				t.Fatalf("openFileStore() = %v", err)
			}
			return s
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			testHeroStore(t, st.open)
		})
	}
}

// TestFileStoreOpen checks how openFileStore treats what it finds at start.
func TestFileStoreOpen(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string) // makes what is at path
		wantErr bool
		wantN   int
	}{
		{"missing file starts empty", func(t *testing.T, path string) {}, false, 0},
		{"file written by the store loads", func(t *testing.T, path string) {
			s, err := openFileStore(path, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if _, err := s.Create(context.Background(), testHero(newHeroID(), fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}, false, 3},
		{"corrupt JSON stops start-up", writeFile(`{"version":1,"heroes":[`), true, 0},
		{"empty file stops start-up", writeFile(``), true, 0},
		{"trailing data stops start-up", writeFile(`{"version":1,"heroes":[]} {}`), true, 0},
		{"unknown version stops start-up", writeFile(`{"version":2,"heroes":[]}`), true, 0},
		{"unknown field stops start-up", writeFile(`{"version":1,"heroes":[],"x":1}`), true, 0},
		// hand-edited forms encoding/json read, as builds before the record-by-record reader did
		{"heroes null loads as none", writeFile(`{"version":1,"heroes":null,"idempotency_keys":null}`), false, 0},
		{"member names in another case load", writeFile(`{"Version":1,"HEROES":[{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11","etag":"\"a\"","hero":{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"}}]}`), false, 1},
		{"the same member in two cases stops start-up", writeFile(`{"version":1,"heroes":[],"Heroes":[]}`), true, 0},
		{"hero with a bad id stops start-up", writeFile(`{"version":1,"heroes":[{"id":"nope","etag":"\"a\"","hero":{"id":"nope"}}]}`), true, 0},
		{"hero without etag stops start-up", writeFile(`{"version":1,"heroes":[{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11","etag":"","hero":{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"}}]}`), true, 0},
		{"duplicate id stops start-up", writeFile(`{"version":1,"heroes":[` +
			`{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11","etag":"\"a\"","hero":{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"}},` +
			`{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11","etag":"\"b\"","hero":{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"}}]}`), true, 0},
		{"hero of the wrong shape stops start-up", writeFile(`{"version":1,"heroes":[{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11","etag":"\"a\"","hero":{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11","level":"x"}}]}`), true, 0},
		{"record id that differs from the hero's stops start-up", writeFile(`{"version":1,"heroes":[{"id":"6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11","etag":"\"a\"","hero":{"id":"7f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"}}]}`), true, 0},
		{"unreadable path (a folder) stops start-up", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "heroes.json")
			tc.setup(t, path)
			before, _ := os.ReadFile(path) // nil when missing or a folder
			s, err := openFileStore(path, 0)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("openFileStore() = nil error; want one")
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("openFileStore() = %q; want the error to name %s", err, path)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
					t.Errorf("openFileStore() changed the file it refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("openFileStore() = %v", err)
			}
			defer s.Close()
			if got := s.count(); got != tc.wantN {
				t.Errorf("openFileStore() holds %d heroes; want %d", got, tc.wantN)
			}
		})
	}
}

// TestFileStoreListsEditedHeroesEncoded: a hero written into the file by
// hand (other spacing, an escaped "<", a field the API does not have) is
// listed as the API writes heroes, as it was before ListJSON answered the
// stored JSON as it is.
func TestFileStoreListsEditedHeroesEncoded(t *testing.T) {
	t.Parallel()
	const id = "6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"
	path := filepath.Join(t.TempDir(), "heroes.json")
	writeFile(`{"version":1,"heroes":[{"id":"`+id+`","etag":"\"a\"","hero":{ "id": "`+id+
		`", "name": "Ada \u003c3", "level": 3, "nickname": "x" }}]}`)(t, path)
	s, err := openFileStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	heroes, err1 := s.List(context.Background(), 0, 10)
	js, err2 := s.ListJSON(context.Background(), 0, 10)
	if err1 != nil || err2 != nil || len(heroes) != 1 || len(js) != 1 {
		t.Fatalf("List, ListJSON = %d, %d heroes, %v, %v; want 1", len(heroes), len(js), err1, err2)
	}
	if want, _ := encodeHero(heroes[0]); string(js[0]) != string(want) || strings.Contains(string(js[0]), "nickname") {
		t.Errorf("ListJSON = %s; want %s", js[0], want)
	}
}

// writeFile returns a setup that writes content to the path.
func writeFile(content string) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFileStoreRestartSeesEveryWrite reopens the file after creates,
// replaces and deletes: every acknowledged change, and its etag, is there,
// and no temporary file is left behind.
func TestFileStoreRestartSeesEveryWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "heroes.json")
	s, err := openFileStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // id → etag
	for i := range 10 {
		h := testHero(newHeroID(), fmt.Sprint(i))
		etag, err := s.Create(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		want[h.ID] = etag
		switch i % 3 {
		case 1:
			h.Name = "Renamed"
			if want[h.ID], err = s.Replace(ctx, h, etag); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := s.Delete(ctx, h.ID, etag); err != nil {
				t.Fatal(err)
			}
			delete(want, h.ID)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx, 0, 10); !errors.Is(err, errStoreUnavailable) {
		t.Errorf("List() after Close = %v; want errStoreUnavailable", err)
	}

	r, err := openFileStore(path, 0)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer r.Close()
	if r.count() != len(want) {
		t.Errorf("reopened store holds %d heroes; want %d", r.count(), len(want))
	}
	for id, etag := range want {
		if _, got, err := r.Get(ctx, id); err != nil || got != etag {
			t.Errorf("reopened Get(%s) = %q, %v; want %q", id, got, err, etag)
		}
	}
	assertNoTempFiles(t, dir)
}

// TestFileStoreFailedWriteChangesNothing makes the write fail (the folder is
// gone) and checks the change is refused as errStoreUnavailable and not
// applied in memory either.
func TestFileStoreFailedWriteChangesNothing(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "sub")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := openFileStore(filepath.Join(dir, "heroes.json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	kept := testHero(newHeroID(), "Kept")
	if _, err := s.Create(ctx, kept); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, testHero(newHeroID(), "Lost")); !errors.Is(err, errStoreUnavailable) {
		t.Errorf("Create() with the folder gone = %v; want errStoreUnavailable", err)
	}
	if err := s.Delete(ctx, kept.ID, ""); !errors.Is(err, errStoreUnavailable) {
		t.Errorf("Delete() with the folder gone = %v; want errStoreUnavailable", err)
	}
	got, err := s.List(ctx, 0, 10)
	if err != nil || !slices.Equal(heroIDs(got), []string{kept.ID}) {
		t.Errorf("List() after failed writes = %v, %v; want only %s", heroIDs(got), err, kept.ID)
	}
}

// envFileWriter names the file the SIGKILL child writes to; when set, the
// test binary runs TestHelperFileWriter as that child.
const envFileWriter = "HEROES_TEST_FILE_WRITER"

// TestFileStoreSurvivesSIGKILL runs a child process that creates heroes in
// a loop, printing each acknowledged id, kills it with SIGKILL mid-loop, and
// checks the file loads and holds every id the child printed.
func TestFileStoreSurvivesSIGKILL(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL is not available on windows")
	}
	path := filepath.Join(t.TempDir(), "heroes.json")
	cmd, sc := startChildTest(t, "TestHelperFileWriter", envFileWriter, path)
	var acked []string
	deadline := time.Now().Add(3 * time.Second)
	for len(acked) < 40 && time.Now().Before(deadline) && sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked = append(acked, id)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Lines the child printed before it died are acknowledged too.
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait() // the child was killed: its error is the expected signal
	if len(acked) == 0 {
		t.Fatal("the child acknowledged no hero before it was killed")
	}
	s, err := openFileStore(path, 0)
	if err != nil {
		t.Fatalf("openFileStore() after SIGKILL = %v; want the file to load (and the lock released)", err)
	}
	defer s.Close()
	for _, id := range acked {
		if _, _, err := s.Get(context.Background(), id); err != nil {
			t.Errorf("acknowledged hero %s after SIGKILL: %v", id, err)
		}
	}
	t.Logf("%d acknowledged heroes survived SIGKILL", len(acked))
}

// TestHelperFileWriter is the child of TestFileStoreSurvivesSIGKILL; it does
// nothing in a normal test run. It creates heroes until killed (or for at
// most 10 seconds), printing "acked <id>" after each Create returns.
func TestHelperFileWriter(t *testing.T) {
	path := os.Getenv(envFileWriter)
	if path == "" {
		t.Skip("runs only as the child of TestFileStoreSurvivesSIGKILL")
	}
	s := openChildStore(path)
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		childCreate(s, "Survivor")
	}
	os.Exit(0)
}

// startChildTest runs the test binary's test name as a child process, with
// env set to path, and returns it and a scanner of its standard output.
func startChildTest(t *testing.T, name, env, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$")
	cmd.Env = append(os.Environ(), env+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// openChildStore opens the file store at path for a child writer, or
// prints "open: <error>" and exits 2.
func openChildStore(path string) *localStore {
	s, err := openFileStore(path, 0)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	return s
}

// childCreate creates a hero named name in s for a child writer and prints
// "acked <id>" once Create returns, or prints "create: <error>" and exits 2.
func childCreate(s *localStore, name string) {
	h := testHero(newHeroID(), name)
	if _, err := s.Create(context.Background(), h); err != nil {
		fmt.Println("create:", err)
		os.Exit(2)
	}
	fmt.Println("acked", h.ID)
}

// TestFileStoreSingleOwner checks a second store cannot open a file another
// store holds, and can once that one is closed.
func TestFileStoreSingleOwner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the file lock is flock(2), unix only")
	}
	path := filepath.Join(t.TempDir(), "heroes.json")
	first, err := openFileStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := openFileStore(path, 0)
	if err == nil {
		second.Close()
		t.Fatalf("second openFileStore() = nil error; want the file refused while held")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("second openFileStore() = %q; want the error to name %s", err, path)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := openFileStore(path, 0)
	if err != nil {
		t.Fatalf("openFileStore() after Close = %v; want the lock released", err)
	}
	again.Close()
}

// TestFileStoreCorruptMessages checks a corrupt heroes file is reported in
// plain words with where it breaks (a byte offset), never with Go's type
// names such as main.heroesFile.
func TestFileStoreCorruptMessages(t *testing.T) {
	const id = "6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"
	record := func(hero string) string {
		return `{"version":1,"heroes":[{"id":"` + id + `","etag":"\"a\"","hero":` + hero + `}]}`
	}
	tests := []struct {
		name    string
		content string
		want    []string // all must appear in the error
	}{
		{"a list instead of the document", `[]`, []string{"offset 1", "the document is a JSON array", `should be an object {"version":1,"heroes":[…]}`}},
		{"heroes not a list", `{"version":1,"heroes":{}}`, []string{"offset 23", "heroes is a JSON object", "should be a list"}},
		{"version a string", `{"version":"1","heroes":[]}`, []string{"offset 14", "version is a JSON string", "should be a whole number"}},
		{"syntax error", `{"version":1,"heroes":[}`, []string{"not valid JSON near byte offset 23", "invalid character '}'"}},
		{"heroes a number", `{"version":1,"heroes":5}`, []string{"offset 23", "heroes is a JSON number", "should be a list"}},
		{"heroes twice", `{"version":1,"heroes":[],"heroes":[]}`, []string{"heroes appears twice"}},
		{"no version", `{"heroes":[]}`, []string{"version is 0", "only version 1"}},
		{"unknown field in a record", `{"version":1,"heroes":[{"id":"` + id + `","etag":"\"a\"","hero":{"id":"` + id + `"},"x":1}]}`, []string{"hero record 0", `unknown field "x"`}},
		{"syntax error in a record", `{"version":1,"heroes":[{"id":}]}`, []string{"hero record 0", "not valid JSON in the record", "near byte offset 23", "invalid character '}'"}},
		{"cut short in a record", `{"version":1,"heroes":[{"id":"` + id + `","etag":"\"a\""`, []string{"ends early"}},
		{"a key record of the wrong shape", `{"version":1,"heroes":[],"idempotency_keys":[{"key":1}]}`, []string{"idempotency key record 0", "key is a JSON number", "should be a string"}},
		{"cut short", `{"version":1,"heroes":[`, []string{"ends early", "offset 23"}},
		{"empty file", ``, []string{"empty", `{"version":1,"heroes":[…]}`}},
		{"unknown field", `{"version":1,"heroes":[],"x":1}`, []string{`unknown field "x" in the document`}},
		{"wrong version", `{"version":2,"heroes":[]}`, []string{"version is 2", "only version 1"}},
		{"hero of the wrong shape", record(`{"id":"` + id + `","level":"x"}`), []string{"hero record 0 (byte offset 90)", "level is a JSON string", "should be a whole number", "offset 146"}},
		{"hero id differs", record(`{"id":"7f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"}`), []string{"hero record 0", "differs from the hero's own id"}},
		{"trailing data", `{"version":1,"heroes":[]} {}`, []string{"data after the JSON document"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "heroes.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := openFileStore(path, 0)
			if err == nil {
				t.Fatalf("openFileStore(%s, 0) = nil error; want one", tc.content)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("openFileStore(%s, 0) = %q; want it to say %q", tc.content, err, want)
				}
			}
			for _, goWords := range []string{"Go value", "Go struct", "main.", "json:"} {
				if strings.Contains(err.Error(), goWords) {
					t.Errorf("openFileStore(%s, 0) = %q; want no Go type names (%q)", tc.content, err, goWords)
				}
			}
		})
	}
}

// syncEvent is one call of the file store's fsync hook: what was synced
// and what the heroes file and the synced file held at that moment.
type syncEvent struct {
	kind        string // "temp" or "dir"
	pathContent []byte // the heroes file (nil when missing)
	tempContent []byte // the synced temporary file; nil for the folder
}

// TestFileStoreDurableWrite checks how every change reaches the disk:
// a new file each time (its inode changes: written aside and renamed over,
// never rewritten in place), the temporary file synced with the full new
// content while the heroes file still holds the old one, then the rename,
// then the folder synced once the heroes file holds the new content; no
// temporary file is left. A failing fsync of the temporary file refuses the
// change and leaves the heroes file as it was.
func TestFileStoreDurableWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "heroes.json")
	s, err := openFileStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var events []syncEvent
	var failTemp bool
	s.fsync = func(f *os.File) error {
		e := syncEvent{kind: "temp"}
		if f.Name() == dir {
			e.kind = "dir"
		} else {
			if filepath.Dir(f.Name()) != dir || !strings.HasPrefix(filepath.Base(f.Name()), ".heroes.json.tmp-") {
				t.Errorf("synced %s; want a temporary file beside %s", f.Name(), path)
			}
			e.tempContent, _ = os.ReadFile(f.Name())
		}
		e.pathContent, _ = os.ReadFile(path) // nil before the first write
		events = append(events, e)
		if failTemp && e.kind == "temp" {
			return errors.New("test: fsync failed")
		}
		return f.Sync()
	}
	a, b := testHero(newHeroID(), "A"), testHero(newHeroID(), "B")
	changes := []struct {
		name   string
		change func() error
	}{
		{"first create", func() error { _, err := s.Create(ctx, a); return err }},
		{"second create", func() error { _, err := s.Create(ctx, b); return err }},
		{"replace", func() error { a.Name = "A2"; _, err := s.Replace(ctx, a, ""); return err }},
		{"delete", func() error { return s.Delete(ctx, b.ID, "") }},
	}
	var before os.FileInfo
	for _, c := range changes {
		events = nil
		old, _ := os.ReadFile(path)
		if err := c.change(); err != nil {
			t.Fatalf("%s = %v", c.name, err)
		}
		now, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 || events[0].kind != "temp" || events[1].kind != "dir" {
			t.Fatalf("%s synced %d times (%v); want the temporary file, then the folder", c.name, len(events), events)
		}
		if !bytes.Equal(events[0].tempContent, now) || !bytes.Equal(events[0].pathContent, old) {
			t.Errorf("%s: the temporary file was not synced with the new content before the rename", c.name)
		}
		if !bytes.Equal(events[1].pathContent, now) {
			t.Errorf("%s: the folder was synced before the rename", c.name)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if before != nil && os.SameFile(before, info) {
			t.Errorf("%s rewrote the heroes file in place; want a new file renamed over it", c.name)
		}
		before = info
	}

	failTemp = true
	old, _ := os.ReadFile(path)
	if _, err := s.Create(ctx, testHero(newHeroID(), "C")); !errors.Is(err, errStoreUnavailable) {
		t.Errorf("Create() with a failing fsync = %v; want errStoreUnavailable", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		t.Errorf("a change whose fsync failed reached the heroes file")
	}
	assertNoTempFiles(t, dir)
}

// TestFileStoreConcurrentCreatesSurviveReopen creates heroes from several
// goroutines at once, then reopens the file: every acknowledged hero is in
// it. Without the single writer lock, writers working from the same old
// content would overwrite each other's files and lose heroes.
func TestFileStoreConcurrentCreatesSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "heroes.json")
	s, err := openFileStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 12
	acked := make([][]string, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				h := testHero(newHeroID(), fmt.Sprintf("w%d-%d", w, i))
				if _, err := s.Create(ctx, h); err != nil {
					t.Errorf("Create() = %v", err)
					return
				}
				acked[w] = append(acked[w], h.ID)
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := openFileStore(path, 0)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer r.Close()
	var want []string
	for _, ids := range acked {
		want = append(want, ids...)
	}
	slices.Sort(want)
	got, err := r.List(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if ids := heroIDs(got); !slices.Equal(ids, want) {
		t.Errorf("reopened file holds %d heroes; want the %d acknowledged", len(ids), len(want))
	}
}

// assertNoTempFiles fails tb if the folder of a file store named heroes.json
// holds anything but that file and its lock (a temporary file left behind).
func assertNoTempFiles(tb testing.TB, dir string) {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "heroes.json" && e.Name() != "heroes.json.lock" {
			tb.Errorf("folder holds %s; want only heroes.json and its lock (no temporary file left)", e.Name())
		}
	}
}

// TestEncodeHeroesFile checks the streamed heroes file is, byte for byte,
// the document a json.Encoder without HTML escaping writes whole, and that
// a document over the bound is errStoreFull.
func TestEncodeHeroesFile(t *testing.T) {
	h := testHero(newHeroID(), `Tom <"&"> Ünïcode`)
	data, err := encodeHero(h)
	if err != nil {
		t.Fatal(err)
	}
	sh := storedHero{ID: h.ID, ETag: newETag(), Hero: data}
	key := idemRecord{Key: strings.Repeat("a", 64), Fingerprint: "fp", HeroID: h.ID, ETag: sh.ETag, Hero: data, Created: 1, Caller: strings.Repeat("1", 32)}
	tests := []struct {
		name string
		doc  heroesFile
	}{
		{"empty", heroesFile{Version: 1, Heroes: []storedHero{}}},
		{"heroes", heroesFile{Version: 1, Heroes: []storedHero{sh, sh}}},
		{"heroes and keys", heroesFile{Version: 1, Heroes: []storedHero{sh}, IdempotencyKey: []idemRecord{key, key}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(tc.doc); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := encodeHeroesFile(&got, tc.doc, maxHeroesFile); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("encodeHeroesFile() = %s; want %s", got.String(), want.String())
			}
			if err := encodeHeroesFile(io.Discard, tc.doc, int64(want.Len()-1)); !errors.Is(err, errStoreFull) {
				t.Errorf("encodeHeroesFile() one byte over the bound = %v; want errStoreFull", err)
			}
		})
	}
}

// FuzzParseHeroesFile checks the heroes file parser never panics, and that
// whatever it accepts is written back (encodeHeroesFile) as a file it reads
// again to the same heroes and keys, each key once.
func FuzzParseHeroesFile(f *testing.F) {
	const id = "6f1c1f7e-3c7a-4c55-9a55-0d6b7f0c1a11"
	key := `{"key":"` + strings.Repeat("a", 64) + `","fingerprint":"fp","hero_id":"` + id + `","etag":"\"e\"","hero":{},"created":1}`
	for _, seed := range []string{
		`{"version":1,"heroes":[]}`, `[]`, `{"version":1,"heroes":[}`, `{"heroes":[],"version":1,"idempotency_keys":[` + key + `,` + key + `]}`,
		`{"version":1,"heroes":[{"id":"` + id + `","etag":"\"a\"","hero":{"id":"` + id + `","name":"A","level":"5"}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		read := func(data []byte) (*heroSet, error) {
			set, _, err := parseHeroesFile(bytes.NewReader(data), int64(len(data)), 0, func([]byte) int64 { return 0 })
			return set, err
		}
		set, err := read(data)
		if err != nil {
			return
		}
		var out bytes.Buffer
		doc := set.fileWith("", nil, nil, nil)
		if err := encodeHeroesFile(&out, doc, maxHeroesFile); err != nil {
			t.Fatalf("encodeHeroesFile() of an accepted file = %v", err)
		}
		again, err := read(out.Bytes())
		if err != nil {
			t.Fatalf("reading back %s = %v", out.Bytes(), err)
		}
		if !slices.Equal(again.ids, set.ids) || !slices.Equal(again.keyOrder, set.keyOrder) || len(set.keyOrder) != len(set.keys) {
			t.Errorf("read back %v keys %v; want %v keys %v", again.ids, again.keyOrder, set.ids, set.keyOrder)
		}
	})
}
