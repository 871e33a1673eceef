package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// slowOpenDriver is a sandbox whose Open waits for release (after saying so
// on entered), or fails with openErr.
type slowOpenDriver struct {
	whatsapp.Driver
	entered, release chan struct{}
	openErr          error
}

func (d *slowOpenDriver) Open(ctx context.Context, ref whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	if d.openErr != nil {
		return nil, d.openErr
	}
	close(d.entered)
	<-d.release
	return d.Driver.Open(ctx, ref, h)
}

// TestSessionFoundOnlyOnceItsTransportRuns: while POST /v1/sessions is still
// opening the transport, requests naming the session find no session (it
// has not been answered 201 yet), instead of a session without a transport
// (which once answered a sandbox inbound with "simulated inbound messages
// exist only for sandbox sessions").
func TestSessionFoundOnlyOnceItsTransportRuns(t *testing.T) {
	d := &slowOpenDriver{Driver: fastSandbox(), entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, d)
	created := make(chan error, 1)
	go func() {
		_, err := h.app.CreateSession(DefaultWorkspace, sess, "sandbox")
		created <- err
	}()
	<-d.entered
	ctx := context.Background()
	if err := h.app.SimulateInbound(ctx, DefaultWorkspace, sess, "919999912345", "hi", ""); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("inbound while the transport opens: %s", codeOf(err))
	}
	if _, err := h.app.CheckNumbers(ctx, DefaultWorkspace, sess, []string{"919999912345"}); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("number check while the transport opens: %s", codeOf(err))
	}
	if _, err := h.app.Session(DefaultWorkspace, sess); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("GET while the transport opens: %s", codeOf(err))
	}
	_, err := h.app.CreateSession(DefaultWorkspace, sess, "sandbox")
	if e, _ := AsError(err); codeOf(err) != "session_exists/sessionId" || !strings.Contains(e.Message, "retry in a moment") {
		t.Fatalf("a second create while the first opens: %v", err)
	}
	close(d.release)
	select {
	case err := <-created:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CreateSession did not return")
	}
	if err := h.app.SimulateInbound(ctx, DefaultWorkspace, sess, "919999912345", "hi", ""); err != nil {
		t.Fatalf("inbound once created: %v", err)
	}
	if _, err := h.app.CheckNumbers(ctx, DefaultWorkspace, sess, []string{"919999912345"}); err != nil {
		t.Fatalf("number check once created: %v", err)
	}
}

// TestSessionWhoseTransportFailedToOpen is listed, disconnected, and a
// sandbox inbound for it says it is not connected.
func TestSessionWhoseTransportFailedToOpen(t *testing.T) {
	d := &slowOpenDriver{Driver: fastSandbox(), openErr: errors.New("no transport today")}
	h := newHarness(t, d)
	v, err := h.app.CreateSession(DefaultWorkspace, sess, "sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != whatsapp.StatusDisconnected {
		t.Fatalf("status %q, want %q", v.Status, whatsapp.StatusDisconnected)
	}
	if _, err := h.app.Session(DefaultWorkspace, sess); err != nil {
		t.Fatalf("GET: %v", err)
	}
	err = h.app.SimulateInbound(context.Background(), DefaultWorkspace, sess, "919999912345", "hi", "")
	if codeOf(err) != "session_not_connected/sessionId" {
		t.Fatalf("inbound without a transport: %s", codeOf(err))
	}
}

// TestLateInboundListsByItsTime: an inbound message WhatsApp timestamped two
// hours before it arrived is found by since/until on that time (they were
// turned into id bounds from its arrival, and missed it), and lists among
// the messages of its time, not of its arrival.
func TestLateInboundListsByItsTime(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	if err := rt.StoreInbound(ctx, whatsapp.Inbound{WAMessageID: "3EB0AABBCCDDEEFF0011", From: "919999912345", Text: "late", Timestamp: old}); err != nil {
		t.Fatal(err)
	}
	if err := rt.StoreInbound(ctx, whatsapp.Inbound{WAMessageID: "3EB0AABBCCDDEEFF0022", From: "919999912345", Text: "now"}); err != nil {
		t.Fatal(err)
	}
	texts := func(f MessageFilter) []string {
		t.Helper()
		page, _, err := h.app.MessagePage(DefaultWorkspace, f, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range page {
			out = append(out, m.Text)
		}
		return out
	}
	for _, c := range []struct {
		name string
		f    MessageFilter
		want string
	}{
		{"until an hour after it", MessageFilter{Until: old.Add(time.Hour).Unix()}, "late"},
		{"until just after it", MessageFilter{Until: old.Unix() + 1}, "late"},
		{"until it", MessageFilter{Until: old.Unix()}, ""},
		{"since it, until an hour after", MessageFilter{Since: old.Unix(), Until: old.Add(time.Hour).Unix()}, "late"},
		{"since an hour after it", MessageFilter{Since: old.Add(time.Hour).Unix()}, "now"},
		{"all, newest first", MessageFilter{}, "now late"},
	} {
		if got := strings.Join(texts(c.f), " "); got != c.want {
			t.Errorf("%s: listed %q, want %q", c.name, got, c.want)
		}
	}
	page, _, err := h.app.MessagePage(DefaultWorkspace, MessageFilter{Until: old.Unix() + 1}, 1)
	if err != nil || len(page) != 1 || page[0].CreatedAt != old.Unix() {
		t.Fatalf("late message %+v (%v), want createdAt %d, WhatsApp's", page, err, old.Unix())
	}
}

// TestLateInboundKeepsArrivalOrderWithinASecond: late messages that share a
// WhatsApp second, in one burst or across a second of our clock, list in the
// order they arrived (their ids once took our clock's nanoseconds, or one
// time for a whole batch with random bytes deciding).
func TestLateInboundKeepsArrivalOrderWithinASecond(t *testing.T) {
	h := newHarness(t)
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	var evs []sessionEvent
	for i := range 20 { // one batch: one "now" for all of them
		in := whatsapp.Inbound{WAMessageID: fmt.Sprintf("3EB0AABBCCDDEEFF%04d", i), From: "919999912345", Text: fmt.Sprint(i), Timestamp: old}
		evs = append(evs, sessionEvent{inbound: &in})
	}
	if err := rt.applyEvents(evs); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 50*time.Millisecond))) // into our next second
	in := whatsapp.Inbound{WAMessageID: "3EB0AABBCCDDEEFF0099", From: "919999912345", Text: "20", Timestamp: old}
	if err := rt.applyEvents([]sessionEvent{{inbound: &in}}); err != nil {
		t.Fatal(err)
	}
	page, _, err := h.app.MessagePage(DefaultWorkspace, MessageFilter{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 21 {
		t.Fatalf("%d messages, want 21", len(page))
	}
	for i, m := range page { // newest first
		if want := fmt.Sprint(20 - i); m.Text != want || m.CreatedAt != old.Unix() {
			t.Fatalf("position %d: %q created %d, want %q created %d", i, m.Text, m.CreatedAt, want, old.Unix())
		}
	}
}

// namedDriver is a sandbox under another driver name.
type namedDriver struct {
	whatsapp.Driver
	name string
}

func (d namedDriver) Name() string { return d.name }

// TestSessionWhoseDriverIsMissingIsListed: after a restart on a build
// without the session's driver, the session is listed disconnected with the
// reason, takes sends into its queue, and can be deleted (it was hidden,
// and so impossible to delete, before).
func TestSessionWhoseDriverIsMissingIsListed(t *testing.T) {
	other := namedDriver{Driver: &gatedDriver{}, name: "other"} // sends wait: the gate is closed
	h := newHarness(t, fastSandbox(), other)
	h.mustSession(DefaultWorkspace, sess, "other")
	h.knowRecipient()
	left := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "left queued by the earlier run"})
	h.close()
	h.open(fastSandbox())

	v, err := h.app.Session(DefaultWorkspace, sess)
	if err != nil {
		t.Fatalf("GET a session whose driver is missing: %v", err)
	}
	if v.Status != whatsapp.StatusDisconnected || !strings.Contains(v.StatusReason, `driver "other" is not available`) {
		t.Fatalf("session without its driver: %+v", v)
	}
	if l := h.app.Sessions(DefaultWorkspace); len(l) != 1 || l[0].ID != sess {
		t.Fatalf("listed: %+v", l)
	}
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: "919999912345", Text: "waits"})
	if m.Status != "queued" {
		t.Fatalf("a send to it: %s", m.Status)
	}
	if err := h.app.DeleteSession(context.Background(), DefaultWorkspace, sess); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	if _, err := h.app.Session(DefaultWorkspace, sess); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("GET after DELETE: %s", codeOf(err))
	}
	for _, id := range []string{m.ID, left.ID} {
		if got := h.waitStatus(DefaultWorkspace, id, "failed"); got.Error == nil || got.Error.Code != CodeSessionNotConnected {
			t.Fatalf("its queued message %s after DELETE: %+v", id, got.Error)
		}
	}
	h.close()
	h.open(fastSandbox(), other)
	if l := h.app.Sessions(DefaultWorkspace); len(l) != 0 {
		t.Fatalf("deleted session back after a restart with its driver: %+v", l)
	}
}

// repairDriver opens sandbox transports that can pair and that report
// logged_out at once, so every pairing request restarts the session. It
// counts the transports still open.
type repairDriver struct {
	whatsapp.Driver
	open atomic.Int64
}

func (d *repairDriver) Name() string { return "repair" }

func (d *repairDriver) Open(ctx context.Context, ref whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	tr, err := d.Driver.Open(ctx, ref, h)
	if err != nil {
		return nil, err
	}
	d.open.Add(1)
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusLoggedOut, Reason: "unlinked on the phone"})
	return &repairTransport{Transport: tr, d: d}, nil
}

type repairTransport struct {
	whatsapp.Transport
	d    *repairDriver
	done atomic.Bool
}

func (t *repairTransport) end() {
	if t.done.CompareAndSwap(false, true) {
		t.d.open.Add(-1)
	}
}
func (t *repairTransport) Close() error { t.end(); return t.Transport.Close() }
func (t *repairTransport) Logout(ctx context.Context) error {
	t.end()
	return t.Transport.Logout(ctx)
}
func (t *repairTransport) QR() (string, time.Time, error) {
	return "2@qr", time.Now().Add(time.Minute), nil
}
func (t *repairTransport) PairingCode(context.Context) (string, error) { return "ABCD-EFGH", nil }

// TestPairingRestartsRacingEachOtherAndDelete: pairing requests that each
// restart a logged-out session leave one runtime with one open transport
// (two at once left a second one running unseen), and a DELETE racing them
// stays deleted, across a restart too (a restart that lost the race wrote
// the session back).
func TestPairingRestartsRacingEachOtherAndDelete(t *testing.T) {
	d := &repairDriver{Driver: fastSandbox()}
	h := newHarness(t, d)
	ctx := context.Background()
	for round := range 20 {
		h.mustSession(DefaultWorkspace, sess, "repair")
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = h.app.QR(ctx, DefaultWorkspace, sess)
			}()
		}
		wg.Wait()
		if n := d.open.Load(); n != 1 {
			t.Fatalf("round %d: %d transports open after concurrent pairing restarts, want 1", round, n)
		}
		deleted := make(chan error, 1)
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = h.app.PairingCode(ctx, DefaultWorkspace, sess)
			}()
		}
		go func() { deleted <- h.app.DeleteSession(ctx, DefaultWorkspace, sess) }()
		wg.Wait()
		if err := <-deleted; err != nil {
			t.Fatalf("round %d: DELETE: %v", round, err)
		}
		if l := h.app.Sessions(DefaultWorkspace); len(l) != 0 {
			t.Fatalf("round %d: listed after DELETE: %+v", round, l)
		}
		if n := d.open.Load(); n != 0 {
			t.Fatalf("round %d: %d transports open after DELETE, want 0", round, n)
		}
	}
	h.close()
	h.open(d)
	if l := h.app.Sessions(DefaultWorkspace); len(l) != 0 {
		t.Fatalf("a deleted session came back after a restart: %+v", l)
	}
}

// slowStopDriver: sends succeed once open; a send to slowRcpt returns only
// after the dispatcher's context ends (as a network stack does, a moment
// later).
type slowStopDriver struct{ open atomic.Bool }

const slowRcpt = "919999912399"

func (d *slowStopDriver) Name() string { return "slowstop" }
func (d *slowStopDriver) Open(_ context.Context, _ whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected})
	return &slowStopTransport{d: d}, nil
}

type slowStopTransport struct{ d *slowStopDriver }

func (t *slowStopTransport) Send(ctx context.Context, r whatsapp.SendRequest) (whatsapp.SendResult, error) {
	if !t.d.open.Load() {
		return whatsapp.SendResult{}, &whatsapp.SendError{Code: CodeSessionNotConnected, Message: "not yet"}
	}
	if r.To == slowRcpt {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond)
		return whatsapp.SendResult{}, ctx.Err()
	}
	return whatsapp.SendResult{WAMessageID: r.ID, Timestamp: time.Now()}, nil
}
func (t *slowStopTransport) CheckNumbers(_ context.Context, n []string) ([]bool, error) {
	out := make([]bool, len(n))
	for i := range out {
		out[i] = true
	}
	return out, nil
}
func (t *slowStopTransport) Close() error                 { return nil }
func (t *slowStopTransport) Logout(context.Context) error { return nil }

// sendOneWithOneInFlight makes a session of d, whose sends wait until open
// is set and whose sends to slowRcpt do not end by themselves, queues one
// message and one to slowRcpt, and opens it: it returns once the first has
// gone out and the second, in the same dispatch batch, is in flight.
func sendOneWithOneInFlight(t *testing.T, d whatsapp.Driver, open *atomic.Bool) (*harness, *storage.Message) {
	t.Helper()
	h := newHarness(t, d)
	h.mustSession(DefaultWorkspace, sess, d.Name())
	first := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: "919999912345", Text: "goes out"})
	h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: slowRcpt, Text: "in flight"})
	time.Sleep(50 * time.Millisecond)
	open.Store(true)
	rt, _ := h.app.runtime(DefaultWorkspace, sess)
	rt.kick()
	time.Sleep(100 * time.Millisecond)
	return h, first
}

// TestDeleteKeepsTheSentStatusOfABatchInFlight: a message WhatsApp took, in
// the same dispatch batch as one still in flight when its session is
// deleted, is recorded sent; it stayed queued for good, its message.sent
// event posted all the same.
func TestDeleteKeepsTheSentStatusOfABatchInFlight(t *testing.T) {
	d := &slowStopDriver{}
	h, first := sendOneWithOneInFlight(t, d, &d.open)
	if err := h.app.DeleteSession(context.Background(), DefaultWorkspace, sess); err != nil {
		t.Fatal(err)
	}
	got, err := h.app.Message(DefaultWorkspace, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusSent || fmt.Sprint(h.events.types(first.ID)) != "[message.sent]" {
		t.Fatalf("a message sent before its session was deleted: %s, events %v; want sent and its event", got.Status, h.events.types(first.ID))
	}
}

// heldDriver: sends succeed once open, and are logged by text; a send to
// slowRcpt waits for release (or the session's stop). It keeps the handler,
// to hand it receipts.
type heldDriver struct {
	open    atomic.Bool
	release chan struct{}
	handler atomic.Value // whatsapp.Handler
	mu      sync.Mutex
	log     []string
}

func (d *heldDriver) Name() string { return "held" }
func (d *heldDriver) Open(_ context.Context, _ whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected})
	d.handler.Store(h)
	return &heldTransport{slowStopTransport{d: &slowStopDriver{}}, d}, nil
}

type heldTransport struct {
	slowStopTransport
	d *heldDriver
}

func (t *heldTransport) Send(ctx context.Context, r whatsapp.SendRequest) (whatsapp.SendResult, error) {
	if !t.d.open.Load() {
		return whatsapp.SendResult{}, &whatsapp.SendError{Code: CodeSessionNotConnected, Message: "not yet"}
	}
	if r.To == slowRcpt {
		select {
		case <-t.d.release:
		case <-ctx.Done():
			return whatsapp.SendResult{}, &whatsapp.SendError{Code: CodeSessionNotConnected, Message: "stopped"}
		}
	}
	if r.To == laggingRcpt {
		time.Sleep(500 * time.Millisecond)
	}
	t.d.mu.Lock()
	t.d.log = append(t.d.log, r.Text)
	t.d.mu.Unlock()
	return whatsapp.SendResult{WAMessageID: r.ID, Timestamp: time.Now()}, nil
}

const laggingRcpt = "919999912398" // heldTransport takes 500 ms to send to it

// TestEarlyReceiptIsAcknowledgedOnlyOnceStored: a receipt that beats the
// recorded outcome of its send is held, and StoreReceipt (after which
// whatsmeow acknowledges it to WhatsApp) returns only once it is applied
// and on disk; cut short by a stop, it returns an error, so WhatsApp sends
// it again. It returned at once, and a stop or crash lost the receipt.
func TestEarlyReceiptIsAcknowledgedOnlyOnceStored(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stop=%v", stop), func(t *testing.T) {
			d := &heldDriver{release: make(chan struct{})}
			h, first := sendOneWithOneInFlight(t, d, &d.open)
			stored := make(chan error, 1)
			go func() {
				sh := d.handler.Load().(whatsapp.StoringHandler)
				stored <- sh.StoreReceipt(context.Background(), whatsapp.Receipt{WAMessageIDs: []string{first.WAID}, Kind: whatsapp.ReceiptDelivered, Timestamp: time.Now()})
			}()
			select {
			case err := <-stored:
				t.Fatalf("StoreReceipt returned (%v) while its receipt is only held in memory", err)
			case <-time.After(150 * time.Millisecond):
			}
			if stop {
				h.close()
				if err := <-stored; err == nil {
					t.Fatal("a held receipt cut short by a stop was reported stored")
				}
				return
			}
			close(d.release)
			if err := <-stored; err != nil {
				t.Fatalf("StoreReceipt: %v", err)
			}
			if got, _ := h.db.Message(DefaultWorkspace, first.ID); got == nil || got.Status != StatusDelivered {
				t.Fatalf("StoreReceipt returned, but the stored message is %+v", got)
			}
		})
	}
}

// TestPacingTurnedOnMidBatchRecordsWhatWentOut: the messages of an unpaced
// batch that went out before pacing was turned on are recorded sent at
// once, not after the rest of the batch is paced out.
func TestPacingTurnedOnMidBatchRecordsWhatWentOut(t *testing.T) {
	d := &heldDriver{release: make(chan struct{})}
	h := newHarness(t, d)
	h.mustSession(DefaultWorkspace, sess, "held")
	if _, err := h.app.SetPacing(DefaultWorkspace, sess, &storage.Pacing{}); err != nil { // off
		t.Fatal(err)
	}
	var ids []string
	for i, to := range []string{"919999912345", slowRcpt, "919999912345", "919999912345"} {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: to, Text: fmt.Sprint("m", i)}).ID)
	}
	time.Sleep(50 * time.Millisecond)
	d.open.Store(true)
	rt, _ := h.app.runtime(DefaultWorkspace, sess)
	rt.kick()
	time.Sleep(100 * time.Millisecond) // the first went out, the second is in flight
	if _, err := h.app.SetPacing(DefaultWorkspace, sess, &storage.Pacing{RatePerMinute: 20}); err != nil {
		t.Fatal(err)
	}
	close(d.release)
	time.Sleep(500 * time.Millisecond)
	for _, id := range ids[:2] {
		if got, _ := h.app.Message(DefaultWorkspace, id); got.Status == StatusQueued {
			t.Fatalf("%s went out 0.5 s ago but is still queued (recorded only once the batch is paced out)", id)
		}
	}
}

// TestRecoveredBacklogKeepsItsOrderWhenPutBack: after a restart, a
// recovered message the transport cannot take yet goes back to the front of
// the recovered backlog (it went behind it, and a backlog refused one by
// one came out reversed).
func TestRecoveredBacklogKeepsItsOrderWhenPutBack(t *testing.T) {
	d := &heldDriver{release: make(chan struct{})}
	h := newHarness(t, d)
	h.mustSession(DefaultWorkspace, sess, "held")
	if _, err := h.app.SetPacing(DefaultWorkspace, sess, &storage.Pacing{RatePerMinute: 600}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, text := range []string{"a", "b", "c"} {
		ids = append(ids, h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: "919999912345", Text: text}).ID)
	}
	time.Sleep(100 * time.Millisecond)
	h.close()
	h.open(d) // still closed: the first recovered message is refused and put back
	time.Sleep(300 * time.Millisecond)
	d.open.Store(true)
	rt, _ := h.app.runtime(DefaultWorkspace, sess)
	rt.kick()
	for _, id := range ids {
		h.waitStatus(DefaultWorkspace, id, StatusSent)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if fmt.Sprint(d.log) != "[a b c]" {
		t.Fatalf("sent in the order %v, want [a b c]", d.log)
	}
}

// TestUnlinkedSessionIsNotOpenedAtBoot: a session logged out from the phone
// is not opened at the next start (that started pairing unasked and put
// pairing_timeout where logged_out said why); it stays logged out, listed,
// until someone asks for a QR code, which opens it to pair.
func TestUnlinkedSessionIsNotOpenedAtBoot(t *testing.T) {
	for _, unlinked := range []whatsapp.StatusChange{
		{Status: whatsapp.StatusLoggedOut, Reason: "unlinked on the phone"},
		{Status: whatsapp.StatusBanned, Reason: "banned (406), device unlinked", Unlinked: true},
	} {
		t.Run(unlinked.Status, func(t *testing.T) {
			d := &pairingDriver{}
			h := newHarness(t, d)
			if _, err := h.app.CreateSession(DefaultWorkspace, sess, "whatsmeow"); err != nil {
				t.Fatal(err)
			}
			hd := d.last.Load().(whatsapp.Handler)
			hd.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected})
			hd.OnStatus(unlinked)
			h.close()
			h.open(d)
			if n := d.opens.Load(); n != 1 {
				t.Fatalf("an unlinked session was opened at boot (%d opens)", n)
			}
			v, err := h.app.Session(DefaultWorkspace, sess)
			if err != nil || v.Status != unlinked.Status || v.StatusReason != unlinked.Reason {
				t.Fatalf("after a restart: %+v, %v; want %s with its reason", v, err, unlinked.Status)
			}
			h.knowRecipient()
			if _, _, err := h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"}); codeOf(err) != "session_not_connected/sessionId" {
				t.Fatalf("send: %s", codeOf(err))
			}
			q, err := h.app.QR(context.Background(), DefaultWorkspace, sess)
			if err != nil || q.Code != "2@code-2" || d.opens.Load() != 2 {
				t.Fatalf("QR of the unlinked session: %+v, %v (%d opens); want it opened to pair", q, err, d.opens.Load())
			}
		})
	}
}

// TestHeldReceiptDoesNotWaitForTheWholeBatch: a receipt held for a message
// whose batch is still being sent is stored once the send in flight ends,
// not when the whole batch has gone (up to 256 sends), since whatsmeow
// handles no other event of the session meanwhile.
func TestHeldReceiptDoesNotWaitForTheWholeBatch(t *testing.T) {
	d := &heldDriver{release: make(chan struct{})}
	h := newHarness(t, d)
	h.mustSession(DefaultWorkspace, sess, "held")
	first := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: "919999912345", Text: "goes out"})
	for i := range 4 {
		h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: laggingRcpt, Text: fmt.Sprint("slow ", i)})
	}
	time.Sleep(50 * time.Millisecond)
	d.open.Store(true)
	rt, _ := h.app.runtime(DefaultWorkspace, sess)
	rt.kick()
	time.Sleep(100 * time.Millisecond) // the first went out; four 500 ms sends follow in the same batch
	start := time.Now()
	sh := d.handler.Load().(whatsapp.StoringHandler)
	if err := sh.StoreReceipt(context.Background(), whatsapp.Receipt{WAMessageIDs: []string{first.WAID}, Kind: whatsapp.ReceiptDelivered, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 1200*time.Millisecond {
		t.Fatalf("StoreReceipt took %v: it waited for the rest of the batch (2 s), not the send in flight (0.5 s)", took)
	}
}
