package main

// End-to-end test of hostile input: no body, path, method or header makes the
// server answer 5xx, hang, or drop a connection without an answer.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// mustNot5xx requires an answer below 500; an error answer must have the
// contract's shape.
func mustNot5xx(t *testing.T, what string, r *apiResp) {
	t.Helper()
	if r.Status >= 500 {
		t.Errorf("%s: %s", what, r)
		return
	}
	if r.Status >= 400 && r.method != "HEAD" { // a HEAD answer has no body
		if _, err := checkErrorShape(r); err != nil {
			t.Errorf("%s: %v: %s", what, err, r)
		}
	}
}

// randomJSONValue makes a random JSON value, sometimes of the right type.
func randomJSONValue(rng *rand.Rand, depth int) any {
	switch n := rng.IntN(12); {
	case n == 0:
		return nil
	case n == 1:
		return rng.IntN(2) == 0
	case n == 2:
		return rng.Float64() * 1e12
	case n == 3:
		return rng.Int64()
	case n == 4 && depth < 3:
		a := make([]any, rng.IntN(4))
		for i := range a {
			a[i] = randomJSONValue(rng, depth+1)
		}
		return a
	case n == 5 && depth < 3:
		m := map[string]any{}
		for i := rng.IntN(4); i > 0; i-- {
			m[randomString(rng, 8)] = randomJSONValue(rng, depth+1)
		}
		return m
	case n == 6:
		return fmt.Sprintf("9198%08d", rng.IntN(1e8)) // a plausible number
	case n == 7:
		return []string{"919999999999", randomString(rng, 12)}
	case n == 8:
		return strings.Repeat(randomString(rng, 3), rng.IntN(3000))
	default:
		return randomString(rng, rng.IntN(40))
	}
}

// randomString mixes digits, letters, control characters, NULs, surrogates
// and other Unicode.
func randomString(rng *rand.Rand, n int) string {
	pool := []rune("0123456789+ -abcXYZ\x00\x01\t\n\"\\/\u00e9\u200b\u202e\ufeff\U0001F600\uffff")
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteRune(pool[rng.IntN(len(pool))])
	}
	return b.String()
}

// randomBody makes one hostile body for a route whose fields are fields.
func randomBody(rng *rand.Rand, fields []string) []byte {
	switch rng.IntN(8) {
	case 0: // random bytes
		b := make([]byte, rng.IntN(512))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	case 1: // a valid-looking object, then mangled
		b, _ := json.Marshal(objectOf(rng, fields))
		switch rng.IntN(4) {
		case 0:
			return b[:rng.IntN(len(b)+1)]
		case 1:
			b[rng.IntN(len(b))] ^= byte(1 << rng.IntN(8))
			return b
		case 2:
			return append(b, b...)
		default:
			return append([]byte("\xef\xbb\xbf"), b...) // a byte-order mark
		}
	case 2: // invalid UTF-8 inside strings
		return []byte(`{"` + fields[0] + `":"\xff\xfe\xc3","` + fields[len(fields)-1] + `":"a\xed\xa0\x80b"}`)
	case 3: // duplicate keys and unknown fields
		var b strings.Builder
		b.WriteString("{")
		for i, f := range append(fields, fields...) {
			if i > 0 {
				b.WriteString(",")
			}
			v, _ := json.Marshal(randomJSONValue(rng, 0))
			fmt.Fprintf(&b, "%q:%s", f, v)
		}
		fmt.Fprintf(&b, `,"%s":1}`, randomString(rng, 5))
		return []byte(b.String())
	case 4: // not an object
		v, _ := json.Marshal(randomJSONValue(rng, 0))
		return v
	default: // every field, random types
		b, _ := json.Marshal(objectOf(rng, fields))
		return b
	}
}

func objectOf(rng *rand.Rand, fields []string) map[string]any {
	m := map[string]any{}
	for _, f := range fields {
		if rng.IntN(6) > 0 {
			m[f] = randomJSONValue(rng, 0)
		}
	}
	return m
}

// TestE2EHostileInput throws malformed bodies, paths, methods and raw HTTP at
// the server: every answer is below 500 and in the error shape, and the
// server keeps serving.
func TestE2EHostileInput(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	s.mustCreateSandbox(t, key, sessA)
	// check requires an answer below 500 in the error shape that does not
	// echo the caller's API key (answers get logged by proxies and clients).
	check := func(what string, r *apiResp) {
		t.Helper()
		mustNot5xx(t, what, r)
		if r.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id: %s", what, r)
		}
		if strings.Contains(string(r.Body), key[9:]) {
			t.Errorf("%s: the answer echoes the API key from the request: %s", what, r)
		}
	}

	routes := []struct {
		path   string
		fields []string
	}{
		{"/v1/messages", []string{"sessionId", "to", "text"}},
		{"/v1/sessions", []string{"sessionId", "driver"}},
		{"/v1/numbers/check", []string{"sessionId", "numbers"}},
		{"/v1/sessions/" + sessA + "/sandbox/inbound", []string{"from", "text"}},
	}

	// Hand-picked bodies, on every route.
	huge := strings.Repeat("9", 1<<20-200)
	deep := strings.Repeat("[", 100_000)
	fixed := []string{
		``, ` `, `null`, `[]`, `[{}]`, `"text"`, `42`, `true`, `{}`, `{`, `}`, `{"a":}`, `{"a" "b"}`,
		deep, `{"sessionId":` + deep, `{"text":` + strings.Repeat(`{"a":`, 50_000),
		`{"sessionId":"` + huge + `"}`, `{"text":"` + huge + `"}`, `{"numbers":["` + huge + `"]}`,
		`{"sessionId":null,"to":null,"text":null,"from":null,"numbers":null,"driver":null}`,
		`{"sessionId":[],"to":{},"text":[1],"from":1.5,"numbers":{},"driver":false}`,
		`{"sessionId":"919876543210","to":"919999999999","text":"a\u0000b","from":"919999999999","numbers":["919999999999"],"driver":"sandbox"}`,
		`{"sessionId":"9198765\u000043210","to":"9199\u00009999999","text":"nul","from":"\u0000","numbers":["\u0000"],"driver":"sand\u0000box"}`,
		`{"sessionId":"919876543210","sessionId":"x","to":"919999999999","to":1,"text":"dup"}`,
		`{"sessionId":"919876543210","to":"919999999999","text":"\ud800"}`,
		`{"sessionId":"919876543210","to":"919999999999","text":"hi","extra":{"nested":[1,2,3]}}`,
		`{"sessionId":"919876543210","to":"919999999999","text":"hi"}` + strings.Repeat(" ", 1000) + `x`,
		`{"sessionId":1e400,"to":-0,"text":1e-400}`,
		`{"numbers":[` + strings.Repeat(`"919999999999",`, 10_000) + `"919999999999"],"sessionId":"919876543210"}`,
		"\xff\xfe\x00{\x00}", "\x00\x00\x00\x00", "{\"sessionId\":\"\xff\xff\"}",
	}
	for _, rt := range routes {
		for i, body := range fixed {
			r, err := s.try("POST", rt.path, key, body)
			if err != nil {
				t.Errorf("POST %s fixed body %d: no answer: %v", rt.path, i, err)
				continue
			}
			check(fmt.Sprintf("POST %s fixed body %d (%.60q)", rt.path, i, body), r)
		}
	}

	// Seeded random bodies.
	rng := rand.New(rand.NewPCG(20261126, 7))
	n := 0
	for round := 0; round < 90; round++ {
		for _, rt := range routes {
			body := randomBody(rng, rt.fields)
			r, err := s.try("POST", rt.path, key, body)
			n++
			if err != nil {
				t.Errorf("POST %s random body %q: no answer: %v", rt.path, body, err)
				continue
			}
			check(fmt.Sprintf("POST %s random body %.80q", rt.path, body), r)
		}
	}
	t.Logf("%d random bodies sent", n)

	// Headers: Idempotency-Key too long, odd, or binary.
	for _, c := range []struct {
		name, value string
		status      int
	}{
		{"256 chars", strings.Repeat("x", 256), 400},
		{"4 KiB", strings.Repeat("y", 4096), 400},
		{"UTF-8", "ключ-😀", 202},
		{"spaces", "  padded key  ", 202},
	} {
		r := s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "idempotency "+c.name), hdr("Idempotency-Key", c.value))
		check("Idempotency-Key "+c.name, r)
		if r.Status != c.status {
			t.Errorf("Idempotency-Key %s: %s, want %d", c.name, r, c.status)
		}
		if c.status == 400 {
			if e, _ := checkErrorShape(r); e.Code != "invalid_request" {
				t.Errorf("Idempotency-Key %s: code %q, want invalid_request", c.name, e.Code)
			}
		}
	}

	// Paths and methods through an ordinary client.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/messages/" + strings.Repeat("m", 2000)},
		{"GET", "/v1/messages/msg_%00"},
		{"GET", "/v1/messages/..%2F..%2Fmsg"},
		{"GET", "/v1/messages/%2e%2e/%2e%2e/usage"},
		{"GET", "/v1/sessions/" + sessA + "/../../usage"},
		{"GET", "//v1//messages//"},
		{"GET", "/v1/messages/" + "%F0%9F%98%80"},
		{"GET", "/v1/" + strings.Repeat("a/", 500)},
		{"GET", "/v1/sessions/" + strings.Repeat("9", 40)},
		{"GET", "/v1/sessions/" + sessA + "/qr/extra"},
		{"GET", "/v1"},
		{"GET", "/"},
		{"GET", "/v2/messages"},
		{"PUT", "/v1/messages"},
		{"PATCH", "/v1/sessions/" + sessA},
		{"DELETE", "/v1/messages"},
		{"OPTIONS", "/v1/messages"},
		{"HEAD", "/v1/messages"},
		{"TRACE", "/v1/messages"},
		{"PROPFIND", "/v1/sessions"},
		{"BREW", "/v1/numbers/check"},
		{"get", "/v1/usage"},
		{"POST", "/v1/usage"},
		{"POST", "/healthz"},
		{"DELETE", "/admin/v1/keys/x"},
		{"POST", "/admin/v1/workspaces"},
	} {
		r, err := s.try(c.method, c.path, key, nil)
		if err != nil {
			t.Errorf("%s %.80s: no answer: %v", c.method, c.path, err)
			continue
		}
		check(c.method+" "+c.path, r)
		if strings.HasPrefix(c.path, "/admin/") && r.Status < 400 {
			t.Errorf("admin route on the public port without the admin token: %s", r)
		}
	}

	// Raw HTTP a client library would not send.
	raw := []string{
		"GET /v1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n\r\n",
		"GET /v1/" + strings.Repeat("x", 16<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/usage HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 64<<10) + "\r\n\r\n",
		"GET /v1/messages/\x00 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n\r\n",
		"GET /v1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\x00\r\n\r\n",
		"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nIdempotency-Key: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nContent-Length: -5\r\n\r\n",
		"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
		"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
		"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"BREW /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n\r\n",
		"GET /v1/usage\r\n\r\n",
		"GET http://evil.example/v1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n\r\n",
		"GET /v1/usage HTTP/9.9\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n\r\n",
		"GET /v1/usage HTTP/1.1\r\nHost: x\r\nbroken header line\r\n\r\n",
		"GET /v1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("A", 3000) + "\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not really TLS\r\n\r\n",
		"GARBAGE\r\n\r\n",
	}
	for _, req := range raw {
		r, err := rawExchange(s.addr, []byte(req), 10*time.Second)
		if err != nil {
			t.Errorf("raw request %.60q: %v", req, err)
			continue
		}
		check(fmt.Sprintf("raw request %.60q", req), r)
	}

	// Still healthy, still sending.
	if !s.alive() {
		t.Fatalf("the server died")
	}
	mustStatus(t, s.do(t, "GET", "/healthz", "", nil), 200)
	s.mustWaitStatus(t, key, s.mustSend(t, key, sessA, rcptOK, "still fine").ID, "read", 3*time.Second)
	for _, l := range s.stderr.lines() {
		if strings.Contains(l, "panic") || strings.Contains(l, `"level":"ERROR"`) {
			t.Errorf("server logged an error: %s", l)
		}
		// fasthttp quotes malformed requests in its own log lines, the
		// Authorization header included.
		if strings.Contains(l, key[len("wlt_live_"):]) || !json.Valid([]byte(l)) {
			t.Errorf("server logged the API key, or a line that is not JSON: %s", l)
		}
	}
}
