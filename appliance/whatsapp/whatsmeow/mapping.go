package whatsmeow

import (
	"context"
	"strconv"
	"strings"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/walytic/appliance/appliance/whatsapp"
)

// Inbound message types, as they appear in the webhook's "type" field.
const (
	TypeText        = "text"
	TypeImage       = "image"
	TypeVideo       = "video"
	TypeAudio       = "audio"
	TypeDocument    = "document"
	TypeSticker     = "sticker"
	TypeLocation    = "location"
	TypeLiveLoc     = "live_location"
	TypeContact     = "contact"
	TypeContacts    = "contacts"
	TypeReaction    = "reaction"
	TypePoll        = "poll"
	TypePollVote    = "poll_vote"
	TypeButtonReply = "button_reply"
	TypeListReply   = "list_reply"
	TypeInteractive = "interactive_reply"
	TypeRevoke      = "revoke"
	TypeEdit        = "edit"
	TypeProtocol    = "protocol"
	TypeGroupInvite = "group_invite"
	TypeEvent       = "event"
	TypeOrder       = "order"
	TypeProduct     = "product"
	TypePayment     = "payment"
	TypeCall        = "call"
	TypeUnknown     = "unknown"
)

// classify names a message's type and pulls out its text and caption. Every
// message gets a type; those we do not know are "unknown", never dropped.
func classify(m *waE2E.Message) (typ, text, caption string) {
	if m == nil {
		return TypeUnknown, "", ""
	}
	switch {
	case m.Conversation != nil:
		return TypeText, m.GetConversation(), ""
	case m.ExtendedTextMessage != nil:
		return TypeText, m.GetExtendedTextMessage().GetText(), ""
	case m.ImageMessage != nil:
		return TypeImage, "", m.GetImageMessage().GetCaption()
	case m.VideoMessage != nil:
		return TypeVideo, "", m.GetVideoMessage().GetCaption()
	case m.PtvMessage != nil:
		return TypeVideo, "", m.GetPtvMessage().GetCaption()
	case m.AudioMessage != nil:
		return TypeAudio, "", ""
	case m.DocumentMessage != nil:
		d := m.GetDocumentMessage()
		c := d.GetCaption()
		if c == "" {
			c = d.GetFileName()
		}
		return TypeDocument, "", c
	case m.StickerMessage != nil:
		return TypeSticker, "", ""
	case m.LottieStickerMessage != nil:
		return TypeSticker, "", ""
	case m.LocationMessage != nil:
		l := m.GetLocationMessage()
		return TypeLocation, latLong(l.GetDegreesLatitude(), l.GetDegreesLongitude()), joinNonEmpty(l.GetName(), l.GetAddress())
	case m.LiveLocationMessage != nil:
		l := m.GetLiveLocationMessage()
		return TypeLiveLoc, latLong(l.GetDegreesLatitude(), l.GetDegreesLongitude()), l.GetCaption()
	case m.ContactMessage != nil:
		c := m.GetContactMessage()
		return TypeContact, c.GetVcard(), c.GetDisplayName()
	case m.ContactsArrayMessage != nil:
		c := m.GetContactsArrayMessage()
		var cards []string
		for _, x := range c.GetContacts() {
			cards = append(cards, x.GetVcard())
		}
		return TypeContacts, strings.Join(cards, "\n"), c.GetDisplayName()
	case m.ReactionMessage != nil:
		return TypeReaction, m.GetReactionMessage().GetText(), ""
	case m.EncReactionMessage != nil:
		return TypeReaction, "", ""
	case m.PollCreationMessage != nil:
		return TypePoll, m.GetPollCreationMessage().GetName(), ""
	case m.PollCreationMessageV2 != nil:
		return TypePoll, m.GetPollCreationMessageV2().GetName(), ""
	case m.PollCreationMessageV3 != nil:
		return TypePoll, m.GetPollCreationMessageV3().GetName(), ""
	case m.PollCreationMessageV5 != nil:
		return TypePoll, m.GetPollCreationMessageV5().GetName(), ""
	case m.PollUpdateMessage != nil:
		return TypePollVote, "", ""
	case m.ButtonsResponseMessage != nil:
		return TypeButtonReply, m.GetButtonsResponseMessage().GetSelectedDisplayText(), ""
	case m.TemplateButtonReplyMessage != nil:
		return TypeButtonReply, m.GetTemplateButtonReplyMessage().GetSelectedDisplayText(), ""
	case m.ListResponseMessage != nil:
		return TypeListReply, m.GetListResponseMessage().GetTitle(), ""
	case m.InteractiveResponseMessage != nil:
		return TypeInteractive, m.GetInteractiveResponseMessage().GetBody().GetText(), ""
	case m.ProtocolMessage != nil:
		p := m.GetProtocolMessage()
		switch p.GetType() {
		case waE2E.ProtocolMessage_REVOKE:
			return TypeRevoke, "", ""
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			_, t, c := classify(p.GetEditedMessage())
			return TypeEdit, t, c
		}
		return TypeProtocol, "", ""
	case m.GroupInviteMessage != nil:
		g := m.GetGroupInviteMessage()
		return TypeGroupInvite, g.GetGroupName(), g.GetCaption()
	case m.EventMessage != nil:
		return TypeEvent, m.GetEventMessage().GetName(), ""
	case m.OrderMessage != nil:
		return TypeOrder, m.GetOrderMessage().GetMessage(), ""
	case m.ProductMessage != nil:
		return TypeProduct, "", m.GetProductMessage().GetBody()
	case m.SendPaymentMessage != nil, m.RequestPaymentMessage != nil:
		return TypePayment, "", ""
	case m.Call != nil:
		return TypeCall, "", ""
	}
	return TypeUnknown, "", ""
}

// refersTo returns the WhatsApp id of the message m quotes (a reply),
// reacts to, edits, revokes or votes in, or "" when it refers to none.
func refersTo(m *waE2E.Message) string {
	switch {
	case m == nil:
		return ""
	case m.ReactionMessage != nil:
		return m.GetReactionMessage().GetKey().GetID()
	case m.EncReactionMessage != nil:
		return m.GetEncReactionMessage().GetTargetMessageKey().GetID()
	case m.PollUpdateMessage != nil:
		return m.GetPollUpdateMessage().GetPollCreationMessageKey().GetID()
	case m.ProtocolMessage != nil:
		switch p := m.GetProtocolMessage(); p.GetType() {
		case waE2E.ProtocolMessage_REVOKE, waE2E.ProtocolMessage_MESSAGE_EDIT:
			return p.GetKey().GetID()
		}
		return ""
	}
	return quotedID(m)
}

// contextInfoName is the field every quotable message type (over thirty of
// them) carries its ContextInfo in.
const contextInfoName protoreflect.Name = "contextInfo"

// quotedID finds the quoted message's id in the ContextInfo of whichever
// message m holds, by reflection rather than a switch over every type, so
// types added to whatsmeow's protocol are covered too.
func quotedID(m *waE2E.Message) string {
	var id string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
			return true
		}
		inner := v.Message()
		ctxField := inner.Descriptor().Fields().ByName(contextInfoName)
		if ctxField == nil || !inner.Has(ctxField) {
			return true
		}
		if ci, ok := inner.Get(ctxField).Message().Interface().(*waE2E.ContextInfo); ok && ci.GetStanzaID() != "" {
			id = ci.GetStanzaID()
			return false
		}
		return true
	})
	return id
}

func latLong(lat, long float64) string {
	return strconv.FormatFloat(lat, 'f', -1, 64) + "," + strconv.FormatFloat(long, 'f', -1, 64)
}

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

// lidResolver finds the phone number behind a LID, from whatsmeow's LID map.
type lidResolver func(ctx context.Context, lid types.JID) (types.JID, error)

// senderOf returns the sender's phone number, or the unmapped LID.
func senderOf(ctx context.Context, src types.MessageSource, resolve lidResolver) (from, fromLID string) {
	s := src.Sender
	switch s.Server {
	case types.DefaultUserServer, types.LegacyUserServer:
		return s.User, ""
	case types.HiddenUserServer:
		if alt := src.SenderAlt; alt.Server == types.DefaultUserServer && alt.User != "" {
			return alt.User, ""
		}
		if resolve != nil {
			if pn, err := resolve(ctx, s.ToNonAD()); err == nil && !pn.IsEmpty() && pn.Server == types.DefaultUserServer {
				return pn.User, ""
			}
		}
		return "", s.User
	}
	// Another addressing scheme (hosted, bots): keep what we have as the LID
	// rather than inventing a phone number.
	return "", s.User
}

// inboundFrom maps a received message. ok is false for messages the
// appliance does not model: our own (sent from the phone or another linked
// device), status broadcasts, broadcast lists, group chats and newsletters.
func inboundFrom(ctx context.Context, evt *events.Message, resolve lidResolver) (whatsapp.Inbound, bool) {
	info := evt.Info
	if info.IsFromMe || info.IsGroup {
		return whatsapp.Inbound{}, false
	}
	switch info.Chat.Server {
	case types.BroadcastServer, types.NewsletterServer, types.GroupServer:
		return whatsapp.Inbound{}, false
	}
	typ, text, caption := classify(evt.Message)
	from, lid := senderOf(ctx, info.MessageSource, resolve)
	return whatsapp.Inbound{
		WAMessageID: info.ID,
		From:        from,
		FromLID:     lid,
		Type:        typ,
		Text:        text,
		Caption:     caption,
		RefersTo:    refersTo(evt.Message),
		Timestamp:   info.Timestamp,
	}, true
}

// receiptFrom maps a receipt. ok is false for receipts that are not the
// recipient's delivered/read report of a message we sent: our own devices'
// reports, retries, server errors and so on.
func receiptFrom(evt *events.Receipt) (whatsapp.Receipt, bool) {
	if evt.IsFromMe || len(evt.MessageIDs) == 0 {
		return whatsapp.Receipt{}, false
	}
	var kind string
	switch evt.Type {
	case types.ReceiptTypeDelivered:
		kind = whatsapp.ReceiptDelivered
	case types.ReceiptTypeRead, types.ReceiptTypePlayed:
		kind = whatsapp.ReceiptRead
	default:
		return whatsapp.Receipt{}, false
	}
	ids := make([]string, len(evt.MessageIDs))
	copy(ids, evt.MessageIDs)
	return whatsapp.Receipt{WAMessageIDs: ids, Kind: kind, Timestamp: evt.Timestamp}, true
}
