package appliance

import (
	"context"
	"fmt"
	"testing"
	"time"

	upstream "go.mau.fi/whatsmeow"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/whatsmeow"
	"github.com/walytic/appliance/appliance/whatsapp/whatsmeow/fakewa"
	"github.com/walytic/appliance/storage"
)

// TestWhatsmeowSessionThroughFakeServer runs the real whatsmeow client,
// through our driver and the domain, against the in-process fake WhatsApp
// server: QR pairing → connected, a send, server-pushed receipts → statuses
// and events, and a dropped socket → disconnected, reconnected.
func TestWhatsmeowSessionThroughFakeServer(t *testing.T) {
	upstream.WACertPubKey = fakewa.RootPub()
	srv, err := fakewa.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	d, err := whatsmeow.New(whatsmeow.Options{
		DBPath:     t.TempDir() + "/whatsmeow.db",
		HTTPClient: srv.HTTPClient(),
		Backoff:    whatsmeow.Backoff{Initial: 30 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	h := newHarness(t, d)
	nextConn := func() *fakewa.Conn {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := srv.NextConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	waitSession := func(status string) SessionView {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, _ := h.app.Session(DefaultWorkspace, sess)
			if v.Status == status {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("session status %s (%s), want %s", v.Status, v.StatusReason, status)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if _, err := h.app.CreateSession(DefaultWorkspace, sess, "whatsmeow"); err != nil {
		t.Fatal(err)
	}
	if !nextConn().Registration() {
		t.Fatal("an unpaired session logged in")
	}
	waitSession(whatsapp.StatusPairing)
	q, err := h.app.QR(context.Background(), DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ScanQR(q.Code, sess, 5); err != nil {
		t.Fatal(err)
	}
	login := nextConn()
	v := waitSession(whatsapp.StatusConnected)
	if v.ConnectedAt == 0 || v.Pacing == nil {
		t.Fatalf("connected session: %+v", v)
	}
	if _, err := h.app.SetPacing(DefaultWorkspace, sess, &storage.Pacing{}); err != nil { // unpaced, for speed
		t.Fatal(err)
	}

	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "order shipped"})
	sent := h.waitStatus(DefaultWorkspace, m.ID, StatusSent)
	if sent.WAID != m.WAID {
		t.Fatalf("sent under %s, queued as %s: a resend would not reuse the id", sent.WAID, m.WAID)
	}
	if err := login.PushReceipt(rcpt, "", sent.WAID); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(DefaultWorkspace, m.ID, StatusDelivered)
	if err := login.PushReceipt(rcpt, "read", sent.WAID); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(DefaultWorkspace, m.ID, StatusRead)
	if got := fmt.Sprint(h.events.types(m.ID)); got != "[message.sent message.delivered message.read]" {
		t.Fatalf("events = %s", got)
	}

	login.Drop()
	waitSession(whatsapp.StatusDisconnected)
	relogin := nextConn()
	waitSession(whatsapp.StatusConnected)
	var sessionEvents []string
	h.events.mu.Lock()
	for _, e := range h.events.staged {
		if e.MessageID == "" {
			sessionEvents = append(sessionEvents, e.Type)
		}
	}
	h.events.mu.Unlock()
	if got := fmt.Sprint(sessionEvents); got != "[session.connected session.disconnected session.connected]" {
		t.Fatalf("session events = %s", got)
	}

	// Unlinked by WhatsApp: logged_out, sends refused; asking for a QR code
	// (what `walytic sessions pair` does) pairs a fresh device.
	relogin.Failure(401, nil)
	waitSession(whatsapp.StatusLoggedOut)
	// Let whatsmeow's read pump finish closing the dropped socket: its
	// Close and a Disconnect made meanwhile (the restart below) race on a
	// field inside whatsmeow, which -race reports. A person asks for a new
	// code seconds after the phone unlinked, not microseconds.
	<-relogin.Done()
	time.Sleep(200 * time.Millisecond)
	if _, _, err := h.app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"}); codeOf(err) != "session_not_connected/sessionId" {
		t.Fatalf("send while logged out: %s", codeOf(err))
	}
	q, err = h.app.QR(context.Background(), DefaultWorkspace, sess)
	if err != nil {
		t.Fatalf("QR of a logged-out session: %v", err)
	}
	if c := nextConn(); !c.Registration() {
		t.Fatal("a logged-out session logged in with its old device")
	}
	if err := srv.ScanQR(q.Code, sess, 6); err != nil {
		t.Fatal(err)
	}
	nextConn()
	waitSession(whatsapp.StatusConnected)
}
