package whatsmeow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/whatsmeow/fakewa"
)

func TestMain(m *testing.M) {
	// Trust the fake server's certificate root instead of WhatsApp's.
	whatsmeow.WACertPubKey = fakewa.RootPub()
	os.Exit(m.Run())
}

func newFakeDriver(t *testing.T, srv *fakewa.Server, path string) *Driver {
	t.Helper()
	d, err := New(Options{
		DBPath:     path,
		HTTPClient: srv.HTTPClient(),
		Backoff:    Backoff{Initial: 30 * time.Millisecond, Max: 200 * time.Millisecond},
		Logger:     testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func nextConn(t *testing.T, srv *fakewa.Server) *fakewa.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := srv.NextConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func noConn(t *testing.T, srv *fakewa.Server, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if c, err := srv.NextConn(ctx); err == nil {
		t.Fatalf("unexpected reconnect (user %q)", c.User())
	}
}

// pair opens an unpaired session and links it by "scanning" its QR code.
func pair(t *testing.T, srv *fakewa.Server, d *Driver, ref whatsapp.SessionRef) (whatsapp.Transport, *recorder, *fakewa.Conn) {
	t.Helper()
	rec := newRecorder()
	tr, err := d.Open(context.Background(), ref, rec)
	if err != nil {
		t.Fatal(err)
	}
	if st := rec.snapshot(); len(st) == 0 || st[0].Status != whatsapp.StatusConnecting {
		t.Fatalf("first status %+v, want connecting", st)
	}
	c := nextConn(t, srv)
	if !c.Registration() {
		t.Fatal("an unpaired device logged in")
	}
	rec.waitStatus(t, whatsapp.StatusPairing, 5*time.Second)
	code, exp, err := tr.(whatsapp.Pairer).QR()
	if err != nil || !strings.HasPrefix(code, "2@fakewa-ref-") || time.Until(exp) < 50*time.Second {
		t.Fatalf("QR = %q %v %v", code, exp, err)
	}
	if err := srv.ScanQR(code, ref.SessionID, 5); err != nil {
		t.Fatal(err)
	}
	login := nextConn(t, srv)
	if login.User() != ref.SessionID {
		t.Fatalf("logged in as %q", login.User())
	}
	st := rec.waitStatus(t, whatsapp.StatusConnected, 10*time.Second)
	if !strings.Contains(st.Reason, ref.SessionID+":5@s.whatsapp.net") {
		t.Errorf("connected reason %q", st.Reason)
	}
	return tr, rec, login
}

func TestFakeServerSessionLifecycle(t *testing.T) {
	srv, err := fakewa.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.NotOnWhatsApp = func(n string) bool { return strings.HasSuffix(n, "0000") }
	path := filepath.Join(t.TempDir(), "whatsmeow.db")
	d := newFakeDriver(t, srv, path)
	ref := whatsapp.SessionRef{Workspace: "default", SessionID: "919876543210"}
	ctx := context.Background()

	// Handshake, QR pairing, 515, login → connected.
	tr, rec, conn := pair(t, srv, d, ref)
	if jid, ok, _ := d.mappedJID(ctx, ref); !ok || jid.User != ref.SessionID || jid.Device != 5 {
		t.Fatalf("mapping after pairing: %v %v", jid, ok)
	}

	// Receipts pushed by the server.
	if err := conn.PushReceipt("919999999999", "", "3EB0000000000000000001", "3EB0000000000000000002"); err != nil {
		t.Fatal(err)
	}
	if err := conn.PushReceipt("919999999999", "read", "3EB0000000000000000001"); err != nil {
		t.Fatal(err)
	}
	if err := conn.PushReceipt("919999999999", "played", "3EB0000000000000000003"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "three receipts", 5*time.Second, func() bool { return len(rec.receiptList()) == 3 })
	rs := rec.receiptList()
	byKind := map[string][]string{}
	for _, r := range rs {
		byKind[r.Kind] = append(byKind[r.Kind], r.WAMessageIDs...)
	}
	if len(byKind[whatsapp.ReceiptDelivered]) != 2 || len(byKind[whatsapp.ReceiptRead]) != 2 {
		t.Errorf("receipts %+v", rs)
	}

	// A text send with the id chosen at queue time; the ack's timestamp.
	id := newTestWAID()
	res, err := tr.Send(ctx, whatsapp.SendRequest{ID: id, To: "919999999999", Text: "order #1 shipped"})
	if err != nil {
		t.Fatal(err)
	}
	if res.WAMessageID != id || time.Since(res.Timestamp) > time.Minute {
		t.Errorf("send result %+v", res)
	}
	if _, err := conn.WaitReceived(ctx, func(n *waBinary.Node) bool { return n.Tag == "message" && n.Attrs["id"] == id }); err != nil {
		t.Fatal(err)
	}
	// A refused send keeps the server's code in the message.
	srv.SendErrorCode.Store(463)
	_, err = tr.Send(ctx, whatsapp.SendRequest{ID: newTestWAID(), To: "919999999999", Text: "x"})
	var se *whatsapp.SendError
	if !errors.As(err, &se) || se.Code != "send_failed" || !strings.Contains(se.Message, "server returned error 463") {
		t.Errorf("refused send: %v", err)
	}
	srv.SendErrorCode.Store(0)

	// Number checks in one usync query.
	on, err := tr.CheckNumbers(ctx, []string{"919999999999", "919999990000", "14155550123"})
	if err != nil || len(on) != 3 || !on[0] || on[1] || !on[2] {
		t.Errorf("CheckNumbers = %v, %v", on, err)
	}

	// The server drops the socket: disconnected, then a reconnect on backoff.
	conn.Drop()
	st := rec.waitStatus(t, whatsapp.StatusDisconnected, 5*time.Second)
	if !strings.Contains(st.Reason, "lost") {
		t.Errorf("drop reason %q", st.Reason)
	}
	conn = nextConn(t, srv)
	rec.waitStatus(t, whatsapp.StatusConnected, 5*time.Second)
	// Sends while disconnected are kept queued by the appliance.
	conn.Drop()
	rec.waitStatus(t, whatsapp.StatusDisconnected, 5*time.Second)
	conn = nextConn(t, srv)
	rec.waitStatus(t, whatsapp.StatusConnected, 5*time.Second)

	// Another client took over the device: stop, do not fight it.
	conn.StreamError("", "replaced")
	st = rec.waitStatus(t, whatsapp.StatusDisconnected, 5*time.Second)
	if !strings.Contains(st.Reason, "another client") {
		t.Errorf("replaced reason %q", st.Reason)
	}
	noConn(t, srv, 300*time.Millisecond)
	if _, err := tr.Send(ctx, whatsapp.SendRequest{ID: newTestWAID(), To: "919999999999", Text: "x"}); !errors.As(err, &se) || se.Code != "session_not_connected" {
		t.Errorf("send while stopped: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: a new driver on the same file finds the device again.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = newFakeDriver(t, srv, path)
	defer d.Close()
	reopen := func() (whatsapp.Transport, *recorder, *fakewa.Conn) {
		rec := newRecorder()
		tr, err := d.Open(ctx, ref, rec)
		if err != nil {
			t.Fatal(err)
		}
		c := nextConn(t, srv)
		if c.User() != ref.SessionID {
			t.Fatalf("reopened session logged in as %q", c.User())
		}
		return tr, rec, c
	}

	// Temporary ban at login.
	srv.LoginFailure.Store(402)
	tr, rec, _ = reopen()
	st = rec.waitStatus(t, whatsapp.StatusBanned, 5*time.Second)
	if !strings.Contains(st.Reason, "banned") {
		t.Errorf("ban reason %q", st.Reason)
	}
	noConn(t, srv, 200*time.Millisecond)
	_ = tr.Close()

	// Outdated client.
	srv.LoginFailure.Store(405)
	tr, rec, _ = reopen()
	st = rec.waitStatus(t, whatsapp.StatusDisconnected, 5*time.Second)
	if !strings.Contains(st.Reason, "outdated") {
		t.Errorf("outdated reason %q", st.Reason)
	}
	noConn(t, srv, 200*time.Millisecond)
	_ = tr.Close()

	// Back to normal, then the phone unlinks the device.
	srv.LoginFailure.Store(0)
	tr, rec, conn = reopen()
	rec.waitStatus(t, whatsapp.StatusConnected, 5*time.Second)
	conn.StreamError("401", "device_removed")
	st = rec.waitStatus(t, whatsapp.StatusLoggedOut, 5*time.Second)
	if !strings.Contains(st.Reason, "pair the number again") {
		t.Errorf("logged-out reason %q", st.Reason)
	}
	noConn(t, srv, 200*time.Millisecond)
	_ = tr.Close()
	rec.waitFor(t, "mapping gone", 2*time.Second, func() bool {
		_, ok, _ := d.mappedJID(ctx, ref)
		return !ok
	})
	dev, err := d.deviceFor(ctx, ref)
	if err != nil || dev.ID != nil {
		t.Fatalf("device after logout: %v %v", dev.ID, err)
	}
}

// pairedOnFakeServer starts a fake WhatsApp server and a driver on it, and
// pairs a session of number; all are closed when the test ends.
func pairedOnFakeServer(t *testing.T, number string) (*fakewa.Server, *Driver, whatsapp.SessionRef, *recorder, *fakewa.Conn) {
	t.Helper()
	srv, err := fakewa.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	d := newFakeDriver(t, srv, filepath.Join(t.TempDir(), "whatsmeow.db"))
	t.Cleanup(func() { _ = d.Close() })
	ref := whatsapp.SessionRef{Workspace: "w", SessionID: number}
	tr, rec, conn := pair(t, srv, d, ref)
	t.Cleanup(func() { _ = tr.Close() })
	return srv, d, ref, rec, conn
}

func TestFakeServerLoginFailureLoggedOut(t *testing.T) {
	srv, _, _, rec, conn := pairedOnFakeServer(t, "447700900123")
	// <failure reason="401"> on a live connection: logged out by WhatsApp.
	conn.Failure(401, nil)
	st := rec.waitStatus(t, whatsapp.StatusLoggedOut, 5*time.Second)
	if !strings.Contains(st.Reason, "401") {
		t.Errorf("reason %q", st.Reason)
	}
	noConn(t, srv, 200*time.Millisecond)
}

func TestFakeServerLogoutAndWrongPhone(t *testing.T) {
	srv, err := fakewa.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := newFakeDriver(t, srv, filepath.Join(t.TempDir(), "whatsmeow.db"))
	defer d.Close()
	ctx := context.Background()
	ref := whatsapp.SessionRef{Workspace: "w", SessionID: "5511987654321"}
	tr, _, _ := pair(t, srv, d, ref)
	if err := tr.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.Logouts() != 1 {
		t.Errorf("server saw %d logouts", srv.Logouts())
	}
	if dev, err := d.deviceFor(ctx, ref); err != nil || dev.ID != nil {
		t.Fatalf("device after Logout: %v %v", dev.ID, err)
	}

	// Pair again, but the phone that scans is another number.
	rec := newRecorder()
	tr, err = d.Open(ctx, ref, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	nextConn(t, srv)
	rec.waitStatus(t, whatsapp.StatusPairing, 5*time.Second)
	code, _, _ := tr.(whatsapp.Pairer).QR()
	if err := srv.ScanQR(code, "5511900000000", 2); err != nil {
		t.Fatal(err)
	}
	st := rec.waitStatus(t, whatsapp.StatusLoggedOut, 5*time.Second)
	if !strings.Contains(st.Reason, "+5511900000000") || !strings.Contains(st.Reason, "+5511987654321") {
		t.Errorf("reason %q", st.Reason)
	}
	noConn(t, srv, 200*time.Millisecond)
	if dev, err := d.deviceFor(ctx, ref); err != nil || dev.ID != nil {
		t.Fatalf("a wrong phone left a device: %v %v", dev.ID, err)
	}
}

var testWAIDs atomic.Uint64

// newTestWAID returns a WhatsApp-style id that no other call returns.
func newTestWAID() string { return fmt.Sprintf("3EB0%020X", testWAIDs.Add(1)) }

// A socket that dies after login while whatsmeow's passive request waits for
// its answer: whatsmeow gives up 5 s later and dispatches Connected anyway,
// after Disconnected. The session must reconnect, not stay "connected" with
// no socket (it did, with its retry cancelled, when the reconnect backoff
// was over those 5 s).
func TestFakeServerConnectedAfterTheSocketDied(t *testing.T) {
	t.Parallel()
	srv, err := fakewa.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d, err := New(Options{
		DBPath:     filepath.Join(t.TempDir(), "whatsmeow.db"),
		HTTPClient: srv.HTTPClient(),
		Backoff:    Backoff{Initial: 6 * time.Second, Max: 6 * time.Second},
		Logger:     testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tr, rec, login := pair(t, srv, d, whatsapp.SessionRef{Workspace: "w", SessionID: "447700900123"})
	defer tr.Close()

	srv.HoldPassive.Store(true)
	login.Drop()
	rec.waitStatus(t, whatsapp.StatusDisconnected, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second, err := srv.NextConn(ctx) // after the backoff
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.WaitReceived(ctx, func(n *waBinary.Node) bool { return n.Attrs["xmlns"] == "passive" }); err != nil {
		t.Fatal(err)
	}
	srv.HoldPassive.Store(false)
	second.Drop() // before the passive request is answered
	// Connected comes 5 s later for the dead socket; the reconnect must
	// come all the same, and log in.
	third, err := srv.NextConn(ctx)
	if err != nil {
		t.Fatalf("no reconnect after the socket died during login (last status %+v): %v", rec.last(), err)
	}
	if third.User() != "447700900123" {
		t.Fatalf("reconnected as %q", third.User())
	}
	rec.waitStatus(t, whatsapp.StatusConnected, 10*time.Second)
}

// The client acknowledges messages and receipts only after our handler
// returns (SynchronousAck), and keeps decrypted plaintext until then, so a
// message WhatsApp sends again after a crash can still be read.
func TestClientAcknowledgesAfterTheHandler(t *testing.T) {
	_, d, ref, _, _ := pairedOnFakeServer(t, "447700900124")
	d.mu.Lock()
	cli := d.sessions[ref].c.(*realConn).cli
	d.mu.Unlock()
	if !cli.SynchronousAck || !cli.EnableDecryptedEventBuffer {
		t.Fatalf("SynchronousAck %v, EnableDecryptedEventBuffer %v: want both", cli.SynchronousAck, cli.EnableDecryptedEventBuffer)
	}
}

// TestCloseWhileAConnectHangs: Close returns although a connect is stuck
// in its dial (an endpoint that accepts TCP and never answers): it used to
// wait for the dial, which held whatsmeow's socket lock until its context
// ended, and that context ended only after Close, so DELETE, a restart or
// shutdown waited for ever.
func TestCloseWhileAConnectHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // open, and silent
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	addr := ln.Addr().String()
	hc := &http.Client{Transport: &http.Transport{DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}}
	d, err := New(Options{DBPath: filepath.Join(t.TempDir(), "wm.db"), HTTPClient: hc, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tr, err := d.Open(context.Background(), whatsapp.SessionRef{Workspace: "w", SessionID: "919876543210"}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for { // the connect is under way once the listener holds its socket
		mu.Lock()
		n := len(held)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session never dialled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() { _ = tr.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close is still waiting for a connect that hangs")
	}
}

// TestReplacedDuringLoginStaysStopped: a stream replaced by another client
// while this one's login finishes leaves the session disconnected. The
// Connected whatsmeow still sends from that login, before or after
// StreamReplaced, used to mark it connected with no socket, for good.
func TestReplacedDuringLoginStaysStopped(t *testing.T) {
	for i := range 6 {
		srv, err := fakewa.New()
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(Options{DBPath: filepath.Join(t.TempDir(), "wm.db"), HTTPClient: srv.HTTPClient(),
			Backoff: Backoff{Initial: 30 * time.Millisecond, Max: 60 * time.Millisecond}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ref := whatsapp.SessionRef{Workspace: "w", SessionID: "447700900123"}
		tr, rec, login := pair(t, srv, d, ref)
		srv.HoldPassive.Store(true)
		login.Drop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		second, err := srv.NextConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := second.WaitReceived(ctx, func(n *waBinary.Node) bool { return n.Attrs["xmlns"] == "passive" }); err != nil {
			t.Fatal(err)
		}
		second.StreamError("", "replaced")
		time.Sleep(500 * time.Millisecond)
		last := rec.last()
		s := tr.(*session)
		s.mu.Lock()
		online := s.online
		s.mu.Unlock()
		cancel()
		_ = tr.Close()
		_ = d.Close()
		srv.Close()
		if last.Status == whatsapp.StatusConnected || online {
			t.Fatalf("run %d: a replaced session is %s (online %v): %s", i, last.Status, online, last.Reason)
		}
	}
}
