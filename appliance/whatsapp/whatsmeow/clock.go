package whatsmeow

import (
	"math/rand/v2"
	"time"
)

// Clock is the time source of the driver's timers: reconnect backoff, QR code
// rotation and the login watchdog. Tests inject a fake one; nil means the
// wall clock.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

type wallClock struct{}

func (wallClock) Now() time.Time                            { return time.Now() }
func (wallClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Backoff is the reconnect schedule: attempt n (0-based) waits
// min(Initial·2ⁿ, Max), then scaled by a random factor in [1-Jitter, 1+Jitter].
type Backoff struct {
	Initial time.Duration // 0 means DefaultBackoff.Initial (1 s)
	Max     time.Duration // 0 means DefaultBackoff.Max (5 min)
	// Jitter is the spread as a fraction: 0 means DefaultBackoff.Jitter
	// (0.2, so ±20%); a negative value means none.
	Jitter float64
}

// DefaultBackoff is used for the zero fields of Options.Backoff.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.2}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoff.Jitter
	case b.Jitter < 0:
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// Delay is the wait before reconnect attempt n (0-based), given r, a uniform
// random number in [0, 1).
func (b Backoff) Delay(attempt int, r float64) time.Duration {
	b = b.withDefaults()
	d := b.Initial
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	f := 1 + b.Jitter*(2*r-1)
	return time.Duration(float64(d) * f)
}

func defaultRand() float64 { return rand.Float64() }
