package webhook

import (
	"encoding/json"

	"github.com/walytic/appliance/storage"
)

// Event types, as in the contract.
var EventTypes = []string{
	"message.received", "message.sent", "message.delivered", "message.read", "message.failed",
	"session.connected", "session.disconnected", "session.logged_out",
}

// eventJSON is the payload. Pointer-to-pointer fields marshal as absent
// (outer nil) or as an explicit null (inner nil), which "from" needs when
// only a LID is known.
type eventJSON struct {
	ID          string                `json:"id"`
	Event       string                `json:"event"`
	SessionID   string                `json:"sessionId"`
	Timestamp   int64                 `json:"timestamp"`
	MessageID   string                `json:"messageId,omitempty"`
	From        **string              `json:"from,omitempty"`
	FromLID     string                `json:"fromLid,omitempty"`
	To          string                `json:"to,omitempty"`
	Text        *string               `json:"text,omitempty"`
	Type        string                `json:"type,omitempty"`
	Caption     *string               `json:"caption,omitempty"`
	WAMessageID string                `json:"waMessageId,omitempty"`
	Error       *storage.MessageError `json:"error,omitempty"`
	Reason      string                `json:"reason,omitempty"`
}

// Body renders an event as the raw JSON every attempt sends.
func Body(ev *storage.Event) ([]byte, error) {
	out := eventJSON{ID: ev.ID, Event: ev.Type, SessionID: ev.SessionID, Timestamp: ev.Timestamp}
	switch ev.Type {
	case "message.received":
		out.MessageID = ev.MessageID
		var from *string
		if ev.From != "" {
			f := ev.From
			from = &f
		}
		out.From = &from
		out.FromLID = ev.FromLID
		text := ev.Text
		out.Text = &text
		if ev.MsgType != "" && ev.MsgType != "text" {
			out.Type = ev.MsgType
			caption := ev.Caption
			out.Caption = &caption
		}
	case "message.sent", "message.delivered", "message.read":
		out.MessageID, out.To, out.WAMessageID = ev.MessageID, ev.To, ev.WAMessageID
	case "message.failed":
		out.MessageID, out.To, out.Error = ev.MessageID, ev.To, ev.Error
		if out.Error == nil {
			out.Error = &storage.MessageError{Code: "send_failed", Message: "the message could not be sent"}
		}
	default: // session.*
		out.Reason = ev.Reason
	}
	return json.Marshal(out)
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
