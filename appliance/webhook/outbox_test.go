package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walytic/appliance/storage"
)

// blocks lists the outbox blocks left in storage.
func blocks(t *testing.T, f *fixture) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := f.db.OutboxBlocks("", func(id string, ds []*storage.Delivery) bool {
		out[id] = len(ds)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitNoBlocks(t *testing.T, f *fixture) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(blocks(t, f)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outbox blocks left after every delivery was made: %v", blocks(t, f))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// One batch's events for two endpoints are one outbox block until each
// delivery's first attempt is recorded; then the block is gone and every
// delivery has a record of its own.
func TestOutboxBlockGoesOnceEveryDeliveryIsRecorded(t *testing.T) {
	rc1, rc2 := newReceiver(t), newReceiver(t)
	f := newFixture(t, Options{})
	ep1, ep2 := f.endpoint(rc1.srv.URL), f.endpoint(rc2.srv.URL)
	var evs []*storage.Event
	for i := range 5 {
		evs = append(evs, sentEvent(i, "919876543210"))
	}
	f.emit(evs...)
	if got := blocks(t, f); len(got) != 1 {
		t.Fatalf("blocks after one batch: %v, want one of 10 deliveries", got)
	} else {
		for _, n := range got {
			if n != 10 {
				t.Fatalf("block holds %d deliveries, want 10", n)
			}
		}
	}
	f.svc.Start()
	rc1.waitFor(t, 5)
	rc2.waitFor(t, 5)
	waitNoBlocks(t, f)
	for _, ep := range []storage.Webhook{ep1, ep2} {
		atts := waitAttempts(t, f, ep.ID, 5)
		for _, a := range atts {
			d, err := f.db.Delivery(a.DeliveryID)
			if err != nil || d.State != stateDelivered || d.EventID != a.EventID || d.Event.MessageID == "" {
				t.Fatalf("delivery %s after its attempt: %+v (%v)", a.DeliveryID, d, err)
			}
		}
	}
}

// A restart attempts what a block still owes and nothing its block's
// recorded deliveries already got.
func TestRestartAttemptsOnlyWhatABlockStillOwes(t *testing.T) {
	fast, stuck := newReceiver(t), newReceiver(t)
	release, open := gate(t)
	stuck.answer = firstHangsUntil(release)
	f := newFixture(t, Options{})
	fastEP := f.endpoint(fast.srv.URL)
	f.endpoint(stuck.srv.URL)
	var evs []*storage.Event
	for i := range 4 {
		evs = append(evs, sentEvent(i, "919876543210"))
	}
	f.emit(evs...)
	f.svc.Start()
	fast.waitFor(t, 4)
	waitAttempts(t, f, fastEP.ID, 4) // recorded: a stop before that may send them again (at least once)
	stuck.waitFor(t, 1)              // in flight; the other three wait behind it in its lane
	f.close()                        // the attempt in flight is abandoned and stays owed
	open()
	if got := blocks(t, f.reopen()); len(got) != 1 {
		t.Fatalf("blocks after the stop: %v, want the one still owing 4 deliveries", got)
	}
	f.svc.Start()
	got := stuck.waitFor(t, 5)
	ids := map[string]int{}
	for _, r := range got[1:] {
		ids[r.header.Get(HeaderWebhookID)]++
	}
	if len(ids) != 4 {
		t.Fatalf("after the restart the stuck endpoint got %v, want each of the 4 events once", ids)
	}
	waitNoBlocks(t, f)
	time.Sleep(50 * time.Millisecond) // nothing more may come
	if n := len(fast.requests()); n != 4 {
		t.Fatalf("the endpoint that had its 4 events got %d requests in all", n)
	}
	if n := len(stuck.requests()); n != 5 {
		t.Fatalf("the stuck endpoint got %d requests in all, want 5", n)
	}
}

// A delivery waiting for its retry is not reset by a second copy of it
// (the late durability callback of a block a refill read first); a redelivery
// does move it to now.
func TestCopyOfAWaitingRetryDoesNotResetIt(t *testing.T) {
	f := newFixture(t, Options{})
	st := newLoopState(8)
	now := time.Now()
	waiting := &storage.Delivery{ID: "dlv_1", EndpointID: "wh_1", State: statePending, Attempts: 1, Total: 1, NextAt: now.Add(time.Hour).UnixNano()}
	f.svc.wait(st, waiting)
	late := &storage.Delivery{ID: "dlv_1", EndpointID: "wh_1", State: statePending, NextAt: now.UnixNano(), Block: "dlv_1"}
	f.svc.enqueue(st, late, false)
	if len(st.retries) != 1 || st.retries[0] != waiting || waiting.Total != 1 || waiting.Block != "" || waiting.NextAt != now.Add(time.Hour).UnixNano() {
		t.Fatalf("after a late copy: %d waiting, %+v", len(st.retries), *st.retries[0])
	}
	again := &storage.Delivery{ID: "dlv_1", EndpointID: "wh_1", State: statePending, Total: 1, NextAt: now.UnixNano()}
	f.svc.enqueue(st, again, true)
	if st.retries[0].NextAt != now.UnixNano() || st.retries[0].Attempts != 0 {
		t.Fatalf("a redelivery did not move the retry to now: %+v", *st.retries[0])
	}
}

// An endpoint that never idles does not keep a lane for every session it
// ever carried: a lane whose attempt finished with nothing behind it is
// dropped (its next delivery makes it again), while a lane with deliveries
// waiting stays.
func TestEmptiedLanesAreDropped(t *testing.T) {
	f := newFixture(t, Options{})
	ep := f.endpoint("http://127.0.0.1:9/") // attempts are driven by hand, never sent
	st := newLoopState(8)
	pending := func(id, session string) *storage.Delivery {
		return &storage.Delivery{ID: id, EndpointID: ep.ID, SessionID: session, State: statePending}
	}
	take := func() attemptJob {
		t.Helper()
		var finished []*storage.Delivery
		j, ok := f.svc.takeReady(st.endpoint(ep.ID), &finished)
		if !ok || len(finished) != 0 {
			t.Fatalf("no job to take (%d finished)", len(finished))
		}
		return j
	}
	// One session's lane stays busy throughout, so the endpoint never idles.
	f.svc.toLane(st, pending("dlv_busy", "1"))
	take()
	for i := range 200 {
		d := pending(fmt.Sprintf("dlv_%03d", i), fmt.Sprint(1000+i))
		f.svc.toLane(st, d)
		if j := take(); j.d != d {
			t.Fatalf("took %s, want %s", j.d.ID, d.ID)
		}
		f.svc.release(st, []result{{d: d}})
	}
	if n := len(st.lanes); n != 1 {
		t.Fatalf("%d lanes after 200 sessions' deliveries, want 1 (the busy one)", n)
	}
	// A lane with a delivery waiting behind the finished one stays, and
	// keeps its order.
	a, b := pending("dlv_a", "7"), pending("dlv_b", "7")
	f.svc.toLane(st, a)
	take()
	f.svc.toLane(st, b)
	f.svc.release(st, []result{{d: a}})
	if n := len(st.lanes); n != 2 {
		t.Fatalf("%d lanes, want 2 (the busy one and session 7's, with a delivery waiting)", n)
	}
	if j := take(); j.d != b {
		t.Fatalf("took %s, want dlv_b", j.d.ID)
	}
}

// An endpoint's failure time goes with the endpoint: deleting it removes
// the record, and an attempt that was in flight when it was deleted, and
// failed, does not write one.
func TestFailureTimeGoesWithTheEndpoint(t *testing.T) {
	failing := newReceiver(t)
	failing.answer = func(int, *http.Request) int { return 500 }
	hanging := newReceiver(t)
	release, open := gate(t)
	hanging.answer = everyHangsUntil(release, 500)
	f := newFixture(t, Options{Schedule: []time.Duration{time.Hour}})
	a := f.endpoint(failing.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210"))
	waitAttempts(t, f, a.ID, 1)
	if since, err := f.db.EndpointFailingSince(a.ID); err != nil || since == 0 {
		t.Fatalf("after a failed attempt the endpoint is not failing: %d, %v", since, err)
	}
	if err := f.state.DeleteWebhook(a.ID); err != nil {
		t.Fatal(err)
	}
	if since, err := f.db.EndpointFailingSince(a.ID); err != nil || since != 0 {
		t.Fatalf("after deleting the endpoint its failure time is %d (%v), want none", since, err)
	}

	b := f.endpoint(hanging.srv.URL)
	f.emit(sentEvent(2, "919876543210"))
	hanging.waitFor(t, 1)
	if err := f.state.DeleteWebhook(b.ID); err != nil {
		t.Fatal(err)
	}
	open()
	waitAttempts(t, f, b.ID, 1) // committed in the batch that would write the failure time
	if since, err := f.db.EndpointFailingSince(b.ID); err != nil || since != 0 {
		t.Fatalf("the attempt in flight when the endpoint was deleted wrote its failure time: %d (%v)", since, err)
	}
}

// reopen opens the fixture's data directory again after close, as a restart.
func (f *fixture) reopen() *fixture {
	f.open()
	return f
}

// Deliveries an older build left pending (records with their bodies under
// dlb/ and due-index entries, no outbox block) are delivered with the bodies
// that build rendered, once each, and keep their format.
func TestDeliversWhatABuildBeforeBlocksLeftPending(t *testing.T) {
	rc := newReceiver(t)
	f := &fixture{t: t, dir: t.TempDir()}
	if err := os.CopyFS(f.dir, os.DirFS("testdata/pre-blocks-outbox")); err != nil { // Pebble writes on open
		t.Fatal(err)
	}
	f.open()
	t.Cleanup(f.close)
	ep, ok := f.state.Webhook("wh_legacy")
	if !ok {
		t.Fatal("the old data's endpoint is missing")
	}
	ep.URL = rc.srv.URL
	if err := f.state.PutWebhook(ep); err != nil {
		t.Fatal(err)
	}
	f.svc.Start()
	got := rc.waitFor(t, 5)
	time.Sleep(50 * time.Millisecond) // nothing more may come
	if n := len(rc.requests()); n != 5 {
		t.Fatalf("%d requests, want 5", n)
	}
	for i, r := range got {
		want := fmt.Sprintf(`{"id":"evt_legacy%d","event":"message.sent","sessionId":"919876543210","timestamp":1795694400,`+
			`"messageId":"msg_legacy%d","to":"919999999999","waMessageId":"3EB0LEGACY%d"}`, i, i, i)
		if string(r.body) != want {
			t.Fatalf("request %d:\n got %s\nwant %s", i, r.body, want)
		}
	}
	for _, a := range waitAttempts(t, f, "wh_legacy", 5) {
		d, err := f.db.Delivery(a.DeliveryID)
		if err != nil || d.State != stateDelivered || string(d.Body) == "" {
			t.Fatalf("delivery %s after its attempt: %+v (%v); want delivered, its body still read from dlb/", a.DeliveryID, d, err)
		}
	}
	var due []string
	_ = f.db.PendingDeliveryIDs(func(id string, _ int64) bool { due = append(due, id); return true })
	if len(due) != 0 {
		t.Fatalf("due index after delivery: %v", due)
	}
}

// A receiver that hangs while events keep coming fills its share of memory
// (MaxQueuedPerEndpoint); its later events wait in their outbox blocks while
// another endpoint's events of the same blocks go on being delivered. When
// it answers again it gets its backlog whole, once per event and in order,
// and every block is deleted.
func TestSlowEndpointsBacklogDoesNotHoldUpAnother(t *testing.T) {
	slow, fast := newReceiver(t), newReceiver(t)
	release, open := gate(t)
	slow.answer = func(int, *http.Request) int { <-release; return 200 }
	const perEndpoint, n = 12, 300
	f := newFixture(t, Options{MaxQueued: 100, MaxQueuedPerEndpoint: perEndpoint, Timeout: time.Minute})
	f.endpoint(slow.srv.URL)
	f.endpoint(fast.srv.URL)
	f.svc.Start()
	var evs []*storage.Event
	for i := range n {
		evs = append(evs, sentEvent(i, "919876549999"))
	}
	var peak, peakBlocks int64
	for i := 0; i < n; i += 3 { // a block of three events at a time
		f.emit(evs[i : i+3]...)
		peak = max(peak, f.svc.queued.Load())
		peakBlocks = max(peakBlocks, f.svc.blocksCounted.Load())
	}
	// With one bound for all endpoints the slow one's backlog filled it
	// and the fast one stopped after about MaxQueued deliveries.
	fast.waitFor(t, n)
	if got := len(slow.requests()); got > 8 {
		t.Fatalf("the hanging receiver got %d requests, want at most 8 (in flight)", got)
	}
	if peak > 2*perEndpoint+8 {
		t.Errorf("%d deliveries held in memory at once, want ≤ %d", peak, 2*perEndpoint+8)
	}
	if peakBlocks > 2*perEndpoint+8 {
		t.Errorf("%d outbox blocks counted at once, want ≤ %d", peakBlocks, 2*perEndpoint+8)
	}
	open()
	slow.waitFor(t, n)
	time.Sleep(50 * time.Millisecond) // nothing more may come
	got := slow.requests()
	if len(got) != n {
		t.Fatalf("the slow receiver got %d requests, want %d", len(got), n)
	}
	if got := len(fast.requests()); got != n {
		t.Fatalf("the fast receiver got %d requests, want %d", got, n)
	}
	for i, r := range got {
		var b struct{ ID string }
		_ = json.Unmarshal(r.body, &b)
		if want := fmt.Sprintf("evt_%04d", i); b.ID != want {
			t.Fatalf("slow request %d carried %s, want %s (one session's events in order, each once)", i, b.ID, want)
		}
	}
	waitNoBlocks(t, f)
}

// A stop while an endpoint is behind loses nothing: after the restart the
// first attempts it left in the blocks are read back (with the one that was
// in flight), each sent once, and the other endpoint gets nothing again.
func TestRestartWithAnEndpointBehind(t *testing.T) {
	slow, fast := newReceiver(t), newReceiver(t)
	release, open := gate(t)
	slow.answer = firstHangsUntil(release)
	const n = 60
	f := newFixture(t, Options{MaxQueued: 100, MaxQueuedPerEndpoint: 4})
	f.endpoint(slow.srv.URL)
	fastEP := f.endpoint(fast.srv.URL)
	f.svc.Start()
	for i := 0; i < n; i += 3 {
		f.emit(sentEvent(i, "919876549999"), sentEvent(i+1, "919876549999"), sentEvent(i+2, "919876549999"))
	}
	fast.waitFor(t, n)
	waitAttempts(t, f, fastEP.ID, n)
	slow.waitFor(t, 1)
	f.close()
	open()
	f.reopen().svc.Start()
	slow.waitFor(t, n+1)
	waitNoBlocks(t, f)
	time.Sleep(50 * time.Millisecond) // nothing more may come
	got := slow.requests()
	if len(got) != n+1 {
		t.Fatalf("the slow endpoint got %d requests, want %d (the abandoned one, then each event once)", len(got), n+1)
	}
	for i, r := range got[1:] {
		var b struct{ ID string }
		_ = json.Unmarshal(r.body, &b)
		if want := fmt.Sprintf("evt_%04d", i); b.ID != want {
			t.Fatalf("after the restart request %d carried %s, want %s", i, b.ID, want)
		}
	}
	if got := len(fast.requests()); got != n {
		t.Fatalf("the fast endpoint got %d requests, want %d", got, n)
	}
}

// gate returns a channel that receivers' handlers wait on and the function
// that opens it (once). The test's cleanup opens it too, before the
// receiver's Close, which waits for its handlers.
func gate(t *testing.T) (<-chan struct{}, func()) {
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	return release, open
}

// firstHangsUntil answers 200, the first request only once release is open
// (or the request is abandoned, as at a stop).
func firstHangsUntil(release <-chan struct{}) func(int, *http.Request) int {
	return func(n int, r *http.Request) int {
		if n == 1 {
			holdUntil(release, r)
		}
		return 200
	}
}

// everyHangsUntil answers status to every request once release is open (or
// the request is abandoned).
func everyHangsUntil(release <-chan struct{}, status int) func(int, *http.Request) int {
	return func(_ int, r *http.Request) int {
		holdUntil(release, r)
		return status
	}
}

func holdUntil(release <-chan struct{}, r *http.Request) {
	select {
	case <-release:
	case <-r.Context().Done():
	}
}

// changeUnderBacklog starts a deliverer of two attempts at a time to an
// endpoint for every event, with six message.sent events of six sessions
// (two in flight, held by the receiver; two on the deck; two in their
// lanes), applies change to the endpoint, lets the receiver answer, and
// requires that only the two in flight reached it and the other four ended
// not attempted with an error naming why. It returns those four's ids.
func changeUnderBacklog(t *testing.T, change func(*storage.Webhook), why string) (*receiver, *fixture, storage.Webhook, []string) {
	t.Helper()
	rc := newReceiver(t)
	release, open := gate(t)
	rc.answer = everyHangsUntil(release, 200)
	f := newFixture(t, Options{MaxInFlight: 2})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	var evs []*storage.Event
	for i := range 6 { // six lanes: two in flight, two on the deck, two in lanes
		evs = append(evs, sentEvent(i, fmt.Sprintf("91987654%04d", i)))
	}
	f.emit(evs...)
	rc.waitFor(t, 2)
	time.Sleep(50 * time.Millisecond) // the loop fills the deck in the pass that started them
	change(&ep)
	if err := f.state.PutWebhook(ep); err != nil {
		t.Fatal(err)
	}
	open()
	list := waitAttempts(t, f, ep.ID, 6)
	time.Sleep(50 * time.Millisecond)
	if got := len(rc.requests()); got != 2 {
		t.Fatalf("the receiver got %d requests, want the 2 in flight at the change", got)
	}
	var skipped []string
	for _, a := range list {
		if a.State == stateFailed && strings.Contains(a.Error, why) && strings.Contains(a.Error, "(not attempted)") {
			skipped = append(skipped, a.DeliveryID)
			if a.Number != 0 {
				t.Errorf("a row of no attempt is numbered %d, as if it were one", a.Number)
			}
		}
	}
	if len(skipped) != 4 {
		t.Fatalf("%d of 6 deliveries ended not attempted (%q), want 4: %+v", len(skipped), why, list)
	}
	return rc, f, ep, skipped
}

// Jobs waiting on an endpoint's deck read its configuration again when a
// worker takes them: disabled while they wait, they end without an attempt,
// and only the attempts already in flight reach the receiver.
func TestDeckedJobsSeeTheEndpointDisabled(t *testing.T) {
	changeUnderBacklog(t, func(ep *storage.Webhook) { ep.Enabled = false }, "disabled")
}

// Finished attempts wait to be recorded together, and a stop records those
// still waiting: after a restart none of them is sent again.
func TestStopRecordsFinishedAttempts(t *testing.T) {
	rc := newReceiver(t)
	f := newFixture(t, Options{})
	ep := f.endpoint(rc.srv.URL)
	f.svc.recordDelay = time.Hour // only the batch size or a stop records them
	f.svc.Start()
	for i := range 5 {
		f.emit(sentEvent(i, "919876543210"))
	}
	rc.waitFor(t, 5)
	time.Sleep(100 * time.Millisecond) // the answers reach the deliverer
	if list, _, err := f.svc.Attempts(ep.ID, "", 100); err != nil || len(list) != 0 {
		t.Fatalf("before the stop: %d attempts recorded (%v), want 0 (waiting to be recorded together)", len(list), err)
	}
	f.close()
	f.reopen()
	f.svc.Start()
	if list := waitAttempts(t, f, ep.ID, 5); len(list) != 5 {
		t.Fatalf("%d attempts recorded, want 5", len(list))
	}
	time.Sleep(200 * time.Millisecond)
	if got := len(rc.requests()); got != 5 {
		t.Fatalf("the receiver got %d requests, want 5: recorded attempts were sent again after the restart", got)
	}
}

// A PATCH of an endpoint's events applies to its backlog: deliveries of
// events it no longer subscribes to end without an attempt, whether they
// wait on the deck or in their lanes, and a redelivery of one is refused
// with the reason until the event is subscribed again. A deleted endpoint's
// deliveries are refused as gone.
func TestBacklogFollowsTheEndpointsEvents(t *testing.T) {
	rc, f, ep, skipped := changeUnderBacklog(t, func(ep *storage.Webhook) { ep.Events = []string{"message.read"} },
		"no longer subscribes to message.sent")
	_, err := f.svc.Redeliver("acme", skipped[0])
	var ue *UnattemptableError
	if !errors.As(err, &ue) || ue.EndpointGone || !strings.Contains(ue.Reason, "no longer subscribes") {
		t.Fatalf("redeliver of an unsubscribed event: %v", err)
	}
	ep.Events = []string{"*"}
	if err := f.state.PutWebhook(ep); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Redeliver("acme", skipped[0]); err != nil {
		t.Fatalf("redeliver once subscribed again: %v", err)
	}
	rc.waitFor(t, 3)
	if err := f.state.DeleteWebhook(ep.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Redeliver("acme", skipped[1])
	if !errors.As(err, &ue) || !ue.EndpointGone {
		t.Fatalf("redeliver for a deleted endpoint: %v", err)
	}
}

// TestRetryEndedUnattemptedIsNoAttemptInTheLog: a delivery that failed once
// and then ends without its retry (the endpoint disabled meanwhile) gets a
// log row numbered 0, not a second row with the first attempt's number.
func TestRetryEndedUnattemptedIsNoAttemptInTheLog(t *testing.T) {
	rc := newReceiver(t)
	rc.answer = func(int, *http.Request) int { return 500 }
	f := newFixture(t, Options{Schedule: []time.Duration{300 * time.Millisecond, 300 * time.Millisecond}})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210"))
	waitAttempts(t, f, ep.ID, 1)
	if _, err := f.state.UpdateWebhook(ep.ID, func(w *storage.Webhook) error { w.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	list := waitAttempts(t, f, ep.ID, 2)
	if list[0].Number != 0 || !strings.Contains(list[0].Error, "(not attempted)") || list[1].Number != 1 {
		t.Fatalf("log after a retry ended unattempted: %+v", list)
	}
}

// TestRedeliverDuringAnAttemptSendsAgain: a redelivery asked for while an
// attempt of the same delivery is in flight is made once that attempt is
// over (it answered 202 and then did nothing: the in-flight attempt's
// record overwrote it).
func TestRedeliverDuringAnAttemptSendsAgain(t *testing.T) {
	rc := newReceiver(t)
	f := newFixture(t, Options{})
	ep := f.endpoint(rc.srv.URL)
	f.svc.Start()
	f.emit(sentEvent(1, "919876543210"))
	dlv := waitAttempts(t, f, ep.ID, 1)[0].DeliveryID
	rc.delay.Store(int64(300 * time.Millisecond))
	if _, err := f.svc.Redeliver("acme", dlv); err != nil {
		t.Fatal(err)
	}
	if !pollFor(5*time.Second, func() bool { return len(rc.requests()) == 2 }) {
		t.Fatal("the first redelivery was not attempted")
	}
	if _, err := f.svc.Redeliver("acme", dlv); err != nil { // while that attempt is in flight
		t.Fatal(err)
	}
	if !pollFor(5*time.Second, func() bool { return len(rc.requests()) == 3 }) {
		t.Fatalf("a redelivery asked for during an attempt was not made: %d requests", len(rc.requests()))
	}
	list := waitAttempts(t, f, ep.ID, 3)
	if list[0].Number != 3 || list[0].State != stateDelivered {
		t.Fatalf("log after two redeliveries: %+v", list[0])
	}
	time.Sleep(400 * time.Millisecond)
	if n := len(rc.requests()); n != 3 {
		t.Fatalf("%d requests, want 3: one event, two redeliveries", n)
	}
}
