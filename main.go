// Command heroes-auth serves a small heroes REST API protected by Microsoft
// Entra ID through the OAuth 2.0 authorization code flow, with the standard
// library only. See README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for a configuration error and 1 for any other failure.
func exitCode(err error) int {
	if errors.Is(err, errConfig) {
		return 2
	}
	return 1
}

// Server limits (issue: ready for production). Durations are time.Duration.
const (
	readHeaderTimeout = 5 * time.Second   // slow-header (slowloris) clients are cut off after this
	readTimeout       = 15 * time.Second  // whole request, body included
	writeTimeout      = 30 * time.Second  // covers the token endpoint call (10 s) with room to spare
	idleTimeout       = 120 * time.Second // keep-alive connections
	maxHeaderBytes    = 64 << 10          // 64 KiB: a 16 KiB token plus cookies fits
	idpTimeout        = 10 * time.Second  // every call to the identity provider
)

// run starts the service and blocks until ctx is cancelled or SIGINT/SIGTERM
// arrives, then shuts down gracefully within config.ShutdownGrace. args are
// the command line (args[0] is the program name); getenv reads the
// environment. It returns errConfig-wrapped errors for bad settings and any
// serve error other than http.ErrServerClosed.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dev := fs.Bool("dev", false, "serve a local identity provider under /devidp/ (loopback only, not for production)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}

	if data, err := os.ReadFile(".env_oauth"); err == nil {
		vars, err := parseDotEnv(data)
		if err != nil {
			return fmt.Errorf("%w: %w", errConfig, err)
		}
		getenv = withFallback(getenv, vars)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: reading .env_oauth: %w", errConfig, err)
	}

	addr := getenv("ADDR")
	if addr == "" {
		addr = "localhost:8000"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	defer ln.Close()

	var idp *devIDP
	if *dev {
		if !isLoopback(ln.Addr()) {
			return fmt.Errorf("%w: -dev listens on loopback only; ADDR %s is not", errConfig, addr)
		}
		idp, err = newDevIDP()
		if err != nil {
			return err
		}
		getenv = idp.getenv(getenv, publicBase(addr, ln.Addr()))
	}

	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	cfg.Dev = *dev
	logger := newLogger(cfg, stdout)
	if cfg.Dev {
		logger.Warn("running with -dev: a local identity provider signs tokens; not for production", "addr", ln.Addr().String())
	}
	if cfg.SessionKeyRandom {
		logger.Warn("SESSION_KEY is unset: using a random key for this process; several replicas need one shared key")
	}

	client := newIDPClient()
	prov := newProvider(cfg, client, logger)
	keys := newKeySet(cfg, prov, client, logger)
	v := newVerifier(cfg, prov, keys, time.Now)
	store, err := openStore(ctx, cfg, client, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	if cfg.Dev {
		if err := seedHeroes(ctx, store); err != nil {
			return err
		}
	}
	af, err := newAuthFlow(cfg, prov, v, client, logger)
	if err != nil {
		return err
	}

	go keys.run(ctx)

	srv := &http.Server{
		Handler:           newServer(logger, cfg, prov, v, af, store, idp),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return store.Close()
}

// newIDPClient is the HTTP client of every call to the identity provider and
// the table store: a 10 s timeout (idpTimeout), and no redirects followed, so
// a form carrying the client secret, a code or a client assertion is never
// re-sent to another server (RFC 6749 §3.2 wants the token endpoint itself).
// A redirect answer reaches the caller as it is, and is refused there as an
// unexpected status.
func newIDPClient() *http.Client {
	return &http.Client{
		Timeout: idpTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// isLoopback reports whether a listener address is on the loopback interface.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// publicBase is the base URL a browser uses to reach the listener: the host
// of ADDR as written (so "localhost" stays localhost for cookies) with the
// port actually bound (ADDR may ask for port 0).
func publicBase(addr string, bound net.Addr) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(bound.String()) // a TCP listener's address always has a port
	return "http://" + net.JoinHostPort(host, port)
}

// newLogger makes the service's one logger: JSON when LOG_FORMAT=json, text
// otherwise, at LOG_LEVEL.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newServer builds the service's handler: every route (addRoutes) wrapped in
// the middleware every answer goes through. It is safe for concurrent use.
// idp is nil unless the service runs with -dev.
func newServer(logger *slog.Logger, cfg config, prov *provider, v *verifier, af *authFlow, store heroStore, idp *devIDP) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, logger, cfg, prov, v, af, store, idp)
	var h http.Handler = mux
	h = recoverPanics(logger, h)
	h = securityHeaders(h)
	h = logRequests(logger, h)
	return h
}

// router is what addRoutes registers on: an *http.ServeMux, or in tests a
// recorder of the patterns.
type router interface {
	Handle(pattern string, handler http.Handler)
}

// addRoutes registers every route of the service in one place.
func addRoutes(mux router, logger *slog.Logger, cfg config, prov *provider, v *verifier, af *authFlow, store heroStore, idp *devIDP) {
	read := requireAuth(logger, v, permRead)
	create := requireAuth(logger, v, permCreate)
	admin := requireAuth(logger, v, permAdmin)

	mux.Handle("GET /{$}", handleIndex(cfg))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(logger, v, store))
	mux.Handle("GET /openapi.json", handleOpenAPI(cfg, prov))

	mux.Handle("GET /auth/login", af.handleLogin())
	mux.Handle("GET /auth/callback", af.handleCallback())
	mux.Handle("POST /auth/refresh", af.handleRefresh())
	mux.Handle("GET /auth/logout", af.handleLogout())

	// The original's paths end in "/"; the version without it works too.
	for _, path := range []string{"/api/heroes/{$}", "/api/heroes"} {
		mux.Handle("GET "+path, read(handleHeroList(logger, store)))
		mux.Handle("POST "+path, create(handleHeroCreate(logger, store)))
	}
	mux.Handle("GET /api/heroes/{id}", read(handleHeroGet(logger, store)))
	mux.Handle("PUT /api/heroes/{id}", create(handleHeroReplace(logger, store)))
	mux.Handle("DELETE /api/heroes/{id}", admin(handleHeroDelete(logger, store)))
	mux.Handle("GET /api/heroes-fireball-low-ac", read(handleFireballLowAC(logger, store)))

	if idp != nil {
		idp.addRoutes(mux, logger)
	}
}

// apiError is the JSON body of every error answer, in FastAPI's shape
// ({"detail": …}) so the original service's clients keep working. Detail is
// a message, or for 422 the list of validation problems. Error is the OAuth
// error code when there is one (RFC 6749 §5.2, RFC 6750 §3.1) and Code an
// upstream code such as Entra's AADSTS number.
type apiError struct {
	Detail any    `json:"detail"`
	Error  string `json:"error,omitempty"`
	Code   string `json:"code,omitempty"`
}

// writeJSON writes v as JSON with the given status. HTML characters are not
// escaped (no \u003c for "<"): the answer is application/json and every
// answer carries X-Content-Type-Options: nosniff (securityHeaders), so no
// browser reads it as HTML, and escaping would make a hero full of "<" six
// times its size. Errors writing to the client are ignored: the client has
// gone and nothing else can be told.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // Encode ends the JSON with a newline
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"detail":"internal error"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// writeError writes an apiError with only a detail message.
func writeError(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, apiError{Detail: detail})
}

// handleHealthz serves GET /healthz: 200 while the process is alive.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReadyz serves GET /readyz: 200 when the discovery document and the
// signing keys are loaded and the store answers, else 503 naming what is not
// ready. No authentication.
func handleReadyz(logger *slog.Logger, v *verifier, store heroStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		checks := map[string]string{"keys": "ok", "store": "ok"}
		ready := true
		if err := v.ready(); err != nil {
			checks["keys"], ready = err.Error(), false
		}
		if err := store.Ready(ctx); err != nil {
			checks["store"], ready = "unavailable", false
			logger.Warn("readyz: store not ready", "err", err)
		}
		if !ready {
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "checks": checks})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
	})
}
