package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCloudFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		authority                    string
		v1Issuer, graph, exchangeAud string
	}{
		{"https://login.microsoftonline.com", "https://sts.windows.net/{tenantid}/", "https://graph.microsoft.com", "api://AzureADTokenExchange"},
		{"https://login.microsoftonline.us", "https://sts.windows.net/{tenantid}/", "https://graph.microsoft.us", "api://AzureADTokenExchangeUSGov"},
		{"https://LOGIN.MICROSOFTONLINE.US/", "https://sts.windows.net/{tenantid}/", "https://graph.microsoft.us", "api://AzureADTokenExchangeUSGov"},
		{"https://login.chinacloudapi.cn", "https://sts.chinacloudapi.cn/{tenantid}/", "https://microsoftgraph.chinacloudapi.cn", "api://AzureADTokenExchangeChina"},
		{"https://login.partner.microsoftonline.cn", "https://sts.chinacloudapi.cn/{tenantid}/", "https://microsoftgraph.chinacloudapi.cn", "api://AzureADTokenExchangeChina"},
		{"https://contoso.ciamlogin.com", "https://sts.windows.net/{tenantid}/", "https://graph.microsoft.com", "api://AzureADTokenExchange"},
		{"http://127.0.0.1:8000/devidp", "https://sts.windows.net/{tenantid}/", "https://graph.microsoft.com", "api://AzureADTokenExchange"},
		{"https://login.chinacloudapi.cn.evil.example", "https://sts.windows.net/{tenantid}/", "https://graph.microsoft.com", "api://AzureADTokenExchange"},
	}
	for _, tc := range tests {
		c := cloudFor(tc.authority)
		if c.v1Issuer != tc.v1Issuer || c.graphHost != tc.graph || c.exchangeAud != tc.exchangeAud {
			t.Errorf("cloudFor(%q) = %+v; want v1 %s, Graph %s, exchange %s", tc.authority, c, tc.v1Issuer, tc.graph, tc.exchangeAud)
		}
	}
}

// TestCloudSettingsFollowTheAuthority: the defaults of the settings that
// depend on the cloud come from the one table.
func TestCloudSettingsFollowTheAuthority(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t)
	for _, host := range []string{"https://login.microsoftonline.com", "https://login.microsoftonline.us", "https://login.chinacloudapi.cn"} {
		cfg := p.config(t, map[string]string{"AZURE_AUTHORITY_HOST": host})
		want := cloudFor(host)
		if got := cfg.verifyOptions(nil, nil).V1Issuer; got != want.v1Issuer {
			t.Errorf("%s: V1Issuer = %q; want %q", host, got, want.v1Issuer)
		}
		if cfg.GraphBaseURL != want.graphHost || cfg.GraphScope != want.graphHost+"/User.Read" || cfg.TokenExchangeAudience != want.exchangeAud {
			t.Errorf("%s: Graph %q, scope %q, exchange audience %q; want the %s cloud's", host, cfg.GraphBaseURL, cfg.GraphScope, cfg.TokenExchangeAudience, want.name)
		}
	}
}

// TestDiscoveryIssuerIsExact: the discovery issuer must be the URL the
// document came from, or one of Entra's documented exceptions.
func TestDiscoveryIssuerIsExact(t *testing.T) {
	t.Parallel()
	const tid = testTenant
	tests := []struct {
		name, authority, tenant, issuer string
		ok                              bool
	}{
		{"the tenant's own issuer", "https://login.microsoftonline.com", tid, "https://login.microsoftonline.com/" + tid + "/v2.0", true},
		{"the v1 issuer for a v2.0 discovery URL", "https://login.microsoftonline.com", tid, "https://sts.windows.net/" + tid + "/", false},
		{"another tenant", "https://login.microsoftonline.com", tid, "https://login.microsoftonline.com/eeeeeeee-86f1-41af-91ab-2d7cd011db47/v2.0", false},
		{"a longer issuer holding the tenant", "https://login.microsoftonline.com", tid, "https://login.microsoftonline.com/" + tid + "/v2.0/x", false},
		{"a trailing slash", "https://login.microsoftonline.com", tid, "https://login.microsoftonline.com/" + tid + "/v2.0/", false},
		{"another host", "https://login.microsoftonline.com", tid, "https://login.evil.example/" + tid + "/v2.0", false},
		{"the template for a single tenant", "https://login.microsoftonline.com", tid, "https://login.microsoftonline.com/{tenantid}/v2.0", false},
		{"the template for organizations", "https://login.microsoftonline.com", "organizations", "https://login.microsoftonline.com/{tenantid}/v2.0", true},
		{"the template for common", "https://login.microsoftonline.com", "common", "https://login.microsoftonline.com/{tenantid}/v2.0", true},
		{"a tenant GUID for organizations", "https://login.microsoftonline.com", "organizations", "https://login.microsoftonline.com/" + tid + "/v2.0", false},
		{"the template on another host", "https://login.microsoftonline.com", "common", "https://sts.windows.net/{tenantid}/", false},
		{"the GUID for a domain name", "https://login.microsoftonline.com", "contoso.onmicrosoft.com", "https://login.microsoftonline.com/" + tid + "/v2.0", true},
		{"the domain name itself", "https://login.microsoftonline.com", "contoso.onmicrosoft.com", "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0", false},
		{"a tenant GUID configured in capitals", "https://login.microsoftonline.com", strings.ToUpper(tid), "https://login.microsoftonline.com/" + tid + "/v2.0", true},
		{"the template for a domain name", "https://login.microsoftonline.com", "contoso.onmicrosoft.com", "https://login.microsoftonline.com/{tenantid}/v2.0", false},
		{"US Government", "https://login.microsoftonline.us", tid, "https://login.microsoftonline.us/" + tid + "/v2.0", true},
		{"US Government with the public host", "https://login.microsoftonline.us", tid, "https://login.microsoftonline.com/" + tid + "/v2.0", false},
		{"Azure China's partner host", "https://login.chinacloudapi.cn", tid, "https://login.partner.microsoftonline.cn/" + tid + "/v2.0", true},
		{"Azure China's own host", "https://login.chinacloudapi.cn", tid, "https://login.chinacloudapi.cn/" + tid + "/v2.0", true},
		{"Azure China with the public host", "https://login.chinacloudapi.cn", tid, "https://login.microsoftonline.com/" + tid + "/v2.0", false},
		{"the partner host's alias is no exception", "https://login.partner.microsoftonline.cn", tid, "https://login.chinacloudapi.cn/" + tid + "/v2.0", false},
		{"External ID: the tenant's GUID host", "https://contoso.ciamlogin.com", tid, "https://" + tid + ".ciamlogin.com/" + tid + "/v2.0", true},
		{"External ID by domain name", "https://contoso.ciamlogin.com", "contoso.onmicrosoft.com", "https://" + tid + ".ciamlogin.com/" + tid + "/v2.0", true},
		{"External ID: its own host", "https://contoso.ciamlogin.com", tid, "https://contoso.ciamlogin.com/" + tid + "/v2.0", true},
		{"External ID: another tenant's host", "https://contoso.ciamlogin.com", tid, "https://eeeeeeee-86f1-41af-91ab-2d7cd011db47.ciamlogin.com/" + tid + "/v2.0", false},
		{"External ID: the workforce host", "https://contoso.ciamlogin.com", tid, "https://login.microsoftonline.com/" + tid + "/v2.0", false},
		{"External ID: plain http", "https://contoso.ciamlogin.com", tid, "http://" + tid + ".ciamlogin.com/" + tid + "/v2.0", false},
		{"a ciamlogin issuer for a workforce authority", "https://login.microsoftonline.com", tid, "https://" + tid + ".ciamlogin.com/" + tid + "/v2.0", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProvider(verifyOptions{AuthorityHost: tc.authority, TenantID: tc.tenant})
			md := providerMetadata{Issuer: tc.issuer, AuthorizationEndpoint: "https://login.example/a", TokenEndpoint: "https://login.example/t",
				JWKSURI: "https://login.example/k"}
			err := p.validate(&md)
			if (err == nil) != tc.ok {
				t.Fatalf("validate(issuer %s) for %s/%s = %v; want ok=%v", tc.issuer, tc.authority, tc.tenant, err, tc.ok)
			}
			if err != nil && strings.HasPrefix(tc.issuer, "https://") && !strings.Contains(err.Error(), "want "+tc.authority+"/") {
				t.Errorf("the error %q does not name the issuer expected", err)
			}
		})
	}
}

// fakeCloud is an identity provider reached under any host name, as the
// real clouds are (login.chinacloudapi.cn, {tenant}.ciamlogin.com): an
// https server whose client dials it whatever the URL's host. It serves
// the discovery document with the given issuer and endpoints under
// authority, and the key set of testKeys()[0] as kid k0.
type fakeCloud struct {
	srv    *httptest.Server
	client *http.Client
	hits   func() int // discovery requests so far
}

func newFakeCloud(t *testing.T, authority, tenant, issuer string) *fakeCloud {
	t.Helper()
	var n int
	var mu = make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		mu <- struct{}{}
		n++
		<-mu
		base := authority + "/" + tenant
		writeJSON(w, http.StatusOK, map[string]any{"issuer": issuer, "authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"token_endpoint": base + "/oauth2/v2.0/token", "jwks_uri": base + "/discovery/v2.0/keys"})
	})
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{publicJWK(&testKeys()[0].PublicKey, "k0", "")}})
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	addr := srv.Listener.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"}, // httptest's certificate names example.com
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	return &fakeCloud{srv: srv, client: client, hits: func() int { mu <- struct{}{}; defer func() { <-mu }(); return n }}
}

// verifier is a verifier configured from env (with testIDP's other
// settings) that reaches the fake cloud, logging to logs.
func (fc *fakeCloud) verifier(t *testing.T, env map[string]string, logs *syncBuffer) *verifier {
	t.Helper()
	cfg := newTestIDP(t).config(t, env)
	opts := cfg.verifyOptions(fc.client, slog.New(slog.NewTextHandler(logs, nil)))
	prov := newProvider(opts)
	return newVerifier(opts, prov, newKeySet(opts, prov))
}

// cloudClaims are a v2 access token's claims for the test API in testTenant,
// valid an hour from now, with override applied.
func cloudClaims(now time.Time, override map[string]any) map[string]any {
	c := map[string]any{"aud": testClientID, "tid": testTenant, "oid": "00000000-0000-0000-0000-0000000000aa", "sub": "s",
		"azp": "22222222-3333-4444-5555-666666666666", "scp": "Heroes.Read", "ver": "2.0", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range override {
		c[k] = v
	}
	return c
}

// TestExternalIDTenant: an External ID tenant ({subdomain}.ciamlogin.com,
// by GUID or by {subdomain}.onmicrosoft.com) is discovered and its tokens,
// whose issuer host is the tenant id's, are accepted; a workforce issuer is
// not.
func TestExternalIDTenant(t *testing.T) {
	t.Parallel()
	const authority = "https://contoso.ciamlogin.com"
	issuer := "https://" + testTenant + ".ciamlogin.com/" + testTenant + "/v2.0"
	for _, tenant := range []string{testTenant, "contoso.onmicrosoft.com"} {
		t.Run(tenant, func(t *testing.T) {
			t.Parallel()
			fc := newFakeCloud(t, authority, tenant, issuer)
			v := fc.verifier(t, map[string]string{"AZURE_AUTHORITY_HOST": authority, "AZURE_TENANT_ID": tenant}, &syncBuffer{})
			now := time.Now()
			good := sign(t, testKeys()[0], stdHeader, cloudClaims(now, map[string]any{"iss": issuer}))
			c, err := v.verifyAccessToken(context.Background(), good)
			if err != nil || c.TenantID != testTenant {
				t.Fatalf("External ID token = %+v, %v; want accepted", c, err)
			}
			workforce := sign(t, testKeys()[0], stdHeader, cloudClaims(now, map[string]any{"iss": "https://login.microsoftonline.com/" + testTenant + "/v2.0"}))
			if _, err := v.verifyAccessToken(context.Background(), workforce); !errors.Is(err, errBadIssuer) {
				t.Errorf("a workforce issuer in an External ID tenant = %v; want errBadIssuer", err)
			}
			other := sign(t, testKeys()[0], stdHeader, cloudClaims(now, map[string]any{"iss": issuer, "tid": "eeeeeeee-86f1-41af-91ab-2d7cd011db47"}))
			if _, err := v.verifyAccessToken(context.Background(), other); !errors.Is(err, errTenantForbidden) {
				t.Errorf("another tenant's tid = %v; want errTenantForbidden", err)
			}
		})
	}
}

// TestAzureChinaTokens: in Azure China the discovery issuer's host is the
// partner host, and v1 tokens come from sts.chinacloudapi.cn, not
// sts.windows.net.
func TestAzureChinaTokens(t *testing.T) {
	t.Parallel()
	const authority = "https://login.chinacloudapi.cn"
	fc := newFakeCloud(t, authority, testTenant, "https://login.partner.microsoftonline.cn/"+testTenant+"/v2.0")
	v := fc.verifier(t, map[string]string{"AZURE_AUTHORITY_HOST": authority}, &syncBuffer{})
	now := time.Now()
	tests := []struct {
		name string
		over map[string]any
		want error
	}{
		{"v2", map[string]any{"iss": "https://login.partner.microsoftonline.cn/" + testTenant + "/v2.0"}, nil},
		{"v1 of Azure China", map[string]any{"iss": "https://sts.chinacloudapi.cn/" + testTenant + "/", "ver": "1.0"}, nil},
		{"v1 of the public cloud", map[string]any{"iss": "https://sts.windows.net/" + testTenant + "/", "ver": "1.0"}, errBadIssuer},
		{"v2 of the public cloud", map[string]any{"iss": "https://login.microsoftonline.com/" + testTenant + "/v2.0"}, errBadIssuer},
	}
	for _, tc := range tests {
		tok := sign(t, testKeys()[0], stdHeader, cloudClaims(now, tc.over))
		if _, err := v.verifyAccessToken(context.Background(), tok); !errors.Is(err, tc.want) {
			t.Errorf("%s: verify = %v; want %v", tc.name, err, tc.want)
		}
	}
}

// TestRefusedDiscoveryDocument: a document whose issuer is not the one
// expected leaves the service never ready, accepting no token, with a log
// line naming the issuer expected.
func TestRefusedDiscoveryDocument(t *testing.T) {
	t.Parallel()
	fc := newFakeCloud(t, "https://login.microsoftonline.com", testTenant, "https://sts.windows.net/"+testTenant+"/")
	var logs syncBuffer
	v := fc.verifier(t, map[string]string{"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com"}, &logs)
	tok := sign(t, testKeys()[0], stdHeader, cloudClaims(time.Now(), map[string]any{"iss": "https://sts.windows.net/" + testTenant + "/", "ver": "1.0"}))
	if _, err := v.verifyAccessToken(context.Background(), tok); !errors.Is(err, errIDPUnavailable) {
		t.Fatalf("verify with a refused discovery document = %v; want errIDPUnavailable", err)
	}
	if err := v.ready(); err == nil {
		t.Errorf("ready() = nil with a refused discovery document")
	}
	want := "want https://login.microsoftonline.com/" + testTenant + "/v2.0"
	if !strings.Contains(logs.String(), "discovery document not loaded") || !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks the refusal naming %q:\n%s", want, logs.String())
	}
	if fc.hits() != 1 {
		t.Errorf("discovery requests = %d; want 1 (then the backoff)", fc.hits())
	}
}
