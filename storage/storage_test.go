package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustOpen(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

func mustCommit(t *testing.T, db *DB, b *Batch) {
	t.Helper()
	if err := db.CommitSync(b); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func TestIDsSortByTimeAndRoundTrip(t *testing.T) {
	// Ids never go back within a process, and other tests make ids at
	// other times: start past everything made so far.
	base := time.Unix(0, idClock.Load()).Add(time.Hour)
	var prev string
	for i := 0; i < 2000; i++ {
		// Same instant many times, and a clock that steps back: still increasing.
		now := base.Add(time.Duration(i%7-3) * time.Millisecond)
		id := NewID("msg_", now)
		if len(id) != 24 {
			t.Fatalf("id %q has %d chars, want 24", id, len(id))
		}
		if id <= prev {
			t.Fatalf("id %q not after %q", id, prev)
		}
		prev = id
		if _, ok := IDTime("msg_", id); !ok {
			t.Fatalf("IDTime rejects %q", id)
		}
	}
	later := NewID("msg_", base.Add(time.Hour))
	got, _ := IDTime("msg_", later)
	if !got.Equal(base.Add(time.Hour)) && got.Before(base.Add(time.Hour)) {
		t.Fatalf("IDTime = %v, want ≥ %v", got, base.Add(time.Hour))
	}
	if b := IDBound("msg_", base.Add(2*time.Hour)); b <= later {
		t.Fatalf("bound %q for a later time sorts before id %q", b, later)
	}
}

// TestIDBoundOutOfRange: times an id cannot hold bound below or above
// every id, in order. Past 2262 UnixNano wraps, and a far-future "until"
// once became the lowest bound (an empty page instead of every message).
func TestIDBoundOutOfRange(t *testing.T) {
	now := NewID("msg_", time.Now())
	times := []time.Time{
		time.Unix(-1, 0), time.Unix(0, 0), time.Now(), time.Unix(0, math.MaxInt64),
		time.Unix(9223372037, 0), time.Unix(92233720368, 0), time.Unix(1<<40, 0),
	}
	prev := ""
	for i, ts := range times {
		b := IDBound("msg_", ts)
		if b < prev {
			t.Fatalf("bound %d (%v) = %q sorts before the bound of an earlier time %q", i, ts, b, prev)
		}
		prev = b
		if ts.Year() > 2262 && b <= now {
			t.Fatalf("bound for %v = %q, want above every id (e.g. %q)", ts, b, now)
		}
	}
	if IDBound("msg_", time.Unix(-1, 0)) != IDBound("msg_", time.Unix(0, 0)) {
		t.Fatal("times before 1970 must all give the lowest bound")
	}
}

func FuzzIDTime(f *testing.F) {
	f.Add("msg_00000000000000000000")
	f.Add(NewID("msg_", time.Now()))
	f.Add("msg_zzzzzzzzzzzzzzzzzzzz")
	f.Add("msg_")
	f.Fuzz(func(t *testing.T, s string) {
		ts, ok := IDTime("msg_", s)
		if !ok {
			return
		}
		// Whatever parses must encode back to a bound at or below itself.
		if b := IDBound("msg_", ts); b > s {
			t.Fatalf("IDBound(IDTime(%q)) = %q sorts after it", s, b)
		}
	})
}

func TestCodecCompressesLargeValues(t *testing.T) {
	small := &Message{ID: "msg_a", Text: "hi"}
	big := &Message{ID: "msg_b", Text: strings.Repeat("order confirmed ", 200)}
	for _, m := range []*Message{small, big} {
		v, err := encode(m)
		if err != nil {
			t.Fatal(err)
		}
		wantTag := byte(tagMessage)
		if m == big {
			wantTag = tagMessageZstd
			if len(v) > len(big.Text)/4 {
				t.Errorf("big value is %d bytes, compression did not help", len(v))
			}
		}
		if v[0] != wantTag {
			t.Errorf("%s: tag %q, want %q", m.ID, v[0], wantTag)
		}
		var back Message
		if err := decode(v, &back); err != nil || back.Text != m.Text {
			t.Fatalf("round trip of %s: %v", m.ID, err)
		}
	}
	if err := decode([]byte("x{}"), &Message{}); err == nil {
		t.Error("unknown tag accepted")
	}
}

func newMsg(ws, sid string, at time.Time, i int) *Message {
	return &Message{ID: NewID("msg_", at), Workspace: ws, Direction: "outbound", SessionID: sid,
		To: "919999999999", Text: fmt.Sprint("m", i), Status: "queued", WAID: fmt.Sprintf("3EB0%018d", i), CreatedAt: at.Unix()}
}

func TestMessagesNewestFirstWithRangesAndIndex(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	base := time.Unix(1_800_000_000, 0)
	var ids []string
	b := db.NewBatch()
	for i := 0; i < 30; i++ {
		sid := "919876543210"
		if i%3 == 0 {
			sid = "919876543211"
		}
		m := newMsg("acme", sid, base.Add(time.Duration(i)*time.Second), i)
		ids = append(ids, m.ID)
		if err := b.StageNewMessage(m); err != nil {
			t.Fatal(err)
		}
		b.StageWAIndex(m.Workspace, m.SessionID, m.WAID, m.ID)
		b.Set(queueKey(m.Workspace, m.SessionID, m.ID), nil) // as builds before marks did
	}
	// Another workspace whose name extends the first: must never leak in.
	other := newMsg("acme2", "919876543210", base, 99)
	if err := b.StageNewMessage(other); err != nil {
		t.Fatal(err)
	}
	b.Set(queueKey(other.Workspace, other.SessionID, other.ID), nil)
	mustCommit(t, db, b)

	var got []string
	if err := db.Messages("acme", MessageRange{}, func(m *Message) bool { got = append(got, m.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 30 || got[0] != ids[29] || got[29] != ids[0] {
		t.Fatalf("scan gave %d messages, first %v; want 30 newest first", len(got), got[:1])
	}
	got = got[:0]
	r := MessageRange{SessionID: "919876543211", Before: ids[20], After: ids[2]}
	_ = db.Messages("acme", r, func(m *Message) bool { got = append(got, m.ID); return true })
	want := []string{ids[18], ids[15], ids[12], ids[9], ids[6], ids[3]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("session range = %v, want %v", got, want)
	}
	q, err := db.Queue("acme", "919876543210", "", 5)
	if err != nil || len(q) != 5 || q[0] != ids[1] || q[1] != ids[2] {
		t.Fatalf("queue front = %v (%v), want oldest first from %s", q, err, ids[1])
	}
	if q2, _ := db.Queue("acme", "919876543210", q[4], 100); len(q2) != 15 {
		t.Fatalf("rest of the queue: %d, want 15", len(q2))
	}
	if id, err := db.MessageIDByWAID("acme", "919876543211", fmt.Sprintf("3EB0%018d", 3)); err != nil || id != ids[3] {
		t.Fatalf("wa index: %q %v", id, err)
	}
}

func TestQuotaCounterMergesConcurrently(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, dir)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				b := db.NewBatch()
				b.StageQuotaUse("acme", "2026-11", 1)
				if err := db.CommitSync(b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n, err := db.QuotaUsed("acme", "2026-11"); err != nil || n != 400 {
		t.Fatalf("used = %d, %v; want 400", n, err)
	}
	if n, _ := db.QuotaUsed("acme", "2026-12"); n != 0 {
		t.Fatalf("next month used = %d, want 0", n)
	}
	_ = db.Close()
	db = mustOpen(t, dir)
	defer db.Close()
	if n, _ := db.QuotaUsed("acme", "2026-11"); n != 400 {
		t.Fatalf("after reopen used = %d, want 400", n)
	}
}

func TestLocalStateRotationAndReopen(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, dir)
	st, err := OpenLocalState(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateWorkspace(Workspace{Name: "acme", MonthlyQuota: 5}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateWorkspace(Workspace{Name: "acme"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate workspace: %v", err)
	}
	h1 := strings.Repeat("ab", 32)
	h2 := strings.Repeat("cd", 32)
	if err := st.PutKey(APIKey{ID: "key_1", Workspace: "acme", Hash: h1}); err != nil {
		t.Fatal(err)
	}
	p1, _ := parseHash(h1)
	p2, _ := parseHash(h2)
	if _, ok := st.KeyByHash(p1); !ok {
		t.Fatal("key not found by hash")
	}
	// Rotation: same id, new hash; the old hash stops matching at once.
	if err := st.PutKey(APIKey{ID: "key_1", Workspace: "acme", Hash: h2}); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.KeyByHash(p1); ok {
		t.Fatal("old hash still matches after rotation")
	}
	if err := st.PutKey(APIKey{ID: "key_2", Workspace: "other", Hash: strings.Repeat("ef", 32)}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutKey(APIKey{ID: "bad", Hash: "nothex"}); err == nil {
		t.Fatal("malformed hash accepted")
	}
	_ = db.Close()

	db = mustOpen(t, dir)
	defer db.Close()
	st, err = OpenLocalState(db)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := st.KeyByHash(p2); !ok || k.ID != "key_1" {
		t.Fatal("rotated key lost on reopen")
	}
	if w, ok := st.Workspace("acme"); !ok || w.MonthlyQuota != 5 {
		t.Fatalf("workspace lost on reopen: %+v", w)
	}
	if got := st.Keys("acme"); len(got) != 1 {
		t.Fatalf("Keys(acme) = %d keys, want 1", len(got))
	}
	if err := st.DeleteKey("key_1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.KeyByHash(p2); ok {
		t.Fatal("deleted key still matches")
	}
	if err := st.DeleteKey("key_1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestSessionsAndIdempotency(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	b := db.NewBatch()
	for _, s := range []*Session{{Workspace: "a", ID: "919876543210", Driver: "sandbox"}, {Workspace: "b", ID: "919876543210"}} {
		if err := b.StageSession(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.StageIdempotency("a", &Idempotency{Key: "k/with/slashes", MessageID: "msg_x", CreatedAt: 10}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, b)
	if all, _ := db.Sessions(""); len(all) != 2 {
		t.Fatalf("%d sessions, want 2", len(all))
	}
	if only, _ := db.Sessions("a"); len(only) != 1 || only[0].Driver != "sandbox" {
		t.Fatalf("sessions of a = %+v", only)
	}
	if _, err := db.Session("c", "919876543210"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing session: %v", err)
	}
	rec, err := db.Idempotency("a", "k/with/slashes")
	if err != nil || rec.MessageID != "msg_x" {
		t.Fatalf("idempotency: %+v %v", rec, err)
	}
	expired := func(cutoff int64) string {
		var out []string
		if err := db.ExpiredIdempotency(cutoff, func(ws, key string, at int64) bool {
			out = append(out, fmt.Sprintf("%s|%s|%d", ws, key, at))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}
	if got := expired(10); got != "[]" {
		t.Fatalf("expired before 10 = %v, want none", got)
	}
	if got := expired(11); got != "[a|k/with/slashes|10]" {
		t.Fatalf("expired before 11 = %v", got)
	}
	b = db.NewBatch()
	b.StageForgetIdempotency("a", "k/with/slashes", 10, false)
	mustCommit(t, db, b)
	if got := expired(11); got != "[]" {
		t.Fatalf("after forgetting the expiry entry: %v", got)
	}
	if _, err := db.Idempotency("a", "k/with/slashes"); err != nil {
		t.Fatalf("the record went with its expiry entry: %v", err)
	}
}

// TestIdempotencyRecordsOfOlderBuildsAreIndexed: records written without
// expiry entries get them when the directory is next opened, once.
func TestIdempotencyRecordsOfOlderBuildsAreIndexed(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, dir)
	b := db.NewBatch()
	for i, ws := range []string{"a", "b"} {
		v, err := encode(&Idempotency{Key: "k" + ws, MessageID: "msg_x", CreatedAt: int64(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		b.Set(idemKey(ws, "k"+ws), v) // as builds before expiry entries wrote them
	}
	b.Delete([]byte("meta/idemx"))
	mustCommit(t, db, b)
	list := func(db *DB) string {
		var out []string
		if err := db.ExpiredIdempotency(1000, func(ws, key string, at int64) bool {
			out = append(out, fmt.Sprintf("%s|%s|%d", ws, key, at))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}
	if got := list(db); got != "[]" {
		t.Fatalf("before reopening: %v", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = mustOpen(t, dir)
	defer db.Close()
	if got := list(db); got != "[a|ka|100 b|kb|101]" {
		t.Fatalf("after reopening: %v", got)
	}
	if v, err := db.get([]byte("meta/idemx")); err != nil || string(v) != "1" {
		t.Fatalf("marker = %q, %v", v, err)
	}
}

func TestSchemaGuard(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, dir)
	// A directory of schema 1, 2 or 3 is marked 4 when opened, so older
	// builds (which would ignore outbox blocks, fail on S2 ones, or drop
	// what a message refers to) refuse it from then on.
	var b *Batch
	for _, old := range []string{"1", "2", "3"} {
		b = db.NewBatch()
		b.Set([]byte("meta/schema"), []byte(old))
		mustCommit(t, db, b)
		_ = db.Close()
		db = mustOpen(t, dir)
		if v, err := db.get([]byte("meta/schema")); err != nil || string(v) != schemaVersion || schemaVersion != "4" {
			t.Fatalf("schema after opening a schema %s directory: %q (%v)", old, v, err)
		}
	}
	b = db.NewBatch()
	b.Set([]byte("meta/schema"), []byte("99"))
	mustCommit(t, db, b)
	_ = db.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "upgrade walytic") {
		t.Fatalf("newer schema opened: %v", err)
	}
}

func TestMessageCodecRoundTripsAndReadsJSONRecords(t *testing.T) {
	cases := []*Message{
		{ID: "msg_a", Workspace: "acme", Direction: "outbound", SessionID: "919876543210", To: "919999999999", From: "919876543210",
			Type: "text", Text: "héllo ✓", Status: "sent", WAID: "3EB0ABCDEF", Sent: true, CreatedAt: 1714602000, UpdatedAt: 1714602001, Fingerprint: "fp"},
		{ID: "msg_b", Status: "failed", Error: &MessageError{Code: "send_failed", Message: "no"}, CreatedAt: -5},
		{ID: "msg_c", Direction: "inbound", FromLID: "123@lid", Caption: "look", Text: strings.Repeat("long text ", 300)},
		{ID: "msg_d", Direction: "inbound", Type: "reaction", Text: "👍", RefersToWAID: "3EB0AABB", RefersTo: "msg_a"},
		{ID: "msg_e", Direction: "inbound", Type: "text", Text: "yes", RefersToWAID: "ABCDEF0123"},
		{ID: "msg_f", Direction: "inbound", Text: strings.Repeat("quoted ", 300), RefersToWAID: "3EB0AABB", RefersTo: "msg_a"},
	}
	for _, m := range cases {
		v, err := encode(m)
		if err != nil {
			t.Fatal(err)
		}
		var back Message
		if err := decode(v, &back); err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		gotErr, wantErr := back.Error, m.Error
		want := *m
		back.Error, want.Error = nil, nil
		if back != want || (gotErr == nil) != (wantErr == nil) || (gotErr != nil && *gotErr != *wantErr) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", m.ID, back, *m)
		}
	}
	if v, _ := encode(cases[2]); v[0] != tagMessageZstd {
		t.Fatalf("a long message is not compressed (tag %q)", v[0])
	}
	// Records from the JSON codec (the first release) still read.
	raw, _ := json.Marshal(cases[0])
	var back Message
	if err := decode(append([]byte{tagJSON}, raw...), &back); err != nil || back.Text != cases[0].Text || !back.Sent {
		t.Fatalf("JSON record: %+v %v", back, err)
	}
	for i := 1; i < 20; i++ {
		v, _ := encode(cases[0])
		if err := decode(v[:len(v)-i], &back); err == nil {
			t.Fatalf("record cut by %d bytes decoded", i)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	v, _ := encode(&Message{ID: "msg_a", Text: "hi", Error: &MessageError{Code: "c"}})
	f.Add(v)
	f.Add([]byte{tagMessage})
	f.Add([]byte{tagMessageZstd, 1, 2, 3})
	v, _ = encode(&Message{ID: "msg_b", Text: "yes", RefersToWAID: "3EB0AA", RefersTo: "msg_a"})
	f.Add(v)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		_ = decode(b, &m) // must not panic
	})
}

func TestPruneWebhookLogKeepsPendingAndRecent(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	old := time.Now().Add(-40 * 24 * time.Hour)
	recent := time.Now()
	b := db.NewBatch()
	// NewID never goes back in time within a process, so backdated ids are made by hand.
	seq := time.Duration(0)
	idAt := func(prefix string, at time.Time) string { seq++; return IDBound(prefix, at.Add(seq)) }
	mk := func(at time.Time, state string) *Delivery {
		d := &Delivery{ID: idAt("dlv_", at), EndpointID: "wh_1", State: state, NextAt: at.UnixNano(), Body: []byte(`{}`)}
		stageLegacyDelivery(b, d)
		return d
	}
	var oldDone []*Delivery
	for range 5 {
		oldDone = append(oldDone, mk(old, "delivered"))
	}
	oldPending := mk(old, "pending")
	oldDone = append(oldDone, mk(old, "failed"))
	newDone := mk(recent, "delivered")
	for _, ep := range []string{"wh_1", "wh_2", "wh_3"} {
		for _, at := range []time.Time{old, old, recent} {
			if err := b.StageAttempt(&Attempt{ID: idAt("att_", at), EndpointID: ep}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustCommit(t, db, b)
	cut := time.Now().Add(-30 * 24 * time.Hour)

	eps, err := db.PruneWebhookAttempts(IDBound("att_", cut))
	if err != nil || eps != 3 {
		t.Fatalf("PruneWebhookAttempts: %d endpoints (%v), want 3", eps, err)
	}
	for _, ep := range []string{"wh_1", "wh_2", "wh_3"} {
		var left []string
		_ = db.Attempts(ep, "", func(a *Attempt) bool { left = append(left, a.ID); return true })
		if len(left) != 1 || left[0] < IDBound("att_", cut) {
			t.Fatalf("%s: attempts left %v, want only the recent one", ep, left)
		}
	}

	// Two at a time: the steps go on from where the last one stopped.
	from, total, steps := "", 0, 0
	for {
		n, next, err := db.PruneWebhookDeliveries(from, IDBound("dlv_", cut), 2)
		if err != nil {
			t.Fatal(err)
		}
		if n > 2 {
			t.Fatalf("step %d deleted %d, over its limit of 2", steps, n)
		}
		total += n
		steps++
		if next == "" {
			break
		}
		if next <= from {
			t.Fatalf("step %d goes on from %q, not after %q", steps, next, from)
		}
		from = next
	}
	if total != len(oldDone) || steps < 3 {
		t.Fatalf("pruned %d deliveries in %d steps, want %d in at least 3", total, steps, len(oldDone))
	}
	for _, d := range oldDone {
		if _, err := db.Delivery(d.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old finished delivery %s kept: %v", d.ID, err)
		}
	}
	for _, d := range []*Delivery{oldPending, newDone} {
		if got, err := db.Delivery(d.ID); err != nil || string(got.Body) != `{}` {
			t.Fatalf("delivery %s lost: %v", d.ID, err)
		}
	}
	if n, next, err := db.PruneWebhookDeliveries("", IDBound("dlv_", cut), 2); n != 0 || next != "" || err != nil {
		t.Fatalf("a second pass deleted %d (next %q, %v), want nothing", n, next, err)
	}
}

func TestIDHeadNamesAnIDPrefix(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	now := time.Unix(1_800_000_000, 123)
	b := db.NewBatch()
	var ms []*Message
	for i := range 5 {
		m := newMsg("acme", "919876543210", now, i) // same second: ids differ in their nanoseconds
		ms = append(ms, m)
		if err := b.StageNewMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CommitSync(b); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		head, ok := IDHead("msg_", m.ID)
		if !ok {
			t.Fatalf("IDHead(%q) failed", m.ID)
		}
		p := IDHeadPrefix("msg_", head)
		if len(p) != len("msg_")+16 || !strings.HasPrefix(m.ID, p) {
			t.Fatalf("IDHeadPrefix = %q, not a 16-character prefix of %q", p, m.ID)
		}
		var got []string
		if err := db.MessagesWithIDPrefix("acme", p, func(x *Message) bool { got = append(got, x.ID); return true }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != m.ID {
			t.Fatalf("prefix %q found %v, want only %s", p, got, m.ID)
		}
		if err := db.MessagesWithIDPrefix("acme2", p, func(x *Message) bool { t.Fatalf("found %s in another workspace", x.ID); return false }); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"", "msg_", "evt_0123456789abcdefghjk", "msg_0123456789abcdefghj!", "msg_0123456789abcdefghjkm"} {
		if _, ok := IDHead("msg_", bad); ok {
			t.Errorf("IDHead accepted %q", bad)
		}
	}
}

// appendMessage writes after what dst holds, compressed or not, the same
// bytes encodeMessage returns.
func TestAppendMessageKeepsThePrefix(t *testing.T) {
	for _, text := range []string{"hi", strings.Repeat("order confirmed ", 200)} {
		m := &Message{ID: "msg_a", Workspace: "acme", Text: text, Status: "queued"}
		prefix := []byte("prefix")
		got := appendMessage(append([]byte(nil), prefix...), m)
		want := append(append([]byte(nil), prefix...), encodeMessage(m)...)
		if string(got) != string(want) {
			t.Errorf("text of %d bytes: appendMessage differs from prefix+encodeMessage", len(text))
		}
		var back Message
		if err := decode(got[len(prefix):], &back); err != nil || back.Text != text {
			t.Errorf("text of %d bytes: round trip: %v", len(text), err)
		}
	}
}

// Staging a new message and a status update builds keys and values on the
// stack (Pebble copies them): beyond the batch itself, nothing allocates.
func TestStagingAllocatesNothing(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	m := newMsg("acme", "919876543210", time.Now(), 1)
	u := StatusOf(m)
	batchOnly := testing.AllocsPerRun(200, func() {
		db.NewBatch().Discard()
	})
	staged := testing.AllocsPerRun(200, func() {
		b := db.NewBatch()
		if err := b.StageNewMessage(m); err != nil {
			t.Fatal(err)
		}
		b.StageMessageStatus("acme", m.ID, u)
		b.StageMessageStatus("acme", m.ID, StatusOf(m))
		b.Discard()
	})
	if staged > batchOnly {
		t.Errorf("staging a message and two status updates: %.1f allocations beyond the batch's %.1f, want none", staged-batchOnly, batchOnly)
	}
}

func TestIndexSortableIsTheAlphabetsPosition(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(sortable32, byte(c))
		if got := indexSortable(byte(c)); got != want {
			t.Fatalf("indexSortable(%q) = %d, want %d", byte(c), got, want)
		}
	}
	raw := [12]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98}
	if got, ok := decodeSortable(encodeSortable(raw)); !ok || got != raw {
		t.Fatalf("decodeSortable(encodeSortable(%x)) = %x, %v", raw, got, ok)
	}
}

func BenchmarkIDHead(b *testing.B) {
	id := NewID("msg_", time.Now())
	for b.Loop() {
		if _, ok := IDHead("msg_", id); !ok {
			b.Fatal("IDHead rejects", id)
		}
	}
}

// An endpoint deleted while another change to it is made stays deleted.
func TestUpdateWebhookDoesNotUndoADeletion(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	st, err := OpenLocalState(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		id := fmt.Sprintf("wh_race%02d", i)
		if err := st.PutWebhook(Webhook{ID: id, Workspace: "default", URL: "https://example.com/h", Events: []string{"*"}, Enabled: true}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = st.UpdateWebhook(id, func(w *Webhook) error { w.Enabled = false; return nil })
		}()
		var delErr error
		go func() {
			defer wg.Done()
			delErr = st.DeleteWebhook(id)
		}()
		wg.Wait()
		if delErr != nil {
			t.Fatal(delErr)
		}
		if _, ok := st.Webhook(id); ok {
			t.Fatalf("run %d: endpoint %s is back after its deletion returned", i, id)
		}
	}
	if _, err := st.UpdateWebhook("wh_none", func(*Webhook) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing endpoint: %v, want ErrNotFound", err)
	}
}

// A data directory that others can read is made private at open.
func TestOpenMakesTheDataDirectoryPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	db := mustOpen(t, dir)
	defer db.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v after open, want 0700", fi.Mode().Perm())
	}
}

// TestNewIDAtKeepsItsTime: an id made at a past time carries that time and
// does not move the clock NewID keeps (the next NewID is not pushed past it,
// nor held back by it).
func TestNewIDAtKeepsItsTime(t *testing.T) {
	past := time.Now().Add(-48 * time.Hour)
	id := NewIDAt("msg_", past)
	if got, ok := IDTime("msg_", id); !ok || !got.Equal(past.Truncate(time.Nanosecond)) {
		t.Fatalf("IDTime(%s) = %v %v, want %v", id, got, ok, past)
	}
	now := time.Now()
	next := NewID("msg_", now)
	if next <= id {
		t.Fatalf("NewID %s sorts before the past id %s", next, id)
	}
	if got, _ := IDTime("msg_", next); got.Before(now) {
		t.Fatalf("NewID after NewIDAt made at %v, before now %v", got, now)
	}
	if a, b := NewIDAt("msg_", past), NewIDAt("msg_", past); a == b {
		t.Fatalf("two ids at one time are equal: %s", a)
	}
}
