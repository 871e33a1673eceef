package appliance

import (
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// Message statuses.
const (
	StatusQueued    = "queued"
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusFailed    = "failed"
	StatusReceived  = "received"
)

// codeSendTimeout is the whatsapp.SendError code of a send the network did
// not confirm in time: it may have arrived.
const codeSendTimeout = "send_timeout"

func statusRank(s string) int {
	switch s {
	case StatusQueued:
		return 0
	case StatusSent:
		return 1
	case StatusDelivered:
		return 2
	case StatusRead:
		return 3
	}
	return 4 // failed, received: final
}

// sendOutcome is what happened to one message taken from the queue. m is
// nil for a queue entry whose message is gone or no longer queued: it is
// only dequeued.
type sendOutcome struct {
	id    string
	m     *storage.Message
	res   whatsapp.SendResult
	err   *storage.MessageError // nil: sent
	paced bool                  // sent under pacing: the pacer's latest sends are stored for a restart
}

// dispatchLoop drains the session's queue in order while it is connected:
// first what an earlier run left in storage (recovery), then what Send hands
// over in memory, so the hot path reads nothing back from Pebble.
func (rt *sessionRuntime) dispatchLoop() {
	defer rt.wg.Done()
	for {
		if rt.ctx.Err() != nil {
			return
		}
		if !rt.connected() {
			if maxAge := rt.a.maxQueueAge; maxAge > 0 && rt.everPaired() {
				// Queued sends wait for the session, but not for ever:
				// logged out or banned included, or its backlog would go
				// out in one burst weeks later, when it is paired again or
				// the ban ends.
				if !rt.sleep(min(time.Minute, maxAge/4)) {
					return
				}
				// Measured from when it went offline, not from each message's
				// creation: a paced backlog older than maxAge is not failed by
				// a reconnect of a second, or by a restart.
				if rt.offlineFor() < maxAge {
					continue
				}
				if err := rt.expireQueued(rt.a.now().Add(-maxAge).Unix()); err != nil {
					rt.a.log.Error("expire queued messages", "workspace", rt.ws, "sessionId", rt.id, "err", err)
				}
			} else if !rt.wait() {
				return
			}
			continue
		}
		n := dispatchBatch
		if rt.pacing() != nil {
			n = 1 // paced sends are recorded one by one, as they go
		}
		batch, drops, err := rt.nextBatch(n)
		if err != nil {
			rt.a.log.Error("read send queue", "workspace", rt.ws, "sessionId", rt.id, "err", err)
			if !rt.sleep(time.Second) {
				return
			}
			continue
		}
		if len(batch) == 0 && len(drops) == 0 {
			if !rt.wait() {
				return
			}
			continue
		}
		if err := rt.sendBatch(batch, drops); err != nil {
			if errors.Is(err, errStopped) {
				return
			}
			rt.a.log.Error("dispatch", "workspace", rt.ws, "sessionId", rt.id, "err", err)
			if !rt.sleep(time.Second) {
				return
			}
		}
	}
}

// enqueue hands a committed message to the dispatcher.
// It ends the reservation reserveQueued made.
func (rt *sessionRuntime) enqueue(m *storage.Message) {
	rt.queueMu.Lock()
	rt.memq = append(rt.memq, m)
	rt.queueMu.Unlock()
	rt.queueDepth.Add(1)
	rt.sends.Done()
	rt.kick()
}

// nextBatch takes the next messages to send. drops are queue entries to
// remove without sending (their message is gone or already handled).
func (rt *sessionRuntime) nextBatch(max int) (batch []*storage.Message, drops []string, err error) {
	if len(rt.recoverIDs) > 0 {
		ids := rt.recoverIDs[:min(max, len(rt.recoverIDs))]
		for _, id := range ids {
			m, err := rt.a.db.Message(rt.ws, id)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				drops = append(drops, id)
				continue
			case err != nil:
				return nil, nil, err // all of ids stay for the next try
			case m.Status != StatusQueued:
				drops = append(drops, id)
				continue
			}
			batch = append(batch, m)
		}
		rt.recoverIDs = rt.recoverIDs[len(ids):]
		if len(rt.recoverIDs) == 0 {
			rt.recoverIDs = nil
		}
		rt.track(batch)
		return batch, drops, nil
	}
	rt.queueMu.Lock()
	n := min(max, len(rt.memq))
	batch = append(batch, rt.memq[:n]...)
	clear(rt.memq[:n])
	rt.memq = rt.memq[n:]
	if len(rt.memq) == 0 {
		rt.memq = nil
	}
	rt.queueMu.Unlock()
	rt.track(batch)
	return batch, nil, nil
}

// track makes messages being sent findable by id.
func (rt *sessionRuntime) track(batch []*storage.Message) {
	rt.msgMu.Lock()
	for _, m := range batch {
		rt.live[m.ID] = m
	}
	rt.msgMu.Unlock()
}

// putBack returns messages the transport could not attempt to the front of
// the queue, for the next connection. Only the dispatcher (or a caller that
// stopped it) calls it.
func (rt *sessionRuntime) putBack(ms []*storage.Message) {
	rt.msgMu.Lock()
	for _, m := range ms {
		delete(rt.live, m.ID)
	}
	rt.msgMu.Unlock()
	if len(rt.recoverIDs) > 0 {
		// Taken from what an earlier run left, and more of it waits:
		// ahead of that, or the recovered backlog goes out of order
		// (nextBatch serves recoverIDs before memq).
		ids := make([]string, 0, len(ms)+len(rt.recoverIDs))
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		rt.recoverIDs = append(ids, rt.recoverIDs...)
		return
	}
	rt.queueMu.Lock()
	rt.memq = append(append([]*storage.Message(nil), ms...), rt.memq...)
	rt.queueMu.Unlock()
}

// notConnectedRetry is how soon a send refused as not connected by a
// session that still reports itself connected is tried again.
const notConnectedRetry = 2 * time.Second

// sendBatch sends messages and records their outcomes in one synced batch.
func (rt *sessionRuntime) sendBatch(batch []*storage.Message, drops []string) error {
	outcomes := make([]sendOutcome, 0, len(batch)+len(drops))
	for _, id := range drops {
		outcomes = append(outcomes, sendOutcome{id: id})
	}
	tr := rt.transportNow()
	for i, m := range batch {
		if tr == nil {
			rt.putBack(batch[i:])
			break
		}
		cfg := rt.pacing()
		if len(outcomes) > 0 && (cfg != nil || rt.earlyWaiting.Load()) {
			// What went out is recorded now, not at the batch's end, when
			// pacing was turned on during an unpaced batch (the rest would
			// take minutes), or when a receipt for one of them is held and
			// its transport waits for it to be stored (whatsmeow handles a
			// session's events one at a time, so all of them wait).
			if err := rt.recordOutcomes(outcomes); err != nil {
				rt.putBack(batch[i:])
				return err
			}
			outcomes = make([]sendOutcome, 0, len(batch)-i)
		}
		if cfg != nil && !rt.waitForPacing(cfg, m.To) {
			rt.putBack(batch[i:])
			break
		}
		res, err := tr.Send(rt.ctx, whatsapp.SendRequest{ID: m.WAID, To: m.To, Text: m.Text})
		if err != nil {
			var se *whatsapp.SendError
			if rt.ctx.Err() != nil || (errors.As(err, &se) && se.Code == CodeSessionNotConnected) {
				rt.putBack(batch[i:]) // keep them queued; a status change wakes us
				break
			}
			me := &storage.MessageError{Code: "send_failed", Message: err.Error()}
			if se != nil {
				me = &storage.MessageError{Code: se.Code, Message: se.Message}
			}
			outcomes = append(outcomes, sendOutcome{id: m.ID, m: m, err: me})
			continue
		}
		o := sendOutcome{id: m.ID, m: m, res: res}
		if cfg != nil {
			o.paced = true
			rt.pacer.sent(cfg, m.To, rt.a.now())
		}
		outcomes = append(outcomes, o)
	}
	if len(outcomes) == 0 {
		if rt.ctx.Err() != nil {
			return errStopped
		}
		if rt.connected() {
			// Refused as not connected by a session that says it is (a
			// query that timed out, a socket being replaced): no status
			// change may come to wake us, so try again after a while too.
			if !rt.sleep(notConnectedRetry) {
				return errStopped
			}
			return nil
		}
		if !rt.wait() { // nothing could be attempted: wait for a status change
			return errStopped
		}
		return nil
	}
	return rt.recordOutcomes(outcomes)
}

type msgUpdate struct {
	live *storage.Message // the shared record
	next storage.Message  // its new value, applied once committed
	// deferred: next is not in the batch; it becomes a dirty status
	// (deferredStatus), written later unless a newer one supersedes it.
	deferred bool
}

// requeue puts back in the queued set the messages of an outcome batch that
// was not committed: still queued as far as the disk knows, they keep the
// marks behind them.
func (rt *sessionRuntime) requeue(outcomes []sendOutcome) {
	rt.queueMu.Lock()
	defer rt.queueMu.Unlock()
	for _, o := range outcomes {
		rt.queued[o.id] = struct{}{}
		rt.queuedIDs.push(o.id)
	}
}

func (rt *sessionRuntime) recordOutcomes(outcomes []sendOutcome) error {
	now := rt.a.now()
	rt.msgMu.Lock()
	defer rt.msgMu.Unlock()
	b := rt.a.db.NewBatch()
	staged := false
	updates := make([]msgUpdate, 0, len(outcomes))
	awaitFrom := "" // the smallest id this batch sends, "" for none
	var quota map[string]int64
	wantSent := rt.a.events.Wants(rt.ws, EventMessageSent)
	wantFailed := rt.a.events.Wants(rt.ws, EventMessageFailed)
	// The batch's messages leave the queue in the same commit that moves
	// the marks past them.
	rt.queueMu.Lock()
	for _, o := range outcomes {
		delete(rt.queued, o.id)
	}
	marks := storage.SessionMarks{QueueFrom: rt.queueFromLocked()}
	rt.queueMu.Unlock()
	for _, o := range outcomes {
		_, legacy := rt.legacyQ[o.id]
		if legacy {
			b.StageLegacyDequeue(rt.ws, rt.id, o.id)
		}
		if o.m == nil || o.m.Status != StatusQueued {
			continue
		}
		if !legacy { // builds before marks counted a message when it was queued
			if quota == nil {
				quota = map[string]int64{}
			}
			quota[Period(time.Unix(o.m.CreatedAt, 0))]++
		}
		u := msgUpdate{live: o.m, next: *o.m}
		m := &u.next
		evType, wanted := EventMessageSent, wantSent
		if o.err != nil {
			evType, wanted = EventMessageFailed, wantFailed
		}
		var ev *Event
		if wanted {
			ev = &Event{ID: storage.NewID("evt_", now), Type: evType, Workspace: rt.ws, SessionID: rt.id, Timestamp: now.Unix(), MessageID: m.ID, To: m.To}
		}
		if o.err != nil {
			rt.a.countSendFailure(o.err.Code)
			m.Status = StatusFailed
			m.Error = o.err
			if ev != nil {
				ev.Error = o.err
			}
		} else {
			if o.res.WAMessageID != "" && o.res.WAMessageID != m.WAID {
				m.WAID = o.res.WAMessageID
				b.StageWAIndex(rt.ws, rt.id, m.WAID, m.ID)
			}
			m.Sent = true
			m.Status = StatusSent
			if awaitFrom == "" || m.ID < awaitFrom {
				awaitFrom = m.ID
			}
			if ev != nil {
				ev.WAMessageID = m.WAID
			}
		}
		m.UpdatedAt = now.Unix()
		upd := storage.StatusOf(m)
		if m.WAID != o.m.WAID {
			upd.WAID = m.WAID // the transport reported another id
		}
		// A sent status is held like an unsubscribed delivered one
		// (deferred.go): a later receipt usually follows within the window
		// and one write records both. Its event, if wanted, is staged now.
		// Losing the status is safe when the marks, in this commit, are
		// past the message: recover takes a queued record behind them for
		// sent (and stages no second event). A message sent while an older
		// id is still reserved (a Send that has not committed yet) is not
		// behind them; held and lost in a crash, it would read as queued,
		// be counted twice and sent again, so its status is written now.
		u.deferred = o.err == nil && upd.WAID == "" && m.ID < marks.QueueFrom
		if !u.deferred {
			b.StageMessageStatus(rt.ws, m.ID, upd)
		}
		if ev != nil {
			if err := rt.a.events.Stage(b, *ev); err != nil {
				b.Discard()
				rt.requeue(outcomes)
				return err
			}
			staged = true
		}
		updates = append(updates, u)
	}
	for period, n := range quota {
		b.StageQuotaUse(rt.ws, period, n)
	}
	marks.AwaitFrom = rt.awaitFromLocked(marks.QueueFrom, nil)
	if awaitFrom != "" && awaitFrom < marks.AwaitFrom {
		marks.AwaitFrom = awaitFrom
	}
	b.StageSessionMarks(rt.ws, rt.id, marks)
	for _, o := range outcomes {
		if o.paced { // from sendBatch, on the dispatcher, which owns the pacer
			b.StagePacedSends(rt.ws, rt.id, rt.pacer.recent)
			break
		}
	}
	if err := rt.a.db.CommitSync(b); err != nil {
		rt.requeue(outcomes)
		return err
	}
	rt.marks = marks
	for _, o := range outcomes {
		delete(rt.legacyQ, o.id)
	}
	if len(rt.early) > 0 {
		select {
		case rt.retryEarly <- struct{}{}:
		default:
		}
	}
	sent := make([]*storage.Message, 0, len(updates))
	for _, u := range updates {
		*u.live = u.next
		if u.live.Status == StatusFailed {
			delete(rt.live, u.live.ID)
		} else {
			sent = append(sent, u.live)
		}
		if u.deferred && rt.setDeferred(u.live, true, now) {
			rt.wakeForDeferred()
		}
	}
	// The batch is in the order the sends' commits returned, which is not
	// quite id order; in id order, awaitIDs takes them in O(1) (idHeap).
	slices.SortFunc(sent, func(x, y *storage.Message) int { return strings.Compare(x.ID, y.ID) })
	for _, m := range sent {
		rt.awaitReceipts(m)
	}
	for _, o := range outcomes {
		if o.m == nil {
			delete(rt.live, o.id)
		}
	}
	rt.queueDepth.Add(-int64(len(outcomes)))
	if staged {
		rt.a.events.Committed()
	}
	return nil
}

// awaitReceipts indexes a sent message, which is in live, by its WhatsApp
// id, so receipts find it without reading storage. The index is bounded:
// beyond liveMax the oldest sent messages fall back to storage look-ups.
// msgMu is held.
func (rt *sessionRuntime) awaitReceipts(m *storage.Message) {
	rt.byWA[m.WAID] = m
	rt.awaitIDs.push(m.ID)
	rt.awaitOrder = append(rt.awaitOrder, m)
	for len(rt.byWA) > liveMax {
		old := rt.awaitOrder[0]
		rt.awaitOrder = rt.awaitOrder[1:]
		if rt.byWA[old.WAID] == old {
			delete(rt.byWA, old.WAID)
			delete(rt.live, old.ID)
		}
	}
	if len(rt.awaitOrder) > 2*len(rt.byWA)+1024 {
		kept := rt.awaitOrder[:0]
		for _, x := range rt.awaitOrder {
			if rt.byWA[x.WAID] == x {
				kept = append(kept, x)
			}
		}
		clear(rt.awaitOrder[len(kept):])
		rt.awaitOrder = kept
	}
}

// awaitFromLocked is the marks' AwaitFrom: the smallest id of a sent message
// in memory that still owes receipts, bounded by queueFrom (queued messages
// will owe them too). pending holds updates not yet committed, which win
// over the in-memory records. msgMu is held.
func (rt *sessionRuntime) awaitFromLocked(queueFrom string, pending map[string]*msgUpdate) string {
	id, ok := rt.awaitIDs.min(func(id string) bool {
		m := rt.live[id]
		if m == nil {
			return false // read, failed, or beyond liveMax
		}
		status := m.Status
		if u := pending[id]; u != nil {
			status = u.next.Status
		}
		return status == StatusSent || status == StatusDelivered
	})
	if !ok || queueFrom < id {
		return queueFrom
	}
	return id
}

// earlyMax bounds how many early receipts a session holds; beyond it the
// oldest are dropped (their messages keep the status of their outcome).
const earlyMax = 10_000

// errEarlyDropped answers a held receipt dropped for room: unacknowledged,
// WhatsApp sends it again.
var errEarlyDropped = errors.New("too many receipts wait for their sends' outcomes")

// holdEarly keeps a receipt for a message whose send outcome is not
// recorded yet, with the call waiting for it (nil: none). msgMu is held.
func (rt *sessionRuntime) holdEarly(r whatsapp.Receipt, stored chan<- error) {
	if len(rt.early) >= earlyMax {
		drop := len(rt.early) - earlyMax/2
		for _, e := range rt.early[:drop] {
			if e.stored != nil {
				e.stored <- errEarlyDropped
			}
		}
		rt.early = append(rt.early[:0], rt.early[drop:]...)
	}
	rt.early = append(rt.early, earlyReceipt{r: r, stored: stored})
	if stored != nil {
		rt.earlyWaiting.Store(true)
	}
}

// takeEarly appends the held receipts to evs, to be tried again.
func (rt *sessionRuntime) takeEarly(evs []sessionEvent) []sessionEvent {
	rt.msgMu.Lock()
	early := rt.early
	rt.early = nil
	rt.earlyWaiting.Store(false)
	rt.msgMu.Unlock()
	for i := range early {
		evs = append(evs, sessionEvent{receipt: &early[i].r, stored: early[i].stored})
	}
	return evs
}

// liveMax bounds how many sent messages per session wait in memory for
// their receipts. Beyond it the oldest fall back to storage look-ups, and a
// restart no longer re-announces them to the transport.
const liveMax = 100_000

// eventLoop applies receipts and inbound messages in batches, and writes
// deferred statuses when they come due.
func (rt *sessionRuntime) eventLoop() {
	defer rt.wg.Done()
	pending := make([]sessionEvent, 0, 256)
	flush := time.NewTimer(time.Hour)
	defer flush.Stop()
	for {
		select {
		case <-rt.ctx.Done():
			if err := rt.flushDeferred(true); err != nil {
				rt.a.log.Error("record deferred statuses", "workspace", rt.ws, "sessionId", rt.id, "err", err)
			}
			return
		case <-flush.C:
			pending = pending[:0]
		case <-rt.retryEarly:
			pending = rt.takeEarly(pending[:0])
		case <-rt.deferWake:
			pending = pending[:0] // only to set the timer below
		case ev := <-rt.events:
			pending = append(pending[:0], ev)
		}
	drain:
		for len(pending) < cap(pending) {
			select {
			case ev := <-rt.events:
				pending = append(pending, ev)
			default:
				break drain
			}
		}
		if len(pending) > 0 {
			err := rt.applyEvents(pending)
			if err != nil {
				rt.a.log.Error("record session events", "workspace", rt.ws, "sessionId", rt.id, "err", err)
			}
			rt.tellStored(pending, err)
		}
		if err := rt.flushDeferred(false); err != nil {
			rt.a.log.Error("record deferred statuses", "workspace", rt.ws, "sessionId", rt.id, "err", err)
		}
		flush.Reset(rt.nextDeferredDue())
	}
}

// tellStored answers the events of a batch that wait to be stored
// (StoreInbound, StoreReceipt): err is the batch's. Receipts are committed
// without an fsync, so a batch with a waiting one syncs the WAL first.
func (rt *sessionRuntime) tellStored(evs []sessionEvent, err error) {
	synced := false
	for _, e := range evs {
		if e.stored == nil {
			continue
		}
		if err == nil && !synced {
			err = rt.a.db.SyncWAL()
			synced = true
		}
		e.stored <- err
	}
}

func (rt *sessionRuntime) applyEvents(evs []sessionEvent) error {
	now := rt.a.now()
	rt.msgMu.Lock()
	defer rt.msgMu.Unlock()
	b := rt.a.db.NewBatch()
	staged := 0
	inbound := false
	// Several receipts for one message may arrive in one batch: later ones
	// build on the pending update, not on the stored record.
	n := 0
	for _, e := range evs {
		if e.receipt != nil {
			n += len(e.receipt.WAMessageIDs)
		}
	}
	if cap(rt.updates) < n {
		rt.updates = make([]msgUpdate, 0, n) // room for all: no pointer into it moves
	}
	if rt.touched == nil {
		rt.touched = map[string]*msgUpdate{}
	}
	updates, touched := rt.updates[:0], rt.touched
	defer func() {
		clear(updates) // drop the records they point at (the rest is clear)
		clear(touched)
		if cap(updates) > updatesKeepMax {
			rt.updates, rt.touched = nil, nil // a burst's scratch is not kept
		}
	}()
	var order []*msgUpdate
	var held []heldPart // parts of receipts that beat their sends' outcomes
	for i := range evs {
		e := &evs[i]
		switch {
		case e.receipt != nil:
			n, early, err := rt.stageReceipt(b, e.receipt, e.stored, &updates, touched, &order, now)
			if err != nil {
				b.Discard()
				return err
			}
			if early != nil {
				held = append(held, heldPart{ev: i, ids: early})
			}
			staged += n
		case e.inbound != nil:
			if err := rt.stageInbound(b, e.inbound, now); err != nil {
				b.Discard()
				return err
			}
			staged++
			inbound = true
		}
	}
	marks := rt.marks
	if len(order) > 0 {
		marks.AwaitFrom = rt.awaitFromLocked(marks.QueueFrom, touched)
		if marks != rt.marks {
			b.StageSessionMarks(rt.ws, rt.id, marks)
		}
	}
	commit := rt.a.db.CommitNoSync
	if inbound {
		commit = rt.a.db.CommitSync // an inbound message exists nowhere else
	}
	if b.Empty() { // only deferred statuses
		b.Discard()
	} else if err := commit(b); err != nil {
		for _, u := range order {
			rt.awaitIDs.push(u.next.ID) // the marks may have dropped it
		}
		return err // held parts are not kept: their callers are told err
	}
	// Held only now that the rest of their receipts is committed; their
	// callers are told when the held part is applied, not with this batch.
	for _, h := range held {
		e := &evs[h.ev]
		rt.holdEarly(whatsapp.Receipt{WAMessageIDs: h.ids, Kind: e.receipt.Kind, Timestamp: e.receipt.Timestamp}, e.stored)
		e.stored = nil
	}
	rt.marks = marks
	for _, u := range order {
		if u.live == nil {
			// Updated from storage (no longer in memory): a status still
			// held for it is older than what was just written.
			rt.setDeferred(&u.next, false, now)
			continue
		}
		*u.live = u.next
		rt.setDeferred(u.live, u.deferred, now)
		if u.next.Status == StatusRead {
			delete(rt.byWA, u.next.WAID)
			delete(rt.live, u.next.ID)
		}
	}
	if staged > 0 {
		rt.a.events.Committed()
	}
	return nil
}

// updatesKeepMax bounds the update scratch a session keeps between
// batches (a msgUpdate is about 260 bytes).
const updatesKeepMax = 4096

// heldPart is the part of evs[ev]'s receipt whose sends' outcomes are not
// recorded yet.
type heldPart struct {
	ev  int
	ids []string
}

// stageReceipt stages what receipt r changes. A message's first update in
// the batch is appended to updates, which has room for one per id of r. It
// returns the ids of r whose sends' outcomes are not recorded yet, to be
// held once b is committed. stored is the StoreReceipt call waiting for r.
func (rt *sessionRuntime) stageReceipt(b *storage.Batch, r *whatsapp.Receipt, stored chan<- error, updates *[]msgUpdate, touched map[string]*msgUpdate, order *[]*msgUpdate, now time.Time) (staged int, early []string, err error) {
	status, evType := StatusDelivered, EventMessageDelivered
	if r.Kind == whatsapp.ReceiptRead {
		status, evType = StatusRead, EventMessageRead
	}
	wanted := rt.a.events.Wants(rt.ws, evType) // the same for every id of r
	for _, waID := range r.WAMessageIDs {
		var u *msgUpdate
		var known bool // u is in touched already
		if m := rt.byWA[waID]; m != nil {
			if u, known = touched[m.ID]; !known {
				*updates = append(*updates, msgUpdate{live: m, next: *m})
				u = &(*updates)[len(*updates)-1]
			}
		} else {
			m, err := rt.messageByWAID(waID)
			if errors.Is(err, storage.ErrNotFound) {
				continue // not one of ours (sent from the phone)
			}
			if err != nil {
				return staged, nil, err
			}
			rt.overlayDeferred(m) // its sent status may not be written yet
			if u, known = touched[m.ID]; !known {
				*updates = append(*updates, msgUpdate{next: *m})
				u = &(*updates)[len(*updates)-1]
			}
		}
		m := &u.next
		if m.Direction == "outbound" && m.Status == StatusQueued {
			// The network answered before the outcome of the send was
			// recorded: applying it now would be overwritten by "sent".
			early = append(early, waID)
			continue
		}
		// A send that timed out may have reached WhatsApp all the same: its
		// receipt proves it did, and lifts the failure.
		lift := m.Status == StatusFailed && m.Error != nil && m.Error.Code == codeSendTimeout
		if m.Direction != "outbound" || (!lift && statusRank(m.Status) >= statusRank(status)) { // failed ranks above all
			continue
		}
		m.Status = status
		m.Sent = true
		m.UpdatedAt = now.Unix()
		if lift {
			m.Error = nil
		}
		if !known {
			touched[m.ID] = u
			*order = append(*order, u)
		}
		// A delivered status no endpoint waits for is kept in memory for a
		// moment: the read receipt often follows and then one write records
		// both. API reads see it at once (overlayDeferred).
		// Not for a receipt the transport acknowledges once it is stored
		// (StoreReceipt): in memory only, a crash would lose it for good.
		u.deferred = status == StatusDelivered && u.live != nil && !wanted && !lift && stored == nil
		switch {
		case lift:
			b.StageMessageRecord(m) // a status update cannot clear the error
		case !u.deferred:
			b.StageMessageStatus(rt.ws, m.ID, storage.StatusOf(m))
		}
		if _, ok := rt.legacyAW[m.ID]; ok && status == StatusRead {
			b.StageLegacyAwaitDone(rt.ws, rt.id, m.ID)
			delete(rt.legacyAW, m.ID)
		}
		if !wanted {
			continue
		}
		ev := Event{ID: storage.NewID("evt_", now), Type: evType, Workspace: rt.ws, SessionID: rt.id,
			Timestamp: now.Unix(), MessageID: m.ID, To: m.To, WAMessageID: m.WAID}
		if err := rt.a.events.Stage(b, ev); err != nil {
			return staged, nil, err
		}
		staged++
	}
	return staged, early, nil
}

func (rt *sessionRuntime) stageInbound(b *storage.Batch, in *whatsapp.Inbound, now time.Time) error {
	if in.WAMessageID != "" {
		if _, err := rt.a.db.MessageIDByWAID(rt.ws, rt.id, in.WAMessageID); err == nil {
			return nil // a redelivery of a message we already logged
		}
	}
	// WhatsApp's time for the message, as createdAt, unless it is missing
	// or ahead of ours. A message that arrives late (a phone offline for a
	// while) gets an id from that time too, not from its arrival: ranges
	// of createdAt (since, until) are ranges of ids, and the log lists
	// messages in the order they were written.
	ts := in.Timestamp
	if ts.IsZero() || ts.Unix() <= 0 || ts.After(now) {
		ts = now
	}
	id := storage.NewID("msg_", now)
	if ts.Unix() < now.Unix() {
		// WhatsApp gives seconds: within one, ids follow arrival (a burst
		// after a reconnect stays in order), one nanosecond apart.
		first := ts.Unix() * int64(time.Second)
		n := min(max(first, rt.lateInboundAt+1), first+int64(time.Second)-1)
		rt.lateInboundAt = n
		id = storage.NewIDAt("msg_", time.Unix(0, n))
	}
	typ := in.Type
	if typ == "" {
		typ = "text"
	}
	m := &storage.Message{
		ID:           id,
		Workspace:    rt.ws,
		Direction:    "inbound",
		SessionID:    rt.id,
		To:           rt.id,
		From:         in.From,
		FromLID:      in.FromLID,
		Type:         typ,
		Text:         in.Text,
		Caption:      in.Caption,
		RefersToWAID: in.RefersTo,
		RefersTo:     rt.messageIDOfWAID(in.RefersTo),
		Status:       StatusReceived,
		WAID:         in.WAMessageID,
		Sent:         true,
		CreatedAt:    ts.Unix(),
		UpdatedAt:    now.Unix(),
	}
	if err := b.StageNewMessage(m); err != nil {
		return err
	}
	if m.WAID != "" {
		b.StageWAIndex(rt.ws, rt.id, m.WAID, m.ID) // for the redelivery check above
	}
	ev := Event{ID: storage.NewID("evt_", now), Type: EventMessageReceived, Workspace: rt.ws, SessionID: rt.id,
		Timestamp: now.Unix(), MessageID: m.ID, From: in.From, FromLID: in.FromLID, Text: in.Text,
		MsgType: typ, Caption: in.Caption, WAMessageID: in.WAMessageID, RefersToWAID: m.RefersToWAID, RefersTo: m.RefersTo}
	return rt.a.events.Stage(b, ev)
}

// failQueued marks every message still queued for the session failed. The
// session's goroutines are stopped.
func (rt *sessionRuntime) failQueued(code, reason string) error {
	return rt.failQueuedBefore(math.MaxInt64, &storage.MessageError{Code: code, Message: reason})
}

func (rt *sessionRuntime) wait() bool {
	select {
	case <-rt.wake:
		return true
	case <-rt.ctx.Done():
		return false
	}
}

func (rt *sessionRuntime) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-rt.wake:
		return true
	case <-rt.ctx.Done():
		return false
	}
}

// pacing is the session's pacing, nil for none.
func (rt *sessionRuntime) pacing() *storage.Pacing {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return pacingFor(&rt.rec)
}

// waitForPacing sleeps until the pacer lets a message to `to` go, showing
// the time in the session's nextSendAt. False if the session stops.
func (rt *sessionRuntime) waitForPacing(cfg *storage.Pacing, to string) bool {
	defer rt.nextSendAt.Store(0)
	for {
		at := rt.pacer.next(cfg, to)
		d := at.Sub(rt.a.now())
		if d <= 0 {
			return true
		}
		rt.nextSendAt.Store(at.Unix())
		if !rt.sleep(d) {
			return false
		}
	}
}

// expireQueued fails queued messages created before cutoff (Unix seconds):
// they waited for a disconnected session longer than the configured maximum.
func (rt *sessionRuntime) expireQueued(cutoff int64) error {
	return rt.failQueuedBefore(cutoff, &storage.MessageError{Code: CodeSessionNotConnected,
		Message: "the session stayed disconnected longer than the queue's maximum age (--max-queue-age), so the message was not sent"})
}

// failQueuedBefore fails, in queue order, the queued messages created before
// cutoff (Unix seconds) with me, and puts the first younger one and the rest
// back. Only the dispatcher, or a caller that stopped it, may call it.
func (rt *sessionRuntime) failQueuedBefore(cutoff int64, me *storage.MessageError) error {
	for {
		batch, drops, err := rt.nextBatch(dispatchBatch)
		if err != nil {
			return err
		}
		if len(batch) == 0 && len(drops) == 0 {
			return nil
		}
		outcomes := make([]sendOutcome, 0, len(batch)+len(drops))
		for _, id := range drops {
			outcomes = append(outcomes, sendOutcome{id: id})
		}
		var rest []*storage.Message
		for i, m := range batch {
			if m.CreatedAt >= cutoff {
				rest = batch[i:]
				break
			}
			outcomes = append(outcomes, sendOutcome{id: m.ID, m: m, err: me})
		}
		if len(rest) > 0 {
			rt.putBack(rest)
		}
		if len(outcomes) > 0 {
			if err := rt.recordOutcomes(outcomes); err != nil {
				return err
			}
		}
		if len(rest) > 0 {
			return nil
		}
	}
}
