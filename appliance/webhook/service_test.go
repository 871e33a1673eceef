package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walytic/appliance/storage"
)

// receiver is a loopback HTTP endpoint that records what it gets.
type receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	got      []received
	answer   func(n int, r *http.Request) int // status for the n-th request (from 1)
	delay    atomic.Int64                     // nanoseconds
	inFlight atomic.Int64
	maxSeen  atomic.Int64
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{answer: func(int, *http.Request) int { return 200 }}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := rc.inFlight.Add(1)
		defer rc.inFlight.Add(-1)
		for {
			m := rc.maxSeen.Load()
			if n <= m || rc.maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body, at: time.Now()})
		count := len(rc.got)
		rc.mu.Unlock()
		if d := rc.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		w.WriteHeader(rc.answer(count, r))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) waitFor(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := rc.requests()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver got %d requests, want %d", len(got), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type fixture struct {
	t     *testing.T
	dir   string
	db    *storage.DB
	state *storage.LocalState
	svc   *Service
	opts  Options
}

func newFixture(t *testing.T, o Options) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), opts: o}
	f.open()
	t.Cleanup(f.close)
	return f
}

func (f *fixture) open() {
	db, err := storage.Open(f.dir)
	if err != nil {
		f.t.Fatal(err)
	}
	st, err := storage.OpenLocalState(db)
	if err != nil {
		f.t.Fatal(err)
	}
	o := f.opts
	o.DB, o.Endpoints = db, st
	o.AllowPrivate = true
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	f.db, f.state, f.svc = db, st, New(o)
}

func (f *fixture) close() {
	if f.db == nil {
		return
	}
	f.svc.Close()
	_ = f.db.Close()
	f.db = nil
}

func (f *fixture) endpoint(url string, events ...string) storage.Webhook {
	f.t.Helper()
	if len(events) == 0 {
		events = []string{"*"}
	}
	secret, _ := NewSecret()
	w := storage.Webhook{ID: storage.NewID("wh_", time.Now()), Workspace: "acme", URL: url, Events: events,
		Enabled: true, Secrets: []storage.WebhookSecret{{Secret: secret}}}
	if err := f.state.PutWebhook(w); err != nil {
		f.t.Fatal(err)
	}
	return w
}

// emit stages events in one batch and commits it, as the domain does.
func (f *fixture) emit(evs ...*storage.Event) {
	f.t.Helper()
	b := f.db.NewBatch()
	for _, ev := range evs {
		if err := f.svc.Stage(b, *ev); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := f.db.CommitSync(b); err != nil {
		f.t.Fatal(err)
	}
	f.svc.Committed()
}

func sentEvent(i int, session string) *storage.Event {
	return &storage.Event{ID: fmt.Sprintf("evt_%04d", i), Type: "message.sent", Workspace: "acme", SessionID: session,
		Timestamp: 1714602000, MessageID: fmt.Sprintf("msg_%d", i), To: "919999999999", WAMessageID: "3EB0ABCDEF0123456789AB"}
}

func TestDeliversSignedEventWithContractHeaders(t *testing.T) {
	rc := newReceiver(t)
	f := newFixture(t, Options{})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210"))
	got := rc.waitFor(t, 1)[0]
	h := got.header
	for name, want := range map[string]string{
		"Content-Type": "application/json", "X-Walytic-Event": "message.sent",
		"X-Walytic-Delivery": "evt_0001", "Webhook-Id": "evt_0001",
	} {
		if h.Get(name) != want {
			t.Errorf("%s = %q, want %q", name, h.Get(name), want)
		}
	}
	if h.Get("X-Walytic-Timestamp") == "" || h.Get("X-Walytic-Timestamp") != h.Get("Webhook-Timestamp") {
		t.Errorf("timestamps %q / %q", h.Get("X-Walytic-Timestamp"), h.Get("Webhook-Timestamp"))
	}
	if err := Verify(ep.Secrets[0].Secret, got.body, h, time.Now()); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	var body map[string]any
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if body["event"] != "message.sent" || body["waMessageId"] != "3EB0ABCDEF0123456789AB" || body["to"] != "919999999999" {
		t.Fatalf("body = %s", got.body)
	}
	waitAttempts(t, f, ep.ID, 1)
}

func waitAttempts(t *testing.T, f *fixture, endpointID string, n int) []storage.Attempt {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, _, err := f.svc.Attempts(endpointID, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) >= n {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts logged, want %d", len(list), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRetriesWithSameDeliveryIDThenSucceeds(t *testing.T) {
	rc := newReceiver(t)
	rc.answer = func(n int, _ *http.Request) int {
		if n <= 2 {
			return 500
		}
		return 204
	}
	f := newFixture(t, Options{Schedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(7, "919876543210"))
	got := rc.waitFor(t, 3)
	for _, r := range got {
		if r.header.Get("X-Walytic-Delivery") != "evt_0007" {
			t.Fatalf("retry carries delivery id %q", r.header.Get("X-Walytic-Delivery"))
		}
	}
	list := waitAttempts(t, f, ep.ID, 3)
	// Newest first: the success, then two 500s with a next retry time.
	if list[0].StatusCode != 204 || list[0].State != "delivered" || list[1].StatusCode != 500 || list[1].NextRetryAt == 0 || list[2].Number != 1 {
		t.Fatalf("attempts = %+v", list)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(rc.requests()); n != 3 {
		t.Fatalf("%d requests after success, want 3", n)
	}
}

func TestTimeoutIsRetriedAndScheduleEndsInFailure(t *testing.T) {
	rc := newReceiver(t)
	rc.delay.Store(int64(300 * time.Millisecond))
	f := newFixture(t, Options{Timeout: 50 * time.Millisecond, Schedule: []time.Duration{10 * time.Millisecond}})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210"))
	list := waitAttempts(t, f, ep.ID, 2)
	if list[0].State != "failed" || !strings.Contains(list[0].Error, "timeout") || list[1].NextRetryAt == 0 {
		t.Fatalf("attempts = %+v", list)
	}
	d, err := f.svc.Delivery("acme", list[0].DeliveryID)
	if err != nil || d.State != "failed" || d.Total != 2 {
		t.Fatalf("delivery = %+v, %v", d, err)
	}
	// Redelivery gives it a fresh attempt with the same event id.
	rc.delay.Store(0)
	if _, err := f.svc.Redeliver("acme", d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Redeliver("other", d.ID); err != ErrNotFound {
		t.Fatalf("redeliver from another workspace: %v", err)
	}
	got := rc.waitFor(t, 3)
	if got[2].header.Get("X-Walytic-Delivery") != "evt_0001" {
		t.Fatal("redelivery changed the event id")
	}
	list = waitAttempts(t, f, ep.ID, 3)
	if list[0].State != "delivered" {
		t.Fatalf("after redelivery: %+v", list[0])
	}
}

func TestOneSessionsEventsArriveInOrderAndSlowEndpointIsBounded(t *testing.T) {
	slow := newReceiver(t)
	slow.delay.Store(int64(20 * time.Millisecond))
	fast := newReceiver(t)
	f := newFixture(t, Options{})
	f.endpoint(slow.srv.URL)
	f.endpoint(fast.srv.URL)
	f.svc.Start()
	var evs []*storage.Event
	for i := 0; i < 40; i++ {
		evs = append(evs, sentEvent(i, fmt.Sprintf("91987654%04d", i%20))) // 20 sessions, 2 events each
	}
	for i := 40; i < 60; i++ {
		evs = append(evs, sentEvent(i, "919876549999")) // one session, 20 events
	}
	start := time.Now()
	f.emit(evs...)
	fastGot := fast.waitFor(t, 60)
	fastDone := time.Since(start)
	slowGot := slow.waitFor(t, 60)
	if fastDone > time.Since(start)*3/4 {
		t.Errorf("fast endpoint took %v, as long as the slow one: it was held up", fastDone)
	}
	if m := slow.maxSeen.Load(); m > 8 {
		t.Errorf("%d deliveries in flight to one endpoint, want ≤ 8", m)
	}
	for _, got := range [][]received{fastGot, slowGot} {
		last := -1
		for _, r := range got {
			var b struct{ ID, SessionID string }
			_ = json.Unmarshal(r.body, &b)
			if b.SessionID != "919876549999" {
				continue
			}
			var n int
			fmt.Sscanf(b.ID, "evt_%d", &n)
			if n < last {
				t.Fatalf("event %d arrived after %d for the same session", n, last)
			}
			last = n
		}
	}
}

func TestFiltersDisabledAndPatchTakeEffectAtOnce(t *testing.T) {
	rc := newReceiver(t)
	f := newFixture(t, Options{})
	ep := f.endpoint(rc.srv.URL, "message.read")
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210")) // not subscribed
	read := sentEvent(2, "919876543210")
	read.Type = "message.read"
	f.emit(read)
	got := rc.waitFor(t, 1)
	if got[0].header.Get("X-Walytic-Event") != "message.read" {
		t.Fatalf("got %s", got[0].header.Get("X-Walytic-Event"))
	}
	ep.Events = []string{"*"}
	if err := f.state.PutWebhook(ep); err != nil {
		t.Fatal(err)
	}
	f.emit(sentEvent(3, "919876543210"))
	rc.waitFor(t, 2)
	ep.Enabled = false
	_ = f.state.PutWebhook(ep)
	f.emit(sentEvent(4, "919876543210"))
	time.Sleep(50 * time.Millisecond)
	if got := rc.requests(); len(got) != 2 {
		var ids []string
		for _, r := range got {
			ids = append(ids, r.header.Get("X-Walytic-Delivery"))
		}
		t.Fatalf("%d requests %v; a disabled endpoint got events", len(got), ids)
	}
}

func TestPendingDeliveriesSurviveRestart(t *testing.T) {
	rc := newReceiver(t)
	f := newFixture(t, Options{})
	f.endpoint(rc.srv.URL)
	// Staged and committed, but the deliverer never ran: a crash right after.
	for i := 0; i < 25; i++ {
		f.emit(sentEvent(i, "919876543210"))
	}
	f.close()
	f.open()
	f.svc.Start()
	got := rc.waitFor(t, 25)
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.header.Get("X-Walytic-Delivery")] = true
	}
	if len(seen) != 25 {
		t.Fatalf("%d distinct events after restart, want 25", len(seen))
	}
}

func TestEndpointFailingTooLongIsDisabled(t *testing.T) {
	rc := newReceiver(t)
	rc.answer = func(int, *http.Request) int { return 503 }
	f := newFixture(t, Options{DisableAfter: 30 * time.Millisecond, Schedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, _ := f.state.Webhook(ep.ID)
		if !w.Enabled {
			if !strings.Contains(w.DisabledReason, "failed") {
				t.Fatalf("disabled without a reason: %q", w.DisabledReason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("endpoint failing every attempt was never disabled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReenabledEndpointGetsAFreshWindow: an endpoint disabled for failing,
// then enabled again, is not disabled by its next single failure (its old
// failures counted, and disabled it again at once with the old date).
func TestReenabledEndpointGetsAFreshWindow(t *testing.T) {
	rc := newReceiver(t)
	var failing atomic.Bool
	failing.Store(true)
	rc.answer = func(int, *http.Request) int {
		if failing.Load() {
			return 503
		}
		return 200
	}
	ms10 := 10 * time.Millisecond
	f := newFixture(t, Options{DisableAfter: 1500 * time.Millisecond, Schedule: []time.Duration{ms10, ms10, ms10, ms10, ms10, ms10, ms10, ms10,
		ms10, ms10, ms10, ms10, 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210"))
	if !pollFor(10*time.Second, func() bool { w, _ := f.state.Webhook(ep.ID); return !w.Enabled }) {
		t.Fatal("endpoint failing every attempt was never disabled")
	}
	// What PATCH {"enabled":true} does; the receiver then fails once more.
	if _, err := f.state.UpdateWebhook(ep.ID, func(w *storage.Webhook) error {
		w.Enabled, w.DisabledReason, w.FailingCountsFrom = true, "", time.Now().UnixMilli()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := len(rc.requests())
	var once atomic.Bool
	rc.answer = func(int, *http.Request) int {
		if once.CompareAndSwap(false, true) {
			return 503
		}
		return 200
	}
	failing.Store(false)
	f.emit(sentEvent(2, "919876543210"))
	if !pollFor(5*time.Second, func() bool { return len(rc.requests()) >= before+2 }) {
		t.Fatalf("the new event was not retried after one failure: %d requests since re-enabling", len(rc.requests())-before)
	}
	time.Sleep(50 * time.Millisecond)
	if w, _ := f.state.Webhook(ep.ID); !w.Enabled {
		t.Fatalf("one failure after re-enabling disabled the endpoint again: %q", w.DisabledReason)
	}
}

func TestBodyPerEventType(t *testing.T) {
	cases := []struct {
		ev   storage.Event
		want string
	}{
		{storage.Event{ID: "e1", Type: "message.received", SessionID: "s", Timestamp: 1, MessageID: "m", From: "919999999999", Text: "hi", MsgType: "text"},
			`{"id":"e1","event":"message.received","sessionId":"s","timestamp":1,"messageId":"m","from":"919999999999","text":"hi"}`},
		{storage.Event{ID: "e2", Type: "message.received", SessionID: "s", Timestamp: 1, MessageID: "m", FromLID: "123@lid", MsgType: "image", Caption: "look"},
			`{"id":"e2","event":"message.received","sessionId":"s","timestamp":1,"messageId":"m","from":null,"fromLid":"123@lid","text":"","type":"image","caption":"look"}`},
		{storage.Event{ID: "e3", Type: "message.delivered", SessionID: "s", Timestamp: 1, MessageID: "m", To: "91", WAMessageID: "3EB0"},
			`{"id":"e3","event":"message.delivered","sessionId":"s","timestamp":1,"messageId":"m","to":"91","waMessageId":"3EB0"}`},
		{storage.Event{ID: "e4", Type: "message.failed", SessionID: "s", Timestamp: 1, MessageID: "m", To: "91", Error: &storage.MessageError{Code: "send_failed", Message: "no"}},
			`{"id":"e4","event":"message.failed","sessionId":"s","timestamp":1,"messageId":"m","to":"91","error":{"code":"send_failed","message":"no"}}`},
		{storage.Event{ID: "e5", Type: "session.logged_out", SessionID: "s", Timestamp: 1, Reason: "logged out from the phone"},
			`{"id":"e5","event":"session.logged_out","sessionId":"s","timestamp":1,"reason":"logged out from the phone"}`},
		{storage.Event{ID: "e6", Type: "session.connected", SessionID: "s", Timestamp: 1},
			`{"id":"e6","event":"session.connected","sessionId":"s","timestamp":1}`},
	}
	for _, c := range cases {
		got, err := Body(&c.ev)
		if err != nil || string(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.ev.Type, got, c.want)
		}
	}
}

// A backlog larger than MaxQueued waits in the outbox, not in memory, and
// still reaches the receiver whole and, for one session, in order.
func TestBacklogBeyondMaxQueuedWaitsInStorage(t *testing.T) {
	rc := newReceiver(t)
	rc.delay.Store(int64(time.Millisecond))
	const maxQueued, n = 4, 60
	f := newFixture(t, Options{MaxQueued: maxQueued})
	f.endpoint(rc.srv.URL)
	var evs []*storage.Event
	for i := 0; i < n; i++ {
		evs = append(evs, sentEvent(i, "919876549999"))
	}
	f.emit(evs[:n/3]...) // pending before the start: read back from storage
	f.svc.Start()
	var peak, peakBlocks int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(rc.requests()) < n {
			peak = max(peak, f.svc.queued.Load())
			peakBlocks = max(peakBlocks, f.svc.blocksCounted.Load())
			time.Sleep(100 * time.Microsecond)
		}
	}()
	f.emit(evs[n/3 : 2*n/3]...)
	for _, ev := range evs[2*n/3:] { // and more trickling in, a block each, while a backlog waits
		time.Sleep(time.Millisecond)
		f.emit(ev)
	}
	rc.waitFor(t, n)
	<-done
	if peak > 2*maxQueued {
		t.Errorf("%d deliveries held in memory at once, want ≤ %d", peak, 2*maxQueued)
	}
	// Blocks are counted as their deliveries come into memory, not as they
	// are committed: the 20 one-event blocks of the trickle wait uncounted.
	if peakBlocks > 2*maxQueued+2 {
		t.Errorf("%d outbox blocks counted at once, want ≤ %d", peakBlocks, 2*maxQueued+2)
	}
	time.Sleep(50 * time.Millisecond) // nothing more may come
	got := rc.requests()
	if len(got) != n {
		t.Fatalf("receiver got %d requests, want %d", len(got), n)
	}
	for i, r := range got {
		var b struct{ ID string }
		_ = json.Unmarshal(r.body, &b)
		if want := fmt.Sprintf("evt_%04d", i); b.ID != want {
			t.Fatalf("request %d carried %s, want %s (one session's events in order, each once)", i, b.ID, want)
		}
	}
}

// Retries beyond MaxQueued wait in storage until they are due.
func TestRetriesBeyondMaxQueuedWaitInStorage(t *testing.T) {
	rc := newReceiver(t)
	var mu sync.Mutex
	tries := map[string]int{}
	rc.answer = func(_ int, r *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get(HeaderWebhookID)
		tries[id]++
		if tries[id] == 1 {
			return 500 // every event's first attempt fails
		}
		return 200
	}
	const n = 20
	f := newFixture(t, Options{MaxQueued: 3, Schedule: []time.Duration{30 * time.Millisecond, 30 * time.Millisecond}})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	var evs []*storage.Event
	for i := 0; i < n; i++ {
		evs = append(evs, sentEvent(i, fmt.Sprintf("91987654%04d", i)))
	}
	f.emit(evs...)
	rc.waitFor(t, 2*n)
	atts := waitAttempts(t, f, ep.ID, 2*n)
	ok := map[string]bool{}
	for _, a := range atts {
		if a.StatusCode == 200 {
			ok[a.EventID] = true
		}
	}
	if len(ok) != n {
		t.Fatalf("%d events delivered, want %d", len(ok), n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range tries {
		if c != 2 {
			t.Errorf("event %s was attempted %d times, want 2", id, c)
		}
	}
}

// TestPruneStepsThroughTheLogPastRetention: past the retention, a pass
// removes every finished delivery and attempt, a chunk at a time, each step
// but the last asking for the next one soon.
func TestPruneStepsThroughTheLogPastRetention(t *testing.T) {
	rc := newReceiver(t)
	var ahead atomic.Int64
	f := newFixture(t, Options{Now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	const events = 7
	for i := range events {
		f.emit(sentEvent(i+1, "919876543210"))
	}
	list := waitAttempts(t, f, ep.ID, events)

	defer func(n int) { pruneChunk = n }(pruneChunk)
	pruneChunk = 2
	var pass prunePass
	if d := f.svc.pruneStep(&pass); d != pruneEvery || pass.n != 0 {
		t.Fatalf("within the retention: step deleted %d and asks again in %v, want nothing and %v", pass.n, d, pruneEvery)
	}
	ahead.Store(int64(31 * 24 * time.Hour))
	steps := 0
	for {
		steps++
		d := f.svc.pruneStep(&pass)
		if d == pruneEvery {
			break
		}
		if d != pruneGap || steps > events {
			t.Fatalf("step %d asks again in %v", steps, d)
		}
	}
	if steps < events/pruneChunk {
		t.Fatalf("%d deliveries pruned in %d steps of at most %d", events, steps, pruneChunk)
	}
	if left, _, err := f.svc.Attempts(ep.ID, "", 100); err != nil || len(left) != 0 {
		t.Fatalf("attempts left after the pass: %d (%v)", len(left), err)
	}
	for _, a := range list {
		if _, err := f.svc.Delivery("acme", a.DeliveryID); err != ErrNotFound {
			t.Fatalf("delivery %s after the pass: %v, want ErrNotFound", a.DeliveryID, err)
		}
	}
}

// pollFor reports whether cond holds within d, checking every 5 ms.
func pollFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
