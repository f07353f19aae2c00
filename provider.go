package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Limits of the discovery and key set client. Sizes are bytes.
const (
	maxIDPResponse    = 1 << 20          // discovery document and key set are read up to 1 MiB
	maxIDPErrorBody   = 64 << 10         // of a failed discovery or JWKS answer, read for its error
	maxIDPErrorText   = 200              // of the provider's error text kept for the log, in bytes
	idpFetchTimeout   = 10 * time.Second // one discovery or JWKS request, whatever the caller's deadline
	maxRetryBackoff   = time.Minute      // cap of the retry backoff after failed fetches
	tenantPlaceholder = "{tenantid}"     // Entra's multi-tenant issuer template
)

// errIDPUnavailable: the discovery document or the key set could not be
// loaded and nothing was loaded before, so no token can be checked.
// requireAuth answers 503 with Retry-After on it.
var errIDPUnavailable = errors.New("jwks: identity provider metadata unavailable")

// providerMetadata is the part of the OpenID Connect discovery document
// (OpenID Connect Discovery 1.0 §3) the service uses.
type providerMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
}

// provider fetches the discovery document of opts.discoveryURL() on first use
// and caches it for the life of the process. A failed fetch is retried on a
// later call, but not before a backoff (1 s doubling to maxRetryBackoff) has
// passed; concurrent callers share one fetch. Safe for concurrent use.
type provider struct {
	opts   verifyOptions
	client *http.Client
	logger *slog.Logger
	now    func() time.Time // clock of the backoff; tests may replace it

	mu       sync.Mutex // guards the fields below
	md       providerMetadata
	loaded   bool
	failures int       // consecutive failed fetches
	lastTry  time.Time // start of the last fetch
	lastErr  error
	inflight *fetchCall
}

// fetchCall is one fetch in progress; done is closed when err is set.
type fetchCall struct {
	done chan struct{}
	err  error
}

// newProvider makes a provider for opts's authority and tenant. It does no
// network I/O.
func newProvider(opts verifyOptions) *provider {
	opts = opts.withDefaults()
	return &provider{opts: opts, client: opts.Client, logger: opts.Logger, now: opts.Now}
}

// metadata returns the discovery document, fetching it on first use. It
// returns an error wrapping errIDPUnavailable while the document cannot be
// loaded (including during the backoff after a failure), and ctx's error if
// ctx ends first.
func (p *provider) metadata(ctx context.Context) (providerMetadata, error) {
	p.mu.Lock()
	if p.loaded {
		md := p.md
		p.mu.Unlock()
		return md, nil
	}
	call := p.inflight
	if call == nil {
		if wait := backoff(p.failures) - p.now().Sub(p.lastTry); p.failures > 0 && wait > 0 {
			err := p.lastErr
			p.mu.Unlock()
			return providerMetadata{}, fmt.Errorf("%w: retry in %v: %w", errIDPUnavailable, wait.Round(time.Second), err)
		}
		call = &fetchCall{done: make(chan struct{})}
		p.inflight, p.lastTry = call, p.now()
		go p.fetch(context.WithoutCancel(ctx), call)
	}
	p.mu.Unlock()

	select {
	case <-call.done:
	case <-ctx.Done():
		return providerMetadata{}, ctx.Err()
	}
	if call.err != nil {
		return providerMetadata{}, call.err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.md, nil
}

// loadedOK reports whether the discovery document is loaded.
func (p *provider) loadedOK() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loaded
}

// fetch loads the discovery document and records the outcome in p.
func (p *provider) fetch(ctx context.Context, call *fetchCall) {
	ctx, cancel := context.WithTimeout(ctx, idpFetchTimeout)
	defer cancel()
	var md providerMetadata
	body, err := getJSON(ctx, p.client, p.opts.discoveryURL())
	if err == nil {
		err = json.Unmarshal(body, &md)
	}
	if err == nil {
		err = p.validate(md)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight = nil
	if err != nil {
		p.failures++
		p.lastErr = err
		call.err = fmt.Errorf("%w: discovery: %w", errIDPUnavailable, err)
		p.logger.Warn("jwks: discovery document not loaded", "url", p.opts.discoveryURL(), "failures", p.failures, "err", err)
	} else {
		p.md, p.loaded, p.failures, p.lastErr = md, true, 0, nil
		p.logger.Info("jwks: discovery document loaded", "issuer", md.Issuer)
	}
	close(call.done)
}

// validate checks that a discovery document names the endpoints the service
// needs as absolute https URLs (http only on a loopback host, for tests and
// -dev; RFC 6749 §3.1, §3.2, OpenID Connect Discovery 1.0 §3), an optional
// end_session_endpoint likewise, and an issuer for the configured tenant:
// holding the tenant GUID, or Entra's {tenantid} placeholder for
// organizations/common (OpenID Connect Discovery 1.0 §4.3, adapted to
// Entra's multi-tenant issuer).
func (p *provider) validate(md providerMetadata) error {
	for _, u := range []struct{ name, value string }{
		{"issuer", md.Issuer},
		{"authorization_endpoint", md.AuthorizationEndpoint},
		{"token_endpoint", md.TokenEndpoint},
		{"jwks_uri", md.JWKSURI},
		{"end_session_endpoint", md.EndSessionEndpoint},
	} {
		if u.value == "" && u.name == "end_session_endpoint" {
			continue // optional (OpenID Connect RP-Initiated Logout 1.0 §2.1)
		}
		if !isSecureURL(u.value) {
			return fmt.Errorf("jwks: discovery %s is not an absolute https URL (http only on a loopback host)", u.name)
		}
	}
	want := p.opts.TenantID
	if p.opts.isMultiTenant() {
		want = tenantPlaceholder
	}
	if !strings.Contains(md.Issuer, want) {
		return fmt.Errorf("jwks: discovery issuer %q is not for tenant %s", md.Issuer, p.opts.TenantID)
	}
	return nil
}

// backoff is the wait after n consecutive failures: 0, then 1 s doubling up
// to maxRetryBackoff.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := time.Second << min(n-1, 16)
	return min(d, maxRetryBackoff)
}

// getJSON GETs u and returns its body: at most maxIDPResponse bytes, status
// 200, and a JSON media type (application/json or any +json type).
func getJSON(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// An error in the body is best effort: a read error leaves it out.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxIDPErrorBody))
		return nil, fmt.Errorf("jwks: %s answered %s%s", req.URL.Redacted(), resp.Status, providerErrorText(body))
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil, fmt.Errorf("jwks: %s answered content type %q, not JSON", req.URL.Redacted(), truncate(resp.Header.Get("Content-Type"), 64))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIDPResponse+1))
	if err != nil {
		return nil, fmt.Errorf("jwks: reading %s: %w", req.URL.Redacted(), err)
	}
	if len(body) > maxIDPResponse {
		return nil, fmt.Errorf("jwks: %s answered more than %d bytes", req.URL.Redacted(), maxIDPResponse)
	}
	return body, nil
}

// providerErrorText returns ": <error>: <error_description>" when body is a
// JSON object with the error members of RFC 6749 §5.2, as Entra answers a
// discovery request for an unknown tenant (invalid_tenant, "AADSTS90002:
// Tenant '…' not found"), with a hint for the tenant errors; else "". The
// text is for the log: it is cut to maxIDPErrorText bytes, and every byte
// outside printable ASCII becomes a space or "?", so it cannot forge log
// lines. A discovery or JWKS request carries no secret, so the provider's
// text cannot echo one.
func providerErrorText(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		ErrorCodes  []int  `json:"error_codes"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	text := sanitizeIDPText(e.Error)
	if e.Description != "" {
		text += ": " + sanitizeIDPText(e.Description)
	}
	if slices.Contains(e.ErrorCodes, 90002) || slices.Contains(e.ErrorCodes, 900023) || strings.Contains(e.Description, "AADSTS90002") {
		text += " (check AZURE_TENANT_ID: the tenant GUID, organizations or common)"
	}
	return ": " + text
}

// sanitizeIDPText makes text from the identity provider safe to log: CR, LF
// and tab become spaces, other bytes outside printable ASCII become "?", and
// the result is cut to maxIDPErrorText bytes.
func sanitizeIDPText(s string) string {
	b := []byte(s[:min(len(s), maxIDPErrorText)])
	for i, c := range b {
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			b[i] = ' '
		case c < 0x20 || c > 0x7e:
			b[i] = '?'
		}
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// wait blocks until the fetch is done or ctx ends.
func (c *fetchCall) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isSecureURL reports whether s is an absolute https URL with a host, or an
// http URL whose host is loopback (isLoopbackHost in tablestore.go:
// localhost, 127.0.0.0/8, ::1), as tests and -dev use.
func isSecureURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && isLoopbackHost(u.Hostname()))
}
