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

// BenchmarkAllow: one existing key, one goroutine, real clock.
func BenchmarkAllow(b *testing.B) {
	l := New(nil)
	l.Allow("wk_live_3f9a1c2b7d", Limits{})
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("wk_live_3f9a1c2b7d", Limits{})
	}
}

// BenchmarkAllowFrozenClock isolates the limiter from time.Now's cost.
func BenchmarkAllowFrozenClock(b *testing.B) {
	now := time.Now()
	l := New(func() time.Time { return now })
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
	for _, k := range keys {
		l.Allow(k, Limits{PerMinute: 6000, Burst: 1000})
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919)) % len(keys)
		for pb.Next() {
			l.Allow(keys[i], Limits{PerMinute: 6000, Burst: 1000})
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}

// BenchmarkAllowParallelOneKey: worst case, every goroutine on one key.
func BenchmarkAllowParallelOneKey(b *testing.B) {
	l := New(nil)
	l.Allow("hot", Limits{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow("hot", Limits{})
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
