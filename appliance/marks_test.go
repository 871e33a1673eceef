package appliance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// TestLegacyQueueAndReceiptKeysAreRecovered opens data written the way
// builds before session marks wrote it: a q/ key per queued message, an aw/
// key per sent message owing receipts, no marks. Both kinds are picked up,
// and their keys cleared as the messages move on.
func TestLegacyQueueAndReceiptKeysAreRecovered(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	h.close()

	db, err := storage.Open(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b := db.NewBatch()
	b.StageDeleteSessionMarks(DefaultWorkspace, sess)
	var queued, sent []string
	for i := range 6 {
		m := &storage.Message{ID: storage.NewID("msg_", now), Workspace: DefaultWorkspace, Direction: "outbound",
			SessionID: sess, To: rcpt, From: sess, Type: "text", Text: fmt.Sprint("legacy ", i), Status: StatusQueued,
			WAID: fmt.Sprintf("3EB0%018X", now.UnixNano()+int64(i)), CreatedAt: now.Unix(), UpdatedAt: now.Unix()}
		if i%2 == 0 {
			queued = append(queued, m.ID)
			b.Set([]byte("q/"+DefaultWorkspace+"/"+sess+"/"+m.ID), nil)
		} else {
			m.Status, m.Sent = StatusSent, true
			sent = append(sent, m.ID)
			b.Set([]byte("aw/"+DefaultWorkspace+"/"+sess+"/"+m.ID), nil)
		}
		if err := b.StageNewMessage(m); err != nil {
			t.Fatal(err)
		}
		b.StageWAIndex(DefaultWorkspace, sess, m.WAID, m.ID) // earlier builds indexed every WhatsApp id
	}
	if err := db.CommitSync(b); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	h.open(fastSandbox())
	for _, id := range append(queued, sent...) {
		h.waitStatus(DefaultWorkspace, id, StatusRead)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, _ := h.db.Queue(DefaultWorkspace, sess, "", 100)
		aw, _ := h.db.Awaiting(DefaultWorkspace, sess, 100)
		if len(q) == 0 && len(aw) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("legacy keys left: q %v, aw %v", q, aw)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMarksNeverPassAQueuedMessage restarts a session again and again while
// messages are queued, some sent and some not, and checks after each
// restart that nothing queued is forgotten and nothing is sent twice.
func TestMarksNeverPassAQueuedMessage(t *testing.T) {
	h, gate := newGatedHarness(t)
	var all []string
	for round := range 4 {
		// Queue behind a closed gate, then open it for a moment while
		// more arrive, so the queue is part sent, part waiting at close.
		for i := range 25 {
			all = append(all, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: fmt.Sprint(round, "/", i)}).ID)
		}
		gate.release(h)
		for i := range 25 {
			all = append(all, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: fmt.Sprint(round, "+", i)}).ID)
		}
		gate.open.Store(false)
		h.close()
		h.open(gate)
		h.knowRecipient()
	}
	gate.release(h)
	for _, id := range all {
		h.waitStatus(DefaultWorkspace, id, StatusSent)
	}
	gate.checkSentOnceEach(t, len(all))
	h.waitQueueEmpty(DefaultWorkspace, sess)
}

// TestNewIDsSortAfterTheMarksWhenTheClockWentBack: a restart with the clock
// behind the last run still makes ids the marks cover.
func TestNewIDsSortAfterTheMarksWhenTheClockWentBack(t *testing.T) {
	h := newHarness(t, silentSandbox())
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	first := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "before"})
	h.waitStatus(DefaultWorkspace, first.ID, StatusSent)
	marks, _, _ := h.db.SessionMarks(DefaultWorkspace, sess)
	h.close()
	h.setNow(func() time.Time { return time.Now().Add(-time.Hour) })
	h.open(silentSandbox())
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "after"})
	if m.ID < marks.QueueFrom || m.ID < first.ID {
		t.Fatalf("id %s made after the restart sorts before the marks %+v", m.ID, marks)
	}
}

// TestQuotaCountsQueuedMessagesAcrossRestarts: the stored counter grows as
// messages leave the queue, so a restart must count the queued ones it
// finds, once, and the total must not change as they are then sent.
func TestQuotaCountsQueuedMessagesAcrossRestarts(t *testing.T) {
	gate := &gatedDriver{}
	h := newHarness(t, gate)
	h.mustSession(DefaultWorkspace, sess, "gated")
	used := func(when string, want int64) {
		t.Helper()
		u, err := h.app.Usage(DefaultWorkspace)
		if err != nil || u.Used != want {
			t.Fatalf("%s: used %d (%v), want %d", when, u.Used, err, want)
		}
	}
	h.knowRecipient()
	gate.open.Store(true)
	var ids []string
	for range 5 {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "sent"}).ID)
	}
	for _, id := range ids {
		h.waitStatus(DefaultWorkspace, id, StatusSent)
	}
	gate.open.Store(false)
	for range 7 {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "queued"}).ID)
	}
	used("before restart", 12)
	h.close()
	h.open(gate)
	used("after restart, 7 still queued", 12)
	h.close()
	h.open(gate)
	used("after a second restart", 12)
	h.knowRecipient()
	gate.release(h)
	for _, id := range ids {
		h.waitStatus(DefaultWorkspace, id, StatusSent)
	}
	used("all sent", 12)
	h.close()
	h.open(gate)
	used("all sent, after restart", 12)
	if n, _ := h.db.QuotaUsed(DefaultWorkspace, Period(time.Now())); n != 12 {
		t.Fatalf("stored counter %d, want 12", n)
	}
}

// eagerDriver's network answers before Send returns: a delivered receipt
// reaches the session while the outcome of the send is not recorded yet.
type eagerDriver struct{}

func (eagerDriver) Name() string { return "eager" }
func (eagerDriver) Open(_ context.Context, _ whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected})
	return &eagerTransport{h: h}, nil
}

type eagerTransport struct{ h whatsapp.Handler }

func (t *eagerTransport) Send(_ context.Context, r whatsapp.SendRequest) (whatsapp.SendResult, error) {
	t.h.OnReceipt(whatsapp.Receipt{WAMessageIDs: []string{r.ID}, Kind: whatsapp.ReceiptDelivered, Timestamp: time.Now()})
	time.Sleep(30 * time.Millisecond) // the event loop handles the receipt first
	return whatsapp.SendResult{WAMessageID: r.ID, Timestamp: time.Now()}, nil
}
func (t *eagerTransport) CheckNumbers(_ context.Context, n []string) ([]bool, error) {
	out := make([]bool, len(n))
	for i := range out {
		out[i] = true
	}
	return out, nil
}
func (t *eagerTransport) Close() error                 { return nil }
func (t *eagerTransport) Logout(context.Context) error { return nil }

// TestReceiptBeforeTheSendOutcomeWaitsForIt: the receipt is applied after
// "sent" is recorded, so the stored status ends delivered, not sent, and
// the events come in order.
func TestReceiptBeforeTheSendOutcomeWaitsForIt(t *testing.T) {
	h := newHarness(t, eagerDriver{})
	h.mustSession(DefaultWorkspace, sess, "eager")
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "fast network"})
	h.waitStatus(DefaultWorkspace, m.ID, StatusDelivered)
	time.Sleep(100 * time.Millisecond) // an outcome that overwrote it would have landed
	if got := h.storedStatus(m.ID); got != StatusDelivered {
		t.Fatalf("stored status %q, want delivered", got)
	}
	if got := fmt.Sprint(h.events.types(m.ID)); got != "[message.sent message.delivered]" {
		t.Fatalf("events %s, want sent then delivered", got)
	}
}
