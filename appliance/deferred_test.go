package appliance

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/sandbox"
	"github.com/walytic/appliance/storage"
)

func (h *harness) storedStatus(id string) string {
	h.t.Helper()
	m, err := h.db.Message(DefaultWorkspace, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return m.Status
}

// waitStored waits until the record of message id is written with status.
func (h *harness) waitStored(id, status string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.storedStatus(id) != status {
		if time.Now().After(deadline) {
			h.t.Fatalf("the held %s status of %s was never written", status, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeliveredStatusWaitsForTheReadReceipt: with no endpoint for
// message.delivered, the delivered status is shown at once but written only
// when the defer window ends (or with the read status, or at stop).
func TestDeliveredStatusWaitsForTheReadReceipt(t *testing.T) {
	noRead := sandbox.New(sandbox.Options{DeliveredAfter: sandbox.NoDelay, ReadAfter: time.Hour, Tick: sandbox.NoDelay})
	h := newHarness(t, noRead)
	h.events.ignore.Store(map[string]bool{EventMessageDelivered: true})
	h.mustSession(DefaultWorkspace, sess, "sandbox")

	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "deferred"})
	h.waitStatus(DefaultWorkspace, m.ID, StatusDelivered) // through the API
	if got := h.storedStatus(m.ID); got != StatusQueued && got != StatusSent {
		t.Fatalf("stored status %q right after delivery, want queued or sent (the write is deferred)", got)
	}
	var listed []string
	_ = h.app.Messages(DefaultWorkspace, MessageFilter{Status: StatusDelivered}, func(x *storage.Message) bool {
		listed = append(listed, x.ID)
		return true
	})
	if len(listed) != 1 || listed[0] != m.ID {
		t.Fatalf("status=delivered lists %v, want the deferred message", listed)
	}
	h.waitStored(m.ID, StatusDelivered)

	// Stopping writes what is still deferred.
	m2 := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "at stop"})
	h.waitStatus(DefaultWorkspace, m2.ID, StatusDelivered)
	h.close()
	h.open(noRead)
	if got := h.storedStatus(m2.ID); got != StatusDelivered {
		t.Fatalf("after a stop with the status deferred: stored %q, want delivered", got)
	}

	// A subscriber to message.delivered gets the write (and event) at once.
	h.events.ignore.Store(map[string]bool{})
	m3 := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "subscribed"})
	h.waitStatus(DefaultWorkspace, m3.ID, StatusDelivered)
	if got := h.storedStatus(m3.ID); got != StatusDelivered {
		t.Fatalf("with a subscriber: stored %q, want delivered at once", got)
	}
}

// TestDeferredDeliveredThenReadEndsRead: the read receipt inside the window
// supersedes the deferred status; the record ends read and stays read.
func TestDeferredDeliveredThenReadEndsRead(t *testing.T) {
	h := newHarness(t, sandbox.New(sandbox.Options{DeliveredAfter: sandbox.NoDelay, ReadAfter: 50 * time.Millisecond, Tick: sandbox.NoDelay}))
	h.events.ignore.Store(map[string]bool{EventMessageDelivered: true})
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	var ids []string
	for range 20 {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"}).ID)
	}
	for _, id := range ids {
		h.waitStatus(DefaultWorkspace, id, StatusRead)
	}
	time.Sleep(deferWindow + 100*time.Millisecond) // a stale flush must not bring "delivered" back
	for _, id := range ids {
		if got := h.storedStatus(id); got != StatusRead {
			t.Fatalf("%s stored %q, want read", id, got)
		}
	}
}

// TestSentStatusWaitsForTheReadReceipt: the sent status is shown at once
// but written when the defer window ends (or with a later status); its
// event, when an endpoint wants it, is staged at once.
func TestSentStatusWaitsForTheReadReceipt(t *testing.T) {
	h, gate := newGatedHarness(t)
	h.events.ignore.Store(map[string]bool{EventMessageSent: true})
	gate.release(h)

	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "held"})
	h.waitStatus(DefaultWorkspace, m.ID, StatusSent) // through the API
	if got := h.storedStatus(m.ID); got != StatusQueued {
		t.Fatalf("stored status %q right after the send, want queued (the write is deferred)", got)
	}
	var queued []string
	_ = h.app.Messages(DefaultWorkspace, MessageFilter{Status: StatusQueued}, func(x *storage.Message) bool {
		queued = append(queued, x.ID)
		return true
	})
	if len(queued) != 0 {
		t.Fatalf("status=queued lists %v while the message is sent", queued)
	}
	h.waitStored(m.ID, StatusSent)

	h.events.ignore.Store(map[string]bool{})
	m2 := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "subscribed"})
	h.waitStatus(DefaultWorkspace, m2.ID, StatusSent)
	if got := h.events.types(m2.ID); !slices.Equal(got, []string{EventMessageSent}) {
		t.Fatalf("with a subscriber: events %v staged with the outcome, want [message.sent]", got)
	}
	if got := h.storedStatus(m2.ID); got != StatusQueued {
		t.Fatalf("with a subscriber: stored %q right after the send, want queued (the status is held)", got)
	}
}

// TestSentStatusLostInACrashIsRecovered: a held sent status that dies with
// the process leaves a queued record behind the queue mark; the restart
// records it as sent and does not send it again.
func TestSentStatusLostInACrashIsRecovered(t *testing.T) {
	h, gate := newGatedHarness(t)
	h.events.ignore.Store(map[string]bool{EventMessageSent: true})
	gate.release(h)
	var ids []string
	for i := range 5 {
		m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: fmt.Sprint("m", i)})
		h.waitStatus(DefaultWorkspace, m.ID, StatusSent)
		ids = append(ids, m.ID)
	}
	// The crash: the held statuses are gone before anything wrote them.
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	loseHeldStatuses(rt)
	h.close()
	db, err := storage.Open(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if m, err := db.Message(DefaultWorkspace, id); err != nil || m.Status != StatusQueued {
			t.Fatalf("%s before the restart: %v %v, want stored queued (the sent status was lost)", id, m, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	h.open(gate)
	for _, id := range ids {
		if got := h.storedStatus(id); got != StatusSent {
			t.Errorf("%s stored %q after the restart, want sent", id, got)
		}
	}
	time.Sleep(100 * time.Millisecond) // a dispatcher that wrongly re-queued them would send now
	gate.checkSentOnceEach(t, 5)
}

// A newer held status for a message already held replaces it in place: one
// entry, one place in deferOrder, the newer status shown, no allocation.
func TestHeldStatusIsReplacedInPlace(t *testing.T) {
	rt := &sessionRuntime{deferred: map[string]*deferredStatus{}}
	now := time.Unix(1_800_000_000, 0)
	m := &storage.Message{ID: "msg_a", Status: StatusSent, UpdatedAt: 1}
	if !rt.setDeferred(m, true, now) {
		t.Fatal("the first held status did not report itself first")
	}
	held := rt.deferred[m.ID]
	m.Status, m.UpdatedAt = StatusDelivered, 2
	later := now.Add(time.Second)
	allocs := testing.AllocsPerRun(10, func() {
		if rt.setDeferred(m, true, later) {
			t.Fatal("a replaced status reported itself first")
		}
	})
	if allocs != 0 {
		t.Errorf("replacing a held status: %.1f allocations, want 0", allocs)
	}
	if got := rt.deferred[m.ID]; got != held || got.status != StatusDelivered || got.updatedAt != 2 || !got.due.Equal(later.Add(deferWindow)) {
		t.Errorf("held entry after replacement = %p %+v, want %p with delivered, 2, due %v", got, *got, held, later.Add(deferWindow))
	}
	if len(rt.deferOrder) != 1 {
		t.Errorf("deferOrder = %v, want the message once", rt.deferOrder)
	}
}

// TestSentStatusAheadOfAReservationIsWritten: a message sent while an older
// id is still reserved (a Send between its reservation and its commit) is
// not behind the queue mark, so its sent status is written with the
// outcome: held and lost in a crash, the restart would take it for queued,
// count it twice and send it again.
func TestSentStatusAheadOfAReservationIsWritten(t *testing.T) {
	h, gate := newGatedHarness(t)
	h.events.ignore.Store(map[string]bool{EventMessageSent: true})
	gate.release(h)
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	older, err := rt.reserveQueued(h.app.now())
	if err != nil {
		t.Fatal(err)
	}
	reserved := true
	t.Cleanup(func() { // before the harness's: stopping waits for reservations
		if reserved {
			rt.abandonQueued(older, false)
		}
	})
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "ahead"})
	if m.ID <= older {
		t.Fatalf("message %s not after the reservation %s", m.ID, older)
	}
	h.waitStatus(DefaultWorkspace, m.ID, StatusSent)
	if got := h.storedStatus(m.ID); got != StatusSent {
		t.Fatalf("stored status %q once sent, want sent: an older id is reserved, so the status may not be held", got)
	}
	u, err := h.app.Usage(DefaultWorkspace)
	if err != nil {
		t.Fatal(err)
	}
	usedBefore := u.Used

	// The crash: held statuses are gone, and so is the reservation.
	loseHeldStatuses(rt)
	rt.abandonQueued(older, false)
	reserved = false
	h.close()
	h.open(gate)
	if got := h.storedStatus(m.ID); got != StatusSent {
		t.Errorf("stored %q after the restart, want sent", got)
	}
	if u, err := h.app.Usage(DefaultWorkspace); err != nil || u.Used != usedBefore {
		t.Errorf("usage %d (%v) after the restart, want %d as before", u.Used, err, usedBefore)
	}
	time.Sleep(100 * time.Millisecond) // a dispatcher that wrongly re-queued it would send now
	gate.checkSentOnceEach(t, 1)
}

// loseHeldStatuses drops the statuses rt holds unwritten, as a crash would,
// so that closing the harness does not write them.
func loseHeldStatuses(rt *sessionRuntime) {
	rt.deferMu.Lock()
	clear(rt.deferred)
	rt.deferOrder = nil
	rt.deferMu.Unlock()
}

// TestStoredReceiptIsNotDeferred: a delivered receipt the transport will
// acknowledge once StoreReceipt returns (whatsmeow) is written before it
// returns, even with no endpoint for message.delivered: deferred, it lived
// in memory only, and a crash in the window lost it for good.
func TestStoredReceiptIsNotDeferred(t *testing.T) {
	h, gate := newGatedHarness(t)
	h.events.ignore.Store(map[string]bool{EventMessageDelivered: true})
	gate.open.Store(true)
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
	h.waitStored(m.ID, StatusSent)
	sh := gate.handler.Load().(whatsapp.StoringHandler)
	if err := sh.StoreReceipt(context.Background(), whatsapp.Receipt{WAMessageIDs: []string{m.WAID}, Kind: whatsapp.ReceiptDelivered, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := h.storedStatus(m.ID); got != StatusDelivered {
		t.Fatalf("stored status %q once StoreReceipt returned, want delivered", got)
	}
}
