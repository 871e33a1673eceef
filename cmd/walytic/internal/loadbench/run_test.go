package loadbench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRunAgainstCeiling drives the in-process ceiling briefly: every request
// is answered 202 and lands in the window's counts.
func TestRunAgainstCeiling(t *testing.T) {
	c, err := OpenCeiling(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Serve(ln) }()
	defer c.Close()

	res, err := Run(context.Background(), Config{
		Addr:    ln.Addr().String(),
		Method:  "POST",
		Path:    "/v1/messages",
		Header:  map[string]string{"Content-Type": "application/json"},
		Body:    sendBody(4, 0),
		Conns:   4,
		Warmup:  100 * time.Millisecond,
		Measure: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Responses == 0 || res.Status[202] != res.Responses || res.Errors(202) != 0 {
		t.Fatalf("want only 202s, got %s (first error %v)", res.StatusSummary(), res.FirstError)
	}
	if res.Latency.Count() != res.Responses || res.Latency.Quantile(0.99) <= 0 {
		t.Fatalf("latency count %d for %d responses, p99 %v", res.Latency.Count(), res.Responses, res.Latency.Quantile(0.99))
	}
}

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		status    int
		keepAlive bool
		rest      string
	}{
		{"length", "HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloNEXT", 202, true, "NEXT"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nNEXT", 200, true, "NEXT"},
		{"close", "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}NEXT", 429, false, "NEXT"},
		{"http10", "HTTP/1.0 500 Oops\r\nContent-Length: 0\r\n\r\nNEXT", 500, false, "NEXT"},
		{"no-content", "HTTP/1.1 204 No Content\r\n\r\nNEXT", 204, true, "NEXT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			status, ka, err := readResponse(br)
			if err != nil || status != tc.status || ka != tc.keepAlive {
				t.Fatalf("got %d keepAlive=%v err=%v, want %d keepAlive=%v", status, ka, err, tc.status, tc.keepAlive)
			}
			rest := make([]byte, 16)
			n, _ := br.Read(rest)
			if string(rest[:n]) != tc.rest {
				t.Fatalf("left %q unread, want %q", rest[:n], tc.rest)
			}
		})
	}
	if _, _, err := readResponse(bufio.NewReader(strings.NewReader("garbage\r\n\r\n"))); err == nil {
		t.Fatal("a garbage status line was accepted")
	}
}

func TestSendBodyDistinctAndValid(t *testing.T) {
	body := sendBody(64, 0)
	seen := map[string]bool{}
	for seq := range uint64(200) {
		for conn := range 64 {
			b := string(body(nil, conn, seq))
			i := strings.Index(b, `"to":"`)
			to := b[i+6 : i+6+12]
			if strings.HasSuffix(to, "0000") || strings.HasSuffix(to, "0001") || strings.Trim(to, "0123456789") != "" {
				t.Fatalf("bad recipient %q in %s", to, b)
			}
			if seen[b] {
				t.Fatalf("duplicate body %s", b)
			}
			seen[b] = true
		}
	}
}

// TestAlternate pins the window order (a b, b a, …) and that each round's
// rates come back in their round's place.
func TestAlternate(t *testing.T) {
	var order []string
	window := func(name string, base float64) func(int) float64 {
		return func(r int) float64 {
			order = append(order, fmt.Sprintf("%s%d", name, r))
			return base + float64(r)
		}
	}
	ra, rb := alternate(4, window("a", 10), window("b", 20))
	if got, want := strings.Join(order, " "), "a0 b0 b1 a1 a2 b2 b3 a3"; got != want {
		t.Fatalf("windows ran in the order %q, want %q", got, want)
	}
	if !slices.Equal(ra, []float64{10, 11, 12, 13}) || !slices.Equal(rb, []float64{20, 21, 22, 23}) {
		t.Fatalf("rates %v and %v, want each round's in its place", ra, rb)
	}
}
