package webhook

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// DefaultSchedule is the contract's retry schedule: entry i is the delay
// between attempt i+1 and attempt i+2, so a delivery gets len+1 = 10 attempts
// over about 3 days (75h35m5s before jitter) and is then marked failed. The
// server's --webhook-retry-schedule flag replaces it (ParseSchedule). Treat it
// as read-only; copy it before changing anything.
var DefaultSchedule = []time.Duration{
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	14 * time.Hour,
	20 * time.Hour,
	24 * time.Hour,
}

// Limits of a retry schedule.
const (
	MaxScheduleEntries = 50
	MaxScheduleDelay   = 7 * 24 * time.Hour
)

// ParseSchedule parses a --webhook-retry-schedule value: comma-separated Go
// durations ("200ms,1s,30s"), each the delay before the next attempt, each
// above 0 and at most 7 days (168h), at least 1 and at most 50 of them.
// Spaces around entries are ignored. The error names the bad entry by its
// position and text.
func ParseSchedule(s string) ([]time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("retry schedule is empty: give comma-separated delays such as 5s,5m,30m")
	}
	if n := strings.Count(s, ",") + 1; n > MaxScheduleEntries {
		return nil, fmt.Errorf("retry schedule has %d entries; at most %d are allowed", n, MaxScheduleEntries)
	}
	parts := strings.Split(s, ",")
	out := make([]time.Duration, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("retry schedule entry %d is empty (two commas in a row, or a comma at either end)", i+1)
		}
		d, err := time.ParseDuration(p)
		if err != nil {
			return nil, fmt.Errorf("retry schedule entry %d %q is not a Go duration: use a number and a unit (ms, s, m, h), like 200ms, 30s, 5m or 2h; there is no d unit, write 24h", i+1, p)
		}
		if d <= 0 {
			return nil, fmt.Errorf("retry schedule entry %d %q must be above zero", i+1, p)
		}
		if d > MaxScheduleDelay {
			return nil, fmt.Errorf("retry schedule entry %d %q is longer than the 7 days (168h) allowed", i+1, p)
		}
		out = append(out, d)
	}
	return out, nil
}

// FormatSchedule is the inverse of ParseSchedule: "5s,5m0s,30m0s,…".
func FormatSchedule(s []time.Duration) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// jitterFraction is the contract's ±20%.
const jitterFraction = 0.2

// Jitter spreads a retry delay uniformly over d·0.8 to d·1.2, so retries of
// many deliveries that failed together do not arrive together. r returns a
// number in [0,1) (math/rand/v2's Float64 when nil; values outside [0,1),
// NaN included, are clamped into it). The result is never ≤ 0 (at least
// 1ns, even for d ≤ 0) and never overflows.
func Jitter(d time.Duration, r func() float64) time.Duration {
	if d <= 0 {
		return time.Nanosecond
	}
	if r == nil {
		r = rand.Float64
	}
	x := r()
	switch {
	case !(x >= 0): // negative or NaN
		x = 0
	case x >= 1:
		x = math.Nextafter(1, 0)
	}
	f := float64(d) * (1 - jitterFraction + 2*jitterFraction*x)
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f < 1:
		return time.Nanosecond
	}
	return time.Duration(f)
}
