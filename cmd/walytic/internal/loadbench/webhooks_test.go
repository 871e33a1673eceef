package loadbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance/webhook"
	"github.com/walytic/appliance/storage"
)

// The webhook benchmark (issue: "events delivered per second to a local
// receiver with signing and the durable outbox, beside the raw rate of
// unsigned POSTs from the same client in the same run. Target ≥ 60% of that
// raw rate, and the send path's throughput drops by less than 20% while
// webhooks are flowing").
//
//   - raw: 8 workers (the deliverer's per-endpoint limit) POST unsigned
//     event-sized JSON bodies to a local receiver for the measured window,
//     through the deliverer's own client (webhook.NewTransport and
//     webhook.Post, as webhook.New and every attempt use them).
//   - outbox: the real webhook.Service in this process, on its own storage,
//     with one enabled endpoint at the same receiver: a producer stages
//     events (Service.Stage into a batch, CommitSync, Committed, as the send
//     path does) spread over hookSessions sessions, keeping at most
//     hookBacklog undelivered; the window counts the receiver's requests.
//     Reports events/s and %raw.
//   - outbox-1session: the same with every event from one session, so one
//     lane and one attempt in flight at a time (the ordering guarantee's
//     cost); informational.
//   - send-plain and send-webhooks: BenchmarkSendPath's load against the
//     real binary (--webhook-allow-private, a fresh server per window)
//     without and with a "*" endpoint at the local receiver, in alternated
//     windows; send-webhooks reports %drop (its req/s below send-plain's, in
//     percent) and wh-events/s (deliveries the receiver got per second
//     during its windows).
//
// raw and outbox also take alternated windows (see alternate), each outbox
// window with a fresh service and store.
//
// raw and outbox report ns/op, B/op and allocs/op per event; the latter two
// are this whole process's (client, receiver and, for outbox, the producer
// and the deliverer).
const (
	hookWorkers  = 8    // the deliverer's MaxInFlight default
	hookSessions = 64   // sessions the outbox events come from
	hookBatch    = 32   // events per CommitSync in the outbox producer
	hookBacklog  = 2048 // most undelivered events the producer lets build up
	hookTimeout  = 10 * time.Second
)

// hookReceiver is a minimal local webhook receiver: it reads the request and
// answers 200 with no body, counting requests.
type hookReceiver struct {
	srv   *fasthttp.Server
	ln    net.Listener
	url   string
	count atomic.Int64
	first atomic.Pointer[hookSample] // the first request, to check signing
}

type hookSample struct {
	body   []byte
	header http.Header
}

func startHookReceiver(tb testing.TB) *hookReceiver {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	rc := &hookReceiver{ln: ln, url: "http://" + ln.Addr().String() + "/hooks/walytic"}
	rc.srv = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if rc.first.Load() == nil {
				h := http.Header{}
				for k, v := range ctx.Request.Header.All() {
					h.Add(string(k), string(v))
				}
				rc.first.CompareAndSwap(nil, &hookSample{body: append([]byte(nil), ctx.PostBody()...), header: h})
			}
			rc.count.Add(1)
			ctx.SetStatusCode(fasthttp.StatusOK)
		},
		Name:                  "receiver",
		NoDefaultServerHeader: true,
		IdleTimeout:           120 * time.Second,
	}
	go func() { _ = rc.srv.Serve(ln) }()
	tb.Cleanup(func() { _ = rc.srv.Shutdown() })
	return rc
}

// hookEvent is the n-th benchmark event: a message.received with a short
// text, about 300 bytes of JSON, from one of sessions sessions.
func hookEvent(n, sessions int, now time.Time) *storage.Event {
	sess := 919876500000 + n%sessions
	return &storage.Event{
		ID: storage.NewID("evt_", now), Type: "message.received", Workspace: "bench",
		SessionID: strconv.Itoa(sess), Timestamp: now.Unix(), MessageID: storage.NewID("msg_", now),
		From: "9198" + fmt.Sprintf("%08d", n%100000000), MsgType: "text",
		Text: "Hi! Is order #" + strconv.Itoa(n) + " on its way? It was due yesterday and the tracking page has not changed since Monday.",
	}
}

// window is what windowCounter measured.
type window struct {
	n                  int64         // growth of the total in the window
	d                  time.Duration // the window's length
	perSec             []int64       // growth in each whole second of the window
	allocs, allocBytes uint64        // this process's heap allocations in the window
}

// add merges o into w, as if o's window followed w's.
func (w *window) add(o window) {
	w.n += o.n
	w.d += o.d
	w.perSec = append(w.perSec, o.perSec...)
	w.allocs += o.allocs
	w.allocBytes += o.allocBytes
}

// rate is n per second.
func (w *window) rate() float64 { return float64(w.n) / w.d.Seconds() }

// report sets events/s, ns/op, B/op and allocs/op per event (the latter two
// for the whole process: client, receiver and, for outbox, the deliverer).
func (w *window) report(b *testing.B) {
	b.ReportMetric(w.rate(), "events/s")
	if w.n > 0 {
		b.ReportMetric(float64(w.d.Nanoseconds())/float64(w.n), "ns/op")
		b.ReportMetric(float64(w.allocBytes)/float64(w.n), "B/op")
		b.ReportMetric(float64(w.allocs)/float64(w.n), "allocs/op")
	}
}

// windowCounter counts a monotonically growing total over a measured window
// that opens after warmup, with the count of each whole second of the window
// (to show a rate that changes over time) and the heap allocations.
func windowCounter(total func() int64, warmup, measure time.Duration) window {
	time.Sleep(warmup)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	a0, b0 := ms.Mallocs, ms.TotalAlloc
	c0, t0 := total(), time.Now()
	end := t0.Add(measure)
	var perSec []int64
	prev := c0
	for next := t0.Add(time.Second); !next.After(end); next = next.Add(time.Second) {
		time.Sleep(time.Until(next))
		c := total()
		perSec = append(perSec, c-prev)
		prev = c
	}
	time.Sleep(time.Until(end))
	w := window{n: total() - c0, d: time.Since(t0), perSec: perSec}
	runtime.ReadMemStats(&ms)
	w.allocs, w.allocBytes = ms.Mallocs-a0, ms.TotalAlloc-b0
	return w
}

// measureRaw POSTs unsigned bodies with hookWorkers workers and counts the
// requests answered 2xx in the window.
func measureRaw(b *testing.B, rc *hookReceiver, p loadParams) window {
	b.Helper()
	rt := webhook.NewTransport(true, hookTimeout, hookWorkers)
	defer rt.CloseIdleConnections()
	body, err := webhook.Body(hookEvent(1, 1, time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	var ok, bad atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range hookWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := rawPost(rt, rc.url, body); err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	b.StartTimer()
	w := windowCounter(ok.Load, p.warmup, p.measure)
	b.StopTimer()
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		b.Fatalf("raw: %d requests failed, first: %v", bad.Load(), firstErr.Load())
	}
	b.Logf("raw: %d unsigned %d-byte POSTs in %v with %d workers: %.0f/s", w.n, len(body), w.d.Round(time.Millisecond), hookWorkers, w.rate())
	return w
}

// rawPost is one request as the deliverer makes it (webhook.Post through
// webhook.NewTransport), without the signature headers.
func rawPost(rt http.RoundTripper, url string, body []byte) error {
	h := http.Header{
		"Content-Type":    {"application/json"},
		"User-Agent":      {"Walytic-Webhooks/1"},
		"X-Walytic-Event": {"message.received"},
	}
	code, err := webhook.Post(context.Background(), rt, hookTimeout, url, h, body)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("status %d", code)
	}
	return nil
}

// measureOutbox runs the webhook service in process against rc and counts
// the events the receiver got in the window.
func measureOutbox(b *testing.B, rc *hookReceiver, p loadParams, sessions int) window {
	b.Helper()
	db, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	state, err := storage.OpenLocalState(db)
	if err != nil {
		b.Fatal(err)
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	if err := state.PutWebhook(storage.Webhook{
		ID: storage.NewID("wh_", now), Workspace: "bench", URL: rc.url, Events: []string{"*"}, Enabled: true,
		Secrets: []storage.WebhookSecret{{Secret: secret}}, CreatedAt: now.Unix(), UpdatedAt: now.Unix(),
	}); err != nil {
		b.Fatal(err)
	}
	svc := webhook.New(webhook.Options{
		DB: db, Endpoints: state, AllowPrivate: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	svc.Start()
	defer svc.Close()

	base := rc.count.Load()
	rc.first.Store(nil)
	delivered := func() int64 { return rc.count.Load() - base }
	var staged atomic.Int64
	var prodErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; {
			select {
			case <-stop:
				return
			default:
			}
			if staged.Load()-delivered() > hookBacklog {
				time.Sleep(200 * time.Microsecond)
				continue
			}
			batch := db.NewBatch()
			now := time.Now()
			for range hookBatch {
				if err := svc.Stage(batch, *hookEvent(n, sessions, now)); err != nil {
					prodErr.CompareAndSwap(nil, err.Error())
					batch.Discard()
					return
				}
				n++
			}
			if err := db.CommitSync(batch); err != nil {
				prodErr.CompareAndSwap(nil, err.Error())
				return
			}
			staged.Add(hookBatch)
			svc.Committed()
		}
	}()
	b.StartTimer()
	w := windowCounter(delivered, p.warmup, p.measure)
	b.StopTimer()
	close(stop)
	<-done
	if e := prodErr.Load(); e != nil {
		b.Fatalf("outbox producer: %v", e)
	}
	if w.n == 0 {
		b.Fatalf("outbox: the receiver got nothing in %v (%d staged)", w.d, staged.Load())
	}
	// Every delivery is signed as the contract says.
	first := rc.first.Load()
	if first == nil {
		b.Fatal("outbox: no request sample")
	}
	if err := webhook.Verify(secret, first.body, first.header, time.Now()); err != nil {
		b.Fatalf("outbox: the first delivery does not verify: %v", err)
	}
	b.Logf("outbox: %d signed events from %d session(s) delivered in %v: %.0f/s (%d staged, backlog ≤ %d); each second: %v",
		w.n, sessions, w.d.Round(time.Millisecond), w.rate(), staged.Load(), hookBacklog, w.perSec)
	return w
}

// sendWindow is one send-path window against a fresh walytic serve.
type sendWindow struct {
	res    *Result
	cpu    cpuUse
	events int64         // webhook deliveries the receiver got during the load
	busy   time.Duration // the load's warm-up and window
}

// measureSend starts walytic with --webhook-allow-private on a fresh data
// directory, adds a "*" endpoint at rc when rc is not nil, runs one
// send-path load window and stops the server. A fresh server per window
// keeps one window's webhook backlog (a session's events go out one at a
// time) from running into the next window, whichever target it is.
func measureSend(b *testing.B, p loadParams, rc *hookReceiver, run uint64) sendWindow {
	b.Helper()
	bin := walyticBinary(b)
	s, dataDir := startWalytic(b, bin, "--webhook-allow-private")
	defer func() {
		if err := s.stop(); err != nil {
			b.Error(err)
		}
	}()
	key := createKey(b, bin, dataDir)
	base := "http://" + s.addr
	if rc != nil {
		out := apiCall(b, "POST", base+"/v1/webhooks", key, `{"url":"`+rc.url+`","events":["*"]}`, 201)
		if !strings.Contains(string(out), `"secret":"whsec_`) {
			b.Fatalf("POST /v1/webhooks answered %s", out)
		}
	}
	var c0 int64
	if rc != nil {
		c0 = rc.count.Load()
	}
	apiCall(b, "POST", base+"/v1/sessions", key, `{"sessionId":"`+benchSession+`","driver":"sandbox"}`, 201)
	apiCall(b, "POST", base+"/v1/messages", key, `{"sessionId":"`+benchSession+`","to":"919999999999","text":"preflight"}`, 202)
	if rc != nil {
		deadline := time.Now().Add(10 * time.Second)
		for rc.count.Load() == c0 {
			if time.Now().After(deadline) {
				b.Fatalf("the receiver got no webhook within 10 s; log:\n%s", readLog(s.logPath))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var w sendWindow
	var c1 int64
	if rc != nil {
		c1 = rc.count.Load()
	}
	t0 := time.Now()
	b.StartTimer()
	w.res, w.cpu = runLoad(b, s, key, p, run)
	b.StopTimer()
	w.busy = time.Since(t0)
	if rc != nil {
		w.events = rc.count.Load() - c1
	}
	return w
}

// BenchmarkWebhooks measures webhook delivery against raw POSTs, and the
// send path with and without webhooks flowing; see the comment at the top
// of this file. raw and outbox take alternated windows (see alternate), as
// do send-plain and send-webhooks; outbox-1session has one window of its
// own. A pair is measured once, by the first of its sub-benchmarks that
// runs (so -bench 'Webhooks/send' measures only the send pair), and each
// sub-benchmark reports its target's windows merged, with the lowest and
// highest per-round %raw and %drop; run it with -benchtime 1x, as make
// bench does.
func BenchmarkWebhooks(b *testing.B) {
	if testing.Short() {
		b.Skip("the webhook benchmark takes about two minutes; not in -short mode")
	}
	p := params(b)
	rc := startHookReceiver(b)

	var raw, outbox window
	var pctRaw []float64
	delivery := func(b *testing.B) {
		if pctRaw != nil {
			return
		}
		rawRates, outRates := alternate(p.rounds, func(r int) float64 {
			w := measureRaw(b, rc, p.round(r))
			raw.add(w)
			return w.rate()
		}, func(r int) float64 {
			// A fresh service and store each window, so each warms up fully.
			w := measureOutbox(b, rc, p, hookSessions)
			outbox.add(w)
			return w.rate()
		})
		pctRaw = make([]float64, p.rounds)
		for r := range pctRaw {
			pctRaw[r] = 100 * outRates[r] / rawRates[r]
			b.Logf("round %d: outbox %.0f events/s, raw %.0f/s: %.1f%%", r+1, outRates[r], rawRates[r], pctRaw[r])
		}
	}

	var plain, hooks measured
	var events int64
	var busy time.Duration
	var drops []float64
	sends := func(b *testing.B) {
		if drops != nil {
			return
		}
		plainRPS, hookRPS := alternate(p.rounds, func(r int) float64 {
			w := measureSend(b, p, nil, uint64(r))
			plain.add(w.res, w.cpu)
			return w.res.RPS()
		}, func(r int) float64 {
			w := measureSend(b, p, rc, uint64(r))
			hooks.add(w.res, w.cpu)
			events += w.events
			busy += w.busy
			return w.res.RPS()
		})
		drops = make([]float64, p.rounds)
		for r := range drops {
			drops[r] = 100 * (plainRPS[r] - hookRPS[r]) / plainRPS[r]
			b.Logf("round %d: send %.0f req/s with webhooks, %.0f without: a %.1f%% drop", r+1, hookRPS[r], plainRPS[r], drops[r])
		}
	}

	b.Run("raw", func(b *testing.B) {
		b.StopTimer()
		delivery(b)
		raw.report(b)
	})
	b.Run("outbox", func(b *testing.B) {
		b.StopTimer()
		delivery(b)
		outbox.report(b)
		pct := 100 * outbox.rate() / raw.rate()
		lo, hi := spread(pctRaw)
		b.ReportMetric(pct, "%raw")
		b.ReportMetric(lo, "%raw-min")
		b.ReportMetric(hi, "%raw-max")
		b.Logf("outbox (%d sessions) at %.1f%% of the raw rate over %d alternated rounds (%.1f–%.1f%% per round; target ≥ 60%%)",
			hookSessions, pct, p.rounds, lo, hi)
	})
	b.Run("outbox-1session", func(b *testing.B) {
		b.StopTimer()
		one := measureOutbox(b, rc, p, 1)
		one.report(b)
		if raw.n > 0 {
			b.ReportMetric(100*one.rate()/raw.rate(), "%raw")
		}
	})
	b.Run("send-plain", func(b *testing.B) {
		b.StopTimer()
		sends(b)
		report(b, plain.res, plain.cpu)
	})
	b.Run("send-webhooks", func(b *testing.B) {
		b.StopTimer()
		sends(b)
		report(b, hooks.res, hooks.cpu)
		drop := 100 * (plain.res.RPS() - hooks.res.RPS()) / plain.res.RPS()
		lo, hi := spread(drops)
		b.ReportMetric(drop, "%drop")
		b.ReportMetric(lo, "%drop-min")
		b.ReportMetric(hi, "%drop-max")
		whRate := float64(events) / busy.Seconds()
		b.ReportMetric(whRate, "wh-events/s")
		b.Logf("send path with webhooks: %.0f req/s vs %.0f without over %d alternated rounds, a %.1f%% drop (%.1f–%.1f%% per round; target < 20%%); %.0f webhook deliveries/s meanwhile",
			hooks.res.RPS(), plain.res.RPS(), p.rounds, drop, lo, hi, whRate)
	})
}
