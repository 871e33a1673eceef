package storage

import (
	"fmt"
	"testing"
	"time"
)

func TestSessionMarksRoundTrip(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	if _, found, err := db.SessionMarks("acme", "919876543210"); found || err != nil {
		t.Fatalf("marks of a new session: found=%v err=%v", found, err)
	}
	for _, m := range []SessionMarks{
		{QueueFrom: NewID("msg_", time.Now()), AwaitFrom: NewID("msg_", time.Now())},
		{QueueFrom: "", AwaitFrom: "msg_x"},
		{QueueFrom: "msg_x", AwaitFrom: ""},
	} {
		b := db.NewBatch()
		b.StageSessionMarks("acme", "919876543210", m)
		mustCommit(t, db, b)
		got, found, err := db.SessionMarks("acme", "919876543210")
		if err != nil || !found || got != m {
			t.Fatalf("marks = %+v %v %v, want %+v", got, found, err, m)
		}
	}
	b := db.NewBatch()
	b.StageDeleteSession("acme", "919876543210")
	mustCommit(t, db, b)
	if _, found, _ := db.SessionMarks("acme", "919876543210"); found {
		t.Fatal("marks outlived their session")
	}
}

func TestPacedSendsRoundTrip(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	if sends, err := db.PacedSends("acme", "919876543210"); sends != nil || err != nil {
		t.Fatalf("paced sends of a new session: %v, %v", sends, err)
	}
	var many []PacedSend
	for i := range 64 {
		many = append(many, PacedSend{To: fmt.Sprintf("9199999%05d", i), At: int64(1_800_000_000_000_000_000 + i)})
	}
	for _, sends := range [][]PacedSend{
		{{To: "919999999999", At: 1_800_000_000_123_456_789}},
		{{To: "", At: 0}, {To: "x", At: -1}},
		many,
	} {
		b := db.NewBatch()
		b.StagePacedSends("acme", "919876543210", sends)
		mustCommit(t, db, b)
		got, err := db.PacedSends("acme", "919876543210")
		if err != nil || fmt.Sprint(got) != fmt.Sprint(sends) {
			t.Fatalf("paced sends = %v, %v; want %v", got, err, sends)
		}
	}
	b := db.NewBatch()
	b.Set(paceKey("acme", "919876543210"), []byte{0, 0, 0, 0, 0, 0, 0, 1, 5, 'a'})
	mustCommit(t, db, b)
	if _, err := db.PacedSends("acme", "919876543210"); err == nil {
		t.Fatal("a truncated record read without an error")
	}
	b = db.NewBatch()
	b.StageDeleteSession("acme", "919876543210")
	mustCommit(t, db, b)
	if sends, err := db.PacedSends("acme", "919876543210"); sends != nil || err != nil {
		t.Fatalf("paced sends outlived their session: %v, %v", sends, err)
	}
}

// FuzzPacedSends: any stored bytes decode or are refused, without a panic,
// and what decodes encodes back to the same bytes.
func FuzzPacedSends(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 'a'})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 5, 'a'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		sends, ok := decodePacedSends(v)
		if !ok {
			return
		}
		again := appendPacedSends(nil, sends)
		if back, ok := decodePacedSends(again); !ok || fmt.Sprint(back) != fmt.Sprint(sends) {
			t.Fatalf("%x decoded to %v, whose encoding %x decodes to %v (%v)", v, sends, again, back, ok)
		}
	})
}

func TestSessionMessagesFrom(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	base := time.Unix(1_800_000_000, 0)
	var ids []string
	b := db.NewBatch()
	for i := 0; i < 10; i++ {
		sid := "919876543210"
		if i%2 == 1 {
			sid = "919876543211"
		}
		m := newMsg("acme", sid, base.Add(time.Duration(i)*time.Second), i)
		ids = append(ids, m.ID)
		if err := b.StageNewMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	mustCommit(t, db, b)
	var got []string
	err := db.SessionMessagesFrom("acme", "919876543210", ids[4], func(m *Message) bool {
		got = append(got, m.ID)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint([]string{ids[4], ids[6], ids[8]}); fmt.Sprint(got) != want {
		t.Fatalf("from %s: %v, want %s", ids[4], got, want)
	}
	got = got[:0]
	_ = db.SessionMessagesFrom("acme", "919876543211", "", func(m *Message) bool { got = append(got, m.ID); return len(got) < 2 })
	if len(got) != 2 || got[0] != ids[1] {
		t.Fatalf("from the start, stopping at 2: %v", got)
	}
}

func TestObserveIDKeepsNewIDsAfter(t *testing.T) {
	future := NewID("msg_", time.Now().Add(100*time.Millisecond))
	ObserveID("msg_", future)
	if id := NewID("msg_", time.Now()); id <= future {
		t.Fatalf("new id %s sorts before the observed %s", id, future)
	}
	ObserveID("msg_", "not an id") // ignored
}
