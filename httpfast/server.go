package httpfast

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/storage"
)

// MaxBodySize is the largest request body accepted; larger ones get 413.
const MaxBodySize = 1 << 20

// readBodyLimit is what fasthttp reads before giving up on a request of a
// caller with a valid key. It is above MaxBodySize so bodies a little over
// the limit are read whole and answered with a 413 on a connection that
// stays usable; a client that is still writing when the server closes would
// see a reset instead of the 413. Callers without one get no more than
// MaxBodySize read (bodyLimit).
const readBodyLimit = 8 << 20

// Config wires a Server.
type Config struct {
	App    *appliance.Appliance
	Logger *slog.Logger
	// AdminToken, when set, serves the admin plane on the public listener to
	// requests bearing it. Empty: the admin plane is on the socket only.
	AdminToken string
}

// Server serves the public API and the admin plane.
type Server struct {
	app        *appliance.Appliance
	log        *slog.Logger
	adminToken []byte
	public     *fasthttp.Server
	admin      *fasthttp.Server
	reqPrefix  string
	reqSeq     atomic.Uint64
	metrics    metrics
	// exportIdle is how long an export may wait on its client taking
	// nothing (writeTimeout outside tests).
	exportIdle time.Duration
}

// writeTimeout bounds writing a response; an export's, which can take
// longer, only while its client takes nothing (see exportMessages).
const writeTimeout = 120 * time.Second

// readTimeout bounds reading a request, from its first byte to its last.
const readTimeout = 30 * time.Second

// New builds a Server; call ServePublic and ServeAdmin with listeners.
func New(cfg Config) *Server {
	s := &Server{app: cfg.App, log: cfg.Logger, adminToken: []byte(cfg.AdminToken), exportIdle: writeTimeout}
	if s.log == nil {
		s.log = slog.Default()
	}
	var p [6]byte
	_, _ = rand.Read(p[:])
	s.reqPrefix = "req_" + hex.EncodeToString(p[:])
	s.public = s.newFastServer("walytic", s.handlePublic, true)
	s.admin = s.newFastServer("walytic-admin", s.handleAdmin, false)
	return s
}

// newFastServer builds one listener's server; public is true for --listen,
// whose requests must show a key (or the admin token) before anything else.
func (s *Server) newFastServer(name string, h fasthttp.RequestHandler, public bool) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       s.withRequestID(h, public),
		Name:                          name,
		MaxRequestBodySize:            readBodyLimit,
		ReadBufferSize:                16 << 10, // room for long Idempotency-Key and Authorization headers
		ReadTimeout:                   readTimeout,
		WriteTimeout:                  writeTimeout,
		IdleTimeout:                   120 * time.Second,
		ErrorHandler:                  func(ctx *fasthttp.RequestCtx, err error) { s.parseError(ctx, err, public) },
		Logger:                        quietLogger{s.log},
		HeaderReceived:                s.bodyLimit(public),
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 false,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		ReduceMemoryUsage:             false,
		StreamRequestBody:             false,
	}
}

// quietLogger takes fasthttp's own log lines. fasthttp quotes the raw
// request in them (a bad header, a duplicate Content-Length), Authorization
// header and body included, and would print them with the standard logger,
// outside the JSON log: only the line's form is kept, at debug level.
type quietLogger struct{ log *slog.Logger }

func (l quietLogger) Printf(format string, _ ...any) {
	l.log.Debug("fasthttp", "what", format)
}

// bodyLimit has fasthttp read a body over MaxBodySize on the public listener
// only for a caller whose key (or admin token) is valid; anyone else's is
// refused from its Content-Length, unread, and answered 401 (see
// refuseTooLarge), so no one without a key can make the server hold 8 MiB
// per connection. Requests that declare a small body cost no check here.
func (s *Server) bodyLimit(public bool) func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		if n := h.ContentLength(); !public || (n >= 0 && n <= MaxBodySize) {
			return fasthttp.RequestConfig{}
		}
		tok := soleBearer(h)
		if bytes.HasPrefix(h.RequestURI(), []byte("/admin/")) {
			if s.adminTokenIs(tok) {
				return fasthttp.RequestConfig{}
			}
		} else if _, err := s.app.Authenticate(tok); err == nil {
			return fasthttp.RequestConfig{}
		}
		return fasthttp.RequestConfig{MaxRequestBodySize: MaxBodySize}
	}
}

// ServePublic serves the /v1 API on ln until Shutdown.
func (s *Server) ServePublic(ln net.Listener) error { return s.public.Serve(ln) }

// ServeAdmin serves the admin plane on ln (the unix socket) until Shutdown.
func (s *Server) ServeAdmin(ln net.Listener) error { return s.admin.Serve(ln) }

// Shutdown stops accepting connections and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	err1 := s.public.ShutdownWithContext(ctx)
	err2 := s.admin.ShutdownWithContext(ctx)
	return errors.Join(err1, err2)
}

// parseError answers requests fasthttp could not read (too large, malformed).
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error, public bool) {
	s.setRequestID(ctx)
	// fasthttp's error text quotes the raw request, headers and all: never
	// echo it, it would hand the caller's API key back into logs and proxies.
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		writeJSON(ctx, 408, errorBody{Error: errorDetail{Type: "invalid_request_error", Code: "request_timeout",
			Message: "the request was not received in full within " + readTimeout.String() + ": send its line, headers and body without pausing"}})
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// The headers were read, the body (over readBodyLimit) was not.
		// fasthttp has not set ctx.Time for this request (it is still the
		// previous request's on the connection, which could be minutes old):
		// the rate limit is charged at the present.
		s.refuseTooLarge(ctx, public, time.Now())
	case errors.As(err, &small):
		writeJSON(ctx, 431, errorBody{Error: errorDetail{Type: "invalid_request_error", Code: appliance.CodeInvalidRequest,
			Message: "the request line and headers are over 16 KiB: send a shorter URL (query) or shorter headers"}})
	default:
		s.writeError(ctx, appliance.Invalid("", "the HTTP request is malformed (request line, headers, Content-Length or chunked encoding) and could not be read"))
	}
	ctx.SetConnectionClose()
}

// refuseTooLarge answers a request whose body is over MaxBodySize. On the
// public listener the key (or the admin token) and the rate limit come
// first, in the contract's order of checks: a caller without a valid key
// is told that rather than the size, and an admitted 413 counts against the
// key's limit like any other answer.
func (s *Server) refuseTooLarge(ctx *fasthttp.RequestCtx, public bool, arrived time.Time) {
	if public {
		path := ctx.Path()
		switch {
		case bytes.HasPrefix(path, []byte("/v1/")):
			if _, ok := s.authenticateAt(ctx, arrived); !ok {
				return
			}
		case bytes.HasPrefix(path, []byte("/admin/")):
			if !s.adminAuthorized(ctx) {
				s.refuseAdmin(ctx)
				return
			}
		}
	}
	s.writeError(ctx, &appliance.Error{Code: appliance.CodePayloadTooLarge, Type: "invalid_request_error",
		Message: "the request body is over 1 MiB: send less per request"})
}

func (s *Server) withRequestID(h fasthttp.RequestHandler, public bool) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		s.setRequestID(ctx)
		if !bytes.Equal(ctx.URI().PathOriginal(), ctx.Path()) {
			s.uncanonicalPath(ctx)
		} else if len(ctx.Request.Body()) > MaxBodySize {
			s.refuseTooLarge(ctx, public, ctx.Time())
		} else {
			h(ctx)
		}
		s.metrics.countResponse(ctx.Response.StatusCode())
	}
}

// setRequestID echoes a sane client X-Request-Id or makes one.
func (s *Server) setRequestID(ctx *fasthttp.RequestCtx) {
	in := ctx.Request.Header.Peek("X-Request-Id")
	if len(in) > 0 && len(in) <= 128 && saneID(in) {
		ctx.Response.Header.SetBytesV("X-Request-Id", in)
		return
	}
	n := s.reqSeq.Add(1)
	var stack [64]byte // fasthttp copies the value
	buf := append(stack[:0], s.reqPrefix...)
	buf = append(buf, '_')
	buf = strconv.AppendUint(buf, n, 10)
	ctx.Response.Header.SetBytesV("X-Request-Id", buf)
}

// uncanonicalPath answers a path that fasthttp had to decode or clean up
// (percent-escapes, "." or ".." segments, repeated slashes). Routing on the
// cleaned path would let "/v1/..%2fmetrics" reach /metrics past a proxy
// that forwards only /v1/; no route needs any of these, so none is served.
func (s *Server) uncanonicalPath(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, 404, errorBody{Error: errorDetail{Type: "invalid_request_error", Code: "route_not_found",
		Message: "no route " + appliance.QuoteShort(string(ctx.URI().PathOriginal())) + ": paths are matched as sent, without decoding percent-escapes or resolving '.', '..' and repeated slashes; see /documentation for the API"}})
}

func requestID(ctx *fasthttp.RequestCtx) string {
	return string(ctx.Response.Header.Peek("X-Request-Id"))
}

func saneID(b []byte) bool {
	for _, c := range b {
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

// authenticate resolves the bearer key and charges the rate limit, setting
// the RateLimit-* headers. It answers the request itself on failure.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (storage.APIKey, bool) {
	return s.authenticateAt(ctx, ctx.Time()) // fasthttp read the time when the request came in
}

// authenticateAt is authenticate for a request that arrived at arrived.
func (s *Server) authenticateAt(ctx *fasthttp.RequestCtx, arrived time.Time) (storage.APIKey, bool) {
	auth := ctx.Request.Header.PeekAll("Authorization")
	if len(auth) > 1 {
		// Which one counts would depend on who reads the request: a proxy
		// in front may take the last, where this server took the first.
		s.writeError(ctx, &appliance.Error{Code: appliance.CodeInvalidAPIKey, Type: "authentication_error",
			Message: "the request has " + strconv.Itoa(len(auth)) + " Authorization headers: send exactly one, Authorization: Bearer wlt_live_…"})
		return storage.APIKey{}, false
	}
	var tok []byte
	if len(auth) == 1 {
		tok = bearerOf(auth[0])
	}
	k, err := s.app.Authenticate(tok)
	if err != nil {
		s.writeError(ctx, err)
		return k, false
	}
	d := s.app.AdmitAt(k, arrived)
	h := &ctx.Response.Header
	var num [20]byte // fasthttp copies the values
	h.SetBytesV("RateLimit-Limit", strconv.AppendInt(num[:0], int64(d.Limit), 10))
	h.SetBytesV("RateLimit-Remaining", strconv.AppendInt(num[:0], int64(d.Remaining), 10))
	h.SetBytesV("RateLimit-Reset", strconv.AppendInt(num[:0], int64(d.ResetSeconds()), 10))
	if !d.Allowed() {
		wait := d.RetryAfterSeconds()
		s.writeError(ctx, &appliance.Error{Code: appliance.CodeRateLimited, Type: "rate_limit_error", RetryAfter: wait,
			Message: "this API key is over its rate limit of " + strconv.Itoa(appliance.EffectiveLimits(k).PerMinute) +
				" requests per minute (bursts of " + strconv.Itoa(d.Limit) + "): retry after " + strconv.Itoa(wait) + " s, or ask for a higher limit"})
		return k, false
	}
	return k, true
}

var bearerPrefix = []byte("bearer ")

// bearer returns the token of an "Authorization: Bearer …" header, or nil.
func bearer(ctx *fasthttp.RequestCtx) []byte { return soleBearer(&ctx.Request.Header) }

// soleBearer is bearer for a request's headers; two Authorization headers
// are no credential (authenticate says why), whatever they hold.
func soleBearer(h *fasthttp.RequestHeader) []byte {
	if len(h.PeekAll("Authorization")) > 1 {
		return nil
	}
	return bearerOf(h.Peek("Authorization"))
}

// bearerOf returns the token of an Authorization header's value v.
func bearerOf(v []byte) []byte {
	if len(v) < len(bearerPrefix) || !bytes.EqualFold(v[:len(bearerPrefix)], bearerPrefix) {
		return v[:0:0]
	}
	return bytes.TrimSpace(v[len(bearerPrefix):])
}

func (s *Server) adminAuthorized(ctx *fasthttp.RequestCtx) bool {
	return s.adminTokenIs(bearer(ctx))
}

func (s *Server) adminTokenIs(tok []byte) bool {
	return len(s.adminToken) > 0 && len(tok) > 0 && subtle.ConstantTimeCompare(tok, s.adminToken) == 1
}

// refuseAdmin answers an admin request on the public listener that lacks
// the admin token: missing_api_key without one, invalid_api_key with a
// wrong one, as for keys on /v1.
func (s *Server) refuseAdmin(ctx *fasthttp.RequestCtx) {
	code, msg := appliance.CodeMissingAPIKey, "the admin API needs the admin token (`Authorization: Bearer <token>`)"
	if n := len(ctx.Request.Header.PeekAll("Authorization")); n > 1 {
		code, msg = appliance.CodeInvalidAPIKey, "the request has "+strconv.Itoa(n)+" Authorization headers: send exactly one, Authorization: Bearer <admin token>"
	} else if len(bearer(ctx)) > 0 {
		code, msg = appliance.CodeInvalidAPIKey, "the admin token is not valid: send the contents of the file given to --admin-token-file"
	}
	if len(s.adminToken) == 0 {
		msg += "; this server runs without --admin-token-file, so the admin API is on its admin socket only (use the walytic CLI)"
	} else {
		msg += ", or use the admin socket (the walytic CLI)"
	}
	s.writeError(ctx, &appliance.Error{Code: code, Type: "authentication_error", Message: msg})
}
