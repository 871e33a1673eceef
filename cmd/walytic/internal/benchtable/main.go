// Command benchtable reads `go test -bench` output on stdin and prints it as
// a Markdown table (every benchmark with ns/op, B/op, allocs/op and every
// custom metric), then one PASS/MISS line per performance target:
//
//   - the send path (BenchmarkSendPath/walytic) at ≥ 70% of the ceiling's req/s;
//   - its p99 at ≤ 1.5× the ceiling's p99, in the same run;
//   - each limiter BenchmarkAllow* at ≤ 100 ns/op with 0 allocs/op;
//   - webhook delivery (BenchmarkWebhooks/outbox) at ≥ 60% of the raw rate of
//     unsigned POSTs from the same client (BenchmarkWebhooks/raw), same run;
//   - the send path's req/s with webhooks flowing (BenchmarkWebhooks/send-webhooks)
//     less than 20% below its req/s without (BenchmarkWebhooks/send-plain).
//
// It exits 1 if the input shows a failed test or benchmark, or holds no
// benchmark at all; a missed target exits 0 unless -strict is given.
//
//	go test -run '^$' -bench . -benchmem ./... | tee bench.out
//	go run ./cmd/walytic/internal/benchtable < bench.out
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

const (
	modulePath     = "github.com/walytic/appliance/"
	limiterPkg     = "appliance/limiter"
	minCeilingPct  = 70.0
	maxP99Ratio    = 1.5
	maxLimiterNsOp = 100.0
	minWebhookPct  = 60.0
	maxSendDropPct = 20.0
)

type row struct {
	pkg     string
	name    string // without the -GOMAXPROCS suffix
	procs   string
	n       int64
	metrics map[string]float64
}

type parsed struct {
	rows     []row
	units    []string // every unit, in first-seen order
	failures []string
	cpu      string
	goos     string
	goarch   string
}

var procsSuffix = regexp.MustCompile(`-(\d+)$`)

func parse(r io.Reader) (*parsed, error) {
	p := &parsed{}
	seenUnit := map[string]bool{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(strings.TrimPrefix(line, "pkg: "), modulePath)
			continue
		case strings.HasPrefix(line, "cpu: "):
			p.cpu = strings.TrimPrefix(line, "cpu: ")
			continue
		case strings.HasPrefix(line, "goos: "):
			p.goos = strings.TrimPrefix(line, "goos: ")
			continue
		case strings.HasPrefix(line, "goarch: "):
			p.goarch = strings.TrimPrefix(line, "goarch: ")
			continue
		case strings.HasPrefix(trimmed, "--- FAIL"), strings.HasPrefix(line, "FAIL"),
			strings.HasPrefix(line, "panic:"), strings.Contains(line, "[build failed]"):
			p.failures = append(p.failures, trimmed)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		// "BenchmarkX-2  N  v unit  v unit ..."; a line with only the name is
		// the header of a benchmark with sub-benchmarks, or of one whose
		// result follows its log output.
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		rw := row{pkg: pkg, name: f[0], n: n, metrics: map[string]float64{}}
		if m := procsSuffix.FindStringSubmatch(rw.name); m != nil {
			rw.procs = m[1]
			rw.name = strings.TrimSuffix(rw.name, m[0])
		}
		ok := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				ok = false
				break
			}
			unit := f[i+1]
			rw.metrics[unit] = v
			if !seenUnit[unit] {
				seenUnit[unit] = true
				p.units = append(p.units, unit)
			}
		}
		if ok {
			p.rows = append(p.rows, rw)
		}
	}
	return p, sc.Err()
}

// columns puts the standard units first, then the load benchmark's in a
// readable order, then any other custom ones as first seen.
func columns(units []string) []string {
	cols := []string{"ns/op", "B/op", "allocs/op"}
	have := map[string]bool{}
	for _, u := range units {
		have[u] = true
	}
	placed := map[string]bool{"ns/op": true, "B/op": true, "allocs/op": true}
	for _, u := range []string{"req/s", "p50-ms", "p99-ms", "%ceiling", "%ceiling-min", "%ceiling-max", "p99x", "srv-cpu-us/req", "gen-cpu-us/req",
		"events/s", "%raw", "%raw-min", "%raw-max", "%drop", "%drop-min", "%drop-max", "wh-events/s"} {
		if have[u] {
			cols = append(cols, u)
			placed[u] = true
		}
	}
	for _, u := range units {
		if !placed[u] {
			cols = append(cols, u)
			placed[u] = true
		}
	}
	return cols
}

func format(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 10000:
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// group inserts thousands separators into an integer string.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func printTable(w io.Writer, p *parsed) {
	cols := columns(p.units)
	fmt.Fprint(w, "| package | benchmark |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c)
	}
	fmt.Fprint(w, "\n| --- | --- |")
	for range cols {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w)
	for _, r := range p.rows {
		fmt.Fprintf(w, "| %s | %s |", r.pkg, strings.TrimPrefix(r.name, "Benchmark"))
		for _, c := range cols {
			if v, ok := r.metrics[c]; ok {
				fmt.Fprintf(w, " %s |", format(v))
			} else {
				fmt.Fprint(w, " |")
			}
		}
		fmt.Fprintln(w)
	}
}

// mean averages a metric over the rows with that name (several with -count).
func mean(p *parsed, match func(row) bool, unit string) (float64, bool) {
	sum, n := 0.0, 0
	for _, r := range p.rows {
		if v, ok := r.metrics[unit]; ok && match(r) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

type verdict struct {
	target string
	status string // PASS, MISS or "NOT MEASURED"
	detail string
}

func named(suffix string) func(row) bool {
	return func(r row) bool { return strings.HasSuffix(r.name, suffix) }
}

func judge(p *parsed) []verdict {
	var out []verdict
	pass := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}

	// Send path throughput: %ceiling as reported, else computed.
	t1 := verdict{target: fmt.Sprintf("send path ≥ %.0f%% of the ceiling's req/s", minCeilingPct), status: "NOT MEASURED",
		detail: "no BenchmarkSendPath/walytic result (did the load benchmark fail or get skipped?)"}
	wRPS, okW := mean(p, named("SendPath/walytic"), "req/s")
	cRPS, okC := mean(p, named("SendPath/ceiling"), "req/s")
	pct, okPct := mean(p, named("SendPath/walytic"), "%ceiling")
	if !okPct && okW && okC && cRPS > 0 {
		pct, okPct = 100*wRPS/cRPS, true
	}
	if okPct {
		t1.status = pass(pct >= minCeilingPct)
		t1.detail = fmt.Sprintf("%.1f%%", pct)
		if okW && okC {
			t1.detail += fmt.Sprintf(" (%s vs %s req/s)", format(wRPS), format(cRPS))
		}
		t1.detail += rounds(p, named("SendPath/walytic"), "%ceiling")
	}
	out = append(out, t1)

	// Send path p99.
	t2 := verdict{target: fmt.Sprintf("send path p99 ≤ %.1f× the ceiling's p99", maxP99Ratio), status: "NOT MEASURED",
		detail: t1.detail}
	if t1.status == "NOT MEASURED" {
		t2.detail = "no BenchmarkSendPath/walytic result"
	}
	wP99, okW99 := mean(p, named("SendPath/walytic"), "p99-ms")
	cP99, okC99 := mean(p, named("SendPath/ceiling"), "p99-ms")
	x, okX := mean(p, named("SendPath/walytic"), "p99x")
	if !okX && okW99 && okC99 && cP99 > 0 {
		x, okX = wP99/cP99, true
	}
	if okX {
		t2.status = pass(x <= maxP99Ratio)
		t2.detail = fmt.Sprintf("%.2f×", x)
		if okW99 && okC99 {
			t2.detail += fmt.Sprintf(" (%.2f ms vs %.2f ms)", wP99, cP99)
		}
	}
	out = append(out, t2)

	// Limiter: every Allow benchmark in the limiter package.
	seen := map[string]bool{}
	for _, r := range p.rows {
		if !strings.HasSuffix(r.pkg, limiterPkg) || !strings.HasPrefix(r.name, "BenchmarkAllow") || seen[r.name] {
			continue
		}
		seen[r.name] = true
		same := func(o row) bool { return o.pkg == r.pkg && o.name == r.name }
		ns, _ := mean(p, same, "ns/op")
		v := verdict{target: fmt.Sprintf("limiter %s ≤ %.0f ns/op, 0 allocs/op", strings.TrimPrefix(r.name, "Benchmark"), maxLimiterNsOp)}
		allocs, okA := mean(p, same, "allocs/op")
		if !okA {
			v.status = "NOT MEASURED"
			v.detail = fmt.Sprintf("%.1f ns/op, allocs/op not reported (run with -benchmem)", ns)
		} else {
			v.status = pass(ns <= maxLimiterNsOp && allocs == 0)
			v.detail = fmt.Sprintf("%.1f ns/op, %s allocs/op", ns, format(allocs))
		}
		out = append(out, v)
	}
	if len(seen) == 0 {
		out = append(out, verdict{target: fmt.Sprintf("limiter ≤ %.0f ns/op, 0 allocs/op", maxLimiterNsOp),
			status: "NOT MEASURED", detail: "no " + limiterPkg + " BenchmarkAllow* result"})
	}

	// Webhook delivery against raw POSTs from the same client.
	t3 := verdict{target: fmt.Sprintf("webhooks ≥ %.0f%% of the raw POST rate (signed, durable outbox)", minWebhookPct), status: "NOT MEASURED",
		detail: "no BenchmarkWebhooks/outbox result (did the webhook benchmark fail or get skipped?)"}
	oRate, okO := mean(p, named("Webhooks/outbox"), "events/s")
	rRate, okR := mean(p, named("Webhooks/raw"), "events/s")
	wPct, okWP := mean(p, named("Webhooks/outbox"), "%raw")
	if !okWP && okO && okR && rRate > 0 {
		wPct, okWP = 100*oRate/rRate, true
	}
	if okWP {
		t3.status = pass(wPct >= minWebhookPct)
		t3.detail = fmt.Sprintf("%.1f%%", wPct)
		if okO && okR {
			t3.detail += fmt.Sprintf(" (%s vs %s events/s)", format(oRate), format(rRate))
		}
		t3.detail += rounds(p, named("Webhooks/outbox"), "%raw")
	}
	out = append(out, t3)

	// Send path with and without webhooks flowing.
	t4 := verdict{target: fmt.Sprintf("send path drop < %.0f%% with webhooks flowing", maxSendDropPct), status: "NOT MEASURED",
		detail: "no BenchmarkWebhooks/send-webhooks result"}
	withWH, okWith := mean(p, named("Webhooks/send-webhooks"), "req/s")
	plain, okPlain := mean(p, named("Webhooks/send-plain"), "req/s")
	drop, okDrop := mean(p, named("Webhooks/send-webhooks"), "%drop")
	if !okDrop && okWith && okPlain && plain > 0 {
		drop, okDrop = 100*(plain-withWH)/plain, true
	}
	if okDrop {
		t4.status = pass(drop < maxSendDropPct)
		t4.detail = fmt.Sprintf("%.1f%%", drop)
		if okWith && okPlain {
			t4.detail += fmt.Sprintf(" (%s req/s with webhooks vs %s without", format(withWH), format(plain))
			if ev, ok := mean(p, named("Webhooks/send-webhooks"), "wh-events/s"); ok {
				t4.detail += fmt.Sprintf("; %s webhook deliveries/s meanwhile", format(ev))
			}
			t4.detail += ")"
		}
		t4.detail += rounds(p, named("Webhooks/send-webhooks"), "%drop")
	}
	out = append(out, t4)
	return out
}

// rounds is ", per round LO–HI%" from the unit's -min and -max metrics
// (the lowest and highest of the load benchmark's alternated rounds), or
// nothing when they were not reported.
func rounds(p *parsed, match func(row) bool, unit string) string {
	lo, okLo := mean(p, match, unit+"-min")
	hi, okHi := mean(p, match, unit+"-max")
	if !okLo || !okHi {
		return ""
	}
	return fmt.Sprintf("; per round %.1f–%.1f%%", lo, hi)
}

func main() {
	strict := flag.Bool("strict", false, "exit 1 when a target is missed or not measured")
	flag.Parse()
	p, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable: read the benchmark output:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()

	fmt.Fprintln(w)
	fmt.Fprint(w, "## Benchmarks")
	if p.cpu != "" {
		fmt.Fprintf(w, " (%s/%s, %s)", p.goos, p.goarch, p.cpu)
	}
	fmt.Fprint(w, "\n\n")
	if len(p.rows) == 0 {
		fmt.Fprintln(w, "No benchmark results in the input.")
	} else {
		printTable(w, p)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "SendPath rows: an op is one HTTP request, at WALYTIC_BENCH_CONNS connections (default 64); ns/op = 1/throughput;")
		fmt.Fprintln(w, "B/op and allocs/op there are the load generator's own, per request; srv-cpu-us/req and gen-cpu-us/req are the server's and the load generator's CPU time per request.")
		fmt.Fprintln(w, "Webhooks rows: raw and outbox report events/s (an op is one event), outbox %raw is its rate over raw's; send-plain and send-webhooks")
		fmt.Fprintf(w, "are the SendPath load without and with a \"*\" webhook endpoint, %s the req/s lost, wh-events/s the deliveries made meanwhile.\n", "%drop")
	}

	fmt.Fprint(w, "\n## Targets\n\n")
	missed := 0
	for _, v := range judge(p) {
		if v.status != "PASS" {
			missed++
		}
		fmt.Fprintf(w, "- **%s** %s: %s\n", v.status, v.target, v.detail)
	}
	if len(p.failures) > 0 {
		fmt.Fprint(w, "\n## Failures\n\n")
		for _, f := range p.failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
	w.Flush()
	if len(p.failures) > 0 || len(p.rows) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: some benchmarks or tests failed (see bench.out)")
		os.Exit(1)
	}
	if *strict && missed > 0 {
		os.Exit(1)
	}
}
