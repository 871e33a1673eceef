package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
)

// Event is something a workspace's webhooks may be told about. Fields are set
// per type as the contract's payload table says.
type Event struct {
	ID          string
	Type        string
	Workspace   string
	SessionID   string
	Timestamp   int64 // Unix seconds
	MessageID   string
	From        string
	FromLID     string
	To          string
	Text        string
	MsgType     string // "text", "image", … for message.received
	Caption     string
	WAMessageID string
	Error       *MessageError
	Reason      string
	// RefersToWAID and RefersTo name the message a received one quotes,
	// reacts to, edits, revokes or votes in (as storage.Message's do).
	RefersToWAID string
	RefersTo     string
}

// WebhookSecret is one signing secret of an endpoint. ExpiresAt is 0 for the
// current secret and the Unix time at which a rotated-out secret stops
// signing.
type WebhookSecret struct {
	Secret    string `json:"secret"`
	ExpiresAt int64  `json:"expiresAt,omitempty"`
}

// Webhook is an endpoint configuration (replicated state).
type Webhook struct {
	ID             string          `json:"id"`
	Workspace      string          `json:"workspace"`
	URL            string          `json:"url"`
	Events         []string        `json:"events"`
	Enabled        bool            `json:"enabled"`
	DisabledReason string          `json:"disabledReason,omitempty"`
	Secrets        []WebhookSecret `json:"secrets"`
	CreatedAt      int64           `json:"createdAt"`
	UpdatedAt      int64           `json:"updatedAt"`
	// FailingCountsFrom (Unix ms) is when the endpoint was last enabled
	// again or pointed at a new URL: failures before it do not count
	// toward disabling it, so a re-enabled endpoint gets a fresh window.
	FailingCountsFrom int64 `json:"failingCountsFrom,omitempty"`
}

// Delivery is one event owed to one endpoint.
//
// Until its first attempt is recorded a delivery lives only in the outbox
// block of the batch that staged it (StageFirstDelivery; Block names the
// block); the record of the attempt gives it a record of its own under dlv/,
// with its event, and takes it out of the block.
type Delivery struct {
	ID         string `json:"id"`
	EventID    string `json:"eventId"`
	EventType  string `json:"event"`
	SessionID  string `json:"sessionId"`
	Workspace  string `json:"workspace"`
	EndpointID string `json:"endpointId"`
	Event      Event  `json:"-"`        // what the body is rendered from
	Body       []byte `json:"-"`        // the event JSON as sent; kept under dlb/ only by builds before outbox blocks
	Block      string `json:"-"`        // the outbox block holding it until its first attempt is recorded; "" after
	State      string `json:"state"`    // "pending" | "delivered" | "failed"
	Attempts   int    `json:"attempts"` // attempts in the current run of the schedule
	Total      int    `json:"total"`    // attempts ever
	NextAt     int64  `json:"nextAt"`   // Unix nanoseconds of the next attempt, while pending
	LastStatus int    `json:"lastStatus,omitempty"`
	LastError  string `json:"lastError,omitempty"`
	CreatedAt  int64  `json:"createdAt"`
	UpdatedAt  int64  `json:"updatedAt"`
	// legacyBody: written by a build before outbox blocks, with its body
	// under dlb/ and only the event fields the log shows; it keeps that
	// format, since its event cannot be rendered again.
	legacyBody bool
}

// fromEvent copies the event fields the deliveries log shows.
func (d *Delivery) fromEvent() {
	d.EventID, d.EventType, d.SessionID, d.Workspace = d.Event.ID, d.Event.Type, d.Event.SessionID, d.Event.Workspace
}

// Attempt is one HTTP POST of a delivery, for the deliveries log.
type Attempt struct {
	ID          string `json:"id"`
	DeliveryID  string `json:"deliveryId"`
	EventID     string `json:"eventId"`
	EventType   string `json:"event"`
	EndpointID  string `json:"endpointId"`
	Number      int    `json:"attempt"`
	At          int64  `json:"attemptedAt"` // Unix milliseconds
	StatusCode  int    `json:"statusCode,omitempty"`
	LatencyMs   int64  `json:"latencyMs"`
	Error       string `json:"error,omitempty"`
	NextRetryAt int64  `json:"nextRetryAt,omitempty"` // Unix seconds; 0 = none
	State       string `json:"state"`
}

func deliveryKey(id string) []byte     { return []byte("dlv/" + id) }
func deliveryBodyKey(id string) []byte { return []byte("dlb/" + id) }
func blockKey(id string) []byte        { return []byte("evb/" + id) }

// StageFirstDelivery adds a new pending delivery, which has had no attempt,
// to the batch's outbox block: the deliveries one batch stages are written
// under one key (evb/<id of the first>) when the batch commits, instead of a
// record, a body and a due-index entry each. It sets d.Block and reports
// whether d is the batch's first (callers register one OnDurable callback
// per batch, for StagedDeliveries).
func (b *Batch) StageFirstDelivery(d *Delivery) (first bool) {
	d.fromEvent()
	first = len(b.outbox) == 0
	if first {
		d.Block = d.ID
	} else {
		d.Block = b.outbox[0].ID
	}
	b.outbox = append(b.outbox, d)
	return first
}

// StagedDeliveries are the deliveries StageFirstDelivery added, in order;
// after a successful commit they are in storage.
func (b *Batch) StagedDeliveries() []*Delivery { return b.outbox }

// StageBlockDone deletes an outbox block once each of its deliveries has a
// record of its own (the batch that writes the last of them).
func (b *Batch) StageBlockDone(blockID string) { b.Delete(blockKey(blockID)) }

// writeOutbox puts the outbox block into the batch; commits call it.
func (b *Batch) writeOutbox() {
	if len(b.outbox) == 0 {
		return
	}
	sc := blockScratches.Get().(*blockScratch)
	b.Set(blockKey(b.outbox[0].ID), sc.encode(b.outbox)) // Set copies the value
	if cap(sc.raw) < keepScratchBelow && cap(sc.z) < keepScratchBelow {
		blockScratches.Put(sc)
	}
}

// OutboxBlocks calls fn with each outbox block, oldest first (block ids sort
// by creation time), and its deliveries, until fn returns false. A block
// lists every delivery it was written with: those that have a record of
// their own since are still listed (see DeliveryReader.Recorded). from
// skips the blocks whose id sorts before it ("" for none).
func (db *DB) OutboxBlocks(from string, fn func(blockID string, ds []*Delivery) bool) error {
	p := []byte("evb/")
	var decErr error
	err := db.Scan(blockKey(from), prefixEnd(p), false, func(k, v []byte) bool {
		id := string(k[len(p):])
		var ds []*Delivery
		if ds, decErr = decodeBlock(v, id); decErr != nil {
			decErr = fmt.Errorf("outbox block %s: %w", id, decErr)
			return false
		}
		return fn(id, ds)
	})
	if err == nil {
		err = decErr
	}
	return err
}
func appendAttemptKey(k []byte, endpointID, id string) []byte {
	return append(append(append(append(k, "att/"...), endpointID...), '/'), id...)
}

func failingKey(endpointID string) []byte { return []byte("whf/" + endpointID) }

// appendDueKey orders pending deliveries by the time of their next attempt.
func appendDueKey(k []byte, nextAt int64, id string) []byte {
	k = append(k, "due/"...)
	k = binary.BigEndian.AppendUint64(k, uint64(nextAt))
	k = append(k, '/')
	return append(k, id...)
}

// StageDelivery writes a delivery's record and, while it is pending, its
// entry in the due index, replacing the entry under prevNextAt (0: none).
// Keys and the record are built on the stack when they fit: Pebble copies
// what a batch is given, and the run loop records every attempt.
func (b *Batch) StageDelivery(d *Delivery, prevNextAt int64) error {
	var rec [1024]byte
	var v []byte
	if d.legacyBody {
		v = encodeDelivery(d)
	} else {
		v = appendDeliveryEvent(rec[:0], d)
	}
	var key [64]byte
	b.Set(append(append(key[:0], "dlv/"...), d.ID...), v)
	if prevNextAt != 0 && (d.State != "pending" || prevNextAt != d.NextAt) {
		b.Delete(appendDueKey(key[:0], prevNextAt, d.ID))
	}
	if d.State == "pending" {
		b.Set(appendDueKey(key[:0], d.NextAt, d.ID), nil)
	}
	return nil
}

// StageAttempt logs one attempt.
func (b *Batch) StageAttempt(a *Attempt) error {
	var key [96]byte
	var rec [256]byte
	b.Set(appendAttemptKey(key[:0], a.EndpointID, a.ID), appendAttempt(rec[:0], a))
	return nil
}

// StageEndpointFailing records since when (Unix seconds) an endpoint has
// failed every attempt; 0 clears it.
func (b *Batch) StageEndpointFailing(endpointID string, since int64) {
	if since == 0 {
		b.Delete(failingKey(endpointID))
		return
	}
	b.Set(failingKey(endpointID), encodeCounter(since))
}

// EndpointFailingSince reads what StageEndpointFailing wrote (0 if nothing).
func (db *DB) EndpointFailingSince(endpointID string) (int64, error) {
	v, err := db.get(failingKey(endpointID))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil || len(v) != 8 {
		return 0, fmt.Errorf("read endpoint failure time: %v", err)
	}
	return int64(leUint64(v)), nil
}

// Delivery reads one delivery that has a record of its own (one attempt
// recorded, or written by a build before outbox blocks), or ErrNotFound.
func (db *DB) Delivery(id string) (*Delivery, error) {
	return readDelivery(id, db.get, db.get)
}

// readDelivery reads a delivery's record with getRecord and, for a record
// whose body is kept apart (builds before outbox blocks), the body with
// getBody.
func readDelivery(id string, getRecord, getBody func(key []byte) ([]byte, error)) (*Delivery, error) {
	v, err := getRecord(deliveryKey(id))
	if err != nil {
		return nil, err
	}
	d := &Delivery{}
	if err := decode(v, d); err != nil {
		return nil, fmt.Errorf("delivery %s: %w", id, err)
	}
	if d.legacyBody {
		if d.Body, err = getBody(deliveryBodyKey(id)); err != nil {
			return nil, fmt.Errorf("body of delivery %s: %w", id, err)
		}
	}
	return d, nil
}

// PendingDeliveryIDs calls fn with the id and due time (Unix nanoseconds) of
// every pending delivery, earliest due first, reading only the due index,
// until fn returns false. An id can come twice if a stale index entry
// survives; callers skip ids they already hold.
func (db *DB) PendingDeliveryIDs(fn func(id string, nextAt int64) bool) error {
	p := []byte("due/")
	return db.Scan(p, prefixEnd(p), false, func(k, _ []byte) bool {
		if len(k) < len(p)+9 {
			return true
		}
		return fn(string(k[len(p)+9:]), int64(binary.BigEndian.Uint64(k[len(p):len(p)+8])))
	})
}

// Attempts calls fn for an endpoint's attempts, newest first, starting below
// the attempt id before ("" = newest), until fn returns false.
func (db *DB) Attempts(endpointID, before string, fn func(*Attempt) bool) error {
	p := []byte("att/" + endpointID + "/")
	upper := prefixEnd(p)
	if before != "" {
		upper = append(append([]byte(nil), p...), before...)
	}
	var inner error
	err := db.Scan(p, upper, true, func(_, v []byte) bool {
		a := &Attempt{}
		if inner = decode(v, a); inner != nil {
			return false
		}
		return fn(a)
	})
	if err == nil {
		err = inner
	}
	return err
}

// PruneWebhookAttempts deletes every attempt whose id sorts below cutoff (a
// time-ordered id bound such as IDBound("att_", t)), for every endpoint,
// with one range deletion each: attempts sort by time within an endpoint,
// so the work grows with the number of endpoints, not with the log. It
// returns how many endpoints have a log.
func (db *DB) PruneWebhookAttempts(cutoff string) (int, error) {
	p := []byte("att/")
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, fmt.Errorf("open iterator: %w", err)
	}
	b := db.NewBatch()
	n := 0
	for ok := it.First(); ok; {
		rest := it.Key()[len(p):]
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			ok = it.Next() // not an attempt key
			continue
		}
		lo := append([]byte(nil), it.Key()[:len(p)+i+1]...) // att/<endpoint>/
		hi := append(append([]byte(nil), lo...), cutoff...)
		_ = b.b.DeleteRange(lo, hi, nil)
		n++
		ok = it.SeekGE(prefixEnd(lo))
	}
	if err := it.Close(); err != nil {
		b.Discard()
		return 0, fmt.Errorf("scan webhook attempts: %w", err)
	}
	if n == 0 {
		b.Discard()
		return 0, nil
	}
	return n, db.CommitNoSync(b)
}

// PruneWebhookDeliveries deletes finished deliveries whose ids are in
// [from, cutoff) (from "" is the first), at most limit of them, so a caller
// can do other work between calls. It returns how many it deleted and the
// id to go on from, "" when none is left below cutoff. Pending deliveries
// are kept whatever their age.
func (db *DB) PruneWebhookDeliveries(from, cutoff string, limit int) (n int, next string, err error) {
	p := []byte("dlv/")
	lower := append(append([]byte(nil), p...), from...)
	upper := append(append([]byte(nil), p...), cutoff...)
	b := db.NewBatch()
	var decErr error
	err = db.Scan(lower, upper, false, func(k, v []byte) bool {
		if n == limit {
			next = string(k[len(p):])
			return false
		}
		d := &Delivery{}
		if decErr = decode(v, d); decErr != nil {
			return false
		}
		if d.State != "pending" {
			b.Delete(append([]byte(nil), k...))
			b.Delete(deliveryBodyKey(d.ID))
			n++
		}
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil || n == 0 {
		b.Discard()
		if err != nil {
			return 0, "", fmt.Errorf("prune webhook deliveries: %w", err)
		}
		return 0, next, nil
	}
	return n, next, db.CommitNoSync(b)
}

// Webhooks of the LocalState (replicated state).

// Webhooks returns a workspace's endpoints ("" = every workspace) in id
// order. For one workspace it returns a shared slice: callers must not
// modify it.
func (s *LocalState) Webhooks(workspace string) []Webhook {
	snap := s.snap.Load()
	if workspace != "" {
		return snap.webhooksOf[workspace]
	}
	out := make([]Webhook, 0, len(snap.webhooks))
	for _, w := range snap.webhooks {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Webhook returns one endpoint.
func (s *LocalState) Webhook(id string) (Webhook, bool) {
	w, ok := s.snap.Load().webhooks[id]
	return w, ok
}

// PutWebhook inserts or replaces an endpoint; every reader sees it on
// return. To change an existing one use UpdateWebhook.
func (s *LocalState) PutWebhook(w Webhook) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putWebhookLocked(w)
}

// UpdateWebhook applies change to the endpoint with that id and stores it
// under the state's lock, so concurrent changes (a deletion, a secret
// rotation, the deliverer disabling it) never undo one another; ErrNotFound
// if it is gone. An error from change is returned as it is, and nothing is
// stored.
func (s *LocalState) UpdateWebhook(id string, change func(*Webhook) error) (Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.snap.Load().webhooks[id]
	if !ok {
		return w, ErrNotFound
	}
	w.Events = append([]string(nil), w.Events...) // the snapshot's are shared
	w.Secrets = append([]WebhookSecret(nil), w.Secrets...)
	if err := change(&w); err != nil {
		return w, err
	}
	w.ID = id
	return w, s.putWebhookLocked(w)
}

func (s *LocalState) putWebhookLocked(w Webhook) error {
	v, err := encode(w)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	b.Set([]byte("wh/"+w.ID), v)
	if err := s.db.CommitSync(b); err != nil {
		return fmt.Errorf("store webhook %s: %w", w.ID, err)
	}
	n := s.snap.Load().clone()
	n.webhooks[w.ID] = w
	n.indexWebhooks()
	s.snap.Store(n)
	return nil
}

// DeleteWebhook removes an endpoint; ErrNotFound if missing.
func (s *LocalState) DeleteWebhook(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snap.Load().webhooks[id]; !ok {
		return ErrNotFound
	}
	b := s.db.NewBatch()
	b.Delete([]byte("wh/" + id))
	b.StageEndpointFailing(id, 0) // since when it failed: nothing to keep
	if err := s.db.CommitSync(b); err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	n := s.snap.Load().clone()
	delete(n.webhooks, id)
	n.indexWebhooks()
	s.snap.Store(n)
	return nil
}
