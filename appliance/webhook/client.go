package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The deliverer's HTTP client: a transport (NewTransport) and one function
// that makes a POST through it (Post). Deliveries call the transport's
// RoundTrip directly instead of going through http.Client: nothing the
// client adds applies here (it would copy every request's headers for
// redirects that are never followed, run its redirect loop and arm a second
// deadline); copying the headers alone was 2.6 % of the CPU profile of the
// outbox benchmark. The load benchmark's raw rate goes through these same two
// functions, so the comparison is with the same client.

// maxResponseRead is how much of an answer's body is read (and discarded)
// so the connection can be reused; a longer body closes the connection.
const maxResponseRead = 64 << 10

// maxResponseHeaders bounds an answer's headers (net/http's default is
// 10 MiB, which a hostile receiver times many endpoints turns into
// gigabytes); a receiver sending more fails the attempt.
const maxResponseHeaders = 64 << 10

// NewTransport is the transport deliveries use: its dialer refuses
// forbidden addresses after DNS resolution (unless allowPrivate), there is
// no proxy (one would bypass that check), and up to maxConnsPerHost idle
// connections are kept per host, one per delivery in flight.
func NewTransport(allowPrivate bool, timeout time.Duration, maxConnsPerHost int) *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            NewDialer(allowPrivate, timeout).DialContext,
		MaxIdleConnsPerHost:    maxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		DisableCompression:     true,
		ForceAttemptHTTP2:      true,
		MaxResponseHeaderBytes: maxResponseHeaders,
	}
}

// Post POSTs body to url with header through rt and returns the status
// code. timeout bounds the whole exchange, connection to the last byte read;
// ctx can end it sooner. Redirects are not followed: a 3xx is returned as
// it is (receivers are expected to answer the URL they registered, and a
// redirect could lead to an address the dialer's check never saw in a
// URL). header must hold canonical names; it becomes the request's.
func Post(ctx context.Context, rt http.RoundTripper, timeout time.Duration, url string, header http.Header, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header = header
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
