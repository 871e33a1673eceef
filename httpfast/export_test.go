package httpfast

import (
	"bufio"
	"context"
	"encoding/json"
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

// newTestApp opens an appliance whose sandbox answers in milliseconds, with
// a session 919876543210 and a key of the given limits (the defaults when
// empty), closed at cleanup.
func newTestApp(t testing.TB, limits appliance.KeyLimits) (*appliance.Appliance, string) {
	t.Helper()
	db, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
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
	t.Cleanup(app.Close)
	key, _, err := app.CreateKey(appliance.DefaultWorkspace, "test", limits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.CreateSession(appliance.DefaultWorkspace, "919876543210", "sandbox"); err != nil {
		t.Fatal(err)
	}
	return app, key
}

// serve starts s's public listener on loopback and returns its address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.ServePublic(smallBuffers{ln}) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// TestExportOutlastsTheWriteTimeout: an export that takes its client longer
// than the write timeout to read, while the client keeps reading, arrives
// whole (it was cut off at the timeout, without its last chunk); a client
// that stops reading is dropped once it has taken nothing for that long.
func TestExportOutlastsTheWriteTimeout(t *testing.T) {
	app, key := newTestApp(t, appliance.KeyLimits{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
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
	addr := serve(t, s)

	export := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
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

// rawRequest writes req on a fresh connection to addr, after pause if the
// request is cut in two at "|", and returns the response.
func rawRequest(t *testing.T, addr, req string, pause time.Duration) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	first, rest, cut := strings.Cut(req, "|")
	if _, err := io.WriteString(c, first); err != nil {
		t.Fatal(err)
	}
	if cut {
		time.Sleep(pause)
		_, _ = io.WriteString(c, rest) // the server may have answered and closed
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func errorCode(t *testing.T, r *http.Response) string {
	t.Helper()
	var e errorBody
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		t.Fatalf("%d: not an error body: %v", r.StatusCode, err)
	}
	return e.Error.Code
}

// TestSlowRequestIs408: a request that does not arrive within the read
// timeout is answered 408 request_timeout, not as a malformed request.
func TestSlowRequestIs408(t *testing.T) {
	app, key := newTestApp(t, appliance.KeyLimits{})
	s := New(Config{App: app, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.public.ReadTimeout = 200 * time.Millisecond
	addr := serve(t, s)
	r := rawRequest(t, addr, "GET /v1/usage HTTP/1.1\r\nHost: x\r\n|Authorization: Bearer "+key+"\r\n\r\n", time.Second)
	if code := errorCode(t, r); r.StatusCode != 408 || code != "request_timeout" {
		t.Fatalf("slow headers: %d %s, want 408 request_timeout", r.StatusCode, code)
	}
	if r := rawRequest(t, addr, "GET /v1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+key+"\r\n\r\n", 0); r.StatusCode != 200 {
		t.Fatalf("a prompt request: %d", r.StatusCode)
	}
}

// TestTwoAuthorizationHeadersAreRefused: with two keys, which one counts
// would depend on who reads the request; neither does.
func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	app, key := newTestApp(t, appliance.KeyLimits{})
	other, _, err := app.CreateKey(appliance.DefaultWorkspace, "other", appliance.KeyLimits{})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, New(Config{App: app, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	r := rawRequest(t, addr, "GET /v1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+key+"\r\nAuthorization: Bearer "+other+"\r\n\r\n", 0)
	if code := errorCode(t, r); r.StatusCode != 401 || code != appliance.CodeInvalidAPIKey {
		t.Fatalf("two Authorization headers: %d %s, want 401 invalid_api_key", r.StatusCode, code)
	}
}
