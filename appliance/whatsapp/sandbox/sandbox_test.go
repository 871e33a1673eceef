package sandbox

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
)

// recorder is a Handler that records every event with its arrival time and
// fails the test if it is called after closed is set.
type recorder struct {
	tb     testing.TB
	closed atomic.Bool

	mu        sync.Mutex
	statuses  []whatsapp.StatusChange
	receipts  []whatsapp.Receipt
	arrivals  []time.Time // arrival of receipts[i]
	inbound   []whatsapp.Inbound
	delivered map[string]int // id -> count
	read      map[string]int
}

func newRecorder(tb testing.TB) *recorder {
	return &recorder{tb: tb, delivered: map[string]int{}, read: map[string]int{}}
}

func (r *recorder) check(what string) {
	if r.closed.Load() {
		r.tb.Errorf("%s called after Close returned", what)
	}
}

func (r *recorder) OnStatus(s whatsapp.StatusChange) {
	r.check("OnStatus")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = append(r.statuses, s)
}

func (r *recorder) OnReceipt(rc whatsapp.Receipt) {
	r.check("OnReceipt")
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.receipts = append(r.receipts, rc)
	r.arrivals = append(r.arrivals, now)
	m := r.delivered
	if rc.Kind == whatsapp.ReceiptRead {
		m = r.read
	} else if rc.Kind != whatsapp.ReceiptDelivered {
		r.tb.Errorf("receipt kind %q", rc.Kind)
	}
	if len(rc.WAMessageIDs) == 0 {
		r.tb.Errorf("empty %s receipt", rc.Kind)
	}
	for _, id := range rc.WAMessageIDs {
		m[id]++
	}
}

func (r *recorder) OnInbound(in whatsapp.Inbound) {
	r.check("OnInbound")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inbound = append(r.inbound, in)
}

// readCount is the number of distinct ids that got a read receipt.
func (r *recorder) readCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.read)
}

// waitRead waits until n distinct ids have a read receipt.
func (r *recorder) waitRead(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.readCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d of %d messages read", timeout, r.readCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func open(t testing.TB, opts Options, h whatsapp.Handler) *transport {
	t.Helper()
	tr, err := New(opts).Open(context.Background(), whatsapp.SessionRef{Workspace: "ws", SessionID: "4915112345678"}, h)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr.(*transport)
}

var fast = Options{DeliveredAfter: NoDelay, ReadAfter: NoDelay, Tick: NoDelay}

func sendErrCode(err error) string {
	var se *whatsapp.SendError
	if errors.As(err, &se) {
		return se.Code
	}
	if err != nil {
		return "not a SendError: " + err.Error()
	}
	return ""
}

func TestDriver(t *testing.T) {
	d := New(Options{})
	if d.Name() != "sandbox" || d.Name() != whatsapp.DriverSandbox {
		t.Errorf("Name() = %q", d.Name())
	}
	rec := newRecorder(t)
	tr := open(t, Options{}, rec)
	// Connected must be reported before Open returned.
	rec.mu.Lock()
	got := append([]whatsapp.StatusChange(nil), rec.statuses...)
	rec.mu.Unlock()
	want := []whatsapp.StatusChange{{Status: whatsapp.StatusConnected, Reason: "sandbox session"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses after Open = %v, want %v", got, want)
	}
	if _, ok := whatsapp.Transport(tr).(whatsapp.InboundSimulator); !ok {
		t.Error("transport does not implement InboundSimulator")
	}

	if _, err := d.Open(context.Background(), whatsapp.SessionRef{}, nil); err == nil {
		t.Error("Open with a nil Handler succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Open(ctx, whatsapp.SessionRef{}, newRecorder(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a canceled context: %v", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	tests := []struct {
		name         string
		in           Options
		d, r, tick   time.Duration
		defaultClock bool
	}{
		{"zero", Options{}, DefaultDeliveredAfter, DefaultReadAfter, DefaultTick, true},
		{"no delay", fast, 0, 0, 0, true},
		{"custom", Options{DeliveredAfter: 5 * time.Millisecond, ReadAfter: 7 * time.Millisecond, Tick: time.Millisecond}, 5 * time.Millisecond, 7 * time.Millisecond, time.Millisecond, true},
		{"read raised to delivered", Options{DeliveredAfter: 50 * time.Millisecond, ReadAfter: NoDelay}, 50 * time.Millisecond, 50 * time.Millisecond, DefaultTick, true},
		{"default read below delivered", Options{DeliveredAfter: time.Second}, time.Second, time.Second, DefaultTick, true},
		{"clock", Options{Now: func() time.Time { return time.Time{} }}, DefaultDeliveredAfter, DefaultReadAfter, DefaultTick, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.in.withDefaults()
			if o.DeliveredAfter != tt.d || o.ReadAfter != tt.r || o.Tick != tt.tick {
				t.Errorf("got delivered %v read %v tick %v, want %v %v %v", o.DeliveredAfter, o.ReadAfter, o.Tick, tt.d, tt.r, tt.tick)
			}
			if o.Now == nil || o.Now().IsZero() != !tt.defaultClock {
				t.Errorf("clock not kept or not defaulted")
			}
		})
	}
	if DefaultReadAfter >= time.Second || DefaultDeliveredAfter >= DefaultReadAfter {
		t.Error("default delays must put delivered before read, both within 1 s")
	}
}

func TestNumberRules(t *testing.T) {
	tests := []struct {
		to       string
		onWA     bool
		wantCode string // "" for success
	}{
		{"4915112345678", true, ""},
		{"14155550123", true, ""},
		{"4915112340000", false, "recipient_not_on_whatsapp"},
		{"0000", false, "recipient_not_on_whatsapp"},
		{"100000", false, "recipient_not_on_whatsapp"},
		{"4915112340001", true, "send_failed"},
		{"0001", true, "send_failed"},
		{"10001", true, "send_failed"},
		{"4915112340010", true, ""},
		{"4915112300002", true, ""},
		{"491511234000", true, ""},
		{"000", true, ""},
		{"4915100001234", true, ""},
	}
	rec := newRecorder(t)
	tr := open(t, fast, rec)
	ctx := context.Background()

	numbers := make([]string, len(tests))
	for i, tt := range tests {
		numbers[i] = tt.to
	}
	got, err := tr.CheckNumbers(ctx, numbers)
	if err != nil {
		t.Fatalf("CheckNumbers: %v", err)
	}
	if len(got) != len(tests) {
		t.Fatalf("CheckNumbers returned %d results for %d numbers", len(got), len(tests))
	}
	if empty, err := tr.CheckNumbers(ctx, nil); err != nil || len(empty) != 0 {
		t.Errorf("CheckNumbers(nil) = %v, %v", empty, err)
	}

	var ok []string
	for i, tt := range tests {
		t.Run(tt.to, func(t *testing.T) {
			if got[i] != tt.onWA {
				t.Errorf("CheckNumbers says %v, want %v", got[i], tt.onWA)
			}
			res, err := tr.Send(ctx, whatsapp.SendRequest{To: tt.to, Text: "hi"})
			if code := sendErrCode(err); code != tt.wantCode {
				t.Fatalf("Send error code %q (%v), want %q", code, err, tt.wantCode)
			}
			if err != nil {
				var se *whatsapp.SendError
				errors.As(err, &se)
				if se.Message == "" {
					t.Error("SendError without a Message")
				}
				if res != (whatsapp.SendResult{}) {
					t.Errorf("failed Send returned %+v", res)
				}
				return
			}
			if !IsMessageID(res.WAMessageID) || res.Timestamp.IsZero() {
				t.Errorf("Send returned %+v", res)
			}
			ok = append(ok, res.WAMessageID)
		})
	}

	// Exactly the successful sends are acknowledged.
	rec.waitRead(t, len(ok), time.Second)
	time.Sleep(20 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.delivered) != len(ok) || len(rec.read) != len(ok) {
		t.Errorf("%d delivered, %d read, want %d each", len(rec.delivered), len(rec.read), len(ok))
	}
	for _, id := range ok {
		if rec.delivered[id] != 1 || rec.read[id] != 1 {
			t.Errorf("%s: delivered %d times, read %d times", id, rec.delivered[id], rec.read[id])
		}
	}
}

func TestSendIDs(t *testing.T) {
	tr := open(t, fast, newRecorder(t))
	given := NewMessageID()
	tests := []struct {
		name, id string
		keep     bool
	}{
		{"valid", given, true},
		{"valid 16 hex", "3EB00123456789ABCDEF", true},
		{"valid 20 hex", "3EB00123456789ABCDEF0123", true},
		{"empty", "", false},
		{"lower case", "3eb0" + given[4:], false},
		{"foreign", "client-42", false},
		{"too long", given + "00000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tr.Send(context.Background(), whatsapp.SendRequest{ID: tt.id, To: "4915112345678", Text: "x"})
			if err != nil {
				t.Fatal(err)
			}
			if tt.keep && res.WAMessageID != tt.id {
				t.Errorf("WAMessageID %q, want the request's %q", res.WAMessageID, tt.id)
			}
			if !tt.keep && (res.WAMessageID == tt.id || !IsMessageID(res.WAMessageID)) {
				t.Errorf("WAMessageID %q for request id %q: want a new valid id", res.WAMessageID, tt.id)
			}
		})
	}
}

// openTicking opens a transport whose clock advances a second a reading, so
// every send gets its own timestamp.
func openTicking(t *testing.T, rec *recorder, deliveredAfter, readAfter time.Duration) *transport {
	var clock atomic.Int64
	return open(t, Options{DeliveredAfter: deliveredAfter, ReadAfter: readAfter,
		Now: func() time.Time { return time.Unix(clock.Add(1), 0) }}, rec)
}

func TestDuplicateSendAcknowledgedOnce(t *testing.T) {
	rec := newRecorder(t)
	tr := openTicking(t, rec, 30*time.Millisecond, 60*time.Millisecond)
	id := NewMessageID()
	req := whatsapp.SendRequest{ID: id, To: "4915112345678", Text: "x"}
	first, err := tr.Send(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tr.Send(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("re-send returned %+v, want the first result %+v", again, first)
	}
	rec.waitRead(t, 1, time.Second)
	time.Sleep(80 * time.Millisecond)
	rec.mu.Lock()
	if rec.delivered[id] != 1 || rec.read[id] != 1 {
		t.Errorf("delivered %d times, read %d times; want once each", rec.delivered[id], rec.read[id])
	}
	rec.mu.Unlock()

	// Once read, the id is forgotten: a later re-send is a new message.
	if _, err := tr.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		rec.mu.Lock()
		n := rec.read[id]
		rec.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a send after the read receipt was not acknowledged")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestResendsAmongOtherIDsAcknowledgedOnce: among other ids in flight, a
// re-send of an id still owing receipts, an id older than the newest but
// never sent, and a generated id each get exactly one delivered and one
// read receipt, and an id is forgotten once its read receipt is reported.
func TestResendsAmongOtherIDsAcknowledgedOnce(t *testing.T) {
	rec := newRecorder(t)
	tr := openTicking(t, rec, 40*time.Millisecond, 80*time.Millisecond)
	id := func(n int) string { return fmt.Sprintf("3EB0%020X", n) }
	send := func(reqID string) whatsapp.SendResult {
		t.Helper()
		res, err := tr.Send(context.Background(), whatsapp.SendRequest{ID: reqID, To: "4915112345678", Text: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := map[string]whatsapp.SendResult{}
	for _, n := range []int{10, 20, 30} {
		first[id(n)] = send(id(n))
	}
	if got := send(id(20)); got != first[id(20)] {
		t.Errorf("re-send of %s returned %+v, want the first result %+v", id(20), got, first[id(20)])
	}
	first[id(15)] = send(id(15)) // older than the newest, never sent
	if got := send(id(15)); got != first[id(15)] {
		t.Errorf("re-send of %s returned %+v, want the first result %+v", id(15), got, first[id(15)])
	}
	gen := send("not-a-whatsapp-id").WAMessageID
	first[gen] = whatsapp.SendResult{}
	first[id(40)] = send(id(40))
	if got := send(id(10)); got != first[id(10)] {
		t.Errorf("re-send of %s returned %+v, want the first result %+v", id(10), got, first[id(10)])
	}
	rec.waitRead(t, len(first), 2*time.Second)
	time.Sleep(120 * time.Millisecond) // room for a wrong second receipt
	rec.mu.Lock()
	for x := range first {
		if rec.delivered[x] != 1 || rec.read[x] != 1 {
			t.Errorf("%s: delivered %d times, read %d times; want once each", x, rec.delivered[x], rec.read[x])
		}
	}
	rec.mu.Unlock()

	// All were read: a re-send of any of them is a new message.
	for _, x := range []string{id(10), id(40)} {
		if got := send(x); got == first[x] {
			t.Errorf("send of %s after its read receipt returned the first result again", x)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		rec.mu.Lock()
		n10, n40 := rec.read[id(10)], rec.read[id(40)]
		rec.mu.Unlock()
		if n10 == 2 && n40 == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sends after the read receipts: read %d and %d times, want 2 each", n10, n40)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReceipts checks, with the default delays, that every successful send
// gets one delivered then one read receipt, both within 1 s.
func TestReceipts(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, Options{}, rec)
	const n = 200
	sentAt := map[string]time.Time{}
	for i := range n {
		before := time.Now()
		res, err := tr.Send(context.Background(), whatsapp.SendRequest{To: "49151" + strconv.Itoa(2000002+i), Text: "x"})
		if err != nil {
			t.Fatal(err)
		}
		sentAt[res.WAMessageID] = before
		if i%50 == 0 {
			time.Sleep(30 * time.Millisecond) // spread the sends over several batches
		}
	}
	rec.waitRead(t, n, 2*time.Second)
	time.Sleep(2 * DefaultTick)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	deliveredAt := map[string]time.Time{}
	deliveredIdx := map[string]int{}
	seen := map[string]int{}
	for i, rc := range rec.receipts {
		if rc.Timestamp.IsZero() {
			t.Errorf("receipt %d without timestamp", i)
		}
		for _, id := range rc.WAMessageIDs {
			sent, ok := sentAt[id]
			if !ok {
				t.Fatalf("receipt for unknown id %s", id)
			}
			seen[rc.Kind+id]++
			lat := rec.arrivals[i].Sub(sent)
			if lat >= time.Second {
				t.Errorf("%s %s after %v", id, rc.Kind, lat)
			}
			switch rc.Kind {
			case whatsapp.ReceiptDelivered:
				if lat < DefaultDeliveredAfter {
					t.Errorf("%s delivered after %v, before DeliveredAfter", id, lat)
				}
				deliveredAt[id], deliveredIdx[id] = rec.arrivals[i], i
			case whatsapp.ReceiptRead:
				if lat < DefaultReadAfter {
					t.Errorf("%s read after %v, before ReadAfter", id, lat)
				}
				j, ok := deliveredIdx[id]
				if !ok || j >= i {
					t.Errorf("%s read before delivered", id)
				}
			}
		}
	}
	for id := range sentAt {
		if seen[whatsapp.ReceiptDelivered+id] != 1 || seen[whatsapp.ReceiptRead+id] != 1 {
			t.Errorf("%s: %d delivered, %d read receipts; want 1 each", id, seen[whatsapp.ReceiptDelivered+id], seen[whatsapp.ReceiptRead+id])
		}
	}
}

// TestBatching checks that receipts falling due together are reported in few
// calls.
func TestBatching(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, Options{DeliveredAfter: 200 * time.Millisecond, ReadAfter: 300 * time.Millisecond, Tick: 50 * time.Millisecond}, rec)
	const n = 1000
	start := time.Now()
	for range n {
		if _, err := tr.Send(context.Background(), whatsapp.SendRequest{To: "4915112345678", Text: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	// Receipts are reported at most once per tick, so sends spanning el fall
	// due in at most el/tick+2 reports per kind, however slow the machine.
	maxCalls := 2 + int(time.Since(start)/(50*time.Millisecond))
	rec.waitRead(t, n, 2*time.Second)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	calls := map[string]int{}
	for _, rc := range rec.receipts {
		calls[rc.Kind]++
	}
	for _, kind := range []string{whatsapp.ReceiptDelivered, whatsapp.ReceiptRead} {
		if calls[kind] < 1 || calls[kind] > maxCalls {
			t.Errorf("%d %s receipts for %d messages, want 1 to %d", calls[kind], kind, n, maxCalls)
		}
	}
	if len(rec.delivered) != n || len(rec.read) != n {
		t.Errorf("%d delivered, %d read, want %d", len(rec.delivered), len(rec.read), n)
	}
}

func TestClock(t *testing.T) {
	fixed := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	rec := newRecorder(t)
	tr := open(t, Options{DeliveredAfter: NoDelay, ReadAfter: NoDelay, Now: func() time.Time { return fixed }}, rec)
	res, err := tr.Send(context.Background(), whatsapp.SendRequest{To: "4915112345678", Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Timestamp.Equal(fixed) {
		t.Errorf("SendResult.Timestamp %v, want %v", res.Timestamp, fixed)
	}
	if err := tr.SimulateInbound(context.Background(), "4917600000000", "hello", ""); err != nil {
		t.Fatal(err)
	}
	rec.waitRead(t, 1, time.Second)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, rc := range rec.receipts {
		if !rc.Timestamp.Equal(fixed) {
			t.Errorf("%s receipt timestamp %v, want %v", rc.Kind, rc.Timestamp, fixed)
		}
	}
	if len(rec.inbound) != 1 || !rec.inbound[0].Timestamp.Equal(fixed) {
		t.Errorf("inbound %+v", rec.inbound)
	}
}

func TestSimulateInbound(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, fast, rec)
	if err := tr.SimulateInbound(context.Background(), "4917612345678", "hello there", ""); err != nil {
		t.Fatal(err)
	}
	// Delivered synchronously.
	rec.mu.Lock()
	if len(rec.inbound) != 1 {
		t.Fatalf("%d inbound messages, want 1", len(rec.inbound))
	}
	in := rec.inbound[0]
	rec.mu.Unlock()
	if !IsMessageID(in.WAMessageID) || in.From != "4917612345678" || in.FromLID != "" ||
		in.Type != "text" || in.Text != "hello there" || in.Caption != "" || in.Timestamp.IsZero() {
		t.Errorf("inbound %+v", in)
	}
	if err := tr.SimulateInbound(context.Background(), "", "x", ""); err == nil {
		t.Error("SimulateInbound without a sender succeeded")
	}
	// A reply names the message it quotes.
	if err := tr.SimulateInbound(context.Background(), "4917612345678", "yes", in.WAMessageID); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.inbound) != 2 || rec.inbound[1].RefersTo != in.WAMessageID || rec.inbound[1].Text != "yes" {
		t.Errorf("reply %+v, want one referring to %s", rec.inbound[1:], in.WAMessageID)
	}
}

// storingRecorder is a recorder whose handler can store: SimulateInbound
// must go through StoreInbound and return its error.
type storingRecorder struct {
	*recorder
	stored []whatsapp.Inbound
	err    error
}

func (s *storingRecorder) StoreInbound(ctx context.Context, m whatsapp.Inbound) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.stored = append(s.stored, m)
	}
	return s.err
}

func (s *storingRecorder) StoreReceipt(ctx context.Context, r whatsapp.Receipt) error {
	s.OnReceipt(r)
	return nil
}

func TestSimulateInboundStoresThroughAStoringHandler(t *testing.T) {
	rec := &storingRecorder{recorder: newRecorder(t)}
	tr := open(t, fast, rec)
	if err := tr.SimulateInbound(context.Background(), "4917612345678", "kept", ""); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("disk full")
	rec.mu.Lock()
	rec.err = refused
	rec.mu.Unlock()
	if err := tr.SimulateInbound(context.Background(), "4917612345678", "refused", ""); !errors.Is(err, refused) {
		t.Fatalf("SimulateInbound with a refusing store: %v, want its error", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.stored) != 1 || rec.stored[0].Text != "kept" || len(rec.inbound) != 0 {
		t.Fatalf("stored %+v, OnInbound %+v: want the first message stored, and OnInbound unused", rec.stored, rec.inbound)
	}
}

func TestMessageIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewMessageID()
		if len(id) != 22 || !IsMessageID(id) {
			t.Fatalf("NewMessageID() = %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}

	tests := []struct {
		s    string
		want bool
	}{
		{"3EB00123456789ABCDEF", true},     // 16 hex
		{"3EB00123456789ABCDEF01", true},   // 18 hex
		{"3EB00123456789ABCDEF0123", true}, // 20 hex
		{"3EB0FFFFFFFFFFFFFFFFFF", true},
		{"", false},
		{"3EB0", false},
		{"3EB00123456789ABCDE", false},       // 15 hex
		{"3EB00123456789ABCDEF01234", false}, // 21 hex
		{"3eb00123456789ABCDEF01", false},    // lower-case prefix
		{"3EB00123456789abcdef01", false},    // lower-case hex
		{"3EB10123456789ABCDEF01", false},    // wrong prefix
		{"BAE50123456789ABCDEF01", false},
		{"3EB00123456789ABCDEG01", false},
		{"3EB00123456789ABCDEF0 ", false},
		{" 3EB00123456789ABCDEF0", false},
		{"3EB0-123456789ABCDEF01", false},
		{"3EB00123456789ABCDEF\x0001", false},
		{"3EB00123456789ABCDÉF0", false},
	}
	for _, tt := range tests {
		if got := IsMessageID(tt.s); got != tt.want {
			t.Errorf("IsMessageID(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

var idPattern = regexp.MustCompile(`^3EB0[0-9A-F]{16,20}$`)

func FuzzIsMessageID(f *testing.F) {
	for _, s := range []string{
		"", "3EB0", "3EB00123456789ABCDEF", "3EB00123456789ABCDEF0123",
		"3EB00123456789ABCDEF01234", "3eb00123456789abcdef01", "3EB0ÀÀÀÀÀÀÀÀÀÀ",
		NewMessageID(), "3EB00123456789ABCDEF\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := IsMessageID(s)
		if want := idPattern.MatchString(s); got != want {
			t.Errorf("IsMessageID(%q) = %v, want %v", s, got, want)
		}
		if got && (len(s) < 20 || len(s) > 24) {
			t.Errorf("IsMessageID accepted %q of length %d", s, len(s))
		}
	})
}

func TestContextCanceled(t *testing.T) {
	tr := open(t, fast, newRecorder(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Send(ctx, whatsapp.SendRequest{To: "4915112345678"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Send: %v", err)
	}
	if _, err := tr.CheckNumbers(ctx, []string{"1"}); !errors.Is(err, context.Canceled) {
		t.Errorf("CheckNumbers: %v", err)
	}
}

func TestAfterClose(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, fast, rec)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	rec.closed.Store(true)
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := tr.Logout(context.Background()); err != nil {
		t.Errorf("Logout after Close: %v", err)
	}
	for _, to := range []string{"4915112345678", "4915112340000", "4915112340001"} {
		res, err := tr.Send(context.Background(), whatsapp.SendRequest{ID: NewMessageID(), To: to, Text: "x"})
		if code := sendErrCode(err); code != "session_not_connected" || res != (whatsapp.SendResult{}) {
			t.Errorf("Send to %s after Close: %+v, %v", to, res, err)
		}
	}
	if _, err := tr.CheckNumbers(context.Background(), []string{"1"}); sendErrCode(err) != "session_not_connected" {
		t.Errorf("CheckNumbers after Close: %v", err)
	}
	if err := tr.SimulateInbound(context.Background(), "4917612345678", "x", ""); !errors.Is(err, ErrClosed) {
		t.Errorf("SimulateInbound after Close: %v", err)
	}
}

// TestCloseDropsPending checks that after Close or Logout returns, the
// Handler is never called again, even with receipts pending and concurrent
// callers.
func TestCloseDropsPending(t *testing.T) {
	for _, logout := range []bool{false, true} {
		for _, delay := range []time.Duration{NoDelay, time.Millisecond, 20 * time.Millisecond} {
			t.Run(fmt.Sprintf("logout=%v/delay=%v", logout, delay), func(t *testing.T) {
				rec := newRecorder(t)
				tr := open(t, Options{DeliveredAfter: delay, ReadAfter: 2 * delay, Tick: NoDelay}, rec)
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for g := range 8 {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							if g%2 == 0 {
								_, _ = tr.Send(context.Background(), whatsapp.SendRequest{To: "4915112345678", Text: "x"})
							} else {
								_ = tr.SimulateInbound(context.Background(), "4917612345678", "x", "")
							}
						}
					})
				}
				time.Sleep(10 * time.Millisecond)
				var err error
				if logout {
					err = tr.Logout(context.Background())
				} else {
					err = tr.Close()
				}
				rec.closed.Store(true)
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(3*delay + 20*time.Millisecond)
				close(stop)
				wg.Wait()
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if len(rec.statuses) != 1 {
					t.Errorf("statuses %v: Close/Logout must not report a status", rec.statuses)
				}
			})
		}
	}
}

func TestConcurrentClose(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, fast, rec)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_ = tr.Close()
			if !tr.isClosed() {
				t.Error("Close returned before the transport was closed")
			}
			select {
			case <-tr.done:
			default:
				t.Error("Close returned before the scheduler stopped")
			}
		})
	}
	wg.Wait()
}

// TestConcurrency sends from many goroutines at once (run with -race) and
// checks that every message is acknowledged exactly once.
func TestConcurrency(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, Options{DeliveredAfter: 2 * time.Millisecond, ReadAfter: 5 * time.Millisecond, Tick: time.Millisecond}, rec)
	const goroutines, perG = 32, 300
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				to := fmt.Sprintf("49151%04d%04d", g, i+2)
				req := whatsapp.SendRequest{To: to, Text: "x"}
				if i%2 == 0 {
					req.ID = NewMessageID()
				}
				res, err := tr.Send(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				if req.ID != "" && res.WAMessageID != req.ID {
					t.Errorf("id %s replaced by %s", req.ID, res.WAMessageID)
				}
				ids[g] = append(ids[g], res.WAMessageID)
				if i%50 == 0 {
					if err := tr.SimulateInbound(context.Background(), to, "x", ""); err != nil {
						t.Error(err)
					}
					if ok, err := tr.CheckNumbers(context.Background(), []string{to, "10000"}); err != nil || !ok[0] || ok[1] {
						t.Errorf("CheckNumbers: %v, %v", ok, err)
					}
				}
				if i%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	rec.waitRead(t, goroutines*perG, 5*time.Second)
	time.Sleep(20 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, g := range ids {
		for _, id := range g {
			if rec.delivered[id] != 1 || rec.read[id] != 1 {
				t.Fatalf("%s: delivered %d, read %d", id, rec.delivered[id], rec.read[id])
			}
		}
	}
	if len(rec.delivered) != goroutines*perG || len(rec.inbound) != goroutines*perG/50 {
		t.Errorf("%d delivered, %d inbound", len(rec.delivered), len(rec.inbound))
	}
	// The queue drained and its space was given back.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.q) != 0 || len(tr.inflight) != 0 || !tr.idle {
		t.Errorf("queue not drained: len %d, inflight %d, idle %v", len(tr.q), len(tr.inflight), tr.idle)
	}
}

// TestQueueCompaction keeps the queue long and partly read so that its head
// is reclaimed while messages are still pending.
func TestQueueCompaction(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, Options{DeliveredAfter: 5 * time.Millisecond, ReadAfter: 10 * time.Millisecond, Tick: NoDelay}, rec)
	const n = 20000
	maxLen := 0
	start := time.Now()
	for i := range n {
		if _, err := tr.Send(context.Background(), whatsapp.SendRequest{To: "4915112345678", Text: "x"}); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			tr.mu.Lock()
			maxLen = max(maxLen, len(tr.q))
			tr.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}
	rec.waitRead(t, n, 5*time.Second)
	t.Logf("sent %d in %v; longest queue %d", n, time.Since(start), maxLen)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id, c := range rec.read {
		if c != 1 || rec.delivered[id] != 1 {
			t.Fatalf("%s: delivered %d, read %d", id, rec.delivered[id], c)
		}
	}
}

type countingHandler struct{ receipts, ids atomic.Int64 }

func (h *countingHandler) OnStatus(whatsapp.StatusChange) {}
func (h *countingHandler) OnInbound(whatsapp.Inbound)     {}
func (h *countingHandler) OnReceipt(r whatsapp.Receipt) {
	h.receipts.Add(1)
	h.ids.Add(int64(len(r.WAMessageIDs)))
}

// BenchmarkSend measures Send with the default delays and tick, so the
// scheduler reports receipts while the benchmark runs. "generated-id" lets
// the transport create the id; "given-id" passes a valid id (built per send,
// one allocation, as a caller's queued message would carry).
func BenchmarkSend(b *testing.B) {
	for _, given := range []bool{false, true} {
		name := "generated-id"
		if given {
			name = "given-id"
		}
		b.Run(name, func(b *testing.B) {
			h := &countingHandler{}
			tr, err := New(Options{}).Open(context.Background(), whatsapp.SessionRef{Workspace: "bench", SessionID: "4915112345678"}, h)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				var buf [22]byte
				copy(buf[:], NewMessageID())
				var n uint64
				for pb.Next() {
					req := whatsapp.SendRequest{To: "4915112345678", Text: "benchmark"}
					if given {
						n++
						const hex = "0123456789ABCDEF"
						for i, v := 0, n; i < 10; i, v = i+1, v>>4 {
							buf[len(buf)-1-i] = hex[v&0xf]
						}
						req.ID = string(buf[:])
					}
					if _, err := tr.Send(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			_ = tr.Close()
			if r := h.receipts.Load(); r > 0 {
				b.ReportMetric(float64(h.ids.Load())/float64(r), "ids/receipt")
			}
		})
	}
}

// TestDeliveredNotHeldBehindAnOlderRead: while the scheduler sleeps until an
// older message's read receipt, a newer message's delivered receipt that
// falls due first is still reported on time.
func TestDeliveredNotHeldBehindAnOlderRead(t *testing.T) {
	rec := newRecorder(t)
	tr := open(t, Options{DeliveredAfter: 20 * time.Millisecond, ReadAfter: time.Hour, Tick: NoDelay}, rec)
	deliveredCount := func() int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.delivered)
	}
	for i := 1; i <= 3; i++ {
		if _, err := tr.Send(context.Background(), whatsapp.SendRequest{ID: NewMessageID(), To: "4915199999999", Text: "x"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for deliveredCount() < i {
			if time.Now().After(deadline) {
				t.Fatalf("message %d: no delivered receipt within 2s (due after 20ms)", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
