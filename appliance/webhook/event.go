package webhook

import (
	"strconv"
	"unicode/utf8"

	"github.com/walytic/appliance/storage"
)

// Event types, as in the contract.
var EventTypes = []string{
	"message.received", "message.sent", "message.delivered", "message.read", "message.failed",
	"session.connected", "session.disconnected", "session.logged_out",
}

// Body renders an event as the raw JSON every attempt sends. The payload's
// fields per type are the contract's; the bytes are what encoding/json
// would write for them (HTML-safe string escapes), written by hand because
// every attempt of a delivery renders its body (bodyReference in the tests
// is the encoding/json version it is checked against).
func Body(ev *storage.Event) ([]byte, error) {
	size := 160 + len(ev.ID) + len(ev.SessionID) + len(ev.MessageID) + len(ev.From) + len(ev.FromLID) + len(ev.To) +
		len(ev.Text) + len(ev.MsgType) + len(ev.Caption) + len(ev.WAMessageID) + len(ev.Reason) +
		len(ev.RefersToWAID) + len(ev.RefersTo)
	if ev.Error != nil {
		size += len(ev.Error.Code) + len(ev.Error.Message)
	}
	out := make([]byte, 0, size) // escapes aside, the body fits
	out = append(out, `{"id":`...)
	out = appendJSONString(out, ev.ID)
	out = append(out, `,"event":`...)
	out = appendJSONString(out, ev.Type)
	out = append(out, `,"sessionId":`...)
	out = appendJSONString(out, ev.SessionID)
	out = append(out, `,"timestamp":`...)
	out = strconv.AppendInt(out, ev.Timestamp, 10)
	field := func(name, v string) {
		if v != "" {
			out = append(out, `,"`...)
			out = append(out, name...)
			out = append(out, `":`...)
			out = appendJSONString(out, v)
		}
	}
	switch ev.Type {
	case "message.received":
		field("messageId", ev.MessageID)
		if ev.From == "" {
			out = append(out, `,"from":null`...) // only a LID is known
		} else {
			field("from", ev.From)
		}
		field("fromLid", ev.FromLID)
		out = append(out, `,"text":`...)
		out = appendJSONString(out, ev.Text)
		if ev.MsgType != "" && ev.MsgType != "text" {
			field("type", ev.MsgType)
			out = append(out, `,"caption":`...)
			out = appendJSONString(out, ev.Caption)
		}
		if ev.RefersToWAID != "" {
			// The message this one quotes, reacts to, edits, revokes or
			// votes in; its messageId is null when it is not in the log.
			out = append(out, `,"context":{"messageId":`...)
			if ev.RefersTo == "" {
				out = append(out, "null"...)
			} else {
				out = appendJSONString(out, ev.RefersTo)
			}
			out = append(out, `,"waMessageId":`...)
			out = appendJSONString(out, ev.RefersToWAID)
			out = append(out, '}')
		}
	case "message.sent", "message.delivered", "message.read":
		field("messageId", ev.MessageID)
		field("to", ev.To)
		field("waMessageId", ev.WAMessageID)
	case "message.failed":
		field("messageId", ev.MessageID)
		field("to", ev.To)
		e := ev.Error
		if e == nil {
			e = &storage.MessageError{Code: "send_failed", Message: "the message could not be sent"}
		}
		out = append(out, `,"error":{"code":`...)
		out = appendJSONString(out, e.Code)
		out = append(out, `,"message":`...)
		out = appendJSONString(out, e.Message)
		out = append(out, '}')
	default: // session.*
		field("reason", ev.Reason)
	}
	return append(out, '}'), nil
}

// appendJSONString appends s as a JSON string the way encoding/json does:
// <, > and & as \u escapes, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// subscribed reports whether an endpoint wants an event type.
func subscribed(w *storage.Webhook, eventType string) bool {
	for _, e := range w.Events {
		if e == "*" || e == eventType {
			return true
		}
	}
	return false
}

// ValidEvent reports whether s names an event type or "*".
func ValidEvent(s string) bool {
	if s == "*" {
		return true
	}
	for _, e := range EventTypes {
		if e == s {
			return true
		}
	}
	return false
}
