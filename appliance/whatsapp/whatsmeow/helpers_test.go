package whatsmeow

import (
	"context"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"

	"github.com/walytic/appliance/appliance/whatsapp"
)

// ---- fake clock ----

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock and runs the timers that fall due, in order, on the
// calling goroutine.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var next *fakeTimer
		for i, t := range c.timers {
			if t.stopped {
				continue
			}
			if !t.at.After(end) {
				next = t
				t.stopped = true
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
			}
			break
		}
		if next == nil {
			// drop stopped timers, set the time
			live := c.timers[:0]
			for _, t := range c.timers {
				if !t.stopped {
					live = append(live, t)
				}
			}
			c.timers = live
			c.now = end
			c.mu.Unlock()
			return
		}
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// pending returns the delays of the live timers from now.
func (c *fakeClock) pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, t := range c.timers {
		if !t.stopped {
			out = append(out, t.at.Sub(c.now))
		}
	}
	return out
}

// ---- recording handler ----

type recorder struct {
	mu       sync.Mutex
	statuses []whatsapp.StatusChange
	receipts []whatsapp.Receipt
	inbound  []whatsapp.Inbound
	changed  chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) OnStatus(c whatsapp.StatusChange) {
	r.mu.Lock()
	r.statuses = append(r.statuses, c)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) OnReceipt(x whatsapp.Receipt) {
	r.mu.Lock()
	r.receipts = append(r.receipts, x)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) OnInbound(x whatsapp.Inbound) {
	r.mu.Lock()
	r.inbound = append(r.inbound, x)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) last() whatsapp.StatusChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.statuses) == 0 {
		return whatsapp.StatusChange{}
	}
	return r.statuses[len(r.statuses)-1]
}

func (r *recorder) receiptList() []whatsapp.Receipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]whatsapp.Receipt(nil), r.receipts...)
}

func (r *recorder) inboundList() []whatsapp.Inbound {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]whatsapp.Inbound(nil), r.inbound...)
}

// waitFor waits until cond holds (checked on every handler call).
func (r *recorder) waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-r.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; statuses so far: %+v", what, r.snapshot())
		}
	}
}

func (r *recorder) snapshot() []whatsapp.StatusChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]whatsapp.StatusChange(nil), r.statuses...)
}

func (r *recorder) waitStatus(t *testing.T, status string, d time.Duration) whatsapp.StatusChange {
	t.Helper()
	var got whatsapp.StatusChange
	r.waitFor(t, "status "+status, d, func() bool {
		got = r.last()
		return got.Status == status
	})
	return got
}

// ---- fake conn ----

type fakeConn struct {
	mu          sync.Mutex
	isPaired    bool
	jid         types.JID
	connectErrs []error // returned by successive connect calls; nil after
	connects    int
	disconnects int
	logouts     int
	deletes     int
	mapDeletes  int
	saved       []types.JID
	lidMap      map[string]string
	sendFn      func(to types.JID, text, id string) (whatsmeow.SendResponse, error)
	sendHang    bool // send waits for its context to end, as a send with no ack would
	checkFn     func(phones []string) ([]types.IsOnWhatsAppResponse, error)
	checkCalls  [][]string
	pairCode    string
	connectedCh chan struct{}
}

func newFakeConn(paired bool) *fakeConn {
	fc := &fakeConn{isPaired: paired, connectedCh: make(chan struct{}, 100)}
	if paired {
		fc.jid = types.NewADJID("919876543210", 0, 12)
	}
	return fc
}

func (f *fakeConn) connect(ctx context.Context) error {
	f.mu.Lock()
	f.connects++
	var err error
	if len(f.connectErrs) > 0 {
		err, f.connectErrs = f.connectErrs[0], f.connectErrs[1:]
	}
	f.mu.Unlock()
	f.connectedCh <- struct{}{}
	return err
}

func (f *fakeConn) counts() (connects, disconnects int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connects, f.disconnects
}

func (f *fakeConn) disconnect() {
	f.mu.Lock()
	f.disconnects++
	f.mu.Unlock()
}
func (f *fakeConn) paired() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.isPaired }
func (f *fakeConn) ownJID() types.JID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jid
}
func (f *fakeConn) send(ctx context.Context, to types.JID, text, id string) (whatsmeow.SendResponse, error) {
	if f.sendHang {
		<-ctx.Done()
		return whatsmeow.SendResponse{}, ctx.Err()
	}
	return f.sendFn(to, text, id)
}
func (f *fakeConn) isOnWhatsApp(ctx context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error) {
	f.mu.Lock()
	f.checkCalls = append(f.checkCalls, phones)
	f.mu.Unlock()
	return f.checkFn(phones)
}
func (f *fakeConn) pairPhone(ctx context.Context, phone string) (string, error) {
	return f.pairCode, nil
}
func (f *fakeConn) logout(ctx context.Context) error {
	f.mu.Lock()
	f.logouts++
	f.isPaired = false
	f.mu.Unlock()
	return nil
}
func (f *fakeConn) deleteDevice(ctx context.Context) error {
	f.mu.Lock()
	f.deletes++
	f.isPaired = false
	f.mu.Unlock()
	return nil
}
func (f *fakeConn) pnForLID(ctx context.Context, lid types.JID) (types.JID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pn, ok := f.lidMap[lid.User]; ok {
		return types.NewJID(pn, types.DefaultUserServer), nil
	}
	return types.EmptyJID, nil
}
func (f *fakeConn) saveMapping(ctx context.Context, jid types.JID) error {
	f.mu.Lock()
	f.saved = append(f.saved, jid)
	f.mu.Unlock()
	return nil
}
func (f *fakeConn) deleteMapping(ctx context.Context) error {
	f.mu.Lock()
	f.mapDeletes++
	f.mu.Unlock()
	return nil
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("WHATSMEOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newTestSession builds a session on a fake conn and clock, with no jitter.
func newTestSession(t *testing.T, fc *fakeConn, clk *fakeClock) (*session, *recorder) {
	t.Helper()
	opts := Options{DBPath: "unused", Clock: clk, Rand: func() float64 { return 0.5 }, Logger: testLogger(t)}.withDefaults()
	rec := newRecorder()
	s := newSession(whatsapp.SessionRef{Workspace: "default", SessionID: "919876543210"}, rec, fc, opts, opts.Logger)
	t.Cleanup(func() { _ = s.Close() })
	return s, rec
}

// waitConnects waits until connect was called n times in all.
func (f *fakeConn) waitConnects(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(2 * time.Second)
	for {
		if c, _ := f.counts(); c >= n {
			return
		}
		select {
		case <-f.connectedCh:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			c, _ := f.counts()
			t.Fatalf("connect called %d times, want %d", c, n)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
