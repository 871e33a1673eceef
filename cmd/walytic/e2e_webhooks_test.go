package main

// End-to-end tests of webhooks (CONTRACT.md §3 "Webhooks"): the real binary
// delivers to httptest receivers on loopback, so every server here runs with
// --webhook-allow-private and a short --webhook-retry-schedule. The tests are
// parallel with each other (at most GOMAXPROCS at a time): most of their time
// is spent waiting for deliveries and retries, not computing.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/webhook"
)

// hookSchedule is the retry schedule of most tests: three quick retries.
const hookSchedule = "200ms,200ms,200ms"

// mustStartHookServer starts a server that may deliver to loopback
// receivers, with the given retry schedule.
func mustStartHookServer(t *testing.T, dataDir, schedule string, extra ...string) *server {
	t.Helper()
	return mustStartServer(t, dataDir, append([]string{"--webhook-allow-private", "--webhook-retry-schedule", schedule}, extra...)...)
}

// ---------------------------------------------------------------------------
// Receiver

// hookReq is one request a receiver got, as it came off the wire.
type hookReq struct {
	Method           string
	RequestURI       string // as received
	wantURI          string // of the URL the receiver was registered under
	Header           http.Header
	Body             []byte
	ContentLength    int64
	TransferEncoding []string
	At               time.Time
	Attempt          int // how many requests with this X-Walytic-Delivery the receiver had got, this one included
	Answered         int // the status the receiver answered (0: it hung up)

	ev  hookEvent
	raw map[string]json.RawMessage
}

func (r *hookReq) id() string    { return r.Header.Get("X-Walytic-Delivery") }
func (r *hookReq) event() string { return r.Header.Get("X-Walytic-Event") }

// hookEvent is a delivery's body.
type hookEvent struct {
	ID          string  `json:"id"`
	Event       string  `json:"event"`
	SessionID   string  `json:"sessionId"`
	Timestamp   int64   `json:"timestamp"`
	MessageID   string  `json:"messageId"`
	From        *string `json:"from"`
	To          string  `json:"to"`
	Text        string  `json:"text"`
	WAMessageID string  `json:"waMessageId"`
	Reason      string  `json:"reason"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Context *contextJSON `json:"context"`
}

// hookAnswer decides the status of a request; attempt counts requests with
// the same X-Walytic-Delivery, from 1. It may block, watching r's context.
type hookAnswer func(r *http.Request, ev *hookEvent, attempt int) int

var hookReceivers atomic.Int64

// hookReceiver is a webhook endpoint on loopback that records every request.
type hookReceiver struct {
	srv      *httptest.Server
	url      string
	uri      string                 // path and query of url
	location atomic.Pointer[string] // Location header of 3xx answers
	answer   atomic.Pointer[hookAnswer]
	mu       sync.Mutex
	reqs     []hookReq
	tries    map[string]int
	changed  chan struct{}
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{tries: map[string]int{}, changed: make(chan struct{})}
	rc.setAnswer(func(*http.Request, *hookEvent, int) int { return 200 })
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	rc.uri = fmt.Sprintf("/hooks/walytic?token=%d", hookReceivers.Add(1))
	rc.url = rc.srv.URL + rc.uri
	t.Cleanup(func() {
		rc.srv.CloseClientConnections()
		rc.srv.Close()
	})
	return rc
}

func (rc *hookReceiver) setAnswer(f hookAnswer) { rc.answer.Store(&f) }

// answerAll makes every request get status.
func (rc *hookReceiver) answerAll(status int) {
	rc.setAnswer(func(*http.Request, *hookEvent, int) int { return status })
}

func (rc *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	req := hookReq{Method: r.Method, RequestURI: r.RequestURI, wantURI: rc.uri, Header: r.Header.Clone(), Body: body, ContentLength: r.ContentLength,
		TransferEncoding: slices.Clone(r.TransferEncoding), At: time.Now()}
	_ = json.Unmarshal(body, &req.ev)
	_ = json.Unmarshal(body, &req.raw)
	rc.mu.Lock()
	rc.tries[req.id()]++
	req.Attempt = rc.tries[req.id()]
	rc.mu.Unlock()
	status := (*rc.answer.Load())(r, &req.ev, req.Attempt)
	if r.Context().Err() == nil {
		req.Answered = status
		if loc := rc.location.Load(); loc != nil && status >= 300 && status < 400 {
			w.Header().Set("Location", *loc)
		}
		w.WriteHeader(status)
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, req)
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
}

// all returns every request so far, in the order they were answered.
func (rc *hookReceiver) all() []hookReq {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

// waitUntil waits until ok holds for the requests received, and returns them.
func (rc *hookReceiver) waitUntil(t *testing.T, timeout time.Duration, what string, ok func([]hookReq) bool) []hookReq {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		reqs, changed := slices.Clone(rc.reqs), rc.changed
		rc.mu.Unlock()
		if ok(reqs) {
			return reqs
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("receiver: no %s within %v; it got %d requests: %s", what, timeout, len(reqs), summarize(reqs))
		}
	}
}

// waitEvent waits for a request with the event type about the message (or
// session event, messageID "") and returns the first such request.
func (rc *hookReceiver) waitEvent(t *testing.T, typ, messageID string) hookReq {
	t.Helper()
	var found hookReq
	rc.waitUntil(t, 10*time.Second, typ+" for "+messageID, func(rs []hookReq) bool {
		for _, r := range rs {
			if r.event() == typ && r.ev.MessageID == messageID {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// summarize lists requests briefly for failure messages.
func summarize(rs []hookReq) string {
	var b strings.Builder
	for i, r := range rs {
		if i == 40 {
			fmt.Fprintf(&b, " … (%d more)", len(rs)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s %s msg=%s try=%d → %d", r.event(), r.id(), r.ev.MessageID, r.Attempt, r.Answered)
	}
	return b.String()
}

// forMessage returns the requests about one message.
func forMessage(rs []hookReq, messageID string) []hookReq {
	var out []hookReq
	for _, r := range rs {
		if r.ev.MessageID == messageID {
			out = append(out, r)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Checks

var (
	secretRE = regexp.MustCompile(`^whsec_[A-Za-z0-9+/]+={0,2}$`)
	hexSigRE = regexp.MustCompile(`^sha256=[0-9a-f]{64}$`)
	v1SigRE  = regexp.MustCompile(`^v1,[A-Za-z0-9+/]{43}=$`)
)

// mustCheckSecret requires "whsec_" + standard base64 of 32 bytes.
func mustCheckSecret(t *testing.T, secret string) {
	t.Helper()
	if !secretRE.MatchString(secret) {
		t.Fatalf("secret %q is not whsec_ + base64", secret)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret %q: want base64 of 32 random bytes, got %d bytes (%v)", secret, len(raw), err)
	}
}

// expectedSigs computes, with the standard library alone, the contract's
// X-Walytic-Signature and webhook-signature values of one secret.
func expectedSigs(t *testing.T, secret, id, ts string, body []byte) (hexSig, v1Sig string) {
	t.Helper()
	m := hmac.New(sha256.New, []byte(secret)) // the whole secret string, whsec_ included
	m.Write(body)
	hexSig = "sha256=" + hex.EncodeToString(m.Sum(nil))
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	m = hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	v1Sig = "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	return hexSig, v1Sig
}

// mustCheckDelivery checks a request against the contract: method, headers,
// Content-Length, and one signature per live secret in both signature
// headers, each verifying with the standard library and with webhook.Verify.
func mustCheckDelivery(t *testing.T, r hookReq, secrets ...string) {
	t.Helper()
	where := fmt.Sprintf("delivery %s (%s, attempt %d)", r.id(), r.event(), r.Attempt)
	if r.Method != "POST" || r.RequestURI != r.wantURI {
		t.Errorf("%s: %s %s, want POST %s (the registered URL's path and query)", where, r.Method, r.RequestURI, r.wantURI)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", where, ct)
	}
	if r.ContentLength <= 0 || r.ContentLength != int64(len(r.Body)) || len(r.TransferEncoding) != 0 {
		t.Errorf("%s: Content-Length %d for a %d-byte body, Transfer-Encoding %q; want a Content-Length, not chunked",
			where, r.ContentLength, len(r.Body), r.TransferEncoding)
	}
	if !json.Valid(r.Body) {
		t.Fatalf("%s: body is not JSON: %q", where, r.Body)
	}
	id, ts := r.id(), r.Header.Get("X-Walytic-Timestamp")
	if id == "" || id != r.ev.ID || r.Header.Get("webhook-id") != id || strings.Contains(id, ".") {
		t.Errorf("%s: X-Walytic-Delivery %q, webhook-id %q, body id %q: want one id, the same in all three, without '.'",
			where, id, r.Header.Get("webhook-id"), r.ev.ID)
	}
	if r.event() != r.ev.Event || r.ev.Event == "" {
		t.Errorf("%s: X-Walytic-Event %q, body event %q", where, r.event(), r.ev.Event)
	}
	if r.Header.Get("webhook-timestamp") != ts {
		t.Errorf("%s: webhook-timestamp %q != X-Walytic-Timestamp %q", where, r.Header.Get("webhook-timestamp"), ts)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < r.At.Unix()-5 || sec > r.At.Unix()+1 {
		t.Errorf("%s: X-Walytic-Timestamp %q, want the Unix seconds of the attempt (%d)", where, ts, r.At.Unix())
	}
	hexSigs := strings.Split(r.Header.Get("X-Walytic-Signature"), ",")
	v1Sigs := strings.Split(r.Header.Get("webhook-signature"), " ")
	if len(hexSigs) != len(secrets) || len(v1Sigs) != len(secrets) {
		t.Fatalf("%s: X-Walytic-Signature %q and webhook-signature %q: want %d signature(s) each, one per live secret",
			where, r.Header.Get("X-Walytic-Signature"), r.Header.Get("webhook-signature"), len(secrets))
	}
	for i := range hexSigs {
		if !hexSigRE.MatchString(hexSigs[i]) || !v1SigRE.MatchString(v1Sigs[i]) {
			t.Errorf("%s: signature values %q / %q are not sha256=<lowercase hex> / v1,<base64>", where, hexSigs[i], v1Sigs[i])
		}
	}
	for _, s := range secrets {
		wantHex, wantV1 := expectedSigs(t, s, id, ts, r.Body)
		if !slices.Contains(hexSigs, wantHex) {
			t.Errorf("%s: no X-Walytic-Signature value verifies with secret …%s (HMAC-SHA256 of the raw body keyed with the whole secret)", where, s[len(s)-6:])
		}
		if !slices.Contains(v1Sigs, wantV1) {
			t.Errorf("%s: no webhook-signature value verifies with secret …%s (Standard Webhooks v1)", where, s[len(s)-6:])
		}
		if err := webhook.Verify(s, r.Body, r.Header, r.At); err != nil {
			t.Errorf("%s: webhook.Verify with secret …%s: %v", where, s[len(s)-6:], err)
		}
		// X-Walytic-Signature alone (a receiver that ignores the webhook-* headers).
		h := http.Header{}
		for _, k := range []string{"X-Walytic-Signature", "X-Walytic-Timestamp"} {
			h.Set(k, r.Header.Get(k))
		}
		if err := webhook.VerifyXWalytic(s, r.Body, h, r.At, 0); err != nil {
			t.Errorf("%s: webhook.VerifyXWalytic on X-Walytic-Signature alone: %v", where, err)
		}
		if err := webhook.Verify(s, r.Body, h, r.At); !errors.Is(err, webhook.ErrNoSignature) {
			t.Errorf("%s: webhook.Verify without the Standard Webhooks headers = %v, want ErrNoSignature", where, err)
		}
	}
	// A different body or secret does not verify.
	if len(secrets) > 0 {
		if err := webhook.Verify(secrets[0], append(slices.Clone(r.Body), ' '), r.Header, r.At); !errors.Is(err, webhook.ErrBadSignature) {
			t.Errorf("%s: webhook.Verify of an altered body = %v, want ErrBadSignature", where, err)
		}
	}
	other, _ := webhook.NewSecret()
	if err := webhook.Verify(other, r.Body, r.Header, r.At); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("%s: webhook.Verify with an unrelated secret = %v, want ErrBadSignature", where, err)
	}
}

// mustPayload checks the body's exact field set and common values.
func mustPayload(t *testing.T, r hookReq, typ, sessionID string, fields ...string) {
	t.Helper()
	want := append([]string{"id", "event", "sessionId", "timestamp"}, fields...)
	var got []string
	for k := range r.raw {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s body has fields %v, want %v: %s", typ, got, want, r.Body)
	}
	if r.ev.Event != typ || r.ev.SessionID != sessionID {
		t.Errorf("%s body: event %q, sessionId %q; want %q, %q: %s", typ, r.ev.Event, r.ev.SessionID, typ, sessionID, r.Body)
	}
	if now := r.At.Unix(); r.ev.Timestamp < now-30 || r.ev.Timestamp > now+1 {
		t.Errorf("%s body: timestamp %d is not Unix seconds near %d", typ, r.ev.Timestamp, now)
	}
}

// ---------------------------------------------------------------------------
// API shapes and steps

type hookJSON struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Enabled        bool     `json:"enabled"`
	DisabledReason *string  `json:"disabledReason"`
	Secret         string   `json:"secret"`
}

type attemptJSON struct {
	ID          string   `json:"id"`
	DeliveryID  string   `json:"deliveryId"`
	EventID     string   `json:"eventId"`
	Event       string   `json:"event"`
	Attempt     int      `json:"attempt"`
	AttemptedAt int64    `json:"attemptedAt"` // whole Unix seconds: a fraction fails the decoding
	StatusCode  *int     `json:"statusCode"`
	LatencyMs   *int64   `json:"latencyMs"`
	Error       *string  `json:"error"`
	NextRetryAt *float64 `json:"nextRetryAt"`
	State       string   `json:"state"`
}

type attemptPage struct {
	Data       []attemptJSON `json:"data"`
	NextCursor *string       `json:"nextCursor"`
}

// mustCreateHook registers an endpoint and checks the 201.
func (s *server) mustCreateHook(t *testing.T, key, url string, events ...string) hookJSON {
	t.Helper()
	body := map[string]any{"url": url}
	if len(events) > 0 {
		body["events"] = events
	} else {
		events = []string{"*"}
	}
	r := mustStatus(t, s.do(t, "POST", "/v1/webhooks", key, body), 201)
	var h hookJSON
	mustDecode(t, r, &h)
	if !strings.HasPrefix(h.ID, "wh_") || h.URL != url || !slices.Equal(h.Events, events) || !h.Enabled {
		t.Fatalf("created webhook %+v, want id wh_…, url %s, events %v, enabled: %s", h, url, events, r.Body)
	}
	mustCheckSecret(t, h.Secret)
	return h
}

// mustPatchHook PATCHes an endpoint and returns it.
func (s *server) mustPatchHook(t *testing.T, key, id string, patch map[string]any) hookJSON {
	t.Helper()
	r := mustStatus(t, s.do(t, "PATCH", "/v1/webhooks/"+id, key, patch), 200)
	var h hookJSON
	mustDecode(t, r, &h)
	if h.ID != id || h.Secret != "" {
		t.Fatalf("PATCH /v1/webhooks/%s answered %s: want the endpoint, without its secret", id, r.Body)
	}
	return h
}

// mustAttempts reads one page of an endpoint's deliveries log.
func (s *server) mustAttempts(t *testing.T, key, id, query string) attemptPage {
	t.Helper()
	r := mustStatus(t, s.do(t, "GET", "/v1/webhooks/"+id+"/deliveries"+query, key, nil), 200)
	var p attemptPage
	mustDecode(t, r, &p)
	if p.Data == nil {
		t.Fatalf("deliveries log without a data array: %s", r)
	}
	var raw struct {
		Data []map[string]json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(r.Body, &raw)
	for _, a := range raw.Data {
		for _, f := range []string{"id", "deliveryId", "eventId", "event", "attempt", "attemptedAt", "statusCode", "latencyMs", "error", "nextRetryAt", "state"} {
			if _, ok := a[f]; !ok {
				t.Fatalf("deliveries log entry lacks %q: %s", f, r.Body)
			}
		}
	}
	return p
}

// mustAllAttempts follows nextCursor through the whole log, limit per page.
func (s *server) mustAllAttempts(t *testing.T, key, id string, limit int) []attemptJSON {
	t.Helper()
	var all []attemptJSON
	q := fmt.Sprintf("?limit=%d", limit)
	for range 1000 {
		p := s.mustAttempts(t, key, id, q)
		if len(p.Data) > limit {
			t.Fatalf("deliveries page of %d entries for limit %d", len(p.Data), limit)
		}
		all = append(all, p.Data...)
		if p.NextCursor == nil {
			return all
		}
		if len(p.Data) != limit {
			t.Fatalf("a page of %d entries (limit %d) has a nextCursor", len(p.Data), limit)
		}
		q = fmt.Sprintf("?limit=%d&cursor=%s", limit, *p.NextCursor)
	}
	t.Fatal("deliveries log pagination does not end")
	return nil
}

func (s *server) mustSendOne(t *testing.T, key, to, text string) queuedJSON {
	t.Helper()
	return s.mustSend(t, key, sessA, to, text)
}

// ---------------------------------------------------------------------------
// Tests

// TestE2EWebhookEvents: one endpoint for "*" gets every event type with the
// contract's payload and headers, both signatures verifying.
func TestE2EWebhookEvents(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc := newHookReceiver(t)

	// Without events, an endpoint subscribes to everything.
	h := s.mustCreateHook(t, key, rc.url)
	var list struct {
		Data []map[string]any `json:"data"`
	}
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/webhooks", key, nil), 200), &list)
	if len(list.Data) != 1 || list.Data[0]["id"] != h.ID || list.Data[0]["url"] != rc.url || list.Data[0]["secret"] != nil {
		t.Errorf("GET /v1/webhooks = %+v: want the one endpoint, without its secret", list.Data)
	}
	var one map[string]any
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/webhooks/"+h.ID, key, nil), 200), &one)
	if one["id"] != h.ID || one["secret"] != nil || one["enabled"] != true {
		t.Errorf("GET /v1/webhooks/%s = %v: want it enabled, without its secret", h.ID, one)
	}

	// session.connected
	s.mustCreateSandbox(t, key, sessA)
	conn := rc.waitEvent(t, "session.connected", "")
	mustCheckDelivery(t, conn, h.Secret)
	if _, ok := conn.raw["reason"]; ok {
		mustPayload(t, conn, "session.connected", sessA, "reason")
	} else {
		mustPayload(t, conn, "session.connected", sessA)
	}

	// message.sent, message.delivered, message.read
	q := s.mustSendOne(t, key, rcptOK, "Your order #1042 has shipped")
	m := s.mustWaitStatus(t, key, q.ID, "read", 5*time.Second)
	for _, typ := range []string{"message.sent", "message.delivered", "message.read"} {
		r := rc.waitEvent(t, typ, q.ID)
		mustCheckDelivery(t, r, h.Secret)
		mustPayload(t, r, typ, sessA, "messageId", "to", "waMessageId")
		if r.ev.To != rcptOK || m.WAMessageID == nil || r.ev.WAMessageID != *m.WAMessageID || !waIDRE.MatchString(r.ev.WAMessageID) {
			t.Errorf("%s: to %q, waMessageId %q; want %s and the message's %s", typ, r.ev.To, r.ev.WAMessageID, rcptOK, str(m.WAMessageID))
		}
	}

	// message.failed, and no message.sent for a message that failed unsent.
	f := s.mustSendOne(t, key, rcptBad, "this one fails")
	fm := s.mustWaitStatus(t, key, f.ID, "failed", 5*time.Second)
	fr := rc.waitEvent(t, "message.failed", f.ID)
	mustCheckDelivery(t, fr, h.Secret)
	mustPayload(t, fr, "message.failed", sessA, "messageId", "to", "error")
	if fr.ev.To != rcptBad || fr.ev.Error == nil || fm.Error == nil || fr.ev.Error.Code != fm.Error.Code || fr.ev.Error.Message != fm.Error.Message || fr.ev.Error.Code == "" {
		t.Errorf("message.failed: to %q, error %+v; want %s and the message's error %+v", fr.ev.To, fr.ev.Error, rcptBad, fm.Error)
	}
	var errObj map[string]json.RawMessage
	_ = json.Unmarshal(fr.raw["error"], &errObj)
	if len(errObj) != 2 {
		t.Errorf("message.failed error %s: want exactly code and message", fr.raw["error"])
	}

	// message.received
	mustStatus(t, s.do(t, "POST", "/v1/sessions/"+sessA+"/sandbox/inbound", key,
		map[string]string{"from": "919812345678", "text": "Hi, is my order on its way?"}), 202)
	var in hookReq
	rc.waitUntil(t, 10*time.Second, "message.received", func(rs []hookReq) bool {
		for _, r := range rs {
			if r.event() == "message.received" {
				in = r
				return true
			}
		}
		return false
	})
	mustCheckDelivery(t, in, h.Secret)
	mustPayload(t, in, "message.received", sessA, "messageId", "from", "text")
	if in.ev.From == nil || *in.ev.From != "919812345678" || in.ev.Text != "Hi, is my order on its way?" {
		t.Errorf("message.received: from %s, text %q", str(in.ev.From), in.ev.Text)
	}
	if im := s.mustGetMessage(t, key, in.ev.MessageID); im.Direction != "inbound" || im.Text != in.ev.Text || im.Context != nil {
		t.Errorf("message.received messageId %s is %+v, want the inbound message (quoting none)", in.ev.MessageID, im)
	}

	// message.received of a reply names the message it quotes.
	mustStatus(t, s.do(t, "POST", "/v1/sessions/"+sessA+"/sandbox/inbound", key,
		map[string]string{"from": rcptOK, "text": "Thanks!", "replyTo": q.ID}), 202)
	var reply hookReq
	rc.waitUntil(t, 10*time.Second, "message.received of a reply", func(rs []hookReq) bool {
		for _, r := range rs {
			if r.event() == "message.received" && r.ev.Text == "Thanks!" {
				reply = r
				return true
			}
		}
		return false
	})
	mustCheckDelivery(t, reply, h.Secret)
	mustPayload(t, reply, "message.received", sessA, "messageId", "from", "text", "context")
	if c := reply.ev.Context; c == nil || c.MessageID == nil || *c.MessageID != q.ID || c.WAMessageID != *m.WAMessageID {
		t.Errorf("reply's context %s, want messageId %s and waMessageId %s", reply.raw["context"], q.ID, *m.WAMessageID)
	}
	if rm := s.mustGetMessage(t, key, reply.ev.MessageID); rm.Context == nil || rm.Context.MessageID == nil ||
		*rm.Context.MessageID != q.ID || rm.Context.WAMessageID != *m.WAMessageID {
		t.Errorf("GET of the reply: context %+v, want %s", rm.Context, q.ID)
	}

	// Give stragglers a moment, then check the whole stream.
	time.Sleep(300 * time.Millisecond)
	all := rc.all()
	ids := map[string]string{}
	for _, r := range all {
		if r.Attempt != 1 || r.Answered != 200 {
			t.Errorf("unexpected retry or failure: %s", summarize([]hookReq{r}))
		}
		if prev, dup := ids[r.id()]; dup {
			t.Errorf("event id %s used for %s and %s", r.id(), prev, r.event())
		}
		ids[r.id()] = r.event()
	}
	for _, r := range forMessage(all, f.ID) {
		if r.event() != "message.failed" {
			t.Errorf("the message that failed unsent got a %s webhook: %s", r.event(), r.Body)
		}
	}
	if got := len(all); got != 7 {
		t.Errorf("receiver got %d deliveries, want 7 (connected, sent, delivered, read, failed, two received): %s", got, summarize(all))
	}
}

// TestE2EWebhookSessionDelete: DELETE /v1/sessions/{id} logs the session out
// (CONTRACT §3 Sessions), and a subscriber hears session.logged_out about it,
// once.
func TestE2EWebhookSessionDelete(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc := newHookReceiver(t)
	h := s.mustCreateHook(t, key, rc.url, "session.connected", "session.disconnected", "session.logged_out")
	s.mustCreateSandbox(t, key, sessA)
	rc.waitEvent(t, "session.connected", "")
	mustStatus(t, s.do(t, "DELETE", "/v1/sessions/"+sessA, key, nil), 204)
	out := rc.waitEvent(t, "session.logged_out", "")
	mustCheckDelivery(t, out, h.Secret)
	if _, ok := out.raw["reason"]; ok {
		mustPayload(t, out, "session.logged_out", sessA, "reason")
	} else {
		mustPayload(t, out, "session.logged_out", sessA)
	}
	t.Logf("session.logged_out: %s", out.Body)
	time.Sleep(300 * time.Millisecond)
	if got := rc.all(); len(got) != 2 {
		t.Errorf("want session.connected and session.logged_out only, got %s", summarize(got))
	}
}

// TestE2EWebhookRetries: 500s are retried on the schedule with the same
// X-Walytic-Delivery; the deliveries log shows every attempt, newest first,
// and pages with its cursor; a delivery that fails every attempt ends failed.
func TestE2EWebhookRetries(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc := newHookReceiver(t)
	const rcptRefused, rcptRedirected = "919999999998", "919999999997"
	rc.setAnswer(func(_ *http.Request, ev *hookEvent, attempt int) int {
		switch ev.To {
		case rcptRefused:
			return 500
		case rcptRedirected:
			return 307
		}
		if attempt <= 2 {
			return 500
		}
		return 200
	})
	h := s.mustCreateHook(t, key, rc.url, "message.sent")
	s.mustCreateSandbox(t, key, sessA)

	q := s.mustSendOne(t, key, rcptOK, "retried twice")
	rc.waitUntil(t, 10*time.Second, "a third attempt", func(rs []hookReq) bool { return len(rs) >= 3 })
	time.Sleep(300 * time.Millisecond) // nothing more may come
	rs := rc.all()
	if len(rs) != 3 {
		t.Fatalf("want exactly 3 attempts (500, 500, 200), got %s", summarize(rs))
	}
	for i, r := range rs {
		mustCheckDelivery(t, r, h.Secret)
		if r.id() != rs[0].id() || string(r.Body) != string(rs[0].Body) || r.ev.MessageID != q.ID || r.Attempt != i+1 {
			t.Errorf("attempt %d: delivery %s, body %s; want the same id and body as the first: %s", i+1, r.id(), r.Body, rs[0].Body)
		}
		if i > 0 {
			if gap := r.At.Sub(rs[i-1].At); gap < 150*time.Millisecond || gap > 3*time.Second {
				t.Errorf("attempt %d came %v after the previous; the schedule says 200ms ±20%%", i+1, gap)
			}
		}
	}

	// The log: newest first, each attempt with its outcome.
	log := s.mustAttempts(t, key, h.ID, "").Data
	if len(log) != 3 {
		t.Fatalf("deliveries log has %d entries, want 3: %+v", len(log), log)
	}
	for i, a := range log {
		n := 3 - i
		if a.Attempt != n || a.EventID != rs[0].id() || a.Event != "message.sent" || a.DeliveryID != log[0].DeliveryID ||
			!strings.HasPrefix(a.DeliveryID, "dlv_") || a.LatencyMs == nil || *a.LatencyMs < 0 || *a.LatencyMs > 5000 || a.ID == "" {
			t.Errorf("log entry %d = %+v: want attempt %d of event %s", i, a, n, rs[0].id())
		}
		at := rs[n-1].At
		if d := a.AttemptedAt - at.Unix(); d < -1 || d > 1 {
			t.Errorf("attempt %d attemptedAt %d, but the receiver got it at %d", n, a.AttemptedAt, at.Unix())
		}
		if i > 0 && a.AttemptedAt > log[i-1].AttemptedAt {
			t.Errorf("deliveries log is not newest first: %d after %d", a.AttemptedAt, log[i-1].AttemptedAt)
		}
		switch n {
		case 3:
			if a.StatusCode == nil || *a.StatusCode != 200 || a.Error != nil || a.NextRetryAt != nil || a.State != "delivered" {
				t.Errorf("successful attempt: %+v, want statusCode 200, error null, nextRetryAt null, state delivered", a)
			}
		default:
			if a.StatusCode == nil || *a.StatusCode != 500 || a.Error == nil || !strings.Contains(*a.Error, "500") || a.NextRetryAt == nil || a.State != "pending" {
				t.Errorf("failed attempt %d: %+v, want statusCode 500, an error naming it, nextRetryAt, state pending", n, a)
				continue
			}
			if next := rs[n].At.Unix(); int64(*a.NextRetryAt) < next-1 || int64(*a.NextRetryAt) > next+1 {
				t.Errorf("attempt %d: nextRetryAt %v, but the retry came at %d", n, *a.NextRetryAt, next)
			}
		}
	}

	// A delivery that never succeeds: 1 + 3 retries, then failed.
	q2 := s.mustSendOne(t, key, rcptRefused, "always refused")
	rc.waitUntil(t, 10*time.Second, "4 attempts of the refused event", func(rs []hookReq) bool { return len(forMessage(rs, q2.ID)) >= 4 })
	var last attemptJSON
	if !pollUntil(5*time.Second, func() bool {
		last = s.mustAttempts(t, key, h.ID, "?limit=1").Data[0]
		return last.Attempt == 4
	}) {
		t.Fatalf("the 4th attempt is not in the log: %+v", last)
	}
	time.Sleep(700 * time.Millisecond) // a 5th attempt would come by now
	if got := forMessage(rc.all(), q2.ID); len(got) != 4 {
		t.Errorf("the refused event was attempted %d times, want 4 (the first and three retries): %s", len(got), summarize(got))
	}
	if last.State != "failed" || last.NextRetryAt != nil || last.StatusCode == nil || *last.StatusCode != 500 {
		t.Errorf("last attempt of a delivery out of retries: %+v, want state failed, nextRetryAt null, statusCode 500", last)
	}

	// Pagination: 7 entries, pages of 2, 3 and 7, all the same sequence.
	full := s.mustAllAttempts(t, key, h.ID, 500)
	if len(full) != 7 {
		t.Fatalf("deliveries log has %d entries, want 7", len(full))
	}
	for _, limit := range []int{1, 2, 3, 7} {
		paged := s.mustAllAttempts(t, key, h.ID, limit)
		if len(paged) != len(full) {
			t.Fatalf("limit %d: %d entries over all pages, want %d", limit, len(paged), len(full))
		}
		for i := range full {
			if paged[i].ID != full[i].ID {
				t.Fatalf("limit %d: entry %d is %s, want %s", limit, i, paged[i].ID, full[i].ID)
			}
		}
	}
	ids := map[string]bool{}
	for i, a := range full {
		if ids[a.ID] {
			t.Errorf("attempt id %s listed twice", a.ID)
		}
		ids[a.ID] = true
		if i > 0 && a.AttemptedAt > full[i-1].AttemptedAt {
			t.Errorf("deliveries log is not newest first at %d", i)
		}
	}
	mustAPIError(t, s.do(t, "GET", "/v1/webhooks/"+h.ID+"/deliveries?cursor=nonsense", key, nil), 400, "invalid_request", "cursor")
	// A cursor continues only its own endpoint's log.
	if next := s.mustAttempts(t, key, h.ID, "?limit=1").NextCursor; next == nil {
		t.Error("a 7-entry log paged by 1 has no nextCursor")
	} else {
		e := mustAPIError(t, s.do(t, "GET", "/v1/webhooks/wh_other/deliveries?cursor="+*next, key, nil), 400, "invalid_request", "cursor")
		if !strings.Contains(e.Message, "another listing") {
			t.Errorf("another endpoint's cursor: %q", e.Message)
		}
	}
	mustAPIError(t, s.do(t, "GET", "/v1/webhooks/"+h.ID+"/deliveries?limit=0", key, nil), 400, "invalid_request", "limit")
	mustAPIError(t, s.do(t, "GET", "/v1/webhooks/"+h.ID+"/deliveries?limit=501", key, nil), 400, "invalid_request", "limit")
	mustAPIError(t, s.do(t, "GET", "/v1/webhooks/wh_nope/deliveries", key, nil), 404, "not_found", "id")

	// Redirects are not followed: a 307 is a failed attempt, retried.
	elsewhere := newHookReceiver(t)
	rc.location.Store(&elsewhere.url)
	q3 := s.mustSendOne(t, key, rcptRedirected, "redirected")
	rs = rc.waitUntil(t, 10*time.Second, "2 attempts of the redirected event", func(rs []hookReq) bool { return len(forMessage(rs, q3.ID)) >= 2 })
	redirID := forMessage(rs, q3.ID)[0].id()
	var redir attemptJSON
	if !pollUntil(5*time.Second, func() bool {
		redir = s.mustAttempts(t, key, h.ID, "?limit=1").Data[0]
		return redir.EventID == redirID && redir.Attempt >= 2
	}) {
		t.Fatalf("the redirected attempts are not in the log: %+v", redir)
	}
	if redir.StatusCode == nil || *redir.StatusCode != 307 || redir.Error == nil || redir.State != "pending" || redir.NextRetryAt == nil {
		t.Errorf("attempt answered 307: %+v, want statusCode 307, an error, pending with a next retry", redir)
	}
	if got := elsewhere.all(); len(got) != 0 {
		t.Errorf("the deliverer followed a redirect: %s", summarize(got))
	}
}

// TestE2EWebhookTimeout: a receiver that does not answer within 10 s is
// retried, with the same X-Walytic-Delivery; the log records the timeout.
func TestE2EWebhookTimeout(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc := newHookReceiver(t)
	rc.setAnswer(func(r *http.Request, _ *hookEvent, attempt int) int {
		if attempt == 1 {
			select { // hang past the 10 s timeout, until the sender gives up
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
		}
		return 200
	})
	h := s.mustCreateHook(t, key, rc.url, "message.sent")
	s.mustCreateSandbox(t, key, sessA)
	s.mustSendOne(t, key, rcptOK, "the receiver hangs on this one")
	start := time.Now()
	rs := rc.waitUntil(t, 20*time.Second, "a retry after the timeout", func(rs []hookReq) bool {
		for _, r := range rs {
			if r.Answered == 200 {
				return true
			}
		}
		return false
	})
	t.Logf("retry after %v", time.Since(start).Round(time.Millisecond))
	if len(rs) != 2 || rs[0].Answered != 0 || rs[1].Attempt != 2 || rs[0].id() != rs[1].id() {
		t.Fatalf("want a hung first attempt and a second with the same id: %s", summarize(rs))
	}
	for _, r := range rs {
		mustCheckDelivery(t, r, h.Secret)
	}
	var log []attemptJSON
	if !pollUntil(5*time.Second, func() bool {
		log = s.mustAttempts(t, key, h.ID, "").Data
		return len(log) == 2
	}) {
		t.Fatalf("deliveries log %+v, want 2 attempts", log)
	}
	timedOut := log[1]
	if timedOut.Attempt != 1 || timedOut.StatusCode != nil || timedOut.Error == nil || timedOut.NextRetryAt == nil ||
		timedOut.LatencyMs == nil || *timedOut.LatencyMs < 9500 || *timedOut.LatencyMs > 12000 {
		t.Errorf("timed-out attempt %+v: want statusCode null, an error, latency about 10 s, nextRetryAt", timedOut)
	} else if !strings.Contains(strings.ToLower(*timedOut.Error), "timeout") && !strings.Contains(strings.ToLower(*timedOut.Error), "time") {
		t.Errorf("timed-out attempt's error %q does not say it timed out", *timedOut.Error)
	}
	if log[0].State != "delivered" || log[0].StatusCode == nil || *log[0].StatusCode != 200 {
		t.Errorf("retry %+v, want delivered with 200", log[0])
	}
}

// TestE2EWebhookOrder: 30 sends through one session to one recipient; the
// message.sent events' first attempts come in send order, and each message's
// sent, delivered and read in that order.
func TestE2EWebhookOrder(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc := newHookReceiver(t)
	h := s.mustCreateHook(t, key, rc.url, "*")
	s.mustCreateSandbox(t, key, sessA)
	const n = 30
	order := map[string]int{}
	var ids []string
	for i := range n {
		q := s.mustSendOne(t, key, rcptOK, fmt.Sprintf("message %d of %d", i+1, n))
		order[q.ID] = i
		ids = append(ids, q.ID)
	}
	rs := rc.waitUntil(t, 20*time.Second, fmt.Sprintf("%d message.read events", n), func(rs []hookReq) bool {
		c := 0
		for _, r := range rs {
			if r.event() == "message.read" {
				c++
			}
		}
		return c >= n
	})
	last := -1
	var sentOrder []int
	for _, r := range rs {
		if r.Attempt != 1 || r.event() != "message.sent" {
			continue
		}
		i, ok := order[r.ev.MessageID]
		if !ok {
			t.Fatalf("message.sent for an unknown message: %s", r.Body)
		}
		sentOrder = append(sentOrder, i)
		if i < last {
			t.Errorf("message.sent of message %d arrived after that of message %d", i+1, last+1)
		}
		last = max(last, i)
	}
	if len(sentOrder) != n {
		t.Errorf("got %d message.sent events, want %d", len(sentOrder), n)
	}
	t.Logf("message.sent arrival order: %v", sentOrder)
	rank := map[string]int{"message.sent": 1, "message.delivered": 2, "message.read": 3}
	for _, id := range ids {
		prev := 0
		for _, r := range forMessage(rs, id) {
			if r.Attempt != 1 {
				continue
			}
			if rank[r.event()] <= prev {
				t.Errorf("message %d: %s arrived out of order: %s", order[id]+1, r.event(), summarize(forMessage(rs, id)))
				break
			}
			prev = rank[r.event()]
		}
		if prev != 3 {
			t.Errorf("message %d: events %s, want sent, delivered, read", order[id]+1, summarize(forMessage(rs, id)))
		}
	}
	for _, r := range rs {
		if r.event() != "session.connected" && r.Attempt == 1 {
			mustCheckDelivery(t, r, h.Secret)
			break
		}
	}
}

// TestE2EWebhookURLGuard: link-local and metadata addresses are refused even
// with --webhook-allow-private; loopback and private ones without it; only
// http and https.
func TestE2EWebhookURLGuard(t *testing.T) {
	t.Parallel()
	rc := newHookReceiver(t)
	port := rc.srv.Listener.Addr().(*net.TCPAddr).Port

	allow := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := allow.fastKey(t)
	for _, u := range []string{
		"http://169.254.169.254/", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "https://[fe80::1%25eth0]:8443/x",
		"ftp://example.com/hook", "file:///etc/passwd", "example.com/hook", "https://user:pass@example.com/hook", "",
	} {
		mustAPIError(t, allow.do(t, "POST", "/v1/webhooks", key, map[string]any{"url": u, "events": []string{"*"}}), 400, "invalid_request", "url")
	}
	mustAPIError(t, allow.do(t, "POST", "/v1/webhooks", key, map[string]any{"events": []string{"*"}}), 400, "invalid_request", "url")
	mustAPIError(t, allow.do(t, "POST", "/v1/webhooks", key, map[string]any{"url": rc.url, "events": []string{"message.nope"}}), 400, "invalid_request", "events")
	mustAPIError(t, allow.do(t, "POST", "/v1/webhooks", key, map[string]any{"url": rc.url, "events": []string{}}), 400, "invalid_request", "events")
	// Loopback is fine with the flag; PATCH is guarded as create is.
	h := allow.mustCreateHook(t, key, fmt.Sprintf("http://127.0.0.1:%d/", port), "*")
	for _, u := range []string{"http://169.254.169.254/", "http://[fe80::1]/", "ftp://example.com/"} {
		mustAPIError(t, allow.do(t, "PATCH", "/v1/webhooks/"+h.ID, key, map[string]any{"url": u}), 400, "invalid_request", "url")
	}
	var list struct {
		Data []hookJSON `json:"data"`
	}
	mustDecode(t, mustStatus(t, allow.do(t, "GET", "/v1/webhooks", key, nil), 200), &list)
	if len(list.Data) != 1 || list.Data[0].URL != fmt.Sprintf("http://127.0.0.1:%d/", port) {
		t.Errorf("after refused creates and patches, GET /v1/webhooks = %+v: want only the loopback one, unchanged", list.Data)
	}

	strict := mustStartServer(t, newDataDir(t), "--webhook-retry-schedule", hookSchedule)
	skey := strict.fastKey(t)
	for _, u := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/", port), "http://10.0.0.1/", "http://192.168.1.10/hook", "http://172.16.0.1/",
		"http://[::1]:8080/", fmt.Sprintf("http://localhost:%d/", port), "http://169.254.169.254/", "http://[fe80::1]/", "ftp://example.com/",
	} {
		e := mustAPIError(t, strict.do(t, "POST", "/v1/webhooks", skey, map[string]any{"url": u, "events": []string{"*"}}), 400, "invalid_request", "url")
		if strings.Contains(u, "127.0.0.1") && !strings.Contains(e.Message, "--webhook-allow-private") {
			t.Errorf("refusing a loopback URL: message %q does not name --webhook-allow-private", e.Message)
		}
	}
	pub := strict.mustCreateHook(t, skey, "https://example.com/hooks/walytic", "message.read")
	mustAPIError(t, strict.do(t, "PATCH", "/v1/webhooks/"+pub.ID, skey, map[string]any{"url": "http://10.0.0.1/"}), 400, "invalid_request", "url")

	// The check is made again when connecting: a host name that resolves to
	// loopback passes creation on the strict server but is never delivered to.
	if host, addrs := loopbackName(); host != "" {
		t.Logf("delivery-time guard: %s resolves to %v", host, addrs)
		u := fmt.Sprintf("http://%s:%d/hook", host, port)
		r := strict.do(t, "POST", "/v1/webhooks", skey, map[string]any{"url": u, "events": []string{"*"}})
		if r.Status == 201 {
			var hh hookJSON
			mustDecode(t, r, &hh)
			strict.mustCreateSandbox(t, skey, sessA)
			var log []attemptJSON
			if !pollUntil(5*time.Second, func() bool {
				log = strict.mustAttempts(t, skey, hh.ID, "").Data
				return len(log) > 0
			}) {
				t.Fatalf("no delivery attempt to %s within 5 s", u)
			}
			if log[0].StatusCode != nil || log[0].Error == nil {
				t.Errorf("attempt to %s (loopback after DNS) = %+v: want it refused", u, log[0])
			} else {
				t.Logf("refused at delivery time: %s", *log[0].Error)
			}
		} else {
			mustAPIError(t, r, 400, "invalid_request", "url")
		}
	} else {
		t.Logf("delivery-time guard: no host name here resolves to loopback only; checked at creation only")
	}
	time.Sleep(200 * time.Millisecond)
	if got := rc.all(); len(got) != 0 {
		t.Errorf("the loopback receiver got requests from the strict server: %s", summarize(got))
	}
}

// loopbackName returns a host name (not localhost) that resolves only to
// loopback addresses, such as the machine's own name in /etc/hosts, or "".
func loopbackName() (string, []string) {
	var names []string
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	if b, err := os.ReadFile("/etc/hosts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(strings.SplitN(line, "#", 2)[0])
			if len(f) >= 2 && strings.HasPrefix(f[0], "127.") {
				names = append(names, f[1:]...)
			}
		}
	}
	for _, n := range names {
		ln := strings.ToLower(n)
		if ln == "localhost" || strings.HasSuffix(ln, ".localhost") || strings.HasPrefix(ln, "localhost.") || strings.Trim(ln, "0123456789.") == "" {
			continue
		}
		addrs, err := net.LookupHost(n)
		if err != nil || len(addrs) == 0 {
			continue
		}
		ok := true
		for _, a := range addrs {
			if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() {
				ok = false
			}
		}
		if ok {
			return n, addrs
		}
	}
	return "", nil
}

// TestE2EWebhookRotation: after rotate-secret, deliveries carry one
// signature per live secret in both headers.
func TestE2EWebhookRotation(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc := newHookReceiver(t)
	h := s.mustCreateHook(t, key, rc.url, "message.sent")
	s.mustCreateSandbox(t, key, sessA)

	q0 := s.mustSendOne(t, key, rcptOK, "before the rotation")
	mustCheckDelivery(t, rc.waitEvent(t, "message.sent", q0.ID), h.Secret)

	rotate := func() string {
		r := mustStatus(t, s.do(t, "POST", "/v1/webhooks/"+h.ID+"/rotate-secret", key, nil), 200)
		var v hookJSON
		mustDecode(t, r, &v)
		if v.ID != h.ID {
			t.Fatalf("rotate-secret answered %s", r.Body)
		}
		mustCheckSecret(t, v.Secret)
		return v.Secret
	}
	second := rotate()
	if second == h.Secret {
		t.Fatal("rotate-secret returned the same secret")
	}
	q1 := s.mustSendOne(t, key, rcptOK, "after one rotation")
	r1 := rc.waitEvent(t, "message.sent", q1.ID)
	mustCheckDelivery(t, r1, h.Secret, second)
	t.Logf("after one rotation: X-Walytic-Signature %q, webhook-signature %q", r1.Header.Get("X-Walytic-Signature"), r1.Header.Get("webhook-signature"))

	third := rotate()
	q2 := s.mustSendOne(t, key, rcptOK, "after two rotations")
	mustCheckDelivery(t, rc.waitEvent(t, "message.sent", q2.ID), h.Secret, second, third)

	// At most four rotated-out secrets sign beside the current one: more
	// rotations retire the oldest, so the headers stay bounded.
	live := []string{h.Secret, second, third}
	for range 4 {
		live = append(live, rotate())
	}
	q3 := s.mustSendOne(t, key, rcptOK, "after six rotations")
	mustCheckDelivery(t, rc.waitEvent(t, "message.sent", q3.ID), live[len(live)-5:]...)

	// The secret is shown only on create and rotate.
	for _, path := range []string{"/v1/webhooks/" + h.ID, "/v1/webhooks"} {
		r := mustStatus(t, s.do(t, "GET", path, key, nil), 200)
		for _, sec := range []string{h.Secret, second, third, "whsec_"} {
			if strings.Contains(string(r.Body), sec) {
				t.Errorf("GET %s shows a secret: %s", path, r.Body)
			}
		}
	}
	mustAPIError(t, s.do(t, "POST", "/v1/webhooks/wh_nope/rotate-secret", key, nil), 404, "not_found", "id")
}

// TestE2EWebhookPatch: PATCH of events, url and enabled applies to the next
// event, and DELETE stops deliveries.
func TestE2EWebhookPatch(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc1, rc2 := newHookReceiver(t), newHookReceiver(t)
	h := s.mustCreateHook(t, key, rc1.url, "*")
	s.mustCreateSandbox(t, key, sessA)

	// sendSettled sends one message, waits for it to be read and for the
	// last event the endpoint should get (wait on rc, "" for none), then a
	// little longer, and returns the events every receiver got about it.
	sendSettled := func(text string, rc *hookReceiver, last string) (string, []hookReq, []hookReq) {
		q := s.mustSendOne(t, key, rcptOK, text)
		s.mustWaitStatus(t, key, q.ID, "read", 5*time.Second)
		if rc != nil {
			rc.waitEvent(t, last, q.ID)
		}
		time.Sleep(400 * time.Millisecond)
		return q.ID, forMessage(rc1.all(), q.ID), forMessage(rc2.all(), q.ID)
	}
	types := func(rs []hookReq) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.event())
		}
		return out
	}

	id, got1, got2 := sendSettled("all events", rc1, "message.read")
	if want := []string{"message.sent", "message.delivered", "message.read"}; !slices.Equal(types(got1), want) || len(got2) != 0 {
		t.Errorf("before any PATCH: %v / %v, want %v to the first receiver only (%s)", types(got1), types(got2), want, id)
	}

	// events without message.read
	p := s.mustPatchHook(t, key, h.ID, map[string]any{"events": []string{"message.sent", "message.delivered"}})
	if !slices.Equal(p.Events, []string{"message.sent", "message.delivered"}) || p.URL != rc1.url || !p.Enabled {
		t.Errorf("after PATCH events: %+v", p)
	}
	id, got1, got2 = sendSettled("no read event", rc1, "message.delivered")
	if want := []string{"message.sent", "message.delivered"}; !slices.Equal(types(got1), want) || len(got2) != 0 {
		t.Errorf("events without message.read: got %v / %v, want %v (%s)", types(got1), types(got2), want, id)
	}

	// url to the second receiver, also for a retry already pending: the
	// first receiver refuses one message's events.
	const rcptRetried, rcptStuck = "919999999996", "919999999995"
	refuse := func(rcpt string) hookAnswer {
		return func(_ *http.Request, ev *hookEvent, _ int) int {
			if ev.To == rcpt {
				return 500
			}
			return 200
		}
	}
	rc1.setAnswer(refuse(rcptRetried))
	qr := s.mustSendOne(t, key, rcptRetried, "retried at the new url")
	refused := rc1.waitEvent(t, "message.sent", qr.ID)
	p = s.mustPatchHook(t, key, h.ID, map[string]any{"url": rc2.url})
	if p.URL != rc2.url || !slices.Equal(p.Events, []string{"message.sent", "message.delivered"}) {
		t.Errorf("after PATCH url: %+v; the events must stay", p)
	}
	retried := rc2.waitUntil(t, 5*time.Second, "the pending retry at the new url", func(rs []hookReq) bool {
		for _, r := range rs {
			if r.id() == refused.id() {
				return true
			}
		}
		return false
	})
	for _, r := range retried {
		if r.id() == refused.id() {
			mustCheckDelivery(t, r, h.Secret)
			if string(r.Body) != string(refused.Body) {
				t.Errorf("retry at the new url has body %s, want %s", r.Body, refused.Body)
			}
		}
	}
	id, got1, got2 = sendSettled("to the second receiver", rc2, "message.delivered")
	if want := []string{"message.sent", "message.delivered"}; !slices.Equal(types(got2), want) || len(got1) != 0 {
		t.Errorf("after the url change: first receiver %v, second %v; want %v at the second only (%s)", types(got1), types(got2), want, id)
	}
	for _, r := range got2 {
		mustCheckDelivery(t, r, h.Secret)
	}

	// enabled:false, with a delivery pending a retry.
	rc2.setAnswer(refuse(rcptStuck))
	qs := s.mustSendOne(t, key, rcptStuck, "pending when disabled")
	stuck := rc2.waitEvent(t, "message.sent", qs.ID)
	p = s.mustPatchHook(t, key, h.ID, map[string]any{"enabled": false})
	if p.Enabled {
		t.Errorf("after PATCH enabled:false: %+v", p)
	}
	var g hookJSON
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/webhooks/"+h.ID, key, nil), 200), &g)
	if g.Enabled {
		t.Errorf("GET after disabling: %+v", g)
	}
	time.Sleep(300 * time.Millisecond) // an attempt in flight at the PATCH may still land
	n1, n2 := len(rc1.all()), len(rc2.all())
	id, got1, got2 = sendSettled("disabled", nil, "")
	mustStatus(t, s.do(t, "POST", "/v1/sessions/"+sessA+"/sandbox/inbound", key, map[string]string{"from": rcptOK, "text": "while disabled"}), 202)
	time.Sleep(400 * time.Millisecond)
	if len(got1)+len(got2) != 0 || len(rc1.all()) != n1 || len(rc2.all()) != n2 {
		t.Errorf("a disabled endpoint got deliveries: %s %s (%s)", summarize(rc1.all()[n1:]), summarize(rc2.all()[n2:]), id)
	}

	// enabled again; then DELETE.
	p = s.mustPatchHook(t, key, h.ID, map[string]any{"enabled": true})
	if !p.Enabled || p.DisabledReason != nil {
		t.Errorf("after re-enabling: %+v", p)
	}
	rc2.answerAll(200)
	id, _, got2 = sendSettled("enabled again", rc2, "message.delivered")
	if want := []string{"message.sent", "message.delivered"}; !slices.Equal(types(got2), want) {
		t.Errorf("re-enabled: %v, want %v (%s)", types(got2), want, id)
	}
	// The delivery pending at the disable failed (README: redeliver it).
	var stuckDelivery string
	for _, a := range s.mustAllAttempts(t, key, h.ID, 500) {
		if a.EventID == stuck.id() {
			stuckDelivery = a.DeliveryID
		}
	}
	for _, r := range rc2.all() {
		if r.id() == stuck.id() && r.Answered == 200 {
			t.Errorf("the delivery pending when the endpoint was disabled was delivered without a redelivery")
		}
	}
	if stuckDelivery == "" {
		t.Fatalf("no log entry for event %s", stuck.id())
	}
	mustStatus(t, s.do(t, "POST", "/v1/webhooks/deliveries/"+stuckDelivery+"/redeliver", key, nil), 202)
	rc2.waitUntil(t, 5*time.Second, "the redelivered event", func(rs []hookReq) bool {
		for _, r := range rs {
			if r.id() == stuck.id() && r.Answered == 200 {
				return true
			}
		}
		return false
	})
	mustAPIError(t, s.do(t, "PATCH", "/v1/webhooks/"+h.ID, key, map[string]any{"events": []string{"bogus"}}), 400, "invalid_request", "events")
	mustAPIError(t, s.do(t, "PATCH", "/v1/webhooks/"+h.ID, key, map[string]any{"enabled": "yes"}), 400, "invalid_request", "enabled")
	mustStatus(t, s.do(t, "DELETE", "/v1/webhooks/"+h.ID, key, nil), 204)
	mustAPIError(t, s.do(t, "GET", "/v1/webhooks/"+h.ID, key, nil), 404, "not_found", "id")
	mustAPIError(t, s.do(t, "DELETE", "/v1/webhooks/"+h.ID, key, nil), 404, "not_found", "id")
	n1, n2 = len(rc1.all()), len(rc2.all())
	sendSettled("deleted", nil, "")
	if len(rc1.all()) != n1 || len(rc2.all()) != n2 {
		t.Errorf("a deleted endpoint got deliveries: %s", summarize(rc2.all()[n2:]))
	}
}

// TestE2EWebhookRedeliver: redelivering sends the same event id again.
func TestE2EWebhookRedeliver(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	rc := newHookReceiver(t)
	h := s.mustCreateHook(t, key, rc.url, "message.sent")
	s.mustCreateSandbox(t, key, sessA)
	q := s.mustSendOne(t, key, rcptOK, "deliver me twice")
	first := rc.waitEvent(t, "message.sent", q.ID)
	var log []attemptJSON
	if !pollUntil(5*time.Second, func() bool {
		log = s.mustAttempts(t, key, h.ID, "").Data
		return len(log) == 1 && log[0].State == "delivered"
	}) {
		t.Fatalf("deliveries log %+v, want one delivered attempt", log)
	}

	r := mustStatus(t, s.do(t, "POST", "/v1/webhooks/deliveries/"+log[0].DeliveryID+"/redeliver", key, nil), 202)
	var v map[string]string
	mustDecode(t, r, &v)
	if v["deliveryId"] != log[0].DeliveryID || v["eventId"] != first.id() {
		t.Errorf("redeliver answered %s, want deliveryId %s and eventId %s", r.Body, log[0].DeliveryID, first.id())
	}
	rs := rc.waitUntil(t, 10*time.Second, "the redelivery", func(rs []hookReq) bool { return len(rs) >= 2 })
	again := rs[1]
	if again.id() != first.id() || string(again.Body) != string(first.Body) || again.Attempt != 2 {
		t.Errorf("redelivery: id %s body %s; want the same event %s, body %s", again.id(), again.Body, first.id(), first.Body)
	}
	mustCheckDelivery(t, again, h.Secret)
	if !pollUntil(5*time.Second, func() bool {
		log = s.mustAttempts(t, key, h.ID, "").Data
		return len(log) == 2
	}) {
		t.Fatalf("deliveries log %+v, want 2 attempts after the redelivery", log)
	}
	if log[0].DeliveryID != log[1].DeliveryID || log[0].EventID != first.id() || log[0].State != "delivered" || log[0].Attempt != 2 {
		t.Errorf("deliveries log after redelivery: %+v", log)
	}
	mustAPIError(t, s.do(t, "POST", "/v1/webhooks/deliveries/dlv_nope/redeliver", key, nil), 404, "not_found", "deliveryId")
	mustAPIError(t, s.do(t, "POST", "/v1/webhooks/deliveries/"+strings.Repeat("x", 300)+"/redeliver", key, nil), 404, "not_found", "deliveryId")
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.all()); n != 2 {
		t.Errorf("receiver got %d requests, want 2", n)
	}

	// Not redelivered where it cannot go: an event the endpoint no longer
	// subscribes to (409, saying what to do), an endpoint since deleted (404).
	dlv := "/v1/webhooks/deliveries/" + log[0].DeliveryID + "/redeliver"
	s.mustPatchHook(t, key, h.ID, map[string]any{"events": []string{"message.read"}})
	if e := mustAPIError(t, s.do(t, "POST", dlv, key, nil), 409, "conflict", "deliveryId"); !strings.Contains(e.Message, "no longer subscribes to message.sent") {
		t.Errorf("redeliver of an unsubscribed event: %s", e.Message)
	}
	mustStatus(t, s.do(t, "DELETE", "/v1/webhooks/"+h.ID, key, nil), 204)
	mustAPIError(t, s.do(t, "POST", dlv, key, nil), 404, "not_found", "deliveryId")
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.all()); n != 2 {
		t.Errorf("receiver got %d requests after the refused redeliveries, want 2", n)
	}
}

// TestE2EWebhookCrash: events pending at a kill -9 are all delivered after
// the restart, under the ids they had before it.
func TestE2EWebhookCrash(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	const schedule = "2s,2s,2s"
	s1 := mustStartHookServer(t, dir, schedule)
	key := s1.fastKey(t)
	rc := newHookReceiver(t)
	var down atomic.Bool
	down.Store(true)
	// While down, answers are slow too, so some events are still unattempted
	// at the kill (one lane: one attempt at a time).
	rc.setAnswer(func(r *http.Request, _ *hookEvent, _ int) int {
		if down.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(60 * time.Millisecond):
			}
			return 503
		}
		return 200
	})
	h := s1.mustCreateHook(t, key, rc.url, "*")
	s1.mustCreateSandbox(t, key, sessA)
	const n = 20
	var ids []string
	for i := range n {
		ids = append(ids, s1.mustSendOne(t, key, fmt.Sprintf("9199999%05d", 100+i), fmt.Sprintf("crash %d", i)).ID)
	}
	if !pollUntil(10*time.Second, func() bool {
		return len(s1.mustList(t, key, "?status=read&limit=1000").Data) == n
	}) {
		t.Fatalf("the %d messages were not all read within 10 s", n)
	}
	time.Sleep(200 * time.Millisecond)
	s1.mustKill(t)
	before := rc.all()
	seen := map[string]string{} // event id → type/message
	for _, r := range before {
		seen[r.id()] = r.event() + "/" + r.ev.MessageID
		if r.Answered == 200 {
			t.Fatalf("the receiver answered 200 while down: %s", summarize([]hookReq{r}))
		}
	}
	t.Logf("kill -9 with %d events staged, %d attempted (all refused)", 3*n+1, len(seen))
	if len(seen) == 0 || len(seen) >= 3*n+1 {
		t.Logf("note: the kill found %d of %d events attempted; the test is strongest in between", len(seen), 3*n+1)
	}

	down.Store(false)
	s2 := mustStartHookServer(t, dir, schedule)
	want := map[string]bool{"session.connected/": true}
	for _, id := range ids {
		for _, typ := range []string{"message.sent", "message.delivered", "message.read"} {
			want[typ+"/"+id] = true
		}
	}
	got := map[string]map[string]bool{} // type/message → event ids delivered with 200
	rs := rc.waitUntil(t, 20*time.Second, "every staged event delivered after the restart", func(rs []hookReq) bool {
		for _, r := range rs {
			if r.Answered == 200 {
				k := r.event() + "/" + r.ev.MessageID
				if got[k] == nil {
					got[k] = map[string]bool{}
				}
				got[k][r.id()] = true
			}
		}
		for k := range want {
			if len(got[k]) == 0 {
				return false
			}
		}
		return true
	})
	for k, evs := range got {
		switch {
		case strings.HasPrefix(k, "session."):
			// The restart may reconnect the session and say so.
		case !want[k]:
			t.Errorf("an event nobody caused arrived: %s %v", k, evs)
		case len(evs) != 1:
			t.Errorf("%s arrived under %d event ids %v: want one event, its id kept across the restart", k, len(evs), evs)
		}
	}
	for id, what := range seen {
		if !got[what][id] {
			t.Errorf("event %s (%s), attempted before the kill, never arrived after it (got %v)", id, what, got[what])
		}
	}
	for _, r := range rs {
		if r.Answered == 200 {
			mustCheckDelivery(t, r, h.Secret)
			break
		}
	}
	time.Sleep(300 * time.Millisecond) // let the last outcomes reach the log
	// Every event delivered appears as delivered in the log.
	delivered := map[string]bool{}
	for _, a := range s2.mustAllAttempts(t, key, h.ID, 500) {
		if a.State == "delivered" {
			delivered[a.EventID] = true
		}
	}
	for k, evs := range got {
		for id := range evs {
			if !delivered[id] {
				t.Errorf("event %s (%s) was answered 200 but is not logged as delivered", id, k)
			}
		}
	}
}

// TestE2EWebhookKillAfterDelivery: an event a receiver was sent is durable
// before it is sent. Receipts are written without waiting for the disk, so
// a kill -9 soon after the read receipt's event was delivered must neither
// take the message's status back nor make the events again under new ids
// (receivers de-duplicate on the id).
func TestE2EWebhookKillAfterDelivery(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	s1 := mustStartHookServer(t, dir, hookSchedule)
	key := s1.fastKey(t)
	rc := newHookReceiver(t)
	s1.mustCreateHook(t, key, rc.url, "*")
	s1.mustCreateSandbox(t, key, sessA)
	// A quiet server, as a receiver's first minutes are: nothing else is
	// written after the receipts that would push them to the disk.
	time.Sleep(300 * time.Millisecond)
	m := s1.mustSendOne(t, key, rcptOK, "kill after delivery")
	rc.waitEvent(t, "message.read", m.ID)
	s1.mustKill(t)

	s2 := mustStartHookServer(t, dir, hookSchedule)
	if got := s2.mustGetMessage(t, key, m.ID); got.Status != "read" {
		t.Errorf("after kill -9 the message is %q; its read receipt was delivered to a webhook before the kill", got.Status)
	}
	time.Sleep(2 * time.Second) // time for receipts re-sent after the restart
	ids := map[string]map[string]bool{}
	for _, r := range rc.all() {
		if r.ev.MessageID != m.ID {
			continue
		}
		if ids[r.event()] == nil {
			ids[r.event()] = map[string]bool{}
		}
		ids[r.event()][r.id()] = true
	}
	for _, typ := range []string{"message.sent", "message.delivered", "message.read"} {
		if len(ids[typ]) != 1 {
			t.Errorf("%s of %s arrived under %d event ids %v: want one", typ, m.ID, len(ids[typ]), ids[typ])
		}
	}
}

// TestE2EWebhookLimit: a workspace has at most 50 endpoints; the 51st is
// refused with what to do, and deleting one makes room.
func TestE2EWebhookLimit(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	var first hookJSON
	for i := range 50 {
		h := s.mustCreateHook(t, key, fmt.Sprintf("http://127.0.0.1:9/hook/%d", i), "message.read")
		if i == 0 {
			first = h
		}
	}
	e := mustAPIError(t, s.do(t, "POST", "/v1/webhooks", key, map[string]any{"url": "http://127.0.0.1:9/hook/50", "events": []string{"*"}}), 400, "invalid_request", "")
	if !strings.Contains(e.Message, "delete one") {
		t.Errorf("51st endpoint: %q does not say what to do", e.Message)
	}
	mustStatus(t, s.do(t, "DELETE", "/v1/webhooks/"+first.ID, key, nil), 204)
	s.mustCreateHook(t, key, "http://127.0.0.1:9/hook/50", "*")
}

// TestE2EWebhookIsolation: another workspace's key cannot see, change,
// rotate, list the deliveries of, or redeliver an endpoint; its events never
// reach it.
func TestE2EWebhookIsolation(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	keyA := s.fastKey(t)
	rc := newHookReceiver(t)
	h := s.mustCreateHook(t, keyA, rc.url, "*")
	s.mustCreateSandbox(t, keyA, sessA)
	conn := rc.waitEvent(t, "session.connected", "")
	var log []attemptJSON
	if !pollUntil(5*time.Second, func() bool {
		log = s.mustAttempts(t, keyA, h.ID, "").Data
		return len(log) == 1
	}) {
		t.Fatalf("deliveries log %+v, want one attempt", log)
	}

	s.mustCLI(t, "workspaces", "create", "b")
	keyB := s.fastKey(t, "--workspace", "b")
	mustAPIError(t, s.do(t, "GET", "/v1/webhooks/"+h.ID, keyB, nil), 404, "not_found", "id")
	mustAPIError(t, s.do(t, "PATCH", "/v1/webhooks/"+h.ID, keyB, map[string]any{"enabled": false}), 404, "not_found", "id")
	mustAPIError(t, s.do(t, "PATCH", "/v1/webhooks/"+h.ID, keyB, map[string]any{"url": "https://evil.example.com/"}), 404, "not_found", "id")
	mustAPIError(t, s.do(t, "POST", "/v1/webhooks/"+h.ID+"/rotate-secret", keyB, nil), 404, "not_found", "id")
	mustAPIError(t, s.do(t, "GET", "/v1/webhooks/"+h.ID+"/deliveries", keyB, nil), 404, "not_found", "id")
	mustAPIError(t, s.do(t, "POST", "/v1/webhooks/deliveries/"+log[0].DeliveryID+"/redeliver", keyB, nil), 404, "not_found", "deliveryId")
	mustAPIError(t, s.do(t, "DELETE", "/v1/webhooks/"+h.ID, keyB, nil), 404, "not_found", "id")
	var list struct {
		Data []hookJSON `json:"data"`
	}
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/webhooks", keyB, nil), 200), &list)
	if len(list.Data) != 0 {
		t.Errorf("b lists a's webhooks: %+v", list.Data)
	}

	// A's endpoint is untouched and still works; b's events (same session
	// number) do not reach it.
	var g hookJSON
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/webhooks/"+h.ID, keyA, nil), 200), &g)
	if !g.Enabled || g.URL != rc.url || !slices.Equal(g.Events, []string{"*"}) {
		t.Errorf("a's webhook after b's attempts: %+v", g)
	}
	s.mustCreateSandbox(t, keyB, sessA)
	qb := s.mustSend(t, keyB, sessA, rcptOK, "b's message")
	s.mustWaitStatus(t, keyB, qb.ID, "read", 5*time.Second)
	qa := s.mustSendOne(t, keyA, rcptOK, "a's message")
	rc.waitEvent(t, "message.read", qa.ID)
	time.Sleep(200 * time.Millisecond)
	for _, r := range rc.all() {
		if r.ev.MessageID == qb.ID || (r.event() == "session.connected" && r.id() != conn.id()) {
			t.Errorf("a's endpoint got b's event: %s", r.Body)
		}
		mustCheckDelivery(t, r, h.Secret)
	}
}

// TestE2EWebhookConcurrency: at most 8 attempts in flight per endpoint, one
// per session (lane); a slow endpoint does not delay another.
func TestE2EWebhookConcurrency(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	key := s.fastKey(t)
	slow, fast := newHookReceiver(t), newHookReceiver(t)
	var (
		mu        sync.Mutex
		inFlight  int
		maxFlight int
		perLane   = map[string]int{}
		maxLane   int
	)
	slow.setAnswer(func(r *http.Request, ev *hookEvent, _ int) int {
		mu.Lock()
		inFlight++
		perLane[ev.SessionID]++
		maxFlight, maxLane = max(maxFlight, inFlight), max(maxLane, perLane[ev.SessionID])
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-time.After(1500 * time.Millisecond):
		}
		mu.Lock()
		inFlight--
		perLane[ev.SessionID]--
		mu.Unlock()
		return 200
	})
	s.mustCreateHook(t, key, slow.url, "message.sent")
	hf := s.mustCreateHook(t, key, fast.url, "message.sent")
	const sessions, each = 12, 2
	for i := range sessions {
		s.mustCreateSandbox(t, key, fmt.Sprintf("9198765432%02d", i))
	}
	for j := range each {
		for i := range sessions {
			s.mustSend(t, key, fmt.Sprintf("9198765432%02d", i), rcptOK, fmt.Sprintf("%d/%d", i, j))
		}
	}
	sent := time.Now()
	fast.waitUntil(t, 10*time.Second, "every event at the fast endpoint", func(rs []hookReq) bool { return len(rs) >= sessions*each })
	took := time.Since(sent)
	t.Logf("fast endpoint had all %d events %v after the last send", sessions*each, took.Round(time.Millisecond))
	if took > 1200*time.Millisecond {
		t.Errorf("the fast endpoint got its events only %v after the sends: the slow one (1.5 s per request) held it up", took)
	}
	mustCheckDelivery(t, fast.all()[0], hf.Secret)
	slow.waitUntil(t, 10*time.Second, "a second round at the slow endpoint", func(rs []hookReq) bool { return len(rs) >= 9 })
	mu.Lock()
	defer mu.Unlock()
	t.Logf("slow endpoint: at most %d in flight, %d per session", maxFlight, maxLane)
	if maxFlight != 8 || maxLane != 1 {
		t.Errorf("slow endpoint saw at most %d attempts in flight (%d per session), want 8 (1 per session)", maxFlight, maxLane)
	}
}

// TestE2EWebhookBacklogIsolation: a hung receiver with a large backlog (here
// over 4,096 due deliveries) must not hold up another workspace's endpoint:
// "a slow receiver never delays another" (README, Order).
func TestE2EWebhookBacklogIsolation(t *testing.T) {
	t.Parallel()
	s := mustStartHookServer(t, newDataDir(t), hookSchedule)
	keyA := s.fastKey(t)
	hung, other := newHookReceiver(t), newHookReceiver(t)
	release := make(chan struct{})
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	hung.setAnswer(func(r *http.Request, _ *hookEvent, _ int) int {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return 200
	})
	s.mustCreateHook(t, keyA, hung.url, "*")
	s.mustCreateSandbox(t, keyA, sessA)
	const n = 1500 // × sent, delivered, read = 4,500 deliveries
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		bad  atomic.Value
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= n; i = next.Add(1) {
				r, err := s.try("POST", "/v1/messages", keyA, sendBody(sessA, rcptOK, fmt.Sprintf("backlog %d", i)))
				if err != nil || r.Status != 202 {
					bad.Store(fmt.Sprint(r, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatalf("send failed: %v", b)
	}
	if !pollUntil(15*time.Second, func() bool { return len(s.mustExport(t, keyA, "?status=read")) == n }) {
		t.Fatalf("the %d messages were not all read within 15 s", n)
	}
	t.Logf("backlog of %d deliveries to a receiver that holds its first request", 3*n)

	s.mustCLI(t, "workspaces", "create", "b")
	keyB := s.fastKey(t, "--workspace", "b")
	hb := s.mustCreateHook(t, keyB, other.url, "*")
	start := time.Now()
	s.mustCreateSandbox(t, keyB, sessA)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(other.all()) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if got := other.all(); len(got) > 0 {
		mustCheckDelivery(t, got[0], hb.Secret)
		t.Logf("workspace b's session.connected arrived after %v", got[0].At.Sub(start).Round(time.Millisecond))
		return
	}
	released.Do(func() { close(release) })
	hung.answerAll(200)
	var at time.Duration
	if pollUntil(30*time.Second, func() bool { return len(other.all()) > 0 }) {
		at = time.Since(start)
	}
	t.Errorf("workspace b's session.connected did not arrive within 3 s while workspace a's receiver hung with %d deliveries due; "+
		"after a's receiver recovered it arrived %v after the event (0: not within 30 s), once a's backlog had drained (a got %d requests)",
		3*n, at.Round(time.Millisecond), len(hung.all()))
}
