package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
)

// sampleDelivery is a delivery as builds before outbox blocks wrote it (the
// 'd' record; its body under dlb/).
func sampleDelivery() *Delivery {
	d := &Delivery{ID: "dlv_0123456789abcdefghjk", EventID: "evt_1", EventType: "message.read", SessionID: "919876543210",
		Workspace: "acme", EndpointID: "wh_1", State: "pending", Attempts: 3, Total: 7, NextAt: 1764158400123456789,
		LastStatus: 503, LastError: "the endpoint answered 503 ✗", CreatedAt: 1764158400, UpdatedAt: -1, legacyBody: true}
	d.Event = Event{ID: d.EventID, Type: d.EventType, Workspace: d.Workspace, SessionID: d.SessionID}
	return d
}

// sampleEvents has every field of Event set by one of them.
func sampleEvents() []Event {
	return []Event{
		{ID: "evt_0123456789abcdefghjk", Type: "message.failed", Workspace: "acme", SessionID: "919876543210", Timestamp: 1764158400,
			MessageID: "msg_0123456789abcdefghjk", To: "919999999999", Error: &MessageError{Code: "send_failed", Message: "nope ✗"}},
		{ID: "evt_1", Type: "message.received", Workspace: "acme", SessionID: "1", Timestamp: -5, MessageID: "msg_2",
			From: "4915", FromLID: "123@lid", Text: "hi\x00\"there\"", MsgType: "image", Caption: "cap", WAMessageID: "3EB0AB"},
		{ID: "evt_2", Type: "session.logged_out", Workspace: "w", SessionID: "2", Reason: "logged out on the phone"},
		{ID: "evt_3", Type: "message.received", Workspace: "acme", SessionID: "1", MessageID: "msg_3", From: "4915", Text: "👍",
			MsgType: "reaction", WAMessageID: "3EB0CD", RefersToWAID: "3EB0AB", RefersTo: "msg_2"},
		{ID: "evt_4", Type: "message.received", Error: &MessageError{Code: "c", Message: "m"}, RefersToWAID: "3EB0AB"},
		{},
	}
}

// sampleEventDelivery is a delivery with its event (the 'e' record).
func sampleEventDelivery(ev Event) *Delivery {
	d := &Delivery{ID: "dlv_0123456789abcdefghjm", EndpointID: "wh_1", State: "pending", Attempts: 1, Total: 2, NextAt: 1764158400123456789,
		LastStatus: 500, LastError: "the endpoint answered 500", CreatedAt: 1764158400, UpdatedAt: 1764158405, Event: ev}
	d.fromEvent()
	return d
}

func sampleAttempt() *Attempt {
	return &Attempt{ID: "att_0123456789abcdefghjk", DeliveryID: "dlv_1", EventID: "evt_1", EventType: "message.sent",
		EndpointID: "wh_1", Number: 2, At: 1764158400123, StatusCode: 500, LatencyMs: 12, Error: "boom",
		NextRetryAt: 1764158405, State: "pending"}
}

func TestWebhookRecordCodecsRoundTripAndReadJSON(t *testing.T) {
	d, a := sampleDelivery(), sampleAttempt()
	dv, err := encode(d)
	if err != nil || dv[0] != tagDelivery {
		t.Fatalf("delivery encoded with tag %q (err %v)", dv[0], err)
	}
	av, err := encode(a)
	if err != nil || av[0] != tagAttempt {
		t.Fatalf("attempt encoded with tag %q (err %v)", av[0], err)
	}
	var d2 Delivery
	if err := decode(dv, &d2); err != nil || !sameDelivery(&d2, d) {
		t.Fatalf("delivery round trip:\n got %+v (%v)\nwant %+v", d2, err, *d)
	}
	var a2 Attempt
	if err := decode(av, &a2); err != nil || a2 != *a {
		t.Fatalf("attempt round trip:\n got %+v (%v)\nwant %+v", a2, err, *a)
	}
	// Zero values survive too.
	var dz Delivery
	if err := decode(encodeDelivery(&Delivery{}), &dz); err != nil || !sameDelivery(&dz, &Delivery{legacyBody: true}) {
		t.Fatalf("zero delivery: %+v %v", dz, err)
	}
	// Deliveries with their events: every event field survives.
	for _, ev := range sampleEvents() {
		de := sampleEventDelivery(ev)
		v, err := encode(de)
		if err != nil || v[0] != tagDeliveryEvent {
			t.Fatalf("delivery with event encoded with tag %q (err %v)", v[0], err)
		}
		var got Delivery
		if err := decode(v, &got); err != nil || !sameDelivery(&got, de) {
			t.Fatalf("delivery with event round trip:\n got %+v (%v)\nwant %+v", got, err, *de)
		}
		for i := 1; i < len(v); i++ {
			if err := decode(v[:len(v)-i], &got); err == nil {
				t.Fatalf("delivery with event cut by %d bytes decoded", i)
			}
		}
	}
	// Records from the JSON codec (earlier releases) still read, as
	// deliveries with their bodies under dlb/.
	raw, _ := json.Marshal(d)
	var dj Delivery
	if err := decode(append([]byte{tagJSON}, raw...), &dj); err != nil || !sameDelivery(&dj, d) {
		t.Fatalf("JSON delivery: %+v %v", dj, err)
	}
	raw, _ = json.Marshal(a)
	var aj Attempt
	if err := decode(append([]byte{tagJSON}, raw...), &aj); err != nil || aj != *a {
		t.Fatalf("JSON attempt: %+v %v", aj, err)
	}
	// A cut record is an error, never a half-filled value taken as whole.
	for i := 1; i < len(dv); i++ {
		if err := decode(dv[:len(dv)-i], &d2); err == nil {
			t.Fatalf("delivery cut by %d bytes decoded", i)
		}
	}
	for i := 1; i < len(av); i++ {
		if err := decode(av[:len(av)-i], &a2); err == nil {
			t.Fatalf("attempt cut by %d bytes decoded", i)
		}
	}
	// The wrong record type is refused.
	if err := decode(dv, &a2); err == nil {
		t.Fatal("a delivery record decoded as an attempt")
	}
	if len(dv) >= len(raw) {
		t.Fatalf("binary delivery (%d bytes) is not smaller than its JSON (%d)", len(dv), len(raw))
	}
}

// sameDelivery compares every field but Body, which is not part of the record.
func sameDelivery(a, b *Delivery) bool {
	x, y := *a, *b
	x.Body, y.Body = nil, nil
	return reflect.DeepEqual(x, y)
}

// sampleBlock is n deliveries as a block holds them, the sample events
// over and over.
func sampleBlock(n int) []*Delivery {
	var ds []*Delivery
	evs := sampleEvents()
	for i := range n {
		d := &Delivery{ID: fmt.Sprintf("dlv_%04d", i), EndpointID: "wh_" + string(rune('a'+i%26)), State: "pending",
			NextAt: 1764158400123456789 + int64(i), CreatedAt: 1764158400, UpdatedAt: 1764158400, Event: evs[i%len(evs)], Block: "dlv_a"}
		d.fromEvent()
		ds = append(ds, d)
	}
	return ds
}

// TestOutboxBlockFormats: small blocks are written as they are, larger ones
// S2-compressed; blocks zstd-compressed by earlier builds still decode.
func TestOutboxBlockFormats(t *testing.T) {
	small, large := sampleBlock(1), sampleBlock(40)
	if v := encodeBlock(small); v[0] != tagBlock {
		t.Fatalf("a one-event block has tag %q, want %q", v[0], tagBlock)
	}
	v := encodeBlock(large)
	raw := encodeBlockRaw(large)
	if v[0] != tagBlockS2 || len(v) > len(raw)/2 {
		t.Fatalf("a 40-event block: tag %q, %d bytes of %d, want %q and at most half", v[0], len(v), len(raw), tagBlockS2)
	}
	enc, _ := zstdCodec()
	legacy := enc.EncodeAll(raw[1:], []byte{tagBlockZstd})
	for name, block := range map[string][]byte{"s2": v, "zstd": legacy, "raw": raw} {
		got, err := decodeBlock(block, "dlv_a")
		if err != nil || len(got) != len(large) {
			t.Fatalf("%s: decoded %d deliveries (%v), want %d", name, len(got), err, len(large))
		}
		for i := range large {
			if !sameDelivery(got[i], large[i]) {
				t.Fatalf("%s: delivery %d:\n got %+v\nwant %+v", name, i, *got[i], *large[i])
			}
		}
	}
	// A damaged length must not make the reader allocate it.
	huge := []byte{tagBlockS2, 0xff, 0xff, 0xff, 0xff, 0x0f}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeBlock(huge, "dlv_a")
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a block claiming 4 GiB decoded")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("a block claiming 4 GiB made the reader allocate %d bytes", n)
	}
}

// TestBlockScratchReuse: one scratch encodes blocks of every size in turn
// (as writeOutbox's pooled ones do), and each result, copied before the
// next use as Batch.Set copies it, decodes to its own deliveries.
func TestBlockScratchReuse(t *testing.T) {
	sc := new(blockScratch)
	for _, n := range []int{40, 1, 12, 120, 3, 40} {
		ds := sampleBlock(n)
		v := append([]byte(nil), sc.encode(ds)...)
		if want := encodeBlock(ds); !bytes.Equal(v, want) {
			t.Fatalf("%d deliveries: a reused scratch wrote %d bytes, a fresh one %d", n, len(v), len(want))
		}
		got, err := decodeBlock(v, "dlv_a")
		if err != nil || len(got) != n {
			t.Fatalf("%d deliveries: decoded %d (%v)", n, len(got), err)
		}
		for i := range ds {
			if !sameDelivery(got[i], ds[i]) {
				t.Fatalf("%d deliveries: delivery %d:\n got %+v\nwant %+v", n, i, *got[i], *ds[i])
			}
		}
	}
}

// encodeBlock is a block in buffers of its own, as the tests keep them.
func encodeBlock(ds []*Delivery) []byte { return new(blockScratch).encode(ds) }

// encodeBlockRaw is encodeBlock without compression.
func encodeBlockRaw(ds []*Delivery) []byte {
	v := encodeBlock(ds)
	if v[0] != tagBlockS2 {
		return v
	}
	raw, err := s2.Decode(nil, v[1:])
	if err != nil {
		panic(err)
	}
	return append([]byte{tagBlock}, raw...)
}

func TestOutboxBlockRoundTrip(t *testing.T) {
	ds := sampleBlock(len(sampleEvents()))
	v := encodeBlock(ds)
	got, err := decodeBlock(v, "dlv_a")
	if err != nil || len(got) != len(ds) {
		t.Fatalf("decoded %d deliveries (%v), want %d", len(got), err, len(ds))
	}
	for i := range ds {
		if !sameDelivery(got[i], ds[i]) {
			t.Fatalf("delivery %d:\n got %+v\nwant %+v", i, *got[i], *ds[i])
		}
	}
	for i := 1; i < len(v); i++ {
		if _, err := decodeBlock(v[:len(v)-i], "dlv_a"); err == nil {
			t.Fatalf("block cut by %d bytes decoded", i)
		}
	}
	if _, err := decodeBlock(append(v, 0), "dlv_a"); err == nil {
		t.Fatal("block with a trailing byte decoded")
	}
}

func FuzzDecodeWebhookRecords(f *testing.F) {
	f.Add(encodeDelivery(sampleDelivery()))
	f.Add(encodeDeliveryEvent(sampleEventDelivery(sampleEvents()[0])))
	f.Add(encodeBlock([]*Delivery{sampleEventDelivery(sampleEvents()[1])}))
	f.Add([]byte{tagBlock, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(encodeBlock(sampleBlock(12)))
	f.Add([]byte{tagBlockS2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(encodeAttempt(sampleAttempt()))
	f.Add([]byte{tagDelivery})
	f.Add([]byte{tagAttempt, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Delivery
		if decode(b, &d) == nil && len(b) > 0 && b[0] == tagDelivery {
			// What decodes must encode back to a record that decodes the same.
			var again Delivery
			if err := decode(encodeDelivery(&d), &again); err != nil || !sameDelivery(&again, &d) {
				t.Fatalf("re-encoded delivery differs: %+v vs %+v (%v)", again, d, err)
			}
		}
		if decode(b, &d) == nil && len(b) > 0 && b[0] == tagDeliveryEvent {
			var again Delivery
			if err := decode(encodeDeliveryEvent(&d), &again); err != nil || !sameDelivery(&again, &d) {
				t.Fatalf("re-encoded delivery with event differs: %+v vs %+v (%v)", again, d, err)
			}
		}
		if ds, err := decodeBlock(b, "dlv_1"); err == nil {
			again, err := decodeBlock(encodeBlock(ds), "dlv_1")
			if err != nil || len(again) != len(ds) {
				t.Fatalf("re-encoded block differs: %d deliveries (%v), want %d", len(again), err, len(ds))
			}
			for i := range ds {
				if !sameDelivery(again[i], ds[i]) {
					t.Fatalf("re-encoded block delivery %d differs: %+v vs %+v", i, *again[i], *ds[i])
				}
			}
		}
		var a Attempt
		_ = decode(b, &a) // must not panic
	})
}
