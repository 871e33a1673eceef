package appliance

import (
	"errors"
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

// sendOutcome is what the transport said about one queued message.
type sendOutcome struct {
	id  string
	res whatsapp.SendResult
	err *storage.MessageError // nil: sent
}

// dispatchLoop drains the session's queue in order while it is connected.
func (rt *sessionRuntime) dispatchLoop() {
	defer rt.wg.Done()
	for {
		if rt.ctx.Err() != nil {
			return
		}
		if !rt.connected() {
			if !rt.wait() {
				return
			}
			continue
		}
		ids, err := rt.a.db.Queue(rt.ws, rt.id, "", dispatchBatch)
		if err != nil {
			rt.a.log.Error("read send queue", "workspace", rt.ws, "sessionId", rt.id, "err", err)
			if !rt.sleep(time.Second) {
				return
			}
			continue
		}
		if len(ids) == 0 {
			if !rt.wait() {
				return
			}
			continue
		}
		if err := rt.sendBatch(ids); err != nil {
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

// sendBatch sends queued messages and records their outcomes in one synced
// batch. A message the transport could not attempt (session gone) stays
// queued for the next connection.
func (rt *sessionRuntime) sendBatch(ids []string) error {
	tr := rt.transportNow()
	if tr == nil {
		return nil
	}
	outcomes := make([]sendOutcome, 0, len(ids))
	for _, id := range ids {
		m, err := rt.a.db.Message(rt.ws, id)
		if errors.Is(err, storage.ErrNotFound) {
			outcomes = append(outcomes, sendOutcome{id: id}) // dangling queue entry: drop it
			continue
		}
		if err != nil {
			return err
		}
		if m.Status != StatusQueued {
			outcomes = append(outcomes, sendOutcome{id: id})
			continue
		}
		res, err := tr.Send(rt.ctx, whatsapp.SendRequest{ID: m.WAID, To: m.To, Text: m.Text})
		if err != nil {
			if rt.ctx.Err() != nil {
				break
			}
			var se *whatsapp.SendError
			if errors.As(err, &se) && se.Code == CodeSessionNotConnected {
				break // keep it queued; the next status change wakes us
			}
			me := &storage.MessageError{Code: "send_failed", Message: err.Error()}
			if se != nil {
				me = &storage.MessageError{Code: se.Code, Message: se.Message}
			}
			outcomes = append(outcomes, sendOutcome{id: id, err: me})
			continue
		}
		outcomes = append(outcomes, sendOutcome{id: id, res: res})
	}
	if len(outcomes) == 0 {
		if rt.ctx.Err() != nil {
			return errStopped
		}
		// Nothing could be attempted: wait for a status change.
		if !rt.wait() {
			return errStopped
		}
		return nil
	}
	return rt.recordOutcomes(outcomes)
}

func (rt *sessionRuntime) recordOutcomes(outcomes []sendOutcome) error {
	now := rt.a.now()
	rt.msgMu.Lock()
	defer rt.msgMu.Unlock()
	b := rt.a.db.NewBatch()
	staged := false
	for _, o := range outcomes {
		b.StageDequeue(rt.ws, rt.id, o.id)
		m, err := rt.a.db.Message(rt.ws, o.id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			b.Discard()
			return err
		}
		if m.Status != StatusQueued {
			continue // already recorded (a receipt overtook us, or a replayed queue entry)
		}
		ev := &Event{ID: storage.NewID("evt_", now), Workspace: rt.ws, SessionID: rt.id, Timestamp: now.Unix(), MessageID: m.ID, To: m.To}
		if o.err != nil {
			m.Status = StatusFailed
			m.Error = o.err
			ev.Type = EventMessageFailed
			ev.Error = o.err
		} else {
			if o.res.WAMessageID != "" {
				m.WAID = o.res.WAMessageID
			}
			m.Sent = true
			if m.Status == StatusQueued {
				m.Status = StatusSent
			}
			ev.Type = EventMessageSent
			ev.WAMessageID = m.WAID
		}
		m.UpdatedAt = now.Unix()
		if err := b.StageMessageUpdate(m); err != nil {
			b.Discard()
			return err
		}
		if err := rt.a.events.Stage(b, ev); err != nil {
			b.Discard()
			return err
		}
		staged = true
	}
	if err := rt.a.db.CommitSync(b); err != nil {
		return err
	}
	rt.queueDepth.Add(-int64(len(outcomes)))
	if staged {
		rt.a.events.Committed()
	}
	return nil
}

// eventLoop applies receipts and inbound messages in batches.
func (rt *sessionRuntime) eventLoop() {
	defer rt.wg.Done()
	pending := make([]sessionEvent, 0, 256)
	for {
		select {
		case <-rt.ctx.Done():
			return
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
		if err := rt.applyEvents(pending); err != nil {
			rt.a.log.Error("record session events", "workspace", rt.ws, "sessionId", rt.id, "err", err)
		}
	}
}

func (rt *sessionRuntime) applyEvents(evs []sessionEvent) error {
	now := rt.a.now()
	rt.msgMu.Lock()
	defer rt.msgMu.Unlock()
	b := rt.a.db.NewBatch()
	staged := 0
	inbound := false
	// Several receipts for one message may arrive in one batch; keep the
	// record we already updated instead of re-reading a stale one.
	touched := map[string]*storage.Message{}
	for _, e := range evs {
		switch {
		case e.receipt != nil:
			n, err := rt.stageReceipt(b, e.receipt, touched, now)
			if err != nil {
				b.Discard()
				return err
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
	if b.Empty() {
		b.Discard()
		return nil
	}
	commit := rt.a.db.CommitNoSync
	if inbound {
		commit = rt.a.db.CommitSync // an inbound message exists nowhere else
	}
	if err := commit(b); err != nil {
		return err
	}
	if staged > 0 {
		rt.a.events.Committed()
	}
	return nil
}

func (rt *sessionRuntime) stageReceipt(b *storage.Batch, r *whatsapp.Receipt, touched map[string]*storage.Message, now time.Time) (int, error) {
	status, evType := StatusDelivered, EventMessageDelivered
	if r.Kind == whatsapp.ReceiptRead {
		status, evType = StatusRead, EventMessageRead
	}
	staged := 0
	for _, waID := range r.WAMessageIDs {
		id, err := rt.a.db.MessageIDByWAID(rt.ws, rt.id, waID)
		if errors.Is(err, storage.ErrNotFound) {
			continue // not one of ours (sent from the phone)
		}
		if err != nil {
			return staged, err
		}
		m := touched[id]
		if m == nil {
			if m, err = rt.a.db.Message(rt.ws, id); err != nil {
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				return staged, err
			}
		}
		if m.Direction != "outbound" || m.Status == StatusFailed || statusRank(m.Status) >= statusRank(status) {
			continue
		}
		m.Status = status
		m.Sent = true
		m.UpdatedAt = now.Unix()
		touched[id] = m
		if err := b.StageMessageUpdate(m); err != nil {
			return staged, err
		}
		ev := &Event{ID: storage.NewID("evt_", now), Type: evType, Workspace: rt.ws, SessionID: rt.id,
			Timestamp: now.Unix(), MessageID: m.ID, To: m.To, WAMessageID: m.WAID}
		if err := rt.a.events.Stage(b, ev); err != nil {
			return staged, err
		}
		staged++
	}
	return staged, nil
}

func (rt *sessionRuntime) stageInbound(b *storage.Batch, in *whatsapp.Inbound, now time.Time) error {
	if in.WAMessageID != "" {
		if _, err := rt.a.db.MessageIDByWAID(rt.ws, rt.id, in.WAMessageID); err == nil {
			return nil // a redelivery of a message we already logged
		}
	}
	ts := in.Timestamp
	if ts.IsZero() {
		ts = now
	}
	typ := in.Type
	if typ == "" {
		typ = "text"
	}
	m := &storage.Message{
		ID:        storage.NewID("msg_", now),
		Workspace: rt.ws,
		Direction: "inbound",
		SessionID: rt.id,
		To:        rt.id,
		From:      in.From,
		FromLID:   in.FromLID,
		Type:      typ,
		Text:      in.Text,
		Caption:   in.Caption,
		Status:    StatusReceived,
		WAID:      in.WAMessageID,
		Sent:      true,
		CreatedAt: ts.Unix(),
		UpdatedAt: now.Unix(),
	}
	if err := b.StageNewMessage(m, false); err != nil {
		return err
	}
	ev := &Event{ID: storage.NewID("evt_", now), Type: EventMessageReceived, Workspace: rt.ws, SessionID: rt.id,
		Timestamp: now.Unix(), MessageID: m.ID, From: in.From, FromLID: in.FromLID, Text: in.Text,
		MsgType: typ, Caption: in.Caption, WAMessageID: in.WAMessageID}
	return rt.a.events.Stage(b, ev)
}

// failQueued marks every message still queued for the session failed.
func (rt *sessionRuntime) failQueued(code, reason string) error {
	for {
		ids, err := rt.a.db.Queue(rt.ws, rt.id, "", 256)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		outcomes := make([]sendOutcome, len(ids))
		for i, id := range ids {
			outcomes[i] = sendOutcome{id: id, err: &storage.MessageError{Code: code, Message: reason}}
		}
		if err := rt.recordOutcomes(outcomes); err != nil {
			return err
		}
	}
}
