package loadbench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 1000, 123456789, 1 << 40, 1<<63 + 12345, ^uint64(0)} {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, i, histBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("bucketOf(%d) = %d whose range is [%d, %d]", v, i, lo, hi)
		}
		if v >= 256 && float64(hi-lo)/float64(lo) > 1.0/subCount {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its value", i, lo, hi, subCount)
		}
	}
	// Adjacent buckets tile the line.
	for i := 1; i < histBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, lo, i-1, prevHi)
		}
	}
}

func TestQuantileMatchesSortedSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	samples := make([]time.Duration, 100000)
	for i := range samples {
		d := time.Duration(r.ExpFloat64() * float64(2*time.Millisecond))
		samples[i] = d
		h.Record(d)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := samples[int(q*float64(len(samples)))-1]
		got := h.Quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.01 || diff < -0.01 {
			t.Errorf("p%v = %v, exact %v (off by %.2f%%)", q*100, got, exact, 100*diff)
		}
	}
	if h.Count() != uint64(len(samples)) || h.Max() != samples[len(samples)-1] {
		t.Errorf("count %d max %v, want %d and %v", h.Count(), h.Max(), len(samples), samples[len(samples)-1])
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 2*h.Count() || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: count %d p50 %v, want %d and %v", m.Count(), m.Quantile(0.5), 2*h.Count(), h.Quantile(0.5))
	}
}
