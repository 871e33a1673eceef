package storage

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// stageLegacyDelivery writes a delivery as builds before outbox blocks did:
// its body under dlb/, a 'd' record and a due-index entry.
func stageLegacyDelivery(b *Batch, d *Delivery) {
	d.legacyBody = true
	b.Set(deliveryBodyKey(d.ID), d.Body)
	if err := b.StageDelivery(d, 0); err != nil {
		panic(err)
	}
}

// stageDeliveries commits n pending deliveries with records of their own,
// every other one in the format of builds before outbox blocks, and returns
// their ids in order.
func stageDeliveries(tb testing.TB, db *DB, n int) []string {
	tb.Helper()
	ids := make([]string, 0, n)
	now := time.Now()
	for start := 0; start < n; start += 1000 {
		b := db.NewBatch()
		for i := start; i < min(n, start+1000); i++ {
			at := now.Add(time.Duration(i) * time.Microsecond)
			d := &Delivery{ID: NewID("dlv_", at), EndpointID: "wh_1", State: "pending", NextAt: at.UnixNano(), CreatedAt: at.Unix(), UpdatedAt: at.Unix(),
				Event: Event{ID: NewID("evt_", at), Type: "message.sent", SessionID: "919876543210", Workspace: "acme", Timestamp: at.Unix(),
					MessageID: NewID("msg_", at), To: "919999999999", WAMessageID: "3EB0" + fmt.Sprint(i)}}
			d.fromEvent()
			if i%2 == 0 {
				d.Body = fmt.Appendf(nil, `{"id":"evt_%d","event":"message.sent"}`, i)
				stageLegacyDelivery(b, d)
			} else if err := b.StageDelivery(d, 0); err != nil {
				tb.Fatal(err)
			}
			ids = append(ids, d.ID)
		}
		if err := db.CommitNoSync(b); err != nil {
			tb.Fatal(err)
		}
	}
	return ids
}

func TestDeliveryReaderReadsWhatPointReadsRead(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	ids := stageDeliveries(t, db, 3000)
	r, err := db.NewDeliveryReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A delivery staged after the reader opened is not seen by it.
	late := stageDeliveries(t, db, 1)[0]
	// In order, out of order (a retry due earlier than a newer first
	// attempt), and again.
	order := append(append([]string{}, ids[:1500]...), ids[2999], ids[10], ids[1500], ids[1500])
	for _, id := range order {
		got, err := r.Delivery(id)
		if err != nil {
			t.Fatalf("reader: %s: %v", id, err)
		}
		want, err := db.Delivery(id)
		if err != nil {
			t.Fatal(err)
		}
		if !sameDelivery(got, want) || !bytes.Equal(got.Body, want.Body) || (len(got.Body) == 0) != (got.Event.MessageID != "") {
			t.Fatalf("reader: %s: %+v (body %q), point read %+v (body %q)", id, got, got.Body, want, want.Body)
		}
		if ok, err := r.Recorded(id); !ok || err != nil {
			t.Fatalf("reader: %s not recorded (%v)", id, err)
		}
	}
	if ok, err := r.Recorded(late); ok || err != nil {
		t.Fatalf("reader sees a delivery recorded after it opened (%v)", err)
	}
	for _, id := range []string{"dlv_missing", late, ids[5] + "x"} {
		if _, err := r.Delivery(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("reader: %s: %v, want ErrNotFound", id, err)
		}
	}
}

// Reading back 5,000 of 200,000 staged deliveries, after a flush, as the
// deliverer's refill does.
func BenchmarkReadDeliveries(b *testing.B) {
	db, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ids := stageDeliveries(b, db, 200_000)
	if err := db.pdb.Flush(); err != nil {
		b.Fatal(err)
	}
	want := ids[100_000:105_000]
	b.Run("point", func(b *testing.B) {
		for b.Loop() {
			for _, id := range want {
				if _, err := db.Delivery(id); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("reader", func(b *testing.B) {
		for b.Loop() {
			r, err := db.NewDeliveryReader()
			if err != nil {
				b.Fatal(err)
			}
			for _, id := range want {
				if _, err := r.Delivery(id); err != nil {
					b.Fatal(err)
				}
			}
			_ = r.Close()
		}
	})
}

// The deliveries one batch stages are one outbox block, written when the
// batch commits; a delivery given a record of its own is Recorded, and the
// block goes with StageBlockDone.
func TestOutboxBlockLifecycle(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	blocks := func() map[string][]*Delivery {
		out := map[string][]*Delivery{}
		if err := db.OutboxBlocks("", func(id string, ds []*Delivery) bool { out[id] = ds; return true }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	now := time.Now()
	mk := func(i int) *Delivery {
		return &Delivery{ID: NewID("dlv_", now), EndpointID: "wh_1", State: "pending", NextAt: now.UnixNano(), CreatedAt: now.Unix(), UpdatedAt: now.Unix(),
			Event: Event{ID: fmt.Sprintf("evt_%d", i), Type: "session.connected", Workspace: "acme", SessionID: "1", Reason: "r"}}
	}
	discarded := db.NewBatch()
	if !discarded.StageFirstDelivery(mk(0)) || discarded.Empty() {
		t.Fatal("a batch holding a first delivery is its first and not empty")
	}
	discarded.Discard()
	b := db.NewBatch()
	staged := []*Delivery{mk(1), mk(2), mk(3)}
	for i, d := range staged {
		if first := b.StageFirstDelivery(d); first != (i == 0) || d.Block != staged[0].ID {
			t.Fatalf("delivery %d: first %v, block %q", i, first, d.Block)
		}
	}
	if len(b.StagedDeliveries()) != 3 {
		t.Fatalf("%d staged", len(b.StagedDeliveries()))
	}
	mustCommit(t, db, b)
	got := blocks()
	if len(got) != 1 || len(got[staged[0].ID]) != 3 {
		t.Fatalf("blocks %v, want one of 3 (the discarded batch wrote none)", got)
	}
	for i, d := range got[staged[0].ID] {
		if !sameDelivery(d, staged[i]) {
			t.Fatalf("block delivery %d:\n got %+v\nwant %+v", i, *d, *staged[i])
		}
	}
	// One gets a record of its own (its first attempt, failed: it is due
	// again later).
	rec := *staged[1]
	rec.Attempts, rec.Total, rec.NextAt = 1, 1, now.Add(time.Minute).UnixNano()
	b = db.NewBatch()
	if err := b.StageDelivery(&rec, 0); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, b)
	r, err := db.NewDeliveryReader()
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range staged {
		if ok, err := r.Recorded(d.ID); ok != (i == 1) || err != nil {
			t.Fatalf("delivery %d recorded: %v (%v)", i, ok, err)
		}
	}
	_ = r.Close()
	if d, err := db.Delivery(rec.ID); err != nil || d.Event != rec.Event || d.Total != 1 || d.Body != nil {
		t.Fatalf("recorded delivery: %+v (%v)", d, err)
	}
	var due []string
	_ = db.PendingDeliveryIDs(func(id string, _ int64) bool { due = append(due, id); return true })
	if len(due) != 1 || due[0] != rec.ID {
		t.Fatalf("due index %v, want only the recorded retry", due)
	}
	b = db.NewBatch()
	b.StageBlockDone(staged[0].ID)
	mustCommit(t, db, b)
	if got := blocks(); len(got) != 0 {
		t.Fatalf("blocks after StageBlockDone: %v", got)
	}
}
