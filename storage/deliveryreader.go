package storage

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// DeliveryReader reads many deliveries through two iterators (records and
// bodies) instead of two point reads each. The deliverer reads pending
// deliveries back from the outbox in batches of thousands, in nearly
// ascending id order; a point read builds an iterator over every level for
// each key, which was most of that work (BenchmarkReadDeliveries). It sees
// the deliveries as they were when it was made. Close it when done.
type DeliveryReader struct {
	recs, bodies *pebble.Iterator
}

// NewDeliveryReader opens a DeliveryReader.
func (db *DB) NewDeliveryReader() (*DeliveryReader, error) {
	// Records first: a body is committed with its record and never changes,
	// so every record the first iterator sees has its body in the second.
	recs, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte("dlv/"), UpperBound: prefixEnd([]byte("dlv/"))})
	if err != nil {
		return nil, fmt.Errorf("open delivery iterator: %w", err)
	}
	bodies, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte("dlb/"), UpperBound: prefixEnd([]byte("dlb/"))})
	if err != nil {
		_ = recs.Close()
		return nil, fmt.Errorf("open delivery body iterator: %w", err)
	}
	return &DeliveryReader{recs: recs, bodies: bodies}, nil
}

// seek positions it at key and returns a copy of its value, or ErrNotFound.
func seek(it *pebble.Iterator, key []byte) ([]byte, error) {
	if !it.SeekGE(key) || !bytes.Equal(it.Key(), key) {
		if err := it.Error(); err != nil {
			return nil, err
		}
		return nil, ErrNotFound
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), v...), nil
}

// Delivery reads one delivery with its body, as DB.Delivery does, or
// ErrNotFound.
func (r *DeliveryReader) Delivery(id string) (*Delivery, error) {
	record := func(k []byte) ([]byte, error) { return seek(r.recs, k) }
	body := func(k []byte) ([]byte, error) { return seek(r.bodies, k) }
	return readDelivery(id, record, body)
}

// Recorded reports whether a delivery has a record of its own: whether a
// delivery listed in an outbox block has had an attempt recorded.
func (r *DeliveryReader) Recorded(id string) (bool, error) {
	k := deliveryKey(id)
	if r.recs.SeekGE(k) && bytes.Equal(r.recs.Key(), k) {
		return true, nil
	}
	return false, r.recs.Error()
}

// Close releases the iterators.
func (r *DeliveryReader) Close() error {
	return errors.Join(r.recs.Close(), r.bodies.Close())
}
