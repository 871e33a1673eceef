package appliance

import "github.com/walytic/appliance/storage"

// Event types of the webhook contract.
const (
	EventMessageReceived     = "message.received"
	EventMessageSent         = "message.sent"
	EventMessageDelivered    = "message.delivered"
	EventMessageRead         = "message.read"
	EventMessageFailed       = "message.failed"
	EventSessionConnected    = "session.connected"
	EventSessionDisconnected = "session.disconnected"
	EventSessionLoggedOut    = "session.logged_out"
)

// Event is an alias of the stored event record, so the domain and the
// outbox share one shape.
type Event = storage.Event

// EventSink receives the domain's events.
//
// Stage is called with the batch that records the state change causing the
// event, before that batch commits; an implementation that persists events
// (the webhook outbox) must write them into b, so the change and its event
// commit together or not at all. Stage must not block or do I/O outside b.
// It is called from many goroutines. Status changes from receipts commit
// without waiting for an fsync: an implementation that acts on its events
// must wait for the batch to be on disk (storage.Batch.OnDurable), or a
// crash could undo a change it already announced.
//
// Committed is called after a batch holding staged events has committed
// (synced or not), so a deliverer can wake.
//
// Wants reports whether Stage would keep an event of this type for the
// workspace; the hot paths skip building events nobody subscribed to.
type EventSink interface {
	Wants(workspace, eventType string) bool
	Stage(b *storage.Batch, ev Event) error
	Committed()
}

// discardEvents is the sink used when no webhook deliverer is configured.
type discardEvents struct{}

func (discardEvents) Wants(string, string) bool         { return false }
func (discardEvents) Stage(*storage.Batch, Event) error { return nil }
func (discardEvents) Committed()                        {}
