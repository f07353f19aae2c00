package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the discovery and key set client. Sizes are bytes.
const (
	maxIDPResponse    = 1 << 20          // discovery document and key set are read up to 1 MiB
	maxIDPErrorBody   = 64 << 10         // of a failed discovery or JWKS answer, read for its error
	maxIDPErrorText   = 200              // of the provider's error text kept for the log
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
	tenant                string // the tenant the issuer names (validate): a GUID, or {tenantid}
}

// provider fetches the discovery document of opts.discoveryURL() on first use
// and keeps it for the life of the process; a failed fetch is retried on a
// later call once the backoff has passed. Safe for concurrent use.
type provider struct {
	opts verifyOptions
	md   atomic.Pointer[providerMetadata] // nil until loaded
	f    fetcher
}

// newProvider does no network I/O: metadata does, on first use.
func newProvider(opts verifyOptions) *provider {
	return &provider{opts: opts.withDefaults()}
}

// metadata returns the discovery document, fetching it on first use. While
// it cannot be loaded (during the backoff after a failure too) the error
// wraps errIDPUnavailable; it is ctx's error if ctx ends first.
func (p *provider) metadata(ctx context.Context) (providerMetadata, error) {
	if md := p.md.Load(); md != nil {
		return *md, nil
	}
	var wait time.Duration
	var last error
	now := p.opts.Now()
	call := p.f.start(ctx, now, p.fetch, func() bool {
		wait, last = backoff(p.f.failures)-now.Sub(p.f.lastTry), p.f.lastErr
		return wait <= 0
	})
	if call == nil {
		return providerMetadata{}, fmt.Errorf("%w: retry in %v: %w", errIDPUnavailable, wait.Round(time.Second), last)
	}
	switch err := call.wait(ctx); {
	case err == nil:
		return *p.md.Load(), nil
	case err == ctx.Err(): // this caller gave up; the fetch goes on for the others
		return providerMetadata{}, err
	default:
		return providerMetadata{}, fmt.Errorf("%w: discovery: %w", errIDPUnavailable, err)
	}
}

// fetch loads, checks and keeps the discovery document (fetcher.start's fetch).
func (p *provider) fetch(ctx context.Context, attempt int) error {
	var md providerMetadata
	body, err := getJSON(ctx, p.opts.Client, p.opts.discoveryURL())
	if err == nil {
		err = cmp.Or(json.Unmarshal(body, &md), p.validate(&md)) // validate refuses what a failed Unmarshal leaves
	}
	if err != nil {
		p.opts.Logger.Warn("jwks: discovery document not loaded", "url", p.opts.discoveryURL(), "failures", attempt, "err", err)
		return err
	}
	p.md.Store(&md)
	p.opts.Logger.Info("jwks: discovery document loaded", "issuer", md.Issuer)
	return nil
}

// validate checks that a discovery document names the endpoints the service
// needs as absolute https URLs (isSecureURL; RFC 6749 §3.1, §3.2, OpenID
// Connect Discovery 1.0 §3), and its issuer (issuerTenant), whose tenant it
// keeps in md.tenant.
func (p *provider) validate(md *providerMetadata) error {
	for _, u := range []struct{ name, value string }{{"issuer", md.Issuer}, {"authorization_endpoint", md.AuthorizationEndpoint},
		{"token_endpoint", md.TokenEndpoint}, {"jwks_uri", md.JWKSURI}, {"end_session_endpoint", md.EndSessionEndpoint}} {
		optional := u.name == "end_session_endpoint" // OpenID Connect RP-Initiated Logout 1.0 §2.1
		if !isSecureURL(u.value) && !(optional && u.value == "") {
			return fmt.Errorf("jwks: discovery %s is not an absolute https URL (http only on a loopback host)", u.name)
		}
	}
	var err error
	md.tenant, err = p.issuerTenant(md.Issuer)
	return err
}

// issuerTenant returns the tenant a discovery issuer names. OpenID Connect
// Discovery 1.0 §4.3 wants the issuer identical to the URL the document was
// fetched from, {AuthorityHost}/{TenantID}/v2.0; Entra departs from that in
// these documented ways only (anything else is an error naming the issuer
// expected):
//
//	organizations, common  tenant {tenantid}: learn.microsoft.com/entra/identity-platform/access-tokens#validate-the-issuer
//	a tenant domain name   tenant: the tenant's GUID (same page)
//	Azure China            host login.partner.microsoftonline.cn for login.chinacloudapi.cn: MSAL.js authority metadata
//	External ID            host {tenant GUID}.ciamlogin.com: learn.microsoft.com/entra/identity-platform/security-tokens#token-endpoints-and-issuers
func (p *provider) issuerTenant(issuer string) (string, error) {
	o, multi := p.opts, p.opts.isMultiTenant()
	rest, ok := strings.CutPrefix(issuer, o.AuthorityHost+"/")
	if host, path, _ := strings.Cut(strings.TrimPrefix(issuer, "https://"), "/"); !ok && strings.HasPrefix(issuer, "https://") {
		china := o.AuthorityHost == "https://login.chinacloudapi.cn" && host == "login.partner.microsoftonline.cn"
		ciam := strings.HasSuffix(o.AuthorityHost, ".ciamlogin.com") && host == strings.TrimSuffix(path, "/v2.0")+".ciamlogin.com"
		rest, ok = path, china || ciam
	}
	switch tenant, v2 := strings.CutSuffix(rest, "/v2.0"); {
	case !ok || !v2:
	case multi && tenant == tenantPlaceholder, isGUID(tenant) && (strings.EqualFold(tenant, o.TenantID) || !multi && !isGUID(o.TenantID)):
		return tenant, nil
	}
	want := o.TenantID
	if multi {
		want = tenantPlaceholder
	}
	return "", fmt.Errorf("jwks: discovery issuer %q is refused: want %s/%s/v2.0 (OpenID Connect Discovery 1.0 §4.3) or a form Entra documents", truncate(issuer, 200), o.AuthorityHost, want)
}

// fetcher shares one fetch among the callers that ask while it runs
// (go-oidc's inflight), detached from their cancellation so that an
// impatient caller cannot fail the others, and counts consecutive failures
// for the backoff. Safe for concurrent use.
type fetcher struct {
	mu       sync.Mutex // guards the fields below
	call     *fetchCall // the run in progress, or nil
	failures int        // consecutive failed runs
	lastTry  time.Time  // start of the last run
	lastErr  error      // of the last run
}

// fetchCall is one run; done is closed once err is set.
type fetchCall struct {
	done chan struct{}
	err  error
}

// start returns the run in progress, or starts a run of fetch at now unless
// allow (called with f.mu held; nil allows) refuses: then it returns nil. A
// run lasts at most idpFetchTimeout; fetch keeps what it loads and logs the
// outcome, and attempt is the failure count if it fails.
func (f *fetcher) start(ctx context.Context, now time.Time, fetch func(context.Context, int) error, allow func() bool) *fetchCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.call == nil && (allow == nil || allow()) {
		call, attempt := &fetchCall{done: make(chan struct{})}, f.failures+1
		f.call, f.lastTry = call, now
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), idpFetchTimeout)
			defer cancel()
			err := fetch(ctx, attempt)
			f.mu.Lock()
			defer f.mu.Unlock()
			f.call, f.lastErr, call.err, f.failures = nil, err, err, 0
			if err != nil {
				f.failures = attempt
			}
			close(call.done)
		}()
	}
	return f.call
}

// wait returns the run's error once it is done, or ctx's if ctx ends first.
func (c *fetchCall) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff is the wait after n consecutive failures: 0, then 1 s doubling up
// to maxRetryBackoff.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return min(time.Second<<min(n-1, 16), maxRetryBackoff)
}

// getJSON GETs u and returns its body: status 200, a JSON media type, and
// at most maxIDPResponse bytes.
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
		body, _ := readAtMost(resp.Body, maxIDPErrorBody) // best effort: a read error leaves the body's error out
		return nil, fmt.Errorf("jwks: %s answered %s%s", req.URL.Redacted(), resp.Status, providerErrorText(body))
	}
	if ct := resp.Header.Get("Content-Type"); !isJSONType(ct) {
		return nil, fmt.Errorf("jwks: %s answered content type %q, not JSON", req.URL.Redacted(), truncate(ct, 64))
	}
	body, err := readAtMost(resp.Body, maxIDPResponse)
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("jwks: %s answered more than %d bytes", req.URL.Redacted(), maxIDPResponse)
	} else if err != nil {
		return nil, fmt.Errorf("jwks: reading %s: %w", req.URL.Redacted(), err)
	}
	return body, nil
}

// providerErrorText returns ": <error>: <error_description>" when body holds
// the error members of RFC 6749 §5.2, as Entra answers a discovery request
// for an unknown tenant (AADSTS90002), with a hint for the tenant errors;
// else "". Each text is cut to maxIDPErrorText bytes, its white space runs
// made one space and other runes outside printable ASCII "?": slog's JSON
// handler writes runes such as U+202E (right-to-left override) as they are.
// A discovery or JWKS request carries no secret for the text to echo.
func providerErrorText(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		ErrorCodes  []int  `json:"error_codes"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < ' ' || r > '~' {
				return '?'
			}
			return r
		}, strings.Join(strings.Fields(s[:min(len(s), maxIDPErrorText)]), " "))
	}
	text := ": " + clean(e.Error)
	if e.Description != "" {
		text += ": " + clean(e.Description)
	}
	if slices.Contains(e.ErrorCodes, 90002) || slices.Contains(e.ErrorCodes, 900023) || strings.Contains(e.Description, "AADSTS90002") {
		text += " (check AZURE_TENANT_ID: the tenant GUID, organizations or common)"
	}
	return text
}

// isSecureURL reports whether s is an absolute https URL with a host, or an
// http URL on a loopback host (isLoopbackHost), as tests and -dev use.
func isSecureURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && isLoopbackHost(u.Hostname()))
}
