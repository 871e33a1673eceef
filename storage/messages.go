package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

func msgKey(ws, id string) []byte        { return appendMsgKey(nil, ws, id) }
func queueKey(ws, sid, id string) []byte { return []byte("q/" + ws + "/" + sid + "/" + id) }
func waKey(ws, sid, waID string) []byte  { return []byte("wa/" + ws + "/" + sid + "/" + waID) }
func idemKey(ws, key string) []byte      { return []byte("idem/" + ws + "/" + key) }
func quotaKey(ws, period string) []byte  { return []byte("quota/" + ws + "/" + period) }

// idemExpiryKey is idemx/<createdAt: 8 bytes, big-endian>/<ws>/<key>: the
// idempotency records in order of creation, so that the expired ones are
// found without reading the others.
func idemExpiryKey(ws, key string, createdAt int64) []byte {
	k := make([]byte, 0, len("idemx/")+9+len(ws)+1+len(key))
	k = append(k, "idemx/"...)
	k = binary.BigEndian.AppendUint64(k, uint64(createdAt))
	k = append(k, '/')
	k = append(k, ws...)
	k = append(k, '/')
	return append(k, key...)
}

// The append forms build the hot keys in a caller's (stack) buffer.
func appendMsgKey(dst []byte, ws, id string) []byte {
	dst = append(dst, "msg/"...)
	dst = append(dst, ws...)
	dst = append(dst, '/')
	return append(dst, id...)
}

func appendMsgIdxKey(dst []byte, ws, sid, id string) []byte {
	dst = append(dst, "ms/"...)
	dst = append(dst, ws...)
	dst = append(dst, '/')
	dst = append(dst, sid...)
	dst = append(dst, '/')
	return append(dst, id...)
}

// StageNewMessage adds a new message to b: its record and its session
// index entry. A queued message needs nothing more: its status says it is
// queued, and the session's marks (marks.go) keep it inside the part of the
// log a restart reads. A message that must be found by its WhatsApp id gets
// a StageWAIndex entry too, unless its id can be found from its WhatsApp id
// another way (see MessagesWithIDPrefix).
func (b *Batch) StageNewMessage(m *Message) error {
	b.StageMessageRecord(m)
	var key [128]byte // on the stack: Pebble copies keys into the batch
	b.Set(appendMsgIdxKey(key[:0], m.Workspace, m.SessionID, m.ID), nil)
	return nil
}

// StageMessageRecord writes a message's whole record: a new one, or a
// rewrite over any status updates merged into it, for the rare change an
// update cannot express (clearing an error).
func (b *Batch) StageMessageRecord(m *Message) {
	// Built on the stack: Pebble copies keys and values into the batch.
	var key [128]byte
	var rec [512]byte
	b.Set(appendMsgKey(key[:0], m.Workspace, m.ID), appendMessage(rec[:0], m))
}

// StageLegacyDequeue removes a queue entry written by a build before session
// marks (q/ keys are no longer written, only read and cleared).
func (b *Batch) StageLegacyDequeue(ws, sessionID, msgID string) {
	b.Delete(queueKey(ws, sessionID, msgID))
}

// StageIdempotency records which message an Idempotency-Key created.
func (b *Batch) StageIdempotency(ws string, rec *Idempotency) error {
	v, err := encode(rec)
	if err != nil {
		return err
	}
	b.Set(idemKey(ws, rec.Key), v)
	b.Set(idemExpiryKey(ws, rec.Key, rec.CreatedAt), nil)
	return nil
}

// StageForgetIdempotency removes the expiry entry of an Idempotency-Key
// created at createdAt and, if record, the key's record too (the caller
// has checked that the record is that one, not a newer one of the same key).
func (b *Batch) StageForgetIdempotency(ws, key string, createdAt int64, record bool) {
	b.Delete(idemExpiryKey(ws, key, createdAt))
	if record {
		b.Delete(idemKey(ws, key))
	}
}

// StageQuotaUse adds n to the workspace's counter for a UTC month ("2026-11").
func (b *Batch) StageQuotaUse(ws, period string, n int64) {
	_ = b.b.Merge(quotaKey(ws, period), encodeCounter(n), nil)
}

// Message reads one message of a workspace.
func (db *DB) Message(ws, id string) (*Message, error) {
	v, err := db.get(msgKey(ws, id))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("read message %s: %w", id, err)
	}
	m := &Message{}
	if err := decode(v, m); err != nil {
		return nil, fmt.Errorf("message %s: %w", id, err)
	}
	return m, nil
}

// MessagesWithIDPrefix calls fn for each message of the workspace whose id
// begins with idPrefix, newest first, until fn returns false.
func (db *DB) MessagesWithIDPrefix(ws, idPrefix string, fn func(*Message) bool) error {
	// Ids are longer than the prefix, so "after the prefix, before its end"
	// is exactly the ids that begin with it.
	return db.Messages(ws, MessageRange{After: idPrefix, Before: string(prefixEnd([]byte(idPrefix)))}, fn)
}

// MessageIDByWAID finds the message a session sent or received under a
// WhatsApp id.
func (db *DB) MessageIDByWAID(ws, sessionID, waID string) (string, error) {
	v, err := db.get(waKey(ws, sessionID, waID))
	if err != nil {
		return "", err
	}
	return string(v), nil
}

// Idempotency reads the record of an Idempotency-Key, or ErrNotFound.
func (db *DB) Idempotency(ws, key string) (*Idempotency, error) {
	v, err := db.get(idemKey(ws, key))
	if err != nil {
		return nil, err
	}
	rec := &Idempotency{}
	if err := decode(v, rec); err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	return rec, nil
}

// ExpiredIdempotency calls fn, oldest first, for each expiry entry of an
// idempotency record created before cutoff (Unix seconds), until fn returns
// false. fn may commit batches (the scan reads a snapshot).
func (db *DB) ExpiredIdempotency(cutoff int64, fn func(ws, key string, createdAt int64) bool) error {
	p := []byte("idemx/")
	upper := binary.BigEndian.AppendUint64(append([]byte(nil), p...), uint64(max(cutoff, 0)))
	var badKey []byte
	err := db.Scan(p, upper, false, func(k, _ []byte) bool {
		rest := k[len(p):]
		i := bytes.IndexByte(rest[min(9, len(rest)):], '/')
		if len(rest) < 9 || rest[8] != '/' || i < 0 {
			badKey = append([]byte(nil), k...)
			return false
		}
		ws := string(rest[9 : 9+i])
		return fn(ws, string(rest[9+i+1:]), int64(binary.BigEndian.Uint64(rest[:8])))
	})
	if err == nil && badKey != nil {
		err = fmt.Errorf("idempotency expiry key %q is malformed", badKey)
	}
	return err
}

// indexIdempotency gives every idempotency record an expiry entry, once:
// builds before those entries wrote records without them.
func (db *DB) indexIdempotency() error {
	marker := []byte("meta/idemx")
	if _, err := db.get(marker); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("read %s: %w", marker, err)
	}
	p := []byte("idem/")
	b := db.NewBatch()
	n := 0
	var decErr error
	err := db.Scan(p, prefixEnd(p), false, func(k, v []byte) bool {
		rec := &Idempotency{}
		if decErr = decode(v, rec); decErr != nil {
			return false
		}
		rest := string(k[len(p):])
		b.Set(idemExpiryKey(rest[:len(rest)-len(rec.Key)-1], rec.Key, rec.CreatedAt), nil)
		if n++; n%10_000 == 0 { // a day's records can be millions: bounded batches
			err := db.CommitNoSync(b)
			b = db.NewBatch()
			if err != nil {
				decErr = err
				return false
			}
		}
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		b.Discard()
		return fmt.Errorf("index idempotency records: %w", err)
	}
	b.Set(marker, []byte("1"))
	return db.CommitSync(b)
}

// QuotaUsed returns the workspace's counter for a UTC month.
func (db *DB) QuotaUsed(ws, period string) (int64, error) {
	v, err := db.get(quotaKey(ws, period))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read quota counter: %w", err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("quota counter has %d bytes", len(v))
	}
	return int64(leUint64(v)), nil
}

func leUint64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// Queue returns up to n message ids from the front of a session's legacy
// send queue (q/ keys of builds before session marks), oldest first,
// starting after the id after ("" = from the front).
func (db *DB) Queue(ws, sessionID, after string, n int) ([]string, error) {
	p := []byte("q/" + ws + "/" + sessionID + "/")
	lower := p
	if after != "" {
		lower = append(append([]byte(nil), p...), after...)
		lower = append(lower, 0)
	}
	var ids []string
	err := db.Scan(lower, prefixEnd(p), false, func(k, _ []byte) bool {
		ids = append(ids, string(k[len(p):]))
		return len(ids) < n
	})
	return ids, err
}

// MessageRange bounds a scan of the message log.
type MessageRange struct {
	SessionID string // "" = every session of the workspace
	After     string // exclusive lower bound on the id ("" = none)
	Before    string // exclusive upper bound on the id ("" = none)
}

// Messages calls fn for each message in the range, newest first, until fn
// returns false.
func (db *DB) Messages(ws string, r MessageRange, fn func(*Message) bool) error {
	var p []byte
	if r.SessionID != "" {
		p = []byte("ms/" + ws + "/" + r.SessionID + "/")
	} else {
		p = []byte("msg/" + ws + "/")
	}
	lower, upper := p, prefixEnd(p)
	if r.After != "" {
		lower = append(append(append([]byte(nil), p...), r.After...), 0)
	}
	if r.Before != "" {
		upper = append(append([]byte(nil), p...), r.Before...)
	}
	var inner error
	err := db.Scan(lower, upper, true, func(k, v []byte) bool {
		m := &Message{}
		if r.SessionID != "" {
			id := string(k[len(p):])
			got, err := db.Message(ws, id)
			if err != nil {
				inner = err
				return false
			}
			m = got
		} else if err := decode(v, m); err != nil {
			inner = fmt.Errorf("message %s: %w", k, err)
			return false
		}
		return fn(m)
	})
	if err == nil {
		err = inner
	}
	return err
}

// Period formats a UTC month as used in quota keys ("2026-11").
func Period(year int, month int) string {
	m := strconv.Itoa(month)
	if month < 10 {
		m = "0" + m
	}
	return strconv.Itoa(year) + "-" + m
}

func awaitKey(ws, sid, id string) []byte { return []byte("aw/" + ws + "/" + sid + "/" + id) }

// StageLegacyAwaitDone clears an aw/ mark of a build before session marks
// once its message is read.
func (b *Batch) StageLegacyAwaitDone(ws, sessionID, msgID string) {
	b.Delete(awaitKey(ws, sessionID, msgID))
}

// Awaiting lists, oldest first, up to n ids of a session's sent messages that
// a build before session marks recorded as owing receipts (aw/ keys).
func (db *DB) Awaiting(ws, sessionID string, n int) ([]string, error) {
	p := []byte("aw/" + ws + "/" + sessionID + "/")
	var ids []string
	err := db.Scan(p, prefixEnd(p), false, func(k, _ []byte) bool {
		ids = append(ids, string(k[len(p):]))
		return len(ids) < n
	})
	return ids, err
}

// StageWAIndex points a WhatsApp id at a message (when the network chose
// another id than the one indexed at queue time).
func (b *Batch) StageWAIndex(ws, sessionID, waID, msgID string) {
	b.Set(waKey(ws, sessionID, waID), []byte(msgID))
}
