// Command heroes-auth serves a small heroes REST API protected by Microsoft
// Entra ID through the OAuth 2.0 authorization code flow, with the standard
// library only. See README.md.
package main

import (
	"cmp"
	"context"
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

// Server limits. Durations are time.Duration.
const (
	readHeaderTimeout = 5 * time.Second   // slow-header (slowloris) clients are cut off after this
	readTimeout       = 15 * time.Second  // whole request, body included
	writeTimeout      = 30 * time.Second  // covers the token endpoint call (10 s) with room to spare
	idleTimeout       = 120 * time.Second // keep-alive connections
	maxHeaderBytes    = 64 << 10          // 64 KiB: a 16 KiB token plus cookies fits
)

// run starts the service and blocks until ctx is cancelled or SIGINT/SIGTERM
// arrives, then shuts down gracefully: it stops accepting, lets in-flight
// requests finish for up to config.ShutdownGrace, cuts what still runs after
// that, closes the store and returns nil. args are
// the command line (args[0] is the program name); getenv reads the
// environment. It returns errConfig-wrapped errors for bad settings and any
// serve error other than http.ErrServerClosed.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dev := fs.Bool("dev", false, "serve a local identity provider under /devidp/ (loopback only, not for production)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [-dev]\n\nSettings come from the environment and .env_oauth; README.md lists them.\n\n", args[0])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	getenv, err := withDotEnvFile(getenv, ".env_oauth")
	if err != nil {
		return err
	}

	// With -dev the listener comes first: the dev provider's URLs, and so
	// the settings, depend on the port actually bound. Otherwise the
	// settings are checked before anything else happens.
	var ln net.Listener
	var idp *devIDP
	if *dev {
		if ln, idp, getenv, err = listenDev(getenv); err != nil {
			return err
		}
		defer ln.Close()
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	cfg.Dev = *dev
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
		defer ln.Close()
	}
	logger := newLogger(cfg, stdout)
	if cfg.Dev {
		logger.Warn("running with -dev: a local identity provider signs tokens; not for production. "+
			"The AZURE_* identity settings, API_SCOPE and REDIRECT_URI are the dev provider's; yours are ignored", "addr", ln.Addr().String())
	}
	if cfg.SessionKeyRandom {
		logger.Warn("SESSION_KEY is unset: using a random key for this process; several replicas need one shared key")
	}

	client := newIDPClient()
	vo := cfg.verifyOptions(client, logger)
	prov := newProvider(vo)
	keys := newKeySet(vo, prov)
	v := newVerifier(vo, prov, keys)
	store, err := openStore(ctx, cfg.storeOptions(), client, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	if cfg.Dev {
		if err := seedHeroes(ctx, store); err != nil {
			logger.Warn("-dev: sample heroes not added", "err", err)
		}
	}
	af, err := newAuthFlow(cfg.loginOptions(), prov, v, client, logger)
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}

	go keys.run(ctx)

	srv := newHTTPServer(newServer(logger, cfg, prov, v, af, store, idp), logger)
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
		// The grace period is over: cut the requests still running. The
		// shutdown is still an orderly one, so run returns nil (exit 0).
		logger.Warn("shutdown: grace period over; closing the connections still open", "err", err)
		srv.Close()
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

// withDotEnvFile returns a getenv that falls back to the variables of the
// file at path (see parseDotEnv) when it exists; real environment variables
// win. A missing file changes nothing; an unreadable or malformed one is an
// errConfig error.
func withDotEnvFile(getenv func(string) string, path string) (func(string) string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return getenv, nil
	} else if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", errConfig, path, err)
	}
	vars, err := parseDotEnv(data)
	if err != nil {
		return nil, err
	}
	return withFallback(getenv, vars), nil
}

// listenDev listens on ADDR (default localhost:8000), which must be a
// loopback address, and makes the dev identity provider. It returns the
// listener, the provider, and a getenv that answers the identity settings
// with the provider's values for the URL the listener is reached at.
func listenDev(getenv func(string) string) (net.Listener, *devIDP, func(string) string, error) {
	addr := getenv("ADDR")
	if addr == "" {
		addr = "localhost:8000"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if !isLoopback(ln.Addr()) {
		ln.Close()
		return nil, nil, nil, fmt.Errorf("%w: -dev listens on loopback only; ADDR %s is not", errConfig, addr)
	}
	idp, err := newDevIDP()
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	return ln, idp, idp.getenv(getenv, publicBase(addr, ln.Addr())), nil
}

// newHTTPServer is the service's http.Server: every timeout and the header
// size limit set (see the constants above), net/http's own errors logged
// through logger at warn level.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
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
	return withMiddleware(logger, mux)
}

// withMiddleware wraps mux in what every answer goes through: JSON answers
// for unrouted requests, panic recovery, security headers, the request log.
func withMiddleware(logger *slog.Logger, mux *http.ServeMux) http.Handler {
	var h http.Handler = routeErrors(mux)
	h = recoverPanics(logger, h)
	h = securityHeaders(h)
	h = logRequests(logger, h)
	return h
}

// routeErrors answers the requests no route takes in the API's JSON error
// shape: 404 for an unknown path, 405 with Allow for a known path and another
// method, where ServeMux would answer in plain text. Everything else goes to
// mux.
func routeErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// ServeMux's own handler knows the status and the Allow header;
		// let it answer into a recorder, then answer in JSON.
		rec := &statusOnly{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		status := cmp.Or(rec.status, http.StatusNotFound)
		writeError(w, status, http.StatusText(status))
	})
}

// statusOnly is a ResponseWriter that keeps the header and the status and
// drops the body.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
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

	mux.Handle("GET /{$}", handleIndex(cfg.Dev, cfg.APIScopes))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(logger, v, store))
	mux.Handle("GET /openapi.json", handleOpenAPI(cfg, prov))

	mux.Handle("GET /auth/login", af.handleLogin())
	mux.Handle("GET /auth/callback", af.handleCallback(heroesPreview(logger, store)))
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

// heroesPreview is what GET /api/heroes/?limit=10 would answer to an access
// token, for the signed-in page: the heroes' names, or a sentence saying why
// there are none to show. It applies the API's permission rule
// (hasPermission).
func heroesPreview(logger *slog.Logger, store heroStore) signedInPreview {
	return func(ctx context.Context, atc *claims) ([]string, string) {
		if !hasPermission(atc, permRead) {
			return nil, "This token does not grant " + permRead + ", so the API would answer 403."
		}
		list, err := store.List(ctx, 0, 10)
		if err != nil {
			logger.Warn("auth: heroes for the signed-in page", "err", err)
			return nil, "The heroes could not be read just now."
		}
		var names []string
		for _, h := range list {
			names = append(names, h.Name)
		}
		if len(names) == 0 {
			return nil, "There are no heroes yet."
		}
		return names, ""
	}
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
