package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTokenEndpointRedirectIsNotFollowed: the service's identity provider
// client (newIDPClient) never follows a redirect, so a token endpoint
// answering 307 cannot make it re-send the code, the code_verifier and the
// client secret to another server (RFC 6749 §3.2).
func TestTokenEndpointRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		tokenJSON(w, map[string]any{"token_type": "Bearer", "access_token": "stolen"})
	}))
	t.Cleanup(other.Close)
	h := newHarness(t, harnessOptions{client: newIDPClient()})
	setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/token", http.StatusTemporaryRedirect)
	})
	w := h.signIn(t, "", "")
	if w.Code != http.StatusBadGateway {
		t.Errorf("callback with a redirecting token endpoint = %d %s; want 502", w.Code, w.Body)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the other server got %d requests; want 0 (the redirect was followed)", n)
	}
}

// TestGrantErrorsAreDescribedByTheirCode: an invalid_grant says what Entra's
// error code means; only AADSTS70008 says "expired" (with "or is not
// valid", as Entra's text does), and a malformed token (AADSTS9002313) says
// so.
func TestGrantErrorsAreDescribedByTheirCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		te      tokenError
		want    string
		notWant string
	}{
		{"70008 is expired or not valid", tokenError{Code: "invalid_grant", ErrorCodes: []int{70008}}, "has expired or is not valid", ""},
		{"54005 is already redeemed", tokenError{Code: "invalid_grant", ErrorCodes: []int{54005}}, "already redeemed", "expired"},
		{"70000 is invalid or already used", tokenError{Code: "invalid_grant", ErrorCodes: []int{70000}}, "invalid or was already used", "expired"},
		{"70000 found in the description", tokenError{Code: "invalid_grant", Description: "AADSTS70000: refresh token already used"}, "invalid or was already used", "expired"},
		{"9002313 is malformed, not expired", tokenError{Code: "invalid_grant", ErrorCodes: []int{9002313}}, "is malformed", "expired"},
		{"9002313 found in the description", tokenError{Code: "invalid_grant", Description: "AADSTS9002313: Invalid request. Request is malformed or invalid."}, "is malformed", "expired"},
		{"700082 is unused too long", tokenError{Code: "invalid_grant", ErrorCodes: []int{700082}}, "long time unused", ""},
		{"an unknown code is generic", tokenError{Code: "invalid_grant", ErrorCodes: []int{9999999}}, "invalid, expired or already used", ""},
		{"no code is generic", tokenError{Code: "invalid_grant"}, "invalid, expired or already used", ""},
		{"interaction_required", tokenError{Code: "interaction_required"}, "needs the user", "expired"},
	}
	for _, tc := range tests {
		got := describeGrantError(&tc.te)
		if !strings.Contains(got, tc.want) || (tc.notWant != "" && strings.Contains(got, tc.notWant)) {
			t.Errorf("%s: describeGrantError = %q; want it to say %q and not %q", tc.name, got, tc.want, tc.notWant)
		}
	}
}

func TestTokenEndpointErrorsAreMapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		answer     http.HandlerFunc
		wantStatus int
		wantIn     []string
		wantLog    string
	}{
		{"expired code is 400 start again", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.", 70008)
		}, 400, []string{"expired", "AADSTS70008", "start again at /auth/login"}, ""},
		{"redeemed code is 400 start again", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS54005: OAuth2 Authorization code was already redeemed", 54005)
		}, 400, []string{"already redeemed", "AADSTS54005", "start again at /auth/login"}, ""},
		{"unknown code is 400 invalid, expired or already used", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS70000: The provided value for the 'code' parameter is not valid.", 70000)
		}, 400, []string{"invalid or was already used", "AADSTS70000", "start again at /auth/login"}, ""},
		{"malformed code or token is 400 saying so, not expired", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS9002313: Invalid request. Request is malformed or invalid.", 9002313)
		}, 400, []string{"is malformed", "AADSTS9002313", "start again at /auth/login"}, ""},
		{"v1 answer with the code only in the description", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_grant", "AADSTS70008: expired")
		}, 400, []string{"AADSTS70008", "start again"}, ""},
		{"bad secret is 502 with the code", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215)
		}, 502, []string{"AADSTS7000215", "misconfigured"}, "AZURE_CLIENT_SECRET is not a valid secret"},
		{"expired secret is 502", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 401, "invalid_client", "AADSTS7000222: expired", 7000222)
		}, 502, []string{"AADSTS7000222"}, "has expired"},
		{"redirect mismatch is 502 with the code", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_request", "AADSTS50011: The redirect URI does not match", 50011)
		}, 502, []string{"AADSTS50011"}, "REDIRECT_URI does not exactly match"},
		{"unknown client error is 502", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "unauthorized_client", "AADSTS700025: public client", 700025)
		}, 502, []string{"unauthorized_client", "AADSTS700025"}, ""},
		{"temporarily unavailable is 503", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 503, "temporarily_unavailable", "AADSTS90033: busy", 90033)
		}, 503, []string{"temporarily unavailable"}, ""},
		{"non-JSON error page is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			io.WriteString(w, "<h1>oops</h1>")
		}, 502, []string{"unusable answer"}, ""},
		{"non-JSON success is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, `{"access_token":"x","token_type":"Bearer"}`)
		}, 502, []string{"unusable answer"}, ""},
		{"malformed JSON is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":`)
		}, 502, []string{"unusable answer"}, ""},
		{"expires_in not numeric is 502", func(w http.ResponseWriter, r *http.Request) {
			tokenJSON(w, map[string]any{"access_token": "x", "token_type": "Bearer", "expires_in": "soon"})
		}, 502, []string{"unusable answer"}, ""},
		{"no access token is 502", func(w http.ResponseWriter, r *http.Request) {
			tokenJSON(w, map[string]any{"token_type": "Bearer", "expires_in": 3599})
		}, 502, []string{"unusable answer"}, ""},
		{"token type other than Bearer is 502", func(w http.ResponseWriter, r *http.Request) {
			tokenJSON(w, map[string]any{"access_token": "x", "token_type": "DPoP", "expires_in": 3599})
		}, 502, []string{"unusable answer"}, ""},
		{"oversized answer is 502", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"`+strings.Repeat("a", maxTokenAnswer)+`","token_type":"Bearer"}`)
		}, 502, []string{"unusable answer"}, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			c, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			setTokenHandler(h.idp, tc.answer)
			w := h.callback(url.Values{"code": {code}, "state": {state}}, "", c)
			if w.Code != tc.wantStatus {
				t.Errorf("callback = %d %s; want %d", w.Code, w.Body, tc.wantStatus)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q; want no-store", w.Header().Get("Cache-Control"))
			}
			for _, want := range tc.wantIn {
				if !strings.Contains(w.Body.String(), want) {
					t.Errorf("answer lacks %q: %s", want, w.Body)
				}
			}
			if tc.wantLog != "" && !strings.Contains(h.logs.String(), tc.wantLog) {
				t.Errorf("logs lack %q:\n%s", tc.wantLog, h.logs)
			}
		})
	}
}

func TestTokenEndpointNetworkFailures(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name       string
		client     *http.Client
		endpoint   func(h *flowHarness) string
		answer     http.HandlerFunc
		wantStatus int
	}{
		{"timeout is 504", &http.Client{Timeout: 200 * time.Millisecond}, nil, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, http.StatusGatewayTimeout},
		{"slow body is 504", &http.Client{Timeout: 200 * time.Millisecond}, nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, http.StatusGatewayTimeout},
		{"connection refused is 502", nil, func(*flowHarness) string { return closed.URL + "/token" }, nil, http.StatusBadGateway},
		{"connection dropped is 502", nil, nil, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, http.StatusBadGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{client: tc.client})
			if tc.endpoint != nil {
				md := idpMetadata(h.idp)
				md.TokenEndpoint = tc.endpoint(h)
				h.af.p = fakeMetadata{md: md}
			}
			c, u := h.login(t, "")
			code, state := h.ti.authorize(u)
			if tc.answer != nil {
				setTokenHandler(h.idp, tc.answer)
			}
			w := h.callback(url.Values{"code": {code}, "state": {state}}, "", c)
			if w.Code != tc.wantStatus {
				t.Errorf("callback = %d %s; want %d", w.Code, w.Body, tc.wantStatus)
			}
		})
	}
}

func TestParseTokenAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		ct, body    string
		wantExpires int64
		wantErr     error
		wantAADSTS  string
	}{
		{"expires_in number", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":3599}`, 3599, nil, ""},
		{"expires_in string (Entra v1)", 200, "application/json; charset=utf-8", `{"access_token":"a","token_type":"bearer","expires_in":"3599"}`, 3599, nil, ""},
		{"expires_in absent", 200, "application/json", `{"access_token":"a","token_type":"Bearer"}`, 0, nil, ""},
		{"expires_in negative", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":-1}`, 0, errTokenAnswer, ""},
		{"expires_in fraction", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":1.5}`, 0, errTokenAnswer, ""},
		{"Entra error", 400, "application/json", `{"error":"invalid_grant","error_description":"AADSTS70008: x","error_codes":[70008]}`, 0, nil, "AADSTS70008"},
		{"error on a 200", 200, "application/json", `{"error":"invalid_grant","error_codes":[54005]}`, 0, nil, "AADSTS54005"},
		{"expires_in with a sign", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":"+5"}`, 0, errTokenAnswer, ""},
		{"error spelt in capitals on a 200", 200, "application/json", `{"access_token":"a","token_type":"Bearer","ERROR":"invalid_grant","error_codes":[54005]}`, 0, nil, "AADSTS54005"},
		{"problem+json error", 400, "application/problem+json", `{"error":"invalid_grant","error_codes":[70008]}`, 0, nil, "AADSTS70008"},
		{"error that does not decode", 400, "application/json", `{"error":"invalid_grant","error_codes":["70008"]}`, 0, errTokenAnswer, ""},
		{"status without error", 500, "application/json", `{}`, 0, errTokenAnswer, ""},
		{"+json outside application/", 200, "text/x+json", `{"access_token":"a","token_type":"Bearer"}`, 0, errTokenAnswer, ""},
		{"HTML", 200, "text/html", `<html>`, 0, errTokenAnswer, ""},
		{"no content type", 200, "", `{"access_token":"a","token_type":"Bearer"}`, 0, errTokenAnswer, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := parseTokenAnswer(tc.status, tc.ct, []byte(tc.body))
			var te *tokenError
			switch {
			case tc.wantAADSTS != "":
				if !errors.As(err, &te) || te.aadsts() != tc.wantAADSTS {
					t.Errorf("parseTokenAnswer(%q) = %v; want a tokenError %s", tc.body, err, tc.wantAADSTS)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("parseTokenAnswer(%q) = %v; want %v", tc.body, err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("parseTokenAnswer(%q) = %v", tc.body, err)
			default:
				if got, _ := tr.lifetime(); got != tc.wantExpires {
					t.Errorf("expires_in = %d; want %d", got, tc.wantExpires)
				}
			}
		})
	}
}

// FuzzParseTokenAnswer: no panic on any answer, and a success always has an
// access token and a non-negative expires_in.
func FuzzParseTokenAnswer(f *testing.F) {
	f.Add(200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":"3599"}`)
	f.Add(400, "application/json", `{"error":"invalid_grant","error_codes":[70008]}`)
	f.Add(200, "text/html", `<html>`)
	f.Add(200, "application/json", `{"expires_in":1e400}`)
	f.Fuzz(func(t *testing.T, status int, ct, body string) {
		tr, err := parseTokenAnswer(status, ct, []byte(body))
		if err == nil {
			if secs, ok := tr.lifetime(); tr.AccessToken == "" || !ok || secs < 0 {
				t.Fatalf("parseTokenAnswer(%d, %q, %q) = %+v; want an access token and expires_in >= 0", status, ct, body, tr)
			}
		}
		var te *tokenError
		if errors.As(err, &te) && (len(te.Description) > maxShownIdPText+3 || len(te.Code) > 64+3) {
			t.Fatalf("tokenError fields are unbounded: %d, %d bytes", len(te.Description), len(te.Code))
		}
	})
}

// expires_in arrives as a number from Entra's v2 endpoint and as a string
// from its v1 endpoint: json.Number takes both, and lifetime wants a
// non-negative integer.
func Example_expiresIn() {
	for _, body := range []string{`{"expires_in":3599}`, `{"expires_in":"3599"}`, `{"expires_in":"soon"}`, `{"expires_in":-1}`} {
		var tr tokenResponse
		err := json.Unmarshal([]byte(body), &tr)
		secs, ok := tr.lifetime()
		fmt.Println(secs, err != nil || !ok)
	}
	// Output:
	// 3599 false
	// 3599 false
	// 0 true
	// -1 true
}

func TestUpstreamFaultsAroundTheExchange(t *testing.T) {
	t.Parallel()
	t.Run("unusable authorization_endpoint is 502", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{metadata: fakeMetadata{md: providerMetadata{AuthorizationEndpoint: "javascript:alert(1)"}}})
		if w := h.do(httptest.NewRequest("GET", "/auth/login", nil)); w.Code != http.StatusBadGateway {
			t.Errorf("login = %d %s; want 502", w.Code, w.Body)
		}
	})
	t.Run("key set unavailable is 503", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{})
		h.idp.mu.Lock()
		h.idp.jwksHandler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusInternalServerError) }
		h.idp.mu.Unlock()
		w := h.signIn(t, "", "")
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Errorf("callback with no signing keys = %d %s; want 503 with Retry-After", w.Code, w.Body)
		}
	})
	t.Run("refreshed access token failing verification is 502", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{})
		h.ti.addRefreshToken("rt")
		h.ti.atOverride = map[string]any{"iss": "https://evil.example/v2.0"}
		w := h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt"))
		if w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), "access_token\":\"ey") {
			t.Errorf("refresh = %d %s; want 502 and no token handed out", w.Code, w.Body)
		}
	})
}

// TestConfigFaultsAre502WithAnOperatorLogLine: Entra codes that name a
// configuration fault are a 502 carrying the AADSTS code, with an ERROR log
// line naming the setting to fix, whatever OAuth error code they come with
// (AADSTS500112 arrives as invalid_client or invalid_grant,
// AzureAD/microsoft-identity-web#3114) and on refresh too.
func TestConfigFaultsAre502WithAnOperatorLogLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		refresh bool
		status  int
		oauth   string
		desc    string
		codes   []int
		aadsts  string
		fix     string
	}{
		{"500112 as invalid_client", false, 401, "invalid_client", "AADSTS500112: The reply address 'a' does not match the reply address 'b' provided when requesting Authorization code.", []int{500112}, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"500112 as invalid_grant", false, 400, "invalid_grant", "AADSTS500112: The reply address 'a' does not match the reply address 'b' provided when requesting Authorization code.", []int{500112}, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"500112 as invalid_grant, code only in the description", false, 400, "invalid_grant", "AADSTS500112: The reply address does not match.", nil, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"500112 on refresh", true, 400, "invalid_grant", "AADSTS500112: The reply address does not match.", []int{500112}, "AADSTS500112", "REDIRECT_URI must be registered"},
		{"50011 as invalid_request", false, 400, "invalid_request", "AADSTS50011: The redirect URI does not match.", []int{50011}, "AADSTS50011", "REDIRECT_URI does not exactly match"},
		{"7000215 as invalid_client", false, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", []int{7000215}, "AADSTS7000215", "AZURE_CLIENT_SECRET is not a valid secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
				entraError(w, tc.status, tc.oauth, tc.desc, tc.codes...)
			})
			var w *httptest.ResponseRecorder
			if tc.refresh {
				w = h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt"))
			} else {
				w = h.signIn(t, "", "")
			}
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), tc.aadsts) {
				t.Errorf("answer = %d %s; want 502 naming %s", w.Code, w.Body, tc.aadsts)
			}
			var line string
			for l := range strings.SplitSeq(h.logs.String(), "\n") {
				if strings.Contains(l, tc.fix) {
					line = l
				}
			}
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "aadsts="+tc.aadsts) {
				t.Errorf("no ERROR log line naming %s and the fix %q:\n%s", tc.aadsts, tc.fix, h.logs)
			}
		})
	}
}

// deadlineRecorder is an http.RoundTripper that records the context
// deadline of token requests (POSTs) before passing every request on.
type deadlineRecorder struct {
	mu        sync.Mutex // guards deadlines
	deadlines []time.Time
}

func (d *deadlineRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost {
		dl, ok := r.Context().Deadline()
		if !ok {
			dl = time.Time{}
		}
		d.mu.Lock()
		d.deadlines = append(d.deadlines, dl)
		d.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestTokenRequestsWaitTenSeconds: the client run builds for the identity
// provider has a 10 s Timeout, and each token request (code and refresh
// grant) carries its own 10 s context deadline, measured from the request,
// so no test has to wait 10 s.
func TestTokenRequestsWaitTenSeconds(t *testing.T) {
	t.Parallel()
	if got := newIDPClient().Timeout; got != 10*time.Second {
		t.Errorf("newIDPClient().Timeout = %v; want 10s", got)
	}
	tests := []struct {
		name string
		do   func(h *flowHarness) *httptest.ResponseRecorder
	}{
		{"code grant", func(h *flowHarness) *httptest.ResponseRecorder {
			c, authURL := h.login(t, "")
			code, state := h.ti.authorize(authURL)
			return h.callback(url.Values{"code": {code}, "state": {state}}, "", c)
		}},
		{"refresh grant", func(h *flowHarness) *httptest.ResponseRecorder {
			h.ti.addRefreshToken("rt-deadline")
			return h.do(newRefreshRequest("application/x-www-form-urlencoded", "refresh_token=rt-deadline"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &deadlineRecorder{}
			h := newHarness(t, harnessOptions{client: &http.Client{Transport: rec}})
			start := time.Now()
			w := tc.do(h)
			end := time.Now()
			if w.Code != http.StatusOK {
				t.Fatalf("answer = %d %s; want 200", w.Code, w.Body)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.deadlines) != 1 {
				t.Fatalf("%d token requests; want 1", len(rec.deadlines))
			}
			dl := rec.deadlines[0]
			if dl.Before(start.Add(10*time.Second)) || dl.After(end.Add(10*time.Second)) {
				t.Errorf("token request deadline = %v after the start; want 10s after the request (no deadline: %v)", dl.Sub(start), dl.IsZero())
			}
		})
	}
}

// padTokenAnswer returns body, a JSON object, with a padding member added
// at its start so that it is exactly size bytes long, or an error when body
// is not an object or already longer.
func padTokenAnswer(body []byte, size int) ([]byte, error) {
	const member = `"padding":"",`
	n := size - len(body) - len(member)
	if n < 0 || len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("cannot pad a %d-byte answer to %d bytes", len(body), size)
	}
	out := make([]byte, 0, size)
	out = append(out, `{"padding":"`...)
	out = append(out, strings.Repeat("a", n)...)
	out = append(out, `",`...)
	return append(out, body[1:]...), nil
}

// TestTokenAnswersOver1MiBAre502: the token endpoint's answer is read up to
// 1 MiB (1,048,576 bytes): a genuine answer padded to just under or exactly
// 1 MiB is accepted, one padded to 1 MiB + 64 bytes or 2 MiB is a 502,
// with or without a Content-Length. Sizes are literals, not derived from
// maxTokenAnswer, so changing the limit fails this test.
func TestTokenAnswersOver1MiBAre502(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"just under 1 MiB is accepted", 1048576 - 64, false, http.StatusOK},
		{"exactly 1 MiB is accepted", 1048576, false, http.StatusOK},
		{"1 MiB + 64 bytes is 502", 1048576 + 64, false, http.StatusBadGateway},
		{"2 MiB is 502", 2097152, false, http.StatusBadGateway},
		{"2 MiB without Content-Length is 502", 2097152, true, http.StatusBadGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			setTokenHandler(h.idp, func(w http.ResponseWriter, r *http.Request) {
				rec := httptest.NewRecorder()
				h.ti.serveToken(rec, r)
				body, err := padTokenAnswer(rec.Body.Bytes(), tc.size)
				if err != nil || len(body) != tc.size {
					t.Errorf("token answer: %v", err)
					http.Error(w, "test setup", http.StatusInternalServerError)
					return
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				w.Write(body[:1024])
				w.(http.Flusher).Flush()
				w.Write(body[1024:])
			})
			w := h.signIn(t, "", "")
			if w.Code != tc.want {
				t.Errorf("callback with a %d-byte token answer = %d %.200s; want %d", tc.size, w.Code, w.Body, tc.want)
			}
			if tc.want != http.StatusOK && strings.Contains(w.Body.String(), "access_token") {
				t.Errorf("an oversized answer's token was handed out")
			}
		})
	}
}

// TestTokenFailureLogLines: the log lines of a refused token request carry
// the request's own trace_id (W3C trace context) and Entra's trace and
// correlation ids under entra_trace_id and entra_correlation_id, never
// under trace_id; Entra's description reaches the log without control or
// bidirectional characters (cleanIdPText); and the error line of an
// unavailable client credential carries the request context too.
func TestTokenFailureLogLines(t *testing.T) {
	t.Parallel()
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	desc := "AADSTS70000: bad\r\ngrant \u202eevil\u2066 \x1b[31mred\u0085"
	quoted, _ := json.Marshal(desc)
	body := `{"error":"invalid_grant","error_description":` + string(quoted) + `,"error_codes":[70000],"trace_id":"entra-trace","correlation_id":"entra-corr"}`
	_, teErr := parseTokenAnswer(http.StatusBadRequest, "application/json", []byte(body))
	for _, tc := range []struct {
		name, msg string
		err       error
		want      map[string]string
	}{
		{"refused grant", "auth: token endpoint returned an error", teErr,
			map[string]string{"trace_id": trace, "entra_trace_id": "entra-trace", "entra_correlation_id": "entra-corr",
				"description": "AADSTS70000: bad  grant evil  [31mred "}},
		{"client credential unavailable", "auth: the service's client credential is unavailable; an operator must fix it",
			fmt.Errorf("%w: token file gone", errClientCredential), map[string]string{"trace_id": trace}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf syncBuffer
			logger := slog.New(requestLogHandler{slog.NewJSONHandler(&buf, nil)})
			af := &authFlow{logger: logger}
			h := logRequests(logger, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				af.tokenFailure(w, r, tc.err, "", restartLogin)
			}))
			r := httptest.NewRequest(http.MethodPost, "/auth/refresh", nil)
			r.Header.Set("traceparent", "00-"+trace+"-00f067aa0ba902b7-01")
			h.ServeHTTP(httptest.NewRecorder(), r)
			var line map[string]any
			for l := range strings.Lines(buf.String()) {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == tc.msg {
					line = m
				}
			}
			if line == nil {
				t.Fatalf("no log line %q in:\n%s", tc.msg, buf.String())
			}
			for k, want := range tc.want {
				if got, _ := line[k].(string); got != want {
					t.Errorf("log %s = %q; want %q", k, got, want)
				}
			}
		})
	}
}
