package loadbench

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestMain lets the test binary double as the ceiling server (see
// startCeiling); otherwise it runs the tests and benchmarks as usual.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == ceilingRole {
		os.Exit(serveCeilingProcess())
	}
	os.Exit(m.Run())
}

const (
	benchSession = "919876543210"
	maxErrorRate = 0.01
)

// loadParams are the load's shape: WALYTIC_BENCH_CONNS connections (64),
// WALYTIC_BENCH_WARMUP_SECONDS of warm-up (3) and WALYTIC_BENCH_SECONDS
// measured (10), per target and per b.N iteration.
type loadParams struct {
	conns           int
	warmup, measure time.Duration
}

func params(tb testing.TB) loadParams {
	tb.Helper()
	p := loadParams{conns: 64, warmup: 3 * time.Second, measure: 10 * time.Second}
	secs := func(env string, d *time.Duration) {
		if v := os.Getenv(env); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				tb.Fatalf("%s=%q: want a number of seconds", env, v)
			}
			*d = time.Duration(f * float64(time.Second))
		}
	}
	secs("WALYTIC_BENCH_SECONDS", &p.measure)
	secs("WALYTIC_BENCH_WARMUP_SECONDS", &p.warmup)
	if p.measure <= 0 {
		tb.Fatal("WALYTIC_BENCH_SECONDS must be more than 0")
	}
	if v := os.Getenv("WALYTIC_BENCH_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			tb.Fatalf("WALYTIC_BENCH_CONNS=%q: want a positive whole number", v)
		}
		p.conns = n
	}
	return p
}

// sendBody returns the body of the realistic send: one session, a distinct
// recipient and text on every request. Recipients never end in 0000 (not on
// WhatsApp in the sandbox) or 0001 (fails after acceptance).
func sendBody(conns int, run uint64) BodyFunc {
	return func(dst []byte, conn int, seq uint64) []byte {
		n := run<<40 | (seq*uint64(conns) + uint64(conn))
		to := n % 1_000_000_000
		if r := to % 10000; r <= 1 {
			to += 2
		}
		dst = append(dst, `{"sessionId":"`+benchSession+`","to":"917`...)
		dst = appendPadded(dst, to, 9)
		dst = append(dst, `","text":"Hi! Your order #`...)
		dst = strconv.AppendUint(dst, n, 10)
		dst = append(dst, ` has shipped and arrives tomorrow. Track it: https://example.com/t/`...)
		dst = strconv.AppendUint(dst, n*0x9e3779b97f4a7c15>>20, 36)
		return append(dst, `"}`...)
	}
}

func appendPadded(dst []byte, v uint64, width int) []byte {
	var b [20]byte
	s := strconv.AppendUint(b[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// runLoad drives one measured run against addr's POST /v1/messages.
func runLoad(b *testing.B, s *server, key string, p loadParams, run uint64) (*Result, cpuUse) {
	b.Helper()
	cw := &cpuWindow{s: s}
	cfg := Config{
		Addr:   s.addr,
		Method: "POST",
		Path:   "/v1/messages",
		Header: map[string]string{
			"Authorization": "Bearer " + key,
			"Content-Type":  "application/json",
			"User-Agent":    "walytic-loadbench",
		},
		Body:           sendBody(p.conns, run),
		Conns:          p.conns,
		Warmup:         p.warmup,
		Measure:        p.measure,
		AtMeasureStart: cw.atStart,
		AtMeasureEnd:   cw.atEnd,
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		b.Fatalf("load %s: %v", s.name, err)
	}
	var cpu cpuUse
	cpu.server, cpu.client, _ = cw.used()
	b.Logf("%s: %s; CPU: server %v (%.0f%% of one core), load generator %v (%.0f%%)", s.name, res,
		cpu.server, 100*cpu.server.Seconds()/res.Duration.Seconds(), cpu.client, 100*cpu.client.Seconds()/res.Duration.Seconds())
	if res.Responses == 0 {
		b.Fatalf("%s answered nothing in the measured window (first error: %v; log %s)", s.name, res.FirstError, s.logPath)
	}
	if rate := res.ErrorRate(202); rate > maxErrorRate {
		b.Fatalf("%s: %.2f%% of requests were not 202 (over %.0f%%): statuses [%s], first transport error %v; log:\n%s",
			s.name, 100*rate, 100*maxErrorRate, res.StatusSummary(), res.FirstError, readLog(s.logPath))
	}
	return res, cpu
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report sets the benchmark's metrics. An op is one HTTP request: ns/op is
// the measured window over the responses (1/throughput), B/op and allocs/op
// the load generator's own allocations per request.
func report(b *testing.B, r *Result, cpu cpuUse) {
	b.ReportMetric(r.RPS(), "req/s")
	b.ReportMetric(ms(r.Latency.Quantile(0.50)), "p50-ms")
	b.ReportMetric(ms(r.Latency.Quantile(0.99)), "p99-ms")
	b.ReportMetric(float64(r.Duration.Nanoseconds())/float64(r.Responses), "ns/op")
	b.ReportMetric(float64(r.ClientAllocs)/float64(r.Responses), "allocs/op")
	b.ReportMetric(float64(r.ClientBytes)/float64(r.Responses), "B/op")
	if cpu.server > 0 {
		b.ReportMetric(float64(cpu.server.Microseconds())/float64(r.Responses), "srv-cpu-us/req")
		b.ReportMetric(float64(cpu.client.Microseconds())/float64(r.Responses), "gen-cpu-us/req")
	}
}

// cpuUse is the CPU time the server and the load generator spent in a
// measured window.
type cpuUse struct{ server, client time.Duration }

// measured is a target's merged result over the b.N runs.
type measured struct {
	res *Result
	cpu cpuUse
}

func (m *measured) add(r *Result, cpu cpuUse) {
	if m.res == nil {
		m.res = &Result{}
	}
	m.res.Merge(r)
	m.cpu.server += cpu.server
	m.cpu.client += cpu.client
}

// measureCeiling starts the ceiling process and runs the load n times.
func measureCeiling(b *testing.B, p loadParams, n int) *measured {
	b.Helper()
	s := startCeiling(b)
	defer func() {
		if err := s.stop(); err != nil {
			b.Error(err)
		}
	}()
	apiCall(b, "POST", "http://"+s.addr+"/v1/messages", "ceiling", `{"sessionId":"`+benchSession+`","to":"919999999999","text":"preflight"}`, 202)
	m := &measured{}
	for i := range n {
		b.StartTimer()
		r, cpu := runLoad(b, s, "wlt_live_ceiling_ignores_this", p, uint64(i))
		b.StopTimer()
		m.add(r, cpu)
	}
	return m
}

// BenchmarkSendPath measures POST /v1/messages on the real binary against the
// hardware ceiling (a bare fasthttp handler doing one synced Pebble write),
// the same load against each, one after the other, in the same run. Each
// b.N iteration is a whole warm-up + measured run, so -benchtime 1x is one
// run per target; the default -benchtime 1s also runs once, as a run lasts
// longer. Sub-benchmark walytic reports %ceiling (its req/s as a percentage
// of the ceiling's) and p99x (its p99 over the ceiling's p99).
func BenchmarkSendPath(b *testing.B) {
	if testing.Short() {
		b.Skip("the load benchmark takes half a minute; not in -short mode")
	}
	p := params(b)
	var ceiling *measured

	b.Run("ceiling", func(b *testing.B) {
		b.StopTimer()
		ceiling = measureCeiling(b, p, b.N)
		report(b, ceiling.res, ceiling.cpu)
	})

	b.Run("walytic", func(b *testing.B) {
		b.StopTimer()
		base := ceiling
		if base == nil || base.res == nil {
			b.Log("the ceiling sub-benchmark did not run: measuring the ceiling first")
			base = measureCeiling(b, p, 1)
		}
		bin := walyticBinary(b)
		s, dataDir := startWalytic(b, bin)
		defer func() {
			if err := s.stop(); err != nil {
				b.Error(err)
			}
		}()
		key := createKey(b, bin, dataDir)
		apiCall(b, "POST", "http://"+s.addr+"/v1/sessions", key, `{"sessionId":"`+benchSession+`","driver":"sandbox"}`, 201)
		apiCall(b, "POST", "http://"+s.addr+"/v1/messages", key, `{"sessionId":"`+benchSession+`","to":"919999999999","text":"preflight"}`, 202)

		m := &measured{}
		for i := range b.N {
			b.StartTimer()
			r, cpu := runLoad(b, s, key, p, uint64(i))
			b.StopTimer()
			m.add(r, cpu)
		}
		report(b, m.res, m.cpu)
		ratio := m.res.RPS() / base.res.RPS()
		p99x := float64(m.res.Latency.Quantile(0.99)) / float64(base.res.Latency.Quantile(0.99))
		b.ReportMetric(100*ratio, "%ceiling")
		b.ReportMetric(p99x, "p99x")
		b.Logf("walytic at %.1f%% of the ceiling's req/s (target ≥ 70%%), p99 %.2f× the ceiling's (target ≤ 1.5×)", 100*ratio, p99x)
	})
}
