package whatsapp

import (
	"regexp"
	"testing"
	"time"
)

var waIDPattern = regexp.MustCompile(`^3EB0[0-9A-F]{20}$`)

func TestNewMessageIDFormatAndOrder(t *testing.T) {
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	steps := []time.Time{
		base,
		base,                       // same nanosecond
		base.Add(-time.Hour),       // clock stepped back
		base.Add(time.Millisecond), // forward again, still behind the last id
		base.Add(2 * time.Hour),    // well ahead
		base.Add(2*time.Hour + 1),  // one nanosecond later
		base.Add(-24 * time.Hour),  // far back
	}
	prev := ""
	for i, now := range steps {
		id := newMessageIDAt(now)
		if !waIDPattern.MatchString(id) {
			t.Fatalf("step %d: id %q is not 3EB0 + 20 upper-case hex digits", i, id)
		}
		if id <= prev {
			t.Fatalf("step %d: id %q does not sort after %q", i, id, prev)
		}
		prev = id
	}
	if a, b := NewMessageID(), NewMessageID(); a >= b {
		t.Fatalf("NewMessageID: %q then %q", a, b)
	}
}
