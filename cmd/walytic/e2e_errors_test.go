package main

// End-to-end tests of the contract's error codes, their order, rate limits,
// quota, body size and idempotency.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/apikey"
)

func countOf(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

func sendBody(session, to, text string) map[string]string {
	return map[string]string{"sessionId": session, "to": to, "text": text}
}

// TestE2EErrorCodes answers every error code the sandbox can produce in the
// contract's shape and status, with the headers every response carries.
func TestE2EErrorCodes(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	s.mustCreateSandbox(t, key, sessA)
	unknownKey, err := apikey.New() // well-formed, checksum right, never issued
	if err != nil {
		t.Fatal(err)
	}
	typo := []byte(key)
	if typo[20] == 'x' {
		typo[20] = 'y'
	} else {
		typo[20] = 'x'
	}
	many := make([]string, 501)
	for i := range many {
		many[i] = fmt.Sprintf("9199999%05d", i)
	}

	const noKey = "-"
	cases := []struct {
		name         string
		method, path string
		key          string // "" = the test key, noKey = no Authorization
		auth         string // raw Authorization header, overrides key
		body         any
		hs           []header
		status       int
		code, param  string
	}{
		{name: "missing key", method: "GET", path: "/v1/messages", key: noKey, status: 401, code: "missing_api_key"},
		{name: "missing key on send", method: "POST", path: "/v1/messages", key: noKey, body: sendBody(sessA, rcptOK, "hi"), status: 401, code: "missing_api_key"},
		{name: "not a bearer", method: "GET", path: "/v1/usage", auth: "Basic dXNlcjpwYXNz", status: 401, code: "missing_api_key"},
		{name: "malformed key", method: "GET", path: "/v1/usage", key: "wlt_live_nope", status: 401, code: "invalid_api_key"},
		{name: "wrong prefix", method: "GET", path: "/v1/usage", key: "sk_live_" + key[9:], status: 401, code: "invalid_api_key"},
		{name: "mistyped key", method: "GET", path: "/v1/usage", key: string(typo), status: 401, code: "invalid_api_key"},
		{name: "well-formed unknown key", method: "GET", path: "/v1/usage", key: unknownKey, status: 401, code: "invalid_api_key"},
		{name: "bad JSON", method: "POST", path: "/v1/messages", body: `{"sessionId":"919876543210",`, status: 400, code: "invalid_request"},
		{name: "not JSON", method: "POST", path: "/v1/messages", body: `sessionId=919876543210&to=919999999999`, status: 400, code: "invalid_request"},
		{name: "array body", method: "POST", path: "/v1/messages", body: `[]`, status: 400, code: "invalid_request"},
		{name: "empty body", method: "POST", path: "/v1/messages", body: ``, status: 400, code: "invalid_request"},
		{name: "trailing data", method: "POST", path: "/v1/messages", body: `{"sessionId":"919876543210","to":"919999999999","text":"hi"} {}`, status: 400, code: "invalid_request"},
		{name: "not UTF-8", method: "POST", path: "/v1/messages", body: "{\"sessionId\":\"919876543210\",\"to\":\"919999999999\",\"text\":\"caf\xe9\"}", status: 400, code: "invalid_request"},
		{name: "half a surrogate pair", method: "POST", path: "/v1/messages", body: `{"sessionId":"919876543210","to":"919999999999","text":"\ud800"}`, status: 400, code: "invalid_request"},
		{name: "sessionId a number", method: "POST", path: "/v1/messages", body: `{"sessionId":919876543210,"to":"919999999999","text":"hi"}`, status: 400, code: "invalid_request", param: "sessionId"},
		{name: "to an array", method: "POST", path: "/v1/messages", body: `{"sessionId":"919876543210","to":["919999999999"],"text":"hi"}`, status: 400, code: "invalid_request", param: "to"},
		{name: "text an object", method: "POST", path: "/v1/messages", body: `{"sessionId":"919876543210","to":"919999999999","text":{"body":"hi"}}`, status: 400, code: "invalid_request", param: "text"},
		{name: "missing sessionId", method: "POST", path: "/v1/messages", body: map[string]string{"to": rcptOK, "text": "hi"}, status: 400, code: "invalid_request", param: "sessionId"},
		{name: "missing to", method: "POST", path: "/v1/messages", body: map[string]string{"sessionId": sessA, "text": "hi"}, status: 400, code: "invalid_request", param: "to"},
		{name: "missing text", method: "POST", path: "/v1/messages", body: map[string]string{"sessionId": sessA, "to": rcptOK}, status: 400, code: "invalid_request", param: "text"},
		{name: "empty text", method: "POST", path: "/v1/messages", body: sendBody(sessA, rcptOK, ""), status: 400, code: "invalid_request", param: "text"},
		{name: "unknown field", method: "POST", path: "/v1/messages", body: `{"sessionId":"919876543210","to":"919999999999","text":"hi","priority":"high"}`, status: 400, code: "invalid_request", param: "priority"},
		{name: "session id with plus", method: "POST", path: "/v1/messages", body: sendBody("+919876543210", rcptOK, "hi"), status: 400, code: "invalid_session_id", param: "sessionId"},
		{name: "session id with spaces", method: "POST", path: "/v1/messages", body: sendBody("91 98765 43210", rcptOK, "hi"), status: 400, code: "invalid_session_id", param: "sessionId"},
		{name: "session id 7 digits", method: "POST", path: "/v1/messages", body: sendBody("9198765", rcptOK, "hi"), status: 400, code: "invalid_session_id", param: "sessionId"},
		{name: "session id 16 digits", method: "POST", path: "/v1/messages", body: sendBody("9198765432101234", rcptOK, "hi"), status: 400, code: "invalid_session_id", param: "sessionId"},
		{name: "create session bad id", method: "POST", path: "/v1/sessions", body: map[string]string{"sessionId": "91-9876-543210", "driver": "sandbox"}, status: 400, code: "invalid_session_id", param: "sessionId"},
		{name: "get session bad id", method: "GET", path: "/v1/sessions/abc", status: 400, code: "invalid_session_id", param: "sessionId"},
		{name: "create session no driver", method: "POST", path: "/v1/sessions", body: map[string]string{"sessionId": "14155550999"}, status: 400, code: "invalid_request", param: "driver"},
		{name: "create session unknown driver", method: "POST", path: "/v1/sessions", body: map[string]string{"sessionId": "14155550999", "driver": "carrier-pigeon"}, status: 400, code: "invalid_request", param: "driver"},
		{name: "recipient with plus", method: "POST", path: "/v1/messages", body: sendBody(sessA, "+919999999999", "hi"), status: 400, code: "invalid_recipient", param: "to"},
		{name: "recipient too short", method: "POST", path: "/v1/messages", body: sendBody(sessA, "12345", "hi"), status: 400, code: "invalid_recipient", param: "to"},
		{name: "recipient empty", method: "POST", path: "/v1/messages", body: sendBody(sessA, "", "hi"), status: 400, code: "invalid_recipient", param: "to"},
		{name: "inbound bad sender", method: "POST", path: "/v1/sessions/" + sessA + "/sandbox/inbound", body: map[string]string{"from": "someone", "text": "hi"}, status: 400, code: "invalid_recipient", param: "from"},
		{name: "inbound empty text", method: "POST", path: "/v1/sessions/" + sessA + "/sandbox/inbound", body: map[string]string{"from": rcptOK, "text": ""}, status: 400, code: "invalid_request", param: "text"},
		{name: "inbound reply to no message", method: "POST", path: "/v1/sessions/" + sessA + "/sandbox/inbound", body: map[string]string{"from": rcptOK, "text": "hi", "replyTo": "msg_0000"}, status: 400, code: "invalid_request", param: "replyTo"},
		{name: "text 4097 ASCII", method: "POST", path: "/v1/messages", body: sendBody(sessA, rcptOK, strings.Repeat("a", 4097)), status: 400, code: "text_too_long", param: "text"},
		{name: "text 4097 emoji", method: "POST", path: "/v1/messages", body: sendBody(sessA, rcptOK, strings.Repeat("😀", 4097)), status: 400, code: "text_too_long", param: "text"},
		{name: "numbers not an array", method: "POST", path: "/v1/numbers/check", body: `{"sessionId":"919876543210","numbers":"919999999999"}`, status: 400, code: "invalid_request", param: "numbers"},
		{name: "numbers empty", method: "POST", path: "/v1/numbers/check", body: map[string]any{"sessionId": sessA, "numbers": []string{}}, status: 400, code: "invalid_request", param: "numbers"},
		{name: "numbers over 500", method: "POST", path: "/v1/numbers/check", body: map[string]any{"sessionId": sessA, "numbers": many}, status: 400, code: "invalid_request", param: "numbers"},
		{name: "unknown session send", method: "POST", path: "/v1/messages", body: sendBody("911111111111", rcptOK, "hi"), status: 404, code: "session_not_found", param: "sessionId"},
		{name: "unknown session get", method: "GET", path: "/v1/sessions/911111111111", status: 404, code: "session_not_found", param: "sessionId"},
		{name: "unknown session delete", method: "DELETE", path: "/v1/sessions/911111111111", status: 404, code: "session_not_found", param: "sessionId"},
		{name: "unknown session inbound", method: "POST", path: "/v1/sessions/911111111111/sandbox/inbound", body: map[string]string{"from": rcptOK, "text": "hi"}, status: 404, code: "session_not_found", param: "sessionId"},
		{name: "unknown session numbers", method: "POST", path: "/v1/numbers/check", body: map[string]any{"sessionId": "911111111111", "numbers": []string{rcptOK}}, status: 404, code: "session_not_found", param: "sessionId"},
		{name: "unknown message", method: "GET", path: "/v1/messages/msg_0000000000000000000a", status: 404, code: "message_not_found", param: "id"},
		{name: "nonsense message id", method: "GET", path: "/v1/messages/hello", status: 404, code: "message_not_found", param: "id"},
		{name: "session exists", method: "POST", path: "/v1/sessions", body: map[string]string{"sessionId": sessA, "driver": "sandbox"}, status: 409, code: "session_exists", param: "sessionId"},
		{name: "qr of sandbox session", method: "GET", path: "/v1/sessions/" + sessA + "/qr", status: 409, code: "session_not_pairing", param: "sessionId"},
		{name: "qr.png of sandbox session", method: "GET", path: "/v1/sessions/" + sessA + "/qr.png", status: 409, code: "session_not_pairing", param: "sessionId"},
		{name: "pairing code of sandbox session", method: "POST", path: "/v1/sessions/" + sessA + "/pairing-code", status: 409, code: "session_not_pairing", param: "sessionId"},
		{name: "not on WhatsApp", method: "POST", path: "/v1/messages", body: sendBody(sessA, rcptNot, "hi"), status: 422, code: "recipient_not_on_whatsapp", param: "to"},
		{name: "idempotency key 256 bytes", method: "POST", path: "/v1/messages", body: sendBody(sessA, rcptOK, "hi"), hs: []header{hdr("Idempotency-Key", strings.Repeat("k", 256))}, status: 400, code: "invalid_request", param: "Idempotency-Key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := c.key
			switch k {
			case "":
				k = key
			case noKey:
				k = ""
			}
			hs := c.hs
			if c.auth != "" {
				hs = append(hs, hdr("Authorization", c.auth))
				k = ""
			}
			r := s.do(t, c.method, c.path, k, c.body, hs...)
			e := mustAPIError(t, r, c.status, c.code, c.param)
			if c.status != 401 {
				mustRateLimitHeaders(t, r)
			}
			if c.code == "invalid_session_id" && !regexp.MustCompile(`\b[0-9]{8,15}\b`).MatchString(e.Message) {
				t.Errorf("invalid_session_id message %q gives no example number", e.Message)
			}
		})
	}

	// Racing creates of one session: one 201, the rest 409.
	var wg sync.WaitGroup
	created := make([]int, 8)
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := s.try("POST", "/v1/sessions", key, map[string]string{"sessionId": "14155550999", "driver": "sandbox"}); err == nil {
				created[i] = r.Status
			}
		}()
	}
	wg.Wait()
	if n201, n409 := countOf(created, 201), countOf(created, 409); n201 != 1 || n409 != 7 {
		t.Errorf("8 concurrent creates of one session: statuses %v, want one 201 and seven 409", created)
	}

	// Nothing above was stored or counted.
	if l := s.mustList(t, key, ""); len(l.Data) != 0 {
		t.Errorf("rejected requests stored messages: %+v", l.Data)
	}
	if u := s.mustUsage(t, key); u.Used != 0 {
		t.Errorf("rejected requests used quota: %+v", u)
	}

	// Bad numbers name the entry; limits of text are in code points.
	r := s.do(t, "POST", "/v1/numbers/check", key, map[string]any{"sessionId": sessA, "numbers": []string{rcptOK, "+44 7700"}})
	if e, err := checkErrorShape(r); err != nil || r.Status != 400 || e.Code != "invalid_recipient" || e.Param == nil || !strings.HasPrefix(*e.Param, "numbers") {
		t.Errorf("numbers/check with a bad number: want 400 invalid_recipient naming numbers: %s", r)
	}
	for _, text := range []string{strings.Repeat("é", 4096), strings.Repeat("😀", 4096), strings.Repeat("a", 4096)} {
		q := s.mustSend(t, key, sessA, rcptOK, text)
		if m := s.mustGetMessage(t, key, q.ID); m.Text != text {
			t.Errorf("4096-code-point text came back changed (%d bytes, want %d)", len(m.Text), len(text))
		}
	}

	// Every response has an X-Request-Id, a client's sane one echoed.
	r = s.do(t, "GET", "/v1/usage", key, nil, hdr("X-Request-Id", "trace-42"))
	if got := r.Header.Get("X-Request-Id"); got != "trace-42" {
		t.Logf("X-Request-Id not echoed (got %q); the contract only asks for one", got)
	}
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		id := s.do(t, "GET", "/healthz", "", nil).Header.Get("X-Request-Id")
		if id == "" || seen[id] {
			t.Errorf("X-Request-Id %q missing or repeated", id)
		}
		seen[id] = true
	}
}

// TestE2EErrorOrder checks that the first failing check in the contract's
// order answers: key, rate limit, body and fields, existence, quota.
func TestE2EErrorOrder(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	s.mustCreateSandbox(t, key, sessA)

	order := []struct {
		name        string
		key         string
		body        any
		status      int
		code, param string
	}{
		{"bad key before bad body", "wlt_live_nope", `{"broken`, 401, "invalid_api_key", ""},
		{"bad body before unknown session", key, `{"sessionId":"911111111111","to":1}`, 400, "invalid_request", "to"},
		{"bad recipient before unknown session", key, sendBody("911111111111", "12345", "hi"), 400, "invalid_recipient", "to"},
		{"long text before unknown session", key, sendBody("911111111111", rcptOK, strings.Repeat("x", 5000)), 400, "text_too_long", "text"},
		{"empty text before not on WhatsApp", key, sendBody(sessA, rcptNot, ""), 400, "invalid_request", "text"},
		{"unknown session before not on WhatsApp", key, sendBody("911111111111", rcptNot, "hi"), 404, "session_not_found", "sessionId"},
	}
	for _, c := range order {
		mustAPIError(t, s.do(t, "POST", "/v1/messages", c.key, c.body), c.status, c.code, c.param)
	}

	// A rate-limited key gets 429 whatever its body says.
	slow := s.mustCreateKey(t, "--rate-per-minute", "60", "--burst", "1")
	mustStatus(t, s.do(t, "GET", "/v1/usage", slow, nil), 200)
	for _, body := range []any{`{"broken`, sendBody("+1", "x", ""), sendBody("911111111111", rcptOK, "hi"), sendBody(sessA, rcptNot, "hi")} {
		r := s.do(t, "POST", "/v1/messages", slow, body)
		mustAPIError(t, r, 429, "rate_limited", "")
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("429 Retry-After %q, want whole seconds ≥ 1", r.Header.Get("Retry-After"))
		}
	}
	if l := s.mustList(t, key, ""); len(l.Data) != 0 {
		t.Errorf("rejected requests stored messages: %+v", l.Data)
	}
}

// TestE2ERateLimit: a key with burst 3 admits 3, then answers 429 with
// Retry-After; after waiting that long a request is admitted.
func TestE2ERateLimit(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	key := s.mustCreateKey(t, "--rate-per-minute", "60", "--burst", "3")
	for i := 0; i < 3; i++ {
		r := mustStatus(t, s.do(t, "GET", "/v1/usage", key, nil), 200)
		lim, rem, reset := mustRateLimitHeaders(t, r)
		if lim != 3 || rem != 2-i || reset < 1 || reset > 3 {
			t.Errorf("request %d: RateLimit-Limit %d Remaining %d Reset %d; want 3, %d, 1–3", i+1, lim, rem, reset, 2-i)
		}
	}
	r := s.do(t, "GET", "/v1/usage", key, nil)
	mustAPIError(t, r, 429, "rate_limited", "")
	if lim, rem, _ := mustRateLimitHeaders(t, r); lim != 3 || rem != 0 {
		t.Errorf("429: RateLimit-Limit %d Remaining %d; want 3 and 0", lim, rem)
	}
	// An invalid body on the limited key is still 429, and uses nothing.
	r = s.do(t, "POST", "/v1/messages", key, `{"nope`)
	mustAPIError(t, r, 429, "rate_limited", "")
	wait, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || wait < 1 || wait > 2 {
		t.Fatalf("Retry-After %q, want 1 or 2 whole seconds at 60/min", r.Header.Get("Retry-After"))
	}
	time.Sleep(time.Duration(wait) * time.Second) // the contract: waiting Retry-After gets a request in
	mustStatus(t, s.do(t, "GET", "/v1/usage", key, nil), 200)
	mustAPIError(t, s.do(t, "GET", "/v1/usage", key, nil), 429, "rate_limited", "")

	// Keys have separate allowances.
	other := s.mustCreateKey(t, "--rate-per-minute", "60", "--burst", "3")
	mustStatus(t, s.do(t, "GET", "/v1/usage", other, nil), 200)
}

// TestE2EQuota: a workspace with --monthly-quota 3 takes three sends; the
// fourth is 429 quota_exceeded with Retry-After and stores nothing.
func TestE2EQuota(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	out := s.mustCLI(t, "workspaces", "create", "shop", "--monthly-quota", "3")
	var ws struct {
		Name         string `json:"name"`
		MonthlyQuota *int64 `json:"monthlyQuota"`
	}
	if err := json.Unmarshal([]byte(out), &ws); err != nil || ws.Name != "shop" || ws.MonthlyQuota == nil || *ws.MonthlyQuota != 3 {
		t.Fatalf("workspaces create printed %q, want the workspace with monthlyQuota 3", out)
	}
	key := s.fastKey(t, "--workspace", "shop")
	s.mustCreateSandbox(t, key, sessA)

	first := s.mustSend(t, key, sessA, rcptOK, "one", hdr("Idempotency-Key", "first"))
	s.mustSend(t, key, sessA, rcptOK, "two")
	s.mustSend(t, key, sessA, rcptBad, "three") // fails later, but was accepted
	u := s.mustUsage(t, key)
	if u.Quota == nil || *u.Quota != 3 || u.Used != 3 || u.Remaining == nil || *u.Remaining != 0 {
		t.Fatalf("usage after 3 sends %+v, want quota 3 used 3 remaining 0", u)
	}

	r := s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "four"))
	mustAPIError(t, r, 429, "quota_exceeded", "")
	mustRateLimitHeaders(t, r)
	ra, err := strconv.ParseInt(r.Header.Get("Retry-After"), 10, 64)
	if want := u.ResetsAt - time.Now().Unix(); err != nil || ra < 1 || ra < want-5 || ra > want+5 {
		t.Errorf("quota Retry-After %q, want the seconds until the quota resets (≈ %d)", r.Header.Get("Retry-After"), want)
	}

	// Earlier checks still win over quota; none of them uses any.
	mustAPIError(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptNot, "x")), 422, "recipient_not_on_whatsapp", "to")
	mustAPIError(t, s.do(t, "POST", "/v1/messages", key, sendBody("911111111111", rcptOK, "x")), 404, "session_not_found", "sessionId")
	mustAPIError(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "")), 400, "invalid_request", "text")
	// A replay of an accepted send is its original 202, not a new send.
	r = mustStatus(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "one"), hdr("Idempotency-Key", "first")), 202)
	var replay queuedJSON
	mustDecode(t, r, &replay)
	if replay.ID != first.ID {
		t.Errorf("replay after the quota ran out: id %s, want %s", replay.ID, first.ID)
	}

	if l := s.mustList(t, key, "?direction=outbound"); len(l.Data) != 3 {
		t.Errorf("over-quota send stored something: %d outbound messages, want 3", len(l.Data))
	}
	if u := s.mustUsage(t, key); u.Used != 3 || *u.Remaining != 0 {
		t.Errorf("usage %+v, want used 3 remaining 0", u)
	}

	// Raising the quota takes effect for the next send.
	out = s.mustCLI(t, "workspaces", "set-quota", "shop", "4")
	if !strings.Contains(out, `"monthlyQuota": 4`) {
		t.Errorf("set-quota printed %q", out)
	}
	s.mustSend(t, key, sessA, rcptOK, "four")
	mustAPIError(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "five")), 429, "quota_exceeded", "")
	s.mustCLI(t, "workspaces", "set-quota", "shop", "0")
	s.mustSend(t, key, sessA, rcptOK, "five")
	if u := s.mustUsage(t, key); u.Used != 5 || u.Quota != nil || u.Remaining != nil {
		t.Errorf("usage after quota 0 (unlimited) %+v: want used 5, quota and remaining null", u)
	}

	// The default workspace is untouched.
	def := s.fastKey(t)
	if u := s.mustUsage(t, def); u.Used != 0 || u.Quota != nil {
		t.Errorf("default workspace usage %+v, want 0 of unlimited", u)
	}

	// Concurrent sends never take more than the quota.
	s.mustCLI(t, "workspaces", "create", "tight", "--monthly-quota", "10")
	tight := s.fastKey(t, "--workspace", "tight")
	s.mustCreateSandbox(t, tight, sessA)
	var wg sync.WaitGroup
	statuses := make([]int, 30)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := s.try("POST", "/v1/messages", tight, sendBody(sessA, rcptOK, fmt.Sprintf("race %d", i))); err == nil {
				statuses[i] = r.Status
			}
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, st := range statuses {
		count[st]++
	}
	if count[202] != 10 || count[429] != 20 {
		t.Errorf("30 concurrent sends on a quota of 10: statuses %v, want 10×202 and 20×429", count)
	}
	if u := s.mustUsage(t, tight); u.Used != 10 {
		t.Errorf("usage after the race %d, want 10", u.Used)
	}
	if l := s.mustList(t, tight, ""); len(l.Data) != 10 {
		t.Errorf("%d messages stored after the race, want 10", len(l.Data))
	}
}

// TestE2EPayloadTooLarge: a body over 1 MiB gets 413 in the error shape; a
// body of exactly 1 MiB is read and judged on its content.
func TestE2EPayloadTooLarge(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	s.mustCreateSandbox(t, key, sessA)

	body := func(size int) []byte {
		head := `{"sessionId":"919876543210","to":"919999999999","text":"`
		tail := `"}`
		return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
	}
	for _, size := range []int{1<<20 + 1, 1<<20 + 4096, 3 << 20} {
		req := fmt.Appendf(nil, "POST /v1/messages HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", s.addr, key, size)
		r, err := rawExchange(s.addr, append(req, body(size)...), 10*time.Second)
		if err != nil {
			t.Fatalf("%d-byte body: %v", size, err)
		}
		mustAPIError(t, r, 413, "payload_too_large", "")
	}
	// An ordinary client (Go's net/http, no Expect: 100-continue) must see
	// the 413 too, every time, not a reset connection.
	resets := 0
	var lastErr error
	for i := 0; i < 10; i++ {
		r, err := s.try("POST", "/v1/messages", key, body(1<<20+1))
		if err != nil {
			resets++
			lastErr = err
			continue
		}
		mustAPIError(t, r, 413, "payload_too_large", "")
	}
	if resets > 0 {
		t.Errorf("%d of 10 POSTs of 1 MiB + 1 through net/http got no 413, only a transport error: %v", resets, lastErr)
	}
	mustAPIError(t, s.do(t, "POST", "/v1/messages", key, body(1<<20)), 400, "text_too_long", "text")
	mustStatus(t, s.do(t, "GET", "/v1/usage", key, nil), 200)
	if l := s.mustList(t, key, ""); len(l.Data) != 0 {
		t.Errorf("oversized bodies stored %d messages", len(l.Data))
	}

	// The key and the rate limit are checked before the size, in the
	// contract's order. A body over 1 MiB is read whole (and answered 413 on
	// a connection that stays usable) only for a valid key, up to 8 MiB;
	// without one it is refused unread, from its Content-Length: these
	// requests send the headers alone, and the answer must come all the same.
	slow := s.mustCreateKey(t, "--rate-per-minute", "1", "--burst", "2")
	oversized := func(size int, auth string, send bool) *apiResp {
		t.Helper()
		head := fmt.Sprintf("POST /v1/messages HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n", s.addr, auth, size)
		req := []byte(head)
		if send {
			req = append(req, body(size)...)
		}
		r, err := rawExchange(s.addr, req, 10*time.Second)
		if err != nil {
			t.Fatalf("%d-byte body (sent: %v), auth %q: %v", size, send, auth, err)
		}
		return r
	}
	for _, size := range []int{1<<20 + 1, 4 << 20, 9 << 20} {
		mustAPIError(t, oversized(size, "", false), 401, "missing_api_key", "")
		mustAPIError(t, oversized(size, "Authorization: Bearer wlt_live_nope\r\n", false), 401, "invalid_api_key", "")
		// Two headers are no credential, even if the first holds a valid key.
		mustAPIError(t, oversized(size, "Authorization: Bearer "+key+"\r\nAuthorization: Bearer wlt_live_nope\r\n", false), 401, "invalid_api_key", "")
	}
	mustAPIError(t, oversized(1<<20+1, "Authorization: Bearer "+slow+"\r\n", true), 413, "payload_too_large", "")
	mustAPIError(t, oversized(9<<20, "Authorization: Bearer "+slow+"\r\n", false), 413, "payload_too_large", "")
	// The slow key's two admitted 413s used its burst of 2.
	mustAPIError(t, oversized(1<<20+1, "Authorization: Bearer "+slow+"\r\n", true), 429, "rate_limited", "")
	mustAPIError(t, s.do(t, "GET", "/v1/usage", slow, nil), 429, "rate_limited", "")
}

// TestE2EIdempotency: the same Idempotency-Key and body replay the original
// 202; a different body is 409; workspaces do not share keys.
func TestE2EIdempotency(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	s.mustCreateSandbox(t, key, sessA)
	idem := hdr("Idempotency-Key", "order-1042-confirmation")

	q1 := s.mustSend(t, key, sessA, rcptOK, "Order 1042 confirmed", idem)
	r := mustStatus(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "Order 1042 confirmed"), idem), 202)
	var q2 queuedJSON
	mustDecode(t, r, &q2)
	if q2 != q1 {
		t.Errorf("replay answered %+v, want the original %+v", q2, q1)
	}
	if r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay lacks the README's Idempotent-Replayed: true header: %v", r.Header)
	}
	for _, diff := range []map[string]string{
		sendBody(sessA, rcptOK, "Order 1042 cancelled"),
		sendBody(sessA, "919999999998", "Order 1042 confirmed"),
	} {
		mustAPIError(t, s.do(t, "POST", "/v1/messages", key, diff, idem), 409, "idempotency_key_reused", "Idempotency-Key")
	}
	s.mustWaitStatus(t, key, q1.ID, "read", 3*time.Second)
	r = mustStatus(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "Order 1042 confirmed"), idem), 202)
	mustDecode(t, r, &q2)
	if q2.ID != q1.ID {
		t.Errorf("replay after the message was read: id %s, want %s", q2.ID, q1.ID)
	}
	if l := s.mustList(t, key, ""); len(l.Data) != 1 {
		t.Errorf("replays stored messages: %d, want 1", len(l.Data))
	}
	if u := s.mustUsage(t, key); u.Used != 1 {
		t.Errorf("replays used quota: used %d, want 1", u.Used)
	}

	// Concurrent requests with one key make one message.
	var wg sync.WaitGroup
	got := make([]string, 12)
	errs := make([]string, 12)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.try("POST", "/v1/messages", key, sendBody(sessA, rcptOK, "concurrent"), hdr("Idempotency-Key", "burst-7"))
			switch {
			case err != nil:
				errs[i] = err.Error()
			case r.Status != 202:
				errs[i] = r.String()
			default:
				var q queuedJSON
				_ = json.Unmarshal(r.Body, &q)
				got[i] = q.ID
			}
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != "" {
			t.Fatalf("concurrent idempotent send: %s", errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("concurrent sends with one Idempotency-Key got different ids: %v", got)
		}
	}

	// 255 bytes is the longest key.
	s.mustSend(t, key, sessA, rcptOK, "long key", hdr("Idempotency-Key", strings.Repeat("k", 255)))
	mustAPIError(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "longer key"), hdr("Idempotency-Key", strings.Repeat("k", 256))),
		400, "invalid_request", "Idempotency-Key")
	if u := s.mustUsage(t, key); u.Used != 3 {
		t.Errorf("usage used %d, want 3", u.Used)
	}

	// Another workspace may use the same key for its own message.
	s.mustCLI(t, "workspaces", "create", "b")
	keyB := s.fastKey(t, "--workspace", "b")
	s.mustCreateSandbox(t, keyB, sessA)
	qb := s.mustSend(t, keyB, sessA, rcptOK, "Order 1042 shipped", idem) // different body: no conflict across workspaces
	if qb.ID == q1.ID {
		t.Fatalf("workspace b got workspace a's message id")
	}
	r = mustStatus(t, s.do(t, "POST", "/v1/messages", keyB, sendBody(sessA, rcptOK, "Order 1042 shipped"), idem), 202)
	mustDecode(t, r, &q2)
	if q2.ID != qb.ID {
		t.Errorf("replay in workspace b: id %s, want %s", q2.ID, qb.ID)
	}
	mustAPIError(t, s.do(t, "POST", "/v1/messages", keyB, sendBody(sessA, rcptOK, "Order 1042 confirmed"), idem), 409, "idempotency_key_reused", "Idempotency-Key")
	if u := s.mustUsage(t, keyB); u.Used != 1 {
		t.Errorf("workspace b usage %d, want 1", u.Used)
	}
	if u := s.mustUsage(t, key); u.Used != 3 {
		t.Errorf("workspace a usage %d, want 3", u.Used)
	}
	// And workspace a's replay still answers a's message.
	r = mustStatus(t, s.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "Order 1042 confirmed"), idem), 202)
	mustDecode(t, r, &q2)
	if q2.ID != q1.ID {
		t.Errorf("workspace a replay after b used the key: %s, want %s", q2.ID, q1.ID)
	}
}

// TestE2EOversizedBodyOnAnOldConnection: a body refused before it is read
// is charged at the present, not at the time of the previous request on
// its connection (all fasthttp knows then): its 429 states the true wait,
// and it gives the key no allowance back (400 requests in 0.14 s once got
// through this way with a burst of 100).
func TestE2EOversizedBodyOnAnOldConnection(t *testing.T) {
	t.Parallel()
	s := mustStartServer(t, newDataDir(t))
	key := s.mustCreateKey(t, "--rate-per-minute", "60", "--burst", "3")
	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if r, err := http.ReadResponse(br, nil); err != nil || r.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	time.Sleep(5 * time.Second) // longer than the key's burst takes to refill (3 s)

	for i := 0; s.do(t, "GET", "/v1/usage", key, nil).Status == 200; i++ {
		if i > 10 {
			t.Fatal("a key with a burst of 3 was never limited")
		}
	}
	head := "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nContent-Length: 9437184\r\n\r\n"
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("oversized body on the old connection: %v", err)
	}
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "1" {
		t.Errorf("oversized body with the burst used: %d, Retry-After %q; want 429 and 1 s", r.StatusCode, r.Header.Get("Retry-After"))
	}
	mustAPIError(t, s.do(t, "GET", "/v1/usage", key, nil), 429, "rate_limited", "")
}
