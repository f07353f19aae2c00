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
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client authentication methods for the token endpoint (loginOptions.ClientAuth).
const (
	clientAuthPost        = "post"
	clientAuthBasic       = "basic"
	clientAuthCertificate = "certificate"
)

// loadClientCredential checks the client credential opts.ClientAuth names.
// It returns the certificate of clientAuthCertificate, loaded and logged
// (with a warning when it expires within 30 days), or nil for a secret.
func loadClientCredential(opts loginOptions, logger *slog.Logger) (*clientCertificate, error) {
	switch opts.ClientAuth {
	case clientAuthCertificate:
		if opts.ClientCertPath == "" {
			return nil, errors.New("auth: AZURE_CLIENT_AUTH=certificate needs AZURE_CLIENT_CERTIFICATE_PATH")
		}
		cert, err := loadClientCertificate(opts.ClientCertPath, time.Now())
		if err != nil {
			return nil, err
		}
		logger.Info("auth: client certificate loaded", "x5t#S256", cert.thumbprint, "not_after", cert.notAfter.UTC().Format(time.RFC3339))
		if time.Until(cert.notAfter) < 30*24*time.Hour {
			logger.Warn("auth: client certificate expires within 30 days; upload a new one to the app registration", "not_after", cert.notAfter.UTC().Format(time.RFC3339))
		}
		return cert, nil
	case clientAuthPost, clientAuthBasic:
		if opts.ClientSecret == "" {
			return nil, errors.New("auth: AZURE_CLIENT_SECRET is empty")
		}
		return nil, nil
	}
	return nil, fmt.Errorf("auth: unknown client authentication %q", opts.ClientAuth)
}

// tokenRequest builds the POST of form to the token endpoint, a hand-built
// application/x-www-form-urlencoded body (RFC 6749 §3.2) with client_id and
// the client authentication of opts.ClientAuth: client_secret in the body
// (§2.3.1, "post"), HTTP Basic with form-encoded id and secret ("basic"), or
// a client assertion signed with the certificate (RFC 7523 §2.2,
// "certificate").
func (af *authFlow) tokenRequest(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	form.Set("client_id", af.opts.ClientID)
	switch af.opts.ClientAuth {
	case clientAuthCertificate:
		assertion, err := af.cert.assertion(af.opts.ClientID, endpoint, af.now())
		if err != nil {
			return nil, err
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
	// 5 to 10 minutes after nbf.
	assertionLifetime = 5 * time.Minute
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
// missing or too large, the key is not RSA of 2048 bits or more, the key does
// not match the certificate, or the certificate has expired at now. Errors
// name the problem and never hold key material.
func loadClientCertificate(path string, now time.Time) (*clientCertificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: client certificate: %w", err)
	}
	defer f.Close()
	data, err := readAtMost(f, maxCertificateFile)
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("auth: client certificate %s is larger than %d bytes", path, maxCertificateFile)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: client certificate %s: %w", path, err)
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
