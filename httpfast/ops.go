package httpfast

import (
	"fmt"
	"runtime"
	"sort"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, 200, map[string]string{"status": "ok"})
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	if err := s.app.Ready(); err != nil {
		writeJSON(ctx, 503, map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	writeJSON(ctx, 200, map[string]string{"status": "ready"})
}

// metrics are the process's counters, exposed in Prometheus text format.
type metrics struct {
	responses        [6]atomic.Uint64 // by status class: 1xx … 5xx (index 1–5)
	messagesAccepted atomic.Uint64
}

func (m *metrics) countResponse(status int) {
	if c := status / 100; c >= 1 && c <= 5 {
		m.responses[c].Add(1)
	}
}

func (s *Server) metricsHandler(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4")
	w := ctx
	fmt.Fprintln(w, "# HELP walytic_http_responses_total HTTP responses by status class.")
	fmt.Fprintln(w, "# TYPE walytic_http_responses_total counter")
	for c := 1; c <= 5; c++ {
		fmt.Fprintf(w, "walytic_http_responses_total{class=\"%dxx\"} %d\n", c, s.metrics.responses[c].Load())
	}
	fmt.Fprintln(w, "# HELP walytic_go_maxprocs Ps the Go runtime runs goroutines on (GOMAXPROCS).")
	fmt.Fprintln(w, "# TYPE walytic_go_maxprocs gauge")
	fmt.Fprintf(w, "walytic_go_maxprocs %d\n", runtime.GOMAXPROCS(0))
	fmt.Fprintln(w, "# HELP walytic_messages_accepted_total Outbound messages accepted (202) by POST /v1/messages.")
	fmt.Fprintln(w, "# TYPE walytic_messages_accepted_total counter")
	fmt.Fprintf(w, "walytic_messages_accepted_total %d\n", s.metrics.messagesAccepted.Load())
	fmt.Fprintln(w, "# HELP walytic_messages_failed_total Outbound messages that failed, by error code.")
	fmt.Fprintln(w, "# TYPE walytic_messages_failed_total counter")
	failures := s.app.SendFailures()
	codes := make([]string, 0, len(failures))
	for c := range failures {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(w, "walytic_messages_failed_total{code=%q} %d\n", c, failures[c])
	}
	if free, low, known := s.app.DiskSpace(); known {
		fmt.Fprintln(w, "# HELP walytic_disk_free_bytes Free space on the disk holding the data directory, at the last measure.")
		fmt.Fprintln(w, "# TYPE walytic_disk_free_bytes gauge")
		fmt.Fprintf(w, "walytic_disk_free_bytes %d\n", free)
		fmt.Fprintln(w, "# HELP walytic_disk_low 1 while new messages are refused (507) because the disk is down to its reserve (--disk-reserve).")
		fmt.Fprintln(w, "# TYPE walytic_disk_low gauge")
		lowValue := 0
		if low {
			lowValue = 1
		}
		fmt.Fprintf(w, "walytic_disk_low %d\n", lowValue)
	}
	fmt.Fprintln(w, "# HELP walytic_session_queue_depth Messages waiting in each session's send queue.")
	fmt.Fprintln(w, "# TYPE walytic_session_queue_depth gauge")
	for _, v := range s.app.Sessions("") {
		fmt.Fprintf(w, "walytic_session_queue_depth{workspace=%q,session=%q} %d\n", v.Workspace, v.ID, v.QueueDepth)
	}
}
