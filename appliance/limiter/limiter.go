package limiter

import (
	"context"
	"hash/maphash"
	"math"
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
//
// Whether the request was admitted is a method, not a field: Go passes a
// struct of at most four words in registers. With a fifth field, every
// Decision handed back through a call went through the stack, copied in
// wide loads that stalled on the narrower stores (a fifth of an Allow).
type Decision struct {
	Limit      int           // the effective Burst
	Remaining  int           // requests that would be admitted now, after this decision
	Reset      time.Duration // exact time until the allowance is full again
	RetryAfter time.Duration // exact wait until a request is admitted; zero exactly when admitted
}

// Allowed reports whether the request was admitted. A rejected request
// always has a positive RetryAfter: it was rejected because its admission
// lies in the future.
func (d Decision) Allowed() bool { return d.RetryAfter == 0 }

// ResetSeconds is Reset rounded up to whole seconds, for headers.
func (d Decision) ResetSeconds() int { return ceilSeconds(d.Reset) }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds (at least 1 when
// the request was rejected, 0 when it was allowed), for the Retry-After
// header. Rounding up guarantees that waiting this long gets a request in.
func (d Decision) RetryAfterSeconds() int {
	if d.Allowed() {
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

// keyState is a key's GCRA state and the limits it was computed under.
type keyState struct {
	tat      int64 // theoretical arrival time, ns since Limiter.epoch
	interval int64 // the limits tat was computed under; a change of
	tau      int64 // limits converts it (adopt)
}

// adopt converts st to the limits g at t: the requests the key has used
// stay used and come back at the new rate, and a burst lowered below them
// leaves none. Only a change of limits moves the TAT back this way, so a
// decision at an earlier arrival than one already made (requests decided
// out of order) never gives allowance back.
func (st *keyState) adopt(g gcra, t int64) {
	if st.interval != g.interval && st.tat > t {
		st.tat = t + rescale(st.tat-t, st.interval, g.interval)
	}
	if st.tat > t+g.tau {
		st.tat = t + g.tau
	}
	st.interval, st.tau = g.interval, g.tau
}

// entry is the state of a key too long to be stored in a slot.
type entry struct{ keyState }

const (
	numShards = 256  // power of two
	shrinkMin = 1024 // a shard table this large is reallocated once it is 3/4 empty
	// slotKeyMax is the longest key a slot holds (key ids are 24 bytes);
	// longer ones go to the shard's map.
	slotKeyMax = 31
)

// slot is one key's state in a shard's table: the key itself, its hash
// and the GCRA state in one 64-byte cache line, so a look-up reads one
// line after the shard's (a map of pointers read four or five: the map's
// control word, its slot, the key's bytes, the entry).
type slot struct {
	hash uint64 // the key's hash, never 0; 0 marks a free slot
	keyState
	klen uint8
	key  [slotKeyMax]byte
}

// shard holds the keys whose hash ends in its index, in a linear-probing
// table indexed by the hash's upper bits, at most 3/4 full.
type shard struct {
	mu    sync.Mutex
	slots []slot            // len a power of two (or 0)
	used  int               // slots taken
	long  map[string]*entry // keys over slotKeyMax bytes; nil when none
	peak  int               // largest used since slots was last allocated
	// Padding keeps neighbouring shards' locks off the same cache lines.
	_ [128 - 8 - 24 - 8 - 8 - 8]byte
}

// home is the slot where a hash's probe starts. The low bits chose the shard.
func (s *shard) home(h uint64) int { return int(h>>8) & (len(s.slots) - 1) }

// find returns the index of the slot holding key, or -1. s.mu is held.
func (s *shard) find(h uint64, key string) int {
	if len(s.slots) == 0 {
		return -1
	}
	mask := len(s.slots) - 1
	for i := s.home(h); ; i = (i + 1) & mask {
		sl := &s.slots[i]
		if sl.hash == 0 {
			return -1
		}
		if sl.hash == h && int(sl.klen) == len(key) && string(sl.key[:sl.klen]) == key {
			return i
		}
	}
}

// insert adds key, which is not in the table, and returns its slot. s.mu
// is held.
func (s *shard) insert(h uint64, key string, st keyState) *slot {
	if (s.used+1)*4 > len(s.slots)*3 {
		s.rebuild(max(8, 2*len(s.slots)), math.MinInt64)
	}
	sl := s.place(h)
	sl.hash, sl.keyState, sl.klen = h, st, uint8(len(key))
	copy(sl.key[:], key)
	s.used++
	s.peak = max(s.peak, s.used)
	return sl
}

// place is the first free slot of h's probe. There is one: the table is
// never full.
func (s *shard) place(h uint64) *slot {
	mask := len(s.slots) - 1
	i := s.home(h)
	for s.slots[i].hash != 0 {
		i = (i + 1) & mask
	}
	return &s.slots[i]
}

// rebuild moves the taken slots whose TAT is after cutoff into a new table
// of n slots (a power of two; 0 for no table) and drops the rest.
func (s *shard) rebuild(n int, cutoff int64) {
	old := s.slots
	s.slots, s.used = nil, 0
	if n > 0 {
		s.slots = make([]slot, n)
	}
	for i := range old {
		if old[i].hash != 0 && old[i].tat > cutoff {
			*s.place(old[i].hash) = old[i]
			s.used++
		}
	}
}

// tableSize is the smallest table that holds n keys at most 3/4 full.
func tableSize(n int) int {
	if n == 0 {
		return 0
	}
	size := 8
	for n*4 > size*3 {
		size *= 2
	}
	return size
}

// remove frees slot i and moves back the slots after it whose probe would
// otherwise cross the hole (backward-shift deletion), so find never needs
// tombstones. s.mu is held.
func (s *shard) remove(i int) {
	mask := len(s.slots) - 1
	for j := (i + 1) & mask; s.slots[j].hash != 0; j = (j + 1) & mask {
		k := s.home(s.slots[j].hash)
		// The slot at j stays if its home lies cyclically in (i, j].
		if (i < j && i < k && k <= j) || (j < i && (i < k || k <= j)) {
			continue
		}
		s.slots[i] = s.slots[j]
		i = j
	}
	s.slots[i] = slot{}
	s.used--
}

// Limiter holds the GCRA state of every active key. It is safe for
// concurrent use; create it with New.
type Limiter struct {
	now    func() time.Time
	epoch  time.Time
	seed   maphash.Seed
	shards [numShards]shard
	// hashOf replaces the key hash in tests that need keys to collide.
	hashOf func(string) uint64
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

// hash is keyID's hash, never 0 (0 marks a free slot).
func (l *Limiter) hash(keyID string) uint64 {
	var h uint64
	if l.hashOf != nil {
		h = l.hashOf(keyID)
	} else {
		h = maphash.String(l.seed, keyID)
	}
	if h == 0 {
		h = 1 << 8 // keeps the shard (low bits 0), changes the probe
	}
	return h
}

func (l *Limiter) shard(h uint64) *shard { return &l.shards[h&(numShards-1)] }

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
	var t int64
	if l.now != nil || arrived.IsZero() {
		t = l.since()
	} else {
		t = int64(arrived.Sub(l.epoch))
	}
	return l.decide(keyID, lim, t)
}

// decide is Allow at t, in ns since epoch.
func (l *Limiter) decide(keyID string, lim Limits, t int64) Decision {
	g := lim.gcra()
	h := l.hash(keyID)
	s := l.shard(h)

	s.mu.Lock()
	st := s.state(h, keyID, keyState{tat: t, interval: g.interval, tau: g.tau})
	if st.interval != g.interval || st.tau != g.tau {
		st.adopt(g, t)
	}
	tat := max(st.tat, t)
	next := tat + g.interval
	allowed := next-t <= g.tau
	if allowed {
		tat = next
	}
	st.tat = tat
	s.mu.Unlock()

	debt := tat - t
	var retry time.Duration
	if !allowed {
		retry = time.Duration(next - g.tau - t) // > 0: next-t > tau
	}
	return Decision{
		Limit:      g.burst,
		Remaining:  int(max((g.tau-debt)/g.interval, 0)),
		Reset:      time.Duration(debt),
		RetryAfter: retry,
	}
}

// state returns key's state, adding it as fresh when the shard has none.
// s.mu is held.
func (s *shard) state(h uint64, key string, fresh keyState) *keyState {
	if len(key) <= slotKeyMax {
		if i := s.find(h, key); i >= 0 {
			return &s.slots[i].keyState
		}
		return &s.insert(h, key, fresh).keyState
	}
	e := s.long[key]
	if e == nil {
		if s.long == nil {
			s.long = make(map[string]*entry)
		}
		e = &entry{fresh}
		// Clone so the map does not pin a caller's larger buffer.
		s.long[strings.Clone(key)] = e
	}
	return &e.keyState
}

// Update converts keyID's state to lim now, as its next request would, so
// a change of limits applies from the moment it is made: idle time after
// it counts at the new rate. Call it when a key's limits change.
func (l *Limiter) Update(keyID string, lim Limits) {
	g := lim.gcra()
	t := l.since()
	h := l.hash(keyID)
	s := l.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(keyID) <= slotKeyMax {
		if i := s.find(h, keyID); i >= 0 {
			s.slots[i].adopt(g, t)
		}
	} else if e := s.long[keyID]; e != nil {
		e.adopt(g, t)
	}
}

// rescale turns a debt of debt ns at one request per from ns into the same
// number of requests (fractions included) at one per to ns, without
// overflowing: debts reach maxTau, and intervals a minute.
func rescale(debt, from, to int64) int64 {
	used := debt / from
	frac := int64(float64(debt%from) / float64(from) * float64(to))
	if used > (math.MaxInt64-frac)/to {
		return math.MaxInt64 / 2 // clamped to tau by the caller
	}
	return used*to + frac
}

// Forget drops keyID's state, e.g. when the key is revoked or rotated.
func (l *Limiter) Forget(keyID string) {
	h := l.hash(keyID)
	s := l.shard(h)
	s.mu.Lock()
	if i := s.find(h, keyID); i >= 0 {
		s.remove(i)
	}
	delete(s.long, keyID)
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
		dropped := 0
		for j := range s.slots {
			if sl := &s.slots[j]; sl.hash != 0 && sl.tat <= t {
				dropped++
			}
		}
		if dropped > 0 {
			n += dropped
			kept := s.used - dropped
			// Rebuild rather than remove one by one: backward shifts would
			// move slots past the sweep. A table that a spike of keys grew
			// shrinks here too.
			size := len(s.slots)
			if kept == 0 || (s.peak >= shrinkMin && kept <= s.peak/4) {
				size = tableSize(kept) // an idle shard holds no table
			}
			shrunk := size < len(s.slots)
			s.rebuild(size, t)
			if shrunk {
				s.peak = s.used
			}
		}
		for k, e := range s.long {
			if e.tat <= t {
				delete(s.long, k)
				n++
			}
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
		n += s.used + len(s.long)
		s.mu.Unlock()
	}
	return n
}
