package main

import (
	"encoding/pem"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// baseEnv is a complete, valid set of settings.
func baseEnv() map[string]string {
	return map[string]string{
		"AZURE_CLIENT_ID":     testClientID,
		"AZURE_CLIENT_SECRET": testSecret,
		"AZURE_TENANT_ID":     testTenant,
		"API_SCOPE":           "api://" + testClientID + "/Heroes.Read",
	}
}

// mapGetenv returns a getenv reading base with changes applied; a change to
// "" removes the key.
func mapGetenv(changes map[string]string) func(string) string {
	env := baseEnv()
	maps.Copy(env, changes)
	return func(k string) string { return env[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(mapGetenv(nil))
	if err != nil {
		t.Fatalf("loadConfig = %v; want nil", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ADDR", cfg.Addr, "localhost:8000"},
		{"REDIRECT_URI", cfg.RedirectURI, "http://localhost:8000/auth/callback"},
		{"AZURE_AUTHORITY_HOST", cfg.AuthorityHost, "https://login.microsoftonline.com"},
		{"CLOCK_SKEW", cfg.ClockSkew, 5 * time.Minute},
		{"ACCEPT_V1_TOKENS", cfg.AcceptV1Tokens, true},
		{"AZURE_CUSTOM_SIGNING_KEYS", cfg.CustomSigningKeys, false},
		{"AZURE_CLIENT_AUTH", cfg.ClientAuth, clientAuthPost},
		{"HEROES_STORE", cfg.HeroesStore, "memory"},
		{"HEROES_TABLE", cfg.HeroesTable, "heroes"},
		{"LOG_FORMAT", cfg.LogFormat, "text"},
		{"SHUTDOWN_GRACE", cfg.ShutdownGrace, 15 * time.Second},
		{"SESSION_KEY random", cfg.SessionKeyRandom, true},
		{"SESSION_KEY length", len(cfg.SessionKey), 32},
		{"discovery URL", cfg.verifyOptions(nil, nil).discoveryURL(), "https://login.microsoftonline.com/" + testTenant + "/v2.0/.well-known/openid-configuration"},
		{"audiences", strings.Join(cfg.Audiences, " "), testClientID + " api://" + testClientID},
		{"dev is only set by the flag", cfg.Dev, false},
		{"OPENAPI_CLIENT_ID", cfg.OpenAPIClientID, testClientID},
		{"DOCS_ASSETS_URL", cfg.DocsAssetsURL, "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"},
		{"CORS_ALLOWED_ORIGINS", len(cfg.CORSAllowedOrigins), 0},
		{"METRICS_ADDR is off", cfg.MetricsAddr, ""},
		{"TOKEN_CACHE_SIZE", cfg.TokenCacheSize, 100_000},
		{"HEROES_MAX_BYTES", cfg.storeOptions().MaxBytes, int64(64 << 20)},
		{"the verifier's cache size", cfg.verifyOptions(nil, nil).TokenCacheSize, 100_000},
		{"READYZ_CACHE", cfg.ReadyzCache, 5 * time.Second},
		{"AUTH_REFRESH_ENABLED", cfg.RefreshEnabled, true},
		{"refresh served", cfg.loginOptions().RefreshDisabled, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadConfigValid(t *testing.T) {
	key := testKeys()[1]
	certPath := writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: testCertificate(t, key, time.Now().AddDate(1, 0, 0)).Raw}, pkcs8Block(t, key))
	tests := []struct {
		name  string
		env   map[string]string
		check func(config) bool
	}{
		{"HEROES_FILE alone selects the file store", map[string]string{"HEROES_FILE": "/tmp/h.json"},
			func(c config) bool { return c.HeroesStore == "file" }},
		{"a certificate path selects certificate auth, no secret needed",
			map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_CERTIFICATE_PATH": certPath},
			func(c config) bool { return c.ClientAuth == clientAuthCertificate }},
		{"basic client auth", map[string]string{"AZURE_CLIENT_AUTH": "basic"},
			func(c config) bool { return c.ClientAuth == clientAuthBasic }},
		{"organizations with allowed tenants",
			map[string]string{"AZURE_TENANT_ID": "organizations", "ALLOWED_TENANTS": testTenant + ", " + strings.ToUpper(testClientID)},
			func(c config) bool {
				return slices.Equal(c.AllowedTenants, []string{testTenant, testClientID}) && !c.AnyTenant
			}},
		{"common with any tenant on purpose", map[string]string{"AZURE_TENANT_ID": "common", "ALLOWED_TENANTS": "*"},
			func(c config) bool { return c.AnyTenant }},
		{"several API scopes give their App ID URIs once",
			map[string]string{"API_SCOPE": "api://x/Heroes.Read api://x/Admin https://contoso.example/api/Heroes.Read", "AZURE_AUDIENCE": "extra-aud,other"},
			func(c config) bool {
				return slices.Equal(c.Audiences, []string{testClientID, "api://x", "https://contoso.example/api", "extra-aud", "other"})
			}},
		{"SESSION_KEY of 32 bytes", map[string]string{"SESSION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
			func(c config) bool {
				return string(c.SessionKey) == "0123456789abcdef0123456789abcdef" && !c.SessionKeyRandom
			}},
		{"HEROES_MAX_BYTES", map[string]string{"HEROES_MAX_BYTES": "1048576"},
			func(c config) bool { return c.HeroesMaxBytes == 1<<20 && c.storeOptions().MaxBytes == 1<<20 }},
		{"HEROES_MAX_BYTES at its most", map[string]string{"HEROES_MAX_BYTES": "268435456"},
			func(c config) bool { return c.HeroesMaxBytes == 256<<20 }},
		{"TOKEN_CACHE_SIZE", map[string]string{"TOKEN_CACHE_SIZE": "20000"},
			func(c config) bool {
				return c.TokenCacheSize == 20_000 && c.verifyOptions(nil, nil).TokenCacheSize == 20_000
			}},
		{"CLOCK_SKEW and LOG_LEVEL", map[string]string{"CLOCK_SKEW": "30s", "LOG_LEVEL": "debug"},
			func(c config) bool { return c.ClockSkew == 30*time.Second && c.LogLevel.String() == "DEBUG" }},
		{"trailing slash on the authority host is dropped", map[string]string{"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/"},
			func(c config) bool { return c.AuthorityHost == "https://login.microsoftonline.us" }},
		{"http authority on localhost is allowed (tests, -dev)", map[string]string{"AZURE_AUTHORITY_HOST": "http://localhost:8000/devidp"},
			func(c config) bool { return c.AuthorityHost == "http://localhost:8000/devidp" }},
		{"http authority on 127.0.0.0/8 is allowed", map[string]string{"AZURE_AUTHORITY_HOST": "http://127.1.2.3:9"},
			func(c config) bool { return c.AuthorityHost == "http://127.1.2.3:9" }},
		{"http authority on ::1 is allowed", map[string]string{"AZURE_AUTHORITY_HOST": "http://[::1]:9"},
			func(c config) bool { return c.AuthorityHost == "http://[::1]:9" }},
		{"CORS origins are read as browsers send them, each once",
			map[string]string{"CORS_ALLOWED_ORIGINS": " https://App.example.com:443 ,http://localhost:3000,, https://app.example.com"},
			func(c config) bool {
				return slices.Equal(c.CORSAllowedOrigins, []string{"https://app.example.com", "http://localhost:3000"})
			}},
		{"own Swagger UI assets and client", map[string]string{"DOCS_ASSETS_URL": "https://assets.example.com/swagger-ui/", "OPENAPI_CLIENT_ID": testTenant},
			func(c config) bool {
				return c.DocsAssetsURL == "https://assets.example.com/swagger-ui" && c.OpenAPIClientID == testTenant
			}},
		{"https redirect URI makes cookies Secure", map[string]string{"REDIRECT_URI": "https://heroes.example/auth/callback"},
			func(c config) bool { return c.loginOptions().secureCookies() }},
		{"PORT without ADDR listens on every interface", map[string]string{"PORT": "8080"},
			func(c config) bool { return c.Addr == ":8080" }},
		{"ADDR wins over PORT", map[string]string{"PORT": "8080", "ADDR": "127.0.0.1:9000"},
			func(c config) bool { return c.Addr == "127.0.0.1:9000" }},
		{"a federated token file, no secret", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"},
			func(c config) bool {
				return c.ClientAuth == clientAuthFederated && c.loginOptions().FederatedTokenFile == "/var/run/secrets/azure/tokens/azure-identity-token"
			}},
		{"a user-assigned managed identity at IDENTITY_ENDPOINT, no secret",
			map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ASSERTION": "managed-identity", "AZURE_MANAGED_IDENTITY_CLIENT_ID": testTenant,
				"IDENTITY_ENDPOINT": "http://localhost:42356/msi/token", "IDENTITY_HEADER": "h"},
			func(c config) bool {
				return c.ClientAuth == clientAuthManagedIdentity && c.loginOptions().ManagedIdentity ==
					managedIdentityOptions{Endpoint: "http://localhost:42356/msi/token", Header: "h", ClientID: testTenant, Audience: "api://AzureADTokenExchange"}
			}},
		{"a system-assigned managed identity at the instance metadata endpoint",
			map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ASSERTION": "managed-identity"},
			func(c config) bool {
				return c.loginOptions().ManagedIdentity == managedIdentityOptions{Audience: "api://AzureADTokenExchange"}
			}},
		{"IDENTITY_ENDPOINT without IDENTITY_HEADER is fine when unused", map[string]string{"IDENTITY_ENDPOINT": "http://localhost:1/msi/token"},
			func(c config) bool { return c.ClientAuth == clientAuthPost }},
		{"US Government cloud's exchange audience", map[string]string{"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/"},
			func(c config) bool { return c.TokenExchangeAudience == "api://AzureADTokenExchangeUSGov" }},
		{"China cloud's exchange audience", map[string]string{"AZURE_AUTHORITY_HOST": "https://login.chinacloudapi.cn"},
			func(c config) bool { return c.TokenExchangeAudience == "api://AzureADTokenExchangeChina" }},
		{"a tenant's onmicrosoft.com domain (External ID)", map[string]string{"AZURE_TENANT_ID": "Contoso.onmicrosoft.com", "AZURE_AUTHORITY_HOST": "https://contoso.ciamlogin.com/"},
			func(c config) bool {
				return c.TenantID == "contoso.onmicrosoft.com" && c.verifyOptions(nil, nil).discoveryURL() ==
					"https://contoso.ciamlogin.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
			}},
		{"the authority host in lower case", map[string]string{"AZURE_AUTHORITY_HOST": "HTTPS://Login.MicrosoftOnline.US/"},
			func(c config) bool { return c.AuthorityHost == "https://login.microsoftonline.us" }},
		{"no step-up, guests allowed, public Graph by default", nil,
			func(c config) bool {
				return c.StepUpAuthContext == "" && c.AllowGuestUsers && c.GraphBaseURL == "https://graph.microsoft.com" &&
					c.GraphScope == "https://graph.microsoft.com/User.Read" && c.verifyOptions(nil, nil).V1Issuer == "https://sts.windows.net/{tenantid}/"
			}},
		{"step-up, no guests, own Graph scope", map[string]string{"STEP_UP_AUTH_CONTEXT": "C25", "ALLOW_GUEST_USERS": "false",
			"GRAPH_SCOPE": " https://graph.microsoft.com/User.Read   offline_access ", "GRAPH_BASE_URL": "https://dod-graph.microsoft.us/"},
			func(c config) bool {
				return c.StepUpAuthContext == "c25" && !c.AllowGuestUsers && c.GraphBaseURL == "https://dod-graph.microsoft.us" &&
					c.GraphScope == "https://graph.microsoft.com/User.Read offline_access" && c.loginOptions().StepUpAuthContext == "c25"
			}},
		{"exchange audience set", map[string]string{"AZURE_TOKEN_EXCHANGE_AUDIENCE": "api://Custom"},
			func(c config) bool { return c.TokenExchangeAudience == "api://Custom" }},
		{"METRICS_ADDR on a port of its own", map[string]string{"METRICS_ADDR": "127.0.0.1:9090"},
			func(c config) bool { return c.MetricsAddr == "127.0.0.1:9090" }},
		{"METRICS_ADDR and ADDR both on any free port", map[string]string{"ADDR": "127.0.0.1:0", "METRICS_ADDR": "127.0.0.1:0"},
			func(c config) bool { return c.MetricsAddr == "127.0.0.1:0" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(mapGetenv(tc.env))
			if err != nil {
				t.Fatalf("loadConfig = %v; want nil", err)
			}
			if !tc.check(cfg) {
				t.Errorf("loadConfig gave %+v", cfg)
			}
		})
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // every fragment must be in the error
	}{
		{"nothing set names every required setting at once",
			map[string]string{"AZURE_CLIENT_ID": "", "AZURE_CLIENT_SECRET": "", "AZURE_TENANT_ID": "", "API_SCOPE": ""},
			[]string{"AZURE_CLIENT_ID is required", "AZURE_CLIENT_SECRET is required", "AZURE_TENANT_ID is required", "API_SCOPE is required"}},
		{"client id not a GUID", map[string]string{"AZURE_CLIENT_ID": "my-app"}, []string{"AZURE_CLIENT_ID is not a GUID"}},
		{"tenant not a GUID", map[string]string{"AZURE_TENANT_ID": "contoso.com"}, []string{"AZURE_TENANT_ID is not a GUID, a {name}.onmicrosoft.com domain"}},
		{"tenant domain with a path", map[string]string{"AZURE_TENANT_ID": "contoso.onmicrosoft.com/v2.0"}, []string{"AZURE_TENANT_ID is not a GUID"}},
		{"step-up context out of range", map[string]string{"STEP_UP_AUTH_CONTEXT": "c100"}, []string{"STEP_UP_AUTH_CONTEXT is not an authentication context id c1 to c99"}},
		{"step-up context c0", map[string]string{"STEP_UP_AUTH_CONTEXT": "c0"}, []string{"STEP_UP_AUTH_CONTEXT is not"}},
		{"step-up context not an id", map[string]string{"STEP_UP_AUTH_CONTEXT": "mfa"}, []string{"STEP_UP_AUTH_CONTEXT is not"}},
		{"guest setting not a boolean", map[string]string{"ALLOW_GUEST_USERS": "members only"}, []string{"ALLOW_GUEST_USERS is not true or false"}},
		{"plain-http Graph off loopback", map[string]string{"GRAPH_BASE_URL": "http://graph.example"}, []string{"GRAPH_BASE_URL must be an https URL"}},
		{"Graph scope with a quote", map[string]string{"GRAPH_SCOPE": `User.Read"`}, []string{"GRAPH_SCOPE must be"}},
		{"organizations without ALLOWED_TENANTS", map[string]string{"AZURE_TENANT_ID": "organizations"}, []string{"ALLOWED_TENANTS is required"}},
		{"common without ALLOWED_TENANTS", map[string]string{"AZURE_TENANT_ID": "common"}, []string{"ALLOWED_TENANTS is required"}},
		{"consumers refused", map[string]string{"AZURE_TENANT_ID": "consumers"}, []string{"consumers is not supported"}},
		{"ALLOWED_TENANTS with a name", map[string]string{"AZURE_TENANT_ID": "common", "ALLOWED_TENANTS": "contoso"}, []string{`ALLOWED_TENANTS holds "contoso"`}},
		{"bad client auth", map[string]string{"AZURE_CLIENT_AUTH": "jwt"}, []string{"AZURE_CLIENT_AUTH must be"}},
		{"relative redirect URI", map[string]string{"REDIRECT_URI": "/auth/callback"}, []string{"REDIRECT_URI is not an absolute"}},
		{"authority host without scheme", map[string]string{"AZURE_AUTHORITY_HOST": "login.microsoftonline.com"}, []string{"AZURE_AUTHORITY_HOST is not an absolute"}},
		{"plain-http authority host is refused", map[string]string{"AZURE_AUTHORITY_HOST": "http://example.com"}, []string{"AZURE_AUTHORITY_HOST must be an https URL"}},
		{"plain-http authority on a LAN address is refused", map[string]string{"AZURE_AUTHORITY_HOST": "http://10.0.0.5"}, []string{"AZURE_AUTHORITY_HOST must be an https URL"}},
		{"plain-http authority on a localhost look-alike is refused", map[string]string{"AZURE_AUTHORITY_HOST": "http://localhost.evil.example"}, []string{"AZURE_AUTHORITY_HOST must be an https URL"}},
		{"bad durations", map[string]string{"CLOCK_SKEW": "5", "SHUTDOWN_GRACE": "-1s"}, []string{"CLOCK_SKEW is not a duration", "SHUTDOWN_GRACE must be between"}},
		{"HEROES_MAX_BYTES not a number", map[string]string{"HEROES_MAX_BYTES": "64MiB"}, []string{"HEROES_MAX_BYTES is not a whole number of bytes from 1048576 to 268435456"}},
		{"HEROES_MAX_BYTES too small", map[string]string{"HEROES_MAX_BYTES": "1048575"}, []string{"HEROES_MAX_BYTES is not a whole number"}},
		{"HEROES_MAX_BYTES too large", map[string]string{"HEROES_MAX_BYTES": "268435457"}, []string{"HEROES_MAX_BYTES is not a whole number"}},
		{"TOKEN_CACHE_SIZE not a number", map[string]string{"TOKEN_CACHE_SIZE": "100k"}, []string{"TOKEN_CACHE_SIZE is not a whole number"}},
		{"TOKEN_CACHE_SIZE too small", map[string]string{"TOKEN_CACHE_SIZE": "1"}, []string{"TOKEN_CACHE_SIZE is not a whole number"}},
		{"TOKEN_CACHE_SIZE too large", map[string]string{"TOKEN_CACHE_SIZE": "10000001"}, []string{"TOKEN_CACHE_SIZE is not a whole number"}},
		{"bad booleans", map[string]string{"ACCEPT_V1_TOKENS": "maybe", "AZURE_CUSTOM_SIGNING_KEYS": "yes please"}, []string{"ACCEPT_V1_TOKENS", "AZURE_CUSTOM_SIGNING_KEYS"}},
		{"short SESSION_KEY", map[string]string{"SESSION_KEY": "c2hvcnQ="}, []string{"SESSION_KEY is not 32 bytes"}},
		{"file store without file", map[string]string{"HEROES_STORE": "file"}, []string{"HEROES_FILE is required"}},
		{"file store in a missing folder", map[string]string{"HEROES_FILE": "/no-such-folder-here/heroes.json"}, []string{"HEROES_FILE is in /no-such-folder-here, which is not an existing folder"}},
		{"table store without connection string", map[string]string{"HEROES_STORE": "azuretable"}, []string{"AZURE_STORAGE_CONNECTION_STRING is required"}},
		{"bad table name", map[string]string{"HEROES_STORE": "azuretable", "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "HEROES_TABLE": "h-1"}, []string{"HEROES_TABLE must be"}},
		{"unknown store", map[string]string{"HEROES_STORE": "postgres"}, []string{"HEROES_STORE must be"}},
		{"bad log settings", map[string]string{"LOG_FORMAT": "xml", "LOG_LEVEL": "loud"}, []string{"LOG_FORMAT must be", "LOG_LEVEL must be"}},
		{"bad ADDR", map[string]string{"ADDR": "8000"}, []string{"ADDR is not host:port"}},
		{"PORT not a number", map[string]string{"PORT": "http"}, []string{"PORT is not a port number"}},
		{"PORT out of range", map[string]string{"PORT": "70000"}, []string{"PORT is not a port number"}},
		{"PORT 0", map[string]string{"PORT": "0"}, []string{"PORT is not a port number"}},
		{"PORT with a sign", map[string]string{"PORT": "+80"}, []string{"PORT is not a port number"}},
		{"secret and certificate", map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": "/c.pem"},
			[]string{"AZURE_CLIENT_SECRET and AZURE_CLIENT_CERTIFICATE_PATH are set: configure exactly one client credential"}},
		{"secret and federated token file", map[string]string{"AZURE_FEDERATED_TOKEN_FILE": "/t"},
			[]string{"AZURE_CLIENT_SECRET and AZURE_FEDERATED_TOKEN_FILE are set"}},
		{"secret and managed identity", map[string]string{"AZURE_CLIENT_ASSERTION": "managed-identity"},
			[]string{"AZURE_CLIENT_SECRET and AZURE_CLIENT_ASSERTION=managed-identity are set"}},
		{"federated token file and managed identity", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_CLIENT_ASSERTION": "managed-identity"},
			[]string{"AZURE_FEDERATED_TOKEN_FILE and AZURE_CLIENT_ASSERTION=managed-identity are set"}},
		{"certificate and federated token file", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_CERTIFICATE_PATH": "/c.pem", "AZURE_FEDERATED_TOKEN_FILE": "/t"},
			[]string{"AZURE_CLIENT_CERTIFICATE_PATH and AZURE_FEDERATED_TOKEN_FILE are set"}},
		{"unknown client assertion", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ASSERTION": "file"},
			[]string{"AZURE_CLIENT_ASSERTION must be managed-identity"}},
		{"managed identity client id not a GUID", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ASSERTION": "managed-identity", "AZURE_MANAGED_IDENTITY_CLIENT_ID": "heroes-id"},
			[]string{"AZURE_MANAGED_IDENTITY_CLIENT_ID is not a GUID"}},
		{"managed identity client id without the managed identity", map[string]string{"AZURE_MANAGED_IDENTITY_CLIENT_ID": testTenant},
			[]string{"AZURE_MANAGED_IDENTITY_CLIENT_ID is set but AZURE_CLIENT_ASSERTION is not managed-identity"}},
		{"identity endpoint without its header", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ASSERTION": "managed-identity", "IDENTITY_ENDPOINT": "http://localhost:1/msi/token"},
			[]string{"IDENTITY_HEADER is required with IDENTITY_ENDPOINT"}},
		{"identity endpoint not a URL", map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ASSERTION": "managed-identity", "IDENTITY_ENDPOINT": "localhost:1", "IDENTITY_HEADER": "h"},
			[]string{"IDENTITY_ENDPOINT is not an absolute"}},
		{"CORS wildcard", map[string]string{"CORS_ALLOWED_ORIGINS": "*"}, []string{`CORS_ALLOWED_ORIGINS: "*" is not allowed`}},
		{"CORS origin with a path", map[string]string{"CORS_ALLOWED_ORIGINS": "https://ok.example, https://app.example.com/"},
			[]string{`CORS_ALLOWED_ORIGINS: "https://app.example.com/" is not an origin`}},
		{"plain-http assets off loopback", map[string]string{"DOCS_ASSETS_URL": "http://cdn.example.com/swagger"}, []string{"DOCS_ASSETS_URL must be an https URL"}},
		{"OPENAPI_CLIENT_ID not a GUID", map[string]string{"OPENAPI_CLIENT_ID": "swagger"}, []string{"OPENAPI_CLIENT_ID is not a GUID"}},
		{"READYZ_CACHE not a duration", map[string]string{"READYZ_CACHE": "5"}, []string{"READYZ_CACHE is not a duration"}},
		{"AUTH_REFRESH_ENABLED not a boolean", map[string]string{"AUTH_REFRESH_ENABLED": "off"}, []string{"AUTH_REFRESH_ENABLED is not true or false"}},
		{"READYZ_CACHE over a minute", map[string]string{"READYZ_CACHE": "2m"}, []string{"READYZ_CACHE must be between 0 and 1m0s"}},
		{"bad METRICS_ADDR", map[string]string{"METRICS_ADDR": "9090"}, []string{"METRICS_ADDR is not host:port"}},
		{"METRICS_ADDR on the API's listener", map[string]string{"ADDR": "localhost:8000", "METRICS_ADDR": "localhost:8000"}, []string{"METRICS_ADDR must differ from ADDR"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(mapGetenv(tc.env))
			if !errors.Is(err, errConfig) {
				t.Fatalf("loadConfig = %v; want errConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("loadConfig error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestLoadConfigNamesTheWaysToStart: a start without the identity settings
// says how to try the service locally (-dev) and where the settings go
// (.env_oauth); other errors do not repeat it.
func TestLoadConfigNamesTheWaysToStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		hint bool
	}{
		{"nothing set", map[string]string{"AZURE_CLIENT_ID": "", "AZURE_CLIENT_SECRET": "", "AZURE_TENANT_ID": "", "API_SCOPE": ""}, true},
		{"no API_SCOPE", map[string]string{"API_SCOPE": ""}, true},
		{"a bad log level only", map[string]string{"LOG_LEVEL": "loud"}, false},
	} {
		_, err := loadConfig(mapGetenv(tc.env))
		if err == nil {
			t.Fatalf("%s: loadConfig = nil; want an error", tc.name)
		}
		got := strings.Contains(err.Error(), "start it with -dev") && strings.Contains(err.Error(), ".env_oauth")
		if got != tc.hint {
			t.Errorf("%s: error names -dev and .env_oauth = %v; want %v:\n%v", tc.name, got, tc.hint, err)
		}
	}
}

// TestConfigWarnings: settings that start but are likely mistakes each get
// one warning naming the setting; good settings get none.
func TestConfigWarnings(t *testing.T) {
	const zero = "00000000-0000-0000-0000-000000000000"
	tests := []struct {
		name string
		env  map[string]string
		want []string // a fragment of each warning, in order
	}{
		{"good settings", nil, nil},
		{"several good scope forms", map[string]string{"API_SCOPE": "api://x/Heroes.Read " + testClientID + "/Admin https://contoso.example/api/Heroes.Read openid offline_access"}, nil},
		{"a proxy's prefix before /auth/callback", map[string]string{"REDIRECT_URI": "https://heroes.example/team/auth/callback"}, nil},
		{"README placeholders", map[string]string{"AZURE_CLIENT_ID": zero, "AZURE_TENANT_ID": zero, "API_SCOPE": "api://" + zero + "/Heroes.Read"},
			[]string{"AZURE_CLIENT_ID is the README's placeholder", "AZURE_TENANT_ID is the README's placeholder",
				"OPENAPI_CLIENT_ID is the README's placeholder", `API_SCOPE entry "api://` + zero + `/Heroes.Read" holds the README's placeholder`}},
		{"a bare scope name", map[string]string{"API_SCOPE": "Heroes.Read"},
			[]string{`API_SCOPE entry "Heroes.Read" names no App ID URI`}},
		{"a redirect URI off /auth/callback", map[string]string{"REDIRECT_URI": "http://localhost:8000/callback"},
			[]string{`REDIRECT_URI's path is "/callback"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(mapGetenv(tc.env))
			if err != nil {
				t.Fatalf("loadConfig = %v; want a config that starts", err)
			}
			got := cfg.warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings = %q; want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q; want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestLoadConfigNeverPrintsSecrets: the error names bad settings but never
// holds a secret's value, even a malformed one.
func TestLoadConfigNeverPrintsSecrets(t *testing.T) {
	secret := "s3cr3t-VALUE-never-printed"
	_, err := loadConfig(mapGetenv(map[string]string{
		"AZURE_CLIENT_SECRET":              secret,
		"AZURE_CLIENT_ID":                  secret,
		"SESSION_KEY":                      secret,
		"AZURE_STORAGE_CONNECTION_STRING":  secret,
		"HEROES_STORE":                     "azuretable",
		"HEROES_TABLE":                     secret,
		"AZURE_CLIENT_AUTH":                secret,
		"IDENTITY_HEADER":                  secret,
		"IDENTITY_ENDPOINT":                secret,
		"AZURE_CLIENT_ASSERTION":           secret,
		"AZURE_MANAGED_IDENTITY_CLIENT_ID": secret,
		"PORT":                             secret,
	}))
	if err == nil {
		t.Fatal("loadConfig = nil; want an error")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("loadConfig error %q holds the secret", err)
	}
}

func TestParseDotEnv(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"plain, comments, blank lines", "# settings\n\nA=1\nB = two \n", map[string]string{"A": "1", "B": "two"}, false},
		{"quotes are removed and keep # and spaces", "A=\"x # y\"\nB='z w'\n", map[string]string{"A": "x # y", "B": "z w"}, false},
		{"inline comment after an unquoted value", "A=1 # one\n", map[string]string{"A": "1"}, false},
		{"export prefix and CRLF", "export A=1\r\nB=2\r\n", map[string]string{"A": "1", "B": "2"}, false},
		{"value with = inside", "API_SCOPE=api://x/Heroes.Read?a=b\n", map[string]string{"API_SCOPE": "api://x/Heroes.Read?a=b"}, false},
		{"empty value", "A=\n", map[string]string{"A": ""}, false},
		{"comment after an empty value", "A=   # none yet\n", map[string]string{"A": ""}, false},
		{"quoted value may start with #", "A=\"#x\"\n", map[string]string{"A": "#x"}, false},
		{"no equals sign", "JUSTTEXT\n", nil, true},
		{"bad key", "1A=2\n", nil, true},
		{"unclosed quote", "A=\"open\n", nil, true},
		{"too large", strings.Repeat("A=1\n", maxDotEnvSize), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDotEnv([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseDotEnv(%q) error = %v; want error %v", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && !maps.Equal(got, tc.want) {
				t.Errorf("parseDotEnv(%q) = %v; want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestParseDotEnvErrorHidesValues: a bad line is named by number only.
func TestParseDotEnvErrorHidesValues(t *testing.T) {
	_, err := parseDotEnv([]byte("AZURE_CLIENT_SECRET=\"abc-secret\n"))
	if err == nil || strings.Contains(err.Error(), "abc-secret") {
		t.Errorf("parseDotEnv error = %v; want an error without the value", err)
	}
}

func TestWithFallbackEnvironmentWins(t *testing.T) {
	getenv := withFallback(func(k string) string {
		return map[string]string{"A": "env"}[k]
	}, map[string]string{"A": "file", "B": "file"})
	if got := getenv("A"); got != "env" {
		t.Errorf(`getenv("A") = %q; want "env"`, got)
	}
	if got := getenv("B"); got != "file" {
		t.Errorf(`getenv("B") = %q; want "file"`, got)
	}
}

func FuzzParseDotEnv(f *testing.F) {
	for _, s := range []string{"A=1\n", "# c\nB='x'\n", "export C=\"y # z\"", "D", "=", "A=\"", "\xff=1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := parseDotEnv(data)
		if err != nil {
			return
		}
		for k := range vars {
			if !envKeyPattern.MatchString(k) {
				t.Errorf("parseDotEnv accepted key %q", k)
			}
		}
	})
}

// TestLoadConfigChecksTheClientCertificate: a client certificate that
// cannot be used is one of loadConfig's problems, reported with the others
// and naming AZURE_CLIENT_CERTIFICATE_PATH: a missing file, a file that is
// no PEM, a PEM without the key, a key of another certificate.
func TestLoadConfigChecksTheClientCertificate(t *testing.T) {
	t.Parallel()
	key, other := testKeys()[1], testKeys()[0]
	cert := &pem.Block{Type: "CERTIFICATE", Bytes: testCertificate(t, key, time.Now().AddDate(1, 0, 0)).Raw}
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "cert.txt")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	tests := []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "absent.pem"), "no such file"},
		{"not PEM", notPEM, "no CERTIFICATE block"},
		{"no private key", writePEM(t, cert), "no RSA private key"},
		{"key of another certificate", writePEM(t, cert, pkcs8Block(t, other)), "does not match the certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(mapGetenv(map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_CERTIFICATE_PATH": tc.path, "LOG_LEVEL": "loud"}))
			if err == nil {
				t.Fatal("loadConfig = nil; want an error")
			}
			for _, want := range []string{"AZURE_CLIENT_CERTIFICATE_PATH: client certificate", tc.want, "LOG_LEVEL must be"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("loadConfig error %q does not say %q", err, want)
				}
			}
		})
	}
	if _, err := loadConfig(mapGetenv(map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_CERTIFICATE_PATH": writePEM(t, cert, pkcs8Block(t, key))})); err != nil {
		t.Errorf("loadConfig with a good certificate = %v; want nil", err)
	}
}

// TestLoadConfigReportsABadClientIDOnce: OPENAPI_CLIENT_ID defaults to
// AZURE_CLIENT_ID, so a bad client id is one problem, not two; a bad
// OPENAPI_CLIENT_ID of its own is still reported.
func TestLoadConfigReportsABadClientIDOnce(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(mapGetenv(map[string]string{"AZURE_CLIENT_ID": "my-app"}))
	if err == nil || !strings.Contains(err.Error(), "AZURE_CLIENT_ID is not a GUID") || strings.Contains(err.Error(), "OPENAPI_CLIENT_ID") {
		t.Errorf("loadConfig = %v; want AZURE_CLIENT_ID is not a GUID, and nothing about OPENAPI_CLIENT_ID", err)
	}
	_, err = loadConfig(mapGetenv(map[string]string{"AZURE_CLIENT_ID": "my-app", "OPENAPI_CLIENT_ID": "swagger"}))
	if err == nil || !strings.Contains(err.Error(), "OPENAPI_CLIENT_ID is not a GUID") {
		t.Errorf("loadConfig = %v; want OPENAPI_CLIENT_ID is not a GUID too", err)
	}
}
