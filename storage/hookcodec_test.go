package storage

import (
	"encoding/json"
	"reflect"
	"testing"
)

func sampleDelivery() *Delivery {
	return &Delivery{ID: "dlv_0123456789abcdefghjk", EventID: "evt_1", EventType: "message.read", SessionID: "919876543210",
		Workspace: "acme", EndpointID: "wh_1", State: "pending", Attempts: 3, Total: 7, NextAt: 1764158400123456789,
		LastStatus: 503, LastError: "the endpoint answered 503 ✗", CreatedAt: 1764158400, UpdatedAt: -1}
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
	if err := decode(encodeDelivery(&Delivery{}), &dz); err != nil || !sameDelivery(&dz, &Delivery{}) {
		t.Fatalf("zero delivery: %+v %v", dz, err)
	}
	// Records from the JSON codec (earlier releases) still read.
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

func FuzzDecodeWebhookRecords(f *testing.F) {
	f.Add(encodeDelivery(sampleDelivery()))
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
		var a Attempt
		_ = decode(b, &a) // must not panic
	})
}
