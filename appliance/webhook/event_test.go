package webhook

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/walytic/appliance/storage"
)

// referenceEventJSON is the payload as encoding/json writes it: Body must
// write the same bytes. Pointer-to-pointer fields marshal as absent (outer
// nil) or as an explicit null (inner nil), which "from" needs when only a
// LID is known.
type referenceEventJSON struct {
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
	Context     *referenceContext     `json:"context,omitempty"`
	WAMessageID string                `json:"waMessageId,omitempty"`
	Error       *storage.MessageError `json:"error,omitempty"`
	Reason      string                `json:"reason,omitempty"`
}

type referenceContext struct {
	MessageID   *string `json:"messageId"`
	WAMessageID string  `json:"waMessageId"`
}

// bodyReference is Body written with encoding/json (as Body was before it
// was written by hand).
func bodyReference(ev *storage.Event) ([]byte, error) {
	out := referenceEventJSON{ID: ev.ID, Event: ev.Type, SessionID: ev.SessionID, Timestamp: ev.Timestamp}
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
		if ev.RefersToWAID != "" {
			out.Context = &referenceContext{WAMessageID: ev.RefersToWAID}
			if ev.RefersTo != "" {
				id := ev.RefersTo
				out.Context.MessageID = &id
			}
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

// FuzzBodyMatchesEncodingJSON: for any event, Body writes exactly what
// encoding/json writes for the contract's payload.
func FuzzBodyMatchesEncodingJSON(f *testing.F) {
	f.Add(0, int64(1714602000), "evt_1", "919876543210", "msg_1", "919999999999", "", "Hi <b>&</b> \"there\"\n\t\\", "text", "", "3EB0", "", "", false)
	f.Add(0, int64(-1), "e", "s", "m", "", "123@lid", "bad \xff utf8 \u2028 \u2029 \x00\x1f\x7f é 😀", "image", "cap\b\f\r", "", "", "", false)
	f.Add(4, int64(0), "e", "s", "m", "91", "", "", "", "", "", "send_failed", "no <way>", true)
	f.Add(4, int64(0), "e", "s", "m", "91", "", "", "", "", "", "", "", false)
	f.Add(7, int64(5), "e", "s", "", "", "", "", "", "", "", "", "logged out & gone", false)
	f.Add(1, int64(9), "", "", "", "", "", "", "", "", "", "", "", false)
	// A reaction to a message in the log, and a quote of one that is not
	// (refersTo is the code argument).
	f.Add(0, int64(3), "e", "s", "m", "91", "", "👍", "reaction", "", "3EB0AA", "msg_<1>", "", false)
	f.Add(0, int64(3), "e", "s", "m", "91", "", "yes", "text", "", "3EB0AA", "", "", false)
	f.Fuzz(func(t *testing.T, typ int, ts int64, id, session, msgID, from, fromLID, text, msgType, caption, waID, code, reason string, withErr bool) {
		// waID doubles as the WhatsApp id the event refers to, and code as
		// the message id it refers to.
		ev := &storage.Event{ID: id, Type: "other." + id, SessionID: session, Timestamp: ts, MessageID: msgID, From: from, FromLID: fromLID,
			To: from, Text: text, MsgType: msgType, Caption: caption, WAMessageID: waID, Reason: reason,
			RefersToWAID: waID, RefersTo: code}
		if typ >= 0 && typ < len(EventTypes) {
			ev.Type = EventTypes[typ]
		}
		if withErr {
			ev.Error = &storage.MessageError{Code: code, Message: reason}
		}
		got, err := Body(ev)
		want, werr := bodyReference(ev)
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			t.Fatalf("Body:\n got %s (%v)\nwant %s (%v)", got, err, want, werr)
		}
	})
}

func BenchmarkBody(b *testing.B) {
	ev := &storage.Event{ID: "evt_0123456789abcdefghjk", Type: "message.received", SessionID: "919876543210", Timestamp: 1714602000,
		MessageID: "msg_0123456789abcdefghjk", From: "919999999999", MsgType: "text",
		Text: "Hi! Is order #1042 on its way? It was due yesterday and the tracking page has not changed since Monday."}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Body(ev); err != nil {
			b.Fatal(err)
		}
	}
}
