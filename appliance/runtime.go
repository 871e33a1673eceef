package appliance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// dispatchBatch is how many queued messages the dispatcher takes at once;
// their status updates share one synced commit.
const dispatchBatch = 256

// sessionRuntime is one session's live part: its transport, its dispatcher
// goroutine and its event goroutine. It implements whatsapp.Handler.
type sessionRuntime struct {
	a      *Appliance
	ws, id string

	ready atomic.Bool // visible to the API (false while being created or deleted)

	mu  sync.Mutex // guards rec, tr and offlineSince
	rec storage.Session
	tr  whatsapp.Transport
	// offlineSince is when the session was last seen leave "connected"
	// (or this runtime started, if it was not connected then): what
	// --max-queue-age measures.
	offlineSince time.Time

	// msgMu serialises changes to this session's message records between
	// the dispatcher and the event loop, so a status never regresses. It
	// guards live, byWA, awaitOrder, awaitIDs, marks and the legacy sets.
	msgMu sync.Mutex
	// lateInboundAt is the id time given last to an inbound message that
	// arrived after its WhatsApp second (stageInbound); msgMu guards it.
	lateInboundAt int64
	live          map[string]*storage.Message // by id: being sent, or sent and owing receipts
	byWA          map[string]*storage.Message // the sent ones, by WhatsApp id
	awaitOrder    []*storage.Message          // sent ones in send order, for bounding byWA
	awaitIDs      idHeap                      // ids of the sent ones (and stale ids), for marks.AwaitFrom
	marks         storage.SessionMarks        // as last committed
	// Messages an earlier build indexed under q/ or aw/ keys, which are
	// cleared as those messages move on.
	legacyQ, legacyAW map[string]struct{}
	// early holds receipts that arrived before the outcome of their send
	// was recorded; recordOutcomes signals retryEarly to have them applied.
	early        []earlyReceipt
	earlyWaiting atomic.Bool // early holds a receipt whose StoreReceipt waits
	retryEarly   chan struct{}
	deferWake    chan struct{} // see wakeForDeferred
	// updates and touched are applyEvents' scratch, kept between batches
	// so that a receipt's messages cost no allocation each (event loop
	// only).
	updates []msgUpdate
	touched map[string]*msgUpdate

	// deferMu guards deferred and deferOrder: statuses applied in memory
	// and not yet written (deferred.go). The event loop changes them with
	// msgMu held too; API reads take only deferMu.
	deferMu    sync.Mutex
	deferred   map[string]*deferredStatus
	deferOrder []string // ids in the order they were deferred (and so fall due)

	// queueMu guards memq, queued, queuedIDs and sendsClosed.
	queueMu sync.Mutex
	memq    []*storage.Message // committed by Send, in order, not yet taken
	// queued holds the id of every message of the session whose record says
	// "queued": reserved by a Send, in memq, being sent, or left by an
	// earlier run. Its smallest id is marks.QueueFrom.
	queued      map[string]struct{}
	queuedIDs   idHeap
	sendsClosed bool           // stop has begun: Send may not reserve ids
	sends       sync.WaitGroup // Sends between reserving an id and handing the message over
	// recoverIDs: what an earlier run left queued, oldest first; dispatcher only.
	recoverIDs []string

	queueDepth atomic.Int64
	nextSendAt atomic.Int64 // Unix seconds while the pacer holds a send back
	pacer      *pacer       // dispatcher only
	wake       chan struct{}
	events     chan sessionEvent
	numbers    numberCache

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// earlyReceipt is a held receipt, with the StoreReceipt call that waits
// for it: told only once the receipt is applied and on disk, since the
// caller acknowledges it to WhatsApp then (held in memory only, a stop or
// crash would lose a receipt WhatsApp never sends again).
type earlyReceipt struct {
	r      whatsapp.Receipt
	stored chan<- error
}

type sessionEvent struct {
	receipt *whatsapp.Receipt
	inbound *whatsapp.Inbound
	// stored, if set, is told once the event is on disk, or why not
	// (StoreInbound, StoreReceipt).
	stored chan<- error
}

func (a *Appliance) newRuntime(rec *storage.Session) *sessionRuntime {
	rt := &sessionRuntime{
		a:          a,
		ws:         rec.Workspace,
		id:         rec.ID,
		rec:        *rec,
		wake:       make(chan struct{}, 1),
		retryEarly: make(chan struct{}, 1),
		deferWake:  make(chan struct{}, 1),
		events:     make(chan sessionEvent, 4096),
	}
	rt.numbers.m = map[string]numberEntry{}
	rt.live = map[string]*storage.Message{}
	rt.pacer = newPacer()
	rt.byWA = map[string]*storage.Message{}
	rt.queued = map[string]struct{}{}
	rt.legacyQ = map[string]struct{}{}
	rt.legacyAW = map[string]struct{}{}
	rt.deferred = map[string]*deferredStatus{}
	rt.ctx, rt.cancel = context.WithCancel(a.ctx)
	rt.offlineSince = a.now()
	return rt
}

// open starts the transport and the goroutines. Messages an earlier run left
// queued are sent first; sent messages it left owing receipts are announced
// to the transport.
func (rt *sessionRuntime) open(d whatsapp.Driver, atBoot bool) error {
	awaiting, err := rt.startLoops(atBoot)
	if err != nil {
		return err
	}
	tr, err := d.Open(rt.ctx, whatsapp.SessionRef{Workspace: rt.ws, SessionID: rt.id}, rt)
	if err != nil {
		rt.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusDisconnected, Reason: err.Error()})
		rt.ready.Store(true) // listed, disconnected
		return err
	}
	rt.mu.Lock()
	rt.tr = tr
	rt.mu.Unlock()
	// Found by the API only now: a request that found the session earlier
	// would meet it without a transport, and answer as if it were broken.
	rt.ready.Store(true)
	if ra, ok := tr.(whatsapp.ReceiptAwaiter); ok && len(awaiting) > 0 {
		ra.AwaitReceipts(awaiting)
	}
	rt.kick()
	return nil
}

// notStarted lists a session that cannot run in this process, disconnected
// with the reason, so the API shows it (and DELETE can remove it) instead
// of hiding it. Its messages stay queued for a run that can send them.
func (rt *sessionRuntime) notStarted(err error) {
	// A logged-out or banned status says more, and keeps refusing sends.
	if st := rt.status(); st != whatsapp.StatusLoggedOut && st != whatsapp.StatusBanned {
		rt.OnStatus(whatsapp.StatusChange{Status: whatsapp.StatusDisconnected, Reason: "could not start: " + err.Error()})
	}
	rt.ready.Store(true)
}

// openIdle is open without a transport: the session is listed with its
// stored status, and its dispatcher runs (to expire what it holds queued).
func (rt *sessionRuntime) openIdle(atBoot bool) error {
	if _, err := rt.startLoops(atBoot); err != nil {
		return err
	}
	rt.ready.Store(true)
	return nil
}

// startLoops recovers what an earlier run left and starts the dispatcher
// and the event loop; it returns the WhatsApp ids still owing receipts. A
// failed recovery leaves the session listed, not started.
func (rt *sessionRuntime) startLoops(atBoot bool) ([]string, error) {
	awaiting, err := rt.recover(atBoot)
	if err != nil {
		err = fmt.Errorf("read what the last run left of the session: %w", err)
		rt.notStarted(err)
		return nil, err
	}
	rt.wg.Add(2)
	go rt.dispatchLoop()
	go rt.eventLoop()
	return awaiting, nil
}

// recover reads what an earlier run left: the messages still queued (they
// become recoverIDs) and the sent ones still owing receipts (brought into
// memory; their WhatsApp ids are returned). It reads the session's log from
// its marks on, plus the q/ and aw/ keys of builds before marks.
//
// atBoot: the process just started, so the queued messages found are not
// in the quota tracker yet (after a restart of one session, they are).
func (rt *sessionRuntime) recover(atBoot bool) ([]string, error) {
	db := rt.a.db
	// The dispatcher is not running yet: the pacer is ours.
	if sends, err := db.PacedSends(rt.ws, rt.id); err != nil {
		rt.a.log.Warn("read the session's last paced sends; holding every recipient for its pacing gap from now",
			"workspace", rt.ws, "sessionId", rt.id, "err", err)
		rt.pacer.restoreUnknown(rt.a.now())
	} else {
		rt.pacer.restore(sends, rt.a.now())
	}
	marks, found, err := db.SessionMarks(rt.ws, rt.id)
	if err != nil {
		return nil, err
	}
	var queued []string
	var owing, unrecorded []*storage.Message
	uncounted := map[string]int64{} // queued messages by month, not yet in the quota counter
	if found {
		// Ids made from now on must sort after everything the marks cover,
		// even if the clock went back while we were down.
		storage.ObserveID("msg_", marks.QueueFrom)
		storage.ObserveID("msg_", marks.AwaitFrom)
		err := db.SessionMessagesFrom(rt.ws, rt.id, min(marks.QueueFrom, marks.AwaitFrom), func(m *storage.Message) bool {
			storage.ObserveID("msg_", m.ID)
			if m.Direction != "outbound" {
				return true
			}
			switch {
			case m.Status == StatusQueued && m.ID >= marks.QueueFrom:
				queued = append(queued, m.ID)
				uncounted[Period(time.Unix(m.CreatedAt, 0))]++
			case m.Status == StatusQueued:
				// Behind the queue mark, so dispatched: its sent status was
				// held in memory (deferred.go) and lost with the process.
				// Failures are never held, so it was sent.
				m.Status, m.Sent, m.UpdatedAt = StatusSent, true, rt.a.now().Unix()
				unrecorded = append(unrecorded, m)
				owing = append(owing, m)
			case (m.Status == StatusSent || m.Status == StatusDelivered) && m.ID >= marks.AwaitFrom:
				owing = append(owing, m)
				if len(owing) >= 2*liveMax {
					// Only the newest liveMax are kept in memory (below).
					owing = append(owing[:0], owing[liveMax:]...)
				}
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("read the log of session %s from its marks: %w", rt.id, err)
		}
		if len(unrecorded) > 0 {
			b := db.NewBatch()
			for _, m := range unrecorded {
				b.StageMessageStatus(rt.ws, m.ID, storage.StatusOf(m))
			}
			if err := db.CommitSync(b); err != nil {
				return nil, storageErr("record sent statuses lost in a crash", err)
			}
		}
	}
	legacyQ, err := db.Queue(rt.ws, rt.id, "", math.MaxInt)
	if err != nil {
		return nil, err
	}
	legacyAW, err := db.Awaiting(rt.ws, rt.id, liveMax)
	if err != nil {
		return nil, err
	}
	for _, id := range legacyQ {
		rt.legacyQ[id] = struct{}{}
		queued = append(queued, id)
	}
	for _, id := range legacyAW {
		m, err := db.Message(rt.ws, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m.Status == StatusSent || m.Status == StatusDelivered {
			rt.legacyAW[id] = struct{}{}
			owing = append(owing, m)
		}
	}
	slices.Sort(queued)
	queued = slices.Compact(queued)
	slices.SortFunc(owing, func(a, b *storage.Message) int { return strings.Compare(a.ID, b.ID) })
	owing = slices.CompactFunc(owing, func(a, b *storage.Message) bool { return a.ID == b.ID })
	if len(owing) > liveMax {
		owing = owing[len(owing)-liveMax:] // the newest; see liveMax
	}

	if atBoot {
		for period, n := range uncounted {
			if err := rt.a.quota.addRecovered(rt.ws, period, n); err != nil {
				return nil, err
			}
		}
	}
	rt.queueMu.Lock()
	for _, id := range queued {
		rt.queued[id] = struct{}{}
		rt.queuedIDs.push(id)
	}
	rt.queueMu.Unlock()
	rt.recoverIDs = queued
	rt.queueDepth.Store(int64(len(queued)))

	waIDs := make([]string, 0, len(owing))
	rt.msgMu.Lock()
	defer rt.msgMu.Unlock()
	for _, m := range owing {
		rt.live[m.ID] = m
		rt.awaitReceipts(m)
		waIDs = append(waIDs, m.WAID)
	}
	if !found {
		// A session without marks (new, or from a build before them): the
		// first marks lie after every message; older ones are found
		// through their legacy keys.
		fresh := storage.NewID("msg_", rt.a.now())
		marks = storage.SessionMarks{QueueFrom: fresh, AwaitFrom: fresh}
		b := db.NewBatch()
		b.StageSessionMarks(rt.ws, rt.id, marks)
		if err := db.CommitSync(b); err != nil {
			return nil, storageErr("store session marks", err)
		}
	}
	rt.marks = marks
	return waIDs, nil
}

// reserveQueued makes the id of a message Send is about to store and counts
// it as queued, so the marks cannot pass it while it is being written.
// Every successful call is followed by enqueue or abandonQueued.
func (rt *sessionRuntime) reserveQueued(now time.Time) (string, error) {
	rt.queueMu.Lock()
	defer rt.queueMu.Unlock()
	if rt.sendsClosed {
		return "", newErr(CodeSessionNotConnected, "sessionId", "session %s is restarting or being deleted; retry in a moment", rt.id)
	}
	rt.sends.Add(1)
	id := storage.NewID("msg_", now)
	rt.queued[id] = struct{}{}
	rt.queuedIDs.push(id)
	return id, nil
}

// abandonQueued ends a reservation whose message was not handed over.
// maybeStored keeps the id counted when a failed commit may still have
// reached the disk: the marks then stay behind it until a restart reads it.
func (rt *sessionRuntime) abandonQueued(id string, maybeStored bool) {
	rt.queueMu.Lock()
	if !maybeStored {
		delete(rt.queued, id)
	}
	rt.queueMu.Unlock()
	rt.sends.Done()
}

// queueFromLocked is the marks' QueueFrom now: the smallest queued id, or,
// with none, a fresh id, which every later message sorts after. queueMu is
// held.
func (rt *sessionRuntime) queueFromLocked() string {
	if id, ok := rt.queuedIDs.min(func(id string) bool { _, ok := rt.queued[id]; return ok }); ok {
		return id
	}
	return storage.NewID("msg_", rt.a.now())
}

// stop waits for Sends in progress, closes the transport and waits for the
// goroutines.
func (rt *sessionRuntime) stop() {
	rt.queueMu.Lock()
	rt.sendsClosed = true
	rt.queueMu.Unlock()
	rt.sends.Wait()
	rt.mu.Lock()
	tr := rt.tr
	rt.tr = nil
	rt.mu.Unlock()
	if tr != nil {
		_ = tr.Close()
	}
	rt.cancel()
	rt.wg.Wait()
	// The dispatcher's last outcomes may have held a sent status after the
	// event loop's final flush (a send in flight returning after cancel):
	// written now, or a deleted session would leave it queued for good.
	if err := rt.flushDeferred(true); err != nil {
		rt.a.log.Error("record deferred statuses", "workspace", rt.ws, "sessionId", rt.id, "err", err)
	}
}

func (rt *sessionRuntime) logout(ctx context.Context) {
	rt.mu.Lock()
	tr := rt.tr
	rt.tr = nil
	rt.mu.Unlock()
	if tr != nil {
		if err := tr.Logout(ctx); err != nil {
			rt.a.log.Warn("session logout", "workspace", rt.ws, "sessionId", rt.id, "err", err)
		}
	}
}

func (rt *sessionRuntime) transportNow() whatsapp.Transport {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.tr
}

func (rt *sessionRuntime) driver() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.rec.Driver
}

func (rt *sessionRuntime) status() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.rec.Status
}

// paired reports whether sends may be queued: the number was paired once,
// has not been logged out or banned since, and has a device (a session that
// shows QR codes has none; one unlinked keeps Unlinked through restarts,
// where its status moves on to connecting and pairing).
func (rt *sessionRuntime) paired() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	switch rt.rec.Status {
	case whatsapp.StatusLoggedOut, whatsapp.StatusBanned, whatsapp.StatusPairing, whatsapp.StatusPairingTimeout:
		return false
	}
	return rt.rec.Paired && !rt.rec.Unlinked
}

// offlineFor is how long the session has not been connected (0 while it is).
func (rt *sessionRuntime) offlineFor() time.Duration {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.rec.Status == whatsapp.StatusConnected {
		return 0
	}
	return rt.a.now().Sub(rt.offlineSince)
}

// everPaired reports whether the number was paired at some time, so the
// session may hold queued messages (logged out or banned since included).
func (rt *sessionRuntime) everPaired() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.rec.Paired
}

func (rt *sessionRuntime) connected() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.rec.Status == whatsapp.StatusConnected && rt.tr != nil
}

func (rt *sessionRuntime) view() SessionView {
	rt.mu.Lock()
	v := SessionView{Session: rt.rec}
	v.Pacing = nil // the view shows the pacing in force, not the override
	if p := pacingFor(&rt.rec); p != nil {
		cp := *p
		v.Pacing = &cp
	}
	connected := rt.rec.Status == whatsapp.StatusConnected
	rt.mu.Unlock()
	v.QueueDepth = rt.queueDepth.Load()
	if v.QueueDepth > 0 && connected {
		v.NextSendAt = max(rt.a.now().Unix(), rt.nextSendAt.Load())
	}
	return v
}

func (rt *sessionRuntime) kick() {
	select {
	case rt.wake <- struct{}{}:
	default:
	}
}

// OnStatus records a status change and its event. It runs synchronously so
// that a status the transport reports during Open is visible to the caller.
func (rt *sessionRuntime) OnStatus(c whatsapp.StatusChange) {
	at := rt.a.now()
	now := at.Unix()
	rt.mu.Lock()
	prev := rt.rec.Status
	rt.rec.Status = c.Status
	rt.rec.StatusReason = c.Reason
	switch {
	case c.Status == whatsapp.StatusConnected:
		rt.rec.ConnectedAt = now
		rt.rec.Paired = true
		rt.rec.Unlinked = false
	case c.Status == whatsapp.StatusLoggedOut || c.Unlinked:
		rt.rec.Unlinked = true
	}
	if c.Status != whatsapp.StatusConnected && prev == whatsapp.StatusConnected {
		rt.offlineSince = at
	}
	rec := rt.rec
	rt.mu.Unlock()

	b := rt.a.db.NewBatch()
	if err := b.StageSession(&rec); err != nil {
		b.Discard()
		rt.a.log.Error("encode session", "err", err)
		return
	}
	evType := ""
	switch {
	case c.Status == whatsapp.StatusConnected && prev != whatsapp.StatusConnected:
		evType = EventSessionConnected
	case c.Status == whatsapp.StatusLoggedOut && prev != whatsapp.StatusLoggedOut:
		evType = EventSessionLoggedOut
	case c.Status == whatsapp.StatusBanned && prev != whatsapp.StatusBanned:
		// Also after a drop: a ban usually shows on the reconnect.
		evType = EventSessionDisconnected
	case prev == whatsapp.StatusConnected && c.Status != whatsapp.StatusConnected:
		evType = EventSessionDisconnected // disconnected, banned, connecting again
	}
	if evType != "" {
		ev := Event{ID: storage.NewID("evt_", rt.a.now()), Type: evType, Workspace: rt.ws, SessionID: rt.id, Timestamp: now, Reason: c.Reason}
		if err := rt.a.events.Stage(b, ev); err != nil {
			rt.a.log.Error("stage session event", "err", err)
		}
	}
	if err := rt.a.db.CommitSync(b); err != nil {
		rt.a.log.Error("store session status", "workspace", rt.ws, "sessionId", rt.id, "err", err)
		return
	}
	if evType != "" {
		rt.a.events.Committed()
	}
	rt.a.log.Info("session status", "workspace", rt.ws, "sessionId", rt.id, "status", c.Status, "reason", c.Reason)
	rt.kick()
}

// OnReceipt queues a receipt for the event loop.
func (rt *sessionRuntime) OnReceipt(r whatsapp.Receipt) {
	select {
	case rt.events <- sessionEvent{receipt: &r}:
	case <-rt.ctx.Done():
	}
}

// OnInbound queues an inbound message for the event loop.
func (rt *sessionRuntime) OnInbound(m whatsapp.Inbound) {
	select {
	case rt.events <- sessionEvent{inbound: &m}:
	case <-rt.ctx.Done():
	}
}

// StoreInbound is OnInbound that returns once the message is on disk
// (whatsapp.StoringHandler).
func (rt *sessionRuntime) StoreInbound(ctx context.Context, m whatsapp.Inbound) error {
	// Refused while the disk is down to its reserve: unacknowledged,
	// WhatsApp sends the message again later.
	if err := rt.a.db.CheckSpace(); err != nil {
		return err
	}
	return rt.store(ctx, sessionEvent{inbound: &m})
}

// StoreReceipt is OnReceipt that returns once the statuses it brings are on
// disk (whatsapp.StoringHandler). A receipt that beat the recorded outcome
// of its send is held in memory and applied once that is recorded; the
// call returns when it has been.
func (rt *sessionRuntime) StoreReceipt(ctx context.Context, r whatsapp.Receipt) error {
	return rt.store(ctx, sessionEvent{receipt: &r})
}

// errSessionStopping answers a store the session's stop cut short.
var errSessionStopping = errors.New("the session is stopping")

func (rt *sessionRuntime) store(ctx context.Context, ev sessionEvent) error {
	done := make(chan error, 1)
	ev.stored = done
	select {
	case rt.events <- ev:
	case <-ctx.Done():
		return ctx.Err()
	case <-rt.ctx.Done():
		return errSessionStopping
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-rt.ctx.Done():
		return errSessionStopping
	}
}

// numberCache remembers who is on WhatsApp, so bulk sends do not ask once per
// message. Answers expire: positive ones after a day, negative after an hour
// (a number may join).
type numberCache struct {
	mu sync.Mutex
	m  map[string]numberEntry
}

type numberEntry struct {
	on      bool
	expires time.Time
}

const (
	numberCacheMax   = 200_000
	numberTTLOn      = 24 * time.Hour
	numberTTLNotOn   = time.Hour
	numberCheckBatch = 500
)

// cachedNumber answers from the cache alone.
func (rt *sessionRuntime) cachedNumber(n string) (on, known bool) {
	rt.numbers.mu.Lock()
	defer rt.numbers.mu.Unlock()
	e, ok := rt.numbers.m[n]
	if !ok || !rt.a.now().Before(e.expires) {
		return false, false
	}
	return e.on, true
}

func (rt *sessionRuntime) checkNumbers(ctx context.Context, numbers []string) ([]bool, error) {
	if tr := rt.transportNow(); tr != nil {
		if _, local := tr.(whatsapp.LocalNumbers); local {
			return tr.CheckNumbers(ctx, numbers)
		}
	}
	now := rt.a.now()
	out := make([]bool, len(numbers))
	var missIdx []int
	var miss []string
	rt.numbers.mu.Lock()
	for i, n := range numbers {
		if e, ok := rt.numbers.m[n]; ok && now.Before(e.expires) {
			out[i] = e.on
			continue
		}
		missIdx = append(missIdx, i)
		miss = append(miss, n)
	}
	rt.numbers.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	tr := rt.transportNow()
	if tr == nil {
		return nil, &whatsapp.SendError{Code: CodeSessionNotConnected, Message: "the session is not running"}
	}
	for start := 0; start < len(miss); start += numberCheckBatch {
		end := min(start+numberCheckBatch, len(miss))
		got, err := tr.CheckNumbers(ctx, miss[start:end])
		if err != nil {
			return nil, err
		}
		rt.numbers.mu.Lock()
		if len(rt.numbers.m) > numberCacheMax {
			rt.numbers.m = map[string]numberEntry{}
		}
		for j, on := range got {
			ttl := numberTTLOn
			if !on {
				ttl = numberTTLNotOn
			}
			rt.numbers.m[miss[start+j]] = numberEntry{on: on, expires: now.Add(ttl)}
			out[missIdx[start+j]] = on
		}
		rt.numbers.mu.Unlock()
	}
	return out, nil
}

func sortSessions(v []SessionView) {
	sort.Slice(v, func(i, j int) bool {
		if v[i].Workspace != v[j].Workspace {
			return v[i].Workspace < v[j].Workspace
		}
		return v[i].ID < v[j].ID
	})
}

var errStopped = errors.New("session stopped")
