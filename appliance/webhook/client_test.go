package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPost(t *testing.T) {
	var redirected atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || string(b) != `{"a":1}` || r.Header.Get("X-Walytic-Event") != "message.sent" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
	})
	mux.HandleFunc("/fatheaders", func(w http.ResponseWriter, r *http.Request) {
		for i := range 40 {
			w.Header().Set(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("h", 4<<10))
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(1500 * time.Millisecond):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	rt := NewTransport(true, time.Second, 2)
	defer rt.CloseIdleConnections()
	header := func() http.Header {
		return http.Header{"Content-Type": {"application/json"}, "X-Walytic-Event": {"message.sent"}}
	}
	post := func(path string, timeout time.Duration) (int, error) {
		return Post(context.Background(), rt, timeout, srv.URL+path, header(), []byte(`{"a":1}`))
	}

	if code, err := post("/echo", time.Second); err != nil || code != http.StatusAccepted {
		t.Errorf("POST /echo: %d, %v; want 202 (method, body and headers as given)", code, err)
	}
	if code, err := post("/moved", time.Second); err != nil || code != http.StatusTemporaryRedirect || redirected.Load() != 0 {
		t.Errorf("POST /moved: %d, %v, followed %d times; want the 307 itself, not followed", code, err, redirected.Load())
	}
	if code, err := post("/big", time.Second); err != nil || code != http.StatusOK {
		t.Errorf("POST /big (1 MiB answer): %d, %v; want 200", code, err)
	}
	// 160 KiB of headers: over the bound, so the attempt fails rather than
	// the delivery holding them.
	if code, err := post("/fatheaders", time.Second); err == nil {
		t.Errorf("POST /fatheaders (160 KiB of headers): %d, want an error", code)
	}
	start := time.Now()
	code, err := post("/slow", 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || code != 0 {
		t.Errorf("POST /slow: %d, %v; want a deadline error", code, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("POST /slow took %v with a 200 ms timeout", d)
	}
	if describe(err) != "no answer within the timeout" {
		t.Errorf("describe(timeout) = %q", describe(err))
	}
}
