package appliance

import (
	"errors"

	"github.com/walytic/appliance/storage"
)

// An outbound message's WhatsApp id is made from its own id: "3EB0" and the
// first storage.IDHeadLen bytes of the message id (its creation time in
// nanoseconds and two random bytes) as 20 upper-case hex digits, the length
// WhatsApp Web's ids have. So
//   - a resend after a crash reuses the id chosen at queue time, and the
//     network can tell it is the same message;
//   - a receipt finds its message without a WhatsApp-id index entry (one
//     write less on every send): the hex digits name the message id prefix;
//   - ids grow with time, like the message ids they come from.
//
// Inbound messages, and outbound ones whose transport reported a different
// id, keep an index entry (StageWAIndex), and ids from builds before this
// scheme are found there too.
const waIDPrefix = "3EB0"

const upperHex = "0123456789ABCDEF"

// outboundWAID is the WhatsApp id of the outbound message msgID (made by
// storage.NewID("msg_", …)).
func outboundWAID(msgID string) string {
	head, ok := storage.IDHead("msg_", msgID)
	if !ok {
		panic("outboundWAID: not a message id: " + msgID) // ids come from storage.NewID
	}
	var b [len(waIDPrefix) + 2*storage.IDHeadLen]byte
	copy(b[:], waIDPrefix)
	for i, c := range head {
		b[len(waIDPrefix)+2*i] = upperHex[c>>4]
		b[len(waIDPrefix)+2*i+1] = upperHex[c&0x0f]
	}
	return string(b[:])
}

// messageIDPrefixOf returns the message id prefix a WhatsApp id made by
// outboundWAID points at, or false for any other id.
func messageIDPrefixOf(waID string) (string, bool) {
	if len(waID) != len(waIDPrefix)+2*storage.IDHeadLen || waID[:len(waIDPrefix)] != waIDPrefix {
		return "", false
	}
	var head [storage.IDHeadLen]byte
	for i := range head {
		hi, lo := unhex(waID[len(waIDPrefix)+2*i]), unhex(waID[len(waIDPrefix)+2*i+1])
		if hi < 0 || lo < 0 {
			return "", false
		}
		head[i] = byte(hi<<4 | lo)
	}
	return storage.IDHeadPrefix("msg_", head), true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// messageByWAID finds the session's message with WhatsApp id waID: an
// outbound one by the message id the WhatsApp id was made from, then any
// in the WhatsApp-id index (inbound messages, and sends whose transport
// chose the id). storage.ErrNotFound: not one of ours (a message sent from
// the phone, say).
func (rt *sessionRuntime) messageByWAID(waID string) (*storage.Message, error) {
	if prefix, ok := messageIDPrefixOf(waID); ok {
		var found *storage.Message
		err := rt.a.db.MessagesWithIDPrefix(rt.ws, prefix, func(m *storage.Message) bool {
			if m.WAID == waID && m.SessionID == rt.id && m.Direction == "outbound" {
				found = m
				return false
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		if found != nil {
			return found, nil
		}
	}
	id, err := rt.a.db.MessageIDByWAID(rt.ws, rt.id, waID)
	if err != nil {
		return nil, err
	}
	m, err := rt.a.db.Message(rt.ws, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, storage.ErrNotFound
	}
	return m, err
}

// SentText returns the text of an outbound message of the session by its
// WhatsApp id (whatsapp.SentTextFinder), for a recipient's request to send
// it again.
func (rt *sessionRuntime) SentText(waID string) (string, bool) {
	m, err := rt.messageByWAID(waID)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			rt.a.log.Warn("find a sent message for a retry request", "workspace", rt.ws, "sessionId", rt.id, "err", err)
		}
		return "", false
	}
	if m.Direction != "outbound" {
		return "", false
	}
	return m.Text, true
}

// messageIDOfWAID returns the id of the session's message (sent or
// received) with WhatsApp id waID, or "" when there is none in the log: an
// inbound message that quotes or reacts to one names it by that id.
func (rt *sessionRuntime) messageIDOfWAID(waID string) string {
	if waID == "" {
		return ""
	}
	m, err := rt.messageByWAID(waID)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			rt.a.log.Warn("find the message an inbound one refers to", "workspace", rt.ws, "sessionId", rt.id, "err", err)
		}
		return ""
	}
	return m.ID
}
