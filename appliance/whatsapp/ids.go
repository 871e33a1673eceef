package whatsapp

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// lastIDNanos makes message ids strictly increasing within the process, even
// when two are made in the same nanosecond or the wall clock steps back.
var lastIDNanos atomic.Int64

// NewMessageID returns an id in the form WhatsApp's own clients use: "3EB0"
// and 20 upper-case hex digits (WhatsApp Web's classic length). The appliance
// chooses it when a message is queued, so a resend after a crash reuses it
// instead of making a duplicate.
//
// The first 16 digits are the creation time in nanoseconds, strictly
// increasing, and the last 4 are random. Ids that grow with time land at the
// end of the receipt index (wa/…) instead of at a random place in it, which
// keeps the send path's index insert cheap; the random tail keeps ids made on
// different nodes apart.
func NewMessageID() string { return newMessageIDAt(time.Now()) }

func newMessageIDAt(now time.Time) string {
	n := now.UnixNano()
	for {
		last := lastIDNanos.Load()
		if n <= last {
			n = last + 1
		}
		if lastIDNanos.CompareAndSwap(last, n) {
			break
		}
		n = now.UnixNano()
	}
	var raw [10]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(n))
	_, _ = rand.Read(raw[8:]) // never fails: crypto/rand crashes the program instead
	const hexDigits = "0123456789ABCDEF"
	var b [4 + 2*len(raw)]byte
	copy(b[:], "3EB0")
	for i, c := range raw {
		b[4+2*i] = hexDigits[c>>4]
		b[4+2*i+1] = hexDigits[c&0x0f]
	}
	return string(b[:])
}
