package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/walytic/appliance/storage"
)

// IdempotencyTTL is how long an Idempotency-Key replays its first answer.
const IdempotencyTTL = 24 * time.Hour

// MaxIdempotencyKey is the longest Idempotency-Key accepted, in characters.
const MaxIdempotencyKey = 255

// SendInput is a validated-shape POST /v1/messages request.
type SendInput struct {
	SessionID      string
	To             string
	Text           string
	IdempotencyKey string
}

// ValidateSend checks the fields of a send in the contract's order.
func ValidateSend(in SendInput) error {
	if err := ValidateSessionID("sessionId", in.SessionID); err != nil {
		return err
	}
	if err := ValidateRecipient("to", in.To); err != nil {
		return err
	}
	if err := ValidateText(in.Text); err != nil {
		return err
	}
	if utf8.RuneCountInString(in.IdempotencyKey) > MaxIdempotencyKey || !utf8.ValidString(in.IdempotencyKey) {
		return Invalid("Idempotency-Key", "the Idempotency-Key header must be at most %d characters of UTF-8, for example a UUID or \"order-1042-confirmation\"", MaxIdempotencyKey)
	}
	return nil
}

func fingerprint(in SendInput) string {
	h := sha256.New()
	h.Write([]byte(in.SessionID))
	h.Write([]byte{0})
	h.Write([]byte(in.To))
	h.Write([]byte{0})
	h.Write([]byte(in.Text))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Send queues an outbound message. It returns after the message and its
// idempotency record are durable (the queued record counts against the
// quota until the dispatcher adds it to the counter). replay is
// true when an Idempotency-Key repeated an earlier request: the original
// message is returned and nothing new is stored.
func (a *Appliance) Send(ctx context.Context, workspace string, in SendInput) (msg *storage.Message, replay bool, err error) {
	if err := ValidateSend(in); err != nil {
		return nil, false, err
	}
	var fp string
	if in.IdempotencyKey != "" {
		fp = fingerprint(in)
		unlock := a.idem.lock(workspace + "\x00" + in.IdempotencyKey)
		defer unlock()
		rec, err := a.db.Idempotency(workspace, in.IdempotencyKey)
		switch {
		case err == nil && a.now().Sub(time.Unix(rec.CreatedAt, 0)) < IdempotencyTTL:
			if rec.Fingerprint != fp {
				return nil, false, newErr(CodeIdempotencyKeyReused, "Idempotency-Key",
					"this Idempotency-Key was used in the last 24 hours for a request with a different sessionId, to or text: use a new key for a new message")
			}
			m, err := a.db.Message(workspace, rec.MessageID)
			if err != nil {
				return nil, false, fmt.Errorf("read replayed message: %w", err)
			}
			a.overlay(m)
			return m, true, nil
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return nil, false, fmt.Errorf("read idempotency record: %w", err)
		}
	}

	rt, err := a.runtime(workspace, in.SessionID)
	if err != nil {
		return nil, false, err
	}
	if !rt.paired() {
		return nil, false, newErr(CodeSessionNotConnected, "sessionId", "session %s is %s and cannot send: it must be paired first (walytic sessions pair %s, or GET /v1/sessions/%s/qr)", in.SessionID, rt.status(), in.SessionID, in.SessionID)
	}
	// While connected, ask the network (through the cache). A paired session
	// that is reconnecting cannot ask: the send is queued and a recipient
	// without WhatsApp fails it at send time instead.
	if rt.connected() {
		on, err := rt.checkNumbers(ctx, []string{in.To})
		if err != nil {
			return nil, false, newErr(CodeSessionNotConnected, "sessionId", "could not ask WhatsApp whether %s is on WhatsApp: %v; retry once the session is connected", in.To, err)
		}
		if !on[0] {
			return nil, false, newErr(CodeRecipientNotOnWhatsApp, "to", "%s has no WhatsApp account: check the number, or check numbers in bulk first with POST /v1/numbers/check", in.To)
		}
	} else if on, known := rt.cachedNumber(in.To); known && !on {
		return nil, false, newErr(CodeRecipientNotOnWhatsApp, "to", "%s has no WhatsApp account: check the number, or check numbers in bulk first with POST /v1/numbers/check", in.To)
	}

	ws, ok := a.state.Workspace(workspace)
	if !ok {
		return nil, false, newErr(CodeNotFound, "", "the workspace of this API key no longer exists")
	}
	// New data is refused while the disk is down to its reserve (Pebble
	// cannot fail a write gracefully, so it must not run out).
	if err := a.db.CheckSpace(); err != nil {
		return nil, false, storageErr("check free space", err)
	}
	now := a.now()
	period, err := a.quota.reserve(workspace, ws.MonthlyQuota, now)
	if err != nil {
		return nil, false, err
	}
	id, err := rt.reserveQueued(now)
	if err != nil {
		a.quota.release(workspace, period)
		return nil, false, err
	}
	m := &storage.Message{
		ID:          id,
		Workspace:   workspace,
		Direction:   "outbound",
		SessionID:   in.SessionID,
		To:          in.To,
		From:        in.SessionID,
		Type:        "text",
		Text:        in.Text,
		Status:      StatusQueued,
		WAID:        outboundWAID(id),
		CreatedAt:   now.Unix(),
		UpdatedAt:   now.Unix(),
		Fingerprint: fp,
	}
	b := a.db.NewBatch()
	err = b.StageNewMessage(m)
	if err == nil && in.IdempotencyKey != "" {
		err = b.StageIdempotency(workspace, &storage.Idempotency{Key: in.IdempotencyKey, Fingerprint: fp, MessageID: m.ID, CreatedAt: now.Unix()})
	}
	if err != nil {
		b.Discard()
		rt.abandonQueued(id, false)
		a.quota.release(workspace, period)
		return nil, false, err
	}
	// The quota counter is added to when the message leaves the queue
	// (recordOutcomes); until then the queued record is what counts it.
	if err := a.db.CommitSync(b); err != nil {
		rt.abandonQueued(id, true)
		a.quota.release(workspace, period)
		return nil, false, storageErr("store message", err)
	}
	answer := *m // the dispatcher owns m from here on
	rt.enqueue(m)
	return &answer, false, nil
}

// Message returns one message of a workspace.
func (a *Appliance) Message(workspace, id string) (*storage.Message, error) {
	m, err := a.db.Message(workspace, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, newErr(CodeMessageNotFound, "id", "no message %s in this workspace: ids look like \"msg_…\" as returned by POST /v1/messages", QuoteShort(id))
	}
	if err == nil {
		a.overlay(m)
	}
	return m, err
}

// MessageFilter selects messages for listing. Zero values match everything.
type MessageFilter struct {
	SessionID string
	Direction string
	Status    string
	To        string
	From      string
	Since     int64  // Unix seconds, inclusive
	Until     int64  // Unix seconds, exclusive
	Before    string // cursor: only messages older than this id
}

// Messages calls fn for each matching message, newest first, until fn
// returns false.
func (a *Appliance) Messages(workspace string, f MessageFilter, fn func(*storage.Message) bool) error {
	return a.scanMessages(workspace, f, func(m *storage.Message, match bool) bool {
		return !match || fn(m)
	})
}

// ListScanBudget bounds how many messages one page of MessagePage reads.
const ListScanBudget = 50_000

// listScanBudget is ListScanBudget, a variable for tests.
var listScanBudget = ListScanBudget

// MessagePage returns up to limit matching messages, newest first, and the
// cursor of the next page ("" when there is none). A page reads at most
// ListScanBudget messages: when a filter matches few messages of a large
// log, the page holds what matched so far (perhaps nothing) and a cursor
// from where it stopped, rather than reading the whole log in one request.
func (a *Appliance) MessagePage(workspace string, f MessageFilter, limit int) ([]*storage.Message, string, error) {
	var page []*storage.Message
	var next, lastRead string
	read := 0
	err := a.scanMessages(workspace, f, func(m *storage.Message, match bool) bool {
		switch {
		case match && len(page) == limit:
			next = page[len(page)-1].ID // there is more
			return false
		case read == listScanBudget:
			next = lastRead // the next page starts with m
			return false
		}
		read++
		lastRead = m.ID
		if match {
			page = append(page, m)
		}
		return true
	})
	return page, next, err
}

// scanMessages calls fn, newest first, for each message in the filter's
// range, saying whether it matches the rest of the filter, until fn
// returns false.
func (a *Appliance) scanMessages(workspace string, f MessageFilter, fn func(m *storage.Message, match bool) bool) error {
	r := storage.MessageRange{SessionID: f.SessionID, Before: f.Before}
	// Seconds past what an id can hold (the year 2262) all bound the same,
	// above every id; time.Unix itself wraps for the largest int64 values.
	since, until := min(f.Since, maxIDSecond), min(f.Until, maxIDSecond)
	if since > 0 {
		r.After = lowerID(since)
	}
	if until > 0 {
		u := storage.IDBound("msg_", time.Unix(until, 0))
		if r.Before == "" || u < r.Before {
			r.Before = u
		}
	}
	return a.db.Messages(workspace, r, func(m *storage.Message) bool {
		if m.Status == StatusQueued || m.Status == StatusSent {
			a.overlay(m) // only these can have a newer status pending (deferred.go)
		}
		return fn(m, matches(f, m))
	})
}

func matches(f MessageFilter, m *storage.Message) bool {
	return (f.Direction == "" || m.Direction == f.Direction) &&
		(f.Status == "" || m.Status == f.Status) &&
		(f.To == "" || m.To == f.To) &&
		(f.From == "" || m.From == f.From) &&
		(f.Since <= 0 || m.CreatedAt >= f.Since) &&
		(f.Until <= 0 || m.CreatedAt < f.Until)
}

// maxIDSecond is the first whole second after the latest time an id can
// hold (UnixNano's range).
const maxIDSecond = math.MaxInt64/int64(time.Second) + 1

// lowerID is an exclusive lower id bound that admits every id made at or
// after the second since.
func lowerID(since int64) string {
	b := storage.IDBound("msg_", time.Unix(since, 0).Add(-time.Nanosecond))
	return b
}

// pruneIdempotency deletes idempotency records older than the TTL.
func (a *Appliance) pruneIdempotency() error {
	cutoff := a.now().Add(-IdempotencyTTL).Unix()
	var ferr error
	err := a.db.ExpiredIdempotency(cutoff, func(ws, key string, createdAt int64) bool {
		ferr = a.forgetIdempotency(ws, key, createdAt)
		return ferr == nil
	})
	if err == nil {
		err = ferr
	}
	return err
}

// forgetIdempotency removes the expiry entry of the key's record made at
// createdAt, and the record if it is still that one. It holds the key's
// lock, so a Send that has just stored a new record for the key (the old
// one having expired) keeps it.
func (a *Appliance) forgetIdempotency(ws, key string, createdAt int64) error {
	unlock := a.idem.lock(ws + "\x00" + key)
	defer unlock()
	rec, err := a.db.Idempotency(ws, key)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("read idempotency record: %w", err)
	}
	b := a.db.NewBatch()
	b.StageForgetIdempotency(ws, key, createdAt, err == nil && rec.CreatedAt == createdAt)
	return a.db.CommitNoSync(b)
}
