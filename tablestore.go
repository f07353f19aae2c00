package main

// The azuretable store keeps heroes in Azure Table Storage or Azure Cosmos DB
// for Table, which speak the same REST protocol. The client is hand-built on
// net/http, crypto/hmac and encoding/json, like the token requests in auth.go.
//
// Sources (Microsoft Learn, REST API for Azure Storage):
//   - "Authorize with Shared Key": the SharedKeyLite scheme and the
//     canonicalized resource;
//   - "Authorize with Microsoft Entra ID": a bearer token for
//     https://storage.azure.com/ and x-ms-version 2017-11-09 or later, when
//     the connection string holds no AccountKey;
//   - "Azure Storage connection strings" and "Use the Azurite emulator": the
//     connection string keys and the emulator's well-known account;
//   - "Insert Entity", "Update Entity", "Delete Entity", "Query Entities",
//     "Create Table", "Query timeout and pagination", "Payload format for
//     Table service operations" and "Understanding the Table service data
//     model" (property and key limits).

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol constants of the Table service.
const (
	// tableAPIVersion is the pinned x-ms-version (the version the current
	// Azure SDKs for Tables use; Azurite and Cosmos DB for Table accept it).
	tableAPIVersion = "2019-02-02"
	// tablePartition is the PartitionKey of every hero. One fixed partition
	// keeps List a single ordered range scan by RowKey (= hero id); a
	// partition serves up to 2,000 entities per second, ample for this API.
	tablePartition = "heroes"
	// tableHeroProperty is the String property holding the hero's JSON.
	tableHeroProperty = "Hero"
	// maxTableResponse caps the bytes read from any Table service response
	// (8 MiB). A list page of tableListPage heroes at the property limit fits
	// even when every UTF-16 unit comes back escaped as \uXXXX (6 bytes).
	maxTableResponse = 8 << 20
	// tableListPage is the $top of a page that carries hero JSON, and
	// tableSkipPage that of a page that reads only keys (to skip an offset);
	// 1,000 is the service's own maximum.
	tableListPage = 40
	tableSkipPage = 1000
	// maxTablePages bounds how many pages one List follows, so a service
	// that keeps answering with empty pages cannot keep a request forever.
	maxTablePages = 10000
	// tableCallTimeout bounds each call to the Table service, on top of the
	// *http.Client's own Timeout.
	tableCallTimeout = 10 * time.Second
	// maxTableKeyBytes is the service's limit on PartitionKey and RowKey.
	maxTableKeyBytes = 1024
	// storageResource is the resource (audience) of the Entra tokens the
	// store sends when it has no account key; scope storageResource +
	// ".default".
	storageResource = "https://storage.azure.com/"
)

// Azurite's well-known development account ("Use the Azurite emulator for
// local Azure Storage development"). The key is public and grants access to
// the local emulator only; UseDevelopmentStorage=true selects it.
const (
	devStorageAccount  = "devstoreaccount1"
	devStorageKey      = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	devStorageEndpoint = "http://127.0.0.1:10002/devstoreaccount1"
)

// storageAccount is a parsed Azure Storage connection string: the account
// name, its decoded shared key (nil when the connection string has none:
// the store then authorizes with Entra tokens), and the Table service endpoint (scheme, host
// and, for the emulator's path-style URLs, the account as first path
// segment; no trailing slash, no query). It is immutable and safe for
// concurrent use. Its String and LogValue never show the key.
type storageAccount struct {
	name     string
	key      []byte
	endpoint *url.URL
}

// String describes the account without its key.
func (a storageAccount) String() string {
	return "account " + a.name + " at " + a.endpoint.Redacted()
}

// GoString describes the account without its key, for %#v.
func (a storageAccount) GoString() string { return a.String() }

// LogValue logs the account without its key (log/slog.LogValuer).
func (a storageAccount) LogValue() slog.Value {
	return slog.GroupValue(slog.String("account", a.name), slog.String("endpoint", a.endpoint.Redacted()))
}

// accountNamePattern accepts Azure Storage account names (3-24 lowercase
// letters and digits) and Cosmos DB account names (which may hold hyphens).
var accountNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)

// maxConnectionString bounds the connection string (4 KiB).
const maxConnectionString = 4 << 10

// errConnectionString marks every error of parseConnectionString. No error
// ever holds a value of the connection string, only key names.
var errConnectionString = errors.New("table: bad AZURE_STORAGE_CONNECTION_STRING")

// parseConnectionString reads an Azure Storage connection string
// ("Configure Azure Storage connection strings"): Key=Value pairs separated
// by ";", keys case-insensitive, values taken up to the next ";" (an account
// key's trailing "=" is kept). It understands DefaultEndpointsProtocol
// (https by default), AccountName, AccountKey (standard base64; optional:
// without it the store sends Entra tokens, see openTableStore),
// TableEndpoint (overrides the endpoint built from the protocol, the account
// and EndpointSuffix, default "core.windows.net"), and
// UseDevelopmentStorage=true (Azurite's devstoreaccount1 at
// http://127.0.0.1:10002/devstoreaccount1, alone). Endpoints of other
// services are ignored; SharedAccessSignature and unknown keys are refused.
// Errors wrap errConnectionString and name the key at fault, never a value.
func parseConnectionString(s string) (storageAccount, error) {
	bad := func(format string, args ...any) (storageAccount, error) {
		return storageAccount{}, fmt.Errorf("%w: "+format, append([]any{errConnectionString}, args...)...)
	}
	kv, err := splitConnectionString(s)
	if err != nil {
		return storageAccount{}, err
	}
	if v, ok := kv["usedevelopmentstorage"]; ok {
		if !strings.EqualFold(v, "true") || len(kv) != 1 {
			return bad("UseDevelopmentStorage must be true and alone")
		}
		kv = map[string]string{"accountname": devStorageAccount, "accountkey": devStorageKey, "tableendpoint": devStorageEndpoint}
	}

	var a storageAccount
	a.name = kv["accountname"]
	if !accountNamePattern.MatchString(a.name) {
		return bad("AccountName must be 3 to 63 lowercase letters, digits or hyphens")
	}
	if k, ok := kv["accountkey"]; ok {
		a.key, err = base64.StdEncoding.DecodeString(k)
		if err != nil || len(a.key) == 0 {
			return bad("AccountKey must be the account's key in standard base64")
		}
	}
	protocol := strings.ToLower(kv["defaultendpointsprotocol"])
	if protocol == "" {
		protocol = "https"
	}
	if protocol != "https" && protocol != "http" {
		return bad("DefaultEndpointsProtocol must be https or http")
	}
	endpoint := kv["tableendpoint"]
	if endpoint == "" {
		suffix := kv["endpointsuffix"]
		if suffix == "" {
			suffix = "core.windows.net"
		}
		if !hostnamePattern.MatchString(suffix) {
			return bad("EndpointSuffix is not a host name")
		}
		endpoint = protocol + "://" + a.name + ".table." + suffix
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return bad("TableEndpoint must be an absolute http(s) URL without user, query or fragment")
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), ""
	a.endpoint = u
	return a, nil
}

// splitConnectionString splits a connection string into its pairs, keys
// lowercased and values trimmed. It refuses unknown and repeated keys and
// parts without "=", naming the key (never a value).
func splitConnectionString(s string) (map[string]string, error) {
	if len(s) > maxConnectionString {
		return nil, fmt.Errorf("%w: longer than %d bytes", errConnectionString, maxConnectionString)
	}
	kv := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		switch {
		case !ok || k == "":
			return nil, fmt.Errorf("%w: a part is not Key=Value", errConnectionString)
		case k == "sharedaccesssignature":
			return nil, fmt.Errorf("%w: SharedAccessSignature is not supported; use AccountKey", errConnectionString)
		case !knownConnectionKeys[k]:
			// Not repeated: it may be part of a key pasted in the wrong place.
			return nil, fmt.Errorf("%w: a key is not one of DefaultEndpointsProtocol, AccountName, AccountKey, TableEndpoint, EndpointSuffix, UseDevelopmentStorage", errConnectionString)
		}
		if _, dup := kv[k]; dup {
			return nil, fmt.Errorf("%w: key %s appears twice", errConnectionString, k)
		}
		kv[k] = strings.TrimSpace(v)
	}
	return kv, nil
}

// knownConnectionKeys are the lowercase connection string keys
// parseConnectionString accepts; the endpoints of other services are
// accepted and ignored, so the portal's strings work as they are.
var knownConnectionKeys = map[string]bool{
	"defaultendpointsprotocol": true, "accountname": true, "accountkey": true,
	"tableendpoint": true, "endpointsuffix": true, "usedevelopmentstorage": true,
	"blobendpoint": true, "queueendpoint": true, "fileendpoint": true,
	"tablesecondaryendpoint": true, "blobsecondaryendpoint": true,
	"queuesecondaryendpoint": true, "filesecondaryendpoint": true,
}

// hostnamePattern is a DNS name such as "core.windows.net".
var hostnamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)

// canonicalizedResource builds the CanonicalizedResource of a request to the
// Table service ("Authorize with Shared Key", Shared Key Lite and Table
// service format for 2009-09-19 and later): "/", the account name, the
// request's encoded URI path, and "?comp=<value>" when the query holds comp
// (no other query parameter). The emulator puts the account in the path, so
// there the account appears twice ("/devstoreaccount1/devstoreaccount1/Tables"),
// as the document says it must.
func canonicalizedResource(account string, u *url.URL) string {
	res := "/" + account + u.EscapedPath()
	if comp, ok := u.Query()["comp"]; ok && len(comp) > 0 {
		res += "?comp=" + comp[0]
	}
	return res
}

// signSharedKeyLite returns the Authorization header value of the
// SharedKeyLite scheme for the Table service ("Authorize with Shared Key"):
// "SharedKeyLite <account>:<signature>", where the signature is
// Base64(HMAC-SHA256(key, StringToSign)) and StringToSign is the request's
// date (the x-ms-date value, in RFC 1123 form) + "\n" + CanonicalizedResource.
func signSharedKeyLite(account string, key []byte, date, resource string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(date + "\n" + resource))
	return "SharedKeyLite " + account + ":" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// tableStore is the heroStore on a Table service table: one entity per hero
// with PartitionKey tablePartition, RowKey the hero id and the hero's JSON in
// the String property tableHeroProperty. ETags come from the service, so
// replicas sharing the table detect each other's changes (optimistic
// concurrency with If-Match). It is safe for concurrent use.
type tableStore struct {
	client *http.Client
	acct   storageAccount
	table  string
	logger *slog.Logger
	now    func() time.Time // dates requests; time.Now outside tests
	// token gets the Entra access token (resource storageResource) sent
	// as "Bearer" when acct has no key; unused otherwise.
	token func(context.Context) (string, error)

	// tableReady is set once the table is known to exist, so the Create
	// Table call is not repeated; it is cleared when the service answers
	// TableNotFound.
	tableReady atomic.Bool
	// lastSweep is when (Unix seconds) this process last started deleting
	// expired idempotency keys; sweeps counts the deletions running, which
	// Close waits for.
	lastSweep atomic.Int64
	sweeps    sync.WaitGroup
}

// openTableStore opens the Azure Table Storage store (HEROES_STORE=azuretable)
// described by connectionString and table, and creates
// the table when it is missing. Requests are signed with the connection
// string's AccountKey (SharedKeyLite) or, when it has none, carry a bearer
// token from token (an Entra access token for storageResource; the
// endpoint must then be https). A service that cannot be reached now, or
// answers 429 or 5xx, does not stop start-up (the table is created on first
// use and /readyz reports it); nor does a refused token (a new role
// assignment can take minutes to apply), which is logged as an error. Any
// other refusal does (wrong key, wrong endpoint), as does a bad connection
// string. The error never holds the connection string, the key or a token.
func openTableStore(ctx context.Context, connectionString, table string, client *http.Client, logger *slog.Logger, token func(context.Context) (string, error)) (heroStore, error) {
	acct, err := parseConnectionString(connectionString)
	if err != nil {
		return nil, err
	}
	if !tableNamePattern.MatchString(table) {
		return nil, errors.New("table: HEROES_TABLE must be 3 to 63 letters or digits, starting with a letter")
	}
	if err := checkTableAuth(acct, token, logger); err != nil {
		return nil, err
	}
	s := newTableStore(acct, table, client, logger, time.Now)
	s.token = token
	if err := s.ensureTable(ctx); err != nil {
		switch {
		case acct.key == nil && isRefusal(err):
			logger.Error("table: the storage account refused the service's Entra token; give its identity the role Storage Table Data Contributor on the account (role assignments can take up to 30 minutes to apply)", "store", acct, "err", err)
		case transient(err):
			logger.Warn("table: storage not reachable at start; the table is created on first use", "store", acct, "err", err)
		default:
			return nil, err
		}
	}
	logger.Info("heroes store: azure table", "store", acct, "table", table, "auth", acct.authName())
	return s, nil
}

// checkTableAuth checks that acct can be authorized: with its key, or with
// a token source over https (a bearer token is never sent in the clear). It
// warns about a plain http endpoint outside loopback.
func checkTableAuth(acct storageAccount, token func(context.Context) (string, error), logger *slog.Logger) error {
	switch {
	case acct.key == nil && token == nil:
		return fmt.Errorf("%w: AccountKey is missing and no Entra token source is configured", errConnectionString)
	case acct.key == nil && acct.endpoint.Scheme != "https":
		return fmt.Errorf("%w: without AccountKey the store sends Entra tokens, which need an https TableEndpoint", errConnectionString)
	case acct.endpoint.Scheme == "http" && !isLoopbackHost(acct.endpoint.Hostname()):
		logger.Warn("table: the storage endpoint is plain http: entities travel unencrypted; use https outside a private network", "store", acct)
	}
	return nil
}

// authName names how requests to a are authorized, for the log.
func (a storageAccount) authName() string {
	if a.key == nil {
		return "entra token"
	}
	return "shared key"
}

// isRefusal reports whether err is the service answering 401 or 403.
func isRefusal(err error) bool {
	var te *tableError
	return errors.As(err, &te) && (te.Status == http.StatusUnauthorized || te.Status == http.StatusForbidden)
}

// newTableStore returns a store on table of acct. now dates requests.
func newTableStore(acct storageAccount, table string, client *http.Client, logger *slog.Logger, now func() time.Time) *tableStore {
	return &tableStore{client: client, acct: acct, table: table, logger: logger, now: now}
}

// tableError is a non-2xx answer of the Table service. Error gives the
// operation, the status and the service's error code, never the service's
// message text. Unwrap maps it onto the store's errors: 429, 5xx, 401, 403
// and TableNotFound → errStoreUnavailable; 404 on one entity →
// errHeroNotFound (on anything else, such as the table itself, the endpoint
// is wrong: errStoreUnavailable); 412 and EntityAlreadyExists →
// errHeroConflict; 413 and the size codes → errHeroTooLarge; any other
// answer (such as 400 InvalidInput) → errStoreBadAnswer.
type tableError struct {
	Op     string // what the store was doing, e.g. "replace hero"
	Status int    // HTTP status
	Code   string // the service's error code (odata.error.code), sanitized
	Entity bool   // the request named one entity
}

func (e *tableError) Error() string {
	msg := fmt.Sprintf("table: %s: status %d", e.Op, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if err := e.Unwrap(); err != nil {
		msg += ": " + err.Error()
	}
	return msg
}

// Unwrap returns the store error the answer means.
func (e *tableError) Unwrap() error {
	switch {
	case e.Status == http.StatusTooManyRequests, e.Status >= 500,
		e.Status == http.StatusUnauthorized, e.Status == http.StatusForbidden,
		e.Code == "TableNotFound", e.Code == "TableBeingDeleted":
		return errStoreUnavailable
	case e.Status == http.StatusNotFound && e.Entity:
		return errHeroNotFound
	case e.Status == http.StatusNotFound:
		return errStoreUnavailable
	case e.Status == http.StatusPreconditionFailed, e.Code == "EntityAlreadyExists":
		return errHeroConflict
	case e.Status == http.StatusRequestEntityTooLarge, e.Code == "PropertyValueTooLarge",
		e.Code == "EntityTooLarge", e.Code == "RequestBodyTooLarge":
		return errHeroTooLarge
	}
	return errStoreBadAnswer
}

// transient reports whether err may pass by itself: the service could not be
// reached, or answered 429 or 5xx. Other answers mean the settings are wrong.
func transient(err error) bool {
	var te *tableError
	if errors.As(err, &te) {
		return te.Status == http.StatusTooManyRequests || te.Status >= 500
	}
	return errors.Is(err, errStoreUnavailable)
}

// tableRequest is one call to the Table service. path is relative to the
// endpoint and already escaped ("/Tables", "/heroes()"); query is an escaped
// query string without "?". body, when not nil, is sent as JSON. entity is
// true when path names one entity (a 404 then means the hero is absent).
type tableRequest struct {
	op      string
	entity  bool
	method  string
	path    string
	query   string
	ifMatch string
	body    any
}

// tableResponse is a 2xx answer, its body read in full (at most
// maxTableResponse bytes).
type tableResponse struct {
	status int
	header http.Header
	body   []byte
}

// do signs and sends r and reads the answer. It returns a *tableError for a
// non-2xx status, an error wrapping errStoreUnavailable when the service
// cannot be reached in time, one wrapping errStoreBadAnswer for a 2xx
// answer over maxTableResponse bytes, and the caller's context error when
// ctx ends.
func (s *tableStore) do(ctx context.Context, r tableRequest) (tableResponse, error) {
	callCtx, cancel := context.WithTimeout(ctx, tableCallTimeout)
	defer cancel()
	req, err := s.newRequest(callCtx, r)
	if err != nil {
		return tableResponse{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return tableResponse{}, fmt.Errorf("table: %s: %w", r.op, ctx.Err())
		}
		return tableResponse{}, fmt.Errorf("table: %s: %w: %w", r.op, errStoreUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := readAtMost(resp.Body, maxTableResponse)
	tooLarge := errors.Is(err, errTooLarge)
	if err != nil && !tooLarge {
		return tableResponse{}, fmt.Errorf("table: %s: reading the answer: %w: %w", r.op, errStoreUnavailable, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Judged by its status even when over the cap (then only the
		// x-ms-error-code header can give the code).
		return tableResponse{}, &tableError{Op: r.op, Status: resp.StatusCode, Code: errorCode(resp.Header, data), Entity: r.entity}
	}
	if tooLarge {
		return tableResponse{}, fmt.Errorf("table: %s: answer larger than %d bytes: %w", r.op, maxTableResponse, errStoreBadAnswer)
	}
	return tableResponse{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// newRequest builds r as a signed *http.Request: x-ms-date from s.now,
// x-ms-version pinned, odata=nometadata JSON, and the Authorization of
// s.authorize.
func (s *tableStore) newRequest(ctx context.Context, r tableRequest) (*http.Request, error) {
	var body io.Reader
	if r.body != nil {
		// Without HTML escaping, as encodeHero: a "<" in the hero JSON
		// stays one byte on the wire instead of six.
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r.body); err != nil {
			return nil, fmt.Errorf("table: %s: encoding the entity: %w", r.op, err)
		}
		body = bytes.NewReader(b.Bytes())
	}
	target := s.acct.endpoint.String() + r.path
	if r.query != "" {
		target += "?" + r.query
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("table: %s: %w", r.op, err)
	}
	date := s.now().UTC().Format(http.TimeFormat)
	req.Header.Set("x-ms-date", date)
	req.Header.Set("x-ms-version", tableAPIVersion)
	req.Header.Set("Accept", "application/json;odata=nometadata")
	req.Header.Set("DataServiceVersion", "3.0")
	req.Header.Set("MaxDataServiceVersion", "3.0;NetFx")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Prefer", "return-no-content")
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", r.ifMatch)
	}
	if err := s.authorize(req, date); err != nil {
		return nil, fmt.Errorf("table: %s: %w", r.op, err)
	}
	return req, nil
}

// authorize sets req's Authorization: SharedKeyLite computed over the very
// path the request sends, or without an account key "Bearer" and an Entra
// token from s.token ("Authorize with Microsoft Entra ID"; tableAPIVersion
// is later than the 2017-11-09 it needs). A token that cannot be had is an
// error wrapping errStoreUnavailable; no request is sent.
func (s *tableStore) authorize(req *http.Request, date string) error {
	if s.acct.key != nil {
		req.Header.Set("Authorization", signSharedKeyLite(s.acct.name, s.acct.key, date, canonicalizedResource(s.acct.name, req.URL)))
		return nil
	}
	tok, err := s.token(req.Context())
	if err != nil {
		return fmt.Errorf("getting an Entra token: %w: %w", errStoreUnavailable, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// errorCode extracts the service's error code from the x-ms-error-code
// header or the JSON error body ({"odata.error":{"code":…}}), keeping only
// letters and digits (at most 64), so nothing else from the answer reaches
// an error message.
func errorCode(h http.Header, body []byte) string {
	code := h.Get("x-ms-error-code")
	if code == "" {
		var e struct {
			OData struct {
				Code string `json:"code"`
			} `json:"odata.error"`
		}
		if json.Unmarshal(body, &e) == nil {
			code = e.OData.Code
		}
	}
	code = strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return r
		}
		return -1
	}, code)
	return code[:min(len(code), 64)]
}

// decodeJSON decodes a 2xx answer's JSON body into v after checking its
// Content-Type. Errors do not include the body.
func (resp tableResponse) decodeJSON(op string, v any) error {
	if !isJSONType(resp.header.Get("Content-Type")) {
		return fmt.Errorf("table: %s: answer is not application/json: %w", op, errStoreBadAnswer)
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("table: %s: malformed answer: %w: %w", op, errStoreBadAnswer, err)
	}
	return nil
}

// etag returns the answer's ETag header in the API's strong form
// (apiETag), or an error when it is missing.
func (resp tableResponse) etag(op string) (string, error) {
	etag := resp.header.Get("ETag")
	if etag == "" {
		return "", fmt.Errorf("table: %s: answer has no ETag: %w", op, errStoreBadAnswer)
	}
	return apiETag(etag), nil
}

// apiETag turns an entity ETag of the Table service, which it writes as a
// weak entity-tag (W/"datetime'2026-11-30T11%3A03%3A03.1234567Z'"), into
// the strong entity-tag the API hands out ("datetime'…'"). Presenting it as
// strong is honest: the service changes an entity's ETag on every write, so
// two representations with the same tag are byte for byte the same hero
// (RFC 9110 §8.8.1). A strong If-Match comparison (RFC 9110 §13.1.1) can
// then match it, and a weak tag sent back by a client never does.
func apiETag(serviceTag string) string { return strings.TrimPrefix(serviceTag, "W/") }

// serviceETag is the inverse of apiETag: the If-Match value the Table
// service expects for a strong entity-tag the API handed out. Every entity
// ETag of the service (Azure Table Storage, Azurite, Cosmos DB for Table)
// is weak, so the W/ is put back.
func serviceETag(apiTag string) string { return "W/" + apiTag }

// ensureTable creates the table unless it is known to exist ("Create
// Table"); 409 TableAlreadyExists counts as success.
func (s *tableStore) ensureTable(ctx context.Context) error {
	if s.tableReady.Load() {
		return nil
	}
	_, err := s.do(ctx, tableRequest{
		op: "create table", method: http.MethodPost, path: "/Tables",
		body: map[string]string{"TableName": s.table},
	})
	var te *tableError
	if errors.As(err, &te) && te.Status == http.StatusConflict && te.Code == "TableAlreadyExists" {
		err = nil
	}
	if err != nil {
		return err
	}
	s.tableReady.Store(true)
	return nil
}

// call runs r after making sure the table exists, and forgets that it does
// when the service answers TableNotFound (someone deleted it).
func (s *tableStore) call(ctx context.Context, r tableRequest) (tableResponse, error) {
	if err := s.ensureTable(ctx); err != nil {
		return tableResponse{}, err
	}
	resp, err := s.do(ctx, r)
	var te *tableError
	if errors.As(err, &te) && te.Code == "TableNotFound" {
		s.tableReady.Store(false)
	}
	return resp, err
}

// tableEntity is a hero entity as the service returns it with
// odata=nometadata (Timestamp and other properties are ignored).
type tableEntity struct {
	PartitionKey string `json:"PartitionKey"`
	RowKey       string `json:"RowKey"`
	Hero         string `json:"Hero"`
}

// heroEntity builds the entity stored for h. It returns errHeroTooLarge when
// h's JSON exceeds the property limit, and an error when h.ID cannot be a
// RowKey.
func heroEntity(h hero) (map[string]string, error) {
	if !validTableKey(h.ID) {
		return nil, errors.New("table: hero id cannot be a RowKey")
	}
	data, err := encodeHero(h)
	if err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	return map[string]string{
		"PartitionKey":    tablePartition,
		"RowKey":          h.ID,
		tableHeroProperty: string(data),
	}, nil
}

// hero decodes the hero an entity holds; the RowKey is its id.
func (e tableEntity) hero() (hero, error) {
	var h hero
	if err := json.Unmarshal([]byte(e.Hero), &h); err != nil {
		return hero{}, fmt.Errorf("table: entity %q holds no hero: %w: %w", e.RowKey, errStoreBadAnswer, err)
	}
	h.ID = e.RowKey
	return h, nil
}

// validTableKey reports whether s can be a PartitionKey or RowKey: not
// empty, at most 1 KiB, valid UTF-8, and none of "/", "\", "#", "?" or
// control characters ("Understanding the Table service data model").
func validTableKey(s string) bool {
	if s == "" || len(s) > maxTableKeyBytes {
		return false
	}
	for _, r := range s {
		if r == '/' || r == '\\' || r == '#' || r == '?' || r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0xfffd {
			return false
		}
	}
	return true
}

// escapeTable percent-encodes every byte of s except the unreserved
// characters of RFC 3986 §2.3, for key literals in paths and values in the
// query string (so "$", "'", "+", "&" and spaces are never ambiguous).
func escapeTable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// odataString quotes s as an OData string literal: single quotes doubled.
func odataString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// entityPath is the escaped path of the hero entity with the given id:
// /<table>(PartitionKey='heroes',RowKey='<id>').
func (s *tableStore) entityPath(id string) string { return s.entityIn(tablePartition, id) }

// entityIn is the escaped path of the entity with partition and row keys
// pk and rk: /<table>(PartitionKey='<pk>',RowKey='<rk>').
func (s *tableStore) entityIn(pk, rk string) string {
	return "/" + s.table + "(PartitionKey=" + escapeTable(odataString(pk)) +
		",RowKey=" + escapeTable(odataString(rk)) + ")"
}

// List returns at most limit heroes ordered by id, after skipping offset of
// them. The service has no offset, so the skipped heroes are read as keys
// only (1,000 a page), then heroes are read from the last skipped key on
// (ListAfter); each read follows the
// x-ms-continuation-NextPartitionKey/NextRowKey headers ("Query timeout and
// pagination"). A page at offset n thus costs n/1000 calls more than the
// first one, and walking every hero a page at a time by offset costs
// calls growing with the square of the heroes: walk with ListAfter
// instead. A negative offset counts as 0; limit <= 0 gives no heroes.
func (s *tableStore) List(ctx context.Context, offset, limit int) ([]hero, error) {
	if limit <= 0 {
		return []hero{}, nil
	}
	after := ""
	if offset > 0 {
		skipped := 0
		err := s.scan(ctx, "list heroes", heroesFilter, "RowKey", tableSkipPage, offset, func(e tableEntity) error {
			after = e.RowKey
			skipped++
			return nil
		})
		if err != nil {
			return nil, err
		}
		if skipped < offset {
			return []hero{}, nil
		}
	}
	return s.ListAfter(ctx, after, limit)
}

// heroesFilter selects the heroes' partition (tablePartition holds no
// quote, so it needs no escaping).
const heroesFilter = "PartitionKey eq '" + tablePartition + "'"

// ListAfter returns at most limit heroes whose id (RowKey) sorts after
// after ("" for the first), ordered by id, tableListPage a page: one query
// from that key on, whatever the number of heroes before it.
func (s *tableStore) ListAfter(ctx context.Context, after string, limit int) ([]hero, error) {
	heroes := []hero{}
	if limit <= 0 {
		return heroes, nil
	}
	filter := heroesFilter
	if after != "" {
		filter += " and RowKey gt " + odataString(after)
	}
	err := s.scan(ctx, "list heroes", filter, "RowKey,"+tableHeroProperty, tableListPage, limit, func(e tableEntity) error {
		h, err := e.hero()
		if err != nil {
			return err
		}
		heroes = append(heroes, h)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return heroes, nil
}

// ListJSON is List with each hero encoded again (encodeHero): the table
// holds what any writer put there, so each entity read is decoded once and
// checked, and its RowKey is the id, as List does.
func (s *tableStore) ListJSON(ctx context.Context, offset, limit int) ([]json.RawMessage, error) {
	heroes, err := s.List(ctx, offset, limit)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(heroes))
	for i, h := range heroes {
		if out[i], err = encodeHero(h); err != nil {
			return nil, fmt.Errorf("table: entity %q: %w: %v", h.ID, errStoreBadAnswer, err) // not a 422: the table holds it
		}
	}
	return out, nil
}

// scan queries the hero entities matching filter ("Query Entities"), pages
// of at most pageSize, following the continuation headers, and hands each
// entity to visit until want entities were seen or the query ends.
func (s *tableStore) scan(ctx context.Context, op, filter, sel string, pageSize, want int, visit func(tableEntity) error) error {
	var nextPK, nextRK string
	seen := 0
	for pages := 0; seen < want; pages++ {
		if pages == maxTablePages {
			return fmt.Errorf("table: %s: more than %d pages: %w", op, maxTablePages, errStoreBadAnswer)
		}
		top := min(pageSize, want-seen)
		q := "$filter=" + escapeTable(filter) + "&$select=" + escapeTable(sel) + "&$top=" + strconv.Itoa(top)
		if nextPK != "" {
			q += "&NextPartitionKey=" + escapeTable(nextPK)
		}
		if nextRK != "" {
			q += "&NextRowKey=" + escapeTable(nextRK)
		}
		resp, err := s.call(ctx, tableRequest{op: op, method: http.MethodGet, path: "/" + s.table + "()", query: q})
		if err != nil {
			return err
		}
		var page struct {
			Value []tableEntity `json:"value"`
		}
		if err := resp.decodeJSON(op, &page); err != nil {
			return err
		}
		if len(page.Value) > top {
			return fmt.Errorf("table: %s: page holds %d entities, asked for %d: %w", op, len(page.Value), top, errStoreBadAnswer)
		}
		for _, e := range page.Value {
			if err := visit(e); err != nil {
				return err
			}
			seen++
		}
		nextPK = resp.header.Get("x-ms-continuation-NextPartitionKey")
		nextRK = resp.header.Get("x-ms-continuation-NextRowKey")
		if nextPK == "" && nextRK == "" {
			return nil
		}
	}
	return nil
}

// Get returns the hero with id and its ETag ("Query Entities" on one
// entity), or errHeroNotFound.
func (s *tableStore) Get(ctx context.Context, id string) (hero, string, error) {
	if !validTableKey(id) {
		return hero{}, "", errHeroNotFound
	}
	const op = "get hero"
	resp, err := s.call(ctx, tableRequest{op: op, method: http.MethodGet, path: s.entityPath(id), entity: true})
	if err != nil {
		return hero{}, "", err
	}
	var e tableEntity
	if err := resp.decodeJSON(op, &e); err != nil {
		return hero{}, "", err
	}
	if e.RowKey != id {
		return hero{}, "", fmt.Errorf("table: %s: answer holds another entity: %w", op, errStoreBadAnswer)
	}
	etag, err := resp.etag(op)
	if err != nil {
		return hero{}, "", err
	}
	h, err := e.hero()
	return h, etag, err
}

// Create stores a new hero ("Insert Entity") and returns its ETag. It
// returns errHeroConflict when the id exists and errHeroTooLarge when the
// hero's JSON is over the property limit (nothing is sent then).
func (s *tableStore) Create(ctx context.Context, h hero) (string, error) {
	const op = "create hero"
	entity, err := heroEntity(h)
	if err != nil {
		return "", err
	}
	resp, err := s.call(ctx, tableRequest{op: op, method: http.MethodPost, path: "/" + s.table, body: entity})
	if err != nil {
		return "", err
	}
	return resp.etag(op)
}

// Replace replaces the stored hero h.ID ("Update Entity") and returns the new
// ETag. With ifMatch "" it replaces whatever version is stored (If-Match: *,
// never creating the entity); otherwise only the version ifMatch names, else
// errHeroConflict (the service's 412). errHeroNotFound when absent.
func (s *tableStore) Replace(ctx context.Context, h hero, ifMatch string) (string, error) {
	const op = "replace hero"
	if !validTableKey(h.ID) {
		return "", errHeroNotFound
	}
	entity, err := heroEntity(h)
	if err != nil {
		return "", err
	}
	if !sendableETag(ifMatch) {
		return "", s.mismatch(ctx, h.ID, ifMatch, nil)
	}
	resp, err := s.call(ctx, tableRequest{op: op, method: http.MethodPut, path: s.entityPath(h.ID), entity: true, ifMatch: serviceIfMatch(ifMatch), body: entity})
	if err != nil {
		return "", s.mismatch(ctx, h.ID, ifMatch, err)
	}
	return resp.etag(op)
}

// Delete deletes the hero id ("Delete Entity"), any version when ifMatch is
// "", else only the version ifMatch names (errHeroConflict otherwise).
// errHeroNotFound when absent.
func (s *tableStore) Delete(ctx context.Context, id string, ifMatch string) error {
	if !validTableKey(id) {
		return errHeroNotFound
	}
	if !sendableETag(ifMatch) {
		return s.mismatch(ctx, id, ifMatch, nil)
	}
	_, err := s.call(ctx, tableRequest{op: "delete hero", method: http.MethodDelete, path: s.entityPath(id), entity: true, ifMatch: serviceIfMatch(ifMatch)})
	if err != nil {
		return s.mismatch(ctx, id, ifMatch, err)
	}
	return nil
}

// maxETagBytes bounds an If-Match value sent to the service.
const maxETagBytes = 256

// sendableETag reports whether ifMatch can go into an If-Match header: at
// most maxETagBytes of printable ASCII, and not a weak entity-tag. Any other
// value cannot name a stored version: every etag this store hands out is of
// that form, and a weak tag never matches under If-Match's strong
// comparison (RFC 9110 §13.1.1), even the weak form of the current one.
func sendableETag(ifMatch string) bool {
	if len(ifMatch) > maxETagBytes || strings.HasPrefix(ifMatch, "W/") {
		return false
	}
	for i := 0; i < len(ifMatch); i++ {
		if ifMatch[i] < 0x20 || ifMatch[i] > 0x7e {
			return false
		}
	}
	return true
}

// mismatch settles a conditional write the service refused as malformed
// (400) or that was not sent because ifMatch cannot be a stored version
// (err nil). The service only accepts entity-tags in its own format (such as
// W/"datetime'…'"), so an If-Match in another format, which can match no
// stored version, comes back 400 rather than 412. ifMatch and the etag read
// are both in the API's strong form (apiETag). It reads the entity: absent
// → errHeroNotFound; present under another etag → errHeroConflict; else err
// stands. Any other err is returned as it is.
func (s *tableStore) mismatch(ctx context.Context, id, ifMatch string, err error) error {
	var te *tableError
	if err != nil && !(errors.As(err, &te) && te.Status == http.StatusBadRequest && ifMatch != "" && ifMatch != "*") {
		return err
	}
	_, etag, gerr := s.Get(ctx, id)
	switch {
	case gerr != nil:
		return gerr
	case etag != ifMatch:
		return fmt.Errorf("table: stored version differs from If-Match: %w", errHeroConflict)
	case err == nil:
		return fmt.Errorf("table: If-Match cannot be sent: %w", errHeroConflict)
	}
	return err
}

// serviceIfMatch is the If-Match header sent to the service for a store
// ifMatch: "*" (any version) for "" or "*", else the entity-tag in the
// service's own form (serviceETag).
func serviceIfMatch(ifMatch string) string {
	if ifMatch == "" || ifMatch == "*" {
		return "*"
	}
	return serviceETag(ifMatch)
}

// Ready reports whether the table can be read: it creates the table if
// needed and queries one key.
func (s *tableStore) Ready(ctx context.Context) error {
	return s.scan(ctx, "ready", heroesFilter, "RowKey", 1, 1, func(tableEntity) error { return nil })
}

// Close waits for a deletion of expired idempotency keys in progress; it
// releases nothing else: the *http.Client belongs to the caller.
func (s *tableStore) Close() error {
	s.sweeps.Wait()
	return nil
}

// tableNamePattern is Azure Table Storage's rule for table names.
var tableNamePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)

// Idempotency keys (heroStore.CreateOnce) live in the heroes' table, one
// entity per key in the partition tableKeyPartition (List and Ready read
// only the heroes' partition), RowKey the key id, with the properties of
// keyEntity. A key is claimed by inserting its entity, naming the new
// hero's id, before the hero is written, and marked done (Done, HeroETag)
// after. A create whose answer was lost (the service stalled past the
// timeout, the connection broke) leaves its claim; the retry finds it and
// writes the hero the claim names, which fails harmlessly when the first
// attempt already wrote it, so no retry makes a second hero, and replicas
// sharing the table agree.
const (
	tableKeyPartition = "idempotency"
	// keySweepEvery is how often one process deletes expired keys,
	// maxKeySweep of them a run, runs following each other while they find
	// that many (sweepAllKeys).
	keySweepEvery = time.Hour
	maxKeySweep   = 1000
)

// keyClaim is a key entity as read or written: its record, its ETag in the
// API's form (apiETag), whether the create it names is done, and whether
// it existed before this request (a replay).
type keyClaim struct {
	rec    idemRecord
	etag   string
	done   bool
	replay bool
}

// keyEntity builds the entity of rec; done marks the create finished.
// Created is RFC 3339 in UTC, so that string order is time order.
func keyEntity(rec idemRecord, done bool) map[string]string {
	e := map[string]string{
		"PartitionKey": tableKeyPartition, "RowKey": rec.Key,
		"Fingerprint": rec.Fingerprint, "HeroID": rec.HeroID, "HeroETag": rec.ETag,
		tableHeroProperty: string(rec.Hero),
		"Created":         time.Unix(rec.Created, 0).UTC().Format(time.RFC3339),
	}
	if done {
		e["Done"] = "true"
	}
	return e
}

// CreateOnce stores h unless key was used within idempotencyTTL (see
// heroStore and the comment above keySweepEvery).
func (s *tableStore) CreateOnce(ctx context.Context, h hero, key idempotencyKey) (idemRecord, bool, error) {
	entity, err := heroEntity(h)
	if err != nil {
		return idemRecord{}, false, err
	}
	rec := idemRecord{Key: key.ID, Fingerprint: key.Fingerprint, HeroID: h.ID, Hero: json.RawMessage(entity[tableHeroProperty]), Created: s.now().Unix()}
	c, err := s.claimKey(ctx, rec)
	switch {
	case err != nil:
		return idemRecord{}, false, err
	case c.rec.Fingerprint != key.Fingerprint:
		return idemRecord{}, false, errIdempotencyMismatch
	case c.done:
		return c.rec, c.replay, nil
	}
	if c.rec.ETag, err = s.writeClaimedHero(ctx, c.rec); err != nil {
		return idemRecord{}, false, err
	}
	_, err = s.call(ctx, tableRequest{op: "complete idempotency key", method: http.MethodPut, path: s.entityIn(tableKeyPartition, c.rec.Key),
		entity: true, ifMatch: serviceIfMatch(c.etag), body: keyEntity(c.rec, true)})
	if err != nil {
		// The hero is written; a retry finds the claim and the hero.
		s.logger.WarnContext(ctx, "table: idempotency key not marked done", "err", err)
	}
	return c.rec, c.replay, nil
}

// claimKey inserts the key entity of rec, or returns the live one already
// there (replay). An expired one is taken over, conditionally on its ETag.
func (s *tableStore) claimKey(ctx context.Context, rec idemRecord) (keyClaim, error) {
	const op = "claim idempotency key"
	for range 3 {
		resp, err := s.call(ctx, tableRequest{op: op, method: http.MethodPost, path: "/" + s.table, body: keyEntity(rec, false)})
		if !errors.Is(err, errHeroConflict) {
			if err != nil {
				return keyClaim{}, err
			}
			s.sweepKeysSometimes(ctx)
			etag, err := resp.etag(op)
			return keyClaim{rec: rec, etag: etag}, err
		}
		c, err := s.getKey(ctx, rec.Key)
		if errors.Is(err, errHeroNotFound) {
			continue // deleted as expired meanwhile: insert again
		} else if err != nil {
			return keyClaim{}, err
		} else if c.rec.live(s.now()) {
			c.replay = true
			return c, nil
		}
		resp, err = s.call(ctx, tableRequest{op: op, method: http.MethodPut, path: s.entityIn(tableKeyPartition, rec.Key),
			entity: true, ifMatch: serviceIfMatch(c.etag), body: keyEntity(rec, false)})
		if err == nil {
			etag, err := resp.etag(op)
			return keyClaim{rec: rec, etag: etag}, err
		} else if !errors.Is(err, errHeroConflict) && !errors.Is(err, errHeroNotFound) {
			return keyClaim{}, err
		}
	}
	return keyClaim{}, fmt.Errorf("table: %s: the key keeps changing: %w", op, errStoreUnavailable)
}

// getKey reads the key entity id; errHeroNotFound when there is none.
func (s *tableStore) getKey(ctx context.Context, id string) (keyClaim, error) {
	const op = "read idempotency key"
	resp, err := s.call(ctx, tableRequest{op: op, method: http.MethodGet, path: s.entityIn(tableKeyPartition, id), entity: true})
	if err != nil {
		return keyClaim{}, err
	}
	var e struct{ RowKey, Fingerprint, HeroID, HeroETag, Hero, Created, Done string }
	if err := resp.decodeJSON(op, &e); err != nil {
		return keyClaim{}, err
	}
	created, err := time.Parse(time.RFC3339, e.Created)
	if err != nil || e.RowKey != id || !json.Valid([]byte(e.Hero)) || !isGUID(e.HeroID) {
		return keyClaim{}, fmt.Errorf("table: %s: not a key entity of this store: %w", op, errStoreBadAnswer)
	}
	etag, err := resp.etag(op)
	rec := idemRecord{Key: id, Fingerprint: e.Fingerprint, HeroID: e.HeroID, ETag: e.HeroETag, Hero: json.RawMessage(e.Hero), Created: created.Unix()}
	return keyClaim{rec: rec, etag: etag, done: e.Done == "true"}, err
}

// writeClaimedHero writes the hero a claim names and returns its ETag.
// When the hero is already there (an earlier attempt wrote it), it returns
// the hero's ETag while the hero is still as first answered, else "".
func (s *tableStore) writeClaimedHero(ctx context.Context, rec idemRecord) (string, error) {
	var h hero
	if err := json.Unmarshal(rec.Hero, &h); err != nil {
		return "", fmt.Errorf("table: idempotency key names no hero: %w: %w", errStoreBadAnswer, err)
	}
	h.ID = rec.HeroID
	etag, err := s.Create(ctx, h)
	if !errors.Is(err, errHeroConflict) {
		return etag, err
	}
	cur, etag, err := s.Get(ctx, h.ID)
	if errors.Is(err, errHeroNotFound) {
		return "", nil // written, then deleted
	} else if err != nil {
		return "", err
	}
	if data, err := encodeHero(cur); err != nil || !bytes.Equal(data, rec.Hero) {
		return "", nil // changed since
	}
	return etag, nil
}

// sweepKeysSometimes starts, at most once per keySweepEvery in this
// process, the deletion of expired key entities in the background (ctx
// gives it its values, not its end).
func (s *tableStore) sweepKeysSometimes(ctx context.Context) {
	now := s.now()
	last := s.lastSweep.Load()
	if time.Unix(last, 0).Add(keySweepEvery).After(now) || !s.lastSweep.CompareAndSwap(last, now.Unix()) {
		return
	}
	s.sweeps.Add(1)
	go func() {
		defer s.sweeps.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		n, err := s.sweepAllKeys(ctx, now)
		if err != nil {
			s.logger.WarnContext(ctx, "table: deleting expired idempotency keys", "deleted", n, "err", err)
		} else if n > 0 {
			s.logger.InfoContext(ctx, "table: expired idempotency keys deleted", "deleted", n)
		}
	}()
}

// sweepAllKeys runs sweepKeys until a run deletes fewer than maxKeySweep
// key entities or ctx ends, so an hour's sweep is not stopped at 1,000
// while more expired keys wait (they would pile up under more than 1,000
// keyed creates an hour); it returns how many it deleted in all.
func (s *tableStore) sweepAllKeys(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		n, err := s.sweepKeys(ctx, now)
		total += n
		if err != nil || n < maxKeySweep || ctx.Err() != nil {
			return total, err
		}
	}
}

// sweepKeys deletes up to maxKeySweep key entities that expired at now.
// Each is read again and deleted only in the version read, so a key taken
// over meanwhile stays.
func (s *tableStore) sweepKeys(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-idempotencyTTL).UTC().Format(time.RFC3339)
	filter := "PartitionKey eq " + odataString(tableKeyPartition) + " and Created lt " + odataString(cutoff)
	var ids []string
	err := s.scan(ctx, "find expired idempotency keys", filter, "RowKey", tableSkipPage, maxKeySweep, func(e tableEntity) error {
		ids = append(ids, e.RowKey)
		return nil
	})
	n := 0
	for _, id := range ids {
		c, gerr := s.getKey(ctx, id)
		if gerr != nil || c.rec.live(now) {
			continue
		}
		_, derr := s.call(ctx, tableRequest{op: "delete idempotency key", method: http.MethodDelete, path: s.entityIn(tableKeyPartition, id), entity: true, ifMatch: serviceIfMatch(c.etag)})
		if derr == nil {
			n++
		}
	}
	return n, err
}
