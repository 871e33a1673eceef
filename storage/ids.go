package storage

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// sortable32 is Crockford's base32 alphabet in lower case; it is in ASCII
// order, so encoded ids sort like the bytes they encode.
const sortable32 = "0123456789abcdefghjkmnpqrstvwxyz"

// idClock makes ids strictly increasing within the process even when many
// are made in the same nanosecond or the wall clock steps back.
var idClock atomic.Int64

// NewID returns prefix + a 20-character id that sorts by creation time:
// 8 bytes of Unix nanoseconds (strictly increasing in this process) and 4
// random bytes (so ids made on different nodes do not collide).
func NewID(prefix string, now time.Time) string {
	n := now.UnixNano()
	for {
		last := idClock.Load()
		if n <= last {
			n = last + 1
		}
		if idClock.CompareAndSwap(last, n) {
			break
		}
		n = now.UnixNano()
	}
	var raw [12]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(n))
	// The runtime's generator (ChaCha8, seeded from the system's entropy)
	// keeps nodes apart as well as crypto/rand, at less cost (NewID took
	// 162 against 229 ns); a send with a "*" endpoint makes seven ids.
	// Ids are not secrets.
	binary.BigEndian.PutUint32(raw[8:], rand.Uint32())
	return prefix + encodeSortable(raw)
}

// NewIDAt returns an id made at t, a time in the past, without the clock
// NewID keeps strictly increasing: for a record that belongs earlier in the
// log than its arrival (an inbound message WhatsApp timestamped before it
// reached us), so that time ranges of ids stay ranges of its time. Its 4
// random bytes keep it apart from other ids of the same nanosecond; it must
// not be used for records whose order against new ids matters (the marks).
func NewIDAt(prefix string, t time.Time) string {
	var raw [12]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(t.UnixNano()))
	binary.BigEndian.PutUint32(raw[8:], rand.Uint32())
	return prefix + encodeSortable(raw)
}

// ObserveID makes every id NewID returns from now on sort after id (of any
// prefix length), even if the wall clock is behind the time id was made at.
// A restart calls it with the ids its marks were computed from.
func ObserveID(prefix, id string) {
	t, ok := IDTime(prefix, id)
	if !ok {
		return
	}
	n := t.UnixNano()
	for {
		last := idClock.Load()
		if n <= last || idClock.CompareAndSwap(last, n) {
			return
		}
	}
}

// IDBound returns the smallest id (with prefix) made at or after t, for
// turning a time range into a key range. Times outside what an id can
// hold (before 1970, after 2262) give the lowest and the highest bound:
// UnixNano wraps past 2262, which made a far-future bound the lowest.
func IDBound(prefix string, t time.Time) string {
	var raw [12]byte
	var n int64
	switch {
	case t.Before(time.Unix(0, 0)):
		n = 0
	case t.After(maxIDTime):
		n = math.MaxInt64
	default:
		n = t.UnixNano()
	}
	binary.BigEndian.PutUint64(raw[:8], uint64(n))
	return prefix + encodeSortable(raw)
}

// maxIDTime is the latest time an id can hold.
var maxIDTime = time.Unix(0, math.MaxInt64)

// IDTime returns the creation time encoded in an id made by NewID.
func IDTime(prefix, id string) (time.Time, bool) {
	if len(id) != len(prefix)+20 || id[:len(prefix)] != prefix {
		return time.Time{}, false
	}
	raw, ok := decodeSortable(id[len(prefix):])
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8]))), true
}

func encodeSortable(raw [12]byte) string {
	// 96 bits → 20 symbols of 5 bits (the last symbol carries 1 padding bit... 100 bits in all).
	var out [20]byte
	var acc uint64
	bits := 0
	j := 0
	for _, b := range raw {
		acc = acc<<8 | uint64(b)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out[j] = sortable32[(acc>>uint(bits))&31]
			j++
		}
	}
	if bits > 0 {
		out[j] = sortable32[(acc<<uint(5-bits))&31]
	}
	return string(out[:])
}

func decodeSortable(s string) ([12]byte, bool) {
	var raw [12]byte
	if len(s) != 20 {
		return raw, false
	}
	var acc uint64
	bits := 0
	j := 0
	for i := 0; i < len(s); i++ {
		v := indexSortable(s[i])
		if v < 0 {
			return raw, false
		}
		acc = acc<<5 | uint64(v)
		bits += 5
		if bits >= 8 && j < 12 {
			bits -= 8
			raw[j] = byte(acc >> uint(bits))
			j++
		}
	}
	return raw, j == 12
}

// sortableValue maps a byte to its value in sortable32, or -1: decoding
// looks each symbol up instead of scanning the alphabet for it, since
// every send decodes its message id (for its WhatsApp id).
var sortableValue = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(sortable32); i++ {
		t[sortable32[i]] = int8(i)
	}
	return t
}()

func indexSortable(c byte) int { return int(sortableValue[c]) }

// IDHeadLen is how many leading bytes of an id IDHead returns: the 8 bytes of
// time and the first 2 random bytes, exactly the first 16 characters of the
// id's text, so a head names an id prefix.
const IDHeadLen = 10

// IDHead returns the first IDHeadLen bytes of an id made by NewID with
// prefix. Other identifiers can carry them, and IDHeadPrefix turns them back
// into the id prefix to look for.
func IDHead(prefix, id string) (head [IDHeadLen]byte, ok bool) {
	if len(id) != len(prefix)+20 || id[:len(prefix)] != prefix {
		return head, false
	}
	raw, ok := decodeSortable(id[len(prefix):])
	if !ok {
		return head, false
	}
	copy(head[:], raw[:IDHeadLen])
	return head, true
}

// IDHeadPrefix returns prefix and the 16 characters every id whose first
// IDHeadLen bytes are head begins with.
func IDHeadPrefix(prefix string, head [IDHeadLen]byte) string {
	var raw [12]byte
	copy(raw[:], head[:])
	return prefix + encodeSortable(raw)[:16]
}
