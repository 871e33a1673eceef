package main

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawGet sends path exactly as given (no client-side cleaning) and returns
// the status and body.
func rawGet(t *testing.T, s *server, method, path, key string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	if key != "" {
		req += "Authorization: Bearer " + key + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(r.Body).WriteTo(&b)
	return r.StatusCode, b.String()
}

// TestE2EPathsAreMatchedAsSent: a path fasthttp would decode or clean up is
// served by no route, so "/v1/..%2fmetrics" cannot reach the keyless
// /metrics past a proxy that forwards only /v1/.
func TestE2EPathsAreMatchedAsSent(t *testing.T) {
	t.Parallel()
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	for _, p := range []string{
		"/v1/..%2fmetrics", "/v1/%2e%2e/metrics", "/v1/../metrics", "/%6detrics",
		"//metrics", "/v1/./usage", "/v1/messages%2Fmsg_x", "/v1//usage",
	} {
		status, body := rawGet(t, s, "GET", p, key)
		if status != 404 || !strings.Contains(body, `"route_not_found"`) || strings.Contains(body, "walytic_") {
			t.Errorf("GET %s: %d %s; want 404 route_not_found", p, status, body)
		}
	}
	// One trailing slash is ignored on every route alike.
	for _, p := range []string{"/metrics", "/v1/usage", "/healthz/", "/v1/usage/", "/documentation/", "/openapi.json/"} {
		if status, body := rawGet(t, s, "GET", p, key); status != 200 {
			t.Errorf("GET %s: %d %s", p, status, body)
		}
	}
}

// TestE2EMethods: HEAD is answered like GET without a body; the operations
// routes take GET only.
func TestE2EMethods(t *testing.T) {
	t.Parallel()
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	for _, p := range []string{"/v1/messages", "/v1/usage", "/healthz", "/metrics", "/openapi.json"} {
		r := s.do(t, "HEAD", p, key, nil)
		if r.Status != 200 || len(r.Body) != 0 || r.Header.Get("X-Request-Id") == "" {
			t.Errorf("HEAD %s: %d, %d body bytes, request id %q", p, r.Status, len(r.Body), r.Header.Get("X-Request-Id"))
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json", "/documentation", "/documentation/postman.json"} {
		r := s.do(t, "DELETE", p, key, nil)
		if r.Status != 405 || r.Header.Get("Allow") != "GET" {
			t.Errorf("DELETE %s: %d Allow %q; want 405 Allow GET", p, r.Status, r.Header.Get("Allow"))
		}
	}
	r := s.do(t, "GET", "/v1/messages?"+strings.Repeat("q", 5000)+"=1", key, nil)
	e := mustAPIError(t, r, 400, "invalid_request", strings.Repeat("q", 40))
	if len(r.Body) > 1000 {
		t.Errorf("an unknown query parameter is echoed at length (%d bytes): %s", len(r.Body), e.Message)
	}
}
