package whatsapp

import (
	"context"
	"errors"
	"time"
)

// Driver names, as they appear in the API's "driver" field.
const (
	DriverSandbox   = "sandbox"
	DriverWhatsmeow = "whatsmeow"
)

// Session statuses, as they appear in the API's "status" field.
const (
	StatusPairing        = "pairing"
	StatusPairingTimeout = "pairing_timeout"
	StatusConnecting     = "connecting"
	StatusConnected      = "connected"
	StatusDisconnected   = "disconnected"
	StatusLoggedOut      = "logged_out"
	StatusBanned         = "banned"
)

// Receipt kinds reported through Handler.OnReceipt.
const (
	ReceiptDelivered = "delivered"
	ReceiptRead      = "read"
)

// ErrNotOnWhatsApp is returned by Send when the recipient has no WhatsApp account.
var ErrNotOnWhatsApp = errors.New("recipient is not on WhatsApp")

// SendError is a send the network refused. Code is one of the contract's
// message error codes (for example "send_failed", "session_not_connected",
// "recipient_not_on_whatsapp"); Message says what happened in a sentence.
type SendError struct {
	Code    string
	Message string
}

func (e *SendError) Error() string { return e.Code + ": " + e.Message }

// Driver opens transports for sessions. One Driver value serves every session
// of its kind.
type Driver interface {
	// Name is the driver's API name ("sandbox", "whatsmeow").
	Name() string
	// Open starts the transport for one session. The caller guarantees at most
	// one open Transport per (workspace, sessionID). The implementation must
	// report the session's status through h.OnStatus as it changes, starting
	// with the first status it reaches, and must not call h after Close or
	// Logout returned.
	Open(ctx context.Context, ref SessionRef, h Handler) (Transport, error)
}

// SessionRef names a session.
type SessionRef struct {
	Workspace string
	SessionID string // the phone number, digits only with country code
}

// Transport is one session's connection to WhatsApp: the only place that
// knows how messages travel. Methods may be called from several goroutines.
type Transport interface {
	// Send delivers one text message. req.ID is the WhatsApp message id the
	// caller chose when the message was queued; sending the same ID twice
	// (after a crash) must not produce two messages for the recipient where the
	// network allows that. On success it returns the id WhatsApp knows the
	// message by and the server timestamp. A refusal is a *SendError.
	Send(ctx context.Context, req SendRequest) (SendResult, error)
	// CheckNumbers tells, for each number (digits only), whether it is on
	// WhatsApp. The result has one entry per input, in order.
	CheckNumbers(ctx context.Context, numbers []string) ([]bool, error)
	// Close disconnects, keeping the device state so the session can reopen.
	Close() error
	// Logout ends the session on WhatsApp and deletes its device state.
	Logout(ctx context.Context) error
}

// LocalNumbers is implemented by transports whose CheckNumbers answers from
// local rules, without asking the network (the sandbox). Callers ask them
// directly instead of caching the answers.
type LocalNumbers interface {
	NumbersAreLocal()
}

// SendRequest is one outbound text message.
type SendRequest struct {
	ID   string // WhatsApp message id chosen at queue time
	To   string // digits only
	Text string
}

// SendResult is what the network answered to a send.
type SendResult struct {
	WAMessageID string
	Timestamp   time.Time
}

// Receipt is a delivery or read report for a message this session sent.
type Receipt struct {
	WAMessageIDs []string
	Kind         string // ReceiptDelivered or ReceiptRead
	Timestamp    time.Time
}

// Inbound is a message this session received.
type Inbound struct {
	WAMessageID string
	From        string // phone number, digits only; empty when only FromLID is known
	FromLID     string // set when WhatsApp addressed the sender by an unmapped LID
	Type        string // "text", "image", "video", "audio", "document", "sticker", …
	Text        string
	Caption     string
	// RefersTo is the WhatsApp id of the message this one quotes (a reply),
	// reacts to, edits, revokes or votes in; empty when there is none.
	RefersTo  string
	Timestamp time.Time
}

// StatusChange is a session status transition with a reason where known.
type StatusChange struct {
	Status string
	Reason string
	// Unlinked: the session's device is gone (logged out, or a ban that
	// unlinked it); it has none until it is paired again.
	Unlinked bool
}

// Handler receives a session's events. Implementations must be safe for
// concurrent use and must not block for long: the transport calls them from
// its own goroutines.
type Handler interface {
	OnStatus(StatusChange)
	OnReceipt(Receipt)
	OnInbound(Inbound)
}

// StoringHandler is a Handler that can say when an inbound message or a
// receipt is stored for good. A transport that acknowledges events to the
// network (whatsmeow) calls these instead of OnInbound and OnReceipt and
// acknowledges only on nil: the network does not send an acknowledged event
// again, so one acknowledged and then lost in a crash would be lost for
// ever. On an error (or ctx's end) it must not acknowledge, and the network
// sends the event again later.
type StoringHandler interface {
	Handler
	StoreInbound(ctx context.Context, m Inbound) error
	StoreReceipt(ctx context.Context, r Receipt) error
}

// SentTextFinder is implemented by handlers that can give back the text of
// a message the session sent, by its WhatsApp id. A recipient whose phone
// could not decrypt a message asks for it again (a retry receipt), often
// long after the network client forgot it; without the text the recipient
// is left with "waiting for this message".
type SentTextFinder interface {
	SentText(waMessageID string) (text string, ok bool)
}

// InboundSimulator is implemented by transports of simulated networks (the
// sandbox): it makes the session receive a text message as if from a contact.
type InboundSimulator interface {
	// SimulateInbound makes the session receive text from the number
	// from; refersTo, if set, is the WhatsApp id of the message it quotes.
	// It returns once the handler has the message: once it is stored, with
	// the handler's error, when the handler is a StoringHandler.
	SimulateInbound(ctx context.Context, from, text, refersTo string) error
}

// Pairer is implemented by transports of networks that need a device to be
// linked before use (whatsmeow). While pairing, the transport reports status
// "pairing"; when the codes run out without a scan, "pairing_timeout".
type Pairer interface {
	// QR returns the QR code currently on offer (the string to encode in the
	// image) and when it expires. It fails if the session is not pairing.
	QR() (code string, expiresAt time.Time, err error)
	// PairingCode asks for an 8-character code ("ABCD-EFGH") that the user
	// types on their phone instead of scanning, for the session's own number.
	PairingCode(ctx context.Context) (string, error)
}

// ErrNotPairing is returned by Pairer methods when the session is not
// waiting to be paired.
var ErrNotPairing = errors.New("session is not pairing")

// ReceiptAwaiter is implemented by transports that must be told, after a
// restart, which sent messages still await receipts. WhatsApp's servers keep
// undelivered receipts themselves; the sandbox, whose network lives in this
// process, needs the reminder.
type ReceiptAwaiter interface {
	AwaitReceipts(waMessageIDs []string)
}
