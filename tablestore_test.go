package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// envAzurite names the variable holding the address of a running Azurite
// Table service (http://127.0.0.1:PORT), as `.ci/azurite start` prints it.
// The tests against the real engine skip when it is unset.
const envAzurite = "AZURITE_TABLE_URL"

// maxHeroPropertyBytes is the Table service's limit on a String property:
// 64 KiB of UTF-16. It is maxHeroJSONBytes, which encodeHero applies to
// every store, so a hero whose JSON is larger is refused with
// errHeroTooLarge before any request is sent.
const maxHeroPropertyBytes = maxHeroJSONBytes

// fixedNow is the clock of the fake-service tests.
func fixedNow() time.Time { return time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC) }

// TestSignSharedKeyLite checks the Authorization value against vectors
// computed outside Go from the rules of "Authorize with Shared Key"
// (StringToSign = Date + "\n" + CanonicalizedResource, HMAC-SHA256 with the
// decoded key, base64), with: openssl dgst -sha256 -mac HMAC -macopt hexkey:…
func TestSignSharedKeyLite(t *testing.T) {
	tests := []struct {
		name     string
		account  string
		keyB64   string
		date     string
		resource string
		want     string
	}{
		{
			name:    "emulator account appears twice in the resource",
			account: devStorageAccount, keyB64: devStorageKey,
			date:     "Mon, 30 Nov 2026 10:00:00 GMT",
			resource: "/devstoreaccount1/devstoreaccount1/Tables",
			want:     "SharedKeyLite devstoreaccount1:dUNKmDZLdbrtKgKC4PtLrJEYXwV9ePy4LK/f1oRUV/w=",
		},
		{
			name:    "entity path is signed in its encoded form",
			account: "myaccount", keyB64: "c2VjcmV0LWtleS1mb3ItdGVzdHM=", // "secret-key-for-tests"
			date:     "Sun, 29 Nov 2026 23:59:59 GMT",
			resource: "/myaccount/heroes(PartitionKey=%27heroes%27,RowKey=%27o%27%27brien%27)",
			want:     "SharedKeyLite myaccount:X3rqR9YIlMJxb/lOIzSKM3NgFKUcsaGo+Qk7QKRb/cE=",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := base64.StdEncoding.DecodeString(tc.keyB64)
			if err != nil {
				t.Fatal(err)
			}
			if got := signSharedKeyLite(tc.account, key, tc.date, tc.resource); got != tc.want {
				t.Errorf("signSharedKeyLite(%q, %q) = %q; want %q", tc.date, tc.resource, got, tc.want)
			}
		})
	}
}

// TestCanonicalizedResource checks the resource rules: account, then the
// encoded path, then only the comp parameter of the query.
func TestCanonicalizedResource(t *testing.T) {
	tests := []struct {
		name    string
		account string
		url     string
		want    string
	}{
		{"emulator path-style account appears twice", "devstoreaccount1",
			"http://127.0.0.1:10002/devstoreaccount1/Tables", "/devstoreaccount1/devstoreaccount1/Tables"},
		{"service host-style account appears once", "myaccount",
			"https://myaccount.table.core.windows.net/Tables", "/myaccount/Tables"},
		{"query parameters other than comp are left out", "myaccount",
			"https://myaccount.table.core.windows.net/heroes()?$filter=RowKey%20gt%20%27a%27&$top=5&NextRowKey=x", "/myaccount/heroes()"},
		{"comp is kept", "myaccount",
			"https://myaccount.table.core.windows.net/heroes?comp=acl", "/myaccount/heroes?comp=acl"},
		{"encoded key stays encoded", "myaccount",
			"https://myaccount.table.core.windows.net/heroes(PartitionKey=%27heroes%27,RowKey=%27a%20b%27)",
			"/myaccount/heroes(PartitionKey=%27heroes%27,RowKey=%27a%20b%27)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := canonicalizedResource(tc.account, u); got != tc.want {
				t.Errorf("canonicalizedResource(%q) = %q; want %q", tc.url, got, tc.want)
			}
		})
	}
}

// testAccountKey is a made-up account key (base64 of 18 bytes).
const testAccountKey = "dGVzdC1hY2NvdW50LWtleS0x"

// TestParseConnectionString checks the keys understood, the defaults, the
// emulator shortcut, and that no error repeats a value.
func TestParseConnectionString(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		wantAccount  string
		wantEndpoint string
		wantErr      string // substring of the error; "" for success
	}{
		{"portal string builds the endpoint from protocol, account and suffix",
			"DefaultEndpointsProtocol=https;AccountName=heroesprod;AccountKey=" + testAccountKey + ";EndpointSuffix=core.windows.net",
			"heroesprod", "https://heroesprod.table.core.windows.net", ""},
		{"protocol and suffix have defaults",
			"AccountName=heroesprod;AccountKey=" + testAccountKey,
			"heroesprod", "https://heroesprod.table.core.windows.net", ""},
		{"sovereign cloud suffix",
			"AccountName=heroesprod;AccountKey=" + testAccountKey + ";EndpointSuffix=core.chinacloudapi.cn",
			"heroesprod", "https://heroesprod.table.core.chinacloudapi.cn", ""},
		{"table endpoint wins and loses its trailing slash (Cosmos DB for Table)",
			"DefaultEndpointsProtocol=https;AccountName=heroes-cosmos;AccountKey=" + testAccountKey + ";TableEndpoint=https://heroes-cosmos.table.cosmos.azure.com:443/;",
			"heroes-cosmos", "https://heroes-cosmos.table.cosmos.azure.com:443", ""},
		{"azurite string with path-style endpoint",
			"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + devStorageKey + ";TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
			"devstoreaccount1", "http://127.0.0.1:10002/devstoreaccount1", ""},
		{"UseDevelopmentStorage selects the emulator's account",
			"UseDevelopmentStorage=true", "devstoreaccount1", "http://127.0.0.1:10002/devstoreaccount1", ""},
		{"keys are case-insensitive and spaces around parts are ignored",
			" accountname = heroesprod ; ACCOUNTKEY=" + testAccountKey + " ;",
			"heroesprod", "https://heroesprod.table.core.windows.net", ""},
		{"other services' endpoints are ignored",
			"AccountName=heroesprod;AccountKey=" + testAccountKey + ";BlobEndpoint=https://x.blob.core.windows.net/",
			"heroesprod", "https://heroesprod.table.core.windows.net", ""},
		{"no AccountKey: the store authorizes with Entra tokens",
			"AccountName=heroesprod", "heroesprod", "https://heroesprod.table.core.windows.net", ""},
		{"no AccountKey with a table endpoint",
			"DefaultEndpointsProtocol=https;AccountName=heroesprod;TableEndpoint=https://heroesprod.table.core.windows.net/",
			"heroesprod", "https://heroesprod.table.core.windows.net", ""},

		{"empty string", "", "", "", "AccountName"},
		{"empty key", "AccountName=heroesprod;AccountKey=", "", "", "AccountKey"},
		{"key not base64", "AccountName=heroesprod;AccountKey=not*base64", "", "", "AccountKey"},
		{"uppercase account name", "AccountName=HeroesProd;AccountKey=" + testAccountKey, "", "", "AccountName"},
		{"unknown protocol", "DefaultEndpointsProtocol=ftp;AccountName=heroesprod;AccountKey=" + testAccountKey, "", "", "DefaultEndpointsProtocol"},
		{"table endpoint not a URL", "AccountName=heroesprod;AccountKey=" + testAccountKey + ";TableEndpoint=heroes.example", "", "", "TableEndpoint"},
		{"table endpoint with a query", "AccountName=heroesprod;AccountKey=" + testAccountKey + ";TableEndpoint=https://h.example/?sig=x", "", "", "TableEndpoint"},
		{"table endpoint with user info", "AccountName=heroesprod;AccountKey=" + testAccountKey + ";TableEndpoint=https://u:p@h.example/", "", "", "TableEndpoint"},
		{"bad suffix", "AccountName=heroesprod;AccountKey=" + testAccountKey + ";EndpointSuffix=a/b", "", "", "EndpointSuffix"},
		{"shared access signature is not supported", "TableEndpoint=https://h.example;SharedAccessSignature=sv=2019&sig=abc", "", "", "SharedAccessSignature is not supported"},
		{"unknown key is refused without repeating it", "AccountName=heroesprod;AccountKye=" + testAccountKey, "", "", "a key is not one of"},
		{"key split by a stray ; is refused without repeating it", "AccountName=heroesprod;AccountKey=dGVzdC1h;Y2NvdW50LWtleS0x==", "", "", "a key is not one of"},
		{"part without =", "AccountName=heroesprod;" + testAccountKey, "", "", "not Key=Value"},
		{"duplicate key", "AccountName=a1b;AccountName=c2d;AccountKey=" + testAccountKey, "", "", "twice"},
		{"UseDevelopmentStorage=false", "UseDevelopmentStorage=false", "", "", "UseDevelopmentStorage"},
		{"UseDevelopmentStorage mixed with an account", "UseDevelopmentStorage=true;AccountName=heroesprod", "", "", "UseDevelopmentStorage"},
		{"oversized string", "AccountName=heroesprod;AccountKey=" + strings.Repeat("A", 8<<10), "", "", "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConnectionString(tc.in)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, errConnectionString) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConnectionString(%q) = %v; want an errConnectionString naming %q", tc.in, err, tc.wantErr)
				}
				for _, secret := range []string{testAccountKey, devStorageKey, "sig=abc", "u:p", "AccountKye", "accountkye", "Y2NvdW50", "y2nvdw50", "dGVzdC1h"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("parseConnectionString error %q repeats a secret value", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConnectionString(%q) = %v; want nil", tc.in, err)
			}
			wantKey := strings.Contains(strings.ToLower(tc.in), "accountkey=") || strings.HasPrefix(tc.in, "UseDevelopmentStorage")
			if got.name != tc.wantAccount || got.endpoint.String() != tc.wantEndpoint || (len(got.key) > 0) != wantKey {
				t.Errorf("parseConnectionString(%q) = %s (key %d bytes); want account %s at %s", tc.in, got, len(got.key), tc.wantAccount, tc.wantEndpoint)
			}
			for _, shown := range []string{got.String(), fmt.Sprint(got), fmt.Sprintf("%+v %#v", got, got), slogText(got)} {
				if strings.Contains(shown, testAccountKey) || strings.Contains(shown, devStorageKey) || (len(got.key) > 0 && strings.Contains(shown, string(got.key))) {
					t.Errorf("storageAccount shows its key: %q", shown)
				}
			}
		})
	}
}

// slogText renders v the way a text logger would.
func slogText(v any) string {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "v", v)
	return b.String()
}

// Example_parseConnectionString shows the emulator shortcut.
func Example_parseConnectionString() {
	a, err := parseConnectionString("UseDevelopmentStorage=true")
	fmt.Println(a, err)
	// Output: account devstoreaccount1 at http://127.0.0.1:10002/devstoreaccount1 <nil>
}

// FuzzParseConnectionString checks parseConnectionString never panics, that
// what it accepts is usable (account name, a key when AccountKey is given,
// absolute http(s) endpoint without query), and that its errors never
// repeat the AccountKey value.
func FuzzParseConnectionString(f *testing.F) {
	for _, s := range []string{
		"UseDevelopmentStorage=true",
		"DefaultEndpointsProtocol=https;AccountName=a1b2;AccountKey=" + testAccountKey + ";EndpointSuffix=core.windows.net",
		"AccountName=devstoreaccount1;AccountKey=" + devStorageKey + ";TableEndpoint=http://127.0.0.1:10002/devstoreaccount1",
		"AccountName=x;AccountKey=;;;=;",
		"TableEndpoint=https://h:99999/%zz;AccountKey==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseConnectionString(s)
		if err != nil {
			// No value, and no key other than a known one, may appear.
			// The message's own words (known key names) are taken out first.
			msg := strings.ToLower(strings.TrimPrefix(err.Error(), errConnectionString.Error()))
			for k := range knownConnectionKeys {
				msg = strings.ReplaceAll(msg, k, "")
			}
			msg = strings.ReplaceAll(msg, "sharedaccesssignature", "")
			for _, part := range strings.Split(s, ";") {
				k, v, _ := strings.Cut(part, "=")
				k, v = strings.ToLower(strings.TrimSpace(k)), strings.ToLower(strings.TrimSpace(v))
				if len(v) >= 16 && strings.Contains(msg, v) {
					t.Fatalf("error %q repeats a value", err)
				}
				if len(k) >= 8 && !knownConnectionKeys[k] && k != "sharedaccesssignature" && strings.Contains(msg, k) {
					t.Fatalf("error %q repeats an unknown key", err)
				}
			}
			return
		}
		if a.name == "" || (len(a.key) == 0 && strings.Contains(strings.ToLower(s), "accountkey")) || a.endpoint == nil || a.endpoint.Host == "" ||
			(a.endpoint.Scheme != "http" && a.endpoint.Scheme != "https") || a.endpoint.RawQuery != "" {
			t.Fatalf("parseConnectionString(%q) = %#v; accepted something unusable", s, a)
		}
	})
}

// fakeTable is a fake Table service for one account on an httptest.Server.
// It checks what every request must carry (x-ms-version, Accept, x-ms-date,
// a valid SharedKeyLite signature, JSON bodies), answers Create Table with
// 409 TableAlreadyExists, counts entity writes, and passes the rest to
// handle. Safe for concurrent use.
type fakeTable struct {
	tb     testing.TB
	acct   storageAccount
	srv    *httptest.Server
	writes atomic.Int64 // POST/PUT/DELETE of entities
	// bearer, when set, is the Entra token every request must carry
	// ("Authorization: Bearer …") in place of a SharedKeyLite signature.
	// Set it before the first request.
	bearer string

	mu     sync.Mutex // guards handle
	handle http.HandlerFunc
}

// newFakeTable starts a fake Table service whose entity requests handle
// answers, and returns it with a store on its "heroes" table.
func newFakeTable(tb testing.TB, handle http.HandlerFunc) (*fakeTable, *tableStore) {
	tb.Helper()
	f := &fakeTable{tb: tb, handle: handle}
	f.srv = httptest.NewServer(f)
	tb.Cleanup(f.srv.Close)
	u, err := url.Parse(f.srv.URL + "/fakeacct")
	if err != nil {
		tb.Fatal(err)
	}
	f.acct = storageAccount{name: "fakeacct", key: []byte("fake-table-key"), endpoint: u}
	// The server's own client, not http.DefaultTransport: another test's
	// httptest.Server.Close closes the default transport's idle connections
	// and could cut a request of this one ("CloseIdleConnections called").
	client := f.srv.Client()
	client.Timeout = 2 * time.Second
	return f, newTableStore(f.acct, "heroes", client, discardLogger(), fixedNow)
}

func (f *fakeTable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	problem := func(format string, args ...any) {
		f.tb.Errorf("fake table: %s %s: "+format, append([]any{r.Method, r.URL}, args...)...)
		http.Error(w, "bad request", http.StatusBadRequest)
	}
	want := signSharedKeyLite(f.acct.name, f.acct.key, r.Header.Get("x-ms-date"), canonicalizedResource(f.acct.name, r.URL))
	if f.bearer != "" {
		want = "Bearer " + f.bearer
	}
	switch {
	case r.Header.Get("x-ms-version") != tableAPIVersion:
		problem("x-ms-version = %q", r.Header.Get("x-ms-version"))
		return
	case r.Header.Get("Accept") != "application/json;odata=nometadata":
		problem("Accept = %q", r.Header.Get("Accept"))
		return
	case r.Header.Get("x-ms-date") != "Mon, 30 Nov 2026 10:00:00 GMT":
		problem("x-ms-date = %q", r.Header.Get("x-ms-date"))
		return
	case r.Header.Get("Authorization") != want:
		problem("Authorization = %q; want %q", r.Header.Get("Authorization"), want)
		return
	case r.ContentLength > 0 && r.Header.Get("Content-Type") != "application/json":
		problem("Content-Type = %q", r.Header.Get("Content-Type"))
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/fakeacct/Tables" {
		tableFail(w, http.StatusConflict, "TableAlreadyExists")
		return
	}
	if r.Method != http.MethodGet {
		f.writes.Add(1)
	}
	f.mu.Lock()
	h := f.handle
	f.mu.Unlock()
	h(w, r)
}

// tableFail writes an error answer shaped like the Table service's, with a
// message text the store must not pass on.
func tableFail(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json;odata=nometadata;streaming=true;charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"odata.error":{"code":%q,"message":{"lang":"en-US","value":"SERVICE-MESSAGE-TEXT RequestId:1"}}}`, code)
}

// tableJSON writes a 200 JSON answer with an ETag.
func tableJSON(w http.ResponseWriter, etag string, v any) {
	w.Header().Set("Content-Type", "application/json;odata=nometadata;streaming=true;charset=utf-8")
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	json.NewEncoder(w).Encode(v)
}

// TestTableStoreBearerToken: without an account key every request carries
// "Authorization: Bearer <token>" from the token source, asked anew for
// each request (it caches), with the pinned x-ms-version (2017-11-09 or
// later is what Entra authorization needs); a token that cannot be had
// makes the store unavailable and sends nothing.
func TestTableStoreBearerToken(t *testing.T) {
	if tableAPIVersion < "2017-11-09" {
		t.Fatalf("tableAPIVersion %s is older than 2017-11-09, which Entra authorization needs", tableAPIVersion)
	}
	ctx := context.Background()
	h := testHero("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "Gandalf")
	f, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `W/"datetime'2026-11-30T10%3A00%3A00.0000000Z'"`)
		w.WriteHeader(http.StatusNoContent)
	})
	f.bearer = "storage-token-1"
	s.acct.key = nil
	var asked atomic.Int64
	var fail atomic.Bool
	s.token = func(ctx context.Context) (string, error) {
		asked.Add(1)
		if fail.Load() {
			return "", errors.New("managed identity endpoint: status 500")
		}
		return "storage-token-1", nil
	}
	if _, err := s.Create(ctx, h); err != nil {
		t.Fatalf("Create() with a bearer token = %v", err)
	}
	if err := s.Delete(ctx, h.ID, ""); err != nil {
		t.Fatalf("Delete() with a bearer token = %v", err)
	}
	if n := asked.Load(); n != 3 { // create table, create hero, delete hero
		t.Errorf("the token source was asked %d times for 3 requests; want 3", n)
	}
	fail.Store(true)
	before := f.writes.Load()
	if _, err := s.Replace(ctx, h, ""); !errors.Is(err, errStoreUnavailable) || !strings.Contains(err.Error(), "Entra token") {
		t.Errorf("Replace() without a token = %v; want errStoreUnavailable naming the Entra token", err)
	}
	if f.writes.Load() != before {
		t.Errorf("a request was sent without a token")
	}
}

// TestOpenTableStoreWithoutAccountKey: a connection string without
// AccountKey needs a token source and an https endpoint; a token the
// service refuses at start-up (a role assignment still propagating) does
// not stop start-up but is logged as an error naming the role.
func TestOpenTableStoreWithoutAccountKey(t *testing.T) {
	refusing := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("Authorization = %q; want the bearer token", r.Header.Get("Authorization"))
		}
		tableFail(w, http.StatusForbidden, "AuthorizationPermissionMismatch")
	}))
	defer refusing.Close()
	token := func(context.Context) (string, error) { return "tok", nil }
	tests := []struct {
		name    string
		conn    string
		token   func(context.Context) (string, error)
		wantErr string
	}{
		{"no token source", "AccountName=heroesprod", nil, "no Entra token source"},
		{"plain http endpoint", "AccountName=devstoreaccount1;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1", token, "https"},
		{"refused token at start", "AccountName=devstoreaccount1;TableEndpoint=" + refusing.URL + "/devstoreaccount1", token, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			s, err := openTableStore(context.Background(), tc.conn, "heroes", refusing.Client(), logger, tc.token)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("openTableStore() = %v; want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("openTableStore() = %v; want a store that reports itself not ready", err)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "Storage Table Data Contributor") {
				t.Errorf("logs lack an error naming the role to assign:\n%s", logs.String())
			}
			if err := s.Ready(context.Background()); !errors.Is(err, errStoreUnavailable) {
				t.Errorf("Ready() = %v; want errStoreUnavailable", err)
			}
		})
	}
}

// TestTableStoreRequests checks each operation sends the documented request:
// method, path, If-Match, Prefer and entity body.
func TestTableStoreRequests(t *testing.T) {
	ctx := context.Background()
	h := testHero("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "Gandalf")
	// etag is the service's form; the store hands out and takes apiTag.
	const etag = `W/"datetime'2026-11-30T10%3A00%3A00.0000000Z'"`
	const apiTag = `"datetime'2026-11-30T10%3A00%3A00.0000000Z'"`
	tests := []struct {
		name      string
		call      func(s *tableStore) error
		method    string
		path      string
		query     map[string]string
		ifMatch   string
		wantBody  bool
		wantQuery bool
	}{
		{"create posts the entity to the table", func(s *tableStore) error { _, err := s.Create(ctx, h); return err },
			http.MethodPost, "/fakeacct/heroes", nil, "", true, false},
		{"get addresses the entity by its keys", func(s *tableStore) error { _, _, err := s.Get(ctx, h.ID); return err },
			http.MethodGet, "/fakeacct/heroes(PartitionKey=%27heroes%27,RowKey=%27" + h.ID + "%27)", nil, "", false, false},
		{"replace without etag sends If-Match *", func(s *tableStore) error { _, err := s.Replace(ctx, h, ""); return err },
			http.MethodPut, "/fakeacct/heroes(PartitionKey=%27heroes%27,RowKey=%27" + h.ID + "%27)", nil, "*", true, false},
		{"replace with etag sends it in If-Match in the service's form", func(s *tableStore) error { _, err := s.Replace(ctx, h, apiTag); return err },
			http.MethodPut, "/fakeacct/heroes(PartitionKey=%27heroes%27,RowKey=%27" + h.ID + "%27)", nil, etag, true, false},
		{"delete with etag sends it in If-Match in the service's form", func(s *tableStore) error { return s.Delete(ctx, h.ID, apiTag) },
			http.MethodDelete, "/fakeacct/heroes(PartitionKey=%27heroes%27,RowKey=%27" + h.ID + "%27)", nil, etag, false, false},
		{"key quotes are doubled and escaped", func(s *tableStore) error { return s.Delete(ctx, "o'brien x", "") },
			http.MethodDelete, "/fakeacct/heroes(PartitionKey=%27heroes%27,RowKey=%27o%27%27brien%20x%27)", nil, "*", false, false},
		{"list queries the partition in pages", func(s *tableStore) error { _, err := s.List(ctx, 0, 100); return err },
			http.MethodGet, "/fakeacct/heroes()", map[string]string{
				"$filter": "PartitionKey eq 'heroes'", "$select": "RowKey,Hero", "$top": strconv.Itoa(tableListPage)}, "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var seen atomic.Bool
			_, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) {
				seen.Store(true)
				if r.Method != tc.method || r.URL.EscapedPath() != tc.path {
					t.Errorf("request %s %s; want %s %s", r.Method, r.URL.EscapedPath(), tc.method, tc.path)
				}
				if got := r.Header.Get("If-Match"); got != tc.ifMatch {
					t.Errorf("If-Match = %q; want %q", got, tc.ifMatch)
				}
				for k, v := range tc.query {
					if got := r.URL.Query().Get(k); got != v {
						t.Errorf("query %s = %q; want %q", k, got, v)
					}
				}
				if tc.wantBody {
					var e map[string]string
					if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
						t.Fatalf("entity body: %v", err)
					}
					var got hero
					if err := json.Unmarshal([]byte(e["Hero"]), &got); err != nil || got.ID != h.ID {
						t.Errorf("entity Hero property = %q; want the hero's JSON", e["Hero"])
					}
					if e["PartitionKey"] != tablePartition || e["RowKey"] != h.ID {
						t.Errorf("entity keys = %q, %q; want %q, %q", e["PartitionKey"], e["RowKey"], tablePartition, h.ID)
					}
					if r.Header.Get("Prefer") != "return-no-content" {
						t.Errorf("Prefer = %q; want return-no-content", r.Header.Get("Prefer"))
					}
				}
				switch r.Method {
				case http.MethodGet:
					if tc.wantQuery {
						tableJSON(w, "", map[string]any{"value": []any{}})
						return
					}
					data, _ := json.Marshal(h)
					tableJSON(w, etag, map[string]string{"PartitionKey": tablePartition, "RowKey": h.ID, "Hero": string(data)})
				default:
					w.Header().Set("ETag", etag)
					w.WriteHeader(http.StatusNoContent)
				}
			})
			if err := tc.call(s); err != nil {
				t.Fatalf("call = %v; want nil", err)
			}
			if !seen.Load() {
				t.Fatal("the fake service saw no entity request")
			}
		})
	}
}

// TestTableStoreErrorMapping checks how the service's answers map onto the
// store's errors, and that no error carries the service's message text.
func TestTableStoreErrorMapping(t *testing.T) {
	ctx := context.Background()
	h := testHero("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "Gandalf")
	ops := map[string]func(s *tableStore) error{
		"list":    func(s *tableStore) error { _, err := s.List(ctx, 0, 10); return err },
		"get":     func(s *tableStore) error { _, _, err := s.Get(ctx, h.ID); return err },
		"create":  func(s *tableStore) error { _, err := s.Create(ctx, h); return err },
		"replace": func(s *tableStore) error { _, err := s.Replace(ctx, h, `"x"`); return err },
		"delete":  func(s *tableStore) error { return s.Delete(ctx, h.ID, `"x"`) },
		"ready":   func(s *tableStore) error { return s.Ready(ctx) },
	}
	tests := []struct {
		name   string
		ops    []string
		status int
		code   string
		want   error // nil: an error that is none of the store's sentinels
	}{
		{"throttling (429) is unavailable", []string{"list", "get", "create", "replace", "delete", "ready"}, 429, "TooManyRequests", errStoreUnavailable},
		{"server busy (503) is unavailable", []string{"list", "get", "create", "replace", "delete", "ready"}, 503, "ServerBusy", errStoreUnavailable},
		{"internal error (500) is unavailable", []string{"get", "create"}, 500, "InternalError", errStoreUnavailable},
		{"timeout (504) is unavailable", []string{"list"}, 504, "OperationTimedOut", errStoreUnavailable},
		{"refused credentials (403) are unavailable", []string{"list", "get", "create"}, 403, "AuthenticationFailed", errStoreUnavailable},
		{"missing table (404 TableNotFound) is unavailable", []string{"list", "get", "create", "replace", "delete"}, 404, "TableNotFound", errStoreUnavailable},
		{"missing entity (404) is not found", []string{"get", "replace", "delete"}, 404, "ResourceNotFound", errHeroNotFound},
		{"404 on a query is a wrong endpoint, unavailable", []string{"list", "ready"}, 404, "ResourceNotFound", errStoreUnavailable},
		{"precondition failed (412) is a conflict", []string{"replace", "delete"}, 412, "UpdateConditionNotSatisfied", errHeroConflict},
		{"existing entity (409) is a conflict", []string{"create"}, 409, "EntityAlreadyExists", errHeroConflict},
		{"entity too large (413) is too large", []string{"create", "replace"}, 413, "RequestBodyTooLarge", errHeroTooLarge},
		{"property too large (400) is too large", []string{"create", "replace"}, 400, "PropertyValueTooLarge", errHeroTooLarge},
		{"other 400 is a bad answer", []string{"list", "get", "create", "replace", "delete"}, 400, "InvalidInput", errStoreBadAnswer},
		{"unexpected 409 is a bad answer", []string{"get", "list"}, 409, "SomethingElse", errStoreBadAnswer},
	}
	sentinels := []error{errStoreUnavailable, errHeroNotFound, errHeroConflict, errHeroTooLarge, errStoreBadAnswer}
	for _, tc := range tests {
		for _, op := range tc.ops {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				t.Parallel()
				_, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) { tableFail(w, tc.status, tc.code) })
				err := ops[op](s)
				if err == nil {
					t.Fatalf("%s with %d %s = nil; want an error", op, tc.status, tc.code)
				}
				for _, sentinel := range sentinels {
					if errors.Is(err, sentinel) != (sentinel == tc.want) {
						t.Errorf("%s with %d %s = %v; want errors.Is(err, %v) == %v", op, tc.status, tc.code, err, sentinel, sentinel == tc.want)
					}
				}
				if strings.Contains(err.Error(), "SERVICE-MESSAGE-TEXT") {
					t.Errorf("%s error %q carries the service's message text", op, err)
				}
			})
		}
	}
}

// TestTableStoreBadAnswers checks that malformed or oversized answers are
// errors (never a hero, never a panic) wrapping errStoreBadAnswer (502) and
// no other store sentinel.
func TestTableStoreBadAnswers(t *testing.T) {
	ctx := context.Background()
	id := "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	get := func(s *tableStore) error { _, _, err := s.Get(ctx, id); return err }
	list := func(s *tableStore) error { _, err := s.List(ctx, 0, 10); return err }
	create := func(s *tableStore) error { _, err := s.Create(ctx, testHero(id, "x")); return err }
	jsonHeader := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `W/"1"`)
	}
	tests := []struct {
		name   string
		call   func(s *tableStore) error
		answer http.HandlerFunc
	}{
		{"garbage JSON", get, func(w http.ResponseWriter, r *http.Request) {
			jsonHeader(w)
			io.WriteString(w, `{"PartitionKey":`)
		}},
		{"HTML instead of JSON", get, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<html>proxy error</html>`)
		}},
		{"hero property that is not a hero", get, func(w http.ResponseWriter, r *http.Request) {
			jsonHeader(w)
			fmt.Fprintf(w, `{"PartitionKey":"heroes","RowKey":%q,"Hero":"[1,2"}`, id)
		}},
		{"another entity than asked", get, func(w http.ResponseWriter, r *http.Request) {
			jsonHeader(w)
			io.WriteString(w, `{"PartitionKey":"heroes","RowKey":"other","Hero":"{}"}`)
		}},
		{"entity without ETag", get, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"PartitionKey":"heroes","RowKey":%q,"Hero":"{}"}`, id)
		}},
		{"answer over the size cap", get, func(w http.ResponseWriter, r *http.Request) {
			jsonHeader(w)
			fmt.Fprintf(w, `{"PartitionKey":"heroes","RowKey":%q,"Hero":"`, id)
			w.Write([]byte(strings.Repeat("a", maxTableResponse)))
			io.WriteString(w, `"}`)
		}},
		{"list page that is not a list", list, func(w http.ResponseWriter, r *http.Request) {
			jsonHeader(w)
			io.WriteString(w, `{"value":{"RowKey":"a"}}`)
		}},
		{"list page larger than asked", list, func(w http.ResponseWriter, r *http.Request) {
			jsonHeader(w)
			var v []map[string]string
			for i := range 11 {
				v = append(v, map[string]string{"RowKey": fmt.Sprint(i), "Hero": "{}"})
			}
			json.NewEncoder(w).Encode(map[string]any{"value": v})
		}},
		{"insert answered without ETag", create, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, s := newFakeTable(t, tc.answer)
			err := tc.call(s)
			if err == nil {
				t.Fatal("call = nil; want an error")
			}
			for _, sentinel := range []error{errHeroNotFound, errHeroConflict, errHeroTooLarge, errStoreUnavailable} {
				if errors.Is(err, sentinel) {
					t.Errorf("call = %v; want no %v", err, sentinel)
				}
			}
			if !errors.Is(err, errStoreBadAnswer) {
				t.Errorf("call = %v; want errStoreBadAnswer", err)
			}
		})
	}
}

// TestTableStorePaging checks List follows the continuation headers through
// short and empty pages, never asks for more than it still needs, and stops
// when the headers stop.
func TestTableStorePaging(t *testing.T) {
	ids := []string{"a1", "b2", "c3", "d4", "e5"}
	// pages[i] holds the entities of page i; an empty page keeps its
	// continuation, as the service's may at a partition boundary.
	pages := [][]string{{"a1", "b2"}, {}, {"c3"}, {"d4", "e5"}}
	var requests atomic.Int64
	_, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		q := r.URL.Query()
		page := 0
		if next := q.Get("NextRowKey"); next != "" {
			if q.Get("NextPartitionKey") != "1!8!aGVyb2Vz" {
				t.Errorf("NextPartitionKey = %q; want the header's value", q.Get("NextPartitionKey"))
			}
			page, _ = strconv.Atoi(strings.TrimPrefix(next, "page+"))
		}
		top, _ := strconv.Atoi(q.Get("$top"))
		var value []map[string]string
		for _, id := range pages[page] {
			if len(value) < top {
				value = append(value, map[string]string{"PartitionKey": "heroes", "RowKey": id, "Hero": `{"id":"` + id + `"}`})
			}
		}
		if page+1 < len(pages) {
			w.Header().Set("x-ms-continuation-NextPartitionKey", "1!8!aGVyb2Vz")
			w.Header().Set("x-ms-continuation-NextRowKey", fmt.Sprintf("page+%d", page+1))
		}
		tableJSON(w, "", map[string]any{"value": value})
	})
	tests := []struct {
		name      string
		limit     int
		want      []string
		wantCalls int64
	}{
		{"every page is read", 100, ids, 4},
		{"reading stops once the limit is met", 3, ids[:3], 3},
		{"zero limit reads nothing", 0, []string{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			requests.Store(0)
			got, err := s.List(context.Background(), 0, tc.limit)
			if err != nil {
				t.Fatalf("List(0, %d) = %v", tc.limit, err)
			}
			if !slices.Equal(heroIDs(got), tc.want) {
				t.Errorf("List(0, %d) = %v; want %v", tc.limit, heroIDs(got), tc.want)
			}
			if n := requests.Load(); n != tc.wantCalls {
				t.Errorf("List(0, %d) made %d queries; want %d", tc.limit, n, tc.wantCalls)
			}
		})
	}
}

// TestTableStoreTooLarge checks a hero over the 64 KiB property limit is
// refused with errHeroTooLarge before any write reaches the service, and
// that one just under it is sent.
func TestTableStoreTooLarge(t *testing.T) {
	ctx := context.Background()
	f, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `W/"1"`)
		w.WriteHeader(http.StatusNoContent)
	})
	base := testHero("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "")
	baseJSON, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	// Each "é" is one UTF-16 unit (2 bytes) and two UTF-8 bytes.
	fits := maxHeroPropertyBytes/2 - len(baseJSON)
	tests := []struct {
		name  string
		hname string
		want  error
	}{
		{"at the limit is stored", strings.Repeat("é", fits), nil},
		{"one unit over the limit is refused", strings.Repeat("é", fits+1), errHeroTooLarge},
		{"far over the limit is refused", strings.Repeat("x", 1<<20), errHeroTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := base
			h.Name = tc.hname
			for _, call := range []func() error{
				func() error { _, err := s.Create(ctx, h); return err },
				func() error { _, err := s.Replace(ctx, h, ""); return err },
			} {
				before := f.writes.Load()
				err := call()
				if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
					t.Fatalf("write of a %d-byte name = %v; want %v", len(tc.hname), err, tc.want)
				}
				sent := f.writes.Load() - before
				if tc.want != nil && sent != 0 {
					t.Errorf("refused hero still sent %d writes", sent)
				}
				if tc.want == nil && sent != 1 {
					t.Errorf("hero at the limit sent %d writes; want 1", sent)
				}
			}
		})
	}
}

// TestUTF16Bytes checks the size measure used against the property limit.
func TestUTF16Bytes(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{{"", 0}, {"abc", 6}, {"é", 2}, {"€", 2}, {"𝄞", 4}, {"a𝄞é", 8}}
	for _, tc := range tests {
		if got := utf16Bytes(tc.in); got != tc.want {
			t.Errorf("utf16Bytes(%q) = %d; want %d", tc.in, got, tc.want)
		}
	}
}

// TestTableStoreIDsThatCannotBeKeys checks ids the service cannot hold as a
// RowKey: not found for reads and writes by id, an error for Create, and no
// request either way.
func TestTableStoreIDsThatCannotBeKeys(t *testing.T) {
	ctx := context.Background()
	var requests atomic.Int64
	_, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) { requests.Add(1) })
	for _, id := range []string{"", "a/b", `a\b`, "a#b", "a?b", "a\x00b", "a\x7fb", "a\u0085b", strings.Repeat("a", 1025), "bad\xffutf8"} {
		if _, _, err := s.Get(ctx, id); !errors.Is(err, errHeroNotFound) {
			t.Errorf("Get(%q) = %v; want errHeroNotFound", id, err)
		}
		if _, err := s.Replace(ctx, testHero(id, "x"), ""); !errors.Is(err, errHeroNotFound) {
			t.Errorf("Replace(%q) = %v; want errHeroNotFound", id, err)
		}
		if err := s.Delete(ctx, id, ""); !errors.Is(err, errHeroNotFound) {
			t.Errorf("Delete(%q) = %v; want errHeroNotFound", id, err)
		}
		if _, err := s.Create(ctx, testHero(id, "x")); err == nil {
			t.Errorf("Create(%q) = nil; want an error", id)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("ids that cannot be keys sent %d requests; want 0", n)
	}
}

// TestTableStoreUnreachable checks a service that cannot be reached, or
// answers too late, gives errStoreUnavailable, and that the caller's own
// cancellation is reported as such instead.
func TestTableStoreUnreachable(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })

	store := func(base string, timeout time.Duration) *tableStore {
		u, err := url.Parse(base + "/acct")
		if err != nil {
			t.Fatal(err)
		}
		acct := storageAccount{name: "acct", key: []byte("k"), endpoint: u}
		return newTableStore(acct, "heroes", &http.Client{Timeout: timeout}, discardLogger(), time.Now)
	}
	tests := []struct {
		name string
		s    *tableStore
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"connection refused is unavailable", store(closedURL, time.Second), background, errStoreUnavailable},
		{"client timeout is unavailable", store(slow.URL, 100*time.Millisecond), background, errStoreUnavailable},
		{"caller's cancellation is context.Canceled", store(slow.URL, 10*time.Second), func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			if _, _, err := tc.s.Get(ctx, "a1"); !errors.Is(err, tc.want) {
				t.Errorf("Get() = %v; want %v", err, tc.want)
			}
			if err := tc.s.Ready(ctx); !errors.Is(err, tc.want) {
				t.Errorf("Ready() = %v; want %v", err, tc.want)
			}
		})
	}
}

// background is a context that is never cancelled.
func background() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// TestOpenTableStore checks start-up: an unreachable service does not stop
// it (the table is made on first use), refused credentials and bad settings
// do, and no error holds the connection string's key.
func TestOpenTableStore(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	answering := func(status int, code string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tableFail(w, status, code) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	conn := func(endpoint string) string {
		return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + testAccountKey + ";TableEndpoint=" + endpoint + "/devstoreaccount1"
	}
	tests := []struct {
		name    string
		conn    string
		table   string
		wantErr bool
	}{
		{"unreachable service starts", conn(closed.URL), "heroes", false},
		{"busy service (503) starts", conn(answering(503, "ServerBusy")), "heroes", false},
		{"throttling service (429) starts", conn(answering(429, "TooManyRequests")), "heroes", false},
		{"refused credentials stop start-up", conn(answering(403, "AuthenticationFailed")), "heroes", true},
		{"wrong endpoint (404) stops start-up", conn(answering(404, "ResourceNotFound")), "heroes", true},
		{"bad connection string stops start-up", "AccountName=x", "heroes", true},
		{"bad table name stops start-up", conn(closed.URL), "he-roes", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config{HeroesStore: "azuretable", StorageConnectionString: tc.conn, HeroesTable: tc.table}
			s, err := openTableStore(context.Background(), cfg.StorageConnectionString, cfg.HeroesTable, &http.Client{Timeout: time.Second}, discardLogger(), nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("openTableStore() = %v; want error %v", err, tc.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), testAccountKey) || strings.Contains(err.Error(), tc.conn) {
					t.Errorf("openTableStore() error %q holds the key or connection string", err)
				}
				return
			}
			if err := s.Ready(context.Background()); !errors.Is(err, errStoreUnavailable) {
				t.Errorf("Ready() on an unreachable service = %v; want errStoreUnavailable", err)
			}
		})
	}
}

// azuriteConfig returns the settings of a store on a new, uniquely named
// table of the Azurite instance envAzurite names, and deletes the table when
// the test ends. It skips the test when envAzurite is unset.
func azuriteConfig(t *testing.T) config {
	t.Helper()
	base := strings.TrimRight(os.Getenv(envAzurite), "/")
	if base == "" {
		t.Skipf("%s is unset: Azurite tests skipped; run them with: export $(.ci/azurite start) (stop it with .ci/azurite stop)", envAzurite)
	}
	var b [6]byte
	rand.Read(b[:])
	cfg := config{
		HeroesStore: "azuretable",
		StorageConnectionString: "DefaultEndpointsProtocol=http;AccountName=" + devStorageAccount +
			";AccountKey=" + devStorageKey + ";TableEndpoint=" + base + "/" + devStorageAccount + ";",
		HeroesTable: "heroes" + hex.EncodeToString(b[:]),
	}
	t.Cleanup(func() { deleteTable(t, cfg) })
	return cfg
}

// deleteTable deletes cfg's table ("Delete Table"); 404 is fine.
func deleteTable(t *testing.T, cfg config) {
	acct, err := parseConnectionString(cfg.StorageConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	dropTable(t, newTableStore(acct, cfg.HeroesTable, &http.Client{Timeout: 5 * time.Second}, discardLogger(), time.Now))
}

// dropTable deletes s's table ("Delete Table"); 404 is fine.
func dropTable(t *testing.T, s *tableStore) {
	_, err := s.do(context.Background(), tableRequest{op: "delete table", method: http.MethodDelete, path: "/Tables(" + escapeTable(odataString(s.table)) + ")"})
	var te *tableError
	if err != nil && !(errors.As(err, &te) && te.Status == http.StatusNotFound) {
		t.Errorf("deleting table %s: %v", s.table, err)
	}
}

// Variables naming Azurite's OAuth instance, as `.ci/azurite start` prints
// them: its https address, and the certificate to trust for it (made for
// the run, self-signed). The tests needing it skip when either is unset.
const (
	envAzuriteOAuth = "AZURITE_TABLE_OAUTH_URL"
	envAzuriteCA    = "AZURITE_CA_CERT"
)

// azuriteOAuth returns the connection string (no AccountKey) of a new,
// uniquely named table on Azurite's OAuth instance and a client trusting
// its certificate; the table is deleted when the test ends, with the
// tokens of src. It skips the test when the instance is not there.
func azuriteOAuth(t *testing.T, src func(context.Context) (string, error)) (conn, table string, client *http.Client) {
	t.Helper()
	base, caFile := strings.TrimRight(os.Getenv(envAzuriteOAuth), "/"), os.Getenv(envAzuriteCA)
	if base == "" || caFile == "" {
		t.Skipf("%s or %s is unset: Azurite OAuth tests skipped; run them with: export $(.ci/azurite start)", envAzuriteOAuth, envAzuriteCA)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	client = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	var b [6]byte
	rand.Read(b[:])
	table = "heroes" + hex.EncodeToString(b[:])
	conn = "DefaultEndpointsProtocol=https;AccountName=" + devStorageAccount + ";TableEndpoint=" + base + "/" + devStorageAccount
	t.Cleanup(func() {
		acct, err := parseConnectionString(conn)
		if err != nil {
			t.Fatal(err)
		}
		s := newTableStore(acct, table, client, discardLogger(), time.Now)
		s.token = src
		dropTable(t, s)
	})
	return conn, table, client
}

// TestTableStoreAzuriteOAuth runs the store conformance suite against
// Azurite with OAuth on, with no account key: every request carries an
// Entra token for https://storage.azure.com/, which the service wiring
// (authFlow.resourceToken) gets from a fake managed identity endpoint on
// loopback, once, and caches.
func TestTableStoreAzuriteOAuth(t *testing.T) {
	fi := newFakeIdentity(t)
	h := newHarness(t, harnessOptions{env: fi.env()})
	src := h.af.resourceToken(storageResource)
	azuriteOAuth(t, src) // skips early when Azurite's OAuth instance is not there
	testHeroStore(t, func(t *testing.T) heroStore {
		conn, table, client := azuriteOAuth(t, src)
		s, err := openTableStore(context.Background(), conn, table, client, discardLogger(), src)
		if err != nil {
			t.Fatalf("openTableStore() = %v", err)
		}
		return s
	})
	if got := fi.resources(); !slices.Equal(got, []string{storageResource}) {
		t.Errorf("the managed identity endpoint was asked for %q; want one token for %s, then the cached one", got, storageResource)
	}
}

// TestTableStoreAzuriteOAuthFederated: with a federated token file, the
// storage token comes from the client credentials grant at the test
// provider's token endpoint (scope https://storage.azure.com/.default),
// and Azurite accepts it.
func TestTableStoreAzuriteOAuthFederated(t *testing.T) {
	h, accepted, _ := newFederatedHarness(t)
	src := h.af.resourceToken(storageResource)
	conn, table, client := azuriteOAuth(t, src)
	s, err := openTableStore(context.Background(), conn, table, client, discardLogger(), src)
	if err != nil {
		t.Fatalf("openTableStore() = %v", err)
	}
	hero := testHero(newHeroID(), "Federated")
	if _, err := s.Create(context.Background(), hero); err != nil {
		t.Fatalf("Create() = %v", err)
	}
	if got, _, err := s.Get(context.Background(), hero.ID); err != nil || got.Name != "Federated" {
		t.Fatalf("Get() = %v, %v", got.Name, err)
	}
	if got := accepted.list(); len(got) != 1 || !strings.HasPrefix(got[0], "client_credentials ") {
		t.Errorf("the token endpoint accepted %d grants; want one client_credentials grant with the assertion", len(got))
	}
}

// TestTableStoreAzuriteOAuthRefusesBadTokens: Azurite does check the
// tokens (so the suite above passes for the right reason): a token for
// another audience, or an expired one, is refused; start-up goes on and
// logs the refusal, and the store is not ready.
func TestTableStoreAzuriteOAuthRefusesBadTokens(t *testing.T) {
	fed := newTestFederation()
	good := map[string]any{"iss": "https://sts.windows.net/" + testTenant + "/", "aud": "https://storage.azure.com"}
	tests := []struct {
		name     string
		override map[string]any
	}{
		{"another audience", map[string]any{"aud": "https://vault.azure.net"}},
		{"a v2 issuer", map[string]any{"iss": "https://login.microsoftonline.com/" + testTenant + "/v2.0"}},
		{"expired", map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := maps.Clone(good)
			maps.Copy(claims, tc.override)
			bad, fine := fed.assertion(t, claims), fed.assertion(t, good)
			src := func(context.Context) (string, error) { return bad, nil }
			conn, table, client := azuriteOAuth(t, func(context.Context) (string, error) { return fine, nil })
			var logs syncBuffer
			s, err := openTableStore(context.Background(), conn, table, client, slog.New(slog.NewTextHandler(&logs, nil)), src)
			if err != nil {
				t.Fatalf("openTableStore() = %v; want a store that is not ready", err)
			}
			if !strings.Contains(logs.String(), "refused the service's Entra token") {
				t.Errorf("start-up did not log the refused token:\n%s", logs.String())
			}
			if err := s.Ready(context.Background()); !errors.Is(err, errStoreUnavailable) {
				t.Errorf("Ready() with %s = %v; want errStoreUnavailable", tc.name, err)
			}
			assertNoSecretsLogged(t, logs.String(), bad)
		})
	}
}

// openAzurite opens a store on cfg through openTableStore, as run does.
func openAzurite(t *testing.T, cfg config) heroStore {
	t.Helper()
	s, err := openTableStore(context.Background(), cfg.StorageConnectionString, cfg.HeroesTable, &http.Client{Timeout: 10 * time.Second}, discardLogger(), nil)
	if err != nil {
		t.Fatalf("openTableStore() = %v", err)
	}
	return s
}

// TestTableStoreAzurite runs the store conformance suite against Azurite.
func TestTableStoreAzurite(t *testing.T) {
	azuriteConfig(t) // skips early when Azurite is not there
	testHeroStore(t, func(t *testing.T) heroStore { return openAzurite(t, azuriteConfig(t)) })
}

// TestTableStoreAzuriteTwoInstances runs two stores on one table, as two
// replicas would: what one creates the other lists, and of two replaces of
// one hero from the same etag exactly one wins and the other conflicts.
func TestTableStoreAzuriteTwoInstances(t *testing.T) {
	ctx := context.Background()
	cfg := azuriteConfig(t)
	a, b := openAzurite(t, cfg), openAzurite(t, cfg)

	h := testHero(newHeroID(), "Shared")
	if _, err := a.Create(ctx, h); err != nil {
		t.Fatalf("a.Create() = %v", err)
	}
	got, err := b.List(ctx, 0, 100)
	if err != nil || !slices.Equal(heroIDs(got), []string{h.ID}) {
		t.Fatalf("b.List() = %v, %v; want the hero a created", heroIDs(got), err)
	}

	for round := range 5 {
		_, etag, err := a.Get(ctx, h.ID)
		if err != nil {
			t.Fatalf("a.Get() = %v", err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []heroStore{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := h
				r.Level = 2 + i
				_, errs[i] = s.Replace(ctx, r, etag)
			}()
		}
		wg.Wait()
		wins, conflicts := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, errHeroConflict):
				conflicts++
			default:
				t.Fatalf("round %d: Replace() = %v; want nil or errHeroConflict", round, err)
			}
		}
		if wins != 1 || conflicts != 1 {
			t.Fatalf("round %d: concurrent replaces from one etag gave %d successes and %d conflicts; want 1 and 1", round, wins, conflicts)
		}
	}
}

// TestTableStoreAzuritePaging lists more heroes than one page holds, with
// offsets inside and across pages, against the real engine.
func TestTableStoreAzuritePaging(t *testing.T) {
	ctx := context.Background()
	s := openAzurite(t, azuriteConfig(t))
	n := 2*tableListPage + 7
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = newHeroID()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Create(ctx, testHero(ids[i], fmt.Sprint(i))); err != nil {
				t.Errorf("Create() = %v", err)
			}
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	for _, p := range []struct{ offset, limit int }{{0, 1000}, {0, tableListPage + 1}, {tableListPage - 1, 3}, {5, tableListPage * 2}, {n - 1, 10}, {n, 10}} {
		got, err := s.List(ctx, p.offset, p.limit)
		if err != nil {
			t.Fatalf("List(%d, %d) = %v", p.offset, p.limit, err)
		}
		want := ids[min(p.offset, n):min(p.offset+p.limit, n)]
		if !slices.Equal(heroIDs(got), want) {
			t.Errorf("List(%d, %d) = %d heroes; want %d in id order", p.offset, p.limit, len(got), len(want))
		}
	}
}

// TestTableStoreAzuriteOddIDs round-trips ids with characters that need
// escaping in the entity path (quote, space, percent, plus, non-ASCII), so
// the signed path and the sent path agree with the real engine.
func TestTableStoreAzuriteOddIDs(t *testing.T) {
	ctx := context.Background()
	s := openAzurite(t, azuriteConfig(t))
	for _, id := range []string{"o'brien", "two words", "100%", "a+b&c=d", "héros-ü", "(x)", "'", "a''b"} {
		h := testHero(id, "Odd")
		etag, err := s.Create(ctx, h)
		if err != nil {
			t.Fatalf("Create(%q) = %v", id, err)
		}
		got, _, err := s.Get(ctx, id)
		if err != nil || got.ID != id {
			t.Fatalf("Get(%q) = %q, %v", id, got.ID, err)
		}
		h.Level = 9
		if _, err := s.Replace(ctx, h, etag); err != nil {
			t.Fatalf("Replace(%q) = %v", id, err)
		}
		if err := s.Delete(ctx, id, etag); !errors.Is(err, errHeroConflict) {
			t.Fatalf("Delete(%q, old etag) = %v; want errHeroConflict", id, err)
		}
		if err := s.Delete(ctx, id, ""); err != nil {
			t.Fatalf("Delete(%q) = %v", id, err)
		}
	}
}

// TestTableStoreAzuriteWrongKey checks the engine refuses a wrong key at
// start-up and the error holds neither key.
func TestTableStoreAzuriteWrongKey(t *testing.T) {
	cfg := azuriteConfig(t)
	wrong := base64.StdEncoding.EncodeToString([]byte("not-the-emulator-key"))
	cfg.StorageConnectionString = strings.Replace(cfg.StorageConnectionString, devStorageKey, wrong, 1)
	_, err := openTableStore(context.Background(), cfg.StorageConnectionString, cfg.HeroesTable, &http.Client{Timeout: 10 * time.Second}, discardLogger(), nil)
	if err == nil || !isRefusal(err) {
		t.Fatalf("openTableStore(wrong key) = %v; want the service's 403", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), devStorageKey) {
		t.Errorf("openTableStore() error %q holds a key", err)
	}
}

// TestTableStoreAzuriteForeignETags checks If-Match values the service did
// not make: they match no version, so an existing hero conflicts and an
// absent one is not found, whether or not the value could be sent.
func TestTableStoreAzuriteForeignETags(t *testing.T) {
	ctx := context.Background()
	s := openAzurite(t, azuriteConfig(t))
	h := testHero(newHeroID(), "Kept")
	if _, err := s.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	gone := testHero(newHeroID(), "Gone")
	goneTag, err := s.Create(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      string
		ifMatch string
		want    error
	}{
		{"opaque tag of another store conflicts", h.ID, `"stale"`, errHeroConflict},
		{"service-format tag of no version conflicts", h.ID, `W/"datetime'2000-01-01T00%3A00%3A00.0000000Z'"`, errHeroConflict},
		{"strong form of a tag of no version is sent and conflicts", h.ID, `"datetime'2000-01-01T00%3A00%3A00.0000000Z'"`, errHeroConflict},
		{"tag that cannot be sent conflicts", h.ID, "W/\"\u00e9\"", errHeroConflict},
		{"oversized tag conflicts", h.ID, `"` + strings.Repeat("a", 300) + `"`, errHeroConflict},
		{"old tag of a deleted hero is not found", gone.ID, goneTag, errHeroNotFound},
		{"foreign tag of a deleted hero is not found", gone.ID, `"stale"`, errHeroNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h
			r.ID = tc.id
			if _, err := s.Replace(ctx, r, tc.ifMatch); !errors.Is(err, tc.want) {
				t.Errorf("Replace(%q) = %v; want %v", tc.ifMatch, err, tc.want)
			}
			if err := s.Delete(ctx, tc.id, tc.ifMatch); !errors.Is(err, tc.want) {
				t.Errorf("Delete(%q) = %v; want %v", tc.ifMatch, err, tc.want)
			}
		})
	}
	if _, _, err := s.Get(ctx, h.ID); err != nil {
		t.Errorf("Get() after refused writes = %v; want the hero kept", err)
	}
}

// FuzzErrorCode checks the error code taken from an answer is at most 64
// ASCII letters and digits whatever the header and body hold.
func FuzzErrorCode(f *testing.F) {
	f.Add("", `{"odata.error":{"code":"ResourceNotFound","message":{"value":"x"}}}`)
	f.Add("TableNotFound", ``)
	f.Add("a\r\nb", `{"odata.error":{"code":"<script>\u0000"}}`)
	f.Fuzz(func(t *testing.T, header, body string) {
		h := http.Header{}
		h.Set("x-ms-error-code", header)
		got := errorCode(h, []byte(body))
		if len(got) > 64 {
			t.Fatalf("errorCode() = %q; longer than 64", got)
		}
		for _, r := range got {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				t.Fatalf("errorCode() = %q; holds %q", got, r)
			}
		}
	})
}

// TestTableStoreAzuriteTwoServices runs the hero API twice on one Azurite
// table, as two replicas behind a load balancer: a hero created through one
// is listed by the other, and two PUTs of one hero from the same ETag, one
// through each, give exactly one 200 and one 409. (The handlers are mounted
// without requireAuth, as in heroes_test.go.)
func TestTableStoreAzuriteTwoServices(t *testing.T) {
	cfg := azuriteConfig(t)
	one := httptest.NewServer(heroMux(openAzurite(t, cfg)))
	t.Cleanup(one.Close)
	two := httptest.NewServer(heroMux(openAzurite(t, cfg)))
	t.Cleanup(two.Close)
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(method, url, body string, headers ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, data
	}

	resp, body := send(http.MethodPost, one.URL+"/api/heroes/", validHeroJSON("Replicated"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST through one = %d %s; want 201", resp.StatusCode, body)
	}
	var created hero
	if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
		t.Fatalf("POST answer %s: %v", body, err)
	}
	resp, body = send(http.MethodGet, two.URL+"/api/heroes/", "")
	var listed []hero
	if err := json.Unmarshal(body, &listed); resp.StatusCode != http.StatusOK || err != nil ||
		!slices.Equal(heroIDs(listed), []string{created.ID}) {
		t.Fatalf("GET list through two = %d %s; want the hero created through one", resp.StatusCode, body)
	}

	for round := range 3 {
		resp, body = send(http.MethodGet, two.URL+"/api/heroes/"+created.ID, "")
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != http.StatusOK || etag == "" {
			t.Fatalf("GET through two = %d %s, ETag %q; want 200 with an ETag", resp.StatusCode, body, etag)
		}
		statuses := make([]int, 2)
		var wg sync.WaitGroup
		for i, srv := range []*httptest.Server{one, two} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, _ := send(http.MethodPut, srv.URL+"/api/heroes/"+created.ID, validHeroJSON(fmt.Sprintf("Writer %d", i)), "If-Match", etag)
				statuses[i] = r.StatusCode
			}()
		}
		wg.Wait()
		slices.Sort(statuses)
		if !slices.Equal(statuses, []int{http.StatusOK, http.StatusConflict}) {
			t.Fatalf("round %d: concurrent PUTs from one ETag = %v; want one 200 and one 409", round, statuses)
		}
	}
}

// TestTableStoreAzuriteHeroTooLarge sends a hero the API accepts but whose
// JSON is over the table's 64 KiB property limit: 422, and nothing stored.
func TestTableStoreAzuriteHeroTooLarge(t *testing.T) {
	s := openAzurite(t, azuriteConfig(t))
	h := heroMux(s)
	components := `["` + strings.Repeat("x", 200) + strings.Repeat(`","`+strings.Repeat("x", 200), 19) + `"]`
	spell := `{"name":"Wish","level":9,"casting_time":"1 action","range":"Self","components":` + components + `,"duration":"Instantaneous"}`
	spells := "[" + spell + strings.Repeat(","+spell, 19) + "]"
	w := do(h, http.MethodPost, "/api/heroes/", withField("spells", spells))
	if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), "too large") {
		t.Fatalf("POST of an 80 KB hero = %d %s; want 422 too large", w.Code, w.Body)
	}
	if got, err := s.List(context.Background(), 0, 10); err != nil || len(got) != 0 {
		t.Errorf("List() after a refused hero = %d heroes, %v; want none", len(got), err)
	}
}

// TestTableStoreServiceErrorsThroughAPI checks what an API client sees when
// the Table service throttles or fails: 503 with Retry-After, and never the
// service's message text.
func TestTableStoreServiceErrorsThroughAPI(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusForbidden} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			_, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) { tableFail(w, status, "ServerBusy") })
			h := heroMux(s)
			for _, w := range []*httptest.ResponseRecorder{
				do(h, http.MethodGet, "/api/heroes/", ""),
				do(h, http.MethodGet, "/api/heroes/1b4e28ba-2fa1-41d2-883f-0016d3cca427", ""),
				do(h, http.MethodPost, "/api/heroes/", validHeroJSON("Blocked")),
			} {
				if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
					t.Errorf("service %d gave the API client %d (Retry-After %q); want 503 with Retry-After", status, w.Code, w.Header().Get("Retry-After"))
				}
				if strings.Contains(w.Body.String(), "SERVICE-MESSAGE-TEXT") || strings.Contains(w.Body.String(), "ServerBusy") {
					t.Errorf("API answer %s carries the storage error", w.Body)
				}
			}
		})
	}
}

// TestTableStoreAzuriteTableRecreated deletes the table under a running
// store: the next call reports the store unavailable, and the one after
// creates the table again and works.
func TestTableStoreAzuriteTableRecreated(t *testing.T) {
	ctx := context.Background()
	cfg := azuriteConfig(t)
	s := openAzurite(t, cfg)
	if _, err := s.Create(ctx, testHero(newHeroID(), "Before")); err != nil {
		t.Fatal(err)
	}
	deleteTable(t, cfg)
	if _, err := s.List(ctx, 0, 10); !errors.Is(err, errStoreUnavailable) {
		t.Fatalf("List() on a deleted table = %v; want errStoreUnavailable", err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready() after the table was deleted = %v; want the table made again", err)
	}
	h := testHero(newHeroID(), "After")
	if _, err := s.Create(ctx, h); err != nil {
		t.Fatalf("Create() on the remade table = %v", err)
	}
	if got, err := s.List(ctx, 0, 10); err != nil || !slices.Equal(heroIDs(got), []string{h.ID}) {
		t.Errorf("List() on the remade table = %v, %v; want only %s", heroIDs(got), err, h.ID)
	}
}

// BenchmarkSignSharedKeyLite measures signing one request.
func BenchmarkSignSharedKeyLite(b *testing.B) {
	key, err := base64.StdEncoding.DecodeString(devStorageKey)
	if err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(devStorageEndpoint + "/heroes(PartitionKey=%27heroes%27,RowKey=%271b4e28ba-2fa1-41d2-883f-0016d3cca427%27)")
	if err != nil {
		b.Fatal(err)
	}
	date := fixedNow().Format(http.TimeFormat)
	for b.Loop() {
		signSharedKeyLite(devStorageAccount, key, date, canonicalizedResource(devStorageAccount, u))
	}
}

// BenchmarkTableStoreGetAzurite measures one Get against Azurite (signing,
// the round trip and decoding); it skips without Azurite.
func BenchmarkTableStoreGetAzurite(b *testing.B) {
	base := strings.TrimRight(os.Getenv(envAzurite), "/")
	if base == "" {
		b.Skipf("%s is unset", envAzurite)
	}
	acct, err := parseConnectionString("DefaultEndpointsProtocol=http;AccountName=" + devStorageAccount +
		";AccountKey=" + devStorageKey + ";TableEndpoint=" + base + "/" + devStorageAccount)
	if err != nil {
		b.Fatal(err)
	}
	s := newTableStore(acct, "heroesbench", &http.Client{Timeout: 10 * time.Second}, discardLogger(), time.Now)
	ctx := context.Background()
	b.Cleanup(func() {
		s.do(ctx, tableRequest{op: "delete table", method: http.MethodDelete, path: "/Tables('heroesbench')"}) // best effort: Azurite keeps it in memory only
	})
	h := testHero(newHeroID(), "Bench")
	if _, err := s.Create(ctx, h); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := s.Get(ctx, h.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTableStoreAzuriteIfMatchThroughAPI checks the service's etags go out
// in ETag in strong form ("datetime'…'") and come back in If-Match, alone or
// in a list over several lines, as the same strings; that their weak form
// never matches; that an empty If-Match line
// cannot hide a stale tag; and that a hero full of "<" is stored and
// answered without HTML escaping.
func TestTableStoreAzuriteIfMatchThroughAPI(t *testing.T) {
	s := openAzurite(t, azuriteConfig(t))
	h := heroMux(s)
	w := do(h, http.MethodPost, "/api/heroes/", validHeroJSON("<Tom & Jerry>"))
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), `"<Tom & Jerry>"`) {
		t.Fatalf("POST = %d %s; want 201 with the name unescaped", w.Code, w.Body)
	}
	loc, first := w.Header().Get("Location"), w.Header().Get("ETag")
	if !strings.HasPrefix(first, `"datetime'`) {
		t.Fatalf("ETag = %s; want the service's tag in strong form", first)
	}
	put := func(lines ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPut, loc, strings.NewReader(validHeroJSON("<Tom & Jerry>")))
		r.Header.Set("Content-Type", "application/json")
		for _, l := range lines {
			r.Header.Add("If-Match", l)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w = put(`"STALE", ` + first)
	if w.Code != http.StatusOK {
		t.Fatalf("PUT with If-Match listing the current ETag = %d %s; want 200", w.Code, w.Body)
	}
	second := w.Header().Get("ETag")
	tests := []struct {
		name  string
		lines []string
		want  int
	}{
		{"the replaced etag is stale", []string{first}, http.StatusConflict},
		{"the weak form of the current etag never matches", []string{"W/" + second}, http.StatusConflict},
		{"an empty line then a stale etag", []string{"", first}, http.StatusConflict},
		{"stale then current on two lines", []string{first, second}, http.StatusOK},
	}
	for _, tc := range tests {
		w := put(tc.lines...)
		if w.Code != tc.want {
			t.Fatalf("%s: PUT with If-Match %q = %d %s; want %d", tc.name, tc.lines, w.Code, w.Body, tc.want)
		}
	}
	if got := do(h, http.MethodGet, loc, "").Body.String(); !strings.Contains(got, `"<Tom & Jerry>"`) {
		t.Errorf("GET = %s; want the name unescaped", got)
	}
}

// TestTableStoreETagsAreStrong checks the store hands out the service's weak
// ETag (W/"datetime'…'") as a strong entity-tag, sends it back to the service
// in the service's form, and never matches a weak If-Match, not even the
// weak form of the current tag (RFC 9110 §13.1.1): that is a conflict and no
// write is sent.
func TestTableStoreETagsAreStrong(t *testing.T) {
	ctx := context.Background()
	h := testHero("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "Strong")
	const serviceTag = `W/"datetime'2026-11-30T10%3A00%3A00.0000000Z'"`
	const apiTag = `"datetime'2026-11-30T10%3A00%3A00.0000000Z'"`
	var mu sync.Mutex
	var sentIfMatch []string
	f, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			data, _ := json.Marshal(h)
			tableJSON(w, serviceTag, map[string]string{"PartitionKey": tablePartition, "RowKey": h.ID, "Hero": string(data)})
			return
		}
		mu.Lock()
		sentIfMatch = append(sentIfMatch, r.Header.Get("If-Match"))
		mu.Unlock()
		if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != serviceTag {
			tableFail(w, http.StatusPreconditionFailed, "UpdateConditionNotSatisfied")
			return
		}
		w.Header().Set("ETag", serviceTag)
		w.WriteHeader(http.StatusNoContent)
	})
	etag, err := s.Create(ctx, h)
	if err != nil || etag != apiTag {
		t.Fatalf("Create() = %q, %v; want %q", etag, err, apiTag)
	}
	if _, etag, err := s.Get(ctx, h.ID); err != nil || etag != apiTag {
		t.Fatalf("Get() etag = %q, %v; want %q", etag, err, apiTag)
	}
	tests := []struct {
		name     string
		ifMatch  string
		want     error
		wantSent []string // If-Match headers of the writes sent
	}{
		{"the strong tag goes back in the service's form", apiTag, nil, []string{serviceTag}},
		{"no precondition sends *", "", nil, []string{"*"}},
		{"the weak form of the current tag conflicts unsent", serviceTag, errHeroConflict, nil},
		{"another weak tag conflicts unsent", `W/"other"`, errHeroConflict, nil},
	}
	for _, tc := range tests {
		for _, op := range []string{"replace", "delete"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				mu.Lock()
				sentIfMatch = nil
				mu.Unlock()
				before := f.writes.Load()
				var err error
				if op == "replace" {
					var got string
					got, err = s.Replace(ctx, h, tc.ifMatch)
					if err == nil && got != apiTag {
						t.Errorf("Replace() etag = %q; want %q", got, apiTag)
					}
				} else {
					err = s.Delete(ctx, h.ID, tc.ifMatch)
				}
				if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
					t.Fatalf("%s(If-Match %s) = %v; want %v", op, tc.ifMatch, err, tc.want)
				}
				mu.Lock()
				defer mu.Unlock()
				if !slices.Equal(sentIfMatch, tc.wantSent) {
					t.Errorf("%s(If-Match %s) sent If-Match %q; want %q", op, tc.ifMatch, sentIfMatch, tc.wantSent)
				}
				if n := f.writes.Load() - before; n != int64(len(tc.wantSent)) {
					t.Errorf("%s sent %d writes; want %d", op, n, len(tc.wantSent))
				}
			})
		}
	}
}

// TestTableStoreResponseCap checks the cap on the bytes read from one
// answer of the service, 8 MiB written out as a literal so a change of the
// constant shows here: an answer of exactly 8,388,608 bytes is read, one
// byte more is refused because of its size (errStoreBadAnswer, and the
// error says so).
func TestTableStoreResponseCap(t *testing.T) {
	const capBytes = 8388608
	page := `{"value":[]}`
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"an answer of exactly the cap is read", capBytes, false},
		{"an answer one byte over the cap is refused", capBytes + 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, s := newFakeTable(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, page+strings.Repeat(" ", tc.size-len(page)))
			})
			got, err := s.List(context.Background(), 0, 10)
			if !tc.wantErr {
				if err != nil || len(got) != 0 {
					t.Fatalf("List() = %v, %v; want no heroes, nil", got, err)
				}
				return
			}
			if !errors.Is(err, errStoreBadAnswer) || !strings.Contains(err.Error(), "larger than 8388608 bytes") {
				t.Fatalf("List() = %v; want errStoreBadAnswer naming the 8388608-byte cap", err)
			}
		})
	}
}

// TestTableStoreBadAnswersThroughAPI checks what an API client sees when the
// Table service answers something that is neither success nor
// unavailability (a 400 InvalidInput, an answer over the size cap): 502 Bad
// Gateway with a generic detail, no Retry-After, never the storage text.
func TestTableStoreBadAnswersThroughAPI(t *testing.T) {
	tests := []struct {
		name   string
		answer http.HandlerFunc
	}{
		{"400 InvalidInput", func(w http.ResponseWriter, r *http.Request) { tableFail(w, http.StatusBadRequest, "InvalidInput") }},
		{"answer over the size cap", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("ETag", `W/"x"`)
			io.WriteString(w, `{"value":[],"x":"SERVICE-MESSAGE-TEXT`+strings.Repeat("a", maxTableResponse)+`"}`)
		}},
		{"HTML instead of JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<p>SERVICE-MESSAGE-TEXT</p>")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, s := newFakeTable(t, tc.answer)
			h := heroMux(s)
			const loc = "/api/heroes/1b4e28ba-2fa1-41d2-883f-0016d3cca427"
			for _, w := range []*httptest.ResponseRecorder{
				do(h, http.MethodGet, "/api/heroes/", ""),
				do(h, http.MethodGet, loc, ""),
				do(h, http.MethodGet, "/api/heroes-fireball-low-ac", ""),
			} {
				if w.Code != http.StatusBadGateway || w.Header().Get("Retry-After") != "" {
					t.Errorf("API answer = %d (Retry-After %q) %s; want 502 without Retry-After", w.Code, w.Header().Get("Retry-After"), w.Body)
				}
				if strings.Contains(w.Body.String(), "SERVICE-MESSAGE-TEXT") || strings.Contains(w.Body.String(), "InvalidInput") {
					t.Errorf("API answer %s carries the storage text", w.Body)
				}
				if got := w.Body.String(); got != `{"detail":"The hero store gave an unexpected answer"}`+"\n" {
					t.Errorf("API answer body = %s; want the generic detail", got)
				}
			}
		})
	}
}
