package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/walytic/appliance/appliance/webhook"
	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/sandbox"
	"github.com/walytic/appliance/storage"
)

const (
	sess = "919876543210"
	rcpt = "919999999999"
)

// recordingSink keeps every staged event and checks each was staged into a
// batch that then committed.
type recordingSink struct {
	mu     sync.Mutex
	staged []*Event
	commit atomic.Int64
	// ignore lists event types no endpoint subscribes to (Wants is false).
	ignore atomic.Value // map[string]bool
}

func (s *recordingSink) Stage(b *storage.Batch, ev Event) error {
	if b == nil {
		return errors.New("event staged without a batch")
	}
	s.mu.Lock()
	s.staged = append(s.staged, &ev)
	s.mu.Unlock()
	return nil
}
func (s *recordingSink) Committed() { s.commit.Add(1) }
func (s *recordingSink) Wants(_, typ string) bool {
	ignore, _ := s.ignore.Load().(map[string]bool)
	return !ignore[typ]
}

func (s *recordingSink) types(msgID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.staged {
		if e.MessageID == msgID {
			out = append(out, e.Type)
		}
	}
	return out
}

type harness struct {
	t      *testing.T
	dir    string
	db     *storage.DB
	app    *Appliance
	events *recordingSink
	clock  atomic.Value // func() time.Time
}

// setNow swaps the harness clock; safe while the appliance runs.
func (h *harness) setNow(f func() time.Time) { h.clock.Store(f) }

func (h *harness) now() time.Time { return h.clock.Load().(func() time.Time)() }

func fastSandbox() whatsapp.Driver {
	return sandbox.New(sandbox.Options{DeliveredAfter: 5 * time.Millisecond, ReadAfter: 10 * time.Millisecond, Tick: sandbox.NoDelay})
}

// silentSandbox sends but owes its receipts for an hour: sent messages stay
// sent for the whole test.
func silentSandbox() whatsapp.Driver {
	return sandbox.New(sandbox.Options{DeliveredAfter: time.Hour, ReadAfter: time.Hour})
}

func newHarness(t *testing.T, drivers ...whatsapp.Driver) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), events: &recordingSink{}}
	h.setNow(time.Now)
	if len(drivers) == 0 {
		drivers = []whatsapp.Driver{fastSandbox()}
	}
	h.open(drivers...)
	t.Cleanup(h.close)
	return h
}

// openApp opens an appliance on a fresh store in tb's temporary directory,
// with the webhook service running when hooks is set (endpoints on private
// addresses allowed, for local receivers), and closes them at cleanup.
func openApp(tb testing.TB, drv whatsapp.Driver, hooks bool) *Appliance {
	tb.Helper()
	db, err := storage.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	st, err := storage.OpenLocalState(db)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var svc *webhook.Service
	if hooks {
		svc = webhook.New(webhook.Options{DB: db, Endpoints: st, AllowPrivate: true, Logger: log})
		svc.Start()
		tb.Cleanup(svc.Close)
	}
	app, err := Open(Config{DB: db, State: st, Drivers: []whatsapp.Driver{drv}, Webhooks: svc, WebhookAllowPrivate: hooks, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(app.Close)
	return app
}

func (h *harness) open(drivers ...whatsapp.Driver) {
	h.t.Helper()
	db, err := storage.Open(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	st, err := storage.OpenLocalState(db)
	if err != nil {
		h.t.Fatal(err)
	}
	app, err := Open(Config{DB: db, State: st, Drivers: drivers, Events: h.events, Now: h.now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		h.t.Fatal(err)
	}
	h.db, h.app = db, app
}

func (h *harness) close() {
	if h.app != nil {
		h.app.Close()
		_ = h.db.Close()
		h.app, h.db = nil, nil
	}
}

func (h *harness) mustSession(ws, id, driver string) {
	h.t.Helper()
	if _, err := h.app.CreateSession(ws, id, driver); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) mustSend(ws string, in SendInput) *storage.Message {
	h.t.Helper()
	m, _, err := h.app.Send(context.Background(), ws, in)
	if err != nil {
		h.t.Fatalf("send %+v: %v", in, err)
	}
	return m
}

func (h *harness) waitStatus(ws, id, status string) *storage.Message {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := h.app.Message(ws, id)
		if err == nil && m.Status == status {
			return m
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("message %s: status %v (err %v), want %s", id, m, err, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func codeOf(err error) string {
	if e, ok := AsError(err); ok {
		return e.Code + "/" + e.Param
	}
	if err == nil {
		return "ok"
	}
	return "untyped: " + err.Error()
}

func TestSendValidationAndCheckOrder(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	cases := []struct {
		name string
		in   SendInput
		want string
	}{
		{"bad session id", SendInput{SessionID: "+91 98765", To: rcpt, Text: "x"}, "invalid_session_id/sessionId"},
		{"session id with plus", SendInput{SessionID: "+919876543210", To: rcpt, Text: "x"}, "invalid_session_id/sessionId"},
		{"short recipient", SendInput{SessionID: sess, To: "1234567", Text: "x"}, "invalid_recipient/to"},
		{"long recipient", SendInput{SessionID: sess, To: "1234567890123456", Text: "x"}, "invalid_recipient/to"},
		{"empty text", SendInput{SessionID: sess, To: rcpt, Text: ""}, "invalid_request/text"},
		{"text too long", SendInput{SessionID: sess, To: rcpt, Text: strings.Repeat("a", 4097)}, "text_too_long/text"},
		{"4096 multibyte ok", SendInput{SessionID: sess, To: rcpt, Text: strings.Repeat("é", 4096)}, "ok"},
		{"long idempotency key", SendInput{SessionID: sess, To: rcpt, Text: "x", IdempotencyKey: strings.Repeat("k", 256)}, "invalid_request/Idempotency-Key"},
		// Validation runs before existence: a bad recipient on an unknown session is a 400.
		{"validation before existence", SendInput{SessionID: "919800000000", To: "12", Text: "x"}, "invalid_recipient/to"},
		{"unknown session", SendInput{SessionID: "919800000000", To: rcpt, Text: "x"}, "session_not_found/sessionId"},
		{"not on whatsapp", SendInput{SessionID: sess, To: "919999990000", Text: "x"}, "recipient_not_on_whatsapp/to"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := h.app.Send(context.Background(), DefaultWorkspace, c.in)
			if got := codeOf(err); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			if e, ok := AsError(err); ok && e.Message == "" {
				t.Fatal("error without a message")
			}
		})
	}
	u, _ := h.app.Usage(DefaultWorkspace)
	if u.Used != 1 {
		t.Fatalf("used = %d after one accepted send, want 1", u.Used)
	}
}

func TestLifecycleEventsAndStatuses(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	ok := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "order shipped"})
	bad := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: "919999990001", Text: "x"})
	if ok.Status != StatusQueued {
		t.Fatalf("new message status %s", ok.Status)
	}
	m := h.waitStatus(DefaultWorkspace, ok.ID, StatusRead)
	if !m.Sent || !strings.HasPrefix(m.WAID, "3EB0") {
		t.Fatalf("read message %+v has no WhatsApp id", m)
	}
	f := h.waitStatus(DefaultWorkspace, bad.ID, StatusFailed)
	if f.Error == nil || f.Error.Code != "send_failed" || f.Sent {
		t.Fatalf("failed message %+v", f)
	}
	if got := fmt.Sprint(h.events.types(ok.ID)); got != "[message.sent message.delivered message.read]" {
		t.Fatalf("events of a good send = %s", got)
	}
	if got := fmt.Sprint(h.events.types(bad.ID)); got != "[message.failed]" {
		t.Fatalf("events of a failed send = %s (no message.sent before a failure)", got)
	}
	if n := h.app.SendFailures()["send_failed"]; n != 1 {
		t.Fatalf("send_failed counted %d times, want 1", n)
	}
	h.waitQueueEmpty(DefaultWorkspace, sess)
	if v, _ := h.app.Session(DefaultWorkspace, sess); v.Status != "connected" {
		t.Fatalf("session after drain: %+v", v)
	}
}

// TestSimulatedInboundIsStoredWhenAccepted: the sandbox's inbound route
// answers once the message is on disk, so one accepted just before a crash
// is not lost (an audit lost 25 of 15,455 accepted ones to kill -9 when it
// answered on queueing): each is listed the moment SimulateInbound returns.
func TestSimulatedInboundIsStoredWhenAccepted(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	for i := range 20 {
		if err := h.app.SimulateInbound(context.Background(), DefaultWorkspace, sess, rcpt, fmt.Sprint("order ", i), ""); err != nil {
			t.Fatal(err)
		}
		n := 0
		_ = h.app.Messages(DefaultWorkspace, MessageFilter{Direction: "inbound"}, func(*storage.Message) bool { n++; return true })
		if n != i+1 {
			t.Fatalf("after %d accepted inbound messages, %d are stored", i+1, n)
		}
	}
}

func TestInboundIsLoggedWithEvent(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	if err := h.app.SimulateInbound(context.Background(), DefaultWorkspace, sess, rcpt, "is my order on its way?", ""); err != nil {
		t.Fatal(err)
	}
	var got *storage.Message
	deadline := time.Now().Add(5 * time.Second)
	for got == nil && time.Now().Before(deadline) {
		_ = h.app.Messages(DefaultWorkspace, MessageFilter{Direction: "inbound"}, func(m *storage.Message) bool { got = m; return false })
		time.Sleep(5 * time.Millisecond)
	}
	if got == nil || got.From != rcpt || got.To != sess || got.Status != StatusReceived || got.Text != "is my order on its way?" {
		t.Fatalf("inbound = %+v", got)
	}
	if fmt.Sprint(h.events.types(got.ID)) != "[message.received]" {
		t.Fatalf("inbound events = %v", h.events.types(got.ID))
	}
}

// waitInbound returns the newest inbound message with text, once it is in
// the log.
func (h *harness) waitInbound(text string) *storage.Message {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var got *storage.Message
		_ = h.app.Messages(DefaultWorkspace, MessageFilter{Direction: "inbound"}, func(m *storage.Message) bool {
			if m.Text == text {
				got = m
				return false
			}
			return true
		})
		if got != nil {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("no inbound message %q", text)
	return nil
}

// An inbound message that quotes or reacts to another names it: by its
// WhatsApp id always, and by its message id when it is in the session's log
// (a message we sent, whose WhatsApp id is made from its id, or one we
// received, found in the WhatsApp-id index). The event says the same.
func TestInboundNamesTheMessageItRefersTo(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	sent := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "Your order #1042 ships today. Reply STOP to cancel."})
	sent = h.waitStatus(DefaultWorkspace, sent.ID, StatusRead)

	if err := h.app.SimulateInbound(context.Background(), DefaultWorkspace, sess, rcpt, "STOP", sent.ID); err != nil {
		t.Fatal(err)
	}
	reply := h.waitInbound("STOP")
	if reply.RefersTo != sent.ID || reply.RefersToWAID != sent.WAID || sent.WAID == "" {
		t.Fatalf("reply to a sent message refers to %q (%q), want %s (%s)", reply.RefersTo, reply.RefersToWAID, sent.ID, sent.WAID)
	}
	if err := h.app.SimulateInbound(context.Background(), DefaultWorkspace, sess, rcpt, "I mean it", reply.ID); err != nil {
		t.Fatal(err)
	}
	again := h.waitInbound("I mean it")
	if again.RefersTo != reply.ID || again.RefersToWAID != reply.WAID {
		t.Fatalf("reply to a received message refers to %q (%q), want %s (%s)", again.RefersTo, again.RefersToWAID, reply.ID, reply.WAID)
	}
	// A message the log does not have (sent from the phone, say) is named
	// by its WhatsApp id alone.
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.transportNow().(whatsapp.InboundSimulator).SimulateInbound(context.Background(), rcpt, "and this?", "3EB0FFFFFFFFFFFFFFFFFFFF"); err != nil {
		t.Fatal(err)
	}
	foreign := h.waitInbound("and this?")
	if foreign.RefersTo != "" || foreign.RefersToWAID != "3EB0FFFFFFFFFFFFFFFFFFFF" {
		t.Fatalf("reply to an unknown message refers to %q (%q)", foreign.RefersTo, foreign.RefersToWAID)
	}
	h.events.mu.Lock()
	var evs []Event
	for _, e := range h.events.staged {
		if e.Type == EventMessageReceived {
			evs = append(evs, *e)
		}
	}
	h.events.mu.Unlock()
	if len(evs) != 3 || evs[0].RefersTo != sent.ID || evs[0].RefersToWAID != sent.WAID ||
		evs[1].RefersTo != reply.ID || evs[2].RefersTo != "" || evs[2].RefersToWAID != "3EB0FFFFFFFFFFFFFFFFFFFF" {
		t.Fatalf("message.received events: %+v", evs)
	}

	// replyTo must name a message of the same session.
	h.mustSession(DefaultWorkspace, "14155550100", "sandbox")
	for _, bad := range []string{"msg_nope", sent.ID} {
		if err := h.app.SimulateInbound(context.Background(), DefaultWorkspace, "14155550100", rcpt, "x", bad); codeOf(err) != "invalid_request/replyTo" {
			t.Errorf("replyTo %s on another session: %v", bad, err)
		}
	}
}

// While the disk is down to its reserve, new messages are refused with 507
// (sends and sandbox inbound; a real session's inbound is left
// unacknowledged, so WhatsApp sends it again), what was accepted still
// drains, and once space is freed sends are accepted again.
func TestLowDiskRefusesNewMessages(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	var free atomic.Uint64
	free.Store(1 << 30)
	if err := h.db.WatchSpace(256<<20, time.Millisecond, func(string) (uint64, error) { return free.Load(), nil }); err != nil {
		t.Fatal(err)
	}
	before := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "accepted before the disk filled"})
	free.Store(10 << 20)
	deadline := time.Now().Add(5 * time.Second)
	var err error
	accepted := int64(1) // before; and any sent before the next measure
	for {
		_, _, err = h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
		if err != nil || time.Now().After(deadline) {
			break
		}
		accepted++
		time.Sleep(time.Millisecond)
	}
	if codeOf(err) != CodeInsufficientDisk+"/" {
		t.Fatalf("send on a full disk: %v (%s), want %s", err, codeOf(err), CodeInsufficientDisk)
	}
	if u, err := h.app.Usage(DefaultWorkspace); err != nil || u.Used != accepted {
		t.Fatalf("a refused send was charged to the quota: used %d (%v), want %d", u.Used, err, accepted)
	}
	if err := h.app.SimulateInbound(context.Background(), DefaultWorkspace, sess, rcpt, "hello?", ""); codeOf(err) != CodeInsufficientDisk+"/" {
		t.Fatalf("sandbox inbound on a full disk: %v", err)
	}
	rt, rerr := h.app.runtime(DefaultWorkspace, sess)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err := rt.StoreInbound(context.Background(), whatsapp.Inbound{WAMessageID: "3EB0AA", From: rcpt, Text: "hi"}); !errors.Is(err, storage.ErrDiskFull) {
		t.Fatalf("a real session's inbound on a full disk was stored: %v", err)
	}
	h.waitStatus(DefaultWorkspace, before.ID, StatusRead) // what was accepted drains
	free.Store(1 << 30)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, _, err = h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "after space was freed"}); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		t.Fatalf("send after space was freed: %v", err)
	}
	if free, low, known := h.app.DiskSpace(); !known || low || free != 1<<30 {
		t.Fatalf("DiskSpace = %d, %v, %v", free, low, known)
	}
}

func TestIdempotency(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	in := SendInput{SessionID: sess, To: rcpt, Text: "x", IdempotencyKey: "order-1042"}
	first := h.mustSend(DefaultWorkspace, in)
	again, replay, err := h.app.Send(context.Background(), DefaultWorkspace, in)
	if err != nil || !replay || again.ID != first.ID {
		t.Fatalf("replay = %v %v %v, want the first message", again, replay, err)
	}
	in.Text = "y"
	if _, _, err := h.app.Send(context.Background(), DefaultWorkspace, in); codeOf(err) != "idempotency_key_reused/Idempotency-Key" {
		t.Fatalf("different body: %s", codeOf(err))
	}
	// Concurrent first uses of one key store exactly one message.
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, _, err := h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "z", IdempotencyKey: "race"})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- m.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Fatalf("20 concurrent sends with one key made %d messages", len(seen))
	}
	if u, _ := h.app.Usage(DefaultWorkspace); u.Used != 2 {
		t.Fatalf("used = %d, want 2", u.Used)
	}
	// After 24 h the key may be used again for a new message.
	h.setNow(func() time.Time { return time.Now().Add(IdempotencyTTL + time.Minute) })
	in.Text = "after a day"
	if m, replay, err := h.app.Send(context.Background(), DefaultWorkspace, in); err != nil || replay || m.ID == first.ID {
		t.Fatalf("after TTL: %v %v %v", m, replay, err)
	}
}

// TestIdempotencyRecordsArePrunedAfterTheTTL: expired records go; a key
// used again after its record expired keeps the new record, though the old
// one's expiry entry is still there when the prune runs.
func TestIdempotencyRecordsArePrunedAfterTheTTL(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	start := time.Now()
	h.setNow(func() time.Time { return start })
	h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "a", IdempotencyKey: "reused"})
	h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "b", IdempotencyKey: "once"})
	if err := h.app.pruneIdempotency(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Idempotency(DefaultWorkspace, "once"); err != nil {
		t.Fatalf("a record within the TTL was pruned: %v", err)
	}

	later := start.Add(IdempotencyTTL + time.Minute)
	h.setNow(func() time.Time { return later })
	in := SendInput{SessionID: sess, To: rcpt, Text: "a, a day later", IdempotencyKey: "reused"}
	second := h.mustSend(DefaultWorkspace, in)
	if err := h.app.pruneIdempotency(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Idempotency(DefaultWorkspace, "once"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired record kept: %v", err)
	}
	again, replay, err := h.app.Send(context.Background(), DefaultWorkspace, in)
	if err != nil || !replay || again.ID != second.ID {
		t.Fatalf("the key's new record was pruned with the old one's entry: %v %v %v", again, replay, err)
	}
	var left []string
	_ = h.db.ExpiredIdempotency(later.Unix()+1, func(ws, key string, at int64) bool {
		left = append(left, fmt.Sprintf("%s/%s@%d", ws, key, at-later.Unix()))
		return true
	})
	if fmt.Sprint(left) != "[default/reused@0]" {
		t.Fatalf("expiry entries left: %v, want only the new record's", left)
	}
}

// TestMessagePageReadsAtMostItsBudget: a page reads at most listScanBudget
// messages; a sparse filter answers partial (here empty) pages with a
// cursor, and following the cursors lists every message once, in order.
func TestMessagePageReadsAtMostItsBudget(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	const other = "919999990002"
	want := []string{h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: other, Text: "oldest"}).ID}
	for i := range 25 {
		want = append(want, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: fmt.Sprint(i)}).ID)
	}
	slices.Reverse(want) // newest first
	defer func(n int) { listScanBudget = n }(listScanBudget)
	listScanBudget = 10

	pages := func(f MessageFilter, limit int) (sizes []int, ids []string) {
		t.Helper()
		for range 20 {
			page, next, err := h.app.MessagePage(DefaultWorkspace, f, limit)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(page))
			for _, m := range page {
				ids = append(ids, m.ID)
			}
			if next == "" {
				return sizes, ids
			}
			f.Before = next
		}
		t.Fatalf("no end after 20 pages: %v", sizes)
		return nil, nil
	}
	sizes, ids := pages(MessageFilter{To: other}, 5)
	if fmt.Sprint(sizes) != "[0 0 1]" || fmt.Sprint(ids) != fmt.Sprint(want[25:]) {
		t.Fatalf("sparse filter: pages of %v holding %v, want [0 0 1] holding the oldest", sizes, ids)
	}
	sizes, ids = pages(MessageFilter{}, 5)
	if fmt.Sprint(sizes) != "[5 5 5 5 5 1]" || fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("no filter: pages of %v holding %v, want every message once, newest first", sizes, ids)
	}
	sizes, ids = pages(MessageFilter{To: rcpt}, 8)
	if fmt.Sprint(sizes) != "[8 8 8 1]" || fmt.Sprint(ids) != fmt.Sprint(want[:25]) {
		t.Fatalf("filter on most messages: pages of %v holding %v, want [8 8 8 1] holding the 25 to %s, newest first", sizes, ids, rcpt)
	}
}

func TestQuotaIsExactUnderConcurrency(t *testing.T) {
	h := newHarness(t)
	h.setNow(func() time.Time { return time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC) })
	if _, err := h.app.CreateWorkspace("acme", 50); err != nil {
		t.Fatal(err)
	}
	h.mustSession("acme", sess, "sandbox")
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				_, _, err := h.app.Send(context.Background(), "acme", SendInput{SessionID: sess, To: rcpt, Text: "x"})
				switch e, _ := AsError(err); {
				case err == nil:
					accepted.Add(1)
				case e != nil && e.Code == CodeQuotaExceeded:
					if e.RetryAfter != 60 {
						t.Errorf("Retry-After %d at 23:59 on the last day, want 60", e.RetryAfter)
					}
					refused.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 50 || refused.Load() != 110 {
		t.Fatalf("accepted %d refused %d, want exactly 50 and 110", accepted.Load(), refused.Load())
	}
	n := 0
	_ = h.app.Messages("acme", MessageFilter{}, func(*storage.Message) bool { n++; return true })
	if n != 50 {
		t.Fatalf("%d messages stored, want 50", n)
	}
	u, _ := h.app.Usage("acme")
	if u.Used != 50 || u.Period != "2026-11" || u.ResetsAt != time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Unix() {
		t.Fatalf("usage = %+v", u)
	}
	// The month turns: the budget is whole again, and the count survives a restart.
	h.setNow(func() time.Time { return time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC) })
	h.mustSend("acme", SendInput{SessionID: sess, To: rcpt, Text: "december"})
	h.close()
	h.open(fastSandbox())
	if u, _ := h.app.Usage("acme"); u.Used != 1 || u.Period != "2026-12" {
		t.Fatalf("after restart: %+v", u)
	}
	h.setNow(func() time.Time { return time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) })
	if u, _ := h.app.Usage("acme"); u.Used != 50 {
		t.Fatalf("november count after restart = %d, want 50", u.Used)
	}
}

// gatedDriver is a transport whose sends fail as "not connected" until
// opened, so messages stay queued.
type gatedDriver struct {
	open    atomic.Bool
	sent    sync.Map // WA id → count
	handler atomic.Value
	refuse  atomic.Value // string: a SendError code every send fails with, "" none
}

func (d *gatedDriver) Name() string { return "gated" }

// newGatedHarness starts a harness with one session on a closed gatedDriver
// whose recipient is known to be on WhatsApp.
func newGatedHarness(t *testing.T) (*harness, *gatedDriver) {
	t.Helper()
	gate := &gatedDriver{}
	h := newHarness(t, gate)
	h.mustSession(DefaultWorkspace, sess, "gated")
	h.knowRecipient()
	return h, gate
}

// release opens the gate and wakes the session's dispatcher, which waits
// after the gate turned it away.
func (d *gatedDriver) release(h *harness) {
	d.open.Store(true)
	rt, _ := h.app.runtime(DefaultWorkspace, sess)
	rt.kick()
}
func (d *gatedDriver) Open(_ context.Context, _ whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected})
	d.handler.Store(h)
	return &gatedTransport{d: d}, nil
}

type gatedTransport struct{ d *gatedDriver }

func (t *gatedTransport) Send(_ context.Context, r whatsapp.SendRequest) (whatsapp.SendResult, error) {
	if !t.d.open.Load() {
		return whatsapp.SendResult{}, &whatsapp.SendError{Code: CodeSessionNotConnected, Message: "gate closed"}
	}
	if code, _ := t.d.refuse.Load().(string); code != "" {
		return whatsapp.SendResult{}, &whatsapp.SendError{Code: code, Message: "refused by the test"}
	}
	v, _ := t.d.sent.LoadOrStore(r.ID, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	return whatsapp.SendResult{WAMessageID: r.ID, Timestamp: time.Now()}, nil
}

// CheckNumbers says nobody is on WhatsApp; tests that send seed the cache.
func (t *gatedTransport) CheckNumbers(_ context.Context, n []string) ([]bool, error) {
	return make([]bool, len(n)), nil
}

// checkSentOnceEach fails t unless exactly want distinct messages went
// through the gate, each once.
func (d *gatedDriver) checkSentOnceEach(t *testing.T, want int) {
	t.Helper()
	n := 0
	d.sent.Range(func(_, v any) bool {
		n++
		if c := v.(*atomic.Int64).Load(); c != 1 {
			t.Errorf("a message was sent %d times", c)
		}
		return true
	})
	if n != want {
		t.Fatalf("%d distinct messages sent, want %d", n, want)
	}
}

func (t *gatedTransport) Close() error                 { return nil }
func (t *gatedTransport) Logout(context.Context) error { return nil }

// knowRecipient puts rcpt in the session's number cache as on WhatsApp: the
// gated transport says nobody is, so sends are answered from the cache.
func (h *harness) knowRecipient() {
	h.t.Helper()
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		h.t.Fatal(err)
	}
	rt.numbers.mu.Lock()
	rt.numbers.m[rcpt] = numberEntry{on: true, expires: time.Now().Add(time.Hour)}
	rt.numbers.mu.Unlock()
}

func TestRestartResumesQueueWithoutDuplicates(t *testing.T) {
	h, gate := newGatedHarness(t)
	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: fmt.Sprint("m", i)}).ID)
	}
	if v, _ := h.app.Session(DefaultWorkspace, sess); v.QueueDepth != 40 {
		t.Fatalf("queue depth %d, want 40", v.QueueDepth)
	}
	h.close()

	gate.open.Store(true)
	h.open(gate)
	for _, id := range ids {
		h.waitStatus(DefaultWorkspace, id, StatusSent)
	}
	gate.checkSentOnceEach(t, 40)
	h.waitQueueEmpty(DefaultWorkspace, sess)
}

func (h *harness) waitQueueEmpty(ws, id string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, _ := h.app.Session(ws, id)
		if v.QueueDepth == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("queue depth stays %d", v.QueueDepth)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeleteSessionFailsQueuedMessages(t *testing.T) {
	h, _ := newGatedHarness(t)
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
	if err := h.app.DeleteSession(context.Background(), DefaultWorkspace, sess); err != nil {
		t.Fatal(err)
	}
	got, _ := h.app.Message(DefaultWorkspace, m.ID)
	if got.Status != StatusFailed || got.Error == nil || got.Error.Code != CodeSessionNotConnected {
		t.Fatalf("queued message after delete: %+v", got)
	}
	if _, err := h.app.Session(DefaultWorkspace, sess); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("deleted session: %s", codeOf(err))
	}
	// The id is free again.
	h.mustSession(DefaultWorkspace, sess, "gated")
}

func TestSessionsAreUniquePerWorkspaceAndIsolated(t *testing.T) {
	h := newHarness(t)
	if _, err := h.app.CreateWorkspace("other", 0); err != nil {
		t.Fatal(err)
	}
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	if _, err := h.app.CreateSession(DefaultWorkspace, sess, "sandbox"); codeOf(err) != "session_exists/sessionId" {
		t.Fatalf("duplicate session: %s", codeOf(err))
	}
	if _, err := h.app.CreateSession(DefaultWorkspace, "919876543211", "telepathy"); codeOf(err) != "invalid_request/driver" {
		t.Fatalf("unknown driver: %s", codeOf(err))
	}
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
	if _, err := h.app.Message("other", m.ID); codeOf(err) != "message_not_found/id" {
		t.Fatalf("other workspace reads message: %s", codeOf(err))
	}
	if _, _, err := h.app.Send(context.Background(), "other", SendInput{SessionID: sess, To: rcpt, Text: "x"}); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("other workspace sends through session: %s", codeOf(err))
	}
	if len(h.app.Sessions("other")) != 0 {
		t.Fatal("other workspace lists our session")
	}
	// The same number may be a session in another workspace.
	h.mustSession("other", sess, "sandbox")
}

// A revocation racing a rotation or a limit change stays a revocation: the
// change must not write back the key it read before the deletion.
func TestRevokeRacingAChangeStaysRevoked(t *testing.T) {
	h := newHarness(t)
	for i := range 40 {
		plain, k, err := h.app.CreateKey(DefaultWorkspace, "race", KeyLimits{})
		if err != nil {
			t.Fatal(err)
		}
		var rotated string
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				rotated, _, _ = h.app.RotateKey(k.ID)
			} else {
				rate := 100 + i
				_, _ = h.app.SetKeyLimits(k.ID, KeyLimits{RatePerMinute: &rate})
			}
		}()
		var revokeErr error
		go func() {
			defer wg.Done()
			revokeErr = h.app.RevokeKey(k.ID)
		}()
		wg.Wait()
		if revokeErr != nil {
			t.Fatalf("revoke: %v", revokeErr)
		}
		if _, ok := h.app.state.Key(k.ID); ok {
			t.Fatalf("run %d: key %s is back after its revocation returned", i, k.ID)
		}
		for _, p := range []string{plain, rotated} {
			if _, err := h.app.Authenticate([]byte(p)); p != "" && err == nil {
				t.Fatalf("run %d: a revoked key still authenticates", i)
			}
		}
	}
}

func TestKeysRotateAndRevokeTakeEffectAtOnce(t *testing.T) {
	h := newHarness(t)
	plain, k, err := h.app.CreateKey(DefaultWorkspace, "backend", KeyLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := h.app.Authenticate([]byte(plain)); err != nil || got.ID != k.ID {
		t.Fatalf("fresh key: %v", err)
	}
	if strings.Contains(fmt.Sprintf("%+v", k), plain) {
		t.Fatal("key record holds the plaintext")
	}
	newPlain, _, err := h.app.RotateKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.app.Authenticate([]byte(plain)); codeOf(err) != "invalid_api_key/" {
		t.Fatalf("old key after rotation: %s", codeOf(err))
	}
	if _, err := h.app.Authenticate([]byte(newPlain)); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if err := h.app.RevokeKey(k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.app.Authenticate([]byte(newPlain)); codeOf(err) != "invalid_api_key/" {
		t.Fatalf("revoked key: %s", codeOf(err))
	}
	if _, err := h.app.Authenticate(nil); codeOf(err) != "missing_api_key/" {
		t.Fatalf("no key: %s", codeOf(err))
	}
	if _, err := h.app.Authenticate([]byte("wlt_live_typo")); codeOf(err) != "invalid_api_key/" {
		t.Fatalf("malformed key: %s", codeOf(err))
	}
	if _, _, err := h.app.CreateKey("nope", "", KeyLimits{}); codeOf(err) != "not_found/workspace" {
		t.Fatalf("key in missing workspace: %s", codeOf(err))
	}
	zero := 0
	if _, _, err := h.app.CreateKey(DefaultWorkspace, "", KeyLimits{Burst: &zero}); codeOf(err) != "invalid_request/burst" {
		t.Fatalf("burst 0: %s", codeOf(err))
	}
}

func TestLimitOverridesApplyToNextRequest(t *testing.T) {
	h := newHarness(t)
	frozen := time.Now()
	h.setNow(func() time.Time { return frozen })
	h.close()
	h.open(fastSandbox()) // the limiter takes the frozen clock
	three := 3
	_, k, err := h.app.CreateKey(DefaultWorkspace, "", KeyLimits{Burst: &three})
	if err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for i := 0; i < 5; i++ {
		if h.app.Admit(k).Allowed() {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("burst 3 admitted %d", admitted)
	}
	ten := 10
	k, _ = h.app.SetKeyLimits(k.ID, KeyLimits{Burst: &ten})
	if d := h.app.Admit(k); !d.Allowed() || d.Limit != 10 {
		t.Fatalf("after raising burst: %+v", d)
	}
}

func FuzzValidateSend(f *testing.F) {
	f.Add(sess, rcpt, "hello", "")
	f.Add("+919876543210", "91 999", "", "k")
	f.Add("00000000", "999999999999999", strings.Repeat("x", 4097), strings.Repeat("k", 256))
	f.Add(sess, rcpt, "\xff\xfe", "\x00")
	f.Fuzz(func(t *testing.T, sid, to, text, idem string) {
		err := ValidateSend(SendInput{SessionID: sid, To: to, Text: text, IdempotencyKey: idem})
		if err == nil {
			if !validNumber(sid) || !validNumber(to) || text == "" || len([]rune(text)) > MaxTextRunes || utf8.RuneCountInString(idem) > MaxIdempotencyKey {
				t.Fatalf("accepted invalid send %q %q %q", sid, to, text)
			}
			return
		}
		e, ok := AsError(err)
		if !ok || e.Code == "" || e.Message == "" || e.Param == "" {
			t.Fatalf("validation error without code, message or param: %v", err)
		}
	})
}

func TestSentMessagesGetTheirReceiptsAfterRestart(t *testing.T) {
	h := newHarness(t, silentSandbox())
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: fmt.Sprint(i)}).ID)
	}
	for _, id := range ids {
		h.waitStatus(DefaultWorkspace, id, StatusSent)
	}
	h.close() // the simulated network forgets the receipts it owed
	h.open(fastSandbox())
	for _, id := range ids {
		h.waitStatus(DefaultWorkspace, id, StatusRead)
	}
	// Once all are read, the marks have moved past them: the next restart
	// reads none of them again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		marks, found, err := h.db.SessionMarks(DefaultWorkspace, sess)
		if err != nil || !found {
			t.Fatalf("marks: %v %v", found, err)
		}
		if marks.AwaitFrom > ids[len(ids)-1] && marks.QueueFrom > ids[len(ids)-1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marks %+v still cover the read messages (last %s)", marks, ids[len(ids)-1])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPacerTimeline(t *testing.T) {
	cfg := &storage.Pacing{RatePerMinute: 20, MaxJitterMs: 1000, RecipientGapSeconds: 10}
	p := newPacer()
	p.rand = func() float64 { return 0.5 } // 500 ms of jitter each time
	t0 := time.Unix(1_800_000_000, 0)
	if at := p.next(cfg, "a"); !at.Before(t0) {
		t.Fatalf("first send held until %v", at)
	}
	p.sent(cfg, "a", t0)
	// 3 s for 20/min, plus 500 ms of jitter.
	if at := p.next(cfg, "b"); !at.Equal(t0.Add(3500 * time.Millisecond)) {
		t.Fatalf("next to b at %v, want +3.5s", at.Sub(t0))
	}
	// The same recipient waits for its 10 s gap.
	if at := p.next(cfg, "a"); !at.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("next to a at %v, want +10s", at.Sub(t0))
	}
	p.sent(cfg, "b", t0.Add(4*time.Second))
	if at := p.next(&storage.Pacing{}, "b"); !at.Equal(t0.Add(4 * time.Second)) {
		t.Fatalf("unpaced next at %v", at.Sub(t0))
	}
	// A restart takes up the stored sends: the rate counts from the last,
	// each recipient's gap from its own.
	ns := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	r := newPacer()
	r.rand = p.rand
	r.restore([]storage.PacedSend{{To: "a", At: ns(-2 * time.Second)}, {To: "b", At: ns(0)}}, t0.Add(time.Minute))
	for to, want := range map[string]time.Duration{"a": 8 * time.Second, "b": 10 * time.Second, "c": 3500 * time.Millisecond} {
		if at := r.next(cfg, to); !at.Equal(t0.Add(want)) {
			t.Errorf("after a restore, next to %s at %v, want +%v", to, at.Sub(t0), want)
		}
	}
	r.sent(cfg, "c", t0.Add(10*time.Second))
	if at := r.next(cfg, "d"); !at.Equal(t0.Add(13500 * time.Millisecond)) {
		t.Fatalf("after a restore and a send, next to d at %v, want +13.5s", at.Sub(t0))
	}
	if len(r.recent) != 3 || r.recent[2].To != "c" {
		t.Fatalf("sends remembered for the next restart: %+v", r.recent)
	}
	// pacedMemory sends stored: older ones are unknown, so anyone may have
	// been sent to as late as the oldest stored.
	var full []storage.PacedSend
	for i := range pacedMemory {
		full = append(full, storage.PacedSend{To: fmt.Sprint("r", i), At: ns(time.Duration(i) * time.Millisecond)})
	}
	f := newPacer()
	f.rand = p.rand
	f.restore(full, t0.Add(time.Minute))
	if at := f.next(cfg, "stranger"); !at.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("after a full restore, next to a stranger at %v, want +10s", at.Sub(t0))
	}
	for range 2 * pacedMemory {
		f.sent(cfg, "x", t0.Add(time.Hour))
	}
	if len(f.recent) != pacedMemory {
		t.Fatalf("%d sends remembered, want the last %d", len(f.recent), pacedMemory)
	}
	// A send stored while the clock was a day ahead counts as now.
	ahead := newPacer()
	ahead.rand = p.rand
	ahead.restore([]storage.PacedSend{{To: "e", At: ns(24 * time.Hour)}}, t0)
	if at := ahead.next(cfg, "e"); !at.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("after restoring a future send, next at %v, want +10s", at.Sub(t0))
	}
	// Restored times take now's monotonic reading, so a later step of the
	// wall clock does not hold the session back.
	now := time.Now()
	m := newPacer()
	m.restore([]storage.PacedSend{{To: "g", At: now.Add(-time.Second).UnixNano()}}, now)
	if !strings.Contains(m.last.String(), "m=") || !strings.Contains(m.recipients["g"].String(), "m=") {
		t.Fatalf("restored times %v, %v carry no monotonic reading", m.last, m.recipients["g"])
	}
	unknown := newPacer()
	unknown.rand = p.rand
	unknown.restoreUnknown(t0)
	if at := unknown.next(cfg, "h"); !at.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("after an unreadable record, next at %v, want +10s", at.Sub(t0))
	}
	if pacingFor(&storage.Session{Driver: "sandbox"}) != nil || pacingFor(&storage.Session{Driver: "whatsmeow"}) == nil {
		t.Fatal("default pacing: none for sandbox, DefaultPacing for whatsmeow")
	}
	if err := ValidatePacing(&storage.Pacing{RatePerMinute: 601}); codeOf(err) != "invalid_request/pacing.ratePerMinute" {
		t.Fatalf("bad rate: %s", codeOf(err))
	}
}

func TestPacedSessionSpacesSendsAndShowsNextSendAt(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	if _, err := h.app.SetPacing(DefaultWorkspace, sess, &storage.Pacing{RatePerMinute: 300}); err != nil { // one per 200 ms
		t.Fatal(err)
	}
	start := time.Now()
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: fmt.Sprint(i)}).ID)
	}
	sawNext := false
	for _, id := range ids {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if v, _ := h.app.Session(DefaultWorkspace, sess); v.NextSendAt != 0 && v.QueueDepth > 0 {
				sawNext = true
			}
			if m, _ := h.app.Message(DefaultWorkspace, id); m != nil && m.Status != StatusQueued {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s never sent", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if el := time.Since(start); el < 550*time.Millisecond {
		t.Fatalf("4 sends at 300/min took %v, want ≥ 600 ms less the first", el)
	}
	if !sawNext {
		t.Fatal("nextSendAt never shown while the pacer held sends back")
	}
}

// TestPacingSurvivesARestart: a paced session's next send after a restart
// waits out the interval from its last send before the restart (which an
// audit found went at once, so a restart could burst a paced backlog).
func TestPacingSurvivesARestart(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	const interval = time.Second
	if _, err := h.app.SetPacing(DefaultWorkspace, sess, &storage.Pacing{RatePerMinute: int(time.Minute / interval)}); err != nil {
		t.Fatal(err)
	}
	// The stored sends' times are the pacer's own (a poll of the status
	// would add the commits' fsyncs to what is measured).
	lastPaced := func() time.Duration {
		t.Helper()
		sends, err := h.db.PacedSends(DefaultWorkspace, sess)
		if err != nil || len(sends) == 0 {
			t.Fatalf("stored paced sends: %v, %v", sends, err)
		}
		return time.Duration(sends[len(sends)-1].At)
	}
	waitSent := func(id string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if m, _ := h.app.Message(DefaultWorkspace, id); m != nil && m.Status != StatusQueued {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s never sent", id)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitSent(h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "before"}).ID)
	first := lastPaced()
	h.close()
	h.open(fastSandbox())
	waitSent(h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "after"}).ID)
	if gap := lastPaced() - first; gap < interval-time.Millisecond {
		t.Fatalf("the first send after a restart went %v after the last one before it, want ≥ %v", gap, interval)
	}
	if err := h.app.DeleteSession(context.Background(), DefaultWorkspace, sess); err != nil {
		t.Fatal(err)
	}
	if sends, err := h.db.PacedSends(DefaultWorkspace, sess); sends != nil || err != nil {
		t.Fatalf("a deleted session's paced sends are still stored (%v, err %v)", sends, err)
	}
}

// newGatedHarnessWithMaxAge is newGatedHarness with --max-queue-age maxAge.
func newGatedHarnessWithMaxAge(t *testing.T, maxAge time.Duration) (*harness, *gatedDriver) {
	t.Helper()
	gate := &gatedDriver{}
	h := &harness{t: t, dir: t.TempDir(), events: &recordingSink{}}
	h.setNow(time.Now)
	db, err := storage.Open(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.OpenLocalState(db)
	if err != nil {
		t.Fatal(err)
	}
	app, err := Open(Config{DB: db, State: st, Drivers: []whatsapp.Driver{gate}, Events: h.events, Now: h.now,
		MaxQueueAge: maxAge, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h.db, h.app = db, app
	t.Cleanup(h.close)
	h.mustSession(DefaultWorkspace, sess, "gated")
	h.knowRecipient()
	return h, gate
}

func TestQueuedMessagesExpireWhileDisconnected(t *testing.T) {
	// Logged out or banned too: their backlog must not wait for a re-pairing
	// or the ban's end and then go out in one burst.
	for _, status := range []string{whatsapp.StatusDisconnected, whatsapp.StatusLoggedOut, whatsapp.StatusBanned} {
		t.Run(status, func(t *testing.T) {
			h, gate := newGatedHarnessWithMaxAge(t, 80*time.Millisecond)
			m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
			gate.handler.Load().(whatsapp.Handler).OnStatus(whatsapp.StatusChange{Status: status, Reason: "test"})
			if status == whatsapp.StatusDisconnected {
				// A paired session that is disconnected still accepts sends: they wait.
				h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "y"})
			}
			got := h.waitStatus(DefaultWorkspace, m.ID, StatusFailed)
			if got.Error == nil || got.Error.Code != CodeSessionNotConnected || !strings.Contains(got.Error.Message, "max-queue-age") {
				t.Fatalf("expired message: %+v", got.Error)
			}
			h.waitQueueEmpty(DefaultWorkspace, sess)
			if fmt.Sprint(h.events.types(m.ID)) != "[message.failed]" {
				t.Fatalf("events = %v", h.events.types(m.ID))
			}
		})
	}
}

// pairingDriver pretends to be a network that needs pairing: each Open
// reports pairing and offers a QR code; opens counts restarts.
type pairingDriver struct {
	opens atomic.Int64
	last  atomic.Value // whatsapp.Handler
}

func (d *pairingDriver) Name() string { return whatsapp.DriverWhatsmeow }
func (d *pairingDriver) Open(_ context.Context, _ whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	n := d.opens.Add(1)
	d.last.Store(h)
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusPairing, Reason: "scan the QR code"})
	return &pairingTransport{code: fmt.Sprintf("2@code-%d", n), h: h}, nil
}

type pairingTransport struct {
	gatedTransport
	code string
	h    whatsapp.Handler
}

func (t *pairingTransport) QR() (string, time.Time, error) {
	return t.code, time.Unix(1_800_000_060, 0), nil
}
func (t *pairingTransport) PairingCode(context.Context) (string, error) { return "ABCD-EFGH", nil }

func TestPairingQRCodesAndRestartAfterTimeout(t *testing.T) {
	d := &pairingDriver{}
	h := newHarness(t, d)
	if _, err := h.app.CreateSession(DefaultWorkspace, sess, "whatsmeow"); err != nil {
		t.Fatal(err)
	}
	q, err := h.app.QR(context.Background(), DefaultWorkspace, sess)
	if err != nil || q.Code != "2@code-1" || q.ExpiresAt != 1_800_000_060 {
		t.Fatalf("QR = %+v, %v", q, err)
	}
	png, _, err := h.app.QRPNG(context.Background(), DefaultWorkspace, sess, 128)
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("QR PNG: %d bytes, %v", len(png), err)
	}
	if code, err := h.app.PairingCode(context.Background(), DefaultWorkspace, sess); err != nil || code != "ABCD-EFGH" {
		t.Fatalf("pairing code %q, %v", code, err)
	}
	// Never paired: sends are refused, not queued.
	if _, _, err := h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"}); codeOf(err) != "session_not_connected/sessionId" {
		t.Fatalf("send before pairing: %s", codeOf(err))
	}
	// The codes run out; asking again restarts pairing with a fresh code.
	d.last.Load().(whatsapp.Handler).OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusPairingTimeout, Reason: "no scan"})
	if v, _ := h.app.Session(DefaultWorkspace, sess); v.Status != whatsapp.StatusPairingTimeout {
		t.Fatalf("status %s, want pairing_timeout", v.Status)
	}
	q, err = h.app.QR(context.Background(), DefaultWorkspace, sess)
	if err != nil || q.Code != "2@code-2" || d.opens.Load() != 2 {
		t.Fatalf("after timeout: %+v, %v, %d opens", q, err, d.opens.Load())
	}
	// A sandbox session is never pairing.
	h2 := newHarness(t)
	h2.mustSession(DefaultWorkspace, sess, "sandbox")
	if _, err := h2.app.QR(context.Background(), DefaultWorkspace, sess); codeOf(err) != "session_not_pairing/sessionId" {
		t.Fatalf("sandbox QR: %s", codeOf(err))
	}
}

// TestKeyLimitChangeAppliesFromTheChange: idle time after a PATCH of a
// key's rate counts at the new rate (it counted at the old one until the
// key's next request, which gave a second burst after a lowered rate).
func TestKeyLimitChangeAppliesFromTheChange(t *testing.T) {
	h := newHarness(t)
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var offset atomic.Int64
	h.setNow(func() time.Time { return start.Add(time.Duration(offset.Load())) })
	fast, slow := 600, 6
	plain, _, err := h.app.CreateKey(DefaultWorkspace, "backend", KeyLimits{RatePerMinute: &fast})
	if err != nil {
		t.Fatal(err)
	}
	admit := func() bool {
		k, err := h.app.Authenticate([]byte(plain))
		if err != nil {
			t.Fatal(err)
		}
		return h.app.AdmitAt(k, h.now()).Allowed()
	}
	for i := range 100 {
		if !admit() {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	k, _ := h.app.Authenticate([]byte(plain))
	if _, err := h.app.SetKeyLimits(k.ID, KeyLimits{RatePerMinute: &slow}); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(10500 * time.Millisecond))
	admitted := 0
	for range 100 {
		if admit() {
			admitted++
		}
	}
	if admitted != 1 {
		t.Fatalf("10.5 s after the rate went from 600 to 6 a minute, with the burst used: %d admitted, want 1", admitted)
	}
}

// TestSecondsUntilRoundsUp: a quota's Retry-After never falls short of the
// month's turn, even by a fraction of a millisecond (+0.999 s did).
func TestSecondsUntilRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 1}, {-time.Second, 1}, {time.Nanosecond, 1}, {time.Second, 1},
		{time.Second + 500*time.Microsecond, 2}, {time.Second + time.Nanosecond, 2}, {59*time.Second + 999*time.Millisecond, 60},
	} {
		if got := secondsUntil(tc.d); got != tc.want {
			t.Errorf("secondsUntil(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// sessionEvents lists the session.* events staged so far, with reasons.
func (s *recordingSink) sessionEvents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ev := range s.staged {
		if strings.HasPrefix(ev.Type, "session.") {
			out = append(out, ev.Type+"("+ev.Reason+")")
		}
	}
	return out
}

// TestBanAfterADropIsAnEvent: a ban shows on the reconnect after a drop,
// from disconnected; it is a session.disconnected event with the ban's
// reason (only a move away from connected made one).
func TestBanAfterADropIsAnEvent(t *testing.T) {
	h, gate := newGatedHarness(t)
	hd := gate.handler.Load().(whatsapp.Handler)
	hd.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusDisconnected, Reason: "lost"})
	hd.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusBanned, Reason: "banned until tomorrow"})
	hd.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusBanned, Reason: "banned until tomorrow"})
	got := fmt.Sprint(h.events.sessionEvents())
	if want := "[session.connected() session.disconnected(lost) session.disconnected(banned until tomorrow)]"; got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
}

// TestUnlinkedSessionRefusesSendsAfterARestart: a session logged out from
// the phone refuses sends (409) after a restart too, where its status moves
// on to connecting or disconnected; they were queued for a device that no
// longer exists.
func TestUnlinkedSessionRefusesSendsAfterARestart(t *testing.T) {
	h, gate := newGatedHarness(t)
	gate.handler.Load().(whatsapp.Handler).OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusLoggedOut, Reason: "unlinked on the phone"})
	h.close()
	reopened := &offlineDriver{}
	h.open(reopened)
	_, _, err := h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
	if codeOf(err) != "session_not_connected/sessionId" {
		t.Fatalf("send to an unlinked session after a restart: %s", codeOf(err))
	}
	// Asked to pair, it is opened, and cannot reach WhatsApp: disconnected,
	// and still without a device.
	_, _ = h.app.QR(context.Background(), DefaultWorkspace, sess)
	if v, _ := h.app.Session(DefaultWorkspace, sess); reopened.h == nil || v.Status != whatsapp.StatusDisconnected {
		t.Fatalf("an unlinked session asked to pair: %+v", v)
	}
	_, _, err = h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
	if codeOf(err) != "session_not_connected/sessionId" {
		t.Fatalf("send to an unlinked session, disconnected: %s", codeOf(err))
	}
	// Paired again: sends are taken.
	reopened.h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected})
	h.knowRecipient()
	if _, _, err := h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "y"}); err != nil {
		t.Fatalf("send once paired again: %v", err)
	}
}

// offlineDriver is "gated" that cannot reach the network: Open reports
// disconnected.
type offlineDriver struct{ h whatsapp.Handler }

func (d *offlineDriver) Name() string { return "gated" }
func (d *offlineDriver) Open(_ context.Context, _ whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	d.h = h
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusDisconnected, Reason: "could not connect"})
	return &gatedTransport{d: &gatedDriver{}}, nil
}

// TestMaxQueueAgeCountsFromGoingOffline: a backlog older than the maximum
// age is not failed by a short disconnect: the age is how long the session
// has been offline, not how old each message is.
func TestMaxQueueAgeCountsFromGoingOffline(t *testing.T) {
	h, gate := newGatedHarnessWithMaxAge(t, 150*time.Millisecond)
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "waits behind the gate"})
	// Older than the maximum age, connected all along; over a second, as
	// messages' ages are compared in whole seconds.
	time.Sleep(1100 * time.Millisecond)
	hd := gate.handler.Load().(whatsapp.Handler)
	hd.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusDisconnected, Reason: "blip"})
	time.Sleep(80 * time.Millisecond)
	hd.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected})
	time.Sleep(120 * time.Millisecond)
	if got, _ := h.app.Message(DefaultWorkspace, m.ID); got.Status != StatusQueued {
		t.Fatalf("after an 80 ms disconnect the old message is %s (%+v), want still queued", got.Status, got.Error)
	}
	gate.release(h)
	h.waitStatus(DefaultWorkspace, m.ID, StatusSent)
}

// TestSendRefusedWhileConnectedIsTriedAgain: a send the transport refuses
// as not connected while the session stays connected (no status change to
// wake the dispatcher) is tried again after a while; it waited for the next
// send or status change, however long that took.
func TestSendRefusedWhileConnectedIsTriedAgain(t *testing.T) {
	h, gate := newGatedHarness(t)
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
	time.Sleep(100 * time.Millisecond) // refused by the closed gate, put back
	gate.open.Store(true)              // no kick, no status change
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := h.app.Message(DefaultWorkspace, m.ID)
		if got.Status != StatusQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a send refused while connected was not tried again within %v", 5*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
