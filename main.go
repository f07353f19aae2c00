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
	"slices"
	"sync"
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
// arrives, then shuts down (serve) and closes the store. args are the
// command line (args[0] is the program name); getenv reads the environment.
// It returns errConfig-wrapped errors for bad settings and any serve error
// other than http.ErrServerClosed.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	dev, help, err := parseFlags(args, stderr)
	if help || err != nil {
		return err
	}
	getenv, dotEnv, err := withDotEnvFile(getenv, ".env_oauth")
	if err != nil {
		return err
	}
	read := map[string]bool{}
	cfg, ln, idp, err := listen(getenv, dev, read)
	if err != nil {
		return err
	}
	defer ln.Close()
	logger := newLogger(cfg, stdout)
	warnSettings(logger, cfg, ln.Addr(), unknownKeys(dotEnv, read))

	m := newMetricsIf(cfg.MetricsAddr != "")
	client, storeClient := newIDPClient(), newIDPClient()
	client.Transport = traceTransport{next: http.DefaultTransport, observe: m.idpObserver()}
	vo := cfg.verifyOptions(client, logger)
	vo.Observe = m.verifyObserver()
	prov := newProvider(vo)
	keys := newKeySet(vo, prov)
	v := newVerifier(vo, prov, keys)
	af, err := newAuthFlow(cfg.loginOptions(), prov, v, client, logger)
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	so := cfg.storeOptions()
	// A table connection string without AccountKey: Entra tokens of the
	// service's own credential (managed identity or federated token).
	so.TokenSource = af.resourceToken(storageResource)
	store, err := openStore(ctx, so, storeClient, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	store = m.meter(store)
	seedDev(ctx, cfg.Dev, store, logger)

	stopMetrics, err := startMetrics(cfg.MetricsAddr, m, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()
	go keys.run(ctx)
	go announce(ctx, logger, cfg, v)
	srv := newHTTPServer(m.instrument(newServer(logger, cfg, prov, v, af, store, idp)), logger)
	if err := serve(ctx, srv, ln, cfg.ShutdownGrace, logger); err != nil {
		return err
	}
	return store.Close()
}

// seedDev adds the sample heroes to store when the service runs with -dev
// (dev); a failure is only logged.
func seedDev(ctx context.Context, dev bool, store heroStore, logger *slog.Logger) {
	if !dev {
		return
	}
	if err := seedHeroes(ctx, store); err != nil {
		logger.Warn("-dev: sample heroes not added", "err", err)
	}
}

// parseFlags reads the command line. help is true when -h or -help asked
// for the usage, which is then printed to stderr and is not an error.
func parseFlags(args []string, stderr io.Writer) (dev, help bool, err error) {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	devFlag := fs.Bool("dev", false, "serve a local identity provider under /devidp/ (loopback only, not for production)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [-dev]\n\nSettings come from the environment and .env_oauth; README.md lists them.\n\n", args[0])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); errors.Is(err, flag.ErrHelp) {
		return false, true, nil
	} else if err != nil {
		return false, false, fmt.Errorf("%w: %w", errConfig, err)
	}
	return *devFlag, false, nil
}

// listen loads the settings and opens the listener. With -dev the listener
// comes first (listenDev): the dev provider's URLs, and so the settings,
// depend on the port actually bound. Otherwise the settings are checked
// before anything else happens, and the listener is on cfg.Addr. Every
// variable loadConfig asks for is put in read.
func listen(getenv func(string) string, dev bool, read map[string]bool) (config, net.Listener, *devIDP, error) {
	var ln net.Listener
	var idp *devIDP
	if dev {
		var err error
		if ln, idp, getenv, err = listenDev(getenv); err != nil {
			return config{}, nil, nil, err
		}
	}
	cfg, err := loadConfig(func(k string) string { read[k] = true; return getenv(k) })
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return config{}, nil, nil, err
	}
	cfg.Dev = dev
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return config{}, nil, nil, listenError(cfg.Addr, err)
		}
	}
	return cfg, ln, idp, nil
}

// listenError is the error of a failed listen on addr: when another
// process holds the address, it says so and how to choose another.
func listenError(addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s: the address is in use: stop what listens there, or choose another with ADDR (host:port) or PORT (without -dev, set REDIRECT_URI, registered in Entra, to the new port too): %w", addr, err)
	}
	return fmt.Errorf("listen on %s: %w", addr, err)
}

// serve serves srv on ln until ctx ends, then shuts down gracefully: it
// stops accepting, lets in-flight requests finish for up to grace, and cuts
// what still runs after that. That cut is still an orderly shutdown, so it
// returns nil (exit 0); it returns any serve error other than
// http.ErrServerClosed.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration, logger *slog.Logger) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-serveErr:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", grace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown: grace period over; closing the connections still open", "err", err)
		srv.Close()
	}
	return nil
}

// warnSettings logs the settings that suit one machine but not production
// (-dev; a session key made per process, which -dev does not mention: it
// is one process by design), the likely mistakes of config.warnings, and
// the keys of .env_oauth that are no setting (unknown: named, never their
// values).
func warnSettings(logger *slog.Logger, cfg config, addr net.Addr, unknown []string) {
	if cfg.Dev {
		logger.Warn("running with -dev: a local identity provider signs tokens; not for production. "+
			"The identity settings (AZURE_CLIENT_ID, AZURE_TENANT_ID, API_SCOPE, REDIRECT_URI …: README, Trying it with -dev) are the dev provider's; yours are ignored", "addr", addr.String())
	} else if cfg.SessionKeyRandom {
		logger.Warn("SESSION_KEY is unset: using a random key for this process; several replicas need one shared key")
	}
	for _, w := range cfg.warnings() {
		logger.Warn("settings: " + w)
	}
	for _, k := range unknown {
		logger.Warn("settings: .env_oauth sets "+k+", which is not a setting of the service (misspelt?); it is ignored", "key", k)
	}
}

// announce logs, once v has the identity provider's signing keys (so a
// sign-in can finish), the URL to open in a browser (with -dev, where the
// reader is trying the service out) or the service's base URL. It checks
// every 50 ms, and gives up when ctx ends.
func announce(ctx context.Context, logger *slog.Logger, cfg config, v *verifier) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for v.ready() != nil {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	base := serviceBase(cfg.RedirectURI)
	if cfg.Dev {
		logger.Info("ready: open "+base+"/ in a browser to sign in, or "+base+"/docs to try the API", "url", base+"/")
		return
	}
	logger.Info("ready", "url", base+"/")
}

// newIDPClient is the HTTP client of every call to the identity provider and
// the table store: a 10 s timeout (idpTimeout), a child traceparent on each
// call (traceTransport), and no redirects followed, so
// a form carrying the client secret, a code or a client assertion is never
// re-sent to another server (RFC 6749 §3.2 wants the token endpoint itself).
// A redirect answer reaches the caller as it is, and is refused there as an
// unexpected status.
func newIDPClient() *http.Client {
	return &http.Client{
		Timeout:   idpTimeout,
		Transport: traceTransport{next: http.DefaultTransport},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// withDotEnvFile returns a getenv that falls back to the variables of the
// file at path (see parseDotEnv) when it exists, and those variables; real
// environment variables win. A missing file changes nothing; an unreadable,
// malformed or oversized one, or one that is not a regular file (read as
// readRegularFile reads, so a FIFO cannot hold the start), is an errConfig
// error.
func withDotEnvFile(getenv func(string) string, path string) (func(string) string, map[string]string, error) {
	data, err := readRegularFile(path, maxDotEnvSize)
	if errors.Is(err, os.ErrNotExist) {
		return getenv, nil, nil
	} else if errors.Is(err, errTooLarge) {
		return nil, nil, fmt.Errorf("%w: %s is larger than %d bytes", errConfig, path, maxDotEnvSize)
	} else if err != nil {
		return nil, nil, fmt.Errorf("%w: reading %s: %w", errConfig, path, err)
	}
	vars, err := parseDotEnv(data)
	if err != nil {
		return nil, nil, err
	}
	return withFallback(getenv, vars), vars, nil
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

// newLogger makes the service's one logger: JSON when LOG_FORMAT=json, text
// otherwise, at LOG_LEVEL; a line logged within a request carries its
// request_id and trace_id (requestLogHandler).
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(requestLogHandler{slog.NewJSONHandler(w, opts)})
	}
	return slog.New(requestLogHandler{slog.NewTextHandler(w, opts)})
}

// newServer builds the service's handler: every route (addRoutes) wrapped in
// the middleware every answer goes through. It is safe for concurrent use.
// idp is nil unless the service runs with -dev.
func newServer(logger *slog.Logger, cfg config, prov *provider, v *verifier, af *authFlow, store heroStore, idp *devIDP) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, logger, cfg, prov, v, af, store, idp)
	return withMiddleware(logger, cfg.CORSAllowedOrigins, mux)
}

// withMiddleware wraps mux in what every answer goes through: JSON answers
// for unrouted requests, panic recovery, CORS for the listed origins
// (preflights answered there, before any route or authentication), security
// headers, the request log.
func withMiddleware(logger *slog.Logger, corsOrigins []string, mux *http.ServeMux) http.Handler {
	var h http.Handler = routeErrors(mux)
	h = recoverPanics(logger, h)
	h = allowCORS(corsOrigins, h)
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
		noteRoute(r.Context(), pattern)
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
	// Policies after the permission (policy.go): guests, then step-up for Admin.
	authorizeURI := cfg.AuthorityHost + "/" + cfg.TenantID + "/oauth2/v2.0/authorize"
	guests := refuseGuests(logger, cfg.AllowGuestUsers)
	read := chain(requireAuth(logger, v, permRead), guests)
	create := chain(requireAuth(logger, v, permCreate), guests)
	admin := chain(requireAuth(logger, v, permAdmin), guests, requireAuthContext(logger, cfg.StepUpAuthContext, authorizeURI))

	// A sign-in starts from these pages: on RedirectURI's host only.
	mux.Handle("GET /{$}", af.onServiceHost(handleIndex(cfg.Dev, cfg.APIScopes)))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(logger, v, store, cfg.ReadyzCache))
	mux.Handle("GET /openapi.json", handleOpenAPI(cfg, prov))
	mux.Handle("GET /docs", af.onServiceHost(handleDocs(cfg, prov)))
	mux.Handle("GET "+docsRedirectPath, handleDocsRedirect())

	mux.Handle("GET /auth/login", af.onServiceHost(af.handleLogin()))
	mux.Handle("GET /auth/callback", af.handleCallback(heroesPreview(logger, store)))
	mux.Handle("POST /auth/refresh", af.handleRefresh())
	mux.Handle("GET /auth/logout", af.handleLogout())

	// The original's paths end in "/"; the version without it works too.
	for _, path := range []string{"/api/heroes/{$}", "/api/heroes"} {
		mux.Handle("GET "+path, read(handleHeroList(logger, store)))
		mux.Handle("POST "+path, create(handleHeroCreate(logger, store, heroesCaller)))
	}
	mux.Handle("GET /api/heroes/{id}", read(handleHeroGet(logger, store)))
	mux.Handle("PUT /api/heroes/{id}", create(handleHeroReplace(logger, store)))
	mux.Handle("DELETE /api/heroes/{id}", admin(handleHeroDelete(logger, store)))
	mux.Handle("GET /api/heroes-fireball-low-ac", read(handleFireballLowAC(logger, store)))
	me := &graphProfiles{logger: logger, obo: newOBOTokens(af, cfg.TenantID), client: newIDPClient(), base: cfg.GraphBaseURL, scope: cfg.GraphScope, authorizeURI: authorizeURI}
	mux.Handle("GET /api/me", read(me.handleMe()))

	if idp != nil {
		idp.addRoutes(mux, logger)
	}
}

// heroesCaller names the caller of a request for the heroes piece, which
// binds idempotency keys to it: the tenant, object and client ids (tid,
// oid, azp or appid) of the claims requireAuth verified; "" without them.
func heroesCaller(r *http.Request) string {
	c, ok := principalFrom(r.Context())
	if !ok {
		return ""
	}
	return c.TenantID + "/" + c.ObjectID + "/" + c.AuthorizedParty
}

// heroesPreview is what the signed-in page shows of the API for an access
// token: the permissions it carries with what each allows, and what
// GET /api/heroes/?limit=10 would answer: the heroes' names, or a sentence
// saying why there are none to show. It applies the API's permission rule
// (hasPermission).
func heroesPreview(logger *slog.Logger, store heroStore) signedInPreview {
	return func(ctx context.Context, atc *claims) apiPreview {
		p := apiPreview{Permissions: permissionNotes(atc)}
		if caller := newPrincipal(atc); !hasPermission(&caller, permRead) {
			p.Note = "This token does not grant " + permRead + ", so the API would answer 403."
			return p
		}
		list, err := store.List(ctx, 0, 10)
		if err != nil {
			logger.WarnContext(ctx, "auth: heroes for the signed-in page", "err", err)
			p.Note = "The heroes could not be read just now."
			return p
		}
		for _, h := range list {
			p.Items = append(p.Items, h.Name)
		}
		if len(p.Items) == 0 {
			p.Note = "There are no heroes yet."
		}
		return p
	}
}

// permissionNotes lists the API's permissions c carries (in scp or roles),
// weakest first, each with the routes it opens as addRoutes applies them.
func permissionNotes(c *claims) []permissionNote {
	allows := map[string]string{
		permRead:   "list and read heroes (GET /api/heroes/, GET /api/heroes/{id}, GET /api/heroes-fireball-low-ac)",
		permCreate: "create and replace heroes (POST /api/heroes/, PUT /api/heroes/{id}), and everything " + permRead + " allows",
		permAdmin:  "delete heroes (DELETE /api/heroes/{id}), and everything " + permCreate + " allows",
	}
	var notes []permissionNote
	for _, p := range permissions {
		if slices.Contains(c.Scopes, p) || slices.Contains(c.Roles, p) {
			notes = append(notes, permissionNote{Name: p, Allows: allows[p]})
		}
	}
	return notes
}

// handleHealthz serves GET /healthz: 200 while the process is alive.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`+"\n") // writeJSON's answer, without encoding it each time
	})
}

// handleReadyz serves GET /readyz: 200 when the discovery document and the
// signing keys are loaded and the store answers, else 503 with Retry-After
// naming what is not ready. No authentication. The store's answer is reused
// for cfg.ReadyzCache (storeReadiness), success and failure alike, so that
// callers of /readyz, however many, cost a remote store at most one request
// per that interval; the keys, a local check, are asked every time.
func handleReadyz(logger *slog.Logger, v *verifier, store heroStore, cache time.Duration) http.Handler {
	sr := &storeReadiness{logger: logger, store: store, ttl: cache, now: time.Now}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{"keys": "ok", "store": "ok"}
		ready := true
		if err := v.ready(); err != nil {
			checks["keys"], ready = err.Error(), false
		}
		if !sr.ready(r.Context()) {
			checks["store"], ready = "unavailable", false
		}
		if !ready {
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "checks": checks})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
	})
}

// storeReadiness asks the store whether it is ready (heroStore.Ready, within
// 5 s) and keeps the answer for ttl (0: asks every time). One check runs at
// a time; requests arriving meanwhile wait for its answer. A failure is
// logged once per check. Safe for concurrent use.
type storeReadiness struct {
	logger *slog.Logger
	store  heroStore
	ttl    time.Duration
	now    func() time.Time

	mu sync.Mutex // guards at and ok; held during a check
	at time.Time  // when ok was found; zero before the first check
	ok bool
}

// ready returns the store's kept answer, or checks it anew once ttl has
// passed. The check does not end with the request that started it (ctx's
// values are kept, its cancellation is not), so a caller going away cannot
// make the store look down to the others.
func (sr *storeReadiness) ready(ctx context.Context) bool {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	if now := sr.now(); !sr.at.IsZero() && now.Sub(sr.at) < sr.ttl && !now.Before(sr.at) {
		return sr.ok
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := sr.store.Ready(ctx)
	if err != nil {
		sr.logger.WarnContext(ctx, "readyz: store not ready", "err", err)
	}
	sr.at, sr.ok = sr.now(), err == nil
	return sr.ok
}
