package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// A message's later statuses (sent, delivered, read, failed) are written as
// Pebble merge operands on its record rather than as rewrites of the whole
// record: an operand is the status fields alone (a dozen bytes where the
// record is a few hundred), and the bytes a message puts through the WAL
// are what the send path's p99 follows (appliance/DESIGN.md). Pebble applies
// the operands to the record when it is read, flushed or compacted (dbMerger).
// Message records are never deleted, and an operand is only written for a
// message whose record is already committed, so every operand has its record
// below it.

// StatusUpdate is a change of a message's status fields.
type StatusUpdate struct {
	Status    string
	Sent      bool          // sets Sent; false leaves it
	WAID      string        // "" leaves it
	Error     *MessageError // nil leaves it
	UpdatedAt int64
}

// tagStatusUpdate marks a merge operand on a message record.
const tagStatusUpdate = 'u'

const (
	updSent = 1 << iota
	updWAID
	updError
)

// StatusOf is the update that gives a record m's status, sent flag, error
// and time; callers add WAID when it changed.
func StatusOf(m *Message) *StatusUpdate {
	return &StatusUpdate{Status: m.Status, Sent: m.Sent, Error: m.Error, UpdatedAt: m.UpdatedAt}
}

// StageMessageStatus writes u onto the record of message id.
func (b *Batch) StageMessageStatus(ws, id string, u *StatusUpdate) {
	// Built on the stack: Pebble copies the key and the operand.
	var key [96]byte
	var op [64]byte
	_ = b.b.Merge(appendMsgKey(key[:0], ws, id), appendStatusUpdate(op[:0], u), nil)
}

func encodeStatusUpdate(u *StatusUpdate) []byte { return appendStatusUpdate(nil, u) }

func appendStatusUpdate(dst []byte, u *StatusUpdate) []byte {
	var flags byte
	if u.Sent {
		flags |= updSent
	}
	if u.WAID != "" {
		flags |= updWAID
	}
	if u.Error != nil {
		flags |= updError
	}
	dst = append(dst, tagStatusUpdate, flags)
	dst = binary.AppendVarint(dst, u.UpdatedAt)
	dst = appendString(dst, u.Status)
	if u.WAID != "" {
		dst = appendString(dst, u.WAID)
	}
	if u.Error != nil {
		dst = appendString(dst, u.Error.Code)
		dst = appendString(dst, u.Error.Message)
	}
	return dst
}

func decodeStatusUpdate(v []byte) (StatusUpdate, error) {
	var u StatusUpdate
	if len(v) < 2 || v[0] != tagStatusUpdate {
		return u, errors.New("decode status update: not a status update")
	}
	flags := v[1]
	r := recordReader{p: v[2:]}
	u.UpdatedAt = r.int()
	r.strings([]*string{&u.Status})
	u.Sent = flags&updSent != 0
	if flags&updWAID != 0 {
		r.strings([]*string{&u.WAID})
	}
	if flags&updError != 0 {
		e := &MessageError{}
		r.strings([]*string{&e.Code, &e.Message})
		u.Error = e
	}
	if !r.ok() || len(r.p) != 0 {
		return u, errShortRecord
	}
	return u, nil
}

// apply changes m as u says.
func (u *StatusUpdate) apply(m *Message) {
	m.Status, m.UpdatedAt = u.Status, u.UpdatedAt
	m.Sent = m.Sent || u.Sent
	if u.WAID != "" {
		m.WAID = u.WAID
	}
	if u.Error != nil {
		m.Error = u.Error
	}
}

// then is u followed by newer, as one update.
func (u StatusUpdate) then(newer StatusUpdate) StatusUpdate {
	out := newer
	out.Sent = u.Sent || newer.Sent
	if out.WAID == "" {
		out.WAID = u.WAID
	}
	if out.Error == nil {
		out.Error = u.Error
	}
	return out
}

// isMessageRecord reports whether v is a whole message record (any codec)
// rather than a status update.
func isMessageRecord(v []byte) bool {
	return len(v) > 0 && (v[0] == tagMessage || v[0] == tagMessageZstd || v[0] == tagJSON || v[0] == tagZstd)
}

// dbMerger is the database's merge operator: status updates on message
// records (msg/) and counters (quota/). Its name is the one earlier builds
// gave Pebble for the counters alone, which Pebble checks when it opens a
// directory.
var dbMerger = &pebble.Merger{
	Name: "walytic.counter.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		if bytes.HasPrefix(key, []byte("msg/")) {
			m := &messageMerger{}
			return m, m.MergeNewer(value)
		}
		c := &counterValue{}
		return c, c.MergeNewer(value)
	},
}

// messageMerger applies status updates to a message record. Pebble hands it
// the operands newest first (MergeOlder) and, when it reaches it, the record
// itself; a merge without the record (a flush or compaction above it)
// yields the updates combined into one.
type messageMerger struct {
	base []byte // the record, once seen (copied: Pebble reuses its buffers)
	upd  StatusUpdate
	has  bool // upd holds at least one update
}

func (m *messageMerger) MergeNewer(v []byte) error {
	if isMessageRecord(v) { // a record newer than updates replaces them
		m.base, m.has, m.upd = append([]byte(nil), v...), false, StatusUpdate{}
		return nil
	}
	u, err := decodeStatusUpdate(v)
	if err != nil {
		return err
	}
	if m.has {
		u = m.upd.then(u)
	}
	m.upd, m.has = u, true
	return nil
}

func (m *messageMerger) MergeOlder(v []byte) error {
	if m.base != nil {
		return nil // below a record: hidden by it
	}
	if isMessageRecord(v) {
		m.base = append([]byte(nil), v...)
		return nil
	}
	u, err := decodeStatusUpdate(v)
	if err != nil {
		return err
	}
	if m.has {
		u = u.then(m.upd)
	}
	m.upd, m.has = u, true
	return nil
}

func (m *messageMerger) Finish(bool) ([]byte, io.Closer, error) {
	if m.base == nil {
		return encodeStatusUpdate(&m.upd), nil, nil
	}
	if !m.has {
		return m.base, nil, nil
	}
	if out, ok := applyStatusInPlace(m.base, &m.upd); ok {
		return out, nil, nil
	}
	rec := &Message{}
	if err := decode(m.base, rec); err != nil {
		return nil, nil, fmt.Errorf("merge a status update into its message: %w", err)
	}
	m.upd.apply(rec)
	return encodeMessage(rec), nil, nil
}
