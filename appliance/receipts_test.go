package appliance

import (
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/sandbox"
)

// TestReceiptBatchesReuseTheirScratch applies receipt batches by hand:
// several receipts for one message in a batch (later ones build on the
// pending update), repeated and unknown ids, then a second batch on the
// same scratch. Each message ends at its highest status, and the scratch
// holds no record between batches.
func TestReceiptBatchesReuseTheirScratch(t *testing.T) {
	// No receipts from the network: the test is their only source.
	h := newHarness(t, sandbox.New(sandbox.Options{DeliveredAfter: time.Hour, ReadAfter: time.Hour, Tick: sandbox.NoDelay}))
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	var ids, wa [3]string
	for i := range ids {
		m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "receipts"})
		ids[i] = m.ID
		wa[i] = h.waitStatus(DefaultWorkspace, m.ID, StatusSent).WAID
	}
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	receipt := func(kind string, waIDs ...string) sessionEvent {
		return sessionEvent{receipt: &whatsapp.Receipt{WAMessageIDs: waIDs, Kind: kind, Timestamp: time.Now()}}
	}
	apply := func(evs ...sessionEvent) {
		t.Helper()
		if err := rt.applyEvents(evs); err != nil {
			t.Fatal(err)
		}
		rt.msgMu.Lock()
		defer rt.msgMu.Unlock()
		if len(rt.touched) != 0 {
			t.Errorf("touched holds %d updates after the batch", len(rt.touched))
		}
		for i, u := range rt.updates[:cap(rt.updates)] {
			if u.live != nil || u.next.ID != "" {
				t.Errorf("update scratch %d still holds message %q after the batch", i, u.next.ID)
			}
		}
	}
	apply(
		receipt(whatsapp.ReceiptDelivered, wa[0], wa[1], wa[0], "3EB0FFFFFFFFFFFFFFFF"),
		receipt(whatsapp.ReceiptRead, wa[0], wa[2]),
		receipt(whatsapp.ReceiptDelivered, wa[2]), // older than read: no effect
	)
	want := []string{StatusRead, StatusDelivered, StatusRead}
	for i, id := range ids {
		if m, err := h.app.Message(DefaultWorkspace, id); err != nil || m.Status != want[i] {
			t.Fatalf("message %d after the first batch: %v %v, want %s", i, m, err, want[i])
		}
	}
	apply(receipt(whatsapp.ReceiptRead, wa[1]))
	h.close()
	h.open()
	for i, id := range ids {
		if got := h.storedStatus(id); got != StatusRead {
			t.Errorf("message %d stored %q after a restart, want read", i, got)
		}
	}
}

// A send that failed because WhatsApp did not confirm it in time may have
// arrived: its receipt lifts the failure. Any other failure is final.
func TestReceiptLiftsASendTimeout(t *testing.T) {
	for _, c := range []struct {
		code string
		want string
	}{{"send_timeout", StatusRead}, {"send_failed", StatusFailed}} {
		t.Run(c.code, func(t *testing.T) {
			h, gate := newGatedHarness(t)
			gate.refuse.Store(c.code)
			gate.release(h)
			m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
			failed := h.waitStatus(DefaultWorkspace, m.ID, StatusFailed)
			if failed.Error == nil || failed.Error.Code != c.code {
				t.Fatalf("failed with %+v, want %s", failed.Error, c.code)
			}
			rt, _ := h.app.runtime(DefaultWorkspace, sess)
			rt.OnReceipt(whatsapp.Receipt{WAMessageIDs: []string{failed.WAID}, Kind: whatsapp.ReceiptRead, Timestamp: time.Now()})
			if c.want == StatusRead {
				got := h.waitStatus(DefaultWorkspace, m.ID, StatusRead)
				if got.Error != nil {
					t.Errorf("read after a lifted timeout still carries the error %+v", got.Error)
				}
				h.waitStored(m.ID, StatusRead) // the record itself, not memory
				if stored, err := h.db.Message(DefaultWorkspace, m.ID); err != nil || stored.Error != nil {
					t.Errorf("stored record: %+v, %v: want the error gone", stored, err)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
			if got, _ := h.app.Message(DefaultWorkspace, m.ID); got.Status != StatusFailed {
				t.Errorf("a receipt changed a %s failure to %s", c.code, got.Status)
			}
		})
	}
}
