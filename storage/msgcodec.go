package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Messages are the hot record (written, then read back merged with their
// status updates, for every send), so they have a
// compact binary codec instead of JSON: tag 'm' (or 'M' when zstd-compressed),
// a flags byte, two varint times, then the string fields, each as a uvarint
// length and its bytes, in the order of messageFields, and with flagHasRef
// (schema 4) the two of refFields after them. Records written with
// the JSON codec ('j'/'z') still decode.
const (
	tagMessage     = 'm'
	tagMessageZstd = 'M'
)

const (
	flagSent     = 1 << 0
	flagHasError = 1 << 1
	flagHasRef   = 1 << 2 // refFields follow messageFields
)

// messageFieldCount is how many string fields a binary record holds.
const messageFieldCount = 15

func messageFields(m *Message) [messageFieldCount]*string {
	var code, msg *string
	if m.Error != nil {
		code, msg = &m.Error.Code, &m.Error.Message
	} else {
		var a, b string
		code, msg = &a, &b
	}
	return [messageFieldCount]*string{&m.ID, &m.Workspace, &m.Direction, &m.SessionID, &m.To, &m.From, &m.FromLID,
		&m.Type, &m.Text, &m.Caption, &m.Status, &m.WAID, &m.Fingerprint, code, msg}
}

// refFields are the strings a record holds after messageFields when it
// refers to another message; few do, so the rest do not pay for them.
func refFields(m *Message) [2]*string { return [2]*string{&m.RefersToWAID, &m.RefersTo} }

func encodeMessage(m *Message) []byte { return appendMessage(nil, m) }

// appendMessage appends m's record to dst. Staging passes a buffer on its
// stack (Pebble copies what it is given), so a send allocates no record.
func appendMessage(dst []byte, m *Message) []byte {
	fields := messageFields(m)
	size := 1 + 1 + 2*binary.MaxVarintLen64
	for _, f := range fields {
		size += binary.MaxVarintLen32 + len(*f)
	}
	hasRef := m.RefersToWAID != "" || m.RefersTo != ""
	if hasRef {
		size += 2*binary.MaxVarintLen32 + len(m.RefersToWAID) + len(m.RefersTo)
	}
	start := len(dst)
	dst = slices.Grow(dst, size)
	dst = append(dst, tagMessage)
	var flags byte
	if m.Sent {
		flags |= flagSent
	}
	if m.Error != nil {
		flags |= flagHasError
	}
	if hasRef {
		flags |= flagHasRef
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, m.CreatedAt)
	dst = binary.AppendVarint(dst, m.UpdatedAt)
	for _, f := range fields {
		dst = binary.AppendUvarint(dst, uint64(len(*f)))
		dst = append(dst, *f...)
	}
	if hasRef {
		for _, f := range refFields(m) {
			dst = binary.AppendUvarint(dst, uint64(len(*f)))
			dst = append(dst, *f...)
		}
	}
	if len(dst)-start <= compressAbove {
		return dst
	}
	// A copy, so that dst (a caller's stack buffer) never reaches the
	// encoder, which the compiler cannot prove does not keep it.
	return append(dst[:start], compressLarge(slices.Clone(dst[start:]), tagMessageZstd)...)
}

var errShortMessage = errors.New("decode message: truncated record")

func decodeMessage(b []byte, m *Message) error {
	payload := b[1:]
	if b[0] == tagMessageZstd {
		_, dec := zstdCodec()
		raw, err := dec.DecodeAll(payload, nil)
		if err != nil {
			return fmt.Errorf("decompress message: %w", err)
		}
		payload = raw
	}
	if len(payload) < 1 {
		return errShortMessage
	}
	flags := payload[0]
	p := payload[1:]
	var n int
	if m.CreatedAt, n = binary.Varint(p); n <= 0 {
		return errShortMessage
	}
	p = p[n:]
	if m.UpdatedAt, n = binary.Varint(p); n <= 0 {
		return errShortMessage
	}
	p = p[n:]
	m.Sent = flags&flagSent != 0
	m.Error = nil
	if flags&flagHasError != 0 {
		m.Error = &MessageError{}
	}
	fields := messageFields(m)
	p, err := decodeStrings(p, fields[:])
	if err != nil {
		return err
	}
	refs := refFields(m)
	if flags&flagHasRef == 0 {
		for _, f := range refs {
			*f = ""
		}
		return nil
	}
	_, err = decodeStrings(p, refs[:])
	return err
}

// decodeStrings reads len(fields) length-prefixed strings off p into fields
// and returns what follows them.
func decodeStrings(p []byte, fields []*string) ([]byte, error) {
	for _, f := range fields {
		l, n := binary.Uvarint(p)
		if n <= 0 || uint64(len(p)-n) < l {
			return nil, errShortMessage
		}
		*f = string(p[n : n+int(l)])
		p = p[n+int(l):]
	}
	return p, nil
}

// Positions of the status fields in messageFields.
const (
	fieldStatus    = 10
	fieldWAID      = 11
	fieldErrorCode = 13
	fieldErrorText = 14
)

// applyStatusInPlace applies u to an uncompressed binary record by copying
// the fields u does not change as they are, instead of decoding the record
// into strings and encoding it again: every message record goes through
// this when Pebble flushes or reads it with its status updates. The result
// decodes to what decoding, u.apply and encodeMessage give. ok is false for
// a record in another format (compressed, JSON) or malformed; the caller
// then takes the long way, which reports the error.
func applyStatusInPlace(rec []byte, u *StatusUpdate) (out []byte, ok bool) {
	if len(rec) < 2 || rec[0] != tagMessage {
		return nil, false
	}
	flags := rec[1]
	_, n := binary.Varint(rec[2:])
	if n <= 0 {
		return nil, false
	}
	createdEnd := 2 + n
	if _, n = binary.Varint(rec[createdEnd:]); n <= 0 {
		return nil, false
	}
	var start [messageFieldCount + 1]int // field i is rec[start[i]:start[i+1]], length prefix included
	start[0] = createdEnd + n
	for i := range len(start) - 1 {
		l, n := binary.Uvarint(rec[start[i]:])
		if n <= 0 || uint64(len(rec)-start[i]-n) < l {
			return nil, false
		}
		start[i+1] = start[i] + n + int(l)
	}
	// Fields after messageFields (refFields) are copied as they are.
	tail := rec[start[len(start)-1]:]
	if flags&flagHasRef == 0 && len(tail) > 0 {
		return nil, false
	}
	if flags&flagHasRef != 0 {
		var refs [2]string
		if _, err := decodeStrings(tail, []*string{&refs[0], &refs[1]}); err != nil {
			return nil, false
		}
	}
	if u.Sent {
		flags |= flagSent
	}
	var replace [messageFieldCount]*string // the fields u sets
	replace[fieldStatus] = &u.Status
	if u.WAID != "" {
		replace[fieldWAID] = &u.WAID
	}
	if u.Error != nil {
		flags |= flagHasError
		replace[fieldErrorCode], replace[fieldErrorText] = &u.Error.Code, &u.Error.Message
	}
	size := len(rec) + binary.MaxVarintLen64
	for _, v := range replace {
		if v != nil {
			size += binary.MaxVarintLen32 + len(*v)
		}
	}
	out = make([]byte, 0, size)
	out = append(out, tagMessage, flags)
	out = append(out, rec[2:createdEnd]...)
	out = binary.AppendVarint(out, u.UpdatedAt)
	for i, v := range replace {
		if v == nil {
			out = append(out, rec[start[i]:start[i+1]]...)
			continue
		}
		out = binary.AppendUvarint(out, uint64(len(*v)))
		out = append(out, *v...)
	}
	out = append(out, tail...)
	return compressLarge(out, tagMessageZstd), true
}
