package main

import (
	"strings"
	"testing"
)

// A make bench output in the load benchmarks' shape: the parent measures,
// the sub-benchmarks report, with per-round -min/-max metrics.
const sample = `goos: linux
goarch: amd64
pkg: github.com/walytic/appliance/appliance/limiter
cpu: AMD EPYC
BenchmarkAllow-2   	 3989049	        90.47 ns/op	       0 B/op	       0 allocs/op
BenchmarkAllowManyKeys-2   	 2980742	       123.1 ns/op	       0 B/op	       0 allocs/op
pkg: github.com/walytic/appliance/cmd/walytic/internal/loadbench
BenchmarkSendPath
    loadbench_test.go:285: round 1: walytic 17668 req/s, ceiling 21250 req/s: 83.1%
BenchmarkSendPath/ceiling-2         	       1	     39451 ns/op	         9.535 p99-ms	     25348 req/s	       0 B/op	       0 allocs/op
BenchmarkSendPath/walytic-2         	       1	     57465 ns/op	        68.65 %ceiling	        83.14 %ceiling-max	        58.20 %ceiling-min	        12.29 p99-ms	         1.289 p99x	     17402 req/s	       0 B/op	       0 allocs/op
BenchmarkWebhooks/raw-2             	       1	     39119 ns/op	     25563 events/s	    4442 B/op	      57 allocs/op
BenchmarkWebhooks/outbox-2          	       1	     70261 ns/op	        55.68 %raw	        57.36 %raw-max	        54.49 %raw-min	     14233 events/s	    8581 B/op	      83 allocs/op
BenchmarkWebhooks/outbox-1session-2 	       1	    130412 ns/op	        30.00 %raw	      7668 events/s	    8446 B/op	      84 allocs/op
BenchmarkWebhooks/send-plain-2      	       1	     48061 ns/op	     20807 req/s	       0 B/op	       0 allocs/op
BenchmarkWebhooks/send-webhooks-2   	       1	     79151 ns/op	        12.28 %drop	        16.90 %drop-max	        3.40 %drop-min	     18252 req/s	       864.7 wh-events/s	       0 B/op	       0 allocs/op
PASS
`

func TestJudge(t *testing.T) {
	p, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.failures) > 0 {
		t.Fatalf("failures %v in a passing output", p.failures)
	}
	want := []struct{ status, target, detail string }{
		{"MISS", "send path ≥ 70% of the ceiling's req/s", "68.7% (17,402 vs 25,348 req/s); per round 58.2–83.1%"},
		{"PASS", "send path p99 ≤ 1.5× the ceiling's p99", "1.29× (12.29 ms vs 9.54 ms)"},
		{"PASS", "limiter Allow ≤ 100 ns/op, 0 allocs/op", "90.5 ns/op, 0 allocs/op"},
		{"MISS", "limiter AllowManyKeys ≤ 100 ns/op, 0 allocs/op", "123.1 ns/op, 0 allocs/op"},
		{"MISS", "webhooks ≥ 60% of the raw POST rate (signed, durable outbox)", "55.7% (14,233 vs 25,563 events/s); per round 54.5–57.4%"},
		{"PASS", "send path drop < 20% with webhooks flowing", "12.3% (18,252 req/s with webhooks vs 20,807 without; 865 webhook deliveries/s meanwhile); per round 3.4–16.9%"},
	}
	got := judge(p)
	if len(got) != len(want) {
		t.Fatalf("%d verdicts, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if g := got[i]; g.status != w.status || g.target != w.target || g.detail != w.detail {
			t.Errorf("verdict %d:\n got %s %s: %s\nwant %s %s: %s", i, g.status, g.target, g.detail, w.status, w.target, w.detail)
		}
	}
}

// Without the per-round metrics (a single window, or an older output) the
// verdicts carry no "per round" part.
func TestJudgeWithoutRounds(t *testing.T) {
	out := `pkg: github.com/walytic/appliance/cmd/walytic/internal/loadbench
BenchmarkSendPath/ceiling-2   1   41362 ns/op   8.75 p99-ms   24176 req/s
BenchmarkSendPath/walytic-2   1   58764 ns/op   70.4 %ceiling   11.2 p99-ms   1.28 p99x   17017 req/s
`
	p, err := parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	v := judge(p)[0]
	if v.status != "PASS" || v.detail != "70.4% (17,017 vs 24,176 req/s)" {
		t.Fatalf("got %s: %s", v.status, v.detail)
	}
}
