package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// Client authentication methods for the token endpoint (loginOptions.ClientAuth).
const (
	clientAuthPost        = "post"
	clientAuthBasic       = "basic"
	clientAuthCertificate = "certificate"
	// clientAuthFederated sends the JWT in loginOptions.FederatedTokenFile
	// as the client assertion (workload identity federation).
	clientAuthFederated = "federated"
	// clientAuthManagedIdentity sends a token of the platform's managed
	// identity as the client assertion (a managed identity as a federated
	// credential of the app registration).
	clientAuthManagedIdentity = "managed-identity"
)

// clientCredential is what token requests need beyond loginOptions: the
// managed identity of clientAuthManagedIdentity, and the source of the
// client assertion of clientAuthCertificate, clientAuthFederated or
// clientAuthManagedIdentity. All nil for a secret. It is not changed after
// loadClientCredential and is safe for concurrent use.
type clientCredential struct {
	mi *managedIdentity
	// assertion gives the client assertion for a token request to
	// endpoint: the certificate's (signed for that endpoint) or the managed
	// identity's token, both kept in held while they are valid, or the
	// federated token file's content, read for every request.
	assertion func(ctx context.Context, endpoint string) (string, error)
	// held keeps the certificate's or the managed identity's assertion;
	// nil for the other credentials.
	held *heldToken
}

// forget drops assertion when it is the one held, so that the next token
// request gets a new one: redeem calls it when the token endpoint refuses
// an assertion (rejectsAssertion). ctx bounds the wait for a fetch under
// way.
func (cc clientCredential) forget(ctx context.Context, assertion string) {
	if cc.held != nil && assertion != "" {
		cc.held.drop(ctx, assertion)
	}
}

// loadClientCredential checks the client credential opts.ClientAuth names
// and logs which one is used: the certificate (loaded, with a warning when
// it expires within 30 days), the federated token file (read once now, so a
// missing, empty or unreadable file stops start-up), the managed identity
// (no call is made: its endpoint may not answer yet), or a secret. now is
// the clock of assertions and of the held ones' expiry.
func loadClientCredential(opts loginOptions, logger *slog.Logger, now func() time.Time) (clientCredential, error) {
	switch opts.ClientAuth {
	case clientAuthCertificate:
		cert, err := loadCertificateCredential(opts.ClientCertPath, logger)
		if err != nil {
			return clientCredential{}, err
		}
		return certificateCredential(cert, opts.ClientID, now), nil
	case clientAuthPost, clientAuthBasic:
		if opts.ClientSecret == "" {
			return clientCredential{}, errors.New("auth: AZURE_CLIENT_SECRET is empty")
		}
		return clientCredential{}, nil
	case clientAuthFederated:
		path := opts.FederatedTokenFile
		if _, err := readFederatedToken(path); err != nil {
			return clientCredential{}, err
		}
		logger.Info("auth: client credential: federated token file, read for every token request", "file", path)
		return clientCredential{assertion: func(context.Context, string) (string, error) { return readFederatedToken(path) }}, nil
	case clientAuthManagedIdentity:
		mi := newManagedIdentity(opts.ManagedIdentity, now)
		logger.Info("auth: client credential: managed identity token", "endpoint", mi.endpointName(),
			"managed_identity_client_id", opts.ManagedIdentity.ClientID, "audience", mi.audience())
		held, fetch := newHeldToken(now), mi.fetcher(mi.audience())
		return clientCredential{mi: mi, held: held, assertion: func(ctx context.Context, _ string) (string, error) {
			return held.get(ctx, "", fetch)
		}}, nil
	}
	return clientCredential{}, fmt.Errorf("auth: unknown client authentication %q", opts.ClientAuth)
}

// certificateCredential is the credential of cert: an assertion signed for
// the token endpoint asked for and kept (held) until tokenRefreshMargin
// before its exp, so that token requests within a few minutes share one
// signature instead of each making its own.
func certificateCredential(cert *clientCertificate, clientID string, now func() time.Time) clientCredential {
	held := newHeldToken(now)
	return clientCredential{held: held, assertion: func(ctx context.Context, endpoint string) (string, error) {
		return held.get(ctx, endpoint, func(context.Context) (string, time.Time, error) {
			at := now()
			a, err := cert.assertion(clientID, endpoint, at)
			return a, at.Add(assertionLifetime), err
		})
	}}
}

// loadCertificateCredential loads the certificate at path and logs it.
func loadCertificateCredential(path string, logger *slog.Logger) (*clientCertificate, error) {
	if path == "" {
		return nil, errors.New("auth: AZURE_CLIENT_AUTH=certificate needs AZURE_CLIENT_CERTIFICATE_PATH")
	}
	cert, err := loadClientCertificate(path, time.Now())
	if err != nil {
		return nil, err
	}
	logger.Info("auth: client certificate loaded", "x5t#S256", cert.thumbprint, "not_after", cert.notAfter.UTC().Format(time.RFC3339))
	if time.Until(cert.notAfter) < 30*24*time.Hour {
		logger.Warn("auth: client certificate expires within 30 days; upload a new one to the app registration", "not_after", cert.notAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// tokenRequest builds the POST of form to the token endpoint, a hand-built
// application/x-www-form-urlencoded body (RFC 6749 §3.2) with client_id and
// the client authentication of opts.ClientAuth: client_secret in the body
// (§2.3.1, "post"), HTTP Basic with form-encoded id and secret ("basic"), a
// client assertion signed with the certificate (RFC 7523 §2.2,
// "certificate"; one signature serves the requests of a few minutes,
// certificateCredential), or a client assertion another issuer signed: the
// federated token file's content ("federated") or the managed identity's
// token ("managed-identity"), as Microsoft's "client credentials flow"
// (third case, federated credential) describes. An assertion that cannot be
// had is an error wrapping errClientCredential.
func (af *authFlow) tokenRequest(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	form.Set("client_id", af.opts.ClientID)
	switch af.opts.ClientAuth {
	case clientAuthCertificate, clientAuthFederated, clientAuthManagedIdentity:
		assertion, err := af.cred.assertion(ctx, endpoint)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errClientCredential, err)
		}
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", assertion)
	case clientAuthPost:
		form.Set("client_secret", af.opts.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTokenUnreachable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if af.opts.ClientAuth == clientAuthBasic {
		req.SetBasicAuth(url.QueryEscape(af.opts.ClientID), url.QueryEscape(af.opts.ClientSecret))
	}
	return req, nil
}

// Client assertion parameters (RFC 7523 §2.2, RFC 7521 §4.2; Microsoft
// identity platform "certificate credentials").
const (
	// clientAssertionType is the client_assertion_type of a JWT assertion.
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime is how long an assertion is valid: Microsoft asks for
	// 5 to 10 minutes after nbf. certificateCredential reuses one until
	// tokenRefreshMargin before its exp, so for the first 5 minutes.
	assertionLifetime = 10 * time.Minute
	// maxCertificateFile bounds the PEM file read at start, in bytes.
	maxCertificateFile = 1 << 20
)

// clientCertificate is the certificate credential of the app registration:
// its RSA private key and the base64url SHA-256 thumbprint of the
// certificate's DER encoding (the x5t#S256 header, RFC 7515 §4.1.8).
// It is immutable and safe for concurrent use.
type clientCertificate struct {
	key        *rsa.PrivateKey
	thumbprint string
	notAfter   time.Time
}

// loadClientCertificate reads the PEM file at path (config.ClientCertPath):
// the first CERTIFICATE block is the certificate, and a PRIVATE KEY (PKCS #8)
// or RSA PRIVATE KEY (PKCS #1) block its key. It fails when the file is
// missing, not a regular file (readRegularFile) or too large, the key is not RSA of 2048 bits or more, the key does
// not match the certificate, or the certificate has expired at now. Errors
// name the problem and never hold key material.
func loadClientCertificate(path string, now time.Time) (*clientCertificate, error) {
	data, err := readRegularFile(path, maxCertificateFile)
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("auth: client certificate %s is larger than %d bytes", path, maxCertificateFile)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: client certificate: %w", err)
	}
	cc, err := parseClientCertificate(data, now)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return cc, nil
}

// parseClientCertificate parses PEM data as loadClientCertificate describes.
func parseClientCertificate(data []byte, now time.Time) (*clientCertificate, error) {
	var cert *x509.Certificate
	var key *rsa.PrivateKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			if cert != nil {
				continue // the first certificate is the leaf; the rest is its chain
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("auth: client certificate: %w", err)
			}
			cert = c
		case "PRIVATE KEY", "RSA PRIVATE KEY":
			k, err := parseRSAKey(block)
			if err != nil {
				return nil, err
			}
			key = k
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("auth: client certificate: the private key is encrypted; export it without a password")
		}
	}
	switch {
	case cert == nil:
		return nil, errors.New("auth: client certificate: no CERTIFICATE block in the PEM file")
	case key == nil:
		return nil, errors.New("auth: client certificate: no RSA private key block in the PEM file")
	case key.N.BitLen() < minRSABits:
		return nil, fmt.Errorf("auth: client certificate: RSA key has %d bits; want at least %d", key.N.BitLen(), minRSABits)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("auth: client certificate: the private key does not match the certificate")
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("auth: client certificate expired on %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(cert.Raw)
	return &clientCertificate{key: key, thumbprint: base64.RawURLEncoding.EncodeToString(sum[:]), notAfter: cert.NotAfter}, nil
}

// parseRSAKey parses a PKCS #8 or PKCS #1 private key block that must hold
// an RSA key.
func parseRSAKey(block *pem.Block) (*rsa.PrivateKey, error) {
	if block.Type == "RSA PRIVATE KEY" {
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: client certificate: private key: %w", err)
		}
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: client certificate: private key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: client certificate: private key is %T; want RSA", k)
	}
	return rk, nil
}

// assertion makes a client assertion (RFC 7523 §3) for one token request:
// a JWT signed PS256 (RSASSA-PSS SHA-256, RFC 7518 §3.5) with header
// {alg, typ, x5t#S256}, and claims aud = the token endpoint, iss = sub =
// clientID, a random jti, nbf = iat = now, exp = now + assertionLifetime.
// Microsoft's "certificate credentials" page asks for exactly these.
func (cc *clientCertificate) assertion(clientID, tokenEndpoint string, now time.Time) (string, error) {
	header := map[string]string{"alg": "PS256", "typ": "JWT", "x5t#S256": cc.thumbprint}
	body := map[string]any{
		"aud": tokenEndpoint,
		"iss": clientID,
		"sub": clientID,
		"jti": rand.Text(),
		"nbf": now.Unix(),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("auth: client assertion: %w", err)
	}
	c, err := json.Marshal(body)
	if err != nil {
		return "", fmt.Errorf("auth: client assertion: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPSS(rand.Reader, cc.key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		return "", fmt.Errorf("auth: client assertion: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// errNotRegular is readRegularFile's error for a path that names no regular
// file.
var errNotRegular = errors.New("not a regular file")

// readRegularFile reads the file at path, following symlinks, when it is a
// regular file of at most max bytes (errTooLarge, wrapped, otherwise). It
// opens the file without blocking (O_NONBLOCK: opening a FIFO that no one
// writes waits for ever otherwise) and checks the opened file (fstat), so a
// FIFO, device, socket or directory, named by mistake or swapped in, is an
// error wrapping errNotRegular and saying what it is, and never holds the
// caller. Reading a regular file does not block.
func readRegularFile(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if m := fi.Mode(); !m.IsRegular() {
		what := "a special file"
		switch {
		case m.IsDir():
			what = "a directory"
		case m&fs.ModeNamedPipe != 0:
			what = "a named pipe (FIFO)"
		case m&fs.ModeDevice != 0:
			what = "a device"
		case m&fs.ModeSocket != 0:
			what = "a socket"
		}
		return nil, fmt.Errorf("%s is %s, %w", path, what, errNotRegular)
	}
	return readAtMost(f, max)
}

// maxFederatedToken bounds the federated token file and a managed
// identity's token, in bytes (Kubernetes service account tokens are about
// 1 KiB).
const maxFederatedToken = 64 << 10

// readFederatedToken reads the JWT in the federated token file at path
// (AZURE_FEDERATED_TOKEN_FILE), trimmed of surrounding white space, as
// readRegularFile reads it: symlinks followed (Kubernetes projects the
// token through two), never blocking on a FIFO or a device. A missing,
// unreadable, empty, oversized or not regular file, or one that holds no
// compact JWS (three dot-separated parts), is an error naming the file and
// never its content.
func readFederatedToken(path string) (string, error) {
	data, err := readRegularFile(path, maxFederatedToken)
	if errors.Is(err, errTooLarge) {
		return "", fmt.Errorf("auth: federated token file %s is larger than %d bytes", path, maxFederatedToken)
	}
	if err != nil {
		return "", fmt.Errorf("auth: federated token file (AZURE_FEDERATED_TOKEN_FILE): %w", err)
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "":
		return "", fmt.Errorf("auth: federated token file %s is empty", path)
	case strings.Count(tok, ".") != 2 || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }):
		return "", fmt.Errorf("auth: federated token file %s does not hold a JWT", path)
	}
	return tok, nil
}

// tokenRefreshMargin is how long before its expiry a cached token is
// replaced, so that it is still valid when the party receiving it checks.
const tokenRefreshMargin = 5 * time.Minute

// tokenFetcher gets a new token and the time it expires.
type tokenFetcher func(ctx context.Context) (token string, expires time.Time, err error)

// maxTokenHold caps how long a token or assertion is kept, whatever expiry
// its issuer claims: a far-future expires_on must not pin one for ever.
const maxTokenHold = 24 * time.Hour

// heldToken keeps the token a fetch last gave, for one key (a token
// endpoint, or "" when there is only one kind), and hands it out while it
// has more than tokenRefreshMargin left. It holds it until the earliest of
// the expiry the fetch reported, the token's own exp claim when it is a JWT
// (jwtExpiry), and maxTokenHold after the fetch. One fetch runs at a time,
// and callers waiting for it give up when their ctx ends. A failed fetch is
// not kept: the next call tries again. It is safe for concurrent use.
type heldToken struct {
	now  func() time.Time
	lock chan struct{} // held while reading, fetching or writing key, tok and exp
	key  string
	tok  string
	exp  time.Time
}

// newHeldToken returns an empty heldToken dated by now.
func newHeldToken(now func() time.Time) *heldToken {
	return &heldToken{now: now, lock: make(chan struct{}, 1)}
}

// acquire takes h.lock, or fails with ctx's error when ctx ends first.
func (h *heldToken) acquire(ctx context.Context) error {
	select {
	case h.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// get returns the token held for key, or fetches, holds and returns a new
// one.
func (h *heldToken) get(ctx context.Context, key string, fetch tokenFetcher) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer func() { <-h.lock }()
	now := h.now()
	if h.tok != "" && h.key == key && now.Before(h.exp.Add(-tokenRefreshMargin)) {
		return h.tok, nil
	}
	tok, exp, err := fetch(ctx)
	if err != nil {
		return "", err
	}
	if jexp, ok := jwtExpiry(tok); ok && jexp.Before(exp) {
		exp = jexp
	}
	if limit := now.Add(maxTokenHold); exp.After(limit) {
		exp = limit
	}
	h.key, h.tok, h.exp = key, tok, exp
	return tok, nil
}

// drop forgets tok when it is the token held (not one fetched since), so
// that the next get fetches anew. When ctx ends while a fetch holds the
// lock, it gives up: that fetch replaces the token anyway.
func (h *heldToken) drop(ctx context.Context, tok string) {
	if h.acquire(ctx) != nil {
		return
	}
	defer func() { <-h.lock }()
	if h.tok == tok {
		h.tok, h.key, h.exp = "", "", time.Time{}
	}
}

// jwtExpiry returns the exp claim (RFC 7519 §4.1.4, seconds since the
// epoch) of tok when tok is a compact JWS whose payload is a JSON object
// with a numeric exp; ok is false otherwise. The signature is not checked:
// the time only shortens how long the service keeps a token it was given.
func jwtExpiry(tok string) (exp time.Time, ok bool) {
	_, rest, found := strings.Cut(tok, ".")
	payload, _, found2 := strings.Cut(rest, ".")
	if !found || !found2 {
		return time.Time{}, false
	}
	data, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(data, &c) != nil {
		return time.Time{}, false
	}
	n, err := c.Exp.Float64()
	if err != nil || n <= 0 || n > 1e12 {
		return time.Time{}, false
	}
	return time.Unix(int64(n), 0), true
}

// cachedToken returns a token source that hands out, through a heldToken of
// its own, the token fetch gives.
func cachedToken(fetch tokenFetcher, now func() time.Time) func(context.Context) (string, error) {
	h := newHeldToken(now)
	return func(ctx context.Context) (string, error) { return h.get(ctx, "", fetch) }
}

// managedIdentityOptions locate a managed identity's tokens. The zero value
// is the system-assigned identity at the instance metadata endpoint, for
// the global cloud's token exchange.
type managedIdentityOptions struct {
	// Endpoint is the platform's identity endpoint (IDENTITY_ENDPOINT on App
	// Service and Container Apps); "" means the instance metadata endpoint
	// (imdsEndpoint: virtual machines, scale sets, AKS nodes).
	Endpoint string
	// Header is the value sent as X-IDENTITY-HEADER to Endpoint
	// (IDENTITY_HEADER). Never logged.
	Header string
	// ClientID selects a user-assigned identity; "" the system-assigned one.
	ClientID string
	// Audience is the resource of the token used as a client assertion;
	// "" means api://AzureADTokenExchange (the global cloud's).
	Audience string
}

// Managed identity endpoints (Microsoft Learn: "Managed identities for App
// Service and Azure Functions" / Container Apps "REST endpoint reference";
// "How to use managed identities on a VM to acquire an access token").
const (
	imdsEndpoint          = "http://169.254.169.254/metadata/identity/oauth2/token"
	imdsAPIVersion        = "2018-02-01"
	identityAPIVersion    = "2019-08-01"
	defaultExchangeAud    = "api://AzureADTokenExchange"
	maxManagedIdentityErr = 200 // characters of an endpoint's error text kept in an error
)

// managedIdentity gets tokens of the platform's managed identity. It is
// immutable and safe for concurrent use.
type managedIdentity struct {
	opts managedIdentityOptions
	// client calls the endpoint: idpTimeout, no redirects, and never a
	// proxy (the metadata endpoint must be reached directly).
	client *http.Client
	now    func() time.Time
}

// newManagedIdentity returns the managed identity opts describe; now dates
// the answers that give expires_in instead of expires_on.
func newManagedIdentity(opts managedIdentityOptions, now func() time.Time) *managedIdentity {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &managedIdentity{opts: opts, now: now, client: &http.Client{
		Timeout:       idpTimeout,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// audience is the resource of the assertion token.
func (mi *managedIdentity) audience() string {
	if mi.opts.Audience == "" {
		return defaultExchangeAud
	}
	return mi.opts.Audience
}

// endpointName names the endpoint in logs: IDENTITY_ENDPOINT's URL
// without query, or "instance metadata".
func (mi *managedIdentity) endpointName() string {
	if mi.opts.Endpoint == "" {
		return "instance metadata " + imdsEndpoint
	}
	if u, err := url.Parse(mi.opts.Endpoint); err == nil {
		return u.Scheme + "://" + u.Host + u.Path
	}
	return "IDENTITY_ENDPOINT"
}

// fetcher returns a tokenFetcher of the identity's tokens for resource.
func (mi *managedIdentity) fetcher(resource string) tokenFetcher {
	return func(ctx context.Context) (string, time.Time, error) { return mi.fetch(ctx, resource) }
}

// request builds the GET of a token for resource: at IDENTITY_ENDPOINT with
// api-version 2019-08-01 and the X-IDENTITY-HEADER header, else at the
// metadata endpoint with api-version 2018-02-01 and Metadata: true; with
// client_id when a user-assigned identity is chosen.
func (mi *managedIdentity) request(ctx context.Context, resource string) (*http.Request, error) {
	endpoint, version := mi.opts.Endpoint, identityAPIVersion
	if endpoint == "" {
		endpoint, version = imdsEndpoint, imdsAPIVersion
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("auth: managed identity endpoint: %w", err)
	}
	q := u.Query()
	q.Set("api-version", version)
	q.Set("resource", resource)
	if mi.opts.ClientID != "" {
		q.Set("client_id", mi.opts.ClientID)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("auth: managed identity endpoint: %w", err)
	}
	if mi.opts.Endpoint == "" {
		req.Header.Set("Metadata", "true")
	} else {
		req.Header.Set("X-IDENTITY-HEADER", mi.opts.Header)
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// fetch gets a token for resource from the managed identity endpoint,
// waiting at most idpTimeout and reading at most maxTokenAnswer bytes.
// Errors name the endpoint's status and error text, never a token.
func (mi *managedIdentity) fetch(ctx context.Context, resource string) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	req, err := mi.request(ctx, resource)
	if err != nil {
		return "", time.Time{}, err
	}
	resp, err := mi.client.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: managed identity endpoint %s: %w", mi.endpointName(), err)
	}
	defer resp.Body.Close()
	body, err := readAtMost(resp.Body, maxTokenAnswer)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: managed identity endpoint %s: reading the answer: %w", mi.endpointName(), err)
	}
	tok, exp, err := parseManagedIdentityAnswer(resp.StatusCode, resp.Header.Get("Content-Type"), body, mi.now())
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: managed identity endpoint %s: %w", mi.endpointName(), err)
	}
	return tok, exp, nil
}

// parseManagedIdentityAnswer reads a managed identity endpoint's answer:
// a 200 JSON object with access_token and expires_on (seconds since the
// epoch, a number or a numeric string: App Service and Container Apps send
// a string, Service Fabric a number), or else expires_in (seconds from now).
// Any other status is an error holding the endpoint's error code or message
// (App Service's "message", the metadata endpoint's "error" and
// "error_description"), truncated.
func parseManagedIdentityAnswer(status int, contentType string, body []byte, now time.Time) (string, time.Time, error) {
	var a struct {
		AccessToken      string      `json:"access_token"`
		ExpiresOn        json.Number `json:"expires_on"`
		ExpiresIn        json.Number `json:"expires_in"`
		Error            string      `json:"error"`
		ErrorDescription string      `json:"error_description"`
		Message          string      `json:"message"`
	}
	jsonErr := errors.New("answer is not JSON")
	if isJSONType(contentType) {
		jsonErr = json.Unmarshal(body, &a)
	}
	if status != http.StatusOK {
		text := strings.TrimSpace(a.Error + " " + a.ErrorDescription + " " + a.Message)
		return "", time.Time{}, fmt.Errorf("status %d %s", status, cleanIdPText(text, maxManagedIdentityErr))
	}
	if jsonErr != nil {
		return "", time.Time{}, fmt.Errorf("unusable answer: %w", jsonErr)
	}
	if a.AccessToken == "" || len(a.AccessToken) > maxFederatedToken {
		return "", time.Time{}, errors.New("answer has no usable access_token")
	}
	if on, err := a.ExpiresOn.Int64(); err == nil && on > 0 {
		return a.AccessToken, time.Unix(on, 0), nil
	}
	if in, err := a.ExpiresIn.Int64(); err == nil && in >= 0 {
		return a.AccessToken, now.Add(time.Duration(in) * time.Second), nil
	}
	return "", time.Time{}, errors.New("answer has neither a numeric expires_on nor expires_in")
}

// resourceToken returns a source of access tokens for resource (such as
// https://storage.azure.com/) for the app itself, for the table store to
// use without an account key. With a managed identity, they are the
// identity's own tokens from its endpoint (the identity holds the data
// role). Otherwise they come from the client credentials grant (RFC 6749
// §4.4; Microsoft's "client credentials flow") at the token endpoint with
// scope <resource>/.default, authenticated as every token request
// (tokenRequest: federated token file, certificate or secret); then the
// app registration's service principal holds the role. Tokens are cached
// (heldToken) until tokenRefreshMargin before they expire, and never more
// than maxTokenHold.
func (af *authFlow) resourceToken(resource string) func(context.Context) (string, error) {
	if af.cred.mi != nil {
		return cachedToken(af.cred.mi.fetcher(resource), af.now)
	}
	scope := strings.TrimSuffix(resource, "/") + "/.default"
	return cachedToken(func(ctx context.Context) (string, time.Time, error) {
		md, err := af.p.metadata(ctx)
		if err != nil {
			return "", time.Time{}, err
		}
		tr, err := af.redeem(ctx, md, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}})
		if err != nil {
			return "", time.Time{}, err
		}
		life, _ := tr.lifetime() // parseTokenAnswer checked it
		return tr.AccessToken, af.now().Add(time.Duration(life) * time.Second), nil
	}, af.now)
}
