package storage

import (
	"encoding/binary"
	"errors"
)

// Webhook deliveries and attempts are written for every event (a delivery
// when the event is staged and again after each attempt, an attempt record
// per POST), so like messages they have a compact binary codec instead of
// JSON: a tag byte ('d' or 'a'), the integer fields as varints, then the
// string fields, each as a uvarint length and its bytes, in the order of
// deliveryFields / attemptFields. Records written with the JSON codec
// ('j'/'z') still decode. The event body is not part of the record (it lives
// under dlb/), so these stay small and are never compressed.
const (
	tagDelivery = 'd'
	tagAttempt  = 'a'
)

var errShortRecord = errors.New("decode record: truncated")

func deliveryFields(d *Delivery) [8]*string {
	return [8]*string{&d.ID, &d.EventID, &d.EventType, &d.SessionID, &d.Workspace, &d.EndpointID, &d.State, &d.LastError}
}

func attemptFields(a *Attempt) [7]*string {
	return [7]*string{&a.ID, &a.DeliveryID, &a.EventID, &a.EventType, &a.EndpointID, &a.Error, &a.State}
}

func appendStrings(out []byte, fields []*string) []byte {
	for _, f := range fields {
		out = binary.AppendUvarint(out, uint64(len(*f)))
		out = append(out, *f...)
	}
	return out
}

func stringsSize(fields []*string) int {
	n := 0
	for _, f := range fields {
		n += binary.MaxVarintLen32 + len(*f)
	}
	return n
}

func encodeDelivery(d *Delivery) []byte {
	fields := deliveryFields(d)
	out := make([]byte, 0, 1+6*binary.MaxVarintLen64+stringsSize(fields[:]))
	out = append(out, tagDelivery)
	for _, v := range [...]int64{int64(d.Attempts), int64(d.Total), d.NextAt, int64(d.LastStatus), d.CreatedAt, d.UpdatedAt} {
		out = binary.AppendVarint(out, v)
	}
	return appendStrings(out, fields[:])
}

func encodeAttempt(a *Attempt) []byte {
	fields := attemptFields(a)
	out := make([]byte, 0, 1+5*binary.MaxVarintLen64+stringsSize(fields[:]))
	out = append(out, tagAttempt)
	for _, v := range [...]int64{int64(a.Number), a.At, int64(a.StatusCode), a.LatencyMs, a.NextRetryAt} {
		out = binary.AppendVarint(out, v)
	}
	return appendStrings(out, fields[:])
}

// recordReader reads the varints and strings of a binary record; after the
// first short read every read returns zero and ok reports false.
type recordReader struct {
	p   []byte
	bad bool
}

func (r *recordReader) int() int64 {
	if r.bad {
		return 0
	}
	v, n := binary.Varint(r.p)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *recordReader) strings(fields []*string) {
	for _, f := range fields {
		if r.bad {
			*f = ""
			continue
		}
		l, n := binary.Uvarint(r.p)
		if n <= 0 || uint64(len(r.p)-n) < l {
			r.bad = true
			*f = ""
			continue
		}
		*f = string(r.p[n : n+int(l)])
		r.p = r.p[n+int(l):]
	}
}

func (r *recordReader) ok() bool { return !r.bad }

func decodeDelivery(payload []byte, d *Delivery) error {
	r := recordReader{p: payload}
	d.Attempts, d.Total = int(r.int()), int(r.int())
	d.NextAt = r.int()
	d.LastStatus = int(r.int())
	d.CreatedAt, d.UpdatedAt = r.int(), r.int()
	fields := deliveryFields(d)
	r.strings(fields[:])
	d.Body = nil
	if !r.ok() {
		return errShortRecord
	}
	return nil
}

func decodeAttempt(payload []byte, a *Attempt) error {
	r := recordReader{p: payload}
	a.Number = int(r.int())
	a.At = r.int()
	a.StatusCode = int(r.int())
	a.LatencyMs, a.NextRetryAt = r.int(), r.int()
	fields := attemptFields(a)
	r.strings(fields[:])
	if !r.ok() {
		return errShortRecord
	}
	return nil
}
