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
