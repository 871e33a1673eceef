package limiter

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// Limits are a key's rate limits. A zero or negative field means the default
// from DefaultLimits.
type Limits struct {
	PerMinute int // allowance returned per minute
	Burst     int // most allowance stored; also the X-RateLimit-Limit value
}

const (
	defaultPerMinute = 60
	defaultBurst     = 100
)

// DefaultLimits apply to keys without overrides (and to zero fields of
// overrides). It is informational: changing it does not change the defaults.
var DefaultLimits = Limits{PerMinute: defaultPerMinute, Burst: defaultBurst}

// Decision is the outcome of one Allow call.
type Decision struct {
	Allowed    bool
	Limit      int           // the effective Burst
	Remaining  int           // requests that would be admitted now, after this decision
	Reset      time.Duration // exact time until the allowance is full again
	RetryAfter time.Duration // exact wait until a request is admitted; zero when Allowed
}

// ResetSeconds is Reset rounded up to whole seconds, for headers.
func (d Decision) ResetSeconds() int { return ceilSeconds(d.Reset) }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds (at least 1 when
// the request was rejected, 0 when it was allowed), for the Retry-After
// header. Rounding up guarantees that waiting this long gets a request in.
func (d Decision) RetryAfterSeconds() int {
	if d.Allowed {
		return 0
	}
	return max(ceilSeconds(d.RetryAfter), 1)
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// maxTau caps burst*interval so that t+tau cannot overflow int64 for any
// realistic t (t counts nanoseconds since the Limiter was created).
const maxTau = int64(1) << 62

// gcra is Limits in GCRA terms, all in nanoseconds.
type gcra struct {
	interval int64 // emission interval: 60s/PerMinute, rounded up
	tau      int64 // burst*interval: how far the TAT may run ahead of now
	burst    int
}

func (lim Limits) gcra() gcra {
	perMin, burst := lim.PerMinute, lim.Burst
	if perMin <= 0 {
		perMin = defaultPerMinute
	}
	if burst <= 0 {
		burst = defaultBurst
	}
	if perMin == defaultPerMinute && burst == defaultBurst {
		// The common case, without divisions.
		return gcra{interval: int64(time.Second), tau: defaultBurst * int64(time.Second), burst: defaultBurst}
	}
	// Rounding the interval up (never down) keeps the window bound
	// burst + w*PerMinute/60 exact for rates that do not divide a minute.
	const minute = int64(time.Minute)
	interval := (minute-1)/int64(perMin) + 1
	tau := maxTau
	if int64(burst) <= maxTau/interval {
		tau = int64(burst) * interval
	}
	return gcra{interval: interval, tau: tau, burst: burst}
}

// entry is the whole per-key state.
type entry struct {
	tat int64 // theoretical arrival time, ns since Limiter.epoch
	tau int64 // tau the TAT was last computed with, to detect limit changes
}

const (
	numShards = 256  // power of two
	shrinkMin = 1024 // a shard map this large is reallocated once it is 3/4 empty
)

type shard struct {
	mu   sync.Mutex
	m    map[string]*entry
	peak int // largest len(m) since m was last allocated
	// Padding keeps neighbouring shards' locks off the same cache lines.
	_ [128 - 8 - 8 - 8]byte
}

// Limiter holds the GCRA state of every active key. It is safe for
// concurrent use; create it with New.
type Limiter struct {
	now    func() time.Time
	epoch  time.Time
	seed   maphash.Seed
	shards [numShards]shard
}

// New returns an empty Limiter reading time from now, or from the
// monotonic clock if now is nil.
func New(now func() time.Time) *Limiter {
	l := &Limiter{now: now, seed: maphash.MakeSeed()}
	if now == nil {
		l.epoch = time.Now()
	} else {
		l.epoch = now()
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*entry)
	}
	return l
}

// since is the current time in ns since epoch, on the monotonic clock, so
// wall-clock jumps do not matter. With no clock given, time.Since reads
// only the monotonic clock: half the cost of time.Now, which also reads
// the wall clock, and the largest part of an Allow call.
func (l *Limiter) since() int64 {
	if l.now == nil {
		return int64(time.Since(l.epoch))
	}
	return int64(l.now().Sub(l.epoch))
}

func (l *Limiter) shard(keyID string) *shard {
	return &l.shards[maphash.String(l.seed, keyID)&(numShards-1)]
}

// Allow decides one request for keyID under lim, now, and, if it is
// admitted, charges it to the key.
func (l *Limiter) Allow(keyID string, lim Limits) Decision {
	return l.decide(keyID, lim, l.since())
}

// AllowAt is Allow for a request that arrived at `arrived`, a time the
// caller has read already (an HTTP server reads one per request), so the
// decision reads no clock: that read is most of Allow's cost. arrived must
// come from the Limiter's clock (time.Now when New was given nil, which
// carries the monotonic reading) and lag the present by no more than the
// request's own handling: an earlier arrival only makes the decision, and
// its Retry-After, a little stricter. A Limiter given a clock (tests) asks
// that clock instead, like Allow, since arrived comes from the real one.
func (l *Limiter) AllowAt(keyID string, lim Limits, arrived time.Time) Decision {
	if l.now != nil || arrived.IsZero() {
		return l.Allow(keyID, lim)
	}
	return l.decide(keyID, lim, int64(arrived.Sub(l.epoch)))
}

// decide is Allow at t, in ns since epoch.
func (l *Limiter) decide(keyID string, lim Limits, t int64) Decision {
	g := lim.gcra()
	s := l.shard(keyID)

	s.mu.Lock()
	e := s.m[keyID]
	if e == nil {
		e = &entry{tat: t, tau: g.tau}
		// Clone so the map does not pin a caller's larger buffer.
		s.m[strings.Clone(keyID)] = e
		s.peak = max(s.peak, len(s.m))
	}
	tat := e.tat
	if g.tau < e.tau && tat > t+g.tau {
		// Burst (or rate) lowered: the key owes at most the new tau.
		tat = t + g.tau
	}
	tat = max(tat, t)
	next := tat + g.interval
	allowed := next-t <= g.tau
	if allowed {
		tat = next
	}
	e.tat, e.tau = tat, g.tau
	s.mu.Unlock()

	debt := tat - t
	d := Decision{
		Allowed:   allowed,
		Limit:     g.burst,
		Remaining: int(max((g.tau-debt)/g.interval, 0)),
		Reset:     time.Duration(debt),
	}
	if !allowed {
		d.RetryAfter = time.Duration(next - g.tau - t)
	}
	return d
}

// Forget drops keyID's state, e.g. when the key is revoked or rotated.
func (l *Limiter) Forget(keyID string) {
	s := l.shard(keyID)
	s.mu.Lock()
	delete(s.m, keyID)
	s.mu.Unlock()
}

// Evict drops every key whose allowance is full (TAT <= now): such an entry
// says nothing a missing one does not. It returns how many were dropped.
// Call it periodically (see RunEvictor); it locks one shard at a time.
func (l *Limiter) Evict() int {
	t := l.since()
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.tat <= t {
				delete(s.m, k)
				n++
			}
		}
		// Go maps never shrink; reallocate after a spike of keys has gone.
		if s.peak >= shrinkMin && len(s.m) <= s.peak/4 {
			m := make(map[string]*entry, len(s.m))
			for k, e := range s.m {
				m[k] = e
			}
			s.m, s.peak = m, len(m)
		}
		s.mu.Unlock()
	}
	return n
}

// RunEvictor calls Evict every interval until ctx is done. Run it in its own
// goroutine. An interval of a minute or so is plenty: an entry costs tens of
// bytes and a full-allowance key that sends again is simply re-created.
func (l *Limiter) RunEvictor(ctx context.Context, every time.Duration) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			l.Evict()
		}
	}
}

// Len is the number of keys with state.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
