package whatsmeow

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/walytic/appliance/appliance/whatsapp"
)

var (
	pnAlice  = types.NewJID("919999999999", types.DefaultUserServer)
	lidAlice = types.NewJID("123456789012345", types.HiddenUserServer)
	lidBob   = types.NewJID("999888777666555", types.HiddenUserServer)
	lidCarol = types.NewJID("111222333444555", types.HiddenUserServer)
	pnCarol  = "14155550123"
)

func TestReceiptMapping(t *testing.T) {
	ts := time.Unix(1_800_000_500, 0)
	cases := []struct {
		typ  types.ReceiptType
		want string // "" = ignored
	}{
		{types.ReceiptTypeDelivered, whatsapp.ReceiptDelivered},
		{types.ReceiptTypeRead, whatsapp.ReceiptRead},
		{types.ReceiptTypePlayed, whatsapp.ReceiptRead},
		{types.ReceiptTypeReadSelf, ""},
		{types.ReceiptTypePlayedSelf, ""},
		{types.ReceiptTypeSender, ""},
		{types.ReceiptTypeRetry, ""},
		{types.ReceiptTypeServerError, ""},
		{types.ReceiptTypeInactive, ""},
	}
	for _, c := range cases {
		clk := newFakeClock()
		s, rec := newTestSession(t, newFakeConn(true), clk)
		s.handleEvent(&events.Receipt{
			MessageSource: types.MessageSource{Chat: pnAlice, Sender: pnAlice},
			MessageIDs:    []types.MessageID{"3EB0000000000000000001", "3EB0000000000000000002"},
			Timestamp:     ts,
			Type:          c.typ,
		})
		got := rec.receiptList()
		if c.want == "" {
			if len(got) != 0 {
				t.Errorf("type %q: got %+v, want none", c.typ, got)
			}
			continue
		}
		if len(got) != 1 || got[0].Kind != c.want || !got[0].Timestamp.Equal(ts) ||
			len(got[0].WAMessageIDs) != 2 || got[0].WAMessageIDs[1] != "3EB0000000000000000002" {
			t.Errorf("type %q: got %+v, want kind %s", c.typ, got, c.want)
		}
	}
	// Our own devices' receipts are not the recipient's.
	s, rec := newTestSession(t, newFakeConn(true), newFakeClock())
	s.handleEvent(&events.Receipt{MessageSource: types.MessageSource{Chat: pnAlice, Sender: pnAlice, IsFromMe: true}, MessageIDs: []string{"x"}, Type: types.ReceiptTypeRead})
	if len(rec.receiptList()) != 0 {
		t.Error("own receipt reported")
	}
}

func msgEvent(src types.MessageSource, m *waE2E.Message) *events.Message {
	if src.Chat.IsEmpty() {
		src.Chat = src.Sender
	}
	return &events.Message{
		Info:    types.MessageInfo{MessageSource: src, ID: "3EB0FEEDFACE", Timestamp: time.Unix(1_800_000_900, 0), Type: "text"},
		Message: m,
	}
}

func TestInboundTypes(t *testing.T) {
	from := types.MessageSource{Sender: pnAlice}
	cases := []struct {
		name          string
		m             *waE2E.Message
		typ, text, cp string
	}{
		{"conversation", &waE2E.Message{Conversation: proto.String("hello")}, "text", "hello", ""},
		{"extended text", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("link https://x.y")}}, "text", "link https://x.y", ""},
		{"image", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("look"), Mimetype: proto.String("image/jpeg")}}, "image", "", "look"},
		{"video", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{Caption: proto.String("clip")}}, "video", "", "clip"},
		{"video note", &waE2E.Message{PtvMessage: &waE2E.VideoMessage{}}, "video", "", ""},
		{"audio", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{PTT: proto.Bool(true)}}, "audio", "", ""},
		{"document", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{Caption: proto.String("invoice"), FileName: proto.String("inv.pdf")}}, "document", "", "invoice"},
		{"document without caption", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("inv.pdf")}}, "document", "", "inv.pdf"},
		{"sticker", &waE2E.Message{StickerMessage: &waE2E.StickerMessage{}}, "sticker", "", ""},
		{"location", &waE2E.Message{LocationMessage: &waE2E.LocationMessage{DegreesLatitude: proto.Float64(12.5), DegreesLongitude: proto.Float64(77.25), Name: proto.String("Office")}}, "location", "12.5,77.25", "Office"},
		{"live location", &waE2E.Message{LiveLocationMessage: &waE2E.LiveLocationMessage{DegreesLatitude: proto.Float64(1), DegreesLongitude: proto.Float64(2)}}, "live_location", "1,2", ""},
		{"contact", &waE2E.Message{ContactMessage: &waE2E.ContactMessage{DisplayName: proto.String("Bob"), Vcard: proto.String("BEGIN:VCARD")}}, "contact", "BEGIN:VCARD", "Bob"},
		{"contacts", &waE2E.Message{ContactsArrayMessage: &waE2E.ContactsArrayMessage{DisplayName: proto.String("2 contacts"), Contacts: []*waE2E.ContactMessage{{Vcard: proto.String("A")}, {Vcard: proto.String("B")}}}}, "contacts", "A\nB", "2 contacts"},
		{"reaction", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Text: proto.String("👍")}}, "reaction", "👍", ""},
		{"poll", &waE2E.Message{PollCreationMessageV3: &waE2E.PollCreationMessage{Name: proto.String("Lunch?")}}, "poll", "Lunch?", ""},
		{"poll vote", &waE2E.Message{PollUpdateMessage: &waE2E.PollUpdateMessage{}}, "poll_vote", "", ""},
		{"button reply", &waE2E.Message{ButtonsResponseMessage: &waE2E.ButtonsResponseMessage{Response: &waE2E.ButtonsResponseMessage_SelectedDisplayText{SelectedDisplayText: "Yes"}}}, "button_reply", "Yes", ""},
		{"list reply", &waE2E.Message{ListResponseMessage: &waE2E.ListResponseMessage{Title: proto.String("Option 2")}}, "list_reply", "Option 2", ""},
		{"revoke", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum()}}, "revoke", "", ""},
		{"edit", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), EditedMessage: &waE2E.Message{Conversation: proto.String("fixed")}}}, "edit", "fixed", ""},
		{"unknown", &waE2E.Message{}, "unknown", "", ""},
		{"nil", nil, "unknown", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, rec := newTestSession(t, newFakeConn(true), newFakeClock())
			s.handleEvent(msgEvent(from, c.m))
			got := rec.inboundList()
			if len(got) != 1 {
				t.Fatalf("got %d inbound, want 1", len(got))
			}
			in := got[0]
			if in.Type != c.typ || in.Text != c.text || in.Caption != c.cp || in.From != "919999999999" || in.FromLID != "" ||
				in.WAMessageID != "3EB0FEEDFACE" || in.Timestamp.Unix() != 1_800_000_900 {
				t.Errorf("got %+v, want type %q text %q caption %q", in, c.typ, c.text, c.cp)
			}
		})
	}
}

// An inbound message names the message it quotes, reacts to, edits,
// revokes or votes in by its WhatsApp id (RefersTo).
func TestInboundRefersTo(t *testing.T) {
	const target = "3EB0A1B2C3D4E5F60718"
	key := &waCommon.MessageKey{RemoteJID: proto.String(pnAlice.String()), FromMe: proto.Bool(true), ID: proto.String(target)}
	quote := &waE2E.ContextInfo{StanzaID: proto.String(target), Participant: proto.String(pnAlice.String())}
	cases := []struct {
		name string
		m    *waE2E.Message
		want string
	}{
		{"plain text", &waE2E.Message{Conversation: proto.String("hi")}, ""},
		{"text without a quote", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("hi"), ContextInfo: &waE2E.ContextInfo{IsForwarded: proto.Bool(true)}}}, ""},
		{"quoted text", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("yes"), ContextInfo: quote}}, target},
		{"quoted image", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("this one"), ContextInfo: quote}}, target},
		{"quoted document", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("a.pdf"), ContextInfo: quote}}, target},
		{"quoted sticker", &waE2E.Message{StickerMessage: &waE2E.StickerMessage{ContextInfo: quote}}, target},
		{"quoted location", &waE2E.Message{LocationMessage: &waE2E.LocationMessage{ContextInfo: quote}}, target},
		{"button reply", &waE2E.Message{ButtonsResponseMessage: &waE2E.ButtonsResponseMessage{ContextInfo: quote}}, target},
		{"reaction", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Key: key, Text: proto.String("👍")}}, target},
		{"encrypted reaction", &waE2E.Message{EncReactionMessage: &waE2E.EncReactionMessage{TargetMessageKey: key}}, target},
		{"poll vote", &waE2E.Message{PollUpdateMessage: &waE2E.PollUpdateMessage{PollCreationMessageKey: key}}, target},
		{"revoke", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum(), Key: key}}, target},
		{"edit", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), Key: key,
			EditedMessage: &waE2E.Message{Conversation: proto.String("fixed")}}}, target},
		{"other protocol message", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_EPHEMERAL_SETTING.Enum(), Key: key}}, ""},
		// A disappearing message arrives wrapped; whatsmeow unwraps it
		// (UnwrapRaw) before the event reaches us.
		{"quote in a disappearing message", &waE2E.Message{EphemeralMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{
			ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("ok"), ContextInfo: quote}}}}, target},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, rec := newTestSession(t, newFakeConn(true), newFakeClock())
			evt := msgEvent(types.MessageSource{Sender: pnAlice}, nil)
			evt.RawMessage = c.m
			s.handleEvent(evt.UnwrapRaw())
			got := rec.inboundList()
			if len(got) != 1 {
				t.Fatalf("got %d inbound, want 1", len(got))
			}
			if got[0].RefersTo != c.want {
				t.Errorf("RefersTo = %q, want %q (type %q)", got[0].RefersTo, c.want, got[0].Type)
			}
		})
	}
}

func TestInboundSenders(t *testing.T) {
	fc := newFakeConn(true)
	fc.lidMap = map[string]string{lidCarol.User: pnCarol}
	s, rec := newTestSession(t, fc, newFakeClock())
	text := &waE2E.Message{Conversation: proto.String("hi")}
	// LID sender with the phone number alongside.
	s.handleEvent(msgEvent(types.MessageSource{Sender: lidAlice, SenderAlt: pnAlice, AddressingMode: types.AddressingModeLID}, text))
	// LID sender whose number is in the device's LID map.
	s.handleEvent(msgEvent(types.MessageSource{Sender: lidCarol, AddressingMode: types.AddressingModeLID}, text))
	// LID sender nobody can map.
	s.handleEvent(msgEvent(types.MessageSource{Sender: lidBob, AddressingMode: types.AddressingModeLID}, text))
	// A sender's device JID (with device part) still yields the number.
	s.handleEvent(msgEvent(types.MessageSource{Sender: types.NewADJID("919999999999", 0, 3), Chat: pnAlice}, text))
	got := rec.inboundList()
	want := []struct{ from, lid string }{{"919999999999", ""}, {pnCarol, ""}, {"", lidBob.User}, {"919999999999", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %d inbound: %+v", len(got), got)
	}
	for i, w := range want {
		if got[i].From != w.from || got[i].FromLID != w.lid {
			t.Errorf("%d: From=%q FromLID=%q, want %q %q", i, got[i].From, got[i].FromLID, w.from, w.lid)
		}
	}
}

func TestInboundIgnored(t *testing.T) {
	s, rec := newTestSession(t, newFakeConn(true), newFakeClock())
	text := &waE2E.Message{Conversation: proto.String("hi")}
	s.handleEvent(msgEvent(types.MessageSource{Sender: pnAlice, IsFromMe: true}, text))
	s.handleEvent(msgEvent(types.MessageSource{Sender: pnAlice, Chat: types.StatusBroadcastJID}, text))
	s.handleEvent(msgEvent(types.MessageSource{Sender: pnAlice, Chat: types.NewJID("1234567890", types.BroadcastServer)}, text))
	s.handleEvent(msgEvent(types.MessageSource{Sender: pnAlice, Chat: types.NewJID("120363000000000000", types.GroupServer), IsGroup: true}, text))
	s.handleEvent(msgEvent(types.MessageSource{Sender: pnAlice, Chat: types.NewJID("120363000000000001", types.NewsletterServer)}, text))
	if got := rec.inboundList(); len(got) != 0 {
		t.Errorf("got %+v", got)
	}
}

func TestSenderOfUnmappedServer(t *testing.T) {
	from, lid := senderOf(context.Background(), types.MessageSource{Sender: types.NewJID("867051314767696", types.BotServer)}, nil)
	if from != "" || lid != "867051314767696" {
		t.Errorf("bot sender: %q %q", from, lid)
	}
}

// storingRecorder is a recorder that is a whatsapp.StoringHandler whose
// stores fail with err.
type storingRecorder struct {
	*recorder
	err error
}

func (r *storingRecorder) StoreInbound(ctx context.Context, m whatsapp.Inbound) error {
	if r.err == nil {
		r.OnInbound(m)
	}
	return r.err
}

func (r *storingRecorder) StoreReceipt(ctx context.Context, rc whatsapp.Receipt) error {
	if r.err == nil {
		r.OnReceipt(rc)
	}
	return r.err
}

// Messages and receipts are acknowledged to WhatsApp (whatsmeow's handler
// returns true) only once the appliance stored them; one it could not
// store is left unacknowledged, so WhatsApp sends it again. Events that are
// not for the appliance are acknowledged as they are dropped.
func TestAcknowledgedOnlyOnceStored(t *testing.T) {
	msg := msgEvent(types.MessageSource{Sender: pnAlice}, &waE2E.Message{Conversation: proto.String("hello")})
	rcpt := &events.Receipt{MessageSource: types.MessageSource{Chat: pnAlice, Sender: pnAlice}, MessageIDs: []string{"3EB0AA"}, Type: types.ReceiptTypeRead}
	group := msgEvent(types.MessageSource{Sender: pnAlice, Chat: types.NewJID("1203630", types.GroupServer), IsGroup: true}, &waE2E.Message{Conversation: proto.String("hi all")})
	for _, c := range []struct {
		name string
		err  error
		ack  bool
	}{{"stored", nil, true}, {"not stored", errors.New("disk full"), false}} {
		t.Run(c.name, func(t *testing.T) {
			opts := Options{DBPath: "unused", Clock: newFakeClock(), Rand: func() float64 { return 0.5 }, Logger: testLogger(t)}.withDefaults()
			h := &storingRecorder{recorder: newRecorder(), err: c.err}
			s := newSession(whatsapp.SessionRef{Workspace: "default", SessionID: "919876543210"}, h, newFakeConn(true), opts, opts.Logger)
			defer s.Close()
			if got := s.handleEventStored(msg); got != c.ack {
				t.Errorf("message: acknowledged %v, want %v", got, c.ack)
			}
			if got := s.handleEventStored(rcpt); got != c.ack {
				t.Errorf("receipt: acknowledged %v, want %v", got, c.ack)
			}
			if !s.handleEventStored(group) {
				t.Error("a group message (dropped) was left unacknowledged")
			}
			if n := len(h.inboundList()); (n == 1) != c.ack {
				t.Errorf("%d inbound handed over", n)
			}
		})
	}
	// After Close nothing is acknowledged: the next connection gets it again.
	s, _ := newTestSession(t, newFakeConn(true), newFakeClock())
	_ = s.Close()
	if s.handleEventStored(msg) {
		t.Error("a message was acknowledged by a closed session")
	}
}

// finderRecorder is a recorder that knows the texts of sent messages.
type finderRecorder struct {
	*recorder
	texts map[string]string
}

func (r *finderRecorder) SentText(waID string) (string, bool) {
	t, ok := r.texts[waID]
	return t, ok
}

// A retry receipt for a message whatsmeow no longer remembers is answered
// from the appliance's log: the same message, rebuilt as it was sent.
func TestMessageForRetryComesFromTheLog(t *testing.T) {
	opts := Options{DBPath: "unused", Clock: newFakeClock(), Rand: func() float64 { return 0.5 }, Logger: testLogger(t)}.withDefaults()
	h := &finderRecorder{recorder: newRecorder(), texts: map[string]string{"3EB0OLD": "Your order #1042 has shipped"}}
	s := newSession(whatsapp.SessionRef{Workspace: "default", SessionID: "919876543210"}, h, newFakeConn(true), opts, opts.Logger)
	defer s.Close()
	got := s.messageForRetry(pnAlice, pnAlice, "3EB0OLD")
	if got.GetConversation() != "Your order #1042 has shipped" {
		t.Errorf("message for retry = %v, want the sent text as a conversation message", got)
	}
	if s.messageForRetry(pnAlice, pnAlice, "3EB0UNKNOWN") != nil {
		t.Error("a message for an unknown id")
	}
	plain, _ := newTestSession(t, newFakeConn(true), newFakeClock())
	if plain.messageForRetry(pnAlice, pnAlice, "3EB0OLD") != nil {
		t.Error("a handler that keeps no log gave a message")
	}
}
