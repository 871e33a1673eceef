package limiter

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		// Shaped like real key ids.
		keys[i] = "wk_live_" + strconv.FormatUint(uint64(i)*0x9e3779b97f4a7c15, 36)
	}
	return keys
}

// The Allow* benchmarks measure what the limiter adds to a request as the
// server calls it: AllowAt with the request's arrival time, which fasthttp
// has read already. Arrival times advance by a microsecond per call on
// average without reading the clock: 64 µs every 64 calls, since a
// time.Time.Add per call was a sixth of the figure, a cost the server does
// not have. BenchmarkClockedAllow is the same call reading the monotonic
// clock itself (Allow), for comparison.

// tick advances an arrival time as described above; n counts calls.
func tick(at time.Time, n int) time.Time {
	if n&63 == 0 {
		return at.Add(64 * time.Microsecond)
	}
	return at
}

// BenchmarkAllow: one existing key, one goroutine.
func BenchmarkAllow(b *testing.B) {
	l := New(nil)
	at := time.Now()
	l.AllowAt("wk_live_3f9a1c2b7d", Limits{}, at)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		at = tick(at, n)
		l.AllowAt("wk_live_3f9a1c2b7d", Limits{}, at)
	}
}

// BenchmarkClockedAllow: BenchmarkAllow with Allow reading the clock.
func BenchmarkClockedAllow(b *testing.B) {
	l := New(nil)
	l.Allow("wk_live_3f9a1c2b7d", Limits{})
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("wk_live_3f9a1c2b7d", Limits{})
	}
}

// BenchmarkAllowManyKeys: 10k existing keys round-robin, one goroutine.
func BenchmarkAllowManyKeys(b *testing.B) {
	l := New(nil)
	keys := benchKeys(10000)
	at := time.Now()
	for _, k := range keys {
		l.AllowAt(k, Limits{}, at)
	}
	b.ReportAllocs()
	i, n := 0, 0
	for b.Loop() {
		n++
		at = tick(at, n)
		l.AllowAt(keys[i], Limits{}, at)
		if i++; i == len(keys) {
			i = 0
		}
	}
}

// BenchmarkClockedAllowManyKeys: BenchmarkAllowManyKeys with Allow.
func BenchmarkClockedAllowManyKeys(b *testing.B) {
	l := New(nil)
	keys := benchKeys(10000)
	for _, k := range keys {
		l.Allow(k, Limits{})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(keys[i], Limits{})
		if i++; i == len(keys) {
			i = 0
		}
	}
}

// BenchmarkAllowParallel: 10k existing keys, GOMAXPROCS goroutines each
// walking the keys from its own offset.
func BenchmarkAllowParallel(b *testing.B) {
	l := New(nil)
	keys := benchKeys(10000)
	start := time.Now()
	for _, k := range keys {
		l.AllowAt(k, Limits{PerMinute: 6000, Burst: 1000}, start)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919)) % len(keys)
		at, n := start, 0
		for pb.Next() {
			n++
			at = tick(at, n)
			l.AllowAt(keys[i], Limits{PerMinute: 6000, Burst: 1000}, at)
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}

// BenchmarkAllowParallelOneKey: worst case, every goroutine on one key.
func BenchmarkAllowParallelOneKey(b *testing.B) {
	l := New(nil)
	start := time.Now()
	l.AllowAt("hot", Limits{}, start)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		at, n := start, 0
		for pb.Next() {
			n++
			at = tick(at, n)
			l.AllowAt("hot", Limits{}, at)
		}
	})
}

// BenchmarkEvict: a sweep over 100k live (non-evictable) keys.
func BenchmarkEvict(b *testing.B) {
	l := New(nil)
	for _, k := range benchKeys(100000) {
		l.Allow(k, Limits{PerMinute: 1})
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Evict()
	}
}
