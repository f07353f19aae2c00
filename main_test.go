package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent use: run writes logs to
// it while a test reads them.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRun starts run with args and getenv (ADDR forced to a free loopback
// port, logs as JSON) and waits until /healthz answers. It returns the base
// URL, the log buffer, and a stop function that cancels run's context and
// returns run's error.
func startRun(tb testing.TB, args []string, getenv func(string) string) (base string, logs *syncBuffer, stop func() error) {
	tb.Helper()
	logs = &syncBuffer{}
	env := func(k string) string {
		switch k {
		case "ADDR":
			return "127.0.0.1:0"
		case "LOG_FORMAT":
			return "json"
		}
		return getenv(k)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(ctx, append([]string{"heroes-auth"}, args...), env, logs, logs)
	}()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(20 * time.Second):
			return errors.New("run did not return 20 s after cancel")
		}
	})
	tb.Cleanup(func() { stop() })

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			tb.Fatalf("run returned early: %v\nlogs:\n%s", runErr, logs)
		default:
		}
		if addr := listeningAddr(logs.String()); addr != "" {
			base = "http://" + addr
			if resp, err := http.Get(base + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return base, logs, stop
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("service did not become healthy; logs:\n%s", logs)
	return "", nil, nil
}

// listeningAddr finds the address in run's "listening" log line.
func listeningAddr(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
			return rec.Addr
		}
	}
	return ""
}

func TestRunConfigErrorExitsTwo(t *testing.T) {
	var stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "ADDR" {
			return "127.0.0.1:0"
		}
		if k == "AZURE_CLIENT_SECRET" {
			return "do-not-print-me"
		}
		return ""
	}
	err := run(context.Background(), []string{"heroes-auth"}, getenv, io.Discard, &stderr)
	if !errors.Is(err, errConfig) || exitCode(err) != 2 {
		t.Fatalf("run = %v (exit %d); want a config error, exit 2", err, exitCode(err))
	}
	if strings.Contains(err.Error(), "do-not-print-me") {
		t.Errorf("run error %q holds the secret", err)
	}
	for _, want := range []string{"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "API_SCOPE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("run error %q does not name %s", err, want)
		}
	}
}

func TestRunUnknownFlag(t *testing.T) {
	err := run(context.Background(), []string{"heroes-auth", "-nope"}, func(string) string { return "" }, io.Discard, io.Discard)
	if exitCode(err) != 2 {
		t.Errorf("run(-nope) = %v; want a config error", err)
	}
}

func TestRunStartsAndStopsCleanly(t *testing.T) {
	p := newTestIDP(t)
	base, _, stop := startRun(t, nil, p.getenv(nil))
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := stop(); err != nil {
		t.Errorf("run after cancel = %v; want nil", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("server still answers after run returned")
	}
}

// newTestServer builds the handler with a memory store and the given
// provider's settings, as run does, without listening.
func newTestServer(tb testing.TB, p *testIDP, extra map[string]string, logs io.Writer) http.Handler {
	tb.Helper()
	cfg := p.config(tb, extra)
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	client := newIDPClient()
	prov, v, af := newTestHalves(tb, cfg, cfg.verifyOptions(client, logger), client, logger)
	store, err := openStore(context.Background(), cfg.storeOptions(), client, logger)
	if err != nil {
		tb.Fatalf("openStore: %v", err)
	}
	return newServer(logger, cfg, prov, v, af, store, nil)
}

// newTestHalves builds what run builds from cfg for both halves: the
// provider and key set from vo, the verifier, and the sign-in flow calling
// the provider with client. It fails tb if the sign-in flow cannot be made.
func newTestHalves(tb testing.TB, cfg config, vo verifyOptions, client *http.Client, logger *slog.Logger) (*provider, *verifier, *authFlow) {
	tb.Helper()
	prov := newProvider(vo)
	v := newVerifier(vo, prov, newKeySet(vo, prov))
	af, err := newAuthFlow(cfg.loginOptions(), prov, v, client, logger)
	if err != nil {
		tb.Fatalf("newAuthFlow: %v", err)
	}
	return prov, v, af
}

func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	p := newTestIDP(t)
	h := newTestServer(t, p, nil, io.Discard)
	for _, path := range []string{"/healthz", "/api/heroes/", "/no-such-page", "/"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		for name, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
			"Content-Security-Policy": contentSecurityPolicy,
		} {
			if got := rec.Header().Get(name); got != want {
				t.Errorf("GET %s: %s = %q; want %q", path, name, got, want)
			}
		}
		if rec.Header().Get("X-Request-Id") == "" {
			t.Errorf("GET %s: no X-Request-Id", path)
		}
	}
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name, in string
		echoed   bool
	}{
		{"well-formed id is echoed", "abc-123.DEF_4", true},
		{"id with spaces is replaced", "abc 123", false},
		{"id with a newline is replaced", "a\nb", false},
		{"overlong id is replaced", strings.Repeat("a", 65), false},
		{"missing id is generated", "", false},
	}
	h := logRequests(slog.New(slog.DiscardHandler), handleHealthz())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/healthz", nil)
			if tc.in != "" {
				r.Header["X-Request-Id"] = []string{tc.in}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			got := rec.Header().Get("X-Request-Id")
			if tc.echoed != (got == tc.in) || !requestIDPattern.MatchString(got) {
				t.Errorf("X-Request-Id %q → %q; want echoed=%v and well-formed", tc.in, got, tc.echoed)
			}
		})
	}
}

func TestPanicBecomes500AndServerKeepsServing(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { panic("secret-panic-value") })
	mux.Handle("GET /ok", handleHealthz())
	h := logRequests(logger, securityHeaders(recoverPanics(logger, mux)))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("GET /boom status = %d; want 500", rec.Code)
	}
	var body apiError
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Detail != "internal error" {
		t.Errorf("GET /boom body = %s; want {\"detail\":\"internal error\"}", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "secret-panic-value") || strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("GET /boom leaks the panic: %s", rec.Body)
	}
	if !strings.Contains(logs.String(), "panic in handler") {
		t.Errorf("no log line for the panic: %s", logs.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ok", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /ok after a panic = %d; want 200", rec.Code)
	}
}

// TestRequestLogLine: one line per request with the documented fields, and
// never the query string, the Authorization header or a cookie.
func TestRequestLogLine(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	h := logRequests(logger, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Context().Value(callerHookKey{}).(func(*principal, error))(&principal{ObjectID: "oid-1", TenantID: "tid-1", AuthorizedParty: "azp-1"}, nil)
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "12345")
	}))
	r := httptest.NewRequest("GET", "/api/heroes/?code=the-code&state=the-state", nil)
	r.Header.Set("Authorization", "Bearer the-token")
	r.Header.Set("Cookie", "heroes_login=the-cookie")
	r.Header.Set("X-Request-Id", "req-1")
	h.ServeHTTP(httptest.NewRecorder(), r)

	var rec map[string]any
	if err := json.Unmarshal([]byte(logs.String()), &rec); err != nil {
		t.Fatalf("log is not one JSON line: %q", logs.String())
	}
	want := map[string]any{"method": "GET", "path": "/api/heroes/", "status": 418.0, "bytes": 5.0,
		"request_id": "req-1", "oid": "oid-1", "tid": "tid-1", "azp": "azp-1"}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("log %s = %v; want %v", k, rec[k], v)
		}
	}
	if _, ok := rec["duration"]; !ok {
		t.Errorf("log has no duration: %v", rec)
	}
	for _, secret := range []string{"the-code", "the-state", "the-token", "the-cookie"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log holds %q: %s", secret, logs.String())
		}
	}
}

// benchServer serves h on a real loopback listener and returns its URL and a
// client whose connection pool fits b's parallelism.
func benchServer(b *testing.B, h http.Handler) (string, *http.Client) {
	b.Helper()
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr}
}

// benchGet sends GET url with the token from next() in parallel goroutines
// and fails on any status but 200.
func benchGet(b *testing.B, client *http.Client, url string, next func() string) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			if tok := next(); tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkHeroesListAuthenticated: GET /api/heroes/ through the whole
// handler (middleware, bearer check, list) on loopback, parallel clients
// reusing one valid token, so the verified-token cache answers after the
// first request. Compare with BenchmarkHeroesListNoAuth.
func BenchmarkHeroesListAuthenticated(b *testing.B) {
	p := newTestIDP(b)
	url, client := benchServer(b, newTestServer(b, p, nil, io.Discard))
	tok := p.token(b, nil)
	benchGet(b, client, url+"/api/heroes/", func() string { return tok })
}

// BenchmarkHeroesListNoAuth is BenchmarkHeroesListAuthenticated's handler
// with the bearer middleware bypassed: the same middleware chain
// (withMiddleware), logger and list handler, no token.
func BenchmarkHeroesListNoAuth(b *testing.B) {
	p := newTestIDP(b)
	cfg := p.config(b, nil)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil)) // as newTestServer's
	store, err := openStore(context.Background(), cfg.storeOptions(), http.DefaultClient, logger)
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/heroes/{$}", handleHeroList(logger, store))
	url, client := benchServer(b, withMiddleware(logger, nil, mux))
	benchGet(b, client, url+"/api/heroes/", func() string { return "" })
}

// BenchmarkHeroesListDistinctTokens presents a new valid token on every
// request, so each pays the RSA verification: the cost the cache saves.
// Tokens are signed before the timer starts.
func BenchmarkHeroesListDistinctTokens(b *testing.B) {
	p := newTestIDP(b)
	url, client := benchServer(b, newTestServer(b, p, nil, io.Discard))
	toks := make([]string, b.N)
	for i := range toks {
		toks[i] = p.token(b, map[string]any{"jti": fmt.Sprint(i)})
	}
	var next atomic.Int64
	benchGet(b, client, url+"/api/heroes/", func() string { return toks[next.Add(1)-1] })
}

// TestUnroutedRequestsGetJSON: requests no route takes get the API's JSON
// error shape, not ServeMux's plain text; 405 keeps its Allow header.
func TestUnroutedRequestsGetJSON(t *testing.T) {
	p := newTestIDP(t)
	h := newTestServer(t, p, nil, io.Discard)
	tests := []struct {
		name, method, path string
		status             int
		allow              string
	}{
		{"unknown path", "GET", "/no-such-page", http.StatusNotFound, ""},
		{"unknown API path", "GET", "/api/villains/", http.StatusNotFound, ""},
		{"known path, other method", "PATCH", "/api/heroes/0b9c1b4e-6d55-4d36-9f37-2a7e0c2e3f10", http.StatusMethodNotAllowed, "DELETE, GET, HEAD, PUT"},
		{"POST to the health check", "POST", "/healthz", http.StatusMethodNotAllowed, "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			var body apiError
			if rec.Code != tc.status || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
				t.Fatalf("%s %s = %d %q %s; want %d JSON", tc.method, tc.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body, tc.status)
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("%s %s Allow = %q; want %q", tc.method, tc.path, got, tc.allow)
			}
		})
	}
}

func TestRunHelpExitsZero(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"heroes-auth", "-h"}, func(string) string { return "" }, io.Discard, &stderr)
	if err != nil || !strings.Contains(stderr.String(), "README.md") {
		t.Errorf("run(-h) = %v, printed %q; want nil and a usage naming README.md", err, stderr.String())
	}
}

// TestRunChecksSettingsBeforeListening: a bad ADDR is a settings error
// (exit 2) named with the others, not a listen error.
func TestRunChecksSettingsBeforeListening(t *testing.T) {
	getenv := func(k string) string { return map[string]string{"ADDR": "nonsense", "LOG_FORMAT": "xml"}[k] }
	err := run(context.Background(), []string{"heroes-auth"}, getenv, io.Discard, io.Discard)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "ADDR is not host:port") || !strings.Contains(err.Error(), "LOG_FORMAT") {
		t.Errorf("run = %v; want one settings error naming ADDR and LOG_FORMAT", err)
	}
}

// TestRunReadsDotEnvFile: .env_oauth in the working directory fills the
// settings the environment leaves empty, and a malformed one stops start-up
// with a settings error naming the line.
func TestRunReadsDotEnvFile(t *testing.T) {
	t.Chdir(t.TempDir())
	os.WriteFile(".env_oauth", []byte("AZURE_CLIENT_ID=not-a-guid\nBROKEN LINE\n"), 0o600)
	err := run(context.Background(), []string{"heroes-auth"}, func(string) string { return "" }, io.Discard, io.Discard)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), ".env_oauth line 2") || strings.Count(err.Error(), "config:") != 1 {
		t.Errorf("run with a malformed .env_oauth = %v; want one settings error naming line 2", err)
	}
	os.WriteFile(".env_oauth", []byte("AZURE_CLIENT_ID=not-a-guid\n"), 0o600)
	err = run(context.Background(), []string{"heroes-auth"}, func(string) string { return "" }, io.Discard, io.Discard)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "AZURE_CLIENT_ID is not a GUID") {
		t.Errorf("run with .env_oauth = %v; want its AZURE_CLIENT_ID read and refused", err)
	}
}

// TestHTTPServerLimits pins the server limits README documents.
func TestHTTPServerLimits(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	checks := []struct {
		name      string
		got, want any
	}{
		{"ReadHeaderTimeout", srv.ReadHeaderTimeout, 5 * time.Second},
		{"ReadTimeout", srv.ReadTimeout, 15 * time.Second},
		{"WriteTimeout", srv.WriteTimeout, 30 * time.Second},
		{"IdleTimeout", srv.IdleTimeout, 120 * time.Second},
		{"MaxHeaderBytes", srv.MaxHeaderBytes, 64 << 10},
		{"IdP client timeout", newIDPClient().Timeout, 10 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

// TestReadyzWithoutKeys: while no key set was ever loaded, /readyz is 503
// with Retry-After, /healthz stays 200, and protected routes answer 503.
func TestReadyzWithoutKeys(t *testing.T) {
	p := newTestIDP(t)
	p.jwksHandler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusInternalServerError) }
	h := newTestServer(t, p, nil, io.Discard)
	tests := []struct {
		path   string
		token  bool
		status int
	}{
		{"/healthz", false, http.StatusOK},
		{"/readyz", false, http.StatusServiceUnavailable},
		{"/api/heroes/", true, http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", tc.path, nil)
		if tc.token {
			bearer(r, p.token(t, nil))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tc.status || (tc.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "") {
			t.Errorf("GET %s = %d (Retry-After %q); want %d", tc.path, rec.Code, rec.Header().Get("Retry-After"), tc.status)
		}
	}
}

// TestRunWarnsWhenSessionKeyIsUnset: without SESSION_KEY, run logs a
// warning that the key is random per process and that replicas need a
// shared one; with it, no such warning.
func TestRunWarnsWhenSessionKeyIsUnset(t *testing.T) {
	t.Parallel()
	idp := newTestIDP(t)
	tests := []struct {
		name     string
		env      map[string]string
		wantWarn bool
	}{
		{"unset", nil, true},
		{"set", map[string]string{"SESSION_KEY": base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, logs, stop := startRun(t, nil, idp.getenv(tc.env))
			if err := stop(); err != nil {
				t.Fatalf("run = %v", err)
			}
			warned := false
			for line := range strings.SplitSeq(logs.String(), "\n") {
				var rec struct{ Level, Msg string }
				if json.Unmarshal([]byte(line), &rec) == nil && strings.Contains(rec.Msg, "SESSION_KEY") {
					warned = rec.Level == "WARN" && strings.Contains(rec.Msg, "random") && strings.Contains(rec.Msg, "replicas")
				}
			}
			if warned != tc.wantWarn {
				t.Errorf("SESSION_KEY %s: warned = %v; want %v; logs:\n%s", tc.name, warned, tc.wantWarn, logs)
			}
		})
	}
}

// TestRunLogsSettingWarnings: a likely mistake in the settings starts the
// service with a warning naming it, and the URL it is reached at is logged.
func TestRunLogsSettingWarnings(t *testing.T) {
	t.Parallel()
	idp := newTestIDP(t)
	_, logs, stop := startRun(t, nil, idp.getenv(map[string]string{"API_SCOPE": "Heroes.Read"}))
	var warned, ready bool
	for deadline := time.Now().Add(5 * time.Second); !ready && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for line := range strings.SplitSeq(logs.String(), "\n") {
			var rec struct{ Level, Msg, URL string }
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			warned = warned || rec.Level == "WARN" && strings.Contains(rec.Msg, `API_SCOPE entry "Heroes.Read" names no App ID URI`)
			ready = ready || rec.Msg == "ready" && rec.URL == "http://localhost:8000/"
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("run = %v", err)
	}
	if !warned || !ready {
		t.Errorf("warned about API_SCOPE %v, logged the URL once the keys were loaded %v; want both:\n%s", warned, ready, logs)
	}
}

func TestPermissionNotes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		scopes, roles []string
		want          []string
	}{
		{"reader", []string{permRead}, nil, []string{permRead}},
		{"delegated, strongest last", []string{permAdmin, "User.Read", permRead}, nil, []string{permRead, permAdmin}},
		{"application role", nil, []string{permCreate}, []string{permCreate}},
		{"none of the API's", []string{"User.Read"}, nil, nil},
	}
	for _, tc := range tests {
		var got []string
		for _, n := range permissionNotes(&claims{Scopes: tc.scopes, Roles: tc.roles}) {
			if n.Allows == "" {
				t.Errorf("%s: %s allows nothing", tc.name, n.Name)
			}
			got = append(got, n.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: permissionNotes = %v; want %v", tc.name, got, tc.want)
		}
	}
}

// TestRefusalOnTheRequestLine: why requireAuth refused a token is on the
// request's one log line (auth_error), without the token; the resource
// server alone, with no request log, logs the refusal itself.
func TestRefusalOnTheRequestLine(t *testing.T) {
	p := newTestIDP(t)
	garbage := "eyJ" + strings.Repeat("x", 40) + ".e30.AA"
	var logs syncBuffer
	h := newTestServer(t, p, nil, &logs)
	h.ServeHTTP(httptest.NewRecorder(), bearer(httptest.NewRequest("GET", "/api/heroes/", nil), garbage))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["msg"] != "request" || last["status"] != 401.0 ||
		!strings.Contains(fmt.Sprint(last["auth_error"]), "malformed token") || strings.Contains(logs.String(), garbage) {
		t.Errorf("log = %s; want the request line with auth_error and no token", logs.String())
	}
	if strings.Contains(logs.String(), "refused") {
		t.Errorf("log = %s; want no line of its own for the refusal", logs.String())
	}
	var alone syncBuffer
	v := newTestVerifier(t, p, nil)
	requireAuth(slog.New(slog.NewJSONHandler(&alone, nil)), v.verifier, permRead)(http.NotFoundHandler()).
		ServeHTTP(httptest.NewRecorder(), bearer(httptest.NewRequest("GET", "/", nil), garbage))
	if !strings.Contains(alone.String(), "auth: bearer credentials refused") || strings.Contains(alone.String(), garbage) {
		t.Errorf("log without a request log = %s; want the refusal, without the token", alone.String())
	}
}

// countingStore is a store whose Ready counts its calls and fails while
// down is set, or when its ctx has ended.
type countingStore struct {
	*localStore
	calls atomic.Int64
	down  atomic.Bool
}

func (s *countingStore) Ready(ctx context.Context) error {
	s.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.down.Load() {
		return fmt.Errorf("%w: test store is down", errStoreUnavailable)
	}
	return nil
}

// TestReadinessIsCached: the store's readiness is asked at most once per
// READYZ_CACHE, and its answer (success or failure) is reused meanwhile,
// so callers of /readyz cannot multiply requests to the store; after the
// interval it is asked again; a request that goes away does not make the
// store look down; 0 asks every time.
func TestReadinessIsCached(t *testing.T) {
	t.Parallel()
	store := &countingStore{localStore: newMemoryStore()}
	clock := newFakeClock(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	sr := &storeReadiness{logger: discardLogger(), store: store, ttl: 5 * time.Second, now: clock.now}
	ctx := context.Background()
	steps := []struct {
		name      string
		advance   time.Duration
		down      bool
		want      bool
		wantCalls int64
	}{
		{"first call asks the store", 0, false, true, 1},
		{"a hundred calls within the interval ask nothing", time.Second, true, true, 1},
		{"after the interval the store is asked again", 4 * time.Second, true, false, 2},
		{"a failure is kept too", 4 * time.Second, false, false, 2},
		{"and asked again after the interval", time.Second, false, true, 3},
	}
	for _, st := range steps {
		clock.advance(st.advance)
		store.down.Store(st.down)
		for range 100 {
			if got := sr.ready(ctx); got != st.want {
				t.Fatalf("%s: ready = %v; want %v", st.name, got, st.want)
			}
		}
		if got := store.calls.Load(); got != st.wantCalls {
			t.Errorf("%s: the store was asked %d times in all; want %d", st.name, got, st.wantCalls)
		}
	}

	clock.advance(time.Minute)
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if !sr.ready(gone) {
		t.Errorf("ready for a request that went away = false; want the store's own answer, true")
	}

	uncached := &storeReadiness{logger: discardLogger(), store: store, now: clock.now}
	before := store.calls.Load()
	uncached.ready(ctx)
	uncached.ready(ctx)
	if got := store.calls.Load() - before; got != 2 {
		t.Errorf("with READYZ_CACHE=0 two calls asked the store %d times; want 2", got)
	}
}

// TestUnknownDotEnvKeysAreWarned: the keys of .env_oauth that loadConfig
// never reads (a misspelt setting) are warned about at start, by name and
// never with their value; every setting loadConfig reads, whatever the
// other settings (ALLOWED_TENANTS with a single tenant, PORT beside ADDR), is
// known.
func TestUnknownDotEnvKeysAreWarned(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"AZURE_CLIENT_ID": testClientID, "ALLOWED_TENANTS": testTenant, "PORT": "8080", // ADDR wins over PORT
		"HEROES_FILES": "secret-ish-value", "LOG_LEVLE": "debug"}
	read := map[string]bool{}
	getenv := withFallback(mapGetenv(map[string]string{"ADDR": "127.0.0.1:0"}), vars)
	_, ln, _, err := listen(getenv, false, read)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	unknown := unknownKeys(vars, read)
	if want := []string{"HEROES_FILES", "LOG_LEVLE"}; !slices.Equal(unknown, want) {
		t.Errorf("unknownKeys = %q; want %q", unknown, want)
	}
	var logs bytes.Buffer
	cfg, _ := loadConfig(mapGetenv(nil))
	warnSettings(slog.New(slog.NewTextHandler(&logs, nil)), cfg, ln.Addr(), unknown)
	for _, k := range unknown {
		if !strings.Contains(logs.String(), ".env_oauth sets "+k+", which is not a setting") {
			t.Errorf("no warning names %s:\n%s", k, logs.String())
		}
	}
	if strings.Contains(logs.String(), "secret-ish-value") {
		t.Errorf("a warning holds a value of .env_oauth:\n%s", logs.String())
	}
}

// TestListenOnAnAddressInUse: when ADDR is taken, the error says the
// address is in use and how to choose another (ADDR or PORT).
func TestListenOnAnAddressInUse(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, ln, _, err := listen(mapGetenv(map[string]string{"ADDR": taken.Addr().String()}), false, map[string]bool{})
	if err == nil {
		ln.Close()
		t.Skip("this system let two listeners share the address")
	}
	for _, want := range []string{"listen on " + taken.Addr().String(), "address is in use", "ADDR", "PORT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("listen = %v; want it to say %q", err, want)
		}
	}
}

// TestDotEnvFileIsBounded: .env_oauth is read only when it is a regular file
// of at most maxDotEnvSize bytes; a FIFO is refused at once (it would hold
// the start for ever), a missing file changes nothing, a good one is read.
func TestDotEnvFileIsBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string { return writeTestFile(t, dir, name, content) }
	tests := []struct {
		name, path, want string // want: "" for success
	}{
		{"missing", filepath.Join(dir, "absent"), ""},
		{"good", write("good", "LOG_LEVEL=debug\n"), ""},
		{"too large", write("large", strings.Repeat("#", maxDotEnvSize+1)), "larger than"},
		{"a FIFO", testFIFO(t), "named pipe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, _, err := withDotEnvFile(mapGetenv(nil), tc.path); done <- err }()
			select {
			case err := <-done:
				if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.want)) {
					t.Errorf("withDotEnvFile(%s) = %v; want %q", tc.name, err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("withDotEnvFile(%s) still blocked after 10 s", tc.name)
			}
		})
	}
}

// TestRequestLogPath: the request log writes a path cut to maxLogPath bytes,
// with control characters as spaces and bidirectional overrides dropped, in
// JSON as in text, so a request can neither flood the log nor disguise or
// forge a line; a plain path is written as it is.
func TestRequestLogPath(t *testing.T) {
	long := "/" + strings.Repeat("a", 60_000)
	cases := []struct{ path, want string }{
		{"/api/heroes/", "/api/heroes/"},
		{"/x\u202egpj.exe", "/xgpj.exe"},
		{"/a\u2066b\u2069c", "/abc"},
		{"/line\nlevel=ERROR msg=forged", "/line level=ERROR msg=forged"},
		{"/nul\x00\x1b[31m\u0085", "/nul  [31m "},
		{"/héros", "/héros"},
		{long, long[:maxLogPath] + "…"},
	}
	for _, tc := range cases {
		var logs syncBuffer
		h := logRequests(slog.New(slog.NewJSONHandler(&logs, nil)), http.NotFoundHandler())
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = tc.path
		h.ServeHTTP(httptest.NewRecorder(), r)
		var rec map[string]any
		if err := json.Unmarshal([]byte(logs.String()), &rec); err != nil {
			t.Fatalf("log is not one JSON line: %q", logs.String())
		}
		if rec["path"] != tc.want {
			t.Errorf("path %q logged as %q; want %q", truncate(tc.path, 40), rec["path"], truncate(tc.want, 40))
		}
	}
}

// TestSecurityHeadersNotShared: securityHeaders shares its values between
// answers; a handler that adds to one of those headers changes its own
// answer only, never the next one's.
func TestSecurityHeadersNotShared(t *testing.T) {
	h := securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/add" {
			w.Header().Add("Content-Security-Policy", "img-src 'self'")
			w.Header().Add("X-Frame-Options", "SAMEORIGIN")
		}
	}))
	for _, path := range []string{"/add", "/", "/add", "/"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		want := 1
		if path == "/add" {
			want = 2
		}
		if got := w.Header().Values("Content-Security-Policy"); len(got) != want || got[0] != contentSecurityPolicy {
			t.Errorf("GET %s: Content-Security-Policy = %q; want %d values, the first the service's", path, got, want)
		}
		if got := w.Header().Values("X-Frame-Options"); len(got) != want || got[0] != "DENY" {
			t.Errorf("GET %s: X-Frame-Options = %q; want %d values, the first DENY", path, got, want)
		}
	}
}
