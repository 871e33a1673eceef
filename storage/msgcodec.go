package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Messages are the hot record (written, then read back merged with their
// status updates, for every send), so they have a
// compact binary codec instead of JSON: tag 'm' (or 'M' when zstd-compressed),
// a flags byte, two varint times, then the string fields, each as a uvarint
// length and its bytes, in the order of messageFields. Records written with
// the JSON codec ('j'/'z') still decode.
const (
	tagMessage     = 'm'
	tagMessageZstd = 'M'
)

const (
	flagSent     = 1 << 0
	flagHasError = 1 << 1
)

func messageFields(m *Message) [15]*string {
	var code, msg *string
	if m.Error != nil {
		code, msg = &m.Error.Code, &m.Error.Message
	} else {
		var a, b string
		code, msg = &a, &b
	}
	return [15]*string{&m.ID, &m.Workspace, &m.Direction, &m.SessionID, &m.To, &m.From, &m.FromLID,
		&m.Type, &m.Text, &m.Caption, &m.Status, &m.WAID, &m.Fingerprint, code, msg}
}

func encodeMessage(m *Message) []byte {
	fields := messageFields(m)
	size := 1 + 1 + 2*binary.MaxVarintLen64
	for _, f := range fields {
		size += binary.MaxVarintLen32 + len(*f)
	}
	out := make([]byte, 0, size)
	out = append(out, tagMessage)
	var flags byte
	if m.Sent {
		flags |= flagSent
	}
	if m.Error != nil {
		flags |= flagHasError
	}
	out = append(out, flags)
	out = binary.AppendVarint(out, m.CreatedAt)
	out = binary.AppendVarint(out, m.UpdatedAt)
	for _, f := range fields {
		out = binary.AppendUvarint(out, uint64(len(*f)))
		out = append(out, *f...)
	}
	return compressLarge(out, tagMessageZstd)
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
	for _, f := range messageFields(m) {
		l, n := binary.Uvarint(p)
		if n <= 0 || uint64(len(p)-n) < l {
			return errShortMessage
		}
		*f = string(p[n : n+int(l)])
		p = p[n+int(l):]
	}
	return nil
}
