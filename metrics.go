package main

// Metrics in the Prometheus text exposition format (version 0.0.4,
// https://prometheus.io/docs/instrumenting/exposition_formats/), written by
// hand: counters, gauges and histograms with fixed label sets, served by
// GET /metrics on a listener of its own (METRICS_ADDR), never on the API's.
// Every label value comes from a closed set (route patterns, status
// classes, the verifier's refusal reasons, endpoint and operation names),
// never from a request, so the number of series is bounded.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// durationBuckets are the upper bounds, in seconds, of every latency
// histogram.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// metrics holds the service's instruments. A nil *metrics records nothing
// (METRICS_ADDR unset): its methods return the handler, store or observer
// unchanged or nil. Safe for concurrent use.
type metrics struct {
	start      time.Time
	requests   *counterVec   // heroes_http_requests_total{route,status}
	durations  *histogramVec // heroes_http_request_duration_seconds{route}
	inFlight   atomic.Int64  // heroes_http_requests_in_flight
	tokens     *counterVec   // heroes_token_verifications_total{outcome}
	keyFetches *counterVec   // heroes_jwks_fetches_total{result}
	idpCalls   *histogramVec // heroes_idp_request_duration_seconds{endpoint}
	idpFails   *counterVec   // heroes_idp_request_failures_total{endpoint}
	storeOps   *histogramVec // heroes_store_operation_duration_seconds{operation}
	storeFails *counterVec   // heroes_store_operation_failures_total{operation}
}

// newMetricsIf is newMetrics() when on, else nil (no metrics).
func newMetricsIf(on bool) *metrics {
	if !on {
		return nil
	}
	return newMetrics()
}

// newMetrics makes the instruments, every series of a closed label set at
// zero so that rates work from the first scrape (route series appear with
// their first request).
func newMetrics() *metrics {
	m := &metrics{
		start:      time.Now(),
		requests:   newCounterVec("route", "status"),
		durations:  newHistogramVec("route"),
		tokens:     newCounterVec("outcome"),
		keyFetches: newCounterVec("result"),
		idpCalls:   newHistogramVec("endpoint"),
		idpFails:   newCounterVec("endpoint"),
		storeOps:   newHistogramVec("operation"),
		storeFails: newCounterVec("operation"),
	}
	for _, o := range append([]string{"cache_hit", "verified"}, tokenOutcomeNames()...) {
		m.tokens.add(0, o)
	}
	m.keyFetches.add(0, "ok")
	m.keyFetches.add(0, "error")
	for _, e := range []string{"discovery", "keys", "token"} {
		m.idpCalls.series(e)
		m.idpFails.add(0, e)
	}
	for _, op := range storeOperations {
		m.storeOps.series(op)
		m.storeFails.add(0, op)
	}
	return m
}

// routeKey is the context key of the *string instrument gives routeErrors
// to note the matched pattern in.
type routeKey struct{}

// noteRoute records the route pattern that serves the request of ctx, for
// the request metrics, as a reader would write the path: without the {$}
// that makes a pattern ending in "/" match that path alone ("GET /{$}" is
// "GET /", "GET /api/heroes/{$}" is "GET /api/heroes/"); "" for a request
// no route takes.
func noteRoute(ctx context.Context, pattern string) {
	if p, ok := ctx.Value(routeKey{}).(*string); ok {
		*p = strings.TrimSuffix(pattern, "{$}")
	}
}

// instrument wraps the service's handler: it counts requests by route
// pattern (noteRoute; "unmatched" for none) and status class, times them,
// and counts those in flight. A panic going through (http.ErrAbortHandler)
// is counted as the status already sent, else 500.
func (m *metrics) instrument(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start, route := time.Now(), ""
		rec := &responseRecorder{ResponseWriter: w}
		m.inFlight.Add(1)
		defer func() {
			m.inFlight.Add(-1)
			status := rec.status
			v := recover()
			if status == 0 {
				status = http.StatusOK
				if v != nil {
					status = http.StatusInternalServerError
				}
			}
			route = cmp.Or(route, "unmatched")
			m.requests.add(1, route, strconv.Itoa(status/100)+"xx")
			m.durations.observe(time.Since(start), route)
			if v != nil {
				panic(v)
			}
		}()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), routeKey{}, &route)))
	})
}

// verifyObserver is the verifyOptions.Observe of the resource server:
// token verifications by outcome and key-set fetches by result. nil when m
// is nil.
func (m *metrics) verifyObserver() func(event string, err error) {
	if m == nil {
		return nil
	}
	return func(event string, err error) {
		switch event {
		case "token_cached":
			m.tokens.add(1, "cache_hit")
		case "token":
			m.tokens.add(1, tokenOutcome(err))
		case "keys_fetch":
			if err != nil {
				m.keyFetches.add(1, "error")
			} else {
				m.keyFetches.add(1, "ok")
			}
		}
	}
}

// tokenOutcomes name the verifier's refusals for
// heroes_token_verifications_total, in the order they are tested.
var tokenOutcomes = []struct {
	err  error
	name string
}{
	{errMalformedToken, "malformed"}, {errUnsupportedAlg, "unsupported_alg"}, {errBadHeader, "bad_header"},
	{errNoKeyID, "no_key_id"}, {errUnknownKID, "unknown_key"}, {errBadSignature, "bad_signature"},
	{errBadIssuer, "wrong_issuer"}, {errKeyIssuer, "key_of_another_issuer"}, {errBadAudience, "wrong_audience"},
	{errTokenExpired, "expired"}, {errNotYetValid, "not_yet_valid"}, {errIssuedInFuture, "issued_in_future"},
	{errTenantForbidden, "tenant_not_allowed"}, {errNoClient, "no_client"}, {errNoPermissions, "no_permissions"},
	{errIDPUnavailable, "keys_unavailable"}, {context.Canceled, "canceled"}, {context.DeadlineExceeded, "timeout"},
}

// tokenOutcomeNames lists every refusal name, and "other".
func tokenOutcomeNames() []string {
	var names []string
	for _, o := range tokenOutcomes {
		names = append(names, o.name)
	}
	return append(names, "other")
}

// tokenOutcome names the outcome of one verification: "verified" for nil.
func tokenOutcome(err error) string {
	if err == nil {
		return "verified"
	}
	for _, o := range tokenOutcomes {
		if errors.Is(err, o.err) {
			return o.name
		}
	}
	return "other"
}

// idpObserver is the traceTransport observer of calls to the identity
// provider: latency and failures by endpoint (discovery, keys, token). nil
// when m is nil.
func (m *metrics) idpObserver() func(r *http.Request, d time.Duration, failed bool) {
	if m == nil {
		return nil
	}
	return func(r *http.Request, d time.Duration, failed bool) {
		endpoint := "keys"
		switch {
		case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			endpoint = "discovery"
		case r.Method == http.MethodPost:
			endpoint = "token"
		}
		m.idpCalls.observe(d, endpoint)
		if failed {
			m.idpFails.add(1, endpoint)
		}
	}
}

// storeOperations are the heroStore methods meteredStore times.
var storeOperations = []string{"list", "get", "create", "create_once", "replace", "delete", "ready"}

// meter wraps store so each operation is timed and its failures counted:
// an error that is not the answer itself (not found, conflict, too large,
// a reused idempotency key) nor the caller going away. store unchanged when
// m is nil.
func (m *metrics) meter(store heroStore) heroStore {
	if m == nil {
		return store
	}
	return meteredStore{heroStore: store, m: m}
}

// meteredStore is a heroStore whose operations are measured (metrics.meter).
type meteredStore struct {
	heroStore
	m *metrics
}

// done records one operation that started at start and ended with err.
func (s meteredStore) done(op string, start time.Time, err error) {
	s.m.storeOps.observe(time.Since(start), op)
	for _, answer := range []error{errHeroNotFound, errHeroConflict, errHeroTooLarge, errIdempotencyMismatch, context.Canceled} {
		if errors.Is(err, answer) {
			return
		}
	}
	if err != nil {
		s.m.storeFails.add(1, op)
	}
}

func (s meteredStore) List(ctx context.Context, offset, limit int) (hs []hero, err error) {
	defer func(start time.Time) { s.done("list", start, err) }(time.Now())
	return s.heroStore.List(ctx, offset, limit)
}

func (s meteredStore) ListJSON(ctx context.Context, offset, limit int) (hs []json.RawMessage, err error) {
	defer func(start time.Time) { s.done("list", start, err) }(time.Now())
	return s.heroStore.ListJSON(ctx, offset, limit)
}

func (s meteredStore) ListAfter(ctx context.Context, after string, limit int) (hs []hero, err error) {
	defer func(start time.Time) { s.done("list", start, err) }(time.Now())
	return s.heroStore.ListAfter(ctx, after, limit)
}

func (s meteredStore) Get(ctx context.Context, id string) (h hero, etag string, err error) {
	defer func(start time.Time) { s.done("get", start, err) }(time.Now())
	return s.heroStore.Get(ctx, id)
}

func (s meteredStore) Create(ctx context.Context, h hero) (etag string, err error) {
	defer func(start time.Time) { s.done("create", start, err) }(time.Now())
	return s.heroStore.Create(ctx, h)
}

func (s meteredStore) CreateOnce(ctx context.Context, h hero, key idempotencyKey) (rec idemRecord, replay bool, err error) {
	defer func(start time.Time) { s.done("create_once", start, err) }(time.Now())
	return s.heroStore.CreateOnce(ctx, h, key)
}

func (s meteredStore) Replace(ctx context.Context, h hero, ifMatch string) (etag string, err error) {
	defer func(start time.Time) { s.done("replace", start, err) }(time.Now())
	return s.heroStore.Replace(ctx, h, ifMatch)
}

func (s meteredStore) Delete(ctx context.Context, id, ifMatch string) (err error) {
	defer func(start time.Time) { s.done("delete", start, err) }(time.Now())
	return s.heroStore.Delete(ctx, id, ifMatch)
}

func (s meteredStore) Ready(ctx context.Context) (err error) {
	defer func(start time.Time) { s.done("ready", start, err) }(time.Now())
	return s.heroStore.Ready(ctx)
}

// handleMetrics serves GET /metrics: every instrument in the text
// exposition format.
func (m *metrics) handleMetrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		m.write(&buf)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(buf.Bytes())
	})
}

// write writes every metric family: HELP, TYPE, then its series.
func (m *metrics) write(w io.Writer) {
	m.requests.write(w, "heroes_http_requests_total", "HTTP requests answered, by route pattern and status class.")
	m.durations.write(w, "heroes_http_request_duration_seconds", "Time to answer an HTTP request, by route pattern.")
	writeGauge(w, "heroes_http_requests_in_flight", "HTTP requests being answered.", float64(m.inFlight.Load()))
	m.tokens.write(w, "heroes_token_verifications_total", "Access token verifications, by outcome: cache_hit, verified, or the refusal reason.")
	m.keyFetches.write(w, "heroes_jwks_fetches_total", "Fetches of the identity provider's key set, by result.")
	m.idpCalls.write(w, "heroes_idp_request_duration_seconds", "Time of calls to the identity provider, by endpoint.")
	m.idpFails.write(w, "heroes_idp_request_failures_total", "Calls to the identity provider without an answer or answered 429 or 5xx, by endpoint.")
	m.storeOps.write(w, "heroes_store_operation_duration_seconds", "Time of hero store operations, by operation.")
	m.storeFails.write(w, "heroes_store_operation_failures_total", "Hero store operations that failed (unavailable, unexpected answer), by operation.")
	writeRuntime(w, m.start)
}

// writeRuntime writes the Go runtime basics: goroutines, heap, memory from
// the system, garbage collections, version and process start time.
func writeRuntime(w io.Writer, start time.Time) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	writeGauge(w, "go_goroutines", "Goroutines that currently exist.", float64(runtime.NumGoroutine()))
	writeGauge(w, "go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.", float64(ms.HeapAlloc))
	writeGauge(w, "go_memstats_sys_bytes", "Bytes of memory obtained from the system.", float64(ms.Sys))
	fmt.Fprintf(w, "# HELP go_gc_cycles_total Completed garbage collection cycles.\n# TYPE go_gc_cycles_total counter\ngo_gc_cycles_total %d\n", ms.NumGC)
	fmt.Fprintf(w, "# HELP go_gc_pause_seconds_total Time the world was stopped for garbage collection.\n# TYPE go_gc_pause_seconds_total counter\ngo_gc_pause_seconds_total %s\n",
		formatFloat(float64(ms.PauseTotalNs)/1e9))
	fmt.Fprintf(w, "# HELP go_info Information about the Go runtime.\n# TYPE go_info gauge\ngo_info{version=%s} 1\n", quoteLabel(runtime.Version()))
	writeGauge(w, "process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", float64(start.UnixNano())/1e9)
}

// writeGauge writes one gauge without labels.
func writeGauge(w io.Writer, name, help string, v float64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, formatFloat(v))
}

// formatFloat writes a sample value as the format wants it: the shortest
// decimal, +Inf, -Inf or NaN.
func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// quoteLabel quotes a label value, escaping backslash, double quote and
// line feed as the text format requires (labelEscaper).
func quoteLabel(v string) string {
	return `"` + labelEscaper.Replace(v) + `"`
}

// labelEscaper escapes a label value for quoteLabel. Made once: every
// counted request quotes its labels. A Replacer is safe for concurrent use.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// labelSet renders label names and values as {n1="v1",n2="v2"}.
func labelSet(names, values []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + quoteLabel(values[i])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// counterVec is a counter family with fixed label names; each series is
// created on first use. Safe for concurrent use.
type counterVec struct {
	labels []string
	mu     sync.RWMutex // guards series
	series map[string]*atomic.Uint64
}

func newCounterVec(labels ...string) *counterVec {
	return &counterVec{labels: labels, series: map[string]*atomic.Uint64{}}
}

// add adds n to the series of values (one per label name).
func (c *counterVec) add(n uint64, values ...string) {
	key := labelSet(c.labels, values)
	c.mu.RLock()
	v := c.series[key]
	c.mu.RUnlock()
	if v == nil {
		c.mu.Lock()
		if v = c.series[key]; v == nil {
			v = new(atomic.Uint64)
			c.series[key] = v
		}
		c.mu.Unlock()
	}
	v.Add(n)
}

// write writes the family, series ordered by labels.
func (c *counterVec) write(w io.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, key := range sortedKeys(c.series) {
		fmt.Fprintf(w, "%s%s %d\n", name, key, c.series[key].Load())
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// histogram is one series of a histogramVec: counts per bucket of
// durationBuckets (not cumulative; the last is +Inf), their sum in
// seconds, and the number of observations.
type histogram struct {
	mu     sync.Mutex // guards the fields below
	counts []uint64
	sum    float64
	count  uint64
}

// histogramVec is a histogram family of durations with fixed label names
// and durationBuckets. Safe for concurrent use.
type histogramVec struct {
	labels []string
	mu     sync.RWMutex // guards series
	hs     map[string]*histogram
}

func newHistogramVec(labels ...string) *histogramVec {
	return &histogramVec{labels: labels, hs: map[string]*histogram{}}
}

// series returns the series of values, creating it.
func (h *histogramVec) series(values ...string) *histogram {
	key := labelSet(h.labels, values)
	h.mu.RLock()
	s := h.hs[key]
	h.mu.RUnlock()
	if s != nil {
		return s
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s = h.hs[key]; s == nil {
		s = &histogram{counts: make([]uint64, len(durationBuckets)+1)}
		h.hs[key] = s
	}
	return s
}

// observe records one duration in the series of values.
func (h *histogramVec) observe(d time.Duration, values ...string) {
	s := h.series(values...)
	secs := d.Seconds()
	i, _ := slices.BinarySearch(durationBuckets, secs) // the first bound >= secs
	s.mu.Lock()
	s.counts[i]++
	s.sum += secs
	s.count++
	s.mu.Unlock()
}

// write writes the family: per series the cumulative _bucket lines with
// le, then _sum and _count.
func (h *histogramVec) write(w io.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, key := range sortedKeys(h.hs) {
		s := h.hs[key]
		s.mu.Lock()
		counts, sum, count := slices.Clone(s.counts), s.sum, s.count
		s.mu.Unlock()
		inner := strings.TrimSuffix(strings.TrimPrefix(key, "{"), "}") + ","
		var cum uint64
		for i, c := range counts {
			cum += c
			le := "+Inf"
			if i < len(durationBuckets) {
				le = formatFloat(durationBuckets[i])
			}
			fmt.Fprintf(w, "%s_bucket{%sle=%s} %d\n", name, inner, quoteLabel(le), cum)
		}
		fmt.Fprintf(w, "%s_sum%s %s\n%s_count%s %d\n", name, key, formatFloat(sum), name, key, count)
	}
}

// metricsReadTimeout and its kin are the limits of the metrics listener.
const (
	metricsReadTimeout  = 5 * time.Second
	metricsWriteTimeout = 10 * time.Second
)

// startMetrics serves GET /metrics of m on addr, on a server of its own
// (every timeout set), and returns the function that stops it. With addr
// "" (METRICS_ADDR unset) it serves nothing. The error names addr when it
// cannot listen.
func startMetrics(addr string, m *metrics, logger *slog.Logger) (stop func(), err error) {
	if addr == "" || m == nil {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handleMetrics())
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: metricsReadTimeout, ReadTimeout: metricsReadTimeout,
		WriteTimeout: metricsWriteTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go srv.Serve(ln) // ends with ErrServerClosed when stop closes it
	logger.Info("metrics listening", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
