package storage

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Workspace is a tenant: keys, sessions, messages and quota belong to one.
type Workspace struct {
	Name         string `json:"name"`
	MonthlyQuota int64  `json:"monthlyQuota"` // 0 = unlimited
	CreatedAt    int64  `json:"createdAt"`
}

// APIKey is a key record. Only the SHA-256 of the plaintext is kept.
type APIKey struct {
	ID            string `json:"id"`
	Workspace     string `json:"workspace"`
	Name          string `json:"name"`
	Hash          string `json:"hash"` // lowercase hex SHA-256 of the plaintext key
	Last4         string `json:"last4"`
	RatePerMinute int    `json:"ratePerMinute,omitempty"` // 0 = default
	Burst         int    `json:"burst,omitempty"`         // 0 = default
	CreatedAt     int64  `json:"createdAt"`
	RotatedAt     int64  `json:"rotatedAt,omitempty"`
}

// Session is a WhatsApp number connected to a workspace.
type Session struct {
	Workspace    string `json:"workspace"`
	ID           string `json:"sessionId"`
	Driver       string `json:"driver"`
	Status       string `json:"status"`
	StatusReason string `json:"statusReason,omitempty"`
	Paired       bool   `json:"paired"`
	// Unlinked: the device was logged out since it was last connected, so
	// the session has none until it is paired again.
	Unlinked    bool    `json:"unlinked,omitempty"`
	CreatedAt   int64   `json:"createdAt"`
	ConnectedAt int64   `json:"connectedAt,omitempty"`
	Pacing      *Pacing `json:"pacing,omitempty"` // nil: the driver's default
}

// Pacing spaces a session's sends the way a person's phone would, which is
// what keeps real numbers from being banned.
type Pacing struct {
	RatePerMinute       int `json:"ratePerMinute"`       // 0 = no rate limit
	MaxJitterMs         int `json:"maxJitterMs"`         // a random extra 0..this many ms before each send
	RecipientGapSeconds int `json:"recipientGapSeconds"` // least time between two sends to one recipient
}

// MessageError is why a message failed.
type MessageError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Message is one entry of the message log, inbound or outbound.
type Message struct {
	ID          string        `json:"id"`
	Workspace   string        `json:"workspace"`
	Direction   string        `json:"direction"` // "outbound" | "inbound"
	SessionID   string        `json:"sessionId"`
	To          string        `json:"to,omitempty"`
	From        string        `json:"from,omitempty"`
	FromLID     string        `json:"fromLid,omitempty"`
	Type        string        `json:"type,omitempty"`
	Text        string        `json:"text"`
	Caption     string        `json:"caption,omitempty"`
	Status      string        `json:"status"`
	WAID        string        `json:"waId,omitempty"` // WhatsApp id chosen at queue time (outbound) or received (inbound)
	Sent        bool          `json:"sent,omitempty"` // the network accepted it; WAID is then public
	Error       *MessageError `json:"error,omitempty"`
	CreatedAt   int64         `json:"createdAt"`
	UpdatedAt   int64         `json:"updatedAt"`
	Fingerprint string        `json:"fp,omitempty"` // idempotency fingerprint of the request that created it

	// RefersToWAID is the WhatsApp id of the message an inbound one quotes,
	// reacts to, edits, revokes or votes in; RefersTo is that message's id
	// when it is in the log.
	RefersToWAID string `json:"refersToWaId,omitempty"`
	RefersTo     string `json:"refersTo,omitempty"`
}

// Idempotency remembers the message an Idempotency-Key created.
type Idempotency struct {
	Key         string `json:"key"`
	Fingerprint string `json:"fingerprint"`
	MessageID   string `json:"messageId"`
	CreatedAt   int64  `json:"createdAt"`
}

// Value encodings: a one-byte tag, then the payload.
const (
	tagJSON = 'j'
	tagZstd = 'z'
	// compressAbove is the encoded size above which values are zstd-compressed:
	// below it the frame overhead eats the gain.
	compressAbove = 1024
)

var (
	zencOnce sync.Once
	zenc     *zstd.Encoder
	zdec     *zstd.Decoder
)

func zstdCodec() (*zstd.Encoder, *zstd.Decoder) {
	zencOnce.Do(func() {
		zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
	})
	return zenc, zdec
}

// compressLarge returns a tagged binary record as it is, or, above
// compressAbove bytes, its payload zstd-compressed behind zstdTag.
func compressLarge(record []byte, zstdTag byte) []byte {
	if len(record) <= compressAbove {
		return record
	}
	enc, _ := zstdCodec()
	z := make([]byte, 1, len(record)/2+16)
	z[0] = zstdTag
	return enc.EncodeAll(record[1:], z)
}

func encode(v any) ([]byte, error) {
	switch r := v.(type) {
	case *Message:
		return encodeMessage(r), nil
	case *Delivery:
		if r.legacyBody {
			return encodeDelivery(r), nil
		}
		return encodeDeliveryEvent(r), nil
	case *Attempt:
		return encodeAttempt(r), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	if len(raw) <= compressAbove {
		out := make([]byte, 0, len(raw)+1)
		out = append(out, tagJSON)
		return append(out, raw...), nil
	}
	enc, _ := zstdCodec()
	out := make([]byte, 1, len(raw)/2+16)
	out[0] = tagZstd
	return enc.EncodeAll(raw, out), nil
}

func decode(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("decode record: empty value")
	}
	payload := b[1:]
	switch b[0] {
	case tagMessage, tagMessageZstd:
		m, ok := v.(*Message)
		if !ok {
			return fmt.Errorf("decode record: a message record where %T was expected", v)
		}
		return decodeMessage(b, m)
	case tagDelivery:
		d, ok := v.(*Delivery)
		if !ok {
			return fmt.Errorf("decode record: a delivery record where %T was expected", v)
		}
		return decodeDelivery(payload, d)
	case tagDeliveryEvent:
		d, ok := v.(*Delivery)
		if !ok {
			return fmt.Errorf("decode record: a delivery record where %T was expected", v)
		}
		return decodeDeliveryEvent(payload, d)
	case tagAttempt:
		a, ok := v.(*Attempt)
		if !ok {
			return fmt.Errorf("decode record: an attempt record where %T was expected", v)
		}
		return decodeAttempt(payload, a)
	case tagStatusUpdate:
		return fmt.Errorf("decode record: a status update without its message record")
	case tagJSON:
	case tagZstd:
		_, dec := zstdCodec()
		raw, err := dec.DecodeAll(payload, nil)
		if err != nil {
			return fmt.Errorf("decompress record: %w", err)
		}
		payload = raw
	default:
		return fmt.Errorf("decode record: unknown value tag %q", b[0])
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	if d, ok := v.(*Delivery); ok { // JSON deliveries kept their bodies under dlb/
		d.Event = Event{ID: d.EventID, Type: d.EventType, Workspace: d.Workspace, SessionID: d.SessionID}
		d.legacyBody = true
	}
	return nil
}
