package storage

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func statusMessage(id, text string) *Message {
	return &Message{ID: id, Workspace: "acme", Direction: "outbound", SessionID: "919876543210", To: "919999999999",
		Type: "text", Text: text, Status: "queued", WAID: "3EB0AAAA", CreatedAt: 100, UpdatedAt: 100}
}

// Status updates written as merge operands read back applied to their
// record, in order, whether the record and the updates sit in the memtable,
// in different sstables (flushed one by one, so some merges run without the
// record), or compacted together; list scans see the same.
func TestStatusUpdatesMergeIntoTheRecord(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	ms := []*Message{statusMessage("msg_a", "short"), statusMessage("msg_b", strings.Repeat("long text ", 300))}
	b := db.NewBatch()
	for _, m := range ms {
		if err := b.StageNewMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	// A record from the first builds (JSON) under updates too.
	legacy := statusMessage("msg_c", "legacy")
	raw, _ := json.Marshal(legacy)
	b.Set(msgKey("acme", "msg_c"), append([]byte{tagJSON}, raw...))
	mustCommit(t, db, b)
	ids := []string{"msg_a", "msg_b", "msg_c"}

	steps := []StatusUpdate{
		{Status: "sent", Sent: true, UpdatedAt: 101},
		{Status: "delivered", UpdatedAt: 102},
		{Status: "read", WAID: "3EB0BBBB", UpdatedAt: 103},
	}
	want := func(step int) Message {
		m := *statusMessage("", "")
		for _, u := range steps[:step+1] {
			u.apply(&m)
		}
		return m
	}
	check := func(label string, step int) {
		t.Helper()
		w := want(step)
		for _, id := range ids {
			got, err := db.Message("acme", id)
			if err != nil {
				t.Fatalf("%s: %s: %v", label, id, err)
			}
			if got.Status != w.Status || got.Sent != w.Sent || got.WAID != w.WAID || got.UpdatedAt != w.UpdatedAt || got.Text == "" || got.CreatedAt != 100 {
				t.Fatalf("%s: %s: %+v, want status %s sent %v waid %s at %d", label, id, got, w.Status, w.Sent, w.WAID, w.UpdatedAt)
			}
		}
		n := 0
		_ = db.Messages("acme", MessageRange{}, func(m *Message) bool {
			if m.Status != w.Status || m.UpdatedAt != w.UpdatedAt {
				t.Fatalf("%s: list shows %s %s at %d", label, m.ID, m.Status, m.UpdatedAt)
			}
			n++
			return true
		})
		if n != len(ids) {
			t.Fatalf("%s: list has %d messages", label, n)
		}
	}
	if err := db.pdb.Flush(); err != nil { // the records in an sstable
		t.Fatal(err)
	}
	for i, u := range steps {
		b := db.NewBatch()
		for _, id := range ids {
			b.StageMessageStatus("acme", id, &u)
		}
		mustCommit(t, db, b)
		check("in the memtable", i)
		if err := db.pdb.Flush(); err != nil { // each update its own sstable
			t.Fatal(err)
		}
		check("flushed", i)
	}
	if err := db.pdb.Compact(t.Context(), []byte("msg/"), []byte("msg0"), true); err != nil {
		t.Fatal(err)
	}
	check("compacted", len(steps)-1)
	// After a compaction the record is whole again, in this build's codec.
	v, err := db.get(msgKey("acme", "msg_c"))
	if err != nil || (v[0] != tagMessage && v[0] != tagMessageZstd) {
		t.Fatalf("compacted record: tag %q (%v)", v[0], err)
	}
}

func TestStatusUpdateCodecAndCombination(t *testing.T) {
	cases := []StatusUpdate{
		{Status: "sent", Sent: true, UpdatedAt: 1},
		{Status: "failed", Error: &MessageError{Code: "send_failed", Message: "nope ✗"}, UpdatedAt: -3},
		{Status: "read", WAID: "3EB0", UpdatedAt: 1 << 40},
		{},
	}
	for _, u := range cases {
		v := encodeStatusUpdate(&u)
		got, err := decodeStatusUpdate(v)
		if err != nil || got.Status != u.Status || got.Sent != u.Sent || got.WAID != u.WAID || got.UpdatedAt != u.UpdatedAt ||
			(got.Error == nil) != (u.Error == nil) || (u.Error != nil && *got.Error != *u.Error) {
			t.Fatalf("round trip of %+v: %+v (%v)", u, got, err)
		}
		for i := 1; i < len(v); i++ {
			if _, err := decodeStatusUpdate(v[:len(v)-i]); err == nil {
				t.Fatalf("%+v cut by %d bytes decoded", u, i)
			}
		}
	}
	// Combined: the newest status and time; Sent, a WhatsApp id and an
	// error once set stay set.
	c := cases[0].then(cases[2]).then(StatusUpdate{Status: "read", UpdatedAt: 9})
	if c.Status != "read" || !c.Sent || c.WAID != "3EB0" || c.UpdatedAt != 9 || c.Error != nil {
		t.Fatalf("combined: %+v", c)
	}
}

func FuzzDecodeStatusUpdate(f *testing.F) {
	f.Add(encodeStatusUpdate(&StatusUpdate{Status: "sent", Sent: true, WAID: "x", Error: &MessageError{Code: "c"}, UpdatedAt: 5}))
	f.Add([]byte{tagStatusUpdate, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		u, err := decodeStatusUpdate(v)
		if err != nil {
			return
		}
		again, err := decodeStatusUpdate(encodeStatusUpdate(&u))
		if err != nil || again.Status != u.Status || again.Sent != u.Sent || again.WAID != u.WAID || again.UpdatedAt != u.UpdatedAt {
			t.Fatalf("re-encoded %+v differs: %+v (%v)", u, again, err)
		}
	})
}

// Applying a status update to a binary record in place gives what decoding
// the record, applying the update and encoding it again gives.
func FuzzStatusInPlaceMatchesDecoding(f *testing.F) {
	plain := encodeMessage(statusMessage("msg_a", "Your order has shipped"))
	f.Add(plain, "sent", true, "", "", "", int64(101), false)
	f.Add(plain, "failed", false, "", "send_failed", "the network refused it", int64(5), true)
	f.Add(encodeMessage(&Message{ID: "msg_x", Sent: true, Error: &MessageError{Code: "c", Message: "m"}}), "read", false, "3EB0BB", "", "", int64(-1), false)
	f.Add(encodeMessage(statusMessage("msg_b", strings.Repeat("long text ", 300))), "read", false, "", "", "", int64(7), false) // compressed: not in place
	f.Add([]byte{tagMessage, 0}, "read", false, "", "", "", int64(0), false)
	f.Add(encodeMessage(refMessage()), "read", false, "", "", "", int64(9), false)
	f.Fuzz(func(t *testing.T, rec []byte, status string, sent bool, waid, code, text string, at int64, withError bool) {
		u := &StatusUpdate{Status: status, Sent: sent, WAID: waid, UpdatedAt: at}
		if withError {
			u.Error = &MessageError{Code: code, Message: text}
		}
		fast, ok := applyStatusInPlace(rec, u)
		if !ok {
			return
		}
		var want, got Message
		if err := decode(rec, &want); err != nil {
			t.Fatalf("applied in place to a record that does not decode: %v", err)
		}
		u.apply(&want)
		if err := decode(fast, &got); err != nil {
			t.Fatalf("the record updated in place does not decode: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("in place:\n%+v\nwant\n%+v", got, want)
		}
	})
}

func refMessage() *Message {
	m := statusMessage("msg_r", "yes, deliver it")
	m.Direction, m.RefersToWAID, m.RefersTo = "inbound", "3EB0AABBCCDDEEFF0011", "msg_a"
	return m
}

// A record that refers to another message takes the fast path too, and
// keeps what it refers to.
func TestStatusInPlaceKeepsTheReference(t *testing.T) {
	rec := encodeMessage(refMessage())
	fast, ok := applyStatusInPlace(rec, &StatusUpdate{Status: "read", UpdatedAt: 12})
	if !ok {
		t.Fatal("not applied in place")
	}
	var got Message
	if err := decode(fast, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "read" || got.UpdatedAt != 12 || got.RefersToWAID != "3EB0AABBCCDDEEFF0011" || got.RefersTo != "msg_a" || got.Text != "yes, deliver it" {
		t.Fatalf("got %+v", got)
	}
	// A cut reference is not copied blindly.
	if _, ok := applyStatusInPlace(rec[:len(rec)-2], &StatusUpdate{Status: "read"}); ok {
		t.Fatal("a record with a cut reference was updated in place")
	}
}

// BenchmarkMergeStatus is what a flush or a read pays to apply a message's
// status update to its record.
func BenchmarkMergeStatus(b *testing.B) {
	rec := encodeMessage(statusMessage("msg_0000000001ABCDEF", "Your order #1234 has shipped. Your order #1234 has shipped."))
	upd := encodeStatusUpdate(&StatusUpdate{Status: "read", Sent: true, UpdatedAt: 103})
	b.ReportAllocs()
	for b.Loop() {
		m := &messageMerger{}
		if err := m.MergeNewer(upd); err != nil {
			b.Fatal(err)
		}
		if err := m.MergeOlder(rec); err != nil {
			b.Fatal(err)
		}
		if _, _, err := m.Finish(true); err != nil {
			b.Fatal(err)
		}
	}
}
