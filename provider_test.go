package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestProviderMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("fetched once and cached", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, nil)
		for range 5 {
			md, err := v.prov.metadata(ctx)
			if err != nil || md.Issuer != p.issuer(testTenant) || md.TokenEndpoint == "" || md.JWKSURI == "" {
				t.Fatalf("metadata = %+v, %v", md, err)
			}
		}
		if n := p.discoveryHits.Load(); n != 1 {
			t.Fatalf("discovery requests = %d; want 1", n)
		}
	})
	t.Run("failure is retried only after the backoff", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, map[string]string{"AZURE_TENANT_ID": "dddddddd-86f1-41af-91ab-2d7cd011db47"})
		v.prov.opts.AuthorityHost = p.srv.URL + "/nowhere"
		if _, err := v.prov.metadata(ctx); !errors.Is(err, errIDPUnavailable) {
			t.Fatalf("metadata = %v; want errIDPUnavailable", err)
		}
		if _, err := v.prov.metadata(ctx); !errors.Is(err, errIDPUnavailable) {
			t.Fatalf("metadata (in backoff) = %v; want errIDPUnavailable", err)
		}
		v.prov.opts.AuthorityHost = p.srv.URL
		v.clock.advance(2 * time.Second)
		if _, err := v.prov.metadata(ctx); err != nil {
			t.Fatalf("metadata after the backoff = %v", err)
		}
	})
	t.Run("plain-http endpoints are refused unless loopback", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, nil)
		good := providerMetadata{Issuer: p.issuer(testTenant),
			AuthorizationEndpoint: "https://login.example/a", TokenEndpoint: "https://login.example/t",
			JWKSURI: "https://login.example/k", EndSessionEndpoint: "https://login.example/l"}
		tests := []struct {
			name string
			edit func(*providerMetadata)
			ok   bool
		}{
			{"all https is accepted", func(*providerMetadata) {}, true},
			{"no end_session_endpoint is accepted", func(md *providerMetadata) { md.EndSessionEndpoint = "" }, true},
			{"http on localhost is accepted", func(md *providerMetadata) { md.TokenEndpoint = "http://localhost:8000/t" }, true},
			{"http on 127.0.0.2 is accepted", func(md *providerMetadata) { md.TokenEndpoint = "http://127.0.0.2/t" }, true},
			{"http on ::1 is accepted", func(md *providerMetadata) { md.TokenEndpoint = "http://[::1]:9/t" }, true},
			{"http issuer is refused", func(md *providerMetadata) { md.Issuer = "http://login.example/" + testTenant + "/v2.0" }, false},
			{"http authorization_endpoint is refused", func(md *providerMetadata) { md.AuthorizationEndpoint = "http://login.example/a" }, false},
			{"http token_endpoint is refused", func(md *providerMetadata) { md.TokenEndpoint = "http://login.example/t" }, false},
			{"http jwks_uri is refused", func(md *providerMetadata) { md.JWKSURI = "http://login.example/k" }, false},
			{"http end_session_endpoint is refused", func(md *providerMetadata) { md.EndSessionEndpoint = "http://login.example/l" }, false},
			{"http on a name ending in localhost is refused", func(md *providerMetadata) { md.TokenEndpoint = "http://localhost.evil.example/t" }, false},
		}
		for _, tc := range tests {
			md := good
			tc.edit(&md)
			if err := v.prov.validate(&md); (err == nil) != tc.ok {
				t.Errorf("%s: validate = %v; want ok=%v", tc.name, err, tc.ok)
			}
		}
	})
	t.Run("the provider's error is logged once, sanitized", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{
				"error": "invalid_tenant", "error_codes": []int{90002},
				"error_description": "AADSTS90002: Tenant 'contoso' not found.\r\nTrace ID: t-1\r\nlevel=ERROR msg=forged\u202e" + strings.Repeat("x", 5000),
			})
		}))
		t.Cleanup(srv.Close)
		p := newTestIDP(t)
		var logs syncBuffer
		cfg := p.config(t, map[string]string{"AZURE_AUTHORITY_HOST": srv.URL})
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		prov := newProvider(cfg.verifyOptions(srv.Client(), logger))
		ks := newKeySet(cfg.verifyOptions(srv.Client(), logger), prov)
		if err := ks.refresh(ctx); !errors.Is(err, errIDPUnavailable) {
			t.Fatalf("refresh = %v; want errIDPUnavailable", err)
		}
		out := logs.String()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if n := strings.Count(out, "level=WARN"); n != 1 || len(lines) != 1 {
			t.Errorf("one failed discovery attempt logged %d WARN lines in %d lines; want 1:\n%s", n, len(lines), out)
		}
		for _, want := range []string{"invalid_tenant", "AADSTS90002", "Tenant 'contoso' not found", "check AZURE_TENANT_ID"} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "\u202e") || strings.Contains(out, `\u202e`) || strings.Contains(out, "\\r\\n") || strings.Contains(out, strings.Repeat("x", maxIDPErrorText)) {
			t.Errorf("log holds the provider's text unsanitized or uncapped:\n%s", out)
		}
		if hits.Load() != 1 {
			t.Errorf("discovery requests = %d; want 1", hits.Load())
		}
	})
	t.Run("issuer of another tenant is refused", func(t *testing.T) {
		t.Parallel()
		p := newTestIDP(t)
		v := newTestVerifier(t, p, nil)
		err := v.prov.validate(&providerMetadata{Issuer: p.issuer("eeeeeeee-86f1-41af-91ab-2d7cd011db47"),
			AuthorizationEndpoint: p.srv.URL, TokenEndpoint: p.srv.URL, JWKSURI: p.srv.URL})
		if err == nil {
			t.Fatalf("validate(other tenant's issuer) = nil; want error")
		}
	})
}

// FuzzProviderErrorText: whatever a failed discovery or JWKS answer holds,
// the text kept for the log is bounded printable ASCII on one line.
func FuzzProviderErrorText(f *testing.F) {
	f.Add([]byte(`{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'x' not found.\r\nTrace ID: 1","error_codes":[90002]}`))
	f.Add([]byte(`{"error":"\u202e\n","error_description":null}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := providerErrorText(body)
		if len(got) > 2*maxIDPErrorText+100 {
			t.Fatalf("providerErrorText = %d bytes; want at most about %d", len(got), 2*maxIDPErrorText+100)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x20 || got[i] > 0x7e {
				t.Fatalf("providerErrorText = %q holds byte %#x", got, got[i])
			}
		}
	})
}

// TestNilClientDefault: verifyOptions without a Client get one with
// idpFetchTimeout that follows no redirect, so a provider that answers a
// discovery request with a redirect is refused, and the target never asked.
func TestNilClientDefault(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL+"/elsewhere", http.StatusFound))
	defer redirect.Close()
	for _, o := range []verifyOptions{newProvider(verifyOptions{}).opts, newKeySet(verifyOptions{}, nil).opts, newVerifier(verifyOptions{}, nil, nil).opts} {
		if o.Client == nil || o.Client.Timeout != idpFetchTimeout {
			t.Fatalf("default Client = %+v; want one with a %v timeout", o.Client, idpFetchTimeout)
		}
		if _, err := getJSON(context.Background(), o.Client, redirect.URL); err == nil || !strings.Contains(err.Error(), "302") {
			t.Errorf("getJSON through a redirect = %v; want the 302 refused", err)
		}
	}
	p := newProvider(verifyOptions{AuthorityHost: redirect.URL, TenantID: testTenant})
	if _, err := p.metadata(context.Background()); !errors.Is(err, errIDPUnavailable) {
		t.Errorf("metadata through a redirect = %v; want errIDPUnavailable", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the redirect's target was asked %d times; want 0", n)
	}
}

// TestAuthorityHostDefault: an empty AuthorityHost is the public cloud's,
// and a final "/" is dropped, so discovery is never asked at "host//tenant".
func TestAuthorityHostDefault(t *testing.T) {
	t.Parallel()
	tests := []struct{ host, want string }{
		{"", "https://login.microsoftonline.com/" + testTenant + "/v2.0/.well-known/openid-configuration"},
		{"https://login.microsoftonline.us/", "https://login.microsoftonline.us/" + testTenant + "/v2.0/.well-known/openid-configuration"},
		{"http://localhost:8000/devidp//", "http://localhost:8000/devidp/" + testTenant + "/v2.0/.well-known/openid-configuration"},
	}
	for _, tc := range tests {
		if got := newProvider(verifyOptions{AuthorityHost: tc.host, TenantID: testTenant}).opts.discoveryURL(); got != tc.want {
			t.Errorf("discoveryURL with AuthorityHost %q = %q; want %q", tc.host, got, tc.want)
		}
	}
}
