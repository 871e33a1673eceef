// Package whatsmeow is the real-WhatsApp driver of the appliance: a
// whatsapp.Driver on top of go.mau.fi/whatsmeow (WhatsApp Web's multi-device
// protocol), one whatsmeow.Client per session.
//
// # Using it
//
//	d, err := whatsmeow.New(whatsmeow.Options{DBPath: filepath.Join(dataDir, "whatsmeow.db"), Logger: log})
//	tr, err := d.Open(ctx, whatsapp.SessionRef{Workspace: ws, SessionID: number}, handler)
//	code, expiresAt, err := tr.(whatsapp.Pairer).QR()   // while status is "pairing"
//	png, err := whatsmeow.QRPNG(code, 256)               // for GET …/qr.png
//	…
//	d.Close()                                            // on shutdown
//
// Statuses reported through Handler.OnStatus, always with a reason:
// "connecting" (from Open, and after pairing until the fresh login),
// "pairing" (QR codes on offer), "pairing_timeout" (codes ran out, or the
// pre-login socket closed; no retry: Close and Open the session again to
// get new codes), "connected" (only on whatsmeow's events.Connected: socket
// up AND logged in), "disconnected" (socket lost or connect failed: a retry
// is scheduled and the reason says when; or a permanent stop — stream
// replaced by another client, client outdated, a 4xx connect failure — and
// the reason says "not retrying"/what to do), "logged_out" (device unlinked
// on the phone or by WhatsApp, logout on connect, or a phone with a
// different number tried to pair; device state is gone, pair again),
// "banned" (temporary ban; retried when it expires if WhatsApp said when).
//
// # whatsmeow features used
//
//   - Client.ConnectContext / Disconnect; EnableAutoReconnect = false and
//     DisableLoginAutoReconnect = true, because the driver reconnects itself
//     (capped exponential backoff with jitter on an injectable clock, stop on
//     permanent failures); the 515 "log in again" after pairing arrives as
//     events.ManualLoginReconnect and reconnects at once.
//   - Client.SynchronousAck and EnableDecryptedEventBuffer, with the handler
//     added by AddEventHandlerWithSuccessStatus: a message or receipt is
//     acknowledged to WhatsApp only once the appliance stored it
//     (whatsapp.StoringHandler), and its plaintext is kept until then, so
//     one WhatsApp sends again after a crash can still be decrypted.
//   - Client.GetMessageForRetry: a recipient's retry receipt for a message
//     whatsmeow no longer holds (it keeps the last 256) is answered with the
//     text from the appliance's log (whatsapp.SentTextFinder).
//   - Pairing: events.QR (the driver rotates the codes on its own clock with
//     GetQRChannel's schedule: first code 60 s, then 20 s each; GetQRChannel
//     itself is not used because its timers are wall-clock only),
//     Client.PairPhone for pairing codes, Client.PrePairCallback to refuse a
//     phone whose number is not the session id before any device is stored,
//     events.PairSuccess / PairError.
//   - Client.SendMessage with SendRequestExtra{ID: the id the appliance chose
//     at queue time}, so a resend after a crash reuses the WhatsApp id; the
//     ack's timestamp is returned. Errors: ErrNotLoggedIn/ErrNotConnected/
//     DisconnectedError → session_not_connected (the appliance keeps the
//     message queued); ErrMessageTimedOut/ErrIQTimedOut/deadline →
//     send_timeout; ErrServerReturnedError ("server returned error 463") and
//     anything else → send_failed with the text kept.
//   - Client.IsOnWhatsApp for CheckNumbers (Options.CheckBatch per query).
//   - events.Receipt ("" → delivered, "read"/"played" → read; our own
//     devices' and retry/server-error receipts ignored), events.Message
//     (every type mapped, unknown ones as "unknown"; our own, status,
//     broadcast, group and newsletter messages ignored; LID senders mapped to
//     phone numbers via MessageSource.SenderAlt, then Store.LIDs.GetPNForLID,
//     else From is empty and FromLID set; the message a reply quotes, a
//     reaction or poll vote targets or an edit or revoke changes, as
//     RefersTo, from ContextInfo.StanzaID or the message key), Connected, Disconnected,
//     KeepAliveTimeout/Restored, LoggedOut, StreamReplaced, TemporaryBan,
//     ClientOutdated, ConnectFailure, StreamError.
//   - Client.Logout (remote unlink + local delete) or, offline,
//     Store.Delete.
//   - store.SetOSInfo(Options.DeviceName): the name under "Linked devices".
//
// # Device state
//
// One SQLite file (Options.DBPath, normally <data-dir>/whatsmeow.db, mode
// 0600) opened with modernc.org/sqlite (pure Go, CGO_ENABLED=0) with foreign
// keys on (whatsmeow refuses to run without them and relies on ON DELETE
// CASCADE), WAL, a 10 s busy timeout and immediate write transactions. It
// holds whatsmeow's own sqlstore tables (whatsmeow_device and the Signal,
// pre-key, app-state, LID-map… tables, all keyed by the device JID; the
// schema is whatsmeow's and upgraded by Container.Upgrade on every start)
// for every session's device, plus one table of ours:
//
//	walytic_session_device(workspace, session_id, device_jid, paired_at)
//	    PRIMARY KEY (workspace, session_id)
//
// written on PairSuccess and deleted on Logout / LoggedOut. Open looks the
// session up there; a mapping whose device row is gone (whatsmeow deletes it
// when WhatsApp logs the device out) is dropped and the session starts
// unpaired. There is no foreign key from our table to whatsmeow's, so
// whatsmeow's table rebuilds in future upgrades cannot trip over it.
//
// # Upgrading whatsmeow
//
// Bump go.mau.fi/whatsmeow (and go.mau.fi/util, libsignal as it asks), then
// re-check, in this order:
//   - connectionevents.go: which stream-error codes and failure reasons map
//     to which events, and which of them call expectDisconnect (no
//     events.Disconnected follows) — session.handleEvent relies on that to
//     know when it must schedule the reconnect itself.
//   - client.go: EnableAutoReconnect / DisableLoginAutoReconnect still exist
//     and mean the same; Disconnect still emits no event.
//   - pair.go / qrchan.go: PrePairCallback semantics, the QR timeouts, the
//     pair-success node layout (the fake server builds it).
//   - send.go / errors.go: SendRequestExtra.ID and Timeout, the error values
//     mapSendError matches ("server returned error N").
//   - types/events: Receipt types, MessageSource.SenderAlt, LoggedOut,
//     TemporaryBan; types.MessageInfo fields used by inboundFrom.
//   - proto/waE2E.Message: new message kinds for classify, and that quotable
//     kinds still carry their ContextInfo in a field named contextInfo
//     (quotedID finds it by reflection).
//   - store/sqlstore: New/NewWithDB/Upgrade, the foreign-key requirement,
//     GetDevice/NewDevice/Delete.
//   - handshake.go, socket/, binary/: the fake server (fakewa) reimplements
//     the server side of the Noise handshake and framing, and uses
//     WACertPubKey, WACertIssuerSerial and AdvAccountSignaturePrefix; run
//     `go test -race ./appliance/whatsapp/whatsmeow/...` — a protocol change
//     shows up there first.
//
// WhatsApp also rejects outdated clients (405, reported as "disconnected …
// outdated"): ship whatsmeow updates regularly.
package whatsmeow
