package appliance

import (
	"testing"
	"time"

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
	if got := h.storedStatus(m.ID); got != StatusSent {
		t.Fatalf("stored status %q right after delivery, want sent (the write is deferred)", got)
	}
	var listed []string
	_ = h.app.Messages(DefaultWorkspace, MessageFilter{Status: StatusDelivered}, func(x *storage.Message) bool {
		listed = append(listed, x.ID)
		return true
	})
	if len(listed) != 1 || listed[0] != m.ID {
		t.Fatalf("status=delivered lists %v, want the deferred message", listed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.storedStatus(m.ID) != StatusDelivered {
		if time.Now().After(deadline) {
			t.Fatal("the deferred delivered status was never written")
		}
		time.Sleep(10 * time.Millisecond)
	}

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
