package whatsmeow

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/walytic/appliance/appliance/whatsapp"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300}
	for i, w := range want {
		if got := b.Delay(i, 0.5); got != w*time.Second {
			t.Errorf("Delay(%d) = %v, want %v", i, got, w*time.Second)
		}
	}
	if got := b.Delay(0, 0); got != 800*time.Millisecond {
		t.Errorf("lowest jitter: %v, want 800ms", got)
	}
	if got := b.Delay(3, 0.999999); got < 9590*time.Millisecond || got > 9600*time.Millisecond {
		t.Errorf("highest jitter: %v, want ~9.6s", got)
	}
	if got := b.Delay(1000, 0.5); got != 5*time.Minute {
		t.Errorf("huge attempt: %v", got)
	}
	if got := (Backoff{Initial: time.Second, Max: time.Minute, Jitter: -1}).Delay(2, 0); got != 4*time.Second {
		t.Errorf("no jitter: %v", got)
	}
}

func TestReconnectBackoffOnFakeClock(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(true)
	boom := errors.New("dial tcp: connection refused")
	fc.connectErrs = []error{boom, boom, boom}
	s, rec := newTestSession(t, fc, clk)
	s.start()
	if got := rec.snapshot(); len(got) == 0 || got[0].Status != whatsapp.StatusConnecting {
		t.Fatalf("first status %+v, want connecting", got)
	}
	// Attempt 1 fails → retry in 1s, then 2s, then 4s.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		fc.waitConnects(t, i+1)
		st := rec.waitStatus(t, whatsapp.StatusDisconnected, 2*time.Second)
		rec.waitFor(t, "retry reason", 2*time.Second, func() bool {
			return contains(rec.last().Reason, fmt.Sprintf("retrying in %s", wait))
		})
		_ = st
		clk.Advance(wait - time.Millisecond)
		if c, _ := fc.counts(); c != i+1 {
			t.Fatalf("reconnected early: %d connects before %v passed", c, wait)
		}
		clk.Advance(time.Millisecond)
	}
	fc.waitConnects(t, 4)
	// The fourth attempt succeeds; WhatsApp logs us in.
	s.handleEvent(&events.Connected{})
	st := rec.waitStatus(t, whatsapp.StatusConnected, time.Second)
	if !contains(st.Reason, "919876543210") {
		t.Errorf("connected reason %q lacks the device", st.Reason)
	}
	// The socket drops: the backoff starts again at 1s.
	s.handleEvent(&events.Disconnected{})
	st = rec.waitStatus(t, whatsapp.StatusDisconnected, time.Second)
	if !contains(st.Reason, "reconnecting in 1s") {
		t.Errorf("reason %q", st.Reason)
	}
	clk.Advance(time.Second)
	fc.waitConnects(t, 5)
	s.handleEvent(&events.Connected{})
	rec.waitStatus(t, whatsapp.StatusConnected, time.Second)

	// Logged out from the phone: permanent, mapping forgotten.
	s.handleEvent(&events.LoggedOut{OnConnect: false})
	st = rec.waitStatus(t, whatsapp.StatusLoggedOut, time.Second)
	if !contains(st.Reason, "unlinked") {
		t.Errorf("logged-out reason %q", st.Reason)
	}
	s.handleEvent(&events.Disconnected{})
	clk.Advance(time.Hour)
	time.Sleep(20 * time.Millisecond)
	if c, _ := fc.counts(); c != 5 {
		t.Errorf("reconnected after logout: %d connects", c)
	}
	if fc.mapDeletes != 1 {
		t.Errorf("mapping deletes = %d, want 1", fc.mapDeletes)
	}
	if len(clk.pending()) != 0 {
		t.Errorf("timers still pending: %v", clk.pending())
	}
}

func TestPermanentStops(t *testing.T) {
	cases := []struct {
		name   string
		evt    any
		status string
		reason string
		retry  bool // a reconnect follows (after some time)
	}{
		{"logged out on connect", &events.LoggedOut{OnConnect: true, Reason: events.ConnectFailureLoggedOut}, whatsapp.StatusLoggedOut, "401", false},
		{"main device gone", &events.LoggedOut{OnConnect: true, Reason: events.ConnectFailureMainDeviceGone}, whatsapp.StatusLoggedOut, "403", false},
		{"banned on connect", &events.LoggedOut{OnConnect: true, Reason: events.ConnectFailureUnknownLogout}, whatsapp.StatusBanned, "406", false},
		{"temporary ban, no expiry", &events.TemporaryBan{Code: events.TempBanSentToTooManyPeople}, whatsapp.StatusBanned, "temporarily banned", false},
		{"temporary ban with expiry", &events.TemporaryBan{Code: events.TempBanBlockedByUsers, Expire: time.Hour}, whatsapp.StatusBanned, "reconnects when it expires", true},
		{"client outdated", &events.ClientOutdated{}, whatsapp.StatusDisconnected, "outdated", false},
		{"stream replaced", &events.StreamReplaced{}, whatsapp.StatusDisconnected, "another client", false},
		{"bad user agent", &events.ConnectFailure{Reason: events.ConnectFailureBadUserAgent}, whatsapp.StatusDisconnected, "not retrying", false},
		{"server error", &events.ConnectFailure{Reason: events.ConnectFailureInternalServerError}, whatsapp.StatusDisconnected, "retrying in 1s", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk, fc, s, rec := newConnectedTestSession(t)

			s.handleEvent(c.evt)
			st := rec.waitStatus(t, c.status, time.Second)
			if !contains(st.Reason, c.reason) {
				t.Errorf("reason %q lacks %q", st.Reason, c.reason)
			}
			// A device unlinked (401, 403, and the 406 ban) is said so.
			if _, unlinks := c.evt.(*events.LoggedOut); st.Unlinked != unlinks {
				t.Errorf("unlinked %v, want %v", st.Unlinked, unlinks)
			}
			// A socket close that follows must not start a reconnect either.
			s.handleEvent(&events.Disconnected{})
			clk.Advance(59 * time.Minute)
			time.Sleep(10 * time.Millisecond)
			if n, _ := fc.counts(); n != 1 && !c.retry {
				t.Errorf("%d connects after a permanent stop", n)
			}
			clk.Advance(2 * time.Minute)
			if c.retry {
				fc.waitConnects(t, 2)
			} else {
				time.Sleep(10 * time.Millisecond)
				if n, _ := fc.counts(); n != 1 {
					t.Errorf("%d connects after a permanent stop", n)
				}
			}
		})
	}
}

func TestPairingQRRotationAndTimeout(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(false)
	s, rec := newTestSession(t, fc, clk)
	if _, _, err := s.QR(); !errors.Is(err, whatsapp.ErrNotPairing) {
		t.Fatalf("QR before codes: %v", err)
	}
	s.start()
	fc.waitConnects(t, 1)
	if st := rec.last(); st.Status != whatsapp.StatusConnecting {
		t.Fatalf("status %+v, want connecting", st)
	}
	codes := []string{"r1,n,i,a", "r2,n,i,a", "r3,n,i,a", "r4,n,i,a", "r5,n,i,a", "r6,n,i,a"}
	s.handleEvent(&events.QR{Codes: codes})
	rec.waitStatus(t, whatsapp.StatusPairing, time.Second)
	start := clk.Now()
	code, exp, err := s.QR()
	if err != nil || code != codes[0] || !exp.Equal(start.Add(60*time.Second)) {
		t.Fatalf("QR = %q %v %v", code, exp, err)
	}
	clk.Advance(60 * time.Second)
	code, exp, _ = s.QR()
	if code != codes[1] || !exp.Equal(start.Add(80*time.Second)) {
		t.Fatalf("second QR = %q %v", code, exp)
	}
	for i := 2; i < 6; i++ {
		clk.Advance(20 * time.Second)
		if code, _, _ = s.QR(); code != codes[i] {
			t.Fatalf("QR %d = %q", i, code)
		}
	}
	if st := rec.last(); st.Status != whatsapp.StatusPairing {
		t.Fatalf("status %+v before the last code expired", st)
	}
	clk.Advance(20 * time.Second)
	st := rec.waitStatus(t, whatsapp.StatusPairingTimeout, time.Second)
	if !contains(st.Reason, "QR codes ran out") {
		t.Errorf("reason %q", st.Reason)
	}
	if _, _, err := s.QR(); !errors.Is(err, whatsapp.ErrNotPairing) {
		t.Errorf("QR after timeout: %v", err)
	}
	if _, err := s.PairingCode(context.Background()); !errors.Is(err, whatsapp.ErrNotPairing) {
		t.Errorf("PairingCode after timeout: %v", err)
	}
	if _, d := fc.counts(); d != 1 {
		t.Errorf("disconnects = %d, want 1", d)
	}
	clk.Advance(time.Hour)
	if n, _ := fc.counts(); n != 1 {
		t.Errorf("reconnected after pairing timeout: %d", n)
	}
}

func TestPairingCodeExtendsTheWait(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(false)
	fc.pairCode = "ABCD-EFGH"
	s, rec := newTestSession(t, fc, clk)
	s.start()
	s.handleEvent(&events.QR{Codes: []string{"a", "b"}})
	rec.waitStatus(t, whatsapp.StatusPairing, time.Second)
	code, err := s.PairingCode(context.Background())
	if err != nil || code != "ABCD-EFGH" {
		t.Fatalf("PairingCode = %q, %v", code, err)
	}
	clk.Advance(80 * time.Second) // both QR codes gone
	if st := rec.last(); st.Status != whatsapp.StatusPairing {
		t.Fatalf("status %+v while the pairing code is valid", st)
	}
	clk.Advance(PairingCodeValidity)
	rec.waitStatus(t, whatsapp.StatusPairingTimeout, time.Second)
}

// newPairingSession starts an unpaired session and shows it QR codes; it
// is pairing when this returns.
func newPairingSession(t *testing.T, codes ...string) (*session, *recorder, *fakeConn, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	fc := newFakeConn(false)
	s, rec := newTestSession(t, fc, clk)
	s.start()
	// As with whatsmeow, whose QR codes come after Connect returned: a
	// pairing that finished while the first connect() was still in flight
	// would arm the login watch, which the tests' clock would then fire.
	waitConnectReturned(t, s)
	s.handleEvent(&events.QR{Codes: codes})
	rec.waitStatus(t, whatsapp.StatusPairing, time.Second)
	return s, rec, fc, clk
}

// waitConnectReturned waits until no connect() call of s is in flight.
func waitConnectReturned(t *testing.T, s *session) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		s.mu.Lock()
		busy := s.connecting
		s.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the first connect() did not return within 2 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPairSuccessSameNumber(t *testing.T) {
	s, rec, fc, clk := newPairingSession(t, "a")
	jid := types.NewADJID("919876543210", 0, 7)
	if !s.prePair(jid, "android", "") {
		t.Fatal("prePair refused the session's own number")
	}
	s.handleEvent(&events.PairSuccess{ID: jid, Platform: "android"})
	st := rec.waitStatus(t, whatsapp.StatusConnecting, time.Second)
	if !contains(st.Reason, "paired") {
		t.Errorf("reason %q", st.Reason)
	}
	if len(fc.saved) != 1 || fc.saved[0] != jid {
		t.Errorf("saved mappings %v", fc.saved)
	}
	// The QR timer is off: no pairing_timeout later.
	clk.Advance(time.Hour)
	if st := rec.last(); st.Status != whatsapp.StatusConnecting {
		t.Errorf("status after an hour: %+v", st)
	}
	// Server asks for a fresh login (515) → immediate reconnect, then Connected.
	fc.mu.Lock()
	fc.isPaired = true
	fc.mu.Unlock()
	s.handleEvent(&events.ManualLoginReconnect{})
	fc.waitConnects(t, 2)
	s.handleEvent(&events.Connected{})
	rec.waitStatus(t, whatsapp.StatusConnected, time.Second)
}

func TestPairSuccessDifferentNumberLogsOut(t *testing.T) {
	s, rec, fc, clk := newPairingSession(t, "a")
	other := types.NewADJID("14155550100", 0, 3)
	s.handleEvent(&events.PairSuccess{ID: other})
	st := rec.waitStatus(t, whatsapp.StatusLoggedOut, time.Second)
	if !contains(st.Reason, "+14155550100") || !contains(st.Reason, "+919876543210") {
		t.Errorf("reason %q should name both numbers", st.Reason)
	}
	if fc.logouts != 1 {
		t.Errorf("logouts = %d, want 1", fc.logouts)
	}
	clk.Advance(time.Hour)
	if n, _ := fc.counts(); n > 1 {
		t.Errorf("reconnected: %d", n)
	}
}

func TestPrePairRejectsDifferentNumber(t *testing.T) {
	s, rec, _, _ := newPairingSession(t, "a")
	other := types.NewADJID("14155550100", 0, 3)
	if s.prePair(other, "iphone", "") {
		t.Fatal("prePair accepted another number")
	}
	// whatsmeow then reports the pairing as failed.
	s.handleEvent(&events.PairError{ID: other, Error: whatsmeow.ErrPairRejectedLocally})
	st := rec.waitStatus(t, whatsapp.StatusLoggedOut, time.Second)
	if !contains(st.Reason, "+14155550100") {
		t.Errorf("reason %q", st.Reason)
	}
}

func TestDisconnectWhilePairingIsTimeout(t *testing.T) {
	s, rec, _, _ := newPairingSession(t, "a")
	s.handleEvent(&events.Disconnected{})
	rec.waitStatus(t, whatsapp.StatusPairingTimeout, time.Second)
}

func TestKeepAliveTimeout(t *testing.T) {
	clk, fc, s, rec := newConnectedTestSession(t)
	s.handleEvent(&events.KeepAliveTimeout{ErrorCount: 1, LastSuccess: clk.Now().Add(-40 * time.Second)})
	st := rec.waitStatus(t, whatsapp.StatusDisconnected, time.Second)
	if !contains(st.Reason, "keep-alive") {
		t.Errorf("reason %q", st.Reason)
	}
	s.handleEvent(&events.KeepAliveRestored{})
	rec.waitStatus(t, whatsapp.StatusConnected, time.Second)
	// Failing for longer than whatsmeow.KeepAliveMaxFailTime: force a reconnect.
	s.handleEvent(&events.KeepAliveTimeout{ErrorCount: 9, LastSuccess: clk.Now().Add(-4 * time.Minute)})
	fc.waitConnects(t, 2)
	if _, d := fc.counts(); d < 1 {
		t.Errorf("no disconnect before the forced reconnect")
	}
}

func TestLoginWatchdog(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(true)
	s, rec := newTestSession(t, fc, clk)
	s.start()
	fc.waitConnects(t, 1)
	// doConnect arms the watchdog after connect returns.
	deadline := time.Now().Add(time.Second)
	for len(clk.pending()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(DefaultLoginTimeout)
	st := rec.waitStatus(t, whatsapp.StatusDisconnected, time.Second)
	if !contains(st.Reason, "did not log the session in") {
		t.Errorf("reason %q", st.Reason)
	}
	clk.Advance(time.Second)
	fc.waitConnects(t, 2)
}

func TestCloseStopsEverything(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(true)
	fc.connectErrs = []error{errors.New("nope")}
	s, rec := newTestSession(t, fc, clk)
	s.start()
	fc.waitConnects(t, 1)
	rec.waitStatus(t, whatsapp.StatusDisconnected, time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := len(rec.snapshot())
	clk.Advance(time.Hour)
	s.handleEvent(&events.Connected{})
	s.handleEvent(&events.Receipt{MessageIDs: []string{"x"}})
	if len(rec.snapshot()) != n || len(rec.receiptList()) != 0 {
		t.Errorf("handler called after Close")
	}
	if c, _ := fc.counts(); c != 1 {
		t.Errorf("connects after Close: %d", c)
	}
	if fc.deletes != 0 {
		t.Errorf("Close deleted the device")
	}
}

func TestLogoutDeletesDevice(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(true)
	s, _ := newTestSession(t, fc, clk)
	s.handleEvent(&events.Connected{}) // WhatsApp logs the session in
	if err := s.Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fc.logouts != 1 || fc.mapDeletes != 1 {
		t.Errorf("logouts=%d mapDeletes=%d", fc.logouts, fc.mapDeletes)
	}
	// Not connected: no remote logout, but local state still goes.
	fc2 := newFakeConn(true)
	s2, _ := newTestSession(t, fc2, clk)
	if err := s2.Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fc2.logouts != 0 || fc2.deletes != 1 || fc2.mapDeletes != 1 {
		t.Errorf("offline logout: logouts=%d deletes=%d mapDeletes=%d", fc2.logouts, fc2.deletes, fc2.mapDeletes)
	}
}

func TestSendMapsErrors(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(true)
	s, _ := newTestSession(t, fc, clk)
	req := whatsapp.SendRequest{ID: "3EB0AABBCCDDEEFF001122", To: "919999999999", Text: "hi"}
	_, err := s.Send(context.Background(), req)
	var se *whatsapp.SendError
	if !errors.As(err, &se) || se.Code != "session_not_connected" {
		t.Fatalf("offline send: %v", err)
	}
	s.handleEvent(&events.Connected{}) // WhatsApp logs the session in
	ts := time.Unix(1_800_000_123, 0)
	var gotTo types.JID
	var gotID, gotText string
	fc.sendFn = func(to types.JID, text, id string) (whatsmeow.SendResponse, error) {
		gotTo, gotText, gotID = to, text, id
		return whatsmeow.SendResponse{ID: types.MessageID(id), Timestamp: ts}, nil
	}
	res, err := s.Send(context.Background(), req)
	if err != nil || res.WAMessageID != req.ID || !res.Timestamp.Equal(ts) {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	if gotTo.String() != "919999999999@s.whatsapp.net" || gotID != req.ID || gotText != "hi" {
		t.Errorf("sent to %v id %q text %q", gotTo, gotID, gotText)
	}
	cases := []struct {
		err  error
		code string
		msg  string
	}{
		{fmt.Errorf("%w %d", whatsmeow.ErrServerReturnedError, 463), "send_failed", "server returned error 463"},
		{whatsmeow.ErrMessageTimedOut, "send_timeout", "timed out"},
		{context.DeadlineExceeded, "send_timeout", ""},
		{whatsmeow.ErrNotLoggedIn, "session_not_connected", ""},
		{fmt.Errorf("failed to send message node: %w", whatsmeow.ErrNotConnected), "session_not_connected", ""},
		{&whatsmeow.DisconnectedError{Action: "message send"}, "session_not_connected", ""},
		{errors.New("failed to get device list: boom"), "send_failed", "boom"},
	}
	for _, c := range cases {
		fc.sendFn = func(types.JID, string, string) (whatsmeow.SendResponse, error) {
			return whatsmeow.SendResponse{}, c.err
		}
		_, err := s.Send(context.Background(), req)
		if !errors.As(err, &se) || se.Code != c.code || !contains(se.Message, c.msg) {
			t.Errorf("%v → %v, want %s containing %q", c.err, err, c.code, c.msg)
		}
	}
}

func TestCheckNumbersBatches(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(true)
	s, _ := newTestSession(t, fc, clk)
	s.opts.CheckBatch = 2
	if _, err := s.CheckNumbers(context.Background(), []string{"1"}); err == nil {
		t.Fatal("CheckNumbers offline succeeded")
	}
	s.handleEvent(&events.Connected{}) // WhatsApp logs the session in
	fc.checkFn = func(phones []string) ([]types.IsOnWhatsAppResponse, error) {
		var out []types.IsOnWhatsAppResponse
		for _, p := range phones {
			u := p[1:]
			out = append(out, types.IsOnWhatsAppResponse{Query: p, JID: types.NewJID(u, types.DefaultUserServer), IsIn: u[len(u)-1] != '0'})
		}
		// answer out of order
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out, nil
	}
	got, err := s.CheckNumbers(context.Background(), []string{"911111111111", "912222222220", "913333333333", "914444444440", "915555555555"})
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, false, true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v want %v", got, want)
	}
	if len(fc.checkCalls) != 3 || len(fc.checkCalls[1]) != 2 || fc.checkCalls[0][0] != "+911111111111" {
		t.Errorf("calls %v", fc.checkCalls)
	}
}

// whatsmeow can dispatch Connected after Disconnected, for a socket that died
// during its post-login passive request. The session must keep the retry
// Disconnected armed, not report connected with no socket.
func TestConnectedForADeadSocketKeepsTheRetry(t *testing.T) {
	clk, fc, s, rec := newConnectedTestSession(t)

	s.handleEvent(&events.Disconnected{})
	rec.waitFor(t, "retry reason", 2*time.Second, func() bool { return contains(rec.last().Reason, "reconnecting in 1s") })
	s.handleEvent(&events.Connected{}) // late, for the dead socket
	time.Sleep(20 * time.Millisecond)
	if st := rec.last(); st.Status != whatsapp.StatusDisconnected {
		t.Fatalf("status %s (%s) after a Connected event for a dead socket, want disconnected", st.Status, st.Reason)
	}
	clk.Advance(time.Second)
	fc.waitConnects(t, 2) // the retry was kept
	s.handleEvent(&events.Connected{})
	rec.waitStatus(t, whatsapp.StatusConnected, time.Second)
}

func TestSamePhone(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"919876543210", "919876543210", true},
		{"5511987654321", "551187654321", true}, // Brazil, with and without the 9th digit
		{"551187654321", "5511987654321", true},
		{"5511887654321", "551187654321", false}, // not a 9 after the area code
		{"5521987654321", "551187654321", false}, // another area code
		{"5215512345678", "525512345678", true},  // Mexico, with and without the 1
		{"5225512345678", "525512345678", false},
		{"4915123456789", "491512345678", false}, // elsewhere, a digit more is another number
	} {
		if got := samePhone(c.a, c.b); got != c.same {
			t.Errorf("samePhone(%s, %s) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

// WhatsApp answers a check of a Brazilian number written with its 9th digit
// with the account's id, which lacks it: sends go to that account (else
// they are "sent" to no one), also when no check came first, and the
// session named with the 9 pairs its own phone.
func TestBrazilianNumbersGoToTheirAccount(t *testing.T) {
	clk := newFakeClock()
	fc := newFakeConn(true)
	s, _ := newTestSession(t, fc, clk)
	s.handleEvent(&events.Connected{})
	fc.checkFn = func(phones []string) ([]types.IsOnWhatsAppResponse, error) {
		var out []types.IsOnWhatsAppResponse
		for _, p := range phones {
			switch p {
			case "+5511987654321":
				out = append(out, types.IsOnWhatsAppResponse{Query: p, JID: types.NewJID("551187654321", types.DefaultUserServer), IsIn: true})
			case "+5511900000000":
				out = append(out, types.IsOnWhatsAppResponse{Query: p, IsIn: false})
			}
		}
		return out, nil
	}
	var sentTo []string
	fc.sendFn = func(to types.JID, text, id string) (whatsmeow.SendResponse, error) {
		sentTo = append(sentTo, to.User)
		return whatsmeow.SendResponse{ID: types.MessageID(id)}, nil
	}
	// No check first (a message queued before a restart): Send resolves.
	if _, err := s.Send(context.Background(), whatsapp.SendRequest{ID: "3EB0AA", To: "5511987654321", Text: "oi"}); err != nil {
		t.Fatal(err)
	}
	if on, err := s.CheckNumbers(context.Background(), []string{"5511987654321"}); err != nil || !on[0] {
		t.Fatalf("check: %v %v", on, err)
	}
	if _, err := s.Send(context.Background(), whatsapp.SendRequest{ID: "3EB0AB", To: "5511987654321", Text: "oi"}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sentTo) != "[551187654321 551187654321]" {
		t.Errorf("sent to %v, want the account 551187654321 both times", sentTo)
	}
	if n := len(fc.checkCalls); n != 2 {
		t.Errorf("%d number checks, want 2 (the unresolved send's and the explicit one)", n)
	}
	_, err := s.Send(context.Background(), whatsapp.SendRequest{ID: "3EB0AC", To: "5511900000000", Text: "oi"})
	var se *whatsapp.SendError
	if !errors.As(err, &se) || se.Code != "recipient_not_on_whatsapp" {
		t.Errorf("send to a Brazilian number without WhatsApp: %v, want recipient_not_on_whatsapp", err)
	}
	// Elsewhere no check is made before a send.
	if _, err := s.Send(context.Background(), whatsapp.SendRequest{ID: "3EB0AD", To: "919999999999", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if n := len(fc.checkCalls); n != 3 {
		t.Errorf("%d number checks after a send to India, want 3", n)
	}
	br := newSession(whatsapp.SessionRef{Workspace: "default", SessionID: "5511987654321"}, newRecorder(), fc, s.opts, s.log)
	if !br.prePair(types.NewADJID("551187654321", 0, 3), "android", "") {
		t.Error("the session of 5511987654321 refused its own phone (account 551187654321)")
	}
	if br.prePair(types.NewADJID("551187654322", 0, 3), "android", "") {
		t.Error("the session of 5511987654321 took another phone")
	}
}

// newConnectedTestSession starts a paired session on a fake clock and has
// WhatsApp log it in.
func newConnectedTestSession(t *testing.T) (*fakeClock, *fakeConn, *session, *recorder) {
	t.Helper()
	clk := newFakeClock()
	fc := newFakeConn(true)
	s, rec := newTestSession(t, fc, clk)
	s.start()
	fc.waitConnects(t, 1)
	s.handleEvent(&events.Connected{})
	rec.waitStatus(t, whatsapp.StatusConnected, time.Second)
	// The connect call has returned to the fake, but its goroutine may not
	// have recorded that yet; a test that goes on to disconnect wants the
	// session as it is between connects.
	waitConnectReturned(t, s)
	return clk, fc, s, rec
}

// A send whatsmeow never gets an ack for (it re-sends after a socket drop
// and then waits with no timeout) ends in send_timeout after twice the send
// timeout, instead of holding the session's dispatcher.
func TestSendThatHangsTimesOut(t *testing.T) {
	fc := newFakeConn(true)
	fc.sendHang = true
	opts := Options{DBPath: "unused", Clock: newFakeClock(), Rand: func() float64 { return 0.5 }, Logger: testLogger(t), SendTimeout: 30 * time.Millisecond}.withDefaults()
	s := newSession(whatsapp.SessionRef{Workspace: "default", SessionID: "919876543210"}, newRecorder(), fc, opts, opts.Logger)
	defer s.Close()
	s.handleEvent(&events.Connected{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), whatsapp.SendRequest{ID: "3EB0HANG", To: "919999999999", Text: "x"})
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a send with no ack was still waiting after 5 s (send timeout 30 ms)")
	}
	var se *whatsapp.SendError
	if !errors.As(err, &se) || se.Code != "send_timeout" {
		t.Fatalf("hung send: %v, want send_timeout", err)
	}
	// A send the session's stop cancels stays queued (not connected), not failed.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Send(ctx, whatsapp.SendRequest{ID: "3EB0STOP", To: "919999999999", Text: "x"})
	if !errors.As(err, &se) || se.Code != "session_not_connected" {
		t.Fatalf("cancelled send: %v, want session_not_connected", err)
	}
}

// TestLiveSessionAsked515SaysSo: a fresh login WhatsApp asks of a live
// session (stream error 515) shows as connecting, then connected again, so
// a dispatcher that put a send back on session_not_connected meanwhile is
// woken by the second change (the login repeated the last status word for
// word and reported nothing).
func TestLiveSessionAsked515SaysSo(t *testing.T) {
	_, fc, s, rec := newConnectedTestSession(t)
	before := len(rec.snapshot())
	s.handleEvent(&events.ManualLoginReconnect{})
	fc.waitConnects(t, 2)
	_, err := s.Send(context.Background(), whatsapp.SendRequest{ID: "3EB0X", To: "919999999999", Text: "x"})
	var se *whatsapp.SendError
	if !errors.As(err, &se) || se.Code != "session_not_connected" {
		t.Fatalf("send during the re-login: %v", err)
	}
	waitConnectReturned(t, s)
	s.handleEvent(&events.Connected{})
	after := rec.snapshot()[before:]
	if len(after) != 2 || after[0].Status != whatsapp.StatusConnecting || after[1].Status != whatsapp.StatusConnected {
		t.Fatalf("statuses after a 515 on a live session: %+v, want connecting then connected", after)
	}
}

// TestMapSendError: what whatsmeow's send errors become. A frame not
// written because the socket was closing keeps the message queued (it
// failed for good); a query timing out before the send fails it as not
// sent (it said "may have arrived"), as do errors that would repeat; a
// timeout after it was written is send_timeout.
func TestMapSendError(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{ctx, fmt.Errorf("failed to send message node: %w", socket.ErrSocketClosed), "session_not_connected"},
		{ctx, fmt.Errorf("failed to send message node: %w", fmt.Errorf("failed to write msg: %w", context.Canceled)), "session_not_connected"},
		{ctx, fmt.Errorf("failed to get device list: %w", whatsmeow.ErrIQTimedOut), "send_failed"},
		{ctx, fmt.Errorf("failed to send message node: %w", socket.ErrFrameTooLarge), "send_failed"},
		{ctx, fmt.Errorf("failed to send message node: failed to marshal node: %w", errors.New("bad")), "send_failed"},
		{ctx, whatsmeow.ErrNotConnected, "session_not_connected"},
		{ctx, whatsmeow.ErrMessageTimedOut, "send_timeout"},
		{ctx, fmt.Errorf("wait: %w", context.DeadlineExceeded), "send_timeout"},
		{cancelled, fmt.Errorf("x: %w", context.Canceled), "session_not_connected"},
		{ctx, fmt.Errorf("%w 463", whatsmeow.ErrServerReturnedError), "send_failed"},
		{ctx, errors.New("something else"), "send_failed"},
	} {
		if got := mapSendError(tc.ctx, tc.err).Code; got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

// TestAccountAsWrittenIsRemembered: a Brazilian number whose account is the
// number as written is checked once, not before every send (each check is a
// query to WhatsApp, and many count against the number).
func TestAccountAsWrittenIsRemembered(t *testing.T) {
	_, fc, s, _ := newConnectedTestSession(t)
	fc.checkFn = func(phones []string) ([]types.IsOnWhatsAppResponse, error) {
		var out []types.IsOnWhatsAppResponse
		for _, p := range phones {
			out = append(out, types.IsOnWhatsAppResponse{Query: p, JID: types.NewJID(p[1:], types.DefaultUserServer), IsIn: true})
		}
		return out, nil
	}
	fc.sendFn = func(to types.JID, text, id string) (whatsmeow.SendResponse, error) {
		return whatsmeow.SendResponse{ID: types.MessageID(id)}, nil
	}
	for i := range 5 {
		if _, err := s.Send(context.Background(), whatsapp.SendRequest{ID: fmt.Sprintf("3EB0A%d", i), To: "5511987654321", Text: "oi"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(fc.checkCalls); n != 1 {
		t.Fatalf("5 sends to one number whose account is as written made %d checks, want 1", n)
	}
}
