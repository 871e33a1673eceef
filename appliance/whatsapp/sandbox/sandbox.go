package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
)

// Default delays and batching tick; see Options.
const (
	DefaultDeliveredAfter = 150 * time.Millisecond
	DefaultReadAfter      = 400 * time.Millisecond
	DefaultTick           = 10 * time.Millisecond
)

// NoDelay, as an Options duration, asks for no delay at all (the zero value
// asks for the default).
const NoDelay time.Duration = -1

// Suffixes of the numbers the rules single out.
const (
	notOnWhatsAppSuffix = "0000"
	failingSuffix       = "0001"
)

// ErrClosed is returned by SimulateInbound after Close or Logout.
var ErrClosed = errors.New("sandbox: transport is closed")

// Options configures a Driver. The zero value is ready to use.
type Options struct {
	// DeliveredAfter is the delay from a successful Send to its "delivered"
	// receipt: 0 means DefaultDeliveredAfter, a negative value (NoDelay)
	// means none.
	DeliveredAfter time.Duration
	// ReadAfter is the delay from a successful Send to its "read" receipt:
	// 0 means DefaultReadAfter, a negative value (NoDelay) means none. It is
	// raised to DeliveredAfter if shorter, so read never precedes delivered.
	ReadAfter time.Duration
	// Tick is the minimum time between two receipt reports of a transport;
	// receipts falling due meanwhile are batched into the next report. 0
	// means DefaultTick, a negative value (NoDelay) means report each batch
	// as soon as it is due.
	Tick time.Duration
	// Now is the clock for timestamps; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	def := func(d, dflt time.Duration) time.Duration {
		switch {
		case d == 0:
			return dflt
		case d < 0:
			return 0
		}
		return d
	}
	o.DeliveredAfter = def(o.DeliveredAfter, DefaultDeliveredAfter)
	o.ReadAfter = max(def(o.ReadAfter, DefaultReadAfter), o.DeliveredAfter)
	o.Tick = def(o.Tick, DefaultTick)
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Driver is the sandbox whatsapp.Driver. One Driver serves every sandbox
// session; each Open starts an independent transport.
type Driver struct {
	opts Options
}

var (
	_ whatsapp.Driver           = (*Driver)(nil)
	_ whatsapp.Transport        = (*transport)(nil)
	_ whatsapp.InboundSimulator = (*transport)(nil)
)

// New returns a sandbox driver.
func New(opts Options) *Driver {
	return &Driver{opts: opts.withDefaults()}
}

// Name returns whatsapp.DriverSandbox ("sandbox").
func (d *Driver) Name() string { return whatsapp.DriverSandbox }

// Open starts a transport for ref. It reports the status "connected" through
// h.OnStatus before returning. The returned transport also implements
// whatsapp.InboundSimulator.
func (d *Driver) Open(ctx context.Context, ref whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("sandbox: Open needs a Handler")
	}
	t := &transport{
		ref:      ref,
		h:        h,
		now:      d.opts.Now,
		dAfter:   int64(d.opts.DeliveredAfter),
		rAfter:   int64(d.opts.ReadAfter),
		tick:     int64(d.opts.Tick),
		base:     time.Now(),
		inflight: make(map[string]time.Time),
		idle:     true,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	h.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusConnected, Reason: "sandbox session"})
	go t.run()
	return t, nil
}

// pending is a sent message that still owes its read receipt (and perhaps
// its delivered receipt).
type pending struct {
	id   string
	sent int64 // monotonic nanoseconds since transport.base
}

// transport is one sandbox session.
type transport struct {
	ref    whatsapp.SessionRef
	h      whatsapp.Handler
	now    func() time.Time
	dAfter int64 // nanoseconds from send to delivered
	rAfter int64 // nanoseconds from send to read (>= dAfter)
	tick   int64 // minimum nanoseconds between two reports
	base   time.Time

	mu sync.Mutex
	// closed is set by Close; no Handler call starts once it is set.
	closed bool
	// calls counts Handler calls in progress outside the scheduler
	// (SimulateInbound); Close waits for them.
	calls sync.WaitGroup
	// q[head:] are the messages that owe a read receipt, in send order;
	// q[head:dcur] have had their delivered receipt, q[dcur:] have not.
	q          []pending
	head, dcur int
	// inflight maps the ids in q[head:] to their send timestamps, so a
	// re-sent id is not acknowledged twice.
	inflight map[string]time.Time
	lastSent int64
	// idle is true while the scheduler waits without a timer (empty queue);
	// the next Send wakes it.
	idle bool
	// wakeAt is when (mono) the scheduler plans to collect next. A Send
	// whose delivered receipt falls due earlier wakes it: while it sleeps
	// until an older message's read receipt, a new message's delivered
	// receipt can be due first.
	wakeAt int64

	wake chan struct{} // capacity 1: Send -> idle scheduler
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the scheduler has returned
	once sync.Once
}

func (t *transport) mono() int64 { return int64(time.Since(t.base)) }

func (t *transport) notConnected() error {
	return &whatsapp.SendError{
		Code:    "session_not_connected",
		Message: "sandbox session " + t.ref.SessionID + " is closed",
	}
}

// Send applies the sandbox rules to req; see the package documentation.
func (t *transport) Send(ctx context.Context, req whatsapp.SendRequest) (whatsapp.SendResult, error) {
	if err := ctx.Err(); err != nil {
		return whatsapp.SendResult{}, err
	}
	if strings.HasSuffix(req.To, notOnWhatsAppSuffix) {
		if t.isClosed() {
			return whatsapp.SendResult{}, t.notConnected()
		}
		return whatsapp.SendResult{}, &whatsapp.SendError{
			Code:    "recipient_not_on_whatsapp",
			Message: "the sandbox network has no account for numbers ending in " + notOnWhatsAppSuffix,
		}
	}
	if strings.HasSuffix(req.To, failingSuffix) {
		if t.isClosed() {
			return whatsapp.SendResult{}, t.notConnected()
		}
		return whatsapp.SendResult{}, &whatsapp.SendError{
			Code:    "send_failed",
			Message: "the sandbox network refuses every message to numbers ending in " + failingSuffix + " (simulated failure)",
		}
	}
	id := req.ID
	if !IsMessageID(id) {
		id = NewMessageID()
	}
	ts, ok := t.track(id, t.now())
	if !ok {
		return whatsapp.SendResult{}, t.notConnected()
	}
	return whatsapp.SendResult{WAMessageID: id, Timestamp: ts}, nil
}

// track schedules the receipts of a sent id. It returns the time the id was
// first sent (a re-sent id keeps its first time and owes no new receipts),
// and false once the transport is closed.
func (t *transport) track(id string, ts time.Time) (time.Time, bool) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ts, false
	}
	if first, dup := t.inflight[id]; dup {
		t.mu.Unlock()
		return first, true
	}
	t.inflight[id] = ts
	// Keep q ordered by send time even when goroutines race to the lock.
	sent := max(t.mono(), t.lastSent)
	t.lastSent = sent
	t.q = append(t.q, pending{id: id, sent: sent})
	wake := t.idle || sent+t.dAfter < t.wakeAt
	t.idle = false
	t.mu.Unlock()

	if wake {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	return ts, true
}

// AwaitReceipts implements whatsapp.ReceiptAwaiter. The simulated network
// lives in this process, so after a restart it has forgotten the receipts it
// still owed; the appliance names those messages and they are reported again
// (delivered, then read), as WhatsApp's servers would.
func (t *transport) AwaitReceipts(ids []string) {
	now := t.now()
	for _, id := range ids {
		if _, ok := t.track(id, now); !ok {
			return
		}
	}
}

// NumbersAreLocal marks the sandbox as a whatsapp.LocalNumbers: its answers
// cost less than caching them.
func (t *transport) NumbersAreLocal() {}

// CheckNumbers reports false for numbers ending in 0000 and true for others.
func (t *transport) CheckNumbers(ctx context.Context, numbers []string) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.isClosed() {
		return nil, t.notConnected()
	}
	out := make([]bool, len(numbers))
	for i, n := range numbers {
		out[i] = !strings.HasSuffix(n, notOnWhatsAppSuffix)
	}
	return out, nil
}

// SimulateInbound makes the session receive a text message from the number
// from, quoting the message with WhatsApp id refersTo if that is set. On
// the caller's goroutine it calls StoreInbound, when the handler is a
// whatsapp.StoringHandler, and returns its error: an answer to the API's
// simulated inbound route then means the message is on disk, as for a
// send. Other handlers get OnInbound. It returns ErrClosed after Close.
func (t *transport) SimulateInbound(ctx context.Context, from, text, refersTo string) error {
	if from == "" {
		return errors.New("sandbox: SimulateInbound needs a sender number")
	}
	in := whatsapp.Inbound{
		WAMessageID: NewMessageID(),
		From:        from,
		Type:        "text",
		Text:        text,
		RefersTo:    refersTo,
		Timestamp:   t.now(),
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	t.calls.Add(1)
	t.mu.Unlock()
	defer t.calls.Done()
	if sh, ok := t.h.(whatsapp.StoringHandler); ok {
		return sh.StoreInbound(ctx, in)
	}
	t.h.OnInbound(in)
	return nil
}

// Close stops the transport. Receipts not yet reported are dropped. When it
// returns no Handler call is in progress and none will start. It is
// idempotent and always returns nil. It must not be called from a Handler
// method of this transport (it would wait for itself).
func (t *transport) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.q, t.head, t.dcur = nil, 0, 0
		t.inflight = nil
		t.mu.Unlock()
		close(t.stop)
	})
	// Wait outside once.Do so that concurrent Close calls all wait.
	<-t.done
	t.calls.Wait()
	return nil
}

// Logout is Close: the sandbox keeps no device state. It reports no status;
// the caller records logged_out itself.
func (t *transport) Logout(ctx context.Context) error {
	return t.Close()
}

func (t *transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// run is the transport's scheduler: it reports receipts as they fall due.
func (t *transport) run() {
	defer close(t.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		delivered, read, next, ok := t.collect()
		if !ok {
			return
		}
		if len(delivered) > 0 && !t.report(delivered, whatsapp.ReceiptDelivered) {
			return
		}
		if len(read) > 0 && !t.report(read, whatsapp.ReceiptRead) {
			return
		}
		if next < 0 {
			select {
			case <-t.wake:
				continue
			case <-t.stop:
				return
			}
		}
		wait := next - t.mono()
		if len(delivered)+len(read) > 0 {
			wait = max(wait, t.tick)
		}
		if wait > 0 {
			timer.Reset(time.Duration(wait))
			select {
			case <-timer.C:
			case <-t.wake: // a receipt fell due before the timer
				timer.Stop()
			case <-t.stop:
				return
			}
		}
	}
}

// collect takes the receipts due now off the queue and returns when the
// next one falls due (-1: queue empty, the scheduler must wait for a wake).
// ok is false once the transport is closed.
func (t *transport) collect() (delivered, read []string, next int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, nil, -1, false
	}
	now := t.mono()
	q := t.q

	i := t.dcur
	for i < len(q) && q[i].sent+t.dAfter <= now {
		i++
	}
	if i > t.dcur {
		delivered = make([]string, i-t.dcur)
		for k := range delivered {
			delivered[k] = q[t.dcur+k].id
		}
		t.dcur = i
	}

	j := t.head
	for j < t.dcur && q[j].sent+t.rAfter <= now {
		j++
	}
	if j > t.head {
		read = make([]string, j-t.head)
		for k := range read {
			read[k] = q[t.head+k].id
			delete(t.inflight, read[k])
		}
		clear(q[t.head:j]) // let the ids be collected
		t.head = j
	}

	// Reclaim the space of the reported prefix.
	switch {
	case t.head == len(q):
		t.q, t.head, t.dcur = q[:0], 0, 0
	case t.head >= 1024 && t.head >= len(q)/2:
		n := copy(q, q[t.head:])
		clear(q[n:])
		t.q, t.dcur, t.head = q[:n], t.dcur-t.head, 0
	}

	next = -1
	if t.dcur < len(t.q) {
		next = t.q[t.dcur].sent + t.dAfter
	}
	if t.head < t.dcur {
		if r := t.q[t.head].sent + t.rAfter; next < 0 || r < next {
			next = r
		}
	}
	t.idle = next < 0
	t.wakeAt = next
	return delivered, read, next, true
}

// report calls OnReceipt unless the transport was closed meanwhile; it
// returns false if it was.
func (t *transport) report(ids []string, kind string) bool {
	if t.isClosed() {
		return false
	}
	// Close waits for t.done, so this call finishes before Close returns.
	t.h.OnReceipt(whatsapp.Receipt{WAMessageIDs: ids, Kind: kind, Timestamp: t.now()})
	return true
}

// Message id format: "3EB0" followed by upper-case hex digits.
const (
	idPrefix    = "3EB0"
	idHexLen    = 18 // what NewMessageID generates
	idMinHexLen = 16 // what IsMessageID accepts
	idMaxHexLen = 20
)

// NewMessageID returns a new WhatsApp-style message id: "3EB0" followed by 18
// upper-case hex digits from crypto/rand (22 characters).
func NewMessageID() string {
	const hexdigits = "0123456789ABCDEF"
	var r [idHexLen / 2]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand.Read crashes the program instead)
	var b [len(idPrefix) + idHexLen]byte
	copy(b[:], idPrefix)
	for i, c := range r {
		b[len(idPrefix)+2*i] = hexdigits[c>>4]
		b[len(idPrefix)+2*i+1] = hexdigits[c&0x0f]
	}
	return string(b[:])
}

// IsMessageID reports whether s looks like a WhatsApp message id: "3EB0"
// followed by 16 to 20 upper-case hex digits.
func IsMessageID(s string) bool {
	if len(s) < len(idPrefix)+idMinHexLen || len(s) > len(idPrefix)+idMaxHexLen {
		return false
	}
	if s[:len(idPrefix)] != idPrefix {
		return false
	}
	for i := len(idPrefix); i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}
