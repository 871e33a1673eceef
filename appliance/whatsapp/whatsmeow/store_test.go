package whatsmeow

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"

	"github.com/walytic/appliance/appliance/whatsapp"
)

func TestDeviceFoundAgainAfterRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "whatsmeow.db")
	ref := whatsapp.SessionRef{Workspace: "default", SessionID: "919876543210"}
	other := whatsapp.SessionRef{Workspace: "acme", SessionID: "919876543210"}

	d, err := New(Options{DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := d.deviceFor(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if dev.ID != nil {
		t.Fatal("a never-paired session got a paired device")
	}
	// What pairing does: whatsmeow saves the device, we save the mapping.
	jid := types.NewADJID(ref.SessionID, 0, 23)
	dev.ID = &jid
	dev.PushName = "Shop"
	dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte{1}, AccountSignature: make([]byte, 64), AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
	if err := dev.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.saveMapping(ctx, ref, jid); err != nil {
		t.Fatal(err)
	}
	identity := append([]byte(nil), dev.IdentityKey.Pub[:]...)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("db file mode: %v %v", fi.Mode(), err)
	}

	d2, err := New(Options{DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	got, err := d2.deviceFor(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == nil || *got.ID != jid || !bytes.Equal(got.IdentityKey.Pub[:], identity) || got.PushName != "Shop" {
		t.Fatalf("reopened device %v, want %v with the same keys", got.ID, jid)
	}
	// Another workspace with the same number has its own (unpaired) device.
	if o, err := d2.deviceFor(ctx, other); err != nil || o.ID != nil {
		t.Fatalf("other workspace: %v %v", o.ID, err)
	}
	// When the device rows go (whatsmeow deletes them on logout), the stale
	// mapping is dropped and the session starts unpaired.
	if err := got.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := d2.deviceFor(ctx, ref)
	if err != nil || again.ID != nil {
		t.Fatalf("after delete: %v %v", again.ID, err)
	}
	if _, ok, _ := d2.mappedJID(ctx, ref); ok {
		t.Error("stale mapping kept")
	}
}

func TestNewRequiresDBPath(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without DBPath succeeded")
	}
}

func TestQRRendering(t *testing.T) {
	code := "2@abc,def,ghi,jkl"
	png, err := QRPNG(code, 0)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("QRPNG: %v", err)
	}
	txt, err := QRTerminal(code)
	if err != nil || len(txt) == 0 {
		t.Fatalf("QRTerminal: %v", err)
	}
	if _, err := QRPNG("", 0); err == nil {
		t.Error("empty code rendered")
	}
}
