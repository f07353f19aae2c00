package main

import (
	"errors"
	"maps"
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
		{"METRICS_ADDR is off", cfg.MetricsAddr, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadConfigValid(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(config) bool
	}{
		{"HEROES_FILE alone selects the file store", map[string]string{"HEROES_FILE": "/tmp/h.json"},
			func(c config) bool { return c.HeroesStore == "file" }},
		{"a certificate path selects certificate auth, no secret needed",
			map[string]string{"AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_CERTIFICATE_PATH": "/tmp/c.pem"},
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
		{"https redirect URI makes cookies Secure", map[string]string{"REDIRECT_URI": "https://heroes.example/auth/callback"},
			func(c config) bool { return c.loginOptions().secureCookies() }},
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
		{"tenant not a GUID", map[string]string{"AZURE_TENANT_ID": "contoso.onmicrosoft.com"}, []string{"AZURE_TENANT_ID is not a GUID"}},
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
		{"bad booleans", map[string]string{"ACCEPT_V1_TOKENS": "maybe", "AZURE_CUSTOM_SIGNING_KEYS": "yes please"}, []string{"ACCEPT_V1_TOKENS", "AZURE_CUSTOM_SIGNING_KEYS"}},
		{"short SESSION_KEY", map[string]string{"SESSION_KEY": "c2hvcnQ="}, []string{"SESSION_KEY is not 32 bytes"}},
		{"file store without file", map[string]string{"HEROES_STORE": "file"}, []string{"HEROES_FILE is required"}},
		{"table store without connection string", map[string]string{"HEROES_STORE": "azuretable"}, []string{"AZURE_STORAGE_CONNECTION_STRING is required"}},
		{"bad table name", map[string]string{"HEROES_STORE": "azuretable", "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true", "HEROES_TABLE": "h-1"}, []string{"HEROES_TABLE must be"}},
		{"unknown store", map[string]string{"HEROES_STORE": "postgres"}, []string{"HEROES_STORE must be"}},
		{"bad log settings", map[string]string{"LOG_FORMAT": "xml", "LOG_LEVEL": "loud"}, []string{"LOG_FORMAT must be", "LOG_LEVEL must be"}},
		{"bad ADDR", map[string]string{"ADDR": "8000"}, []string{"ADDR is not host:port"}},
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

// TestLoadConfigNeverPrintsSecrets: the error names bad settings but never
// holds a secret's value, even a malformed one.
func TestLoadConfigNeverPrintsSecrets(t *testing.T) {
	secret := "s3cr3t-VALUE-never-printed"
	_, err := loadConfig(mapGetenv(map[string]string{
		"AZURE_CLIENT_SECRET":             secret,
		"AZURE_CLIENT_ID":                 secret,
		"SESSION_KEY":                     secret,
		"AZURE_STORAGE_CONNECTION_STRING": secret,
		"HEROES_STORE":                    "azuretable",
		"HEROES_TABLE":                    secret,
		"AZURE_CLIENT_AUTH":               secret,
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
