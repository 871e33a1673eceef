// Package loadbench is the load generator behind `make bench`: N keep-alive
// HTTP/1.1 connections, each sending one request and reading its response in
// a loop (no pipelining), a fixed warm-up and then a fixed measured window,
// with every response's latency in a log-linear histogram. It is written to
// cost the server as little CPU as possible, since on a small box the load
// generator shares the cores with the server under test: a hand-rolled
// request writer and response reader, no per-request allocation, no per-
// request deadline or timer.
//
// The package also holds the "ceiling" server (see ServeCeiling): a bare
// fasthttp handler doing one synced Pebble write per request, the most a
// send path that must fsync before answering can hope for on this hardware.
package loadbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

// BodyFunc appends the body of request number seq on connection conn to dst.
// It runs on the connection's goroutine and must not retain dst.
type BodyFunc func(dst []byte, conn int, seq uint64) []byte

// Config describes one load run.
type Config struct {
	Addr    string            // host:port of the server
	Method  string            // e.g. "POST"
	Path    string            // e.g. "/v1/messages"
	Header  map[string]string // extra request headers (Host and Content-Length are set)
	Body    BodyFunc          // nil: no body
	Conns   int               // concurrent connections, each with one request in flight
	Warmup  time.Duration     // load before measuring
	Measure time.Duration     // measured window
	// Timeout bounds the whole run's I/O past its planned end (default 30 s):
	// a server that stops answering fails the run instead of hanging it.
	Timeout time.Duration
	// AtMeasureStart and AtMeasureEnd, if set, are called (on their own
	// goroutine) when the measured window opens and closes, e.g. to sample
	// the server's CPU time.
	AtMeasureStart, AtMeasureEnd func()
}

// Result is what one run measured. Only responses that completed inside the
// measured window count; requests in flight at either edge are left out.
type Result struct {
	Conns     int
	Duration  time.Duration // measured window
	Responses uint64        // responses of any status completed in the window
	Status    map[int]uint64
	NetErrors uint64     // transport failures (reset, timeout, bad response) in the window
	Latency   *Histogram // latency of every response in the window, any status
	// ClientAllocs and ClientBytes are the load generator's own heap
	// allocations during the window (the whole process's, so they also show
	// anything else running in it).
	ClientAllocs, ClientBytes uint64
	FirstError                error // the first transport error, if any
}

// RPS is responses per second over the measured window.
func (r *Result) RPS() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Responses) / r.Duration.Seconds()
}

// Errors counts responses whose status is not want, plus transport errors.
func (r *Result) Errors(want int) uint64 {
	n := r.NetErrors
	for s, c := range r.Status {
		if s != want {
			n += c
		}
	}
	return n
}

// ErrorRate is Errors(want) over every attempt in the window.
func (r *Result) ErrorRate(want int) float64 {
	all := r.Responses + r.NetErrors
	if all == 0 {
		return 1
	}
	return float64(r.Errors(want)) / float64(all)
}

// Merge adds o's measurements to r, as if o's window followed r's.
func (r *Result) Merge(o *Result) {
	if r.Status == nil {
		r.Status = map[int]uint64{}
	}
	if r.Latency == nil {
		r.Latency = &Histogram{}
	}
	r.Conns = o.Conns
	r.Duration += o.Duration
	r.Responses += o.Responses
	for s, c := range o.Status {
		r.Status[s] += c
	}
	r.NetErrors += o.NetErrors
	r.Latency.Merge(o.Latency)
	r.ClientAllocs += o.ClientAllocs
	r.ClientBytes += o.ClientBytes
	if r.FirstError == nil {
		r.FirstError = o.FirstError
	}
}

// StatusSummary renders the status counts like "202:12345 500:3".
func (r *Result) StatusSummary() string {
	codes := make([]int, 0, len(r.Status))
	for s := range r.Status {
		codes = append(codes, s)
	}
	slices.Sort(codes)
	var b []byte
	for _, s := range codes {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%d:%d", s, r.Status[s])
	}
	if r.NetErrors > 0 {
		b = fmt.Appendf(b, " neterr:%d", r.NetErrors)
	}
	return string(b)
}

// String is a one-line human summary.
func (r *Result) String() string {
	return fmt.Sprintf("%d conns, %v: %.0f req/s, p50 %v, p99 %v, max %v, statuses [%s]",
		r.Conns, r.Duration, r.RPS(), r.Latency.Quantile(0.50), r.Latency.Quantile(0.99),
		r.Latency.Max(), r.StatusSummary())
}

// worker is one connection's state; nothing in it is shared while running.
type worker struct {
	id      int
	cfg     *Config
	head    []byte // request line and fixed headers, up to "Content-Length: "
	buf     []byte // the request being written
	body    []byte
	conn    net.Conn
	br      *bufio.Reader
	hist    Histogram
	status  [600]uint64
	other   map[int]uint64 // statuses outside [0, 600)
	neterrs uint64
	firstEr error
}

// Run drives the load described by cfg and returns what the measured window
// saw. It returns an error only if the run could not happen at all (no
// connection could be opened); failures during the run are in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Conns <= 0 {
		return nil, errors.New("loadbench: Conns must be positive")
	}
	if cfg.Measure <= 0 {
		return nil, errors.New("loadbench: Measure must be positive")
	}
	if cfg.Method == "" {
		cfg.Method = "GET"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	head := buildHead(&cfg)
	workers := make([]*worker, cfg.Conns)
	for i := range workers {
		w := &worker{id: i, cfg: &cfg, head: head}
		c, err := dial(ctx, cfg.Addr)
		if err != nil {
			for _, o := range workers[:i] {
				_ = o.conn.Close()
			}
			return nil, fmt.Errorf("loadbench: connect to %s: %w", cfg.Addr, err)
		}
		w.setConn(c)
		workers[i] = w
	}

	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	measureEnd := measureStart.Add(cfg.Measure)
	deadline := measureEnd.Add(cfg.Timeout)

	var ms runtime.MemStats
	var allocs0, bytes0, allocs1, bytes1 uint64
	edgesDone := make(chan struct{})
	go func() {
		defer close(edgesDone)
		t := time.NewTimer(time.Until(measureStart))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if cfg.AtMeasureStart != nil {
			cfg.AtMeasureStart()
		}
		runtime.ReadMemStats(&ms)
		allocs0, bytes0 = ms.Mallocs, ms.TotalAlloc
		t.Reset(time.Until(measureEnd))
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if cfg.AtMeasureEnd != nil {
			cfg.AtMeasureEnd()
		}
		runtime.ReadMemStats(&ms)
		allocs1, bytes1 = ms.Mallocs, ms.TotalAlloc
	}()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, measureStart, measureEnd, deadline)
		}()
	}
	wg.Wait()
	<-edgesDone

	res := &Result{Conns: cfg.Conns, Duration: cfg.Measure, Status: map[int]uint64{}, Latency: &Histogram{}}
	if allocs1 != 0 {
		res.ClientAllocs, res.ClientBytes = allocs1-allocs0, bytes1-bytes0
	}
	for _, w := range workers {
		res.Latency.Merge(&w.hist)
		for s, c := range w.status {
			if c > 0 {
				res.Status[s] += c
				res.Responses += c
			}
		}
		for s, c := range w.other {
			res.Status[s] += c
			res.Responses += c
		}
		res.NetErrors += w.neterrs
		if res.FirstError == nil {
			res.FirstError = w.firstEr
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

func buildHead(cfg *Config) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", cfg.Method, cfg.Path, cfg.Addr)
	keys := make([]string, 0, len(cfg.Header))
	for k := range cfg.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\r\n", k, cfg.Header[k])
	}
	b.WriteString("Content-Length: ")
	return b.Bytes()
}

func (w *worker) setConn(c net.Conn) {
	w.conn = c
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 16<<10)
	} else {
		w.br.Reset(c)
	}
}

func (w *worker) loop(ctx context.Context, measureStart, measureEnd, deadline time.Time) {
	defer func() {
		if w.conn != nil {
			_ = w.conn.Close()
		}
	}()
	// One deadline for the whole run: a per-request deadline would cost a
	// timer update on every request.
	_ = w.conn.SetDeadline(deadline)
	done := ctx.Done()
	for seq := uint64(0); ; seq++ {
		select {
		case <-done:
			return
		default:
		}
		t0 := time.Now()
		if !t0.Before(measureEnd) {
			return
		}
		status, keepAlive, err := w.roundTrip(seq)
		t1 := time.Now()
		inWindow := !t1.Before(measureStart) && t1.Before(measureEnd)
		if err != nil {
			if inWindow {
				w.neterrs++
			}
			if w.firstEr == nil {
				w.firstEr = err
			}
			_ = w.conn.Close()
			w.conn = nil
			if !time.Now().Before(measureEnd) {
				return
			}
			// Reconnect, paced so a dead server does not spin the CPU.
			time.Sleep(10 * time.Millisecond)
			c, derr := dial(ctx, w.cfg.Addr)
			if derr != nil {
				continue
			}
			w.setConn(c)
			_ = w.conn.SetDeadline(deadline)
			continue
		}
		if inWindow {
			w.hist.Record(t1.Sub(t0))
			if status >= 0 && status < len(w.status) {
				w.status[status]++
			} else {
				if w.other == nil {
					w.other = map[int]uint64{}
				}
				w.other[status]++
			}
		}
		if !keepAlive {
			_ = w.conn.Close()
			c, derr := dial(ctx, w.cfg.Addr)
			if derr != nil {
				w.conn = nil
				if w.firstEr == nil {
					w.firstEr = derr
				}
				return
			}
			w.setConn(c)
			_ = w.conn.SetDeadline(deadline)
		}
	}
}

// roundTrip writes request seq and reads its response, returning the status
// and whether the connection may be reused.
func (w *worker) roundTrip(seq uint64) (int, bool, error) {
	if w.conn == nil {
		return 0, false, errors.New("not connected")
	}
	w.body = w.body[:0]
	if w.cfg.Body != nil {
		w.body = w.cfg.Body(w.body, w.id, seq)
	}
	b := append(w.buf[:0], w.head...)
	b = strconv.AppendInt(b, int64(len(w.body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, w.body...)
	w.buf = b
	if _, err := w.conn.Write(b); err != nil {
		return 0, false, err
	}
	return readResponse(w.br)
}

var errBadResponse = errors.New("malformed HTTP response")

// readResponse reads one HTTP/1.1 response, discarding its body.
func readResponse(br *bufio.Reader) (status int, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 202 Accepted\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, fmt.Errorf("%w: status line %q", errBadResponse, line)
		}
		status = status*10 + int(c-'0')
	}
	keepAlive = line[7] == '1' // HTTP/1.1 defaults to keep-alive, 1.0 to close
	contentLength := int64(-1)
	chunked := false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(h) <= 2 { // "\r\n" ends the header block
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			return 0, false, fmt.Errorf("%w: header line %q", errBadResponse, h)
		}
		name, val := h[:colon], bytes.TrimSpace(h[colon+1:])
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, perr := strconv.ParseInt(string(val), 10, 64) // no allocation: the conversion is elided
			if perr != nil || n < 0 {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errBadResponse, val)
			}
			contentLength = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = bytes.Contains(bytes.ToLower(val), []byte("chunked"))
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(val, "close") {
				keepAlive = false
			} else if asciiEqualFold(val, "keep-alive") {
				keepAlive = true
			}
		}
	}
	switch {
	case status == 204 || status == 304 || (status >= 100 && status < 200):
		// no body
	case chunked:
		if err := discardChunked(br); err != nil {
			return 0, false, err
		}
	case contentLength >= 0:
		if _, err := br.Discard(int(contentLength)); err != nil {
			return 0, false, err
		}
	default:
		// Body runs to EOF.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return 0, false, err
		}
		keepAlive = false
	}
	return status, keepAlive, nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimSpace(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errBadResponse, line)
		}
		if n == 0 {
			// Trailers, then the empty line.
			for {
				t, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(t) <= 2 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 {
			return false
		}
		// Only letters may differ in case; '-' and digits must match exactly.
		if c != d && (c|0x20 < 'a' || c|0x20 > 'z') {
			return false
		}
	}
	return true
}
