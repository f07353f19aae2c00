package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// newMeteredServer wires a service on p as run does with METRICS_ADDR set:
// metrics on the handler, the verifier, the identity provider client and a
// memory store. It returns the handler and the metrics.
func newMeteredServer(t *testing.T, p *testIDP, logs io.Writer) (http.Handler, *metrics) {
	t.Helper()
	cfg := p.config(t, nil)
	logger := slog.New(requestLogHandler{slog.NewJSONHandler(logs, nil)})
	m := newMetrics()
	client := newIDPClient()
	client.Transport = traceTransport{next: http.DefaultTransport, observe: m.idpObserver()}
	vo := cfg.verifyOptions(client, logger)
	vo.Observe = m.verifyObserver()
	prov, v, af := newTestHalves(t, cfg, vo, client, logger)
	return m.instrument(newServer(logger, cfg, prov, v, af, m.meter(newMemoryStore()), nil)), m
}

// scrape writes m out, checks it against the text format and returns its
// series.
func scrape(t *testing.T, m *metrics) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	m.write(&buf)
	series, problems := parseExposition(buf.String())
	for _, p := range problems {
		t.Errorf("exposition: %s", p)
	}
	return series
}

// TestMetricsCountersMove makes requests of every kind and checks the
// exposition stays well-formed and each counter moves by what was done:
// requests by route pattern and status class (raw paths never become
// labels), token verifications by outcome, key set fetches, identity
// provider calls by endpoint, store operations.
func TestMetricsCountersMove(t *testing.T) {
	p := newTestIDP(t)
	h, m := newMeteredServer(t, p, io.Discard)
	before := scrape(t, m)
	good := p.token(t, map[string]any{"scp": "Heroes.Create"})
	send := func(method, path, tok, body string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	send("GET", "/api/heroes/", good, "")
	send("GET", "/api/heroes/", good, "")
	send("POST", "/api/heroes/", good, validHeroJSON("Counted"))
	send("GET", "/api/heroes/", p.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), "")
	send("GET", "/api/heroes/", good[:len(good)-4]+"AAAA", "")
	send("GET", "/api/heroes", good, "")
	send("GET", "/", "", "")
	for i := range 50 {
		send("GET", fmt.Sprintf("/no/such/page/%d", i), "", "")
	}
	after := scrape(t, m)
	want := map[string]float64{
		`heroes_http_requests_total{route="GET /api/heroes/",status="2xx"}`:    2,
		`heroes_http_requests_total{route="GET /api/heroes/",status="4xx"}`:    2,
		`heroes_http_requests_total{route="POST /api/heroes/",status="2xx"}`:   1,
		`heroes_http_requests_total{route="GET /api/heroes",status="2xx"}`:     1,
		`heroes_http_requests_total{route="GET /",status="3xx"}`:               1, // to REDIRECT_URI's host
		`heroes_http_requests_total{route="unmatched",status="4xx"}`:           50,
		`heroes_http_request_duration_seconds_count{route="GET /api/heroes/"}`: 4,
		`heroes_token_verifications_total{outcome="verified"}`:                 1,
		`heroes_token_verifications_total{outcome="cache_hit"}`:                3,
		`heroes_token_verifications_total{outcome="expired"}`:                  1,
		`heroes_token_verifications_total{outcome="bad_signature"}`:            1,
		`heroes_jwks_fetches_total{result="ok"}`:                               1,
		`heroes_idp_request_duration_seconds_count{endpoint="discovery"}`:      1,
		`heroes_idp_request_duration_seconds_count{endpoint="keys"}`:           1,
		`heroes_store_operation_duration_seconds_count{operation="list"}`:      3,
		`heroes_store_operation_duration_seconds_count{operation="create"}`:    1,
	}
	for series, delta := range want {
		if got := after[series] - before[series]; got != delta {
			t.Errorf("%s moved by %v; want %v", series, got, delta)
		}
	}
	for series := range after {
		if strings.Contains(series, "/no/such") {
			t.Errorf("a raw path became a label: %s", series)
		}
		if strings.Contains(series, "{$}") {
			t.Errorf("a route label shows the pattern's {$}: %s", series)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_start_time_seconds", "heroes_http_requests_in_flight"} {
		if _, ok := after[name]; !ok {
			t.Errorf("no %s in the exposition", name)
		}
	}
}

// TestMetricsCountFailures checks the failure counters: an identity
// provider that answers 500 and a store that is unavailable.
func TestMetricsCountFailures(t *testing.T) {
	p := newTestIDP(t)
	p.mu.Lock()
	p.jwksHandler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusInternalServerError) }
	p.mu.Unlock()
	h, m := newMeteredServer(t, p, io.Discard)
	r := httptest.NewRequest("GET", "/api/heroes/", nil)
	h.ServeHTTP(httptest.NewRecorder(), bearer(r, p.token(t, nil)))
	store := m.meter(failingStore{err: errStoreUnavailable})
	store.List(t.Context(), 0, 1)
	store.Get(t.Context(), newHeroID())
	failingStore{}.Close()
	after := scrape(t, m)
	for series, want := range map[string]float64{
		`heroes_idp_request_failures_total{endpoint="keys"}`:           1,
		`heroes_jwks_fetches_total{result="error"}`:                    1,
		`heroes_token_verifications_total{outcome="keys_unavailable"}`: 1,
		`heroes_store_operation_failures_total{operation="list"}`:      1,
		`heroes_store_operation_failures_total{operation="get"}`:       1,
	} {
		if after[series] < want {
			t.Errorf("%s = %v; want at least %v", series, after[series], want)
		}
	}
}

// TestMetricsListener runs the service with METRICS_ADDR: /metrics answers
// on that listener in the text format, and never on the API's; without
// METRICS_ADDR there is no metrics listener at all.
func TestMetricsListener(t *testing.T) {
	p := newTestIDP(t)
	base, logs, _ := startRun(t, nil, p.getenv(map[string]string{"METRICS_ADDR": "127.0.0.1:0"}))
	var addr string
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" {
			addr = rec.Addr
		}
	}
	if addr == "" {
		t.Fatalf("no metrics listener in the logs:\n%s", logs)
	}
	http.Get(base + "/healthz")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics = %d %q", resp.StatusCode, ct)
	}
	series, problems := parseExposition(string(body))
	for _, p := range problems {
		t.Errorf("exposition: %s", p)
	}
	if series[`heroes_http_requests_total{route="GET /healthz",status="2xx"}`] < 2 {
		t.Errorf("the health checks are not counted:\n%s", body)
	}
	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the API listener = %v, %v; want 404", resp.StatusCode, err)
	}

	_, offLogs, _ := startRun(t, nil, p.getenv(nil))
	if strings.Contains(offLogs.String(), "metrics listening") {
		t.Errorf("a metrics listener started without METRICS_ADDR")
	}
}

// TestParseTraceparent checks W3C Trace Context's rules for traceparent:
// version 00 exactly, later versions read leniently, anything else a new
// trace.
func TestParseTraceparent(t *testing.T) {
	const (
		trace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent = "00f067aa0ba902b7"
	)
	tests := []struct {
		name    string
		values  []string
		ok      bool
		sampled bool
	}{
		{"version 00 sampled", []string{"00-" + trace + "-" + parent + "-01"}, true, true},
		{"version 00 not sampled", []string{"00-" + trace + "-" + parent + "-00"}, true, false},
		{"unknown flags keep only sampled", []string{"00-" + trace + "-" + parent + "-09"}, true, true},
		{"future version with more fields", []string{"cc-" + trace + "-" + parent + "-01-what-the-future-holds"}, true, true},
		{"future version, 55 characters", []string{"01-" + trace + "-" + parent + "-00"}, true, false},
		{"future version, more without a dash", []string{"01-" + trace + "-" + parent + "-00x"}, false, false},
		{"version 00 with more", []string{"00-" + trace + "-" + parent + "-01-x"}, false, false},
		{"version ff", []string{"ff-" + trace + "-" + parent + "-01"}, false, false},
		{"uppercase hex", []string{"00-" + strings.ToUpper(trace) + "-" + parent + "-01"}, false, false},
		{"uppercase version", []string{"0A-" + trace + "-" + parent + "-01"}, false, false},
		{"zero trace id", []string{"00-" + strings.Repeat("0", 32) + "-" + parent + "-01"}, false, false},
		{"zero parent id", []string{"00-" + trace + "-" + strings.Repeat("0", 16) + "-01"}, false, false},
		{"short", []string{"00-" + trace + "-" + parent + "-1"}, false, false},
		{"wrong separators", []string{"00_" + trace + "_" + parent + "_01"}, false, false},
		{"non-hex flags", []string{"00-" + trace + "-" + parent + "-0g"}, false, false},
		{"two fields", []string{"00-" + trace + "-" + parent + "-01", "00-" + trace + "-" + parent + "-01"}, false, false},
		{"none", nil, false, false},
	}
	for _, tc := range tests {
		h := http.Header{}
		for _, v := range tc.values {
			h.Add("traceparent", v)
		}
		tc2, ok := parseTraceparent(h)
		if ok != tc.ok || (ok && (tc2.traceID != trace || tc2.sampled != tc.sampled)) {
			t.Errorf("%s: parseTraceparent(%q) = %+v, %v; want ok %v, sampled %v", tc.name, tc.values, tc2, ok, tc.ok, tc.sampled)
		}
	}
}

// FuzzParseTraceparent checks parseTraceparent never panics and accepts
// only what it can send on: a child made from its result is a valid
// version 00 traceparent of the same trace.
func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	f.Fuzz(func(t *testing.T, s string) {
		tc, ok := parseTraceparent(http.Header{"Traceparent": {s}})
		if !ok {
			return
		}
		child := tc.childTraceparent()
		got, ok := parseTraceparent(http.Header{"Traceparent": {child}})
		if !ok || got.traceID != tc.traceID || len(child) != 55 || child[:2] != "00" {
			t.Fatalf("from %q: child %q does not parse back to the trace", s, child)
		}
	})
}

// TestTraceparentReachesIdentityProvider sends requests with a traceparent
// and checks the calls they cause to the identity provider (discovery,
// keys, token endpoint) carry a child traceparent of the same trace with a
// parent-id of their own, and that the answer's log lines carry the trace
// id. A request without one starts a trace of its own.
func TestTraceparentReachesIdentityProvider(t *testing.T) {
	p := newTestIDP(t)
	ti := newTokenIssuer(t, p)
	ti.addRefreshToken("rt-traced")
	var logs syncBuffer
	h := newTestServer(t, p, nil, &logs)
	const trace = "0af7651916cd43dd8448eb211c80319c"
	incoming := "00-" + trace + "-b7ad6b7169203331-01"
	r := httptest.NewRequest("GET", "/api/heroes/", nil)
	r.Header.Set("traceparent", incoming)
	h.ServeHTTP(httptest.NewRecorder(), bearer(r, p.token(t, nil)))
	r = httptest.NewRequest("POST", "/auth/refresh", strings.NewReader("refresh_token=rt-traced"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("traceparent", incoming)
	h.ServeHTTP(httptest.NewRecorder(), r)

	p.mu.Lock()
	seen := p.traceparents
	p.mu.Unlock()
	for _, path := range []string{"/" + testTenant + "/v2.0/.well-known/openid-configuration", "/" + testTenant + "/discovery/v2.0/keys", "/" + testTenant + "/oauth2/v2.0/token"} {
		if len(seen[path]) == 0 {
			t.Errorf("%s was not called", path)
			continue
		}
		got, ok := parseTraceparent(http.Header{"Traceparent": {seen[path][0]}})
		if !ok || got.traceID != trace || !got.sampled || seen[path][0] == incoming {
			t.Errorf("%s got traceparent %q; want a child of %s", path, seen[path][0], incoming)
		}
	}
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["request_id"] == nil {
			continue
		}
		lines++
		if rec["trace_id"] != trace {
			t.Errorf("log line of a traced request without its trace id: %s", line)
		}
	}
	if lines < 2 {
		t.Errorf("found %d log lines with a request id; want the lines of both requests:\n%s", lines, logs.String())
	}
}

// TestEveryLogLineOfARequestHasItsTrace runs the service and checks that
// each line a request logs (not only the request line) names its request
// id and trace id, and that a request without a valid traceparent gets a
// new trace id of its own.
func TestEveryLogLineOfARequestHasItsTrace(t *testing.T) {
	p := newTestIDP(t)
	base, logs, _ := startRun(t, nil, p.getenv(nil))
	noRedirects := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tp := range []string{"00-" + trace + "-00f067aa0ba902b7-01", "00-" + strings.ToUpper(trace) + "-00f067aa0ba902b7-01"} {
		req, _ := http.NewRequest("GET", base+"/auth/logout", nil) // logs a line of its own
		req.Header.Set("traceparent", tp)
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		var traces []any
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["request_id"] == id {
				traces = append(traces, rec["trace_id"])
			}
		}
		if len(traces) < 2 {
			t.Errorf("request %s logged %d lines with its id; want the logout and the request line", id, len(traces))
		}
		for _, got := range traces {
			s, _ := got.(string)
			if tp[3:35] == trace && s != trace || tp[3:35] != trace && (s == "" || strings.EqualFold(s, trace) || !isLowerHex(s) || len(s) != 32) {
				t.Errorf("traceparent %q: log line has trace_id %v", tp, got)
			}
		}
	}
}

// TestTableCallsCarryTraceparent checks the table store's calls made for a
// traced request carry a child traceparent of its trace.
func TestTableCallsCarryTraceparent(t *testing.T) {
	table := newMemTable(t)
	s := table.store(t, 2*time.Second)
	s.client.Transport = traceTransport{next: http.DefaultTransport}
	var got []string
	table.mu.Lock()
	table.onRequest = func(r *http.Request) { got = append(got, r.Header.Get("traceparent")) }
	table.mu.Unlock()
	const trace = "0af7651916cd43dd8448eb211c80319c"
	r := httptest.NewRequest("POST", "/api/heroes/", strings.NewReader(validHeroJSON("Traced")))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("traceparent", "00-"+trace+"-b7ad6b7169203331-00")
	w := httptest.NewRecorder()
	logRequests(discardLogger(), heroMux(s)).ServeHTTP(w, r)
	if w.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s", w.Code, w.Body)
	}
	table.mu.Lock()
	defer table.mu.Unlock()
	if len(got) == 0 {
		t.Fatal("the table was not called")
	}
	for _, tp := range got {
		if tc, ok := parseTraceparent(http.Header{"Traceparent": {tp}}); !ok || tc.traceID != trace {
			t.Errorf("table call carried traceparent %q; want a child of trace %s", tp, trace)
		}
	}
}
