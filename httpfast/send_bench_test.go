package httpfast

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/walytic/appliance/appliance"
)

// BenchmarkSendHandler is POST /v1/messages through the public handler,
// request id, authentication and rate limit included, without sockets:
// 64 goroutines (as the load benchmark's connections) each reuse one
// RequestCtx. An op is one accepted send, so its allocations are what the
// HTTP layer and the domain's accepting path cost a request; the
// dispatcher and receipts run meanwhile and count too.
func BenchmarkSendHandler(b *testing.B) {
	// One key per goroutine would be closer to life, but the limiter is
	// not what this measures: one key with room for every request.
	app, plain := newTestApp(b, appliance.KeyLimits{RatePerMinute: ptr(6_000_000), Burst: ptr(1_000_000)})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(Config{App: app, Logger: log})
	handler := s.public.Handler
	body := []byte(`{"sessionId":"919876543210","to":"919999999999","text":"Your order #1042 has shipped"}`)
	auth := "Bearer " + plain

	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		conn, peer := net.Pipe() // never read or written: only an address
		defer conn.Close()
		defer peer.Close()
		for pb.Next() {
			// As the server does per request: a fresh arrival time.
			ctx.Init2(conn, nil, false)
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI("/v1/messages")
			ctx.Request.Header.Set("Authorization", auth)
			ctx.Request.Header.SetContentType("application/json")
			ctx.Request.SetBody(body)
			handler(&ctx)
			if ctx.Response.StatusCode() != fasthttp.StatusAccepted {
				b.Errorf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				return
			}
		}
	})
	b.StopTimer()
}

func ptr[T any](v T) *T { return &v }
