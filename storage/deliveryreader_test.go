package storage

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// stageDeliveries commits n pending deliveries, each with its own body, and
// returns their ids in order.
func stageDeliveries(tb testing.TB, db *DB, n int) []string {
	tb.Helper()
	ids := make([]string, 0, n)
	now := time.Now()
	for start := 0; start < n; start += 1000 {
		b := db.NewBatch()
		for i := start; i < min(n, start+1000); i++ {
			at := now.Add(time.Duration(i) * time.Microsecond)
			d := &Delivery{ID: NewID("dlv_", at), EventID: NewID("evt_", at), EventType: "message.sent", SessionID: "919876543210",
				Workspace: "acme", EndpointID: "wh_1", State: "pending", NextAt: at.UnixNano(), CreatedAt: at.Unix(), UpdatedAt: at.Unix(),
				Body: fmt.Appendf(nil, `{"id":"evt_%d","event":"message.sent"}`, i)}
			if err := b.StageNewDelivery(d); err != nil {
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
		if !sameDelivery(got, want) || !bytes.Equal(got.Body, want.Body) || len(got.Body) == 0 {
			t.Fatalf("reader: %s: %+v (body %q), point read %+v (body %q)", id, got, got.Body, want, want.Body)
		}
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
