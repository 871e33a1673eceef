package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// copyDir copies a data directory (a testdata one, since Pebble writes on
// open, or a live one: files Pebble removes meanwhile are skipped).
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestOpensDataWrittenByTheFirstRelease(t *testing.T) {
	dir := copyDir(t, "testdata/v0-data")
	db := mustOpen(t, dir)
	defer db.Close()
	st, err := OpenLocalState(db)
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := st.Workspace("acme"); !ok || w.MonthlyQuota != 500 {
		t.Fatalf("workspace acme: %+v %v", w, ok)
	}
	if keys := st.Keys("default"); len(keys) != 1 || keys[0].Name != "legacy" {
		t.Fatalf("keys = %+v", keys)
	}
	if hooks := st.Webhooks("default"); len(hooks) != 1 || hooks[0].Events[0] != "message.read" || len(hooks[0].Secrets) != 1 {
		t.Fatalf("webhooks = %+v", hooks)
	}
	if s, err := db.Session("default", "919876543210"); err != nil || s.Driver != "sandbox" || !s.Paired {
		t.Fatalf("session = %+v, %v", s, err)
	}
	var got []string
	err = db.Messages("default", MessageRange{}, func(m *Message) bool {
		got = append(got, m.Direction+"/"+m.Status+"/"+m.Text)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := "[inbound/received/inbound legacy outbound/failed/will fail outbound/read/legacy message 1 outbound/read/legacy message 2 outbound/read/legacy message 3]"
	if strings.Join(got, " ") != strings.Trim(want, "[]") {
		t.Fatalf("messages = %v\nwant %s", got, want)
	}
	if rec, err := db.Idempotency("default", "legacy-2"); err != nil || rec.MessageID == "" {
		t.Fatalf("idempotency record: %+v %v", rec, err)
	}
	if n, _ := db.QuotaUsed("default", "2026-11"); n != 4 {
		t.Fatalf("quota used %d, want 4", n)
	}
	// New records (binary codec) live beside the old ones.
	m := &Message{ID: NewID("msg_", time.Now()), Workspace: "default", Direction: "outbound", SessionID: "919876543210", Text: "new", Status: "queued"}
	b := db.NewBatch()
	if err := b.StageNewMessage(m); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, b)
	if back, err := db.Message("default", m.ID); err != nil || back.Text != "new" {
		t.Fatalf("new record: %+v %v", back, err)
	}
}

// TestReadsOutboxBlocksOfSchema2: pending events that a schema 2 build
// staged in zstd-compressed blocks are read by this build, none lost, and
// the directory is marked with this build's schema.
func TestReadsOutboxBlocksOfSchema2(t *testing.T) {
	dir := copyDir(t, "testdata/v2-data")
	db := mustOpen(t, dir)
	defer db.Close()
	var blocks, ids []string
	tags := map[byte]int{}
	err := db.OutboxBlocks("", func(blockID string, ds []*Delivery) bool {
		blocks = append(blocks, blockID)
		v, err := db.get(blockKey(blockID))
		if err != nil {
			t.Fatal(err)
		}
		tags[v[0]]++
		for _, d := range ds {
			if d.EndpointID != "wh_v2" || d.State != "pending" || d.Block != blockID || d.Event.Workspace != "default" ||
				d.Event.MessageID != "msg_v2"+strings.TrimPrefix(d.ID, "dlv_v2") || d.EventID != d.Event.ID {
				t.Fatalf("delivery %+v", *d)
			}
			ids = append(ids, d.ID)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 || len(ids) != 42 || tags[tagBlockZstd] != 1 || tags[tagBlock] != 1 {
		t.Fatalf("blocks %v (tags %v), %d deliveries, want 2 blocks ('B' and 'b') of 42", blocks, tags, len(ids))
	}
	if v, err := db.get([]byte("meta/schema")); err != nil || string(v) != schemaVersion {
		t.Fatalf("schema %q (%v), want %q", v, err, schemaVersion)
	}
}
