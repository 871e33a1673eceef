package appliance

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// crashCopy opens a copy of the data directory as a kill -9 would leave it
// (what the process has written to its files) and returns the message's
// stored status there ("" if the message is not there).
func crashCopy(t *testing.T, dir, ws, id string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(dst)
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	defer db.Close()
	m, err := db.Message(ws, id)
	if errors.Is(err, storage.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return m.Status
}

// StoreInbound and StoreReceipt (what the whatsmeow driver calls before it
// acknowledges an event to WhatsApp) return only once the event is in the
// files: a crash right after cannot lose it.
func TestStoreReturnsOnceOnDisk(t *testing.T) {
	h, gate := newGatedHarness(t)
	gate.release(h)
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "x"})
	sent := h.waitStatus(DefaultWorkspace, m.ID, StatusSent)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.StoreReceipt(ctx, whatsapp.Receipt{WAMessageIDs: []string{sent.WAID}, Kind: whatsapp.ReceiptRead, Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// At once: well inside the background sync's 100 ms.
	if got := crashCopy(t, h.dir, DefaultWorkspace, m.ID); got != StatusRead {
		t.Fatalf("after StoreReceipt returned, the files say %q, want read", got)
	}

	if err := rt.StoreInbound(ctx, whatsapp.Inbound{WAMessageID: "3EB0INBOUND01", From: rcpt, Type: "text", Text: "hi", Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	l, _, err := h.app.MessagePage(DefaultWorkspace, MessageFilter{Direction: "inbound"}, 10)
	if err != nil || len(l) != 1 {
		t.Fatalf("inbound messages: %v %v", l, err)
	}
	if got := crashCopy(t, h.dir, DefaultWorkspace, l[0].ID); got != StatusReceived {
		t.Fatalf("after StoreInbound returned, the files say %q, want received", got)
	}
}
