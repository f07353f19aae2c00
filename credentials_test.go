package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCertificate makes a self-signed certificate for key, valid from an
// hour ago until notAfter.
func testCertificate(tb testing.TB, key *rsa.PrivateKey, notAfter time.Time) *x509.Certificate {
	tb.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "heroes-auth test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

// writePEM writes blocks to a file in tb.TempDir and returns its path.
func writePEM(tb testing.TB, blocks ...*pem.Block) string {
	tb.Helper()
	var data []byte
	for _, b := range blocks {
		data = append(data, pem.EncodeToMemory(b)...)
	}
	path := filepath.Join(tb.TempDir(), "client.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// pkcs8Block is key as a PKCS #8 PRIVATE KEY block.
func pkcs8Block(tb testing.TB, key any) *pem.Block {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

// assertionChecker checks client assertions as Entra does for a registered
// certificate (RFC 7523 §3, Microsoft "certificate credentials"), on its own
// code: PS256 signature by the certificate's key, x5t#S256 = the
// certificate's SHA-256 thumbprint, aud = the token endpoint, iss = sub =
// the client id, a jti never seen before, and exp 5 to 10 minutes after nbf.
type assertionChecker struct {
	cert *x509.Certificate
	mu   sync.Mutex // guards seen
	seen map[string]bool
}

func (ac *assertionChecker) check(r *http.Request, form url.Values) error {
	if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return fmt.Errorf("client_assertion_type = %q", form.Get("client_assertion_type"))
	}
	if form.Has("client_secret") {
		return errors.New("a client_secret was sent with a certificate")
	}
	if _, _, ok := r.BasicAuth(); ok {
		return errors.New("Basic authorization was sent with a certificate")
	}
	if form.Get("client_id") != testClientID {
		return fmt.Errorf("client_id = %q", form.Get("client_id"))
	}
	parts := strings.Split(form.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return errors.New("assertion is not a compact JWS")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	pub := ac.cert.PublicKey.(*rsa.PublicKey)
	if err := rsa.VerifyPSS(pub, crypto.SHA256, sum[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	var header map[string]any
	if err := decodeJSONSegment(parts[0], &header); err != nil {
		return err
	}
	thumb := sha256.Sum256(ac.cert.Raw)
	if header["alg"] != "PS256" || header["typ"] != "JWT" || header["x5t#S256"] != base64.RawURLEncoding.EncodeToString(thumb[:]) {
		return fmt.Errorf("header = %v", header)
	}
	var c struct {
		Aud, Iss, Sub, Jti string
		Exp, Nbf, Iat      int64
	}
	if err := decodeJSONSegment(parts[1], &c); err != nil {
		return err
	}
	endpoint := "http://" + r.Host + r.URL.Path
	life := time.Duration(c.Exp-c.Nbf) * time.Second
	switch {
	case c.Aud != endpoint:
		return fmt.Errorf("aud = %q; want the token endpoint %q", c.Aud, endpoint)
	case c.Iss != testClientID || c.Sub != testClientID:
		return fmt.Errorf("iss, sub = %q, %q; want the client id", c.Iss, c.Sub)
	case c.Jti == "":
		return errors.New("no jti")
	case life < 5*time.Minute || life > 10*time.Minute:
		return fmt.Errorf("exp - nbf = %v; want 5 to 10 minutes", life)
	case time.Since(time.Unix(c.Nbf, 0)).Abs() > time.Minute:
		return fmt.Errorf("nbf %d is not now", c.Nbf)
	}
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.seen[c.Jti] {
		return fmt.Errorf("jti %q replayed", c.Jti)
	}
	ac.seen[c.Jti] = true
	return nil
}

// decodeJSONSegment decodes one base64url JSON segment of a JWS into v.
func decodeJSONSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func TestCertificateAssertionIsAcceptedByTheProvider(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	cert := testCertificate(t, key, time.Now().Add(365*24*time.Hour))
	path := writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}, pkcs8Block(t, key))
	h := newHarness(t, harnessOptions{env: map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": path, "AZURE_CLIENT_SECRET": ""}})
	ac := &assertionChecker{cert: cert, seen: map[string]bool{}}
	h.ti.checkClient = ac.check
	w := h.signIn(t, "", "")
	if w.Code != http.StatusOK {
		t.Fatalf("sign-in with a certificate = %d %s; want 200", w.Code, w.Body)
	}
	rt, _ := decodeAnswer(t, w)["refresh_token"].(string)
	r := newRefreshRequest("application/x-www-form-urlencoded", url.Values{"refresh_token": {rt}}.Encode())
	if w := h.do(r); w.Code != http.StatusOK {
		t.Errorf("refresh with a certificate = %d %s; want 200 (and a fresh jti)", w.Code, w.Body)
	}
}

func TestCertificateAssertionSignedByAnotherKeyIsRefused(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	path := writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: testCertificate(t, key, time.Now().Add(time.Hour)).Raw}, pkcs8Block(t, key))
	h := newHarness(t, harnessOptions{env: map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": path}})
	// The provider has another certificate registered for the app.
	registered := testCertificate(t, testKeys()[2], time.Now().Add(time.Hour))
	h.ti.checkClient = (&assertionChecker{cert: registered, seen: map[string]bool{}}).check
	setTokenHandlerWrap(h, func(err error) (int, string, int) { return 401, "invalid_client", 700027 })
	w := h.signIn(t, "", "")
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "AADSTS700027") {
		t.Errorf("sign-in with an unregistered certificate = %d %s; want 502 naming AADSTS700027", w.Code, w.Body)
	}
}

// setTokenHandlerWrap makes client authentication failures of h's issuer
// answer with the given Entra error instead of AADSTS7000215.
func setTokenHandlerWrap(h *flowHarness, answer func(error) (status int, code string, aadsts int)) {
	check := h.ti.checkClient
	setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err == nil {
			if err := check(r, r.PostForm); err != nil {
				status, code, n := answer(err)
				entraError(w, status, code, fmt.Sprintf("AADSTS%d: %v", n, err), n)
				return
			}
		}
		h.ti.serveToken(w, r)
	})
}

func TestBasicClientAuthentication(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{env: map[string]string{"AZURE_CLIENT_AUTH": "basic", "AZURE_CLIENT_SECRET": "s3cret+/=&:%"}})
	h.ti.checkClient = func(r *http.Request, form url.Values) error {
		id, secret, ok := r.BasicAuth()
		if !ok {
			return errors.New("no Basic authorization")
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if id != testClientID || secret != "s3cret+/=&:%" {
			return fmt.Errorf("Basic credentials %q", id)
		}
		if form.Has("client_secret") {
			return errors.New("client_secret also sent in the body")
		}
		return nil
	}
	if w := h.signIn(t, "", ""); w.Code != http.StatusOK {
		t.Errorf("sign-in with Basic client authentication = %d %s; want 200", w.Code, w.Body)
	}
}

func TestNewAuthFlowRefusesUnusableCertificates(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	good := testCertificate(t, key, time.Now().Add(time.Hour))
	smallKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.pem") }, "no such file"},
		{"not PEM", func(t *testing.T) string { return writePEM(t) }, "no CERTIFICATE"},
		{"file over 1 MiB", func(t *testing.T) string {
			return writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: make([]byte, 1<<20)})
		}, "larger than 1048576 bytes"},
		{"certificate without key", func(t *testing.T) string {
			return writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: good.Raw})
		}, "no RSA private key"},
		{"key of another certificate", func(t *testing.T) string {
			return writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: good.Raw}, pkcs8Block(t, testKeys()[2]))
		}, "does not match"},
		{"expired certificate", func(t *testing.T) string {
			old := testCertificate(t, key, time.Now().Add(-time.Minute))
			return writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: old.Raw}, pkcs8Block(t, key))
		}, "expired"},
		{"RSA key under 2048 bits", func(t *testing.T) string {
			small := testCertificate(t, smallKey, time.Now().Add(time.Hour))
			return writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: small.Raw}, pkcs8Block(t, smallKey))
		}, "1024 bits"},
		{"encrypted key", func(t *testing.T) string {
			return writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: good.Raw}, &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})
		}, "encrypted"},
	}
	idp := newTestIDP(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := idp.config(t, map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": tc.path(t)})
			_, err := newAuthFlow(cfg.loginOptions(), fakeMetadata{}, newVerifier(cfg.verifyOptions(nil, nil), nil, nil), http.DefaultClient, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("newAuthFlow = %v; want an auth: error containing %q", err, tc.want)
			}
		})
	}
}

func TestCertificateWithPKCS1KeyAndChainLoads(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	leaf := testCertificate(t, key, time.Now().Add(time.Hour))
	other := testCertificate(t, testKeys()[2], time.Now().Add(time.Hour))
	path := writePEM(t,
		&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
		&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw},
		&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw})
	cc, err := loadClientCertificate(path, time.Now())
	if err != nil {
		t.Fatalf("loadClientCertificate = %v; want the first certificate and its PKCS #1 key", err)
	}
	sum := sha256.Sum256(leaf.Raw)
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); cc.thumbprint != want {
		t.Errorf("thumbprint = %q; want the leaf's %q", cc.thumbprint, want)
	}
}

// TestRefreshUsesTheCodeGrantsClientAuthentication: the refresh grant
// (RFC 6749 §6) authenticates the client exactly as the code grant does:
// client_secret in the body, HTTP Basic (AZURE_CLIENT_AUTH=basic), or a
// certificate's client assertion with a fresh jti (RFC 7523 §2.2). The test
// provider refuses any other authentication.
func TestRefreshUsesTheCodeGrantsClientAuthentication(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	cert := testCertificate(t, key, time.Now().Add(365*24*time.Hour))
	certPath := writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}, pkcs8Block(t, key))
	checkBasic := func(r *http.Request, form url.Values) error {
		id, secret, ok := r.BasicAuth()
		if !ok {
			return errors.New("no Basic authorization")
		}
		if id != testClientID || secret != testSecret || form.Has("client_secret") || form.Has("client_assertion") {
			return errors.New("wrong Basic credentials, or a credential in the body too")
		}
		return nil
	}
	tests := []struct {
		name  string
		env   map[string]string
		check func(r *http.Request, form url.Values) error
	}{
		{"client_secret in the body", nil, checkClientSecretPost},
		{"HTTP Basic", map[string]string{"AZURE_CLIENT_AUTH": "basic"}, checkBasic},
		{"certificate assertion", map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": certPath, "AZURE_CLIENT_SECRET": ""},
			(&assertionChecker{cert: cert, seen: map[string]bool{}}).check},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{env: tc.env})
			var mu sync.Mutex
			var passed []string
			h.ti.checkClient = func(r *http.Request, form url.Values) error {
				err := tc.check(r, form)
				if err == nil {
					mu.Lock()
					passed = append(passed, form.Get("grant_type"))
					mu.Unlock()
				}
				return err
			}
			w := h.signIn(t, "", "")
			if w.Code != http.StatusOK {
				t.Fatalf("sign-in = %d %s; want 200", w.Code, w.Body)
			}
			rt, _ := decodeAnswer(t, w)["refresh_token"].(string)
			if w := h.do(newRefreshRequest("application/x-www-form-urlencoded", url.Values{"refresh_token": {rt}}.Encode())); w.Code != http.StatusOK {
				t.Errorf("refresh = %d %s; want 200", w.Code, w.Body)
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(passed, " ") != "authorization_code refresh_token" {
				t.Errorf("grants authenticated as %s: %v; want authorization_code then refresh_token", tc.name, passed)
			}
		})
	}
}
