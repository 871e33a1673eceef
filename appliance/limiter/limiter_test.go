package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// fakeClock is a settable clock; safe for concurrent reads.
type fakeClock struct{ ns atomic.Int64 }

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return t0.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Set(d time.Duration)     { c.ns.Store(int64(d)) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTest() (*Limiter, *fakeClock) {
	c := &fakeClock{}
	return New(c.Now), c
}

const ms = time.Millisecond

// step is one request in a pinned timeline. Fields left zero are still
// checked, so each step states the whole decision.
type step struct {
	at        time.Duration
	lim       Limits
	n         int // requests sent at `at` (default 1); all must match want
	allowed   bool
	remaining int
	reset     time.Duration
	retry     time.Duration
	resetS    int
	retryS    int
}

func runTimeline(t *testing.T, steps []step) {
	t.Helper()
	l, c := newTest()
	for i, s := range steps {
		c.Set(s.at)
		n := max(s.n, 1)
		for j := range n {
			d := l.Allow("k", s.lim)
			if s.n <= 1 && s.allowed != (s.retry == 0) {
				t.Fatalf("step %d: the table admits exactly the steps without a retry", i)
			}
			want := Decision{Limit: s.lim.gcra().burst, Remaining: s.remaining, Reset: s.reset, RetryAfter: s.retry}
			if n > 1 {
				// Batched steps only pin admission; counts are checked by
				// the following step.
				if d.Allowed() != s.allowed {
					t.Fatalf("step %d req %d at %v: allowed=%v, want %v (%+v)", i, j, s.at, d.Allowed(), s.allowed, d)
				}
				continue
			}
			if d != want || d.Allowed() != s.allowed {
				t.Fatalf("step %d at %v:\n got %+v\nwant %+v", i, s.at, d, want)
			}
			if d.ResetSeconds() != s.resetS || d.RetryAfterSeconds() != s.retryS {
				t.Fatalf("step %d at %v: seconds reset=%d retry=%d, want %d %d",
					i, s.at, d.ResetSeconds(), d.RetryAfterSeconds(), s.resetS, s.retryS)
			}
		}
	}
}

func TestTimelines(t *testing.T) {
	def := Limits{}
	fast := Limits{PerMinute: 120, Burst: 10} // one every 500 ms
	tests := []struct {
		name  string
		steps []step
	}{
		{"idle key bursts 100 then 1/s", []step{
			{at: 0, allowed: true, remaining: 99, reset: time.Second, resetS: 1},
			{at: 0, n: 98, allowed: true},
			{at: 0, allowed: true, remaining: 0, reset: 100 * time.Second, resetS: 100},
			// 101st: rejected, retry exactly 1 s.
			{at: 0, allowed: false, remaining: 0, reset: 100 * time.Second, resetS: 100, retry: time.Second, retryS: 1},
			{at: 500 * ms, allowed: false, remaining: 0, reset: 99500 * ms, resetS: 100, retry: 500 * ms, retryS: 1},
			// Waiting RetryAfter gets in.
			{at: time.Second, allowed: true, remaining: 0, reset: 100 * time.Second, resetS: 100},
			{at: time.Second, allowed: false, remaining: 0, reset: 100 * time.Second, resetS: 100, retry: time.Second, retryS: 1},
			{at: 2 * time.Second, allowed: true, remaining: 0, reset: 100 * time.Second, resetS: 100},
			{at: 3 * time.Second, allowed: true, remaining: 0, reset: 100 * time.Second, resetS: 100},
			{at: 3999 * ms, allowed: false, remaining: 0, reset: 99001 * ms, resetS: 100, retry: ms, retryS: 1},
			{at: 4 * time.Second, allowed: true, remaining: 0, reset: 100 * time.Second, resetS: 100},
		}},
		{"drained at 0, exactly 10 more at 10 s", []step{
			{at: 0, n: 100, allowed: true},
			{at: 0, allowed: false, reset: 100 * time.Second, resetS: 100, retry: time.Second, retryS: 1},
			{at: 10 * time.Second, allowed: true, remaining: 9, reset: 91 * time.Second, resetS: 91},
			{at: 10 * time.Second, n: 8, allowed: true},
			{at: 10 * time.Second, allowed: true, remaining: 0, reset: 100 * time.Second, resetS: 100},
			{at: 10 * time.Second, allowed: false, reset: 100 * time.Second, resetS: 100, retry: time.Second, retryS: 1},
		}},
		{"partial refill", []step{
			{at: 0, n: 50, allowed: true},
			{at: 20 * time.Second, allowed: true, remaining: 69, reset: 31 * time.Second, resetS: 31},
			{at: 20*time.Second + 300*ms, allowed: true, remaining: 68, reset: 31700 * ms, resetS: 32},
			{at: 200 * time.Second, allowed: true, remaining: 99, reset: time.Second, resetS: 1},
		}},
		{"override 120/min burst 10", []step{
			{at: 0, lim: fast, allowed: true, remaining: 9, reset: 500 * ms, resetS: 1},
			{at: 0, lim: fast, n: 9, allowed: true},
			{at: 0, lim: fast, allowed: false, reset: 5 * time.Second, resetS: 5, retry: 500 * ms, retryS: 1},
			// Waiting the rounded-up 1 s gets in, with one more to spare.
			{at: time.Second, lim: fast, allowed: true, remaining: 1, reset: 4500 * ms, resetS: 5},
			{at: time.Second, lim: fast, allowed: true, remaining: 0, reset: 5 * time.Second, resetS: 5},
			{at: 1250 * ms, lim: fast, allowed: false, reset: 4750 * ms, resetS: 5, retry: 250 * ms, retryS: 1},
			{at: 1500 * ms, lim: fast, allowed: true, remaining: 0, reset: 5 * time.Second, resetS: 5},
		}},
		{"slow rate rounds retry up", []step{
			{at: 0, lim: Limits{PerMinute: 7, Burst: 1}, allowed: true, reset: 8571428572, resetS: 9},
			{at: 0, lim: Limits{PerMinute: 7, Burst: 1}, allowed: false, reset: 8571428572, resetS: 9, retry: 8571428572, retryS: 9},
			{at: 8571428571, lim: Limits{PerMinute: 7, Burst: 1}, allowed: false, reset: 1, resetS: 1, retry: 1, retryS: 1},
			{at: 9 * time.Second, lim: Limits{PerMinute: 7, Burst: 1}, allowed: true, reset: 8571428572, resetS: 9},
		}},
		{"burst lowered then raised mid-stream", []step{
			{at: 0, lim: def, n: 50, allowed: true},
			// Owes 50 s; new tau is 10 s, so the debt is clamped to 10 s:
			// nothing left, next in 1 s, full in 10 s (not 50 s).
			{at: 0, lim: Limits{Burst: 10}, allowed: false, reset: 10 * time.Second, resetS: 10, retry: time.Second, retryS: 1},
			{at: time.Second, lim: Limits{Burst: 10}, allowed: true, reset: 10 * time.Second, resetS: 10},
			// Raised back: the TAT is kept, so the extra burst is available.
			{at: time.Second, lim: def, allowed: true, remaining: 89, reset: 11 * time.Second, resetS: 11},
			{at: 12 * time.Second, lim: Limits{Burst: 10}, allowed: true, remaining: 9, reset: time.Second, resetS: 1},
		}},
		{"rate changed: the requests used stay used", []step{
			{at: 0, lim: def, n: 100, allowed: true},
			// 100 used; at 120/min with a burst of 200, 100 are left.
			{at: 0, lim: Limits{PerMinute: 120, Burst: 200}, allowed: true, remaining: 99, reset: 50500 * ms, resetS: 51},
			// Burst back to 100: 101 used is over it, so none is left.
			{at: 0, lim: Limits{PerMinute: 120}, allowed: false, reset: 50 * time.Second, resetS: 50, retry: 500 * ms, retryS: 1},
			// Rate lowered: the 100 used stay used, and come back one
			// every 10 s (no second burst).
			{at: 0, lim: Limits{PerMinute: 6}, allowed: false, reset: 1000 * time.Second, resetS: 1000, retry: 10 * time.Second, retryS: 10},
			{at: 10 * time.Second, lim: Limits{PerMinute: 6}, allowed: true, reset: 1000 * time.Second, resetS: 1000},
			{at: 10 * time.Second, lim: def, allowed: false, reset: 100 * time.Second, resetS: 100, retry: time.Second, retryS: 1},
		}},
		{"rate raised: what was left stays left", []step{
			{at: 0, lim: def, n: 20, allowed: true},
			{at: 0, lim: Limits{PerMinute: 600}, allowed: true, remaining: 79, reset: 2100 * ms, resetS: 3},
		}},
		{"a fraction of a request used is kept too", []step{
			{at: 0, lim: def, n: 10, allowed: true},
			// 10 used, 2.5 s later 7.5: at 6/min that is 75 s of debt.
			{at: 2500 * ms, lim: Limits{PerMinute: 6}, allowed: true, remaining: 91, reset: 85 * time.Second, resetS: 85},
		}},
		{"negative limits mean defaults", []step{
			{at: 0, lim: Limits{PerMinute: -5, Burst: -1}, allowed: true, remaining: 99, reset: time.Second, resetS: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runTimeline(t, tt.steps) })
	}
}

// TestOnePerSecond: after draining, exactly one request per second is
// admitted when requests arrive every 100 ms.
func TestOnePerSecond(t *testing.T) {
	l, c := newTest()
	for range 100 {
		if !l.Allow("k", Limits{}).Allowed() {
			t.Fatal("burst rejected")
		}
	}
	var admitted []time.Duration
	for at := time.Duration(0); at <= 30*time.Second; at += 100 * ms {
		c.Set(at)
		if l.Allow("k", Limits{}).Allowed() {
			admitted = append(admitted, at)
		}
	}
	if len(admitted) != 30 {
		t.Fatalf("admitted %d, want 30: %v", len(admitted), admitted)
	}
	for i, at := range admitted {
		if want := time.Duration(i+1) * time.Second; at != want {
			t.Fatalf("admission %d at %v, want %v", i, at, want)
		}
	}
}

// refBucket is an independent token-bucket model of the same contract, in
// nanoseconds of credit: credit grows 1:1 with time up to tau, and a request
// costs one interval.
type refBucket struct {
	credit, last int64
	started      bool
}

func (r *refBucket) allow(now int64, g gcra) Decision {
	if !r.started {
		r.credit, r.started = g.tau, true
	} else {
		r.credit = min(r.credit+now-r.last, g.tau)
	}
	r.last = now
	d := Decision{Limit: g.burst}
	if r.credit >= g.interval {
		r.credit -= g.interval
	} else {
		d.RetryAfter = time.Duration(g.interval - r.credit)
	}
	d.Remaining = int(r.credit / g.interval)
	d.Reset = time.Duration(g.tau - r.credit)
	return d
}

// TestMatchesModel compares every decision with the token-bucket model, and
// checks that waiting RetryAfterSeconds is always enough.
func TestMatchesModel(t *testing.T) {
	for _, lim := range []Limits{{}, {PerMinute: 120, Burst: 10}, {PerMinute: 7, Burst: 3}, {PerMinute: 600, Burst: 1}, {PerMinute: 1, Burst: 5}} {
		t.Run(fmt.Sprintf("%d-%d", lim.PerMinute, lim.Burst), func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(lim.PerMinute)))
			l, c := newTest()
			g := lim.gcra()
			var ref refBucket
			now := time.Duration(0)
			for i := range 20000 {
				now += time.Duration(r.Int64N(int64(3 * time.Duration(g.interval) / 2)))
				c.Set(now)
				got, want := l.Allow("k", lim), ref.allow(int64(now), g)
				if got != want {
					t.Fatalf("req %d at %v:\n got %+v\nwant %+v", i, now, got, want)
				}
				if !got.Allowed() {
					// Probe on a separate limiter holding the same state.
					probe, pc := newTest()
					pc.Set(now)
					// Both limiters were created at t0, so TATs are comparable.
					st, _ := l.state("k")
					probe.setState("k", st)
					pc.Set(now + time.Duration(got.RetryAfterSeconds())*time.Second)
					if !probe.Allow("k", lim).Allowed() {
						t.Fatalf("req %d: not admitted after RetryAfter %ds", i, got.RetryAfterSeconds())
					}
				}
			}
		})
	}
}

// TestWindowProperty: for random request timings over 300 s, no window of w
// seconds admits more than burst + w*rate/60, and a saturating client gets
// (nearly) all of that.
func TestWindowProperty(t *testing.T) {
	for _, lim := range []Limits{{}, {PerMinute: 120, Burst: 10}, {PerMinute: 7, Burst: 3}, {PerMinute: 1000, Burst: 1}} {
		for seed := uint64(1); seed <= 5; seed++ {
			name := fmt.Sprintf("%d-%d/seed%d", lim.PerMinute, lim.Burst, seed)
			t.Run(name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(seed, 42))
				l, c := newTest()
				g := lim.gcra()
				perMinute := lim.PerMinute
				if perMinute == 0 {
					perMinute = DefaultLimits.PerMinute
				}
				const span = 300 * time.Second
				times := make([]time.Duration, 20000)
				for i := range times {
					times[i] = time.Duration(r.Int64N(int64(span)))
				}
				// Clump some requests to exercise bursts.
				for i := 0; i < len(times); i += 10 {
					times[i] = times[i] / time.Second * time.Second
				}
				sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
				var admitted []time.Duration
				for _, at := range times {
					c.Set(at)
					if l.Allow("k", lim).Allowed() {
						admitted = append(admitted, at)
					}
				}
				for _, w := range []time.Duration{0, 500 * ms, time.Second, 5 * time.Second, 10 * time.Second, 60 * time.Second, span} {
					bound := g.burst + int(int64(w)*int64(perMinute)/int64(time.Minute))
					j := 0
					for i := range admitted {
						for j < len(admitted) && admitted[j] <= admitted[i]+w {
							j++
						}
						if n := j - i; n > bound {
							t.Fatalf("window %v from %v admitted %d > %d", w, admitted[i], n, bound)
						}
					}
				}
				// With slack (burst > 1) a saturating client loses nothing to
				// arrival jitter, so it gets (nearly) the whole bound.
				full := g.burst + int(int64(span)/g.interval)
				if g.burst > 1 && len(admitted) < full-2 {
					t.Fatalf("admitted %d over %v, want about %d", len(admitted), span, full)
				}
			})
		}
	}
}

func TestKeysIndependent(t *testing.T) {
	l, _ := newTest()
	for range 100 {
		l.Allow("a", Limits{})
	}
	if l.Allow("a", Limits{}).Allowed() {
		t.Fatal("a not limited")
	}
	if d := l.Allow("b", Limits{}); !d.Allowed() || d.Remaining != 99 {
		t.Fatalf("b affected by a: %+v", d)
	}
}

func TestForget(t *testing.T) {
	l, _ := newTest()
	for range 100 {
		l.Allow("k", Limits{})
	}
	l.Allow("other", Limits{})
	if l.Allow("k", Limits{}).Allowed() {
		t.Fatal("not limited")
	}
	l.Forget("k")
	l.Forget("never-seen")
	if l.Len() != 1 {
		t.Fatalf("Len = %d, want 1", l.Len())
	}
	if d := l.Allow("k", Limits{}); !d.Allowed() || d.Remaining != 99 {
		t.Fatalf("after Forget: %+v", d)
	}
}

func TestEvict(t *testing.T) {
	l, c := newTest()
	l.Allow("one", Limits{}) // full again at 1 s
	for range 10 {           // full again at 10 s
		l.Allow("ten", Limits{})
	}
	l.Allow("fast", Limits{PerMinute: 600}) // full again at 100 ms
	if n := l.Evict(); n != 0 || l.Len() != 3 {
		t.Fatalf("at 0: evicted %d, Len %d", n, l.Len())
	}
	c.Set(999 * ms)
	if n := l.Evict(); n != 1 || l.Len() != 2 {
		t.Fatalf("at 999ms: evicted %d, Len %d", n, l.Len())
	}
	c.Set(time.Second) // TAT == now: full, evictable
	if n := l.Evict(); n != 1 || l.Len() != 1 {
		t.Fatalf("at 1s: evicted %d, Len %d", n, l.Len())
	}
	// "ten" still owes 9 s and must keep that debt.
	if d := l.Allow("ten", Limits{}); d.Remaining != 90 {
		t.Fatalf("ten lost its state: %+v", d)
	}
	c.Set(time.Hour)
	if n := l.Evict(); n != 1 || l.Len() != 0 {
		t.Fatalf("at 1h: evicted %d, Len %d", n, l.Len())
	}
	for i := range l.shards {
		if s := &l.shards[i]; s.slots != nil || s.peak != 0 {
			t.Fatalf("shard %d keeps a table of %d slots (peak %d) with no keys", i, len(s.slots), s.peak)
		}
	}
}

// TestEvictShrinksMaps: after a spike in one shard is evicted, the shard's
// map is reallocated and the surviving keys keep their state.
func TestEvictShrinksMaps(t *testing.T) {
	l, c := newTest()
	s0 := &l.shards[0]
	var keys []string
	for i := 0; len(keys) < shrinkMin+200; i++ {
		if k := "key-" + strconv.Itoa(i); l.shard(l.hash(k)) == s0 {
			keys = append(keys, k)
		}
	}
	survivors := keys[:100]
	for _, k := range keys {
		l.Allow(k, Limits{})
	}
	for _, k := range survivors {
		for range 49 {
			l.Allow(k, Limits{}) // full again at 50 s
		}
	}
	if s0.peak != len(keys) {
		t.Fatalf("peak %d, want %d", s0.peak, len(keys))
	}
	c.Set(10 * time.Second)
	if n := l.Evict(); n != len(keys)-len(survivors) {
		t.Fatalf("evicted %d", n)
	}
	if s0.peak != len(survivors) || s0.used != len(survivors) || len(s0.slots) > 4*len(survivors) {
		t.Fatalf("after evict: peak %d, %d of %d slots used, want %d used of at most %d", s0.peak, s0.used, len(s0.slots), len(survivors), 4*len(survivors))
	}
	for _, k := range survivors {
		if d := l.Allow(k, Limits{}); !d.Allowed() || d.Remaining != 59 {
			t.Fatalf("survivor %s lost state: %+v", k, d)
		}
	}
}

func TestRunEvictor(t *testing.T) {
	l, c := newTest()
	l.Allow("k", Limits{})
	c.Set(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.RunEvictor(ctx, ms); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for l.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("RunEvictor did not evict")
		}
		time.Sleep(ms)
	}
	cancel()
	<-done
}

// TestConcurrentOneKey: at a frozen clock, however many goroutines race on
// one key, exactly burst requests are admitted.
func TestConcurrentOneKey(t *testing.T) {
	for _, burst := range []int{1, 10, 100} {
		l, _ := newTest()
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for range 50 {
					if l.Allow("hot", Limits{Burst: burst}).Allowed() {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n := admitted.Load(); n != int64(burst) {
			t.Fatalf("burst %d: admitted %d", burst, n)
		}
	}
}

// TestConcurrentMixed exercises Allow, Forget, Evict and Len together under
// -race with a moving clock.
func TestConcurrentMixed(t *testing.T) {
	l, c := newTest()
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				k := keys[(g*131+i)%len(keys)]
				switch i % 100 {
				case 0:
					l.Forget(k)
				case 1:
					c.Advance(10 * ms)
				default:
					d := l.Allow(k, Limits{Burst: 1 + i%7})
					if d.Remaining < 0 || d.Remaining > d.Limit || d.Reset < 0 || (!d.Allowed() && d.RetryAfterSeconds() < 1) {
						t.Errorf("bad decision %+v", d)
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			l.Evict()
			_ = l.Len()
		}
	})
	wg.Wait()
}

func TestGCRAEdges(t *testing.T) {
	huge := Limits{PerMinute: 1 << 62, Burst: 1 << 62}.gcra()
	if huge.interval != 1 || huge.tau != maxTau {
		t.Fatalf("huge: %+v", huge)
	}
	slow := Limits{PerMinute: 1, Burst: 1 << 40}.gcra()
	if slow.interval != int64(time.Minute) || slow.tau != maxTau {
		t.Fatalf("slow: %+v", slow)
	}
	if got := (Limits{PerMinute: 7}).gcra().interval; got != 8571428572 {
		t.Fatalf("7/min interval %d, want rounded up", got)
	}
	l, _ := newTest()
	if d := l.Allow("k", Limits{PerMinute: 1 << 62, Burst: 1 << 62}); !d.Allowed() || d.Remaining < 0 {
		t.Fatalf("huge: %+v", d)
	}
	if d := (Decision{Reset: 1}); d.ResetSeconds() != 1 || d.RetryAfterSeconds() != 0 {
		t.Fatalf("seconds: %+v", d)
	}
	if d := (Decision{RetryAfter: 1}); d.Allowed() || d.RetryAfterSeconds() != 1 {
		t.Fatal("a rejection a nanosecond from admission must say retry 1 s")
	}
}

func TestShardPadding(t *testing.T) {
	if s := unsafe.Sizeof(shard{}); s != 128 {
		t.Fatalf("shard is %d bytes, want 128", s)
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	l, _ := newTest()
	l.Allow("existing-key", Limits{})
	if n := testing.AllocsPerRun(1000, func() { l.Allow("existing-key", Limits{}) }); n != 0 {
		t.Fatalf("Allow allocates %v per call", n)
	}
}

// TestMonotonicClock: with no clock given, the limiter reads the monotonic
// clock itself; a burst is admitted, the next request waits about one
// emission interval, and time passing gives allowance back.
func TestMonotonicClock(t *testing.T) {
	l := New(nil)
	lim := Limits{PerMinute: 600, Burst: 5} // one every 100 ms
	for i := range 5 {
		if d := l.Allow("k", lim); !d.Allowed() {
			t.Fatalf("request %d of the burst refused: %+v", i+1, d)
		}
	}
	d := l.Allow("k", lim)
	if d.Allowed() || d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond {
		t.Fatalf("over the burst: %+v, want refused with a wait of at most 100ms", d)
	}
	time.Sleep(d.RetryAfter + 5*time.Millisecond)
	if d := l.Allow("k", lim); !d.Allowed() {
		t.Fatalf("after waiting RetryAfter: %+v", d)
	}
}

// AllowAt with the arrival times an injected clock would show decides
// exactly as Allow on that clock: the same timeline, headers included.
func TestAllowAtMatchesAllowOnTheSameTimes(t *testing.T) {
	start := time.Now()
	now := start
	clocked := New(func() time.Time { return now })
	at := New(nil)
	lims := []Limits{{}, {PerMinute: 600, Burst: 5}, {PerMinute: 7, Burst: 3}}
	steps := []time.Duration{0, 0, 0, time.Millisecond, 90 * time.Millisecond, 0, time.Second, 0, 0, 0, 0, 0, 8 * time.Second, 0, 0, 0, 0}
	for _, lim := range lims {
		key := "key-" + strconv.Itoa(lim.Burst)
		for i, step := range steps {
			now = now.Add(step)
			want := clocked.Allow(key, lim)
			// The same time since each limiter's creation.
			got := at.AllowAt(key, lim, at.epoch.Add(now.Sub(start)))
			if got != want {
				t.Fatalf("%+v step %d: AllowAt = %+v, Allow = %+v", lim, i, got, want)
			}
		}
	}
}

// A Limiter given a clock decides AllowAt on that clock: the arrival time
// a caller read from the real clock means nothing to it.
func TestAllowAtOnAnInjectedClockAsksTheClock(t *testing.T) {
	now := time.Now()
	l := New(func() time.Time { return now })
	lim := Limits{PerMinute: 60, Burst: 1}
	if !l.AllowAt("k", lim, now.Add(time.Hour)).Allowed() {
		t.Fatal("first request refused")
	}
	// An hour later by the caller's time, but not by the limiter's clock.
	if d := l.AllowAt("k", lim, now.Add(2*time.Hour)); d.Allowed() || d.RetryAfter != time.Second {
		t.Fatalf("second request at the same clock time: %+v, want refused for 1 s", d)
	}
}

// state is key's GCRA state; ok is false when the limiter holds none.
func (l *Limiter) state(key string) (st keyState, ok bool) {
	h := l.hash(key)
	s := l.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.find(h, key); i >= 0 {
		return s.slots[i].keyState, true
	}
	if e := s.long[key]; e != nil {
		return e.keyState, true
	}
	return keyState{}, false
}

// setState gives key the state st, as if it had made requests.
func (l *Limiter) setState(key string, st keyState) {
	l.AllowAt(key, Limits{}, time.Time{}) // creates it
	h := l.hash(key)
	s := l.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.find(h, key); i >= 0 {
		s.slots[i].keyState = st
	} else {
		s.long[key].keyState = st
	}
}

// TestTableAgainstAMap drives shards through inserts, look-ups, Forget and
// Evict with a few hashes shared by many keys (long probe runs that wrap
// around the table, deletions inside them) and keys too long for a slot,
// and checks every key's state against a plain map after every step.
func TestTableAgainstAMap(t *testing.T) {
	for _, hashes := range []int{1, 3, 1 << 20} {
		t.Run(strconv.Itoa(hashes), func(t *testing.T) {
			l, c := newTest()
			l.hashOf = func(k string) uint64 {
				x := maphashOf(k) % uint64(hashes)
				if hashes < 1<<20 {
					// A few distinct hashes, all with the last slot as
					// their home, so that probe runs wrap around.
					return (x<<12|0xfff)<<8 | 7
				}
				return x<<8 | 7 // all in shard 7, homes spread
			}
			r := rand.New(rand.NewPCG(1, uint64(hashes)))
			want := map[string]int64{} // key → TAT
			keys := make([]string, 300)
			for i := range keys {
				keys[i] = "k" + strconv.Itoa(i)
				if i%10 == 0 {
					keys[i] += strings.Repeat("x", slotKeyMax) // too long for a slot
				}
			}
			now := time.Duration(0)
			for step := range 20000 {
				k := keys[r.IntN(len(keys))]
				switch op := r.IntN(100); {
				case op < 80:
					d := l.Allow(k, Limits{})
					tat, ok := want[k]
					tat = max(tat, int64(now))
					if !ok {
						tat = int64(now)
					}
					if d.Allowed() != (tat+int64(time.Second)-int64(now) <= 100*int64(time.Second)) {
						t.Fatalf("step %d: %s allowed %v with TAT %d at %d", step, k, d.Allowed(), tat, now)
					}
					if d.Allowed() {
						tat += int64(time.Second)
					}
					want[k] = tat
				case op < 95:
					l.Forget(k)
					delete(want, k)
				case op < 99:
					now += time.Duration(r.IntN(3000)) * time.Millisecond
					c.Set(now)
				default:
					n := l.Evict()
					evicted := 0
					for k, tat := range want {
						if tat <= int64(now) {
							delete(want, k)
							evicted++
						}
					}
					if n != evicted {
						t.Fatalf("step %d: Evict dropped %d, want %d", step, n, evicted)
					}
				}
				if l.Len() != len(want) {
					t.Fatalf("step %d: Len %d, want %d", step, l.Len(), len(want))
				}
				if step%97 == 0 {
					for _, k := range keys {
						st, ok := l.state(k)
						tat := st.tat
						if w, wok := want[k]; ok != wok || tat != w {
							t.Fatalf("step %d: %s has (%d, %v), want (%d, %v)", step, k, tat, ok, w, wok)
						}
					}
				}
			}
		})
	}
}

func maphashOf(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := range len(s) {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// TestMemoryPerKey: state for 100k keys of the real key id's length costs
// at most the documented 170 bytes a key.
func TestMemoryPerKey(t *testing.T) {
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key_%020d", i) // 24 bytes, as key ids
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := New(nil)
	for _, k := range keys {
		l.Allow(k, Limits{})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes a key", perKey)
	if perKey > 170 {
		t.Fatalf("%d bytes a key, want at most 170", perKey)
	}
	if l.Len() != n {
		t.Fatalf("Len %d", l.Len())
	}
	runtime.KeepAlive(l)
}

// TestEarlierArrivalsGiveNothingBack: a request decided after another but
// with an earlier arrival time (requests on two connections, or a stale
// time) is judged at its time, and never hands the key allowance back (the
// clamp for a lowered burst once moved the state back to it).
func TestEarlierArrivalsGiveNothingBack(t *testing.T) {
	lim := Limits{PerMinute: 60, Burst: 5}
	l, _ := newTest()
	sec := int64(time.Second)
	for i := range 5 {
		if !l.decide("k", lim, 10*sec).Allowed() {
			t.Fatalf("request %d of a burst of 5 refused", i)
		}
	}
	if d := l.decide("k", lim, 0); d.Allowed() {
		t.Fatalf("a request that arrived 10 s earlier was admitted: %+v", d)
	}
	if d := l.decide("k", lim, 10*sec); d.Allowed() || d.Remaining != 0 {
		t.Fatalf("after a decision at an earlier arrival the key has allowance again: %+v", d)
	}

	// Interleaved arrivals 2 ms apart at 1,000 a second stay within the
	// window bound burst + w×rate.
	fast := Limits{PerMinute: 60000, Burst: 10}
	l, _ = newTest()
	admitted := 0
	const w = 4 * time.Second
	for at := int64(0); at < int64(w); at += int64(500 * time.Microsecond) {
		t := at
		if (at/int64(500*time.Microsecond))%2 == 1 {
			t -= int64(2 * time.Millisecond)
		}
		if l.decide("k", fast, max(t, 0)).Allowed() {
			admitted++
		}
	}
	if bound := 10 + int(w/time.Millisecond); admitted > bound {
		t.Fatalf("%d admitted in %v, over the bound of %d", admitted, w, bound)
	}
}

// TestUpdateAppliesALimitChangeAtOnce: idle time after a change of limits
// counts at the new rate, not only from the key's next request.
func TestUpdateAppliesALimitChangeAtOnce(t *testing.T) {
	l, c := newTest()
	fast, slow := Limits{PerMinute: 600}, Limits{PerMinute: 6}
	for range 100 {
		l.Allow("k", fast)
	}
	l.Update("k", slow)
	c.Advance(10500 * ms)
	if d := l.Allow("k", slow); !d.Allowed() || d.Remaining != 0 {
		t.Fatalf("10.5 s after moving to 6/min with the burst used: %+v, want one admitted and none left", d)
	}
	if d := l.Allow("k", slow); d.Allowed() {
		t.Fatalf("a second burst after the rate was lowered: %+v", d)
	}

	// Raised: 10 used at 6/min come back in 1 s at 600/min.
	l, c = newTest()
	small := Limits{PerMinute: 6, Burst: 10}
	for range 10 {
		l.Allow("k", small)
	}
	raised := Limits{PerMinute: 600, Burst: 10}
	l.Update("k", raised)
	c.Advance(time.Second)
	if d := l.Allow("k", raised); !d.Allowed() || d.Remaining != 9 {
		t.Fatalf("1 s after moving to 600/min: %+v, want admitted with 9 left", d)
	}
	l.Update("absent", raised) // a key the limiter does not hold: nothing to convert
	if _, ok := l.state("absent"); ok {
		t.Fatal("Update added a key")
	}
}
