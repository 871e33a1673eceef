package appliance

import (
	"math/rand/v2"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// DefaultPacing is what real (whatsmeow) sessions get unless told otherwise:
// a message every 3 s at most, up to 2 s of random extra delay, and 10 s
// between two messages to the same person. Sandbox sessions are not paced
// unless told to be.
var DefaultPacing = storage.Pacing{RatePerMinute: 20, MaxJitterMs: 2000, RecipientGapSeconds: 10}

// pacingFor returns the pacing a session runs under, nil for none.
func pacingFor(s *storage.Session) *storage.Pacing {
	if s.Pacing != nil {
		if *s.Pacing == (storage.Pacing{}) {
			return nil
		}
		return s.Pacing
	}
	if s.Driver == whatsapp.DriverWhatsmeow {
		p := DefaultPacing
		return &p
	}
	return nil
}

// ValidatePacing checks a pacing override.
func ValidatePacing(p *storage.Pacing) error {
	switch {
	case p.RatePerMinute < 0 || p.RatePerMinute > 600:
		return Invalid("pacing.ratePerMinute", "pacing.ratePerMinute must be 0 (no limit) to 600 messages per minute (default %d)", DefaultPacing.RatePerMinute)
	case p.MaxJitterMs < 0 || p.MaxJitterMs > 60_000:
		return Invalid("pacing.maxJitterMs", "pacing.maxJitterMs must be 0 to 60000 milliseconds (default %d)", DefaultPacing.MaxJitterMs)
	case p.RecipientGapSeconds < 0 || p.RecipientGapSeconds > 3600:
		return Invalid("pacing.recipientGapSeconds", "pacing.recipientGapSeconds must be 0 to 3600 seconds (default %d)", DefaultPacing.RecipientGapSeconds)
	}
	return nil
}

// pacedMemory is how many of its latest sends a paced session stores, for
// a restart to keep to its pacing.
const pacedMemory = 64

// pacer decides when the next send may go. It belongs to the dispatcher
// goroutine.
type pacer struct {
	last       time.Time            // when the previous send went
	recipients map[string]time.Time // when each recent recipient was last sent to
	// recent are the latest sends, oldest first, at most pacedMemory: what
	// is stored for a restart (restore).
	recent []storage.PacedSend
	// everyone counts as sent to at this time: after a restart that found
	// pacedMemory sends stored, the oldest of them, since anyone may have
	// been sent to then or before.
	everyone time.Time
	jitter   time.Duration // the random delay drawn for the next send
	drawn    bool
	rand     func() float64
}

func newPacer() *pacer {
	return &pacer{recipients: map[string]time.Time{}, rand: rand.Float64}
}

// next returns the earliest time a message to `to` may be sent.
func (p *pacer) next(cfg *storage.Pacing, to string) time.Time {
	if !p.drawn {
		p.jitter = time.Duration(p.rand() * float64(time.Duration(cfg.MaxJitterMs)*time.Millisecond))
		p.drawn = true
	}
	at := p.last.Add(p.jitter)
	if cfg.RatePerMinute > 0 {
		at = at.Add(time.Minute / time.Duration(cfg.RatePerMinute))
	}
	last, ok := p.recipients[to]
	if !ok || p.everyone.After(last) {
		last = p.everyone
	}
	if !last.IsZero() {
		if gap := last.Add(time.Duration(cfg.RecipientGapSeconds) * time.Second); gap.After(at) {
			at = gap
		}
	}
	return at
}

// restore takes up where an earlier run's pacing left off, from the sends
// it stored: the rate counts from the last of them and each recipient's
// gap from its own. Without it a restart sent a paced backlog at once.
func (p *pacer) restore(sends []storage.PacedSend, now time.Time) {
	for i, s := range sends {
		// Rebased onto now, which holds the monotonic clock, so a later
		// step of the wall clock does not move it; a time after now (the
		// clock was ahead when it was stored) counts as now, or the
		// session would wait for the clock to catch up.
		at := now.Add(-max(now.Sub(time.Unix(0, s.At)), 0))
		if at.After(p.last) {
			p.last = at
		}
		if prev, ok := p.recipients[s.To]; !ok || at.After(prev) {
			p.recipients[s.To] = at
		}
		if i == 0 && len(sends) >= pacedMemory {
			p.everyone = at
		}
		p.remember(s.To, at)
	}
}

// restoreUnknown is restore when what was stored cannot be read: every
// recipient keeps the gap from now.
func (p *pacer) restoreUnknown(now time.Time) {
	p.last, p.everyone = now, now
}

// sent records a send.
func (p *pacer) sent(cfg *storage.Pacing, to string, now time.Time) {
	p.last, p.drawn = now, false
	p.remember(to, now)
	if cfg.RecipientGapSeconds <= 0 {
		return
	}
	p.recipients[to] = now
	if len(p.recipients) > 10_000 {
		cut := now.Add(-time.Duration(cfg.RecipientGapSeconds) * time.Second)
		for k, t := range p.recipients {
			if t.Before(cut) {
				delete(p.recipients, k)
			}
		}
	}
}

func (p *pacer) remember(to string, at time.Time) {
	if len(p.recent) == pacedMemory {
		copy(p.recent, p.recent[1:])
		p.recent = p.recent[:pacedMemory-1]
	}
	p.recent = append(p.recent, storage.PacedSend{To: to, At: at.UnixNano()})
}
