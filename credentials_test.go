package main

import (
	"context"
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
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
// the client id, a jti not seen in another assertion (the same assertion
// may come again while it is valid, as MSAL's cached ones do), and exp 5 to
// 10 minutes after nbf.
type assertionChecker struct {
	cert *x509.Certificate
	mu   sync.Mutex        // guards seen
	seen map[string]string // jti → the assertion that carried it
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
	if a, ok := ac.seen[c.Jti]; ok && a != form.Get("client_assertion") {
		return fmt.Errorf("jti %q replayed in another assertion", c.Jti)
	}
	ac.seen[c.Jti] = form.Get("client_assertion")
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
	ac := &assertionChecker{cert: cert, seen: map[string]string{}}
	h.ti.checkClient = ac.check
	w := h.signIn(t, "", "")
	if w.Code != http.StatusOK {
		t.Fatalf("sign-in with a certificate = %d %s; want 200", w.Code, w.Body)
	}
	rt, _ := decodeAnswer(t, w)["refresh_token"].(string)
	r := newRefreshRequest("application/x-www-form-urlencoded", url.Values{"refresh_token": {rt}}.Encode())
	if w := h.do(r); w.Code != http.StatusOK {
		t.Errorf("refresh with a certificate = %d %s; want 200", w.Code, w.Body)
	}
}

func TestCertificateAssertionSignedByAnotherKeyIsRefused(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	path := writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: testCertificate(t, key, time.Now().Add(time.Hour)).Raw}, pkcs8Block(t, key))
	h := newHarness(t, harnessOptions{env: map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": path, "AZURE_CLIENT_SECRET": ""}})
	// The provider has another certificate registered for the app.
	registered := testCertificate(t, testKeys()[2], time.Now().Add(time.Hour))
	h.ti.checkClient = (&assertionChecker{cert: registered, seen: map[string]string{}}).check
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

// TestNewAuthFlowRefusesUnusableCertificates: an unusable certificate is
// one of loadConfig's problems, naming AZURE_CLIENT_CERTIFICATE_PATH, and
// newAuthFlow (for a program filling loginOptions itself) refuses it too.
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
			path := tc.path(t)
			_, err := loadConfig(mapGetenv(map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": path, "AZURE_CLIENT_SECRET": ""}))
			if err == nil || !strings.Contains(err.Error(), "AZURE_CLIENT_CERTIFICATE_PATH: client certificate") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadConfig = %v; want a problem naming AZURE_CLIENT_CERTIFICATE_PATH and containing %q", err, tc.want)
			}
			// A program taking the login piece alone fills loginOptions itself.
			cfg := idp.config(t, nil)
			lo := cfg.loginOptions()
			lo.ClientAuth, lo.ClientCertPath, lo.ClientSecret = clientAuthCertificate, path, ""
			_, err = newAuthFlow(lo, fakeMetadata{}, newVerifier(cfg.verifyOptions(nil, nil), nil, nil), http.DefaultClient, slog.New(slog.DiscardHandler))
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
// certificate's client assertion (RFC 7523 §2.2). The test
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
			(&assertionChecker{cert: cert, seen: map[string]string{}}).check},
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

// writeToken writes tok to the file at path (0600), replacing it as a
// kubelet does when it rotates a projected token.
func writeToken(tb testing.TB, path, tok string) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// newFederatedHarness is a harness whose service has no secret but a
// federated token file, holding an assertion of the test federation, and
// whose provider accepts only that federation's assertions, recording them
// in the log returned. It returns the file's path too.
func newFederatedHarness(t *testing.T) (*flowHarness, *assertionLog, string) {
	t.Helper()
	fed := newTestFederation()
	path := filepath.Join(t.TempDir(), "azure-identity-token")
	writeToken(t, path, fed.assertion(t, nil))
	h := newHarness(t, harnessOptions{env: map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": path}})
	log := &assertionLog{}
	h.ti.checkClient = log.checkFederated(fed.credential())
	return h, log, path
}

// signInAndRefresh signs in with h and then refreshes, failing unless both
// answer 200.
func signInAndRefresh(t *testing.T, h *flowHarness, between func()) {
	t.Helper()
	w := h.signIn(t, "", "")
	if w.Code != http.StatusOK {
		t.Fatalf("sign-in = %d %s; want 200", w.Code, w.Body)
	}
	rt, _ := decodeAnswer(t, w)["refresh_token"].(string)
	between()
	if w := h.do(newRefreshRequest("application/x-www-form-urlencoded", url.Values{"refresh_token": {rt}}.Encode())); w.Code != http.StatusOK {
		t.Fatalf("refresh = %d %s; want 200", w.Code, w.Body)
	}
}

// TestFederatedTokenFileSignInAndRefresh: with AZURE_FEDERATED_TOKEN_FILE
// and no secret, the code and refresh grants authenticate with the file's
// JWT as client_assertion (jwt-bearer), the file is read again for each
// request (a rotated file is used at once), and no assertion is logged.
func TestFederatedTokenFileSignInAndRefresh(t *testing.T) {
	t.Parallel()
	h, log, path := newFederatedHarness(t)
	fed := newTestFederation()
	first, second := fed.assertion(t, nil), fed.assertion(t, nil)
	writeToken(t, path, first)

	signInAndRefresh(t, h, func() { writeToken(t, path, second) })

	want := []string{"authorization_code " + first, "refresh_token " + second}
	if got := log.list(); !slices.Equal(got, want) {
		t.Errorf("the provider accepted %d assertions %q; want the file's first content for the code and its rotated content for the refresh", len(got), got)
	}
	assertNoSecretsLogged(t, h.logs.String(), first, second)
	if !strings.Contains(h.logs.String(), "federated token file") {
		t.Errorf("start-up did not log which credential is used:\n%s", h.logs)
	}
}

// TestManagedIdentityAssertionSignInAndRefresh: with
// AZURE_CLIENT_ASSERTION=managed-identity and no secret, the assertion is
// the managed identity's token for api://AzureADTokenExchange from
// IDENTITY_ENDPOINT, fetched once and reused while it is valid, and never
// logged.
func TestManagedIdentityAssertionSignInAndRefresh(t *testing.T) {
	t.Parallel()
	fi := newFakeIdentity(t)
	h := newHarness(t, harnessOptions{env: fi.env()})
	var log assertionLog
	h.ti.checkClient = log.checkFederated(fi.fed.credential())

	signInAndRefresh(t, h, func() {})

	if got := fi.resources(); !slices.Equal(got, []string{"api://AzureADTokenExchange"}) {
		t.Errorf("the identity endpoint was asked for %q; want one token for api://AzureADTokenExchange, then the cached one", got)
	}
	got := log.list()
	if len(got) != 2 || !strings.HasPrefix(got[0], "authorization_code ") || !strings.HasPrefix(got[1], "refresh_token ") {
		t.Fatalf("the provider accepted %q; want the code and the refresh grant", got)
	}
	assertion := strings.TrimPrefix(got[0], "authorization_code ")
	assertNoSecretsLogged(t, h.logs.String(), assertion, fi.header)
}

// TestManagedIdentityAssertionIsRenewedBeforeItExpires: a token with less
// than tokenRefreshMargin left is not sent; a new one is fetched.
func TestManagedIdentityAssertionIsRenewedBeforeItExpires(t *testing.T) {
	t.Parallel()
	fi := newFakeIdentity(t)
	fi.lifetime = tokenRefreshMargin - time.Minute
	h := newHarness(t, harnessOptions{env: fi.env()})
	var log assertionLog
	h.ti.checkClient = log.checkFederated(fi.fed.credential())
	signInAndRefresh(t, h, func() {})
	if n := len(fi.resources()); n != 2 {
		t.Errorf("the identity endpoint was asked %d times for two token requests with short-lived tokens; want 2", n)
	}
}

// TestFederatedTokenFileUnusableAtStart: a missing, empty, oversized or
// non-JWT file stops start-up (newAuthFlow, a configuration error in run)
// with an error naming the file and never its content.
func TestFederatedTokenFileUnusableAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string { return writeTestFile(t, dir, name, content) }
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "absent"), "no such file"},
		{"empty", write("empty", " \n"), "is empty"},
		{"not a JWT", write("text", "secret-looking text"), "does not hold a JWT"},
		{"too large", write("large", strings.Repeat("a", maxFederatedToken+1)), "larger than"},
		{"a directory", dir, "is a directory"},
	}
	idp := newTestIDP(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := idp.config(t, map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": tc.path})
			_, err := newAuthFlow(cfg.loginOptions(), fakeMetadata{}, newVerifier(cfg.verifyOptions(nil, nil), nil, nil), http.DefaultClient, discardLogger())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("newAuthFlow() = %v; want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret-looking") {
				t.Errorf("the error %q holds the file's content", err)
			}
		})
	}
}

// TestClientCredentialUnavailableIsA502: when the assertion cannot be had
// at request time (the token file was removed or emptied, the identity
// endpoint fails), sign-in and refresh answer 502 in JSON, nothing is sent
// to the token endpoint, and an error log line says why.
func TestClientCredentialUnavailableIsA502(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T) (env map[string]string, breakIt func())
		wantLog string
	}{
		{"token file removed", func(t *testing.T) (map[string]string, func()) {
			path := filepath.Join(t.TempDir(), "token")
			writeToken(t, path, newTestFederation().assertion(t, nil))
			return map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": path}, func() { os.Remove(path) }
		}, "no such file"},
		{"token file emptied", func(t *testing.T) (map[string]string, func()) {
			path := filepath.Join(t.TempDir(), "token")
			writeToken(t, path, newTestFederation().assertion(t, nil))
			return map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": path}, func() { writeToken(t, path, "") }
		}, "is empty"},
		{"identity endpoint answers 500", func(t *testing.T) (map[string]string, func()) {
			fi := newFakeIdentity(t)
			return fi.env(), func() {
				fi.setAnswer(func(w http.ResponseWriter, r *http.Request) {
					writeJSON(w, 500, map[string]any{"statusCode": 500, "message": "Identity not found"})
				})
			}
		}, "status 500 Identity not found"},
		{"identity endpoint unreachable", func(t *testing.T) (map[string]string, func()) {
			fi := newFakeIdentity(t)
			return fi.env(), fi.srv.Close
		}, "managed identity endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, breakIt := tc.setup(t)
			h := newHarness(t, harnessOptions{env: env})
			calls := countTokenCalls(h)
			breakIt()
			w := h.signIn(t, "", "")
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "client credential unavailable") {
				t.Errorf("sign-in = %d %s; want 502 saying the client credential is unavailable", w.Code, w.Body)
			}
			w = h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt-1"))
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Header().Get("Content-Type"), "json") {
				t.Errorf("refresh = %d %q; want a 502 JSON answer", w.Code, w.Header().Get("Content-Type"))
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("%d requests reached the token endpoint; want none", n)
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "client credential is unavailable") || !strings.Contains(logs, tc.wantLog) {
				t.Errorf("logs lack an error line saying %q:\n%s", tc.wantLog, logs)
			}
		})
	}
}

// TestCachedToken: a token is reused until tokenRefreshMargin before it
// expires, then fetched again; concurrent callers share one fetch; a failed
// fetch is not kept; a caller waiting for a fetch gives up with its ctx.
func TestCachedToken(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	var fetches atomic.Int64
	var fail atomic.Bool
	release := make(chan struct{})
	close(release)
	gate := &atomic.Pointer[chan struct{}]{}
	gate.Store(&release)
	started := make(chan struct{}, 100)
	src := cachedToken(func(ctx context.Context) (string, time.Time, error) {
		started <- struct{}{}
		select {
		case <-*gate.Load():
		case <-ctx.Done():
			return "", time.Time{}, ctx.Err()
		}
		n := fetches.Add(1)
		if fail.Load() {
			return "", time.Time{}, errors.New("endpoint down")
		}
		return fmt.Sprintf("token-%d", n), clock.now().Add(time.Hour), nil
	}, clock.now)
	get := func() string {
		t.Helper()
		tok, err := src(context.Background())
		if err != nil {
			t.Fatalf("source() = %v", err)
		}
		return tok
	}
	if got := get(); got != "token-1" {
		t.Fatalf("first = %q; want token-1", got)
	}
	clock.advance(time.Hour - tokenRefreshMargin - time.Second)
	if got := get(); got != "token-1" {
		t.Errorf("%v before expiry = %q; want the cached token-1", tokenRefreshMargin+time.Second, got)
	}
	clock.advance(time.Second)
	if got := get(); got != "token-2" {
		t.Errorf("%v before expiry = %q; want a new token-2", tokenRefreshMargin, got)
	}

	clock.advance(2 * time.Hour)
	fail.Store(true)
	if _, err := src(context.Background()); err == nil {
		t.Errorf("source() with the endpoint down = nil error; want the fetch's error")
	}
	fail.Store(false)
	if got := get(); got != "token-4" {
		t.Errorf("after a failed fetch = %q; want a new token-4 (the failure is not kept)", got)
	}

	// Ten callers at once while the token is stale: one fetch.
	clock.advance(2 * time.Hour)
	hold := make(chan struct{})
	gate.Store(&hold)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); src(context.Background()) }()
	}
	for len(started) < 5 { // the first four fetches, and now one of the ten
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := src(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("source() waiting on a slow fetch past its deadline = %v; want context.DeadlineExceeded", err)
	}
	close(hold)
	wg.Wait()
	if n := fetches.Load(); n != 5 {
		t.Errorf("%d fetches in all; want 5 (ten concurrent callers share one)", n)
	}
}

// TestManagedIdentityRequest: the token request of each kind of endpoint
// (Microsoft's App Service / Container Apps REST reference and the VM
// instance metadata how-to).
func TestManagedIdentityRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       managedIdentityOptions
		wantURL    string
		wantHeader [2]string
		noHeader   string
	}{
		{"App Service, user-assigned", managedIdentityOptions{Endpoint: "http://localhost:42356/msi/token", Header: "h-1", ClientID: "c-1"},
			"http://localhost:42356/msi/token?api-version=2019-08-01&client_id=c-1&resource=api%3A%2F%2FAzureADTokenExchange",
			[2]string{"X-Identity-Header", "h-1"}, "Metadata"},
		{"App Service, system-assigned", managedIdentityOptions{Endpoint: "http://127.0.0.1:41741/MSI/token/", Header: "h-2"},
			"http://127.0.0.1:41741/MSI/token/?api-version=2019-08-01&resource=api%3A%2F%2FAzureADTokenExchange",
			[2]string{"X-Identity-Header", "h-2"}, "Metadata"},
		{"instance metadata", managedIdentityOptions{ClientID: "c-3"},
			"http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&client_id=c-3&resource=api%3A%2F%2FAzureADTokenExchange",
			[2]string{"Metadata", "true"}, "X-Identity-Header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mi := newManagedIdentity(tc.opts, time.Now)
			req, err := mi.request(context.Background(), "api://AzureADTokenExchange")
			if err != nil {
				t.Fatal(err)
			}
			if req.Method != http.MethodGet || req.URL.String() != tc.wantURL {
				t.Errorf("request = %s %s; want GET %s", req.Method, req.URL, tc.wantURL)
			}
			if got := req.Header.Get(tc.wantHeader[0]); got != tc.wantHeader[1] {
				t.Errorf("%s = %q; want %q", tc.wantHeader[0], got, tc.wantHeader[1])
			}
			if req.Header.Get(tc.noHeader) != "" {
				t.Errorf("%s is set; it belongs to the other kind of endpoint", tc.noHeader)
			}
			if tr := mi.client.Transport.(*http.Transport); tr.Proxy != nil || mi.client.Timeout != idpTimeout {
				t.Errorf("client has a proxy or timeout %v; want no proxy and %v", mi.client.Timeout, idpTimeout)
			}
		})
	}
}

func TestParseManagedIdentityAnswer(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	const js = "application/json; charset=utf-8"
	tests := []struct {
		name        string
		status      int
		ct, body    string
		wantExpires int64  // seconds since the epoch; 0 when an error is wanted
		wantErr     string // in the error
	}{
		{"App Service: expires_on string", 200, js, `{"access_token":"t","expires_on":"1800003600","resource":"r","token_type":"Bearer"}`, 1_800_003_600, ""},
		{"Service Fabric: expires_on number", 200, js, `{"access_token":"t","expires_on":1800003600}`, 1_800_003_600, ""},
		{"only expires_in", 200, js, `{"access_token":"t","expires_in":"3600"}`, 1_800_003_600, ""},
		{"no expiry", 200, js, `{"access_token":"t"}`, 0, "neither"},
		{"date string expiry", 200, js, `{"access_token":"t","expires_on":"09/14/2017 00:00:00 PM +00:00"}`, 0, "unusable answer"},
		{"no token", 200, js, `{"expires_on":"1800003600"}`, 0, "no usable access_token"},
		{"not JSON", 200, "text/html", `<html>`, 0, "not JSON"},
		{"App Service error", 400, js, `{"statusCode":400,"message":"No User Assigned or Delegated Managed Identity found for specified ClientId"}`, 0, "status 400 No User Assigned"},
		{"IMDS error", 400, js, `{"error":"invalid_request","error_description":"Identity not found"}`, 0, "status 400 invalid_request Identity not found"},
		{"error without JSON", 502, "text/plain", `bad gateway`, 0, "status 502"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, exp, err := parseManagedIdentityAnswer(tc.status, tc.ct, []byte(tc.body), now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseManagedIdentityAnswer() = %q, %v; want an error with %q", tok, err, tc.wantErr)
				}
				return
			}
			if err != nil || tok != "t" || exp.Unix() != tc.wantExpires {
				t.Errorf("parseManagedIdentityAnswer() = %q, %d, %v; want t, %d", tok, exp.Unix(), err, tc.wantExpires)
			}
		})
	}
}

// TestResourceToken: the table store's Entra token comes from the managed
// identity itself (resource https://storage.azure.com/) with a managed
// identity, and otherwise from the client credentials grant with scope
// https://storage.azure.com/.default, authenticated with the federated
// token file; both are cached.
func TestResourceToken(t *testing.T) {
	t.Parallel()
	t.Run("managed identity", func(t *testing.T) {
		fi := newFakeIdentity(t)
		h := newHarness(t, harnessOptions{env: fi.env()})
		src := h.af.resourceToken(storageResource)
		for range 3 {
			if tok, err := src(context.Background()); err != nil || tok == "" {
				t.Fatalf("resourceToken() = %q, %v", tok, err)
			}
		}
		if got := fi.resources(); !slices.Equal(got, []string{storageResource}) {
			t.Errorf("the identity endpoint was asked for %q; want one token for %s", got, storageResource)
		}
	})
	t.Run("federated token file", func(t *testing.T) {
		h, _, _ := newFederatedHarness(t)
		var scopes []string
		check := h.ti.checkClient
		h.ti.checkClient = func(r *http.Request, form url.Values) error {
			scopes = append(scopes, form.Get("scope"))
			return check(r, form)
		}
		src := h.af.resourceToken(storageResource)
		var toks []string
		for range 2 {
			tok, err := src(context.Background())
			if err != nil {
				t.Fatalf("resourceToken() = %v", err)
			}
			toks = append(toks, tok)
		}
		if !slices.Equal(scopes, []string{"https://storage.azure.com/.default"}) || toks[0] != toks[1] {
			t.Errorf("token requests with scopes %q; want one client credentials grant for https://storage.azure.com/.default, then the cached token", scopes)
		}
		if c, err := parseToken(toks[0]); err != nil || !slices.Equal(c.claims.Audience, []string{"https://storage.azure.com"}) {
			t.Errorf("the storage token has audience %v, %v; want https://storage.azure.com", c.claims.Audience, err)
		}
	})
}

// writeTestFile writes content to the file name in dir (0600) and returns
// its path.
func writeTestFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// testFIFO makes a named pipe (FIFO) in a new temporary folder and returns
// its path; it skips the test where there are none (Windows, no mkfifo).
func testFIFO(t *testing.T) string {
	t.Helper()
	mkfifo, err := exec.LookPath("mkfifo")
	if runtime.GOOS == "windows" || err != nil {
		t.Skip("no FIFOs here")
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if out, err := exec.Command(mkfifo, fifo).CombinedOutput(); err != nil {
		t.Skipf("mkfifo: %v %s", err, out)
	}
	t.Cleanup(func() {
		// Should a read be stuck after all, a writer that comes and goes
		// lets it end, so the test binary does not hang.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	return fifo
}

// TestSpecialFilesAreRefusedWithoutBlocking: a FIFO named as the federated
// token file or the client certificate, directly or through a symlink, is
// refused at once, naming what it is; opening it without O_NONBLOCK, or
// reading it without the regular-file check, would wait for a writer that
// never comes. A symlink chain to a regular file (as Kubernetes projects
// the token) is read.
func TestSpecialFilesAreRefusedWithoutBlocking(t *testing.T) {
	t.Parallel()
	fifo := testFIFO(t)
	dir := filepath.Dir(fifo)
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	tok := newTestFederation().assertion(t, nil)
	data := filepath.Join(dir, "..2026_12_01", "token")
	os.MkdirAll(filepath.Dir(data), 0o700)
	writeToken(t, data, tok)
	os.Symlink(filepath.Dir(data), filepath.Join(dir, "..data"))
	os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token"))

	tests := []struct {
		name string
		read func() error
		want string
	}{
		{"federated token file is a FIFO", func() error { _, err := readFederatedToken(fifo); return err }, "named pipe"},
		{"federated token file links to a FIFO", func() error { _, err := readFederatedToken(link); return err }, "named pipe"},
		{"client certificate is a FIFO", func() error { _, err := loadClientCertificate(fifo, time.Now()); return err }, "named pipe"},
		{"federated token file is a device", func() error { _, err := readFederatedToken(os.DevNull); return err }, "a device"},
		{"federated token through Kubernetes' symlinks", func() error {
			got, err := readFederatedToken(filepath.Join(dir, "token"))
			if err == nil && got != tok {
				err = errors.New("read another content")
			}
			return err
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- tc.read() }()
			select {
			case err := <-done:
				if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errNotRegular)) {
					t.Errorf("read = %v; want an error naming %q", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("read still blocked after 10 s")
			}
		})
	}
}

// TestHeldTokenLifetime: a token is held until the earliest of the expiry
// its issuer reported (expires_on), its own exp claim when it is a JWT, and
// maxTokenHold, less tokenRefreshMargin; a far-future expires_on does not
// keep it for ever.
func TestHeldTokenLifetime(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	jwt := func(exp time.Time) string {
		return "e30." + base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix())) + ".c2ln"
	}
	tests := []struct {
		name      string
		tok       string
		expiresOn time.Time
		heldFor   time.Duration // how long it is handed out
	}{
		{"opaque token, an hour", "opaque", start.Add(time.Hour), time.Hour},
		{"opaque token, expires_on in 10 years", "opaque", start.AddDate(10, 0, 0), maxTokenHold},
		{"JWT whose exp comes before expires_on", jwt(start.Add(30 * time.Minute)), start.Add(2 * time.Hour), 30 * time.Minute},
		{"JWT whose exp comes after expires_on", jwt(start.Add(3 * time.Hour)), start.Add(time.Hour), time.Hour},
		{"JWT and expires_on both far away", jwt(start.AddDate(5, 0, 0)), start.AddDate(10, 0, 0), maxTokenHold},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(start)
			h := newHeldToken(clock.now)
			var n int
			fetch := func(context.Context) (string, time.Time, error) { n++; return tc.tok, tc.expiresOn, nil }
			h.get(context.Background(), "", fetch)
			clock.advance(tc.heldFor - tokenRefreshMargin - time.Second)
			h.get(context.Background(), "", fetch)
			if n != 1 {
				t.Errorf("fetches %v after the first = %d; want the token held", tc.heldFor-tokenRefreshMargin-time.Second, n-1)
			}
			clock.advance(time.Second)
			h.get(context.Background(), "", fetch)
			if n != 2 {
				t.Errorf("fetches %v after the first = %d; want a new fetch", tc.heldFor-tokenRefreshMargin, n-1)
			}
		})
	}
}

// TestHeldTokenDrop: a dropped token is fetched anew; dropping a token no
// longer held (one replaced since) keeps the newer one; another key (token
// endpoint) fetches anew.
func TestHeldTokenDrop(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	h := newHeldToken(clock.now)
	var n int
	fetch := func(context.Context) (string, time.Time, error) {
		n++
		return fmt.Sprintf("token-%d", n), clock.now().Add(time.Hour), nil
	}
	ctx := context.Background()
	get := func(key string) string { tok, _ := h.get(ctx, key, fetch); return tok }
	first := get("a")
	h.drop(ctx, first)
	second := get("a")
	h.drop(ctx, first) // a late refusal of the first one
	for _, c := range []struct{ got, want string }{{first, "token-1"}, {second, "token-2"}, {get("a"), "token-2"}, {get("b"), "token-3"}} {
		if c.got != c.want {
			t.Errorf("token = %q; want %q", c.got, c.want)
		}
	}
}

// TestCertificateAssertionIsHeld: token requests within 5 minutes send one
// assertion (one signature); later, or for another token endpoint, a new
// one is signed, with its own jti.
func TestCertificateAssertionIsHeld(t *testing.T) {
	t.Parallel()
	key := testKeys()[1]
	cc, err := parseClientCertificate(slices.Concat(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testCertificate(t, key, time.Now().AddDate(1, 0, 0)).Raw}),
		pem.EncodeToMemory(pkcs8Block(t, key))), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock(time.Now())
	cred := certificateCredential(cc, testClientID, clock.now)
	ctx, ep := context.Background(), "https://login.example/t/oauth2/v2.0/token"
	get := func(endpoint string) string {
		a, err := cred.assertion(ctx, endpoint)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	first := get(ep)
	clock.advance(assertionLifetime - tokenRefreshMargin - time.Second)
	if get(ep) != first {
		t.Errorf("a request %v later signed a new assertion; want the held one", assertionLifetime-tokenRefreshMargin-time.Second)
	}
	clock.advance(time.Second)
	later := get(ep)
	if later == first {
		t.Errorf("an assertion with %v left was sent again; want a new one", tokenRefreshMargin)
	}
	if other := get("https://login.example/u/oauth2/v2.0/token"); other == later {
		t.Errorf("another token endpoint got the assertion signed for %s", ep)
	}
	cred.forget(ctx, first) // no longer held: nothing happens
	if get("https://login.example/u/oauth2/v2.0/token") == later {
		t.Errorf("forgetting an old assertion changed the held one")
	}
}

// TestRefusedAssertionIsFetchedAnew: when the token endpoint refuses the
// managed identity's assertion (invalid_client), the held one is dropped and
// the next request fetches a new one, instead of sending the refused one
// until it expires. rejectsAssertion names the answers that drop it.
func TestRefusedAssertionIsFetchedAnew(t *testing.T) {
	t.Parallel()
	fi := newFakeIdentity(t)
	h := newHarness(t, harnessOptions{env: fi.env()})
	var log assertionLog
	accept := log.checkFederated(fi.fed.credential())
	var refuse atomic.Bool
	refuse.Store(true)
	h.ti.checkClient = func(r *http.Request, form url.Values) error {
		if refuse.Swap(false) {
			return errors.New("AADSTS700024: Client assertion is not within its valid time range")
		}
		return accept(r, form)
	}
	if w := h.signIn(t, "", ""); w.Code != http.StatusBadGateway {
		t.Fatalf("sign-in with a refused assertion = %d %s; want 502", w.Code, w.Body)
	}
	if w := h.signIn(t, "", ""); w.Code != http.StatusOK {
		t.Fatalf("sign-in after = %d %s; want 200", w.Code, w.Body)
	}
	if n := len(fi.resources()); n != 2 {
		t.Errorf("the identity endpoint was asked %d times; want 2: the refused token is not sent again", n)
	}

	for _, tc := range []struct {
		te   tokenError
		want bool
	}{
		{tokenError{Code: "invalid_client", ErrorCodes: []int{7000215}}, true},
		{tokenError{Code: "invalid_grant", ErrorCodes: []int{700024}}, true},
		{tokenError{Code: "invalid_request", Description: "AADSTS700024: Client assertion is not within its valid time range."}, true},
		{tokenError{Code: "invalid_grant", ErrorCodes: []int{70008}}, false},
		{tokenError{Code: "temporarily_unavailable"}, false},
	} {
		if got := tc.te.rejectsAssertion(); got != tc.want {
			t.Errorf("rejectsAssertion(%s %v) = %v; want %v", tc.te.Code, tc.te.codes(), got, tc.want)
		}
	}
}
