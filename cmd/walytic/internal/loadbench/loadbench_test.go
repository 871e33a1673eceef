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

// loadParams are the load's shape: WALYTIC_BENCH_CONNS connections (64);
// WALYTIC_BENCH_ROUNDS measured windows per target (4), alternated with the
// other target's (see alternate); WALYTIC_BENCH_SECONDS measured per window
// (5); WALYTIC_BENCH_WARMUP_SECONDS of warm-up before a target's first
// window (3), and at most rewarm before its later ones.
type loadParams struct {
	conns           int
	rounds          int
	warmup, measure time.Duration
}

// rewarm is the most warm-up before a target's second and later windows: the
// server is warm by then, and the load's connections are new.
const rewarm = time.Second

func params(tb testing.TB) loadParams {
	tb.Helper()
	p := loadParams{conns: 64, rounds: 4, warmup: 3 * time.Second, measure: 5 * time.Second}
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
	count := func(env string, n *int) {
		if v := os.Getenv(env); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i <= 0 {
				tb.Fatalf("%s=%q: want a positive whole number", env, v)
			}
			*n = i
		}
	}
	count("WALYTIC_BENCH_CONNS", &p.conns)
	count("WALYTIC_BENCH_ROUNDS", &p.rounds)
	return p
}

// round is p for a target's window number r: full warm-up before the first.
func (p loadParams) round(r int) loadParams {
	if r > 0 {
		p.warmup = min(p.warmup, rewarm)
	}
	return p
}

// alternate runs rounds windows of each of two targets in the order
// a b, b a, a b, b a, …, so that this machine's speed, which drifts by a
// tenth or more within minutes, weighs on both alike: a steady drift cancels
// over each two rounds. Measuring one target after the other would put any
// drift wholly into their ratio. Each window returns its rate; alternate
// returns them per round.
func alternate(rounds int, a, b func(round int) float64) (ra, rb []float64) {
	ra, rb = make([]float64, rounds), make([]float64, rounds)
	for r := range rounds {
		if r%2 == 0 {
			ra[r] = a(r)
			rb[r] = b(r)
		} else {
			rb[r] = b(r)
			ra[r] = a(r)
		}
	}
	return ra, rb
}

// settle waits until s uses less than a tenth of a core (over 250 ms), and
// at most 15 s, so that what its window left running (compactions, the
// dispatcher's last batches) does not run into the other target's window.
// It returns how long it waited.
func settle(tb testing.TB, s *server) time.Duration {
	const (
		every = 250 * time.Millisecond
		quiet = every / 10
		most  = 15 * time.Second
	)
	t0 := time.Now()
	prev := s.cpuTime()
	for time.Since(t0) < most {
		time.Sleep(every)
		c := s.cpuTime()
		if c-prev < quiet {
			return time.Since(t0)
		}
		prev = c
	}
	tb.Logf("%s still busy %v after its window; going on", s.name, most)
	return time.Since(t0)
}

// spread is the smallest and largest of per-round values, for the log and
// the -min/-max metrics.
func spread(v []float64) (lo, hi float64) {
	lo, hi = v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
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

// measured is a target's result, merged over its windows.
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

// BenchmarkSendPath measures POST /v1/messages on the real binary against
// the hardware ceiling (a bare fasthttp handler doing one synced Pebble
// write), the same load against each, in alternated windows of one run (see
// alternate). Both servers run throughout; each settles before the other's
// window. The first sub-benchmark that runs measures both; ceiling and
// walytic each report their target's windows merged (run it with
// -benchtime 1x, as make bench does). walytic reports %ceiling (its req/s
// over the ceiling's, in percent), p99x (its p99 over the ceiling's, from
// the merged latencies) and the lowest and highest per-round %ceiling.
func BenchmarkSendPath(b *testing.B) {
	if testing.Short() {
		b.Skip("the load benchmark takes about a minute; not in -short mode")
	}
	p := params(b)
	var ceiling, walytic measured
	var pct []float64
	measure := func(b *testing.B) {
		if pct != nil {
			return
		}
		ceil := startCeiling(b)
		defer func() {
			if err := ceil.stop(); err != nil {
				b.Error(err)
			}
		}()
		apiCall(b, "POST", "http://"+ceil.addr+"/v1/messages", "ceiling", `{"sessionId":"`+benchSession+`","to":"919999999999","text":"preflight"}`, 202)

		bin := walyticBinary(b)
		wal, dataDir := startWalytic(b, bin)
		defer func() {
			if err := wal.stop(); err != nil {
				b.Error(err)
			}
		}()
		key := createKey(b, bin, dataDir)
		apiCall(b, "POST", "http://"+wal.addr+"/v1/sessions", key, `{"sessionId":"`+benchSession+`","driver":"sandbox"}`, 201)
		apiCall(b, "POST", "http://"+wal.addr+"/v1/messages", key, `{"sessionId":"`+benchSession+`","to":"919999999999","text":"preflight"}`, 202)

		window := func(s *server, key string, m *measured) func(int) float64 {
			return func(r int) float64 {
				b.StartTimer()
				res, cpu := runLoad(b, s, key, p.round(r), uint64(r))
				b.StopTimer()
				m.add(res, cpu)
				if d := settle(b, s); d > time.Second {
					b.Logf("%s took %v to settle after its window", s.name, d.Round(10*time.Millisecond))
				}
				return res.RPS()
			}
		}
		cRPS, wRPS := alternate(p.rounds, window(ceil, "wlt_live_ceiling_ignores_this", &ceiling), window(wal, key, &walytic))
		pct = make([]float64, p.rounds)
		for r := range pct {
			pct[r] = 100 * wRPS[r] / cRPS[r]
			b.Logf("round %d: walytic %.0f req/s, ceiling %.0f req/s: %.1f%%", r+1, wRPS[r], cRPS[r], pct[r])
		}
	}

	b.Run("ceiling", func(b *testing.B) {
		b.StopTimer()
		measure(b)
		report(b, ceiling.res, ceiling.cpu)
	})
	b.Run("walytic", func(b *testing.B) {
		b.StopTimer()
		measure(b)
		report(b, walytic.res, walytic.cpu)
		ratio := walytic.res.RPS() / ceiling.res.RPS()
		p99x := float64(walytic.res.Latency.Quantile(0.99)) / float64(ceiling.res.Latency.Quantile(0.99))
		lo, hi := spread(pct)
		b.ReportMetric(100*ratio, "%ceiling")
		b.ReportMetric(p99x, "p99x")
		b.ReportMetric(lo, "%ceiling-min")
		b.ReportMetric(hi, "%ceiling-max")
		b.Logf("walytic at %.1f%% of the ceiling's req/s over %d alternated rounds (%.1f–%.1f%% per round; target ≥ 70%%), p99 %.2f× the ceiling's (target ≤ 1.5×)",
			100*ratio, p.rounds, lo, hi, p99x)
	})
}
