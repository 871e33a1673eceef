package webhook

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultSchedule(t *testing.T) {
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
		5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}
	if !slices.Equal(DefaultSchedule, want) {
		t.Fatalf("DefaultSchedule = %v, want %v", DefaultSchedule, want)
	}
	var total time.Duration
	for _, d := range DefaultSchedule {
		total += d
	}
	// "about 3 days in all", 10 attempts.
	if total < 72*time.Hour || total > 80*time.Hour || len(DefaultSchedule)+1 != 10 {
		t.Fatalf("total %v over %d attempts", total, len(DefaultSchedule)+1)
	}
	// The flag's value round-trips.
	got, err := ParseSchedule(FormatSchedule(DefaultSchedule))
	if err != nil || !slices.Equal(got, DefaultSchedule) {
		t.Fatalf("ParseSchedule(FormatSchedule(DefaultSchedule)) = %v, %v", got, err)
	}
}

func TestParseSchedule(t *testing.T) {
	good := []struct {
		in   string
		want []time.Duration
	}{
		{"200ms,1s,30s", []time.Duration{200 * time.Millisecond, time.Second, 30 * time.Second}},
		{"5s", []time.Duration{5 * time.Second}},
		{" 1m , 1h30m ", []time.Duration{time.Minute, 90 * time.Minute}},
		{"1ns", []time.Duration{1}},
		{"168h", []time.Duration{7 * 24 * time.Hour}},
		{"5s,5m,30m,2h,5h,10h,14h,20h,24h", DefaultSchedule},
		{strings.Repeat("1s,", 49) + "1s", slices.Repeat([]time.Duration{time.Second}, 50)},
	}
	for _, tc := range good {
		got, err := ParseSchedule(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseSchedule(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	bad := []struct {
		in, msg string // msg: a fragment the error must contain
	}{
		{"", "empty"},
		{"  ", "empty"},
		{"1s,,2s", "entry 2 is empty"},
		{"1s,", "entry 2 is empty"},
		{",1s", "entry 1 is empty"},
		{"1s,abc", `entry 2 "abc" is not a Go duration`},
		{"5", `entry 1 "5"`},
		{"1d", "no d unit"},
		{"0s", "above zero"},
		{"1s,-5s", `entry 2 "-5s" must be above zero`},
		{"168h1ns", "7 days"},
		{"8760h", "7 days"},
		{"1s;2s", `entry 1 "1s;2s"`},
		{strings.Repeat("1s,", 50) + "1s", "51 entries"},
		{strings.Repeat(",", 10000), "10001 entries"},
	}
	for _, tc := range bad {
		got, err := ParseSchedule(tc.in)
		if err == nil {
			t.Errorf("ParseSchedule(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseSchedule(%q) = %v, want it to mention %q", tc.in, err, tc.msg)
		}
	}
}

func TestJitter(t *testing.T) {
	d := 10 * time.Second
	for _, c := range []struct {
		r    float64
		want time.Duration
	}{
		{0, 8 * time.Second},
		{0.5, 10 * time.Second},
		{0.25, 9 * time.Second},
		{-3, 8 * time.Second},           // clamped
		{math.NaN(), 8 * time.Second},   // clamped
		{math.Inf(-1), 8 * time.Second}, // clamped
	} {
		if got := Jitter(d, func() float64 { return c.r }); got != c.want {
			t.Errorf("Jitter(10s, %v) = %v, want %v", c.r, got, c.want)
		}
	}
	for _, r := range []float64{math.Nextafter(1, 0), 1, 7, math.Inf(1)} {
		got := Jitter(d, func() float64 { return r })
		if got < 11999*time.Millisecond || got > 12*time.Second {
			t.Errorf("Jitter(10s, %v) = %v, want 12s or just under", r, got)
		}
	}
	// Never ≤ 0, never overflows.
	for _, d := range []time.Duration{0, -time.Second, math.MinInt64} {
		if got := Jitter(d, nil); got <= 0 {
			t.Errorf("Jitter(%v) = %v", d, got)
		}
	}
	if got := Jitter(1, func() float64 { return 0 }); got != 1 {
		t.Errorf("Jitter(1ns, 0) = %v, want 1ns", got)
	}
	if got := Jitter(math.MaxInt64, func() float64 { return 0.99 }); got != math.MaxInt64 {
		t.Errorf("Jitter(max, 0.99) = %v, want the maximum", got)
	}
	if got := Jitter(math.MaxInt64, func() float64 { return 0 }); got < math.MaxInt64/10*8-1000 {
		t.Errorf("Jitter(max, 0) = %v", got)
	}
	// With the default source: within ±20%, and spread out.
	lo, hi := d, d
	for range 2000 {
		got := Jitter(d, nil)
		if got < 8*time.Second || got > 12*time.Second {
			t.Fatalf("Jitter(10s) = %v, outside ±20%%", got)
		}
		lo, hi = min(lo, got), max(hi, got)
	}
	if lo > 8500*time.Millisecond || hi < 11500*time.Millisecond {
		t.Errorf("2000 draws spread only over [%v, %v]", lo, hi)
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{
		"200ms,1s,30s", "5s,5m,30m,2h,5h,10h,14h,20h,24h", "", ",", "1d", "-1s", "0", "168h", "168h0m0.000000001s",
		"1.5h", "9223372036854775807ns", "1e3s", " 1s , 2s ", strings.Repeat("1s,", 60),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSchedule(s)
		if err != nil {
			if got != nil {
				t.Fatalf("ParseSchedule(%q) returned %v with error %v", s, got, err)
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(got) < 1 || len(got) > MaxScheduleEntries {
			t.Fatalf("ParseSchedule(%q): %d entries", s, len(got))
		}
		for _, d := range got {
			if d <= 0 || d > MaxScheduleDelay {
				t.Fatalf("ParseSchedule(%q): entry %v out of range", s, d)
			}
			if j := Jitter(d, nil); j <= 0 || j < d*8/10-1 || j > d*12/10+1 {
				t.Fatalf("Jitter(%v) = %v", d, j)
			}
		}
		again, err := ParseSchedule(FormatSchedule(got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("round trip of %v: %v, %v", got, again, err)
		}
	})
}
