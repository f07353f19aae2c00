package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// countingTransport counts the entities the Table service answers queries
// with, so a test can see how often a walk reads each hero.
type countingTransport struct {
	next     http.RoundTripper
	entities int
	keyScans int // queries selecting only RowKey
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "()") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var page struct{ Value []json.RawMessage }
	json.Unmarshal(body, &page)
	c.entities += len(page.Value)
	if r.URL.Query().Get("$select") == "RowKey" {
		c.keyScans++
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// TestFireballReadsEachHeroOnce checks the fireball query on the table
// store reads each hero once however many pages it takes (ListAfter), not
// once per page after it (List with a growing offset: quadratic).
func TestFireballReadsEachHeroOnce(t *testing.T) {
	const heroes = 2*maxLimit + 500
	table := newMemTable(t)
	table.mu.Lock()
	table.rows[tablePartition] = map[string]map[string]any{}
	for i := range heroes {
		h := testHero(newHeroID(), fmt.Sprintf("Hero %d", i))
		data, _ := encodeHero(h)
		table.rows[tablePartition][h.ID] = map[string]any{"PartitionKey": tablePartition, "RowKey": h.ID, tableHeroProperty: string(data)}
	}
	table.mu.Unlock()
	s := table.store(t, 5*time.Second)
	count := &countingTransport{next: http.DefaultTransport}
	s.client.Transport = count
	w := do(heroMux(s), "GET", "/api/heroes-fireball-low-ac", "")
	var got []hero
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK || len(got) != heroes {
		t.Fatalf("fireball = %d, %d heroes, %v; want 200 with all %d", w.Code, len(got), err, heroes)
	}
	if count.entities != heroes || count.keyScans != 0 {
		t.Errorf("fireball read %d entities in %d key-only scans besides; want each of the %d heroes once, no scan", count.entities, count.keyScans, heroes)
	}
}
