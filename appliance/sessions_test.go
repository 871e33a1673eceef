package appliance

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
)

// slowOpenDriver is a sandbox whose Open waits for release (after saying so
// on entered), or fails with openErr.
type slowOpenDriver struct {
	whatsapp.Driver
	entered, release chan struct{}
	openErr          error
}

func (d *slowOpenDriver) Open(ctx context.Context, ref whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	if d.openErr != nil {
		return nil, d.openErr
	}
	close(d.entered)
	<-d.release
	return d.Driver.Open(ctx, ref, h)
}

// TestSessionFoundOnlyOnceItsTransportRuns: while POST /v1/sessions is still
// opening the transport, requests naming the session find no session (it
// has not been answered 201 yet), instead of a session without a transport
// (which once answered a sandbox inbound with "simulated inbound messages
// exist only for sandbox sessions").
func TestSessionFoundOnlyOnceItsTransportRuns(t *testing.T) {
	d := &slowOpenDriver{Driver: fastSandbox(), entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, d)
	created := make(chan error, 1)
	go func() {
		_, err := h.app.CreateSession(DefaultWorkspace, sess, "sandbox")
		created <- err
	}()
	<-d.entered
	ctx := context.Background()
	if err := h.app.SimulateInbound(ctx, DefaultWorkspace, sess, "919999912345", "hi", ""); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("inbound while the transport opens: %s", codeOf(err))
	}
	if _, err := h.app.CheckNumbers(ctx, DefaultWorkspace, sess, []string{"919999912345"}); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("number check while the transport opens: %s", codeOf(err))
	}
	if _, err := h.app.Session(DefaultWorkspace, sess); codeOf(err) != "session_not_found/sessionId" {
		t.Fatalf("GET while the transport opens: %s", codeOf(err))
	}
	_, err := h.app.CreateSession(DefaultWorkspace, sess, "sandbox")
	if e, _ := AsError(err); codeOf(err) != "session_exists/sessionId" || !strings.Contains(e.Message, "retry in a moment") {
		t.Fatalf("a second create while the first opens: %v", err)
	}
	close(d.release)
	select {
	case err := <-created:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CreateSession did not return")
	}
	if err := h.app.SimulateInbound(ctx, DefaultWorkspace, sess, "919999912345", "hi", ""); err != nil {
		t.Fatalf("inbound once created: %v", err)
	}
	if _, err := h.app.CheckNumbers(ctx, DefaultWorkspace, sess, []string{"919999912345"}); err != nil {
		t.Fatalf("number check once created: %v", err)
	}
}

// TestSessionWhoseTransportFailedToOpen is listed, disconnected, and a
// sandbox inbound for it says it is not connected.
func TestSessionWhoseTransportFailedToOpen(t *testing.T) {
	d := &slowOpenDriver{Driver: fastSandbox(), openErr: errors.New("no transport today")}
	h := newHarness(t, d)
	v, err := h.app.CreateSession(DefaultWorkspace, sess, "sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != whatsapp.StatusDisconnected {
		t.Fatalf("status %q, want %q", v.Status, whatsapp.StatusDisconnected)
	}
	if _, err := h.app.Session(DefaultWorkspace, sess); err != nil {
		t.Fatalf("GET: %v", err)
	}
	err = h.app.SimulateInbound(context.Background(), DefaultWorkspace, sess, "919999912345", "hi", "")
	if codeOf(err) != "session_not_connected/sessionId" {
		t.Fatalf("inbound without a transport: %s", codeOf(err))
	}
}
