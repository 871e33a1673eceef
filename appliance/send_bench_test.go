package appliance

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp/sandbox"
)

// BenchmarkSendToRead is the domain's share of the send benchmark, without
// HTTP: 64 goroutines send through Appliance.Send to one sandbox session,
// and the timer stops once the last message is read, so an op is one
// message queued, dispatched and taken through delivered and read. Its CPU
// profile shows the dispatcher and the receipt loop per message.
//   - plain: no webhook endpoint;
//   - webhooks: the webhook service with a "*" endpoint at a local
//     receiver, so each message also stages three events (and the single
//     session's lane delivers some of them meanwhile), as the load
//     benchmark's send-webhooks does.
func BenchmarkSendToRead(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchSendToRead(b, false) })
	b.Run("webhooks", func(b *testing.B) { benchSendToRead(b, true) })
}

func benchSendToRead(b *testing.B, hooks bool) {
	var delivered atomic.Int64
	app := openApp(b, sandbox.New(sandbox.Options{DeliveredAfter: time.Millisecond, ReadAfter: 2 * time.Millisecond}), hooks)
	if hooks {
		rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			delivered.Add(1)
		}))
		defer rcv.Close()
		if _, _, err := app.CreateWebhook(DefaultWorkspace, rcv.URL, []string{"*"}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := app.CreateSession(DefaultWorkspace, sess, "sandbox"); err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("Your order #1234 has shipped. ", 2)
	var mu sync.Mutex
	last := ""
	b.SetParallelism(32) // 64 senders on two cores, as the HTTP benchmark's connections
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := ""
		for pb.Next() {
			m, _, err := app.Send(context.Background(), DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: text})
			if err != nil {
				b.Error(err)
				return
			}
			mine = max(mine, m.ID)
		}
		mu.Lock()
		last = max(last, mine)
		mu.Unlock()
	})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		m, err := app.Message(DefaultWorkspace, last)
		if err == nil && m.Status == StatusRead {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("message %s not read after a minute: %v %v", last, m, err)
		}
	}
	b.StopTimer()
	if hooks {
		b.ReportMetric(float64(delivered.Load())/b.Elapsed().Seconds(), "deliveries/s")
	}
}
