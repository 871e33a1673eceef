package appliance

import (
	"time"

	"github.com/walytic/appliance/storage"
)

// deferWindow is how long a delivered status that no webhook endpoint
// subscribed to may wait in memory for the read receipt, so that one record
// write covers both. It is written when the window ends (or at stop).
const deferWindow = 500 * time.Millisecond

// deferredStatus is a status change applied in memory but not yet written.
type deferredStatus struct {
	m         *storage.Message // the live record (read under msgMu only)
	status    string           // what API reads show (read under deferMu)
	updatedAt int64
	due       time.Time
}

// setDeferred records (deferred) or clears the pending write of m's status
// after the event loop or the dispatcher changed it. msgMu is held. It
// reports whether m's is the only status held now: the event loop's timer
// is then not set for it (see wakeForDeferred).
func (rt *sessionRuntime) setDeferred(m *storage.Message, deferred bool, now time.Time) (first bool) {
	rt.deferMu.Lock()
	defer rt.deferMu.Unlock()
	if !deferred {
		delete(rt.deferred, m.ID) // a write that supersedes it is committed
		return false
	}
	if d, ok := rt.deferred[m.ID]; ok {
		// Updated in place (a delivered status replacing a held sent one):
		// flushDeferred, which compares entries by pointer, holds msgMu
		// throughout, so it never sees the change half made.
		*d = deferredStatus{m: m, status: m.Status, updatedAt: m.UpdatedAt, due: now.Add(deferWindow)}
		return false
	}
	first = len(rt.deferred) == 0
	rt.deferOrder = append(rt.deferOrder, m.ID)
	rt.deferred[m.ID] = &deferredStatus{m: m, status: m.Status, updatedAt: m.UpdatedAt, due: now.Add(deferWindow)}
	return first
}

// wakeForDeferred has the event loop set its timer for a status the
// dispatcher held while none was (the loop sets it itself after the
// statuses it holds, and a timer already set is due sooner).
func (rt *sessionRuntime) wakeForDeferred() {
	select {
	case rt.deferWake <- struct{}{}:
	default:
	}
}

// flushDeferred writes the deferred statuses that are due (all of them with
// force) in one unsynced batch, like the receipts they stand for.
func (rt *sessionRuntime) flushDeferred(force bool) error {
	now := rt.a.now()
	if !force && !rt.deferredDue(now) {
		return nil // the common case, without taking msgMu
	}
	rt.msgMu.Lock()
	defer rt.msgMu.Unlock()
	rt.deferMu.Lock()
	var due []*deferredStatus
	n := 0
	for _, id := range rt.deferOrder {
		d, ok := rt.deferred[id]
		if ok && !force && d.due.After(now) {
			break
		}
		n++
		if ok {
			due = append(due, d)
		}
	}
	rt.deferMu.Unlock()
	if n == 0 {
		return nil
	}
	b := rt.a.db.NewBatch()
	for _, d := range due {
		if d.m.Status != d.status {
			continue // moved on; that change wrote the record
		}
		b.StageMessageStatus(rt.ws, d.m.ID, storage.StatusOf(d.m))
	}
	if !b.Empty() {
		if err := rt.a.db.CommitNoSync(b); err != nil {
			return err
		}
	} else {
		b.Discard()
	}
	rt.deferMu.Lock()
	for _, d := range due {
		if rt.deferred[d.m.ID] == d {
			delete(rt.deferred, d.m.ID)
		}
	}
	clear(rt.deferOrder[:n])
	rt.deferOrder = rt.deferOrder[n:]
	if len(rt.deferOrder) == 0 {
		rt.deferOrder = nil
	}
	rt.deferMu.Unlock()
	return nil
}

// deferredDue reports whether anything deferred is due (or superseded and
// waiting to be dropped from deferOrder).
func (rt *sessionRuntime) deferredDue(now time.Time) bool {
	rt.deferMu.Lock()
	defer rt.deferMu.Unlock()
	if len(rt.deferOrder) == 0 {
		return false
	}
	d, ok := rt.deferred[rt.deferOrder[0]]
	return !ok || !d.due.After(now)
}

// nextDeferredDue is how long until the oldest deferred status is due; an
// hour when there is none.
func (rt *sessionRuntime) nextDeferredDue() time.Duration {
	rt.deferMu.Lock()
	defer rt.deferMu.Unlock()
	for _, id := range rt.deferOrder {
		if d, ok := rt.deferred[id]; ok {
			return max(time.Until(d.due), time.Millisecond)
		}
	}
	return time.Hour
}

// overlayDeferred gives m (read from storage) the status the session holds
// in memory for it, if that one is newer and not yet written.
func (rt *sessionRuntime) overlayDeferred(m *storage.Message) {
	rt.deferMu.Lock()
	d, ok := rt.deferred[m.ID]
	var status string
	var at int64
	if ok {
		status, at = d.status, d.updatedAt
	}
	rt.deferMu.Unlock()
	if ok && statusRank(status) > statusRank(m.Status) {
		m.Status, m.UpdatedAt, m.Sent = status, at, true
	}
}

// overlay applies overlayDeferred for m's session, if it runs here.
func (a *Appliance) overlay(m *storage.Message) {
	a.mu.RLock()
	rt := a.sessions[sessionKey{m.Workspace, m.SessionID}]
	a.mu.RUnlock()
	if rt != nil {
		rt.overlayDeferred(m)
	}
}
