package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBodyCutByReadTimeoutIs408 sends the head of a POST and only part of
// its body, then stalls until the server's ReadTimeout passes: the answer is
// 408 Request Timeout with a JSON detail (RFC 9110 §15.5.9), not the 422 or
// 400 of a malformed body, for a hero create and for a token refresh.
func TestBodyCutByReadTimeoutIs408(t *testing.T) {
	p := newTestIDP(t)
	tests := []struct {
		name, path, contentType string
		h                       http.Handler
	}{
		{"hero create", "/api/heroes/", "application/json", heroMux(newMemoryStore())},
		{"token refresh", "/auth/refresh", "application/x-www-form-urlencoded", newTestServer(t, p, nil, io.Discard)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(tc.h)
			srv.Config.ReadTimeout = 300 * time.Millisecond
			srv.Start()
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 100\r\n\r\n{\"na", tc.path, tc.contentType)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			defer resp.Body.Close()
			var body apiError
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Errorf("answer is not JSON: %v", err)
			}
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("POST %s with a stalled body = %d %v; want 408", tc.path, resp.StatusCode, body.Detail)
			}
			if d, _ := body.Detail.(string); !strings.Contains(d, "time") {
				t.Errorf("detail = %v; want it to say the body did not arrive in time", body.Detail)
			}
		})
	}
}
