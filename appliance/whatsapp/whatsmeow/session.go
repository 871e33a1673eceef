package whatsmeow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/walytic/appliance/appliance/whatsapp"
)

// session is one whatsmeow session: the whatsapp.Transport and Pairer the
// appliance holds, and the state machine behind the statuses it reports.
//
// Connection lifecycle (all timers on opts.Clock):
//
//	start ─▶ connecting ─connect()─▶ (unpaired) QR codes ─▶ pairing ─codes run out─▶ pairing_timeout (stop)
//	                                 │                       └─PairSuccess─▶ connecting ─515─▶ reconnect ─▶ connected
//	                                 └─(paired) <success>─▶ connected
//	connected ─socket drop─▶ disconnected ─backoff─▶ connect() …
//	logged out / device removed ─▶ logged_out (stop; device rows deleted)
//	temporary ban ─▶ banned (retry when it expires) · client outdated, stream replaced ─▶ disconnected (stop)
type session struct {
	ref  whatsapp.SessionRef
	h    whatsapp.Handler
	c    conn
	opts Options
	log  *slog.Logger

	ctx    context.Context // lives until Close/Logout
	cancel context.CancelFunc

	onClosed func()

	mu         sync.Mutex
	closed     bool // Close or Logout called: no more handler calls, no reconnects
	stopped    bool // a permanent condition: no reconnects until reopened
	connecting bool // a connect() call is in flight
	again      bool // reconnect once the in-flight connect() returns
	// connectDue: a retry came due while a connect() was still in flight (the
	// socket can log in and drop before connect() returns); connect again
	// once it does, or the retry would be lost.
	connectDue bool
	// online: WhatsApp logged the session in (Connected) and the socket has
	// not dropped since. Kept here because asking whatsmeow while a
	// connect() is in flight races inside its socket code.
	online bool
	// hasDevice: the session has a paired device (at start, or since
	// PairSuccess). Kept here because whatsmeow writes its store's ID from
	// its pairing goroutine without a lock.
	hasDevice  bool
	attempt    int // failed connection attempts since the last login
	retry      Timer
	loginTimer Timer
	// Pairing.
	pairing      bool
	qrCodes      []string
	qrIdx        int
	qrExpires    time.Time
	qrTimer      Timer
	pairDeadline time.Time // set by PairingCode
	rejectReason string    // set by prePair when the phone's number is not ref.SessionID

	// accounts maps a number as written (a Brazilian one with its 9th
	// digit, a Mexican one without the 1) to the account WhatsApp resolved
	// it to, when they differ: a message must go to the account, or it is
	// "sent" to no one. Filled by CheckNumbers; guarded by mu.
	accounts map[string]string

	calls sync.WaitGroup // handler calls in progress

	statusMu sync.Mutex // serialises OnStatus calls
	last     whatsapp.StatusChange
}

func newSession(ref whatsapp.SessionRef, h whatsapp.Handler, c conn, opts Options, log *slog.Logger) *session {
	s := &session{ref: ref, h: h, c: c, opts: opts, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// start reports "connecting" and dials.
func (s *session) start() {
	hasDevice := s.c.paired() // no socket yet: nothing writes the store
	reason := "connecting to WhatsApp"
	if !hasDevice {
		reason = "connecting to WhatsApp to get a QR code for pairing"
	}
	s.report(whatsapp.StatusConnecting, reason)
	s.mu.Lock()
	s.hasDevice = hasDevice
	s.connectLocked()
	s.mu.Unlock()
}

// ---- handler calls ----

func (s *session) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.calls.Add(1)
	return true
}

// report sends a status change unless it repeats the last one.
func (s *session) report(status, reason string) {
	s.reportIf(nil, status, reason)
}

// reportIf reports only when cond (if set) accepts the current status.
func (s *session) reportIf(cond func(cur string) bool, status, reason string) {
	s.reportChange(cond, whatsapp.StatusChange{Status: status, Reason: reason})
}

func (s *session) reportChange(cond func(cur string) bool, c whatsapp.StatusChange) {
	if !s.enter() {
		return
	}
	defer s.calls.Done()
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if cond != nil && !cond(s.last.Status) {
		return
	}
	if c == s.last {
		return
	}
	s.last = c
	s.h.OnStatus(c)
}

// ---- connecting and reconnecting ----

// connectLocked starts a connect() unless one runs or the session stopped.
func (s *session) connectLocked() {
	if s.closed || s.stopped {
		return
	}
	if s.connecting {
		s.connectDue = true
		return
	}
	if s.retry != nil {
		s.retry.Stop()
		s.retry = nil
	}
	s.connecting = true
	s.online = false
	go s.doConnect()
}

func (s *session) doConnect() {
	err := s.c.connect(s.ctx)
	if errors.Is(err, whatsmeow.ErrAlreadyConnected) {
		err = nil
	}
	s.mu.Lock()
	s.connecting = false
	if s.closed {
		s.mu.Unlock()
		s.c.disconnect()
		return
	}
	if s.again {
		// A fresh login was asked for while this connect was in flight.
		s.again = false
		s.connectDue = false
		s.mu.Unlock()
		s.c.disconnect()
		s.mu.Lock()
		s.connectLocked()
		s.mu.Unlock()
		return
	}
	if s.connectDue {
		s.connectDue = false
		s.connectLocked()
		s.mu.Unlock()
		return
	}
	if err != nil {
		if s.stopped {
			s.mu.Unlock()
			return
		}
		d := s.scheduleRetryLocked()
		s.mu.Unlock()
		s.log.Warn("whatsmeow: connect failed", "err", err, "retryIn", d.String())
		s.report(whatsapp.StatusDisconnected, fmt.Sprintf("could not connect to WhatsApp (%v); retrying in %s", err, roundDur(d)))
		return
	}
	if s.hasDevice && !s.online && !s.stopped {
		// Not logged in yet: watch for a login that never comes. (The
		// Connected event may already have arrived, in which case no watch.)
		if s.loginTimer != nil {
			s.loginTimer.Stop()
		}
		s.loginTimer = s.opts.Clock.AfterFunc(s.opts.LoginTimeout, s.loginTimedOut)
	}
	s.mu.Unlock()
}

// scheduleRetryLocked arms the next reconnect and returns its delay.
func (s *session) scheduleRetryLocked() time.Duration {
	d := s.opts.Backoff.Delay(s.attempt, s.opts.Rand())
	s.attempt++
	s.armRetryLocked(d)
	return d
}

func (s *session) armRetryLocked(d time.Duration) {
	if s.retry != nil {
		s.retry.Stop()
	}
	var t Timer
	t = s.opts.Clock.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.retry != t {
			return // replaced or cancelled
		}
		s.retry = nil
		s.connectLocked()
	})
	s.retry = t
}

// loginTimedOut fires when a paired session's socket is up but WhatsApp did
// not log it in within LoginTimeout.
func (s *session) loginTimedOut() {
	if s.isOnline() {
		return
	}
	s.mu.Lock()
	s.loginTimer = nil
	if s.closed || s.stopped || s.connecting {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.c.disconnect()
	s.mu.Lock()
	d := s.scheduleRetryLocked()
	s.mu.Unlock()
	s.report(whatsapp.StatusDisconnected, fmt.Sprintf("WhatsApp did not log the session in within %s; retrying in %s", roundDur(s.opts.LoginTimeout), roundDur(d)))
}

// stopLocked makes the session stop reconnecting and cancels its timers.
func (s *session) stopLocked() {
	s.stopped = true
	s.online = false // whatsmeow closes the socket it stopped for
	s.connectDue = false
	s.stopTimersLocked()
	s.pairing = false
}

func (s *session) stopTimersLocked() {
	for _, t := range []*Timer{&s.retry, &s.loginTimer, &s.qrTimer} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}

func roundDur(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// reconnectNow drops the socket and connects again at once (attempt 0).
func (s *session) reconnectNow() {
	s.c.disconnect()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.stopped {
		return
	}
	s.attempt = 0
	if s.loginTimer != nil {
		s.loginTimer.Stop()
		s.loginTimer = nil
	}
	if s.connecting {
		s.again = true
		return
	}
	s.connectLocked()
}

// ---- whatsmeow events ----

// handleEventStored is the whatsmeow event handler. The client sends
// WhatsApp its acknowledgement of a message or a receipt only after this
// returns, and only if it returns true (SynchronousAck): those are handed to
// the appliance, which answers once they are on disk. WhatsApp sends an
// unacknowledged one again; an acknowledged one lost in a crash would be
// lost for good.
func (s *session) handleEventStored(evt any) bool {
	switch e := evt.(type) {
	case *events.Message:
		return s.onMessage(e)
	case *events.Receipt:
		return s.onReceipt(e)
	}
	s.handleEvent(evt)
	return true
}

// storeTimeout bounds how long an event waits to be stored before it is
// left unacknowledged (WhatsApp then sends it again).
const storeTimeout = 30 * time.Second

// handOver gives the appliance an event: through store when the handler is
// a whatsapp.StoringHandler, reporting true (acknowledge) once it is on
// disk, else through plain. false: not stored, or the session is closing,
// so WhatsApp must not get an acknowledgement.
func (s *session) handOver(what string, store func(context.Context, whatsapp.StoringHandler) error, plain func()) bool {
	if !s.enter() {
		return false
	}
	defer s.calls.Done()
	sh, ok := s.h.(whatsapp.StoringHandler)
	if !ok {
		plain()
		return true
	}
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	if err := store(ctx, sh); err != nil {
		s.log.Warn("whatsmeow: "+what+" not stored, so not acknowledged: WhatsApp will send it again", "err", err)
		return false
	}
	return true
}

// handleEvent maps every event the appliance cares about onto the Handler
// and drives the state machine.
func (s *session) handleEvent(evt any) {
	switch e := evt.(type) {
	case *events.Message:
		s.onMessage(e)
	case *events.Receipt:
		s.onReceipt(e)
	case *events.QR:
		s.onQR(e.Codes)
	case *events.PairSuccess:
		s.onPairSuccess(e)
	case *events.PairError:
		s.onPairError(e)
	case *events.Connected:
		s.onConnected()
	case *events.Disconnected:
		s.onDisconnected()
	case *events.ManualLoginReconnect:
		// Stream error 515: the server wants a fresh login (after pairing,
		// or when it restarts). Reconnect now, not after a backoff. A live
		// session says so: sends meanwhile are refused as not connected and
		// wait for the next status, which "connected" again would not be
		// if nothing came between.
		s.reportIf(func(cur string) bool { return cur == whatsapp.StatusConnected },
			whatsapp.StatusConnecting, "WhatsApp asked for a fresh login; logging in again")
		s.reconnectNow()
	case *events.KeepAliveTimeout:
		s.onKeepAliveTimeout(e)
	case *events.KeepAliveRestored:
		if s.isOnline() {
			s.report(whatsapp.StatusConnected, "keep-alive pings are answered again")
		}
	case *events.LoggedOut:
		s.onLoggedOut(e)
	case *events.StreamReplaced:
		s.mu.Lock()
		s.stopLocked()
		s.mu.Unlock()
		s.report(whatsapp.StatusDisconnected, "another client connected with this session's device keys and WhatsApp closed this connection (is a copy of the data directory running elsewhere?); restart the appliance or reopen the session to reconnect")
	case *events.TemporaryBan:
		s.onTemporaryBan(e)
	case *events.ClientOutdated:
		s.mu.Lock()
		s.stopLocked()
		s.mu.Unlock()
		s.report(whatsapp.StatusDisconnected, "WhatsApp rejected this client version as outdated (405); upgrade walytic, then restart it")
	case *events.ConnectFailure:
		s.onConnectFailure(e)
	case *events.StreamError:
		s.log.Warn("whatsmeow: unknown stream error from WhatsApp", "code", e.Code)
	case *events.QRScannedWithoutMultidevice:
		s.log.Warn("whatsmeow: the QR code was scanned by a phone without multi-device support")
	}
}

// onMessage hands an inbound message over; false: it was not stored (or
// the session is closing), so it must not be acknowledged.
func (s *session) onMessage(e *events.Message) bool {
	in, ok := inboundFrom(s.ctx, e, s.c.pnForLID)
	if !ok {
		return true // not for the appliance (a group, a status, our own)
	}
	return s.handOver("inbound message",
		func(ctx context.Context, sh whatsapp.StoringHandler) error { return sh.StoreInbound(ctx, in) },
		func() { s.h.OnInbound(in) })
}

// messageForRetry is whatsmeow's GetMessageForRetry: the message a
// recipient asks to have sent again, once it has left whatsmeow's memory of
// the last 256 sends (or a restart emptied it), from the appliance's log.
func (s *session) messageForRetry(_, _ types.JID, id types.MessageID) *waE2E.Message {
	f, ok := s.h.(whatsapp.SentTextFinder)
	if !ok {
		return nil
	}
	text, ok := f.SentText(string(id))
	if !ok {
		return nil
	}
	return &waE2E.Message{Conversation: proto.String(text)}
}

// onReceipt is onMessage for receipts.
func (s *session) onReceipt(e *events.Receipt) bool {
	r, ok := receiptFrom(e)
	if !ok {
		return true
	}
	return s.handOver("receipt",
		func(ctx context.Context, sh whatsapp.StoringHandler) error { return sh.StoreReceipt(ctx, r) },
		func() { s.h.OnReceipt(r) })
}

func (s *session) onConnected() {
	s.mu.Lock()
	if s.closed || s.stopped {
		// Stopped for good (stream replaced, unlinked, outdated): whatsmeow
		// may still send Connected from the login that raced the stop.
		s.mu.Unlock()
		return
	}
	// whatsmeow dispatches Connected after its post-login passive request
	// even when that failed because the socket died meanwhile, and then
	// possibly after Disconnected. Taken as a login, it would cancel the
	// reconnect Disconnected armed and leave the session "connected" with
	// no socket. A retry armed and no connect begun since means exactly
	// that: the event is for the socket that died. (Asking whatsmeow
	// whether its socket is up races inside whatsmeow.)
	if s.retry != nil && !s.connecting {
		s.mu.Unlock()
		s.log.Info("whatsmeow: connected event for a socket that is gone; waiting for the reconnect")
		return
	}
	s.attempt = 0
	s.pairing = false
	s.online = true
	for _, t := range []*Timer{&s.retry, &s.loginTimer, &s.qrTimer} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
	s.mu.Unlock()
	reason := "logged in to WhatsApp"
	if jid := s.c.ownJID(); !jid.IsEmpty() {
		reason = "logged in to WhatsApp as linked device " + jid.String()
	}
	s.report(whatsapp.StatusConnected, reason)
}

func (s *session) onDisconnected() {
	s.mu.Lock()
	s.online = false
	if s.closed || s.stopped {
		s.mu.Unlock()
		return
	}
	if s.loginTimer != nil {
		s.loginTimer.Stop()
		s.loginTimer = nil
	}
	if !s.hasDevice {
		// The server closed the pre-login socket: the QR codes it issued on
		// it are void. whatsmeow's QR channel calls this a timeout too.
		wasPairing := s.pairing
		s.stopLocked()
		s.mu.Unlock()
		reason := "WhatsApp closed the connection before a QR code was scanned; reopen the session to get new codes"
		if !wasPairing {
			reason = "WhatsApp closed the connection before handing out QR codes; reopen the session to try again"
		}
		s.report(whatsapp.StatusPairingTimeout, reason)
		return
	}
	d := s.scheduleRetryLocked()
	s.mu.Unlock()
	s.report(whatsapp.StatusDisconnected, fmt.Sprintf("the connection to WhatsApp was lost; reconnecting in %s", roundDur(d)))
}

func (s *session) onKeepAliveTimeout(e *events.KeepAliveTimeout) {
	since := s.opts.Clock.Now().Sub(e.LastSuccess)
	s.reportIf(func(cur string) bool { return cur == whatsapp.StatusConnected || cur == whatsapp.StatusDisconnected },
		whatsapp.StatusDisconnected, fmt.Sprintf("WhatsApp has not answered %d keep-alive ping(s) (last answer %s ago)", e.ErrorCount, roundDur(since)))
	if since <= whatsmeow.KeepAliveMaxFailTime {
		return
	}
	// Like whatsmeow's own auto-reconnect: give up on this socket.
	s.reconnectNow()
}

func (s *session) onLoggedOut(e *events.LoggedOut) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.stopLocked()
	s.mu.Unlock()
	// whatsmeow has deleted the device rows; drop our mapping too.
	if err := s.c.deleteMapping(s.ctx); err != nil {
		s.log.Warn("whatsmeow: forget logged-out device", "err", err)
	}
	reason := "the device was unlinked from the phone (Linked devices) or by WhatsApp; pair the number again"
	status := whatsapp.StatusLoggedOut
	switch {
	case e.OnConnect && e.Reason == events.ConnectFailureUnknownLogout:
		// 406, which WhatsApp Web calls BANNED: pairing again does not help.
		status = whatsapp.StatusBanned
		reason = fmt.Sprintf("WhatsApp refused the login as banned (%s) and unlinked the device; the number is banned: appeal in the WhatsApp app, then pair it again", e.Reason)
	case e.OnConnect:
		reason = fmt.Sprintf("WhatsApp refused the login (%s); the device was unlinked, pair the number again", e.Reason)
	}
	s.reportChange(nil, whatsapp.StatusChange{Status: status, Reason: reason, Unlinked: true})
}

func (s *session) onTemporaryBan(e *events.TemporaryBan) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.stopTimersLocked()
	reason := e.String()
	if e.Expire > 0 {
		// Try again once the ban has expired.
		s.attempt = 0
		s.stopped = false
		s.armRetryLocked(e.Expire + s.opts.Backoff.Delay(0, s.opts.Rand()))
		reason += "; the session reconnects when it expires"
	} else {
		s.stopLocked()
	}
	s.mu.Unlock()
	s.report(whatsapp.StatusBanned, reason)
}

func (s *session) onConnectFailure(e *events.ConnectFailure) {
	msg := e.Reason.String()
	if e.Message != "" {
		msg += " (" + e.Message + ")"
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if int(e.Reason) >= 500 {
		// A server-side failure: try again later.
		d := s.scheduleRetryLocked()
		s.mu.Unlock()
		s.report(whatsapp.StatusDisconnected, fmt.Sprintf("WhatsApp refused the connection: %s; retrying in %s", msg, roundDur(d)))
		return
	}
	s.stopLocked()
	s.mu.Unlock()
	s.report(whatsapp.StatusDisconnected, fmt.Sprintf("WhatsApp refused the connection: %s; not retrying", msg))
}

// ---- pairing ----

func (s *session) onQR(codes []string) {
	if len(codes) == 0 {
		return
	}
	s.mu.Lock()
	if s.closed || s.stopped {
		s.mu.Unlock()
		return
	}
	s.pairing = true
	s.qrCodes = append([]string(nil), codes...)
	s.qrIdx = 0
	s.qrExpires = s.opts.Now().Add(FirstQRTimeout)
	s.armQRLocked(FirstQRTimeout)
	s.mu.Unlock()
	s.report(whatsapp.StatusPairing, "scan the QR code with WhatsApp on the phone (Settings → Linked devices → Link a device), or ask for a pairing code")
}

func (s *session) armQRLocked(d time.Duration) {
	if s.qrTimer != nil {
		s.qrTimer.Stop()
	}
	var t Timer
	t = s.opts.Clock.AfterFunc(d, func() { s.qrExpired(t) })
	s.qrTimer = t
}

// qrExpired moves to the next QR code, or ends the pairing when they ran out
// (unless a pairing code is still valid).
func (s *session) qrExpired(t Timer) {
	s.mu.Lock()
	if s.qrTimer != t || s.closed || !s.pairing {
		s.mu.Unlock()
		return
	}
	s.qrTimer = nil
	now := s.opts.Now()
	if s.qrIdx+1 < len(s.qrCodes) {
		s.qrIdx++
		s.qrExpires = now.Add(NextQRTimeout)
		s.armQRLocked(NextQRTimeout)
		s.mu.Unlock()
		return
	}
	s.qrIdx = len(s.qrCodes)
	if now.Before(s.pairDeadline) {
		s.armQRLocked(s.pairDeadline.Sub(now))
		s.mu.Unlock()
		return
	}
	s.stopLocked()
	s.mu.Unlock()
	s.c.disconnect()
	s.report(whatsapp.StatusPairingTimeout, "no phone linked the session before the QR codes ran out; reopen the session to get new codes")
}

// QR returns the QR code on offer and when it expires.
func (s *session) QR() (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.pairing || s.qrIdx >= len(s.qrCodes) {
		return "", time.Time{}, whatsapp.ErrNotPairing
	}
	return s.qrCodes[s.qrIdx], s.qrExpires, nil
}

// PairingCode asks WhatsApp for an 8-character code ("ABCD-EFGH") the user
// types on the phone whose number is the session id.
func (s *session) PairingCode(ctx context.Context) (string, error) {
	s.mu.Lock()
	ok := !s.closed && s.pairing
	s.mu.Unlock()
	if !ok {
		return "", whatsapp.ErrNotPairing
	}
	code, err := s.c.pairPhone(ctx, s.ref.SessionID)
	if err != nil {
		return "", fmt.Errorf("WhatsApp did not hand out a pairing code: %w", err)
	}
	s.mu.Lock()
	s.pairDeadline = s.opts.Now().Add(PairingCodeValidity)
	s.mu.Unlock()
	return code, nil
}

// prePair is whatsmeow's PrePairCallback: it refuses to link a phone whose
// number is not the session id, before any device is stored.
func (s *session) prePair(jid types.JID, platform, businessName string) bool {
	if samePhone(jid.User, s.ref.SessionID) {
		return true
	}
	s.mu.Lock()
	s.rejectReason = mismatchReason(jid.User, s.ref.SessionID)
	s.mu.Unlock()
	s.log.Warn("whatsmeow: refusing to pair a different number", "phone", jid.User)
	return false
}

func mismatchReason(got, want string) string {
	return fmt.Sprintf("the phone that scanned the code is +%s, not +%s (this session's number); the device was not kept — scan with the phone of +%s", got, want, want)
}

func (s *session) onPairSuccess(e *events.PairSuccess) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.pairing = false
	if s.qrTimer != nil {
		s.qrTimer.Stop()
		s.qrTimer = nil
	}
	if !samePhone(e.ID.User, s.ref.SessionID) {
		// prePair normally refuses this earlier; if it got through, unlink.
		s.stopLocked()
		s.mu.Unlock()
		if err := s.c.logout(s.ctx); err != nil {
			s.log.Warn("whatsmeow: unlink wrongly paired device", "err", err)
			s.c.disconnect()
			if derr := s.c.deleteDevice(s.ctx); derr != nil {
				s.log.Error("whatsmeow: delete wrongly paired device", "err", derr)
			}
		}
		_ = s.c.deleteMapping(s.ctx)
		s.report(whatsapp.StatusLoggedOut, mismatchReason(e.ID.User, s.ref.SessionID))
		return
	}
	s.hasDevice = true
	s.mu.Unlock()
	if err := s.c.saveMapping(s.ctx, e.ID); err != nil {
		s.log.Error("whatsmeow: remember paired device", "err", err, "device", e.ID.String())
	}
	s.reportIf(func(cur string) bool { return cur != whatsapp.StatusConnected },
		whatsapp.StatusConnecting, "paired with the phone; logging in")
}

func (s *session) onPairError(e *events.PairError) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	reason := s.rejectReason
	s.stopLocked()
	s.mu.Unlock()
	if reason == "" {
		reason = fmt.Sprintf("linking the phone failed (%v); reopen the session to pair again", e.Error)
	}
	s.report(whatsapp.StatusLoggedOut, reason)
}

// ---- Transport ----

// isOnline reports whether WhatsApp has logged the session in and the socket
// has not dropped since (see online).
func (s *session) isOnline() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.online
}

func notConnected(msg string) *whatsapp.SendError {
	return &whatsapp.SendError{Code: "session_not_connected", Message: msg}
}

// Send delivers one text message with the id chosen at queue time.
func (s *session) Send(ctx context.Context, req whatsapp.SendRequest) (whatsapp.SendResult, error) {
	s.mu.Lock()
	closed, online := s.closed, s.online
	s.mu.Unlock()
	if closed {
		return whatsapp.SendResult{}, notConnected("the session is closed")
	}
	if !online {
		return whatsapp.SendResult{}, notConnected("the session is not connected to WhatsApp")
	}
	// SendTimeout bounds the wait for the server's ack, but whatsmeow
	// re-sends a message interrupted by a socket drop and then waits for
	// the ack with no timeout, holding the session's dispatcher: the whole
	// send gets twice as long, then ends in send_timeout (which a receipt
	// for the message lifts, should it have arrived).
	ctx, cancel := context.WithTimeout(ctx, 2*s.opts.SendTimeout)
	defer cancel()
	user, err := s.accountOf(ctx, req.To)
	if err != nil {
		return whatsapp.SendResult{}, err
	}
	to := types.NewJID(user, types.DefaultUserServer)
	resp, err := s.c.send(ctx, to, req.Text, req.ID)
	if err != nil {
		return whatsapp.SendResult{}, mapSendError(ctx, err)
	}
	id := string(resp.ID)
	if id == "" {
		id = req.ID
	}
	return whatsapp.SendResult{WAMessageID: id, Timestamp: resp.Timestamp}, nil
}

// accountOf returns the WhatsApp account a number is addressed as. Numbers
// of the countries whose written form can differ from the account's
// (samePhone) are resolved through CheckNumbers once, if no check did it
// already; any other number is its own account.
func (s *session) accountOf(ctx context.Context, number string) (string, error) {
	number = strings.TrimPrefix(number, "+")
	if !ambiguousNumber(number) {
		return number, nil
	}
	s.mu.Lock()
	acct, ok := s.accounts[number]
	s.mu.Unlock()
	if ok {
		return acct, nil
	}
	on, err := s.CheckNumbers(ctx, []string{number})
	if err != nil {
		var se *whatsapp.SendError
		if errors.As(err, &se) {
			return "", se
		}
		return "", &whatsapp.SendError{Code: "send_failed", Message: err.Error()}
	}
	if !on[0] {
		return "", &whatsapp.SendError{Code: "recipient_not_on_whatsapp", Message: "+" + number + " has no WhatsApp account"}
	}
	s.mu.Lock()
	acct, ok = s.accounts[number]
	s.mu.Unlock()
	if ok {
		return acct, nil
	}
	return number, nil
}

// maxAccounts bounds the resolved-number map of a session; past it the map
// starts afresh (an entry costs one number check to make again).
const maxAccounts = 100_000

func (s *session) noteAccount(number, account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accounts == nil || len(s.accounts) >= maxAccounts {
		s.accounts = map[string]string{}
	}
	s.accounts[number] = account
}

// ambiguousNumber reports whether a number's written form may differ from
// its WhatsApp account's: Brazil (55) mobile numbers written with or
// without the 9th digit, Mexico (52) ones with or without the 1.
func ambiguousNumber(n string) bool {
	return strings.HasPrefix(n, "55") || strings.HasPrefix(n, "52")
}

// samePhone reports whether two numbers are one phone as WhatsApp sees
// it: equal, or a Brazilian mobile number with and without the 9 after its
// two-digit area code, or a Mexican one with and without the 1 after 52.
func samePhone(a, b string) bool {
	if a == b {
		return true
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	switch {
	case strings.HasPrefix(a, "55") && len(a) == 12 && len(b) == 13:
		// 55 DD XXXXXXXX and 55 DD 9 XXXXXXXX
		return strings.HasPrefix(b, "55") && b[:4] == a[:4] && b[4] == '9' && b[5:] == a[4:]
	case strings.HasPrefix(a, "52") && len(a) == 12 && len(b) == 13:
		// 52 XXXXXXXXXX and 52 1 XXXXXXXXXX
		return strings.HasPrefix(b, "521") && b[3:] == a[2:]
	}
	return false
}

// mapSendError turns whatsmeow's send errors into the contract's codes.
func mapSendError(ctx context.Context, err error) *whatsapp.SendError {
	var disc *whatsmeow.DisconnectedError
	switch {
	case errors.Is(err, whatsmeow.ErrNotLoggedIn), errors.Is(err, whatsmeow.ErrNotConnected),
		errors.Is(err, whatsmeow.ErrClientIsNil), errors.As(err, &disc):
		return notConnected("the connection to WhatsApp dropped before the message was sent (" + err.Error() + ")")
	case errors.Is(err, socket.ErrSocketClosed),
		strings.HasPrefix(err.Error(), "failed to send message node") && errors.Is(err, context.Canceled):
		// The frame was not written because the socket was closing: nothing
		// reached WhatsApp, and the drop is reported, so it waits for the
		// reconnect. (Other write errors, such as a frame too large, would
		// fail the same way every time, and fail below.)
		return notConnected("the message could not be written to the connection to WhatsApp (" + err.Error() + ")")
	case errors.Is(err, whatsmeow.ErrIQTimedOut):
		// A query before the message (the recipient's devices, say): the
		// message was not sent. Final, so one recipient whose queries keep
		// timing out cannot hold the queue behind it.
		return &whatsapp.SendError{Code: "send_failed", Message: "WhatsApp did not answer a query made before the send, so the message was not sent (" + err.Error() + "); send it again"}
	case errors.Is(err, whatsmeow.ErrMessageTimedOut), errors.Is(err, context.DeadlineExceeded):
		return &whatsapp.SendError{Code: "send_timeout", Message: "WhatsApp did not confirm the message in time (" + err.Error() + ")"}
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return notConnected("the send was interrupted (" + err.Error() + ")")
	case errors.Is(err, whatsmeow.ErrServerReturnedError):
		return &whatsapp.SendError{Code: "send_failed", Message: "WhatsApp refused the message: " + err.Error()}
	}
	return &whatsapp.SendError{Code: "send_failed", Message: "the message could not be sent: " + err.Error()}
}

// CheckNumbers asks WhatsApp which numbers have an account, CheckBatch
// numbers per query.
func (s *session) CheckNumbers(ctx context.Context, numbers []string) ([]bool, error) {
	out := make([]bool, len(numbers))
	if len(numbers) == 0 {
		return out, nil
	}
	if !s.isOnline() {
		return nil, notConnected("the session is not connected to WhatsApp")
	}
	for start := 0; start < len(numbers); start += s.opts.CheckBatch {
		end := min(start+s.opts.CheckBatch, len(numbers))
		phones := make([]string, 0, end-start)
		for _, n := range numbers[start:end] {
			phones = append(phones, "+"+strings.TrimPrefix(n, "+"))
		}
		res, err := s.c.isOnWhatsApp(ctx, phones)
		if err != nil {
			if se := mapSendError(ctx, err); se.Code != "send_failed" {
				return nil, se
			}
			return nil, fmt.Errorf("checking numbers on WhatsApp: %w", err)
		}
		on := make(map[string]bool, len(res))
		for _, r := range res {
			if !r.IsIn {
				continue
			}
			q := strings.TrimPrefix(r.Query, "+")
			if q != "" {
				on[q] = true
			}
			if r.JID.User != "" {
				on[r.JID.User] = true
				if q != "" && ambiguousNumber(q) && samePhone(q, r.JID.User) {
					// Also when the account is the number as written: else
					// every send to it asks WhatsApp again.
					s.noteAccount(q, r.JID.User)
				}
			}
		}
		for i, n := range numbers[start:end] {
			out[start+i] = on[strings.TrimPrefix(n, "+")]
		}
	}
	return out, nil
}

// Close disconnects, keeping the device so the session reopens paired.
func (s *session) Close() error {
	if !s.shut() {
		return nil
	}
	s.endConnectInFlight()
	s.c.disconnect()
	s.finish()
	return nil
}

// endConnectInFlight cancels the session's context if a connect is under
// way: it holds whatsmeow's socket lock, which disconnect needs, until its
// context ends, so a dial that hangs would hold DELETE, a restart or
// shutdown with it. (Not otherwise: cancelled under a live socket,
// whatsmeow's read pump reads a flag its Close writes, unsynchronised.)
func (s *session) endConnectInFlight() {
	s.mu.Lock()
	connecting := s.connecting
	s.mu.Unlock()
	if connecting {
		s.cancel()
	}
}

// Logout unlinks the device on WhatsApp (when connected) and deletes its
// state, so the number can be paired afresh.
func (s *session) Logout(ctx context.Context) error {
	online := s.isOnline()
	if !s.shut() {
		return nil
	}
	defer s.finish()
	var err error
	if online {
		if lerr := s.c.logout(ctx); lerr != nil {
			s.log.Warn("whatsmeow: WhatsApp did not confirm the logout; deleting the device locally (the phone may list it until WhatsApp prunes it)", "err", lerr)
		}
	}
	s.endConnectInFlight()
	s.c.disconnect()
	if derr := s.c.deleteDevice(ctx); derr != nil {
		err = fmt.Errorf("whatsmeow: delete device state: %w", derr)
	}
	if merr := s.c.deleteMapping(ctx); merr != nil && err == nil {
		err = fmt.Errorf("whatsmeow: %w", merr)
	}
	return err
}

// shut marks the session closed; false if it already was.
func (s *session) shut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	s.stopTimersLocked()
	s.pairing = false
	return true
}

func (s *session) finish() {
	s.cancel()
	s.calls.Wait()
	if s.onClosed != nil {
		s.onClosed()
	}
}
