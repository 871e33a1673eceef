package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
)

// Webhook deliveries and attempts are written for every event, so like
// messages they have a compact binary codec instead of JSON: a tag byte, the
// integer fields as varints, then the string fields, each as a uvarint length
// and its bytes. Records written with the JSON codec ('j'/'z') still decode.
//
//   - 'e' a delivery with its event (deliveryStateFields, then appendEvent);
//     the body is rendered from the event for each attempt.
//   - 'd' a delivery of builds before outbox blocks: the event fields the
//     deliveries log shows (deliveryFields), the body under dlb/.
//   - 'b' an outbox block: the first deliveries staged by one batch; 'S' the
//     same compressed with S2 (blocks repeat ids' time prefixes, the
//     workspace, session, endpoint and event type in every entry). Builds
//     before 'S' compressed blocks with zstd ('B'), which still decode.
//     S2 is written because a block is compressed on the send path, once
//     per dispatched batch and receipt batch: on a block of 36 events zstd
//     (SpeedFastest) took 43 µs and S2 11 µs, for 34 and 56 bytes an event
//     (198 uncompressed).
//   - 'a' an attempt (attemptFields).
const (
	tagDelivery      = 'd'
	tagDeliveryEvent = 'e'
	tagBlock         = 'b'
	tagBlockZstd     = 'B' // a 'b' block zstd-compressed after its tag (read only)
	tagBlockS2       = 'S' // a 'b' block over compressBlockAbove bytes, S2-compressed after its tag
	tagAttempt       = 'a'
)

var errShortRecord = errors.New("decode record: truncated")

func deliveryFields(d *Delivery) [8]*string {
	return [8]*string{&d.ID, &d.EventID, &d.EventType, &d.SessionID, &d.Workspace, &d.EndpointID, &d.State, &d.LastError}
}

// deliveryStateFields are the strings of an 'e' record before its event.
func deliveryStateFields(d *Delivery) [4]*string {
	return [4]*string{&d.ID, &d.EndpointID, &d.State, &d.LastError}
}

func eventFields(ev *Event) [13]*string {
	return [13]*string{&ev.ID, &ev.Type, &ev.Workspace, &ev.SessionID, &ev.MessageID, &ev.From, &ev.FromLID,
		&ev.To, &ev.Text, &ev.MsgType, &ev.Caption, &ev.WAMessageID, &ev.Reason}
}

// The byte after an event's strings says what follows them.
const (
	eventHasError = 1 << 0 // the error's code and message
	eventHasRef   = 1 << 1 // RefersToWAID and RefersTo (schema 4)
)

// appendEvent encodes every field of an event: the body sent to receivers is
// rendered from it, so nothing may be dropped.
func appendEvent(out []byte, ev *Event) []byte {
	out = binary.AppendVarint(out, ev.Timestamp)
	f := eventFields(ev)
	out = appendStrings(out, f[:])
	var flags byte
	if ev.Error != nil {
		flags |= eventHasError
	}
	hasRef := ev.RefersToWAID != "" || ev.RefersTo != ""
	if hasRef {
		flags |= eventHasRef
	}
	out = append(out, flags)
	if ev.Error != nil {
		out = appendStrings(out, []*string{&ev.Error.Code, &ev.Error.Message})
	}
	if hasRef {
		out = appendStrings(out, []*string{&ev.RefersToWAID, &ev.RefersTo})
	}
	return out
}

func eventSize(ev *Event) int {
	f := eventFields(ev)
	n := binary.MaxVarintLen64 + stringsSize(f[:]) + 1
	if ev.Error != nil {
		n += 2*binary.MaxVarintLen32 + len(ev.Error.Code) + len(ev.Error.Message)
	}
	n += 2*binary.MaxVarintLen32 + len(ev.RefersToWAID) + len(ev.RefersTo)
	return n
}

// encodeDeliveryEvent writes a delivery with its event ('e').
func encodeDeliveryEvent(d *Delivery) []byte {
	return appendDeliveryEvent(nil, d)
}

// appendDeliveryEvent is encodeDeliveryEvent appending to out.
func appendDeliveryEvent(out []byte, d *Delivery) []byte {
	fields := deliveryStateFields(d)
	out = slices.Grow(out, 1+6*binary.MaxVarintLen64+stringsSize(fields[:])+eventSize(&d.Event))
	out = append(out, tagDeliveryEvent)
	for _, v := range [...]int64{int64(d.Attempts), int64(d.Total), d.NextAt, int64(d.LastStatus), d.CreatedAt, d.UpdatedAt} {
		out = binary.AppendVarint(out, v)
	}
	out = appendStrings(out, fields[:])
	return appendEvent(out, &d.Event)
}

// blockScratch holds the two buffers an outbox block is encoded into (the
// block, and its S2 form) for reuse: a batch's block is copied into the
// batch as soon as it is encoded, and allocating both for every dispatched
// batch and receipt batch was over half of what staging three events a
// message allocates.
type blockScratch struct{ raw, z []byte }

// blockScratches keeps blockScratch values between commits.
var blockScratches = sync.Pool{New: func() any { return new(blockScratch) }}

// keepScratchBelow bounds the buffers the pool keeps: a rare huge block
// should not stay pinned in memory.
const keepScratchBelow = 1 << 20

// encode writes the first deliveries staged by one batch ('b', or 'S' when
// S2-compressed): per delivery its id, endpoint, first attempt time (Unix
// ns), creation time (Unix s) and event. The result is in sc's buffers,
// valid until sc's next use.
func (sc *blockScratch) encode(ds []*Delivery) []byte {
	n := 1 + binary.MaxVarintLen32
	for _, d := range ds {
		n += 2*binary.MaxVarintLen32 + len(d.ID) + len(d.EndpointID) + 2*binary.MaxVarintLen64 + eventSize(&d.Event)
	}
	out := sc.raw[:0]
	if cap(out) < n {
		out = make([]byte, 0, n)
	}
	out = append(out, tagBlock)
	out = binary.AppendUvarint(out, uint64(len(ds)))
	for _, d := range ds {
		out = appendStrings(out, []*string{&d.ID, &d.EndpointID})
		out = binary.AppendVarint(out, d.NextAt)
		out = binary.AppendVarint(out, d.CreatedAt)
		out = appendEvent(out, &d.Event)
	}
	sc.raw = out
	if len(out) <= compressBlockAbove {
		return out
	}
	zn := 1 + s2.MaxEncodedLen(len(out)-1)
	z := sc.z
	if cap(z) < zn {
		z = make([]byte, zn)
	}
	z = z[:zn]
	sc.z = z
	z[0] = tagBlockS2
	return z[:1+len(s2.Encode(z[1:], out[1:]))]
}

// compressBlockAbove is the block size above which blocks are compressed:
// S2's block format adds a few bytes, so even a few events gain.
const compressBlockAbove = 256

// maxBlockSize bounds a decompressed block, so a damaged length cannot ask
// for gigabytes. A block holds one batch's events (a few hundred).
const maxBlockSize = 64 << 20

// decodeBlock reads what blockScratch.encode wrote: pending deliveries that have had
// no attempt, each with Block set to blockID.
func decodeBlock(v []byte, blockID string) ([]*Delivery, error) {
	if len(v) == 0 {
		return nil, errors.New("decode outbox block: empty")
	}
	payload := v[1:]
	switch v[0] {
	case tagBlock:
	case tagBlockS2:
		n, err := s2.DecodedLen(payload)
		if err != nil {
			return nil, fmt.Errorf("decompress outbox block: %w", err)
		}
		if n > maxBlockSize {
			return nil, fmt.Errorf("decompress outbox block: a length of %d bytes is over the %d a block can have", n, maxBlockSize)
		}
		raw, err := s2.Decode(make([]byte, n), payload)
		if err != nil {
			return nil, fmt.Errorf("decompress outbox block: %w", err)
		}
		payload = raw
	case tagBlockZstd:
		_, dec := zstdCodec()
		raw, err := dec.DecodeAll(payload, nil)
		if err != nil {
			return nil, fmt.Errorf("decompress outbox block: %w", err)
		}
		payload = raw
	default:
		return nil, errors.New("decode outbox block: not a block")
	}
	r := recordReader{p: payload}
	n := r.uint()
	if !r.ok() || n > uint64(len(r.p)) { // every delivery takes bytes: a bigger count is damage
		return nil, errShortRecord
	}
	out := make([]*Delivery, 0, n)
	for range n {
		d := &Delivery{State: "pending", Block: blockID}
		r.strings([]*string{&d.ID, &d.EndpointID})
		d.NextAt, d.CreatedAt = r.int(), r.int()
		r.event(&d.Event)
		if !r.ok() {
			return nil, errShortRecord
		}
		d.UpdatedAt = d.CreatedAt
		d.fromEvent()
		out = append(out, d)
	}
	if len(r.p) != 0 {
		return nil, errors.New("decode outbox block: trailing bytes")
	}
	return out, nil
}

func attemptFields(a *Attempt) [7]*string {
	return [7]*string{&a.ID, &a.DeliveryID, &a.EventID, &a.EventType, &a.EndpointID, &a.Error, &a.State}
}

func appendStrings(out []byte, fields []*string) []byte {
	for _, f := range fields {
		out = appendString(out, *f)
	}
	return out
}

// appendString appends s as a uvarint length and its bytes.
func appendString(out []byte, s string) []byte {
	out = binary.AppendUvarint(out, uint64(len(s)))
	return append(out, s...)
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

func encodeAttempt(a *Attempt) []byte { return appendAttempt(nil, a) }

// appendAttempt is encodeAttempt appending to out.
func appendAttempt(out []byte, a *Attempt) []byte {
	fields := attemptFields(a)
	out = slices.Grow(out, 1+5*binary.MaxVarintLen64+stringsSize(fields[:]))
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

func (r *recordReader) uint() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *recordReader) event(ev *Event) {
	ev.Timestamp = r.int()
	f := eventFields(ev)
	r.strings(f[:])
	if r.bad || len(r.p) == 0 {
		r.bad = true
		return
	}
	flags := r.p[0]
	r.p = r.p[1:]
	if flags&^(eventHasError|eventHasRef) != 0 {
		r.bad = true
		return
	}
	ev.Error = nil
	if flags&eventHasError != 0 {
		e := &MessageError{}
		r.strings([]*string{&e.Code, &e.Message})
		ev.Error = e
	}
	ev.RefersToWAID, ev.RefersTo = "", ""
	if flags&eventHasRef != 0 {
		r.strings([]*string{&ev.RefersToWAID, &ev.RefersTo})
	}
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
	d.Event = Event{ID: d.EventID, Type: d.EventType, Workspace: d.Workspace, SessionID: d.SessionID}
	d.Block = ""
	d.legacyBody = true
	if !r.ok() {
		return errShortRecord
	}
	return nil
}

func decodeDeliveryEvent(payload []byte, d *Delivery) error {
	r := recordReader{p: payload}
	d.Attempts, d.Total = int(r.int()), int(r.int())
	d.NextAt = r.int()
	d.LastStatus = int(r.int())
	d.CreatedAt, d.UpdatedAt = r.int(), r.int()
	fields := deliveryStateFields(d)
	r.strings(fields[:])
	r.event(&d.Event)
	d.Body, d.Block, d.legacyBody = nil, "", false
	if !r.ok() {
		return errShortRecord
	}
	if len(r.p) != 0 {
		return errors.New("decode delivery: trailing bytes")
	}
	d.fromEvent()
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
