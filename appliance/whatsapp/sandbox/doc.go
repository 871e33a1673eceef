// Package sandbox is the simulated WhatsApp network: a whatsapp.Driver whose
// transports accept, refuse and acknowledge messages by fixed rules, so the
// whole appliance can be run, tested and benchmarked without WhatsApp. It owns
// only the simulated network's in-memory state (the messages of each open
// transport that still owe receipts). It must not touch storage or HTTP:
// callers persist what the Handler reports, exactly as with the real driver.
//
// Rules (numbers are digits only; a "suffix" is the end of the number):
//
//	Number             CheckNumbers  Send
//	ends in 0000       false         *whatsapp.SendError{Code: "recipient_not_on_whatsapp"}
//	ends in 0001       true          *whatsapp.SendError{Code: "send_failed"} (simulated failure)
//	anything else      true          success, then "delivered" and "read" receipts
//	(any, after Close) error         *whatsapp.SendError{Code: "session_not_connected"}
//
// A successful Send returns the request's ID when it looks like a WhatsApp id
// (see IsMessageID), otherwise a new one from NewMessageID, and the current
// time of Options.Now. The transport then reports, through Handler.OnReceipt,
// one "delivered" receipt after Options.DeliveredAfter (150 ms by default) and
// one "read" receipt after Options.ReadAfter (400 ms by default), both counted
// from the send; delivered always comes before read. Sending an ID whose
// receipts are still pending returns the first send's result again and
// schedules nothing, so a retried send is not acknowledged twice.
//
// Other events:
//
//   - Open reports StatusChange{Status: "connected", Reason: "sandbox session"}
//     through h.OnStatus before it returns; the sandbox never reports another
//     status (Close and Logout report nothing: the caller records
//     disconnected or logged_out itself).
//   - SimulateInbound (whatsapp.InboundSimulator) hands h a message with a new
//     id, the sender, Type "text", the text and the current time, on the
//     caller's goroutine: through StoreInbound, returning once it is stored,
//     when h is a whatsapp.StoringHandler, else through OnInbound.
//
// Cost: each transport runs a single scheduler goroutine. Because the delays
// are constant, pending messages form one FIFO queue ordered by send time with
// two cursors (next to deliver, next to read); a Send is one short critical
// section and an append, with no goroutine or timer per message. The
// scheduler sleeps until the oldest receipt is due and reports every receipt
// of a kind that is due by then in a single Receipt (whose WAMessageIDs holds
// all their ids). After each report it waits at least Options.Tick (10 ms by
// default) before the next one, so under load receipts are batched and
// arrive at most Tick late.
//
// Close (and Logout) stop the scheduler and wait for Handler calls in
// progress to return; after they return the Handler is never called again.
// Receipts still pending at that moment are dropped, as a real network's
// would be while the session is offline. Because they wait, Close and Logout
// must not be called from inside a Handler method of the same transport.
//
// Timestamps come from Options.Now (time.Now by default); the delays are
// measured with the runtime's monotonic clock and real timers.
package sandbox
