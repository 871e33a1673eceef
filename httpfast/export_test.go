package httpfast

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/sandbox"
	"github.com/walytic/appliance/storage"
)

// smallBuffers gives each accepted connection a small send buffer, so a
// slow client holds the server's writes up early.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// TestExportOutlastsTheWriteTimeout: an export that takes its client longer
// than the write timeout to read, while the client keeps reading, arrives
// whole (it was cut off at the timeout, without its last chunk); a client
// that stops reading is dropped once it has taken nothing for that long.
func TestExportOutlastsTheWriteTimeout(t *testing.T) {
	db, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := storage.OpenLocalState(db)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	drv := sandbox.New(sandbox.Options{DeliveredAfter: time.Millisecond, ReadAfter: 2 * time.Millisecond})
	app, err := appliance.Open(appliance.Config{DB: db, State: st, Drivers: []whatsapp.Driver{drv}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	key, _, err := app.CreateKey(appliance.DefaultWorkspace, "export", appliance.KeyLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.CreateSession(appliance.DefaultWorkspace, "919876543210", "sandbox"); err != nil {
		t.Fatal(err)
	}
	const messages = 400 // about 1.7 MB of NDJSON
	text := strings.Repeat("x", 4000)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < messages; i += 16 {
				if _, _, err := app.Send(context.Background(), appliance.DefaultWorkspace,
					appliance.SendInput{SessionID: "919876543210", To: "919999999999", Text: text}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	const timeout = 700 * time.Millisecond
	s := New(Config{App: app, Logger: log})
	s.public.WriteTimeout, s.exportIdle = timeout, timeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.ServePublic(smallBuffers{ln}) }()
	defer func() { _ = s.Shutdown(context.Background()) }()

	export := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.WriteString(c, "GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+key+
			"\r\nAccept: application/x-ndjson\r\nConnection: close\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		return c, bufio.NewReaderSize(c, 4<<10)
	}

	// A slow but steady reader: 16 KiB every 20 ms, about 2 s for the whole
	// stream, against a timeout of 0.7 s.
	c, br := export()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	lines, buf := 0, make([]byte, 16<<10)
	var tail []byte
	t0 := time.Now()
	for {
		n, err := resp.Body.Read(buf)
		for _, b := range buf[:n] {
			if b == '\n' {
				lines++
			}
		}
		tail = append(tail[:0], buf[max(0, n-1):n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v and %d lines: %v (the export was cut off)", time.Since(t0), lines, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lines != messages || time.Since(t0) < 2*timeout {
		t.Fatalf("%d lines in %v; want all %d, read over more than %v", lines, time.Since(t0), messages, 2*timeout)
	}

	// A client that takes nothing is dropped after about the timeout.
	c2, _ := export()
	defer c2.Close()
	time.Sleep(3 * timeout)
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c2); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("a stalled export was not closed: %v", err)
	}
}
