package whatsmeow

import (
	"context"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/walytic/appliance/appliance/whatsapp"
)

// conn is what a session needs from its whatsmeow client and device store.
// realConn is the one production uses; the state-machine tests use a fake.
type conn interface {
	connect(ctx context.Context) error
	disconnect()
	paired() bool
	ownJID() types.JID
	send(ctx context.Context, to types.JID, text, id string) (whatsmeow.SendResponse, error)
	isOnWhatsApp(ctx context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error)
	pairPhone(ctx context.Context, phone string) (string, error)
	// logout unlinks the device on WhatsApp, disconnects and deletes the
	// device's rows (whatsmeow's Client.Logout).
	logout(ctx context.Context) error
	// deleteDevice deletes the device's rows without asking WhatsApp.
	deleteDevice(ctx context.Context) error
	pnForLID(ctx context.Context, lid types.JID) (types.JID, error)
	saveMapping(ctx context.Context, jid types.JID) error
	deleteMapping(ctx context.Context) error
}

type realConn struct {
	cli  *whatsmeow.Client
	d    *Driver
	ref  whatsapp.SessionRef
	opts Options
}

func (c *realConn) connect(ctx context.Context) error { return c.cli.ConnectContext(ctx) }
func (c *realConn) disconnect()                       { c.cli.Disconnect() }
func (c *realConn) paired() bool                      { return c.cli.Store.ID != nil }
func (c *realConn) ownJID() types.JID                 { return c.cli.Store.GetJID() }

func (c *realConn) send(ctx context.Context, to types.JID, text, id string) (whatsmeow.SendResponse, error) {
	return c.cli.SendMessage(ctx, to, &waE2E.Message{Conversation: proto.String(text)},
		whatsmeow.SendRequestExtra{ID: types.MessageID(id), Timeout: c.opts.SendTimeout})
}

func (c *realConn) isOnWhatsApp(ctx context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error) {
	return c.cli.IsOnWhatsApp(ctx, phones)
}

func (c *realConn) pairPhone(ctx context.Context, phone string) (string, error) {
	return c.cli.PairPhone(ctx, phone, true, whatsmeow.PairClientChrome, c.opts.PairingClientName)
}

func (c *realConn) logout(ctx context.Context) error { return c.cli.Logout(ctx) }

func (c *realConn) deleteDevice(ctx context.Context) error {
	if c.cli.Store.ID == nil {
		return nil
	}
	return c.cli.Store.Delete(ctx)
}

func (c *realConn) pnForLID(ctx context.Context, lid types.JID) (types.JID, error) {
	if c.cli.Store.LIDs == nil {
		return types.EmptyJID, nil
	}
	return c.cli.Store.LIDs.GetPNForLID(ctx, lid)
}

func (c *realConn) saveMapping(ctx context.Context, jid types.JID) error {
	return c.d.saveMapping(ctx, c.ref, jid)
}

func (c *realConn) deleteMapping(ctx context.Context) error { return c.d.deleteMapping(ctx, c.ref) }
