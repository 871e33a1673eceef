package main

// Helpers of the end-to-end suite: TestMain builds the real binary once; each
// test starts it on its own data directory and loopback port, speaks HTTP to
// it and runs the CLI against its admin socket. Helpers named mustX fail the
// test on any surprise, so the tests read as the scenario.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// walyticBin is the binary under test, built by TestMain.
var walyticBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "walytic-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	walyticBin = filepath.Join(dir, "walytic")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	build := exec.Command(goTool, "build", "-o", walyticBin, "./")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/walytic failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// Processes

// server is one running `walytic serve`.
type server struct {
	t       *testing.T
	dataDir string
	addr    string // host:port of --listen
	base    string // http://addr
	cmd     *exec.Cmd
	stderr  *lineLog
	done    chan struct{} // closed when the process has exited
	exit    int           // exit status, valid after done
	client  *http.Client
}

// lineLog collects a process's stderr and lets tests wait for lines.
type lineLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the complete lines written so far.
func (l *lineLog) lines() []string {
	s := l.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	return strings.Split(s, "\n")
}

func (l *lineLog) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// newDataDir returns a fresh, short directory (unix socket paths are limited
// to 108 bytes) that is removed after the test and its processes.
func newDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wlt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// mustStartServer starts `walytic serve` on dataDir and a free loopback port
// and waits until it logs that it is serving. The process is killed when the
// test ends if it is still running.
func mustStartServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	return mustStartServerArgs(t, dataDir, append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, extra...)...)
}

// mustStartServerArgs is mustStartServer with the whole command line given.
func mustStartServerArgs(t *testing.T, dataDir string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(walyticBin, args...)
	cmd.Env = cleanEnv()
	s := &server{t: t, dataDir: dataDir, cmd: cmd, stderr: newLineLog(), done: make(chan struct{})}
	cmd.Stderr = s.stderr
	cmd.Stdout = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start walytic serve: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		s.exit = cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		if s.client != nil {
			s.client.CloseIdleConnections()
		}
		if t.Failed() {
			t.Logf("stderr of walytic serve --data-dir %s:\n%s", dataDir, s.stderr.String())
		}
	})

	deadline := time.After(20 * time.Second)
	for s.addr == "" {
		for _, line := range s.stderr.lines() {
			if !strings.Contains(line, `"msg":"walytic serving"`) {
				continue
			}
			var rec struct {
				Listen string `json:"listen"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Listen == "" {
				t.Fatalf("serving log line without a listen address: %q (%v)", line, err)
			}
			s.addr = rec.Listen
		}
		if s.addr != "" {
			break
		}
		select {
		case <-s.stderr.wait():
		case <-s.done:
			t.Fatalf("walytic serve exited with status %d before serving:\n%s", s.exit, s.stderr.String())
		case <-deadline:
			t.Fatalf("walytic serve did not log \"walytic serving\" within 20 s:\n%s", s.stderr.String())
		}
	}
	s.base = "http://" + s.addr
	s.client = &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DisableCompression:  true, // the tests look at Content-Encoding themselves
			MaxIdleConnsPerHost: 64,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
	}
	return s
}

// cleanEnv is the environment without WALYTIC_* settings of the caller.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WALYTIC_") {
			env = append(env, kv)
		}
	}
	return env
}

// mustStop sends SIGTERM and requires a prompt exit with status 0.
func (s *server) mustStop(t *testing.T) {
	t.Helper()
	// A connection the client opened but never used counts as busy for 5 s
	// in fasthttp's (and net/http's) graceful shutdown; close ours first so
	// the stop is as prompt as a client-free server's.
	s.client.CloseIdleConnections()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("walytic serve did not exit within 10 s of SIGTERM")
	}
	if s.exit != 0 {
		t.Fatalf("walytic serve exited with status %d after SIGTERM, want 0:\n%s", s.exit, s.stderr.String())
	}
	s.client.CloseIdleConnections()
	t.Logf("graceful stop took %v", time.Since(start).Round(time.Millisecond))
}

// mustKill kills the server with SIGKILL and waits for it to be gone.
func (s *server) mustKill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("walytic serve did not die within 10 s of SIGKILL")
	}
	s.client.CloseIdleConnections()
}

// alive reports whether the process is still running.
func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// ---------------------------------------------------------------------------
// CLI

type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary with args (no data dir added) and returns what it
// printed and its exit status.
func runCLI(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, walyticBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("walytic %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

// mustCLI runs `walytic --data-dir DIR args…` against s and requires exit 0;
// it returns stdout.
func (s *server) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(t, nil, append([]string{"--data-dir", s.dataDir}, args...)...)
	if r.code != 0 {
		t.Fatalf("walytic %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// mustCLIFail runs a CLI command that must fail with the given exit status
// and exactly one line on stderr; it returns that line.
func mustCLIFail(t *testing.T, wantCode int, env []string, args ...string) string {
	t.Helper()
	r := runCLI(t, env, args...)
	if r.code != wantCode {
		t.Fatalf("walytic %s: exit %d, want %d (stdout %q, stderr %q)", strings.Join(args, " "), r.code, wantCode, r.stdout, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("walytic %s: failed but printed on stdout: %q", strings.Join(args, " "), r.stdout)
	}
	if !strings.HasSuffix(r.stderr, "\n") || strings.Count(r.stderr, "\n") != 1 || len(strings.TrimSpace(r.stderr)) < 10 {
		t.Errorf("walytic %s: want one line that says what to do on stderr, got %q", strings.Join(args, " "), r.stderr)
	}
	return strings.TrimSpace(r.stderr)
}

var keyRE = regexp.MustCompile(`^wlt_live_[0-9A-Za-z]{20,}$`)

// mustCreateKey runs `walytic keys create args…` and returns the key, which
// must be the only line on stdout.
func (s *server) mustCreateKey(t *testing.T, args ...string) string {
	t.Helper()
	out := s.mustCLI(t, append([]string{"keys", "create"}, args...)...)
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("keys create: want exactly one line on stdout, got %q", out)
	}
	key := strings.TrimSuffix(out, "\n")
	if !keyRE.MatchString(key) {
		t.Fatalf("keys create printed %q, want a wlt_live_ key", key)
	}
	return key
}

// fastKey is a key whose limits never get in the way of a test.
func (s *server) fastKey(t *testing.T, args ...string) string {
	t.Helper()
	return s.mustCreateKey(t, append([]string{"--rate-per-minute", "600000", "--burst", "100000"}, args...)...)
}

// keyRecord is one element of `walytic keys list`.
type keyRecord struct {
	ID            string `json:"id"`
	Workspace     string `json:"workspace"`
	Name          string `json:"name"`
	Last4         string `json:"last4"`
	RatePerMinute int    `json:"ratePerMinute"`
	Burst         int    `json:"burst"`
}

// mustKeyID finds the id of the key named name in `keys list`.
func (s *server) mustKeyID(t *testing.T, name string, args ...string) string {
	t.Helper()
	var keys []keyRecord
	out := s.mustCLI(t, append([]string{"keys", "list"}, args...)...)
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("keys list is not a JSON array: %v\n%s", err, out)
	}
	for _, k := range keys {
		if k.Name == name {
			return k.ID
		}
	}
	t.Fatalf("no key named %q in keys list:\n%s", name, out)
	return ""
}

// ---------------------------------------------------------------------------
// HTTP

// apiResp is a fully read HTTP response.
type apiResp struct {
	method, path string
	Status       int
	Header       http.Header
	Body         []byte
}

func (r *apiResp) String() string {
	b := r.Body
	if len(b) > 600 {
		b = append(b[:600:600], "…"...)
	}
	return fmt.Sprintf("%s %s → %d %s", r.method, r.path, r.Status, b)
}

// header is one extra request header.
type header struct{ name, value string }

func hdr(name, value string) header { return header{name, value} }

// do sends a request and reads the whole answer. body may be nil, a string or
// []byte (sent as is), or anything else (sent as JSON). key "" sends no
// Authorization header. A transport error fails the test.
func (s *server) do(t *testing.T, method, path, key string, body any, hs ...header) *apiResp {
	t.Helper()
	r, err := s.try(method, path, key, body, hs...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// try is do without the test: it returns transport errors.
func (s *server) try(method, path, key string, body any, hs ...header) (*apiResp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for _, h := range hs {
		req.Header.Set(h.name, h.value)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return &apiResp{method: method, path: path, Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// mustStatus requires the status and returns the response for chaining.
func mustStatus(t *testing.T, r *apiResp, want int) *apiResp {
	t.Helper()
	if r.Status != want {
		t.Fatalf("want %d: %s", want, r)
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Fatalf("no X-Request-Id: %s", r)
	}
	return r
}

// mustDecode decodes the JSON body into v.
func mustDecode(t *testing.T, r *apiResp, v any) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json: %s", ct, r)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode body: %v: %s", err, r)
	}
}

// apiError is the error object of the contract.
type apiError struct {
	Type    string  `json:"type"`
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
}

// checkErrorShape verifies the contract's error shape on any error response
// and returns the error object, or a description of what is wrong.
func checkErrorShape(r *apiResp) (apiError, error) {
	var e apiError
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return e, fmt.Errorf("error Content-Type %q, want application/json", ct)
	}
	if r.Header.Get("X-Request-Id") == "" {
		return e, errors.New("error without X-Request-Id")
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &outer); err != nil {
		return e, fmt.Errorf("error body is not a JSON object: %v", err)
	}
	if len(outer) != 1 || outer["error"] == nil {
		return e, errors.New(`error body must be {"error":{…}} and nothing else`)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		return e, fmt.Errorf("error member is not an object: %v", err)
	}
	for _, f := range []string{"type", "code", "message", "param"} {
		if _, ok := inner[f]; !ok {
			return e, fmt.Errorf("error object lacks %q", f)
		}
	}
	if err := json.Unmarshal(outer["error"], &e); err != nil {
		return e, fmt.Errorf("error object fields have the wrong types: %v", err)
	}
	if e.Type == "" || e.Code == "" || len(e.Message) < 10 {
		return e, errors.New("error type, code and message must be set (message a sentence)")
	}
	return e, nil
}

// mustAPIError requires an error response with the status, code and param
// ("" = param null) in the contract's shape; it returns the error object.
func mustAPIError(t *testing.T, r *apiResp, status int, code, param string) apiError {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want %d %s: %s", status, code, r)
	}
	e, err := checkErrorShape(r)
	if err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	if e.Code != code {
		t.Fatalf("error code %q, want %q: %s", e.Code, code, r)
	}
	got := ""
	if e.Param != nil {
		got = *e.Param
	}
	if got != param {
		t.Fatalf("error param %q, want %q: %s", got, param, r)
	}
	return e
}

// mustRateLimitHeaders requires the RateLimit-* headers of an authenticated
// response and returns them.
func mustRateLimitHeaders(t *testing.T, r *apiResp) (limit, remaining, reset int) {
	t.Helper()
	get := func(name string) int {
		v := r.Header.Get(name)
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("%s header %q, want a whole number ≥ 0: %s", name, v, r)
		}
		return n
	}
	return get("RateLimit-Limit"), get("RateLimit-Remaining"), get("RateLimit-Reset")
}

// ---------------------------------------------------------------------------
// API shapes

type sessionJSON struct {
	SessionID    string  `json:"sessionId"`
	Driver       string  `json:"driver"`
	Status       string  `json:"status"`
	StatusReason *string `json:"statusReason"`
	CreatedAt    int64   `json:"createdAt"`
	ConnectedAt  *int64  `json:"connectedAt"`
	QueueDepth   int64   `json:"queueDepth"`
}

type queuedJSON struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	SessionID string `json:"sessionId"`
	To        string `json:"to"`
	CreatedAt int64  `json:"createdAt"`
}

type messageJSON struct {
	ID          string  `json:"id"`
	Direction   string  `json:"direction"`
	SessionID   string  `json:"sessionId"`
	To          *string `json:"to"`
	From        *string `json:"from"`
	Text        string  `json:"text"`
	Status      string  `json:"status"`
	WAMessageID *string `json:"waMessageId"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Context   *contextJSON `json:"context"`
	CreatedAt int64        `json:"createdAt"`
	UpdatedAt int64        `json:"updatedAt"`
}

// contextJSON is what an inbound message quotes or reacts to.
type contextJSON struct {
	MessageID   *string `json:"messageId"`
	WAMessageID string  `json:"waMessageId"`
}

type messageList struct {
	Data       []messageJSON `json:"data"`
	NextCursor *string       `json:"nextCursor"`
}

type usageJSON struct {
	Period    string `json:"period"`
	Quota     *int64 `json:"quota"`
	Used      int64  `json:"used"`
	Remaining *int64 `json:"remaining"`
	ResetsAt  int64  `json:"resetsAt"`
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// ---------------------------------------------------------------------------
// API steps

// mustCreateSandbox creates a sandbox session and requires 201 connected.
func (s *server) mustCreateSandbox(t *testing.T, key, id string) sessionJSON {
	t.Helper()
	r := mustStatus(t, s.do(t, "POST", "/v1/sessions", key, map[string]string{"sessionId": id, "driver": "sandbox"}), 201)
	var v sessionJSON
	mustDecode(t, r, &v)
	if v.SessionID != id || v.Driver != "sandbox" || v.Status != "connected" {
		t.Fatalf("created session %+v, want %s sandbox connected", v, id)
	}
	return v
}

// mustSend sends a text and requires the 202 of the contract.
func (s *server) mustSend(t *testing.T, key, session, to, text string, hs ...header) queuedJSON {
	t.Helper()
	r := mustStatus(t, s.do(t, "POST", "/v1/messages", key, map[string]string{"sessionId": session, "to": to, "text": text}, hs...), 202)
	var q queuedJSON
	mustDecode(t, r, &q)
	if !strings.HasPrefix(q.ID, "msg_") || q.Status != "queued" || q.SessionID != session || q.To != to || q.CreatedAt == 0 {
		t.Fatalf("202 body %+v, want id msg_…, status queued, sessionId %s, to %s, createdAt: %s", q, session, to, r)
	}
	return q
}

// mustGetMessage fetches one message.
func (s *server) mustGetMessage(t *testing.T, key, id string) messageJSON {
	t.Helper()
	r := mustStatus(t, s.do(t, "GET", "/v1/messages/"+id, key, nil), 200)
	var m messageJSON
	mustDecode(t, r, &m)
	if m.ID != id {
		t.Fatalf("GET /v1/messages/%s returned id %q", id, m.ID)
	}
	return m
}

// mustWaitStatus polls a message until it has the status (failing at once
// if it reaches a different final status) or the timeout passes.
func (s *server) mustWaitStatus(t *testing.T, key, id, want string, timeout time.Duration) messageJSON {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := s.mustGetMessage(t, key, id)
		if m.Status == want {
			return m
		}
		if final := m.Status == "read" || m.Status == "failed" || m.Status == "received"; final {
			t.Fatalf("message %s ended %q, want %q: %+v", id, m.Status, want, m)
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s still %q after %v, want %q", id, m.Status, timeout, want)
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// mustList GETs /v1/messages with a query and decodes the page.
func (s *server) mustList(t *testing.T, key, query string) messageList {
	t.Helper()
	r := mustStatus(t, s.do(t, "GET", "/v1/messages"+query, key, nil), 200)
	var l messageList
	mustDecode(t, r, &l)
	if l.Data == nil {
		t.Fatalf("list has no data array: %s", r)
	}
	return l
}

// mustExport streams every match as NDJSON.
func (s *server) mustExport(t *testing.T, key, query string) []messageJSON {
	t.Helper()
	r := mustStatus(t, s.do(t, "GET", "/v1/messages"+query, key, nil, hdr("Accept", "application/x-ndjson")), 200)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-ndjson") {
		t.Fatalf("export Content-Type %q, want application/x-ndjson", ct)
	}
	return mustParseNDJSON(t, r.Body)
}

func mustParseNDJSON(t *testing.T, body []byte) []messageJSON {
	t.Helper()
	out := []messageJSON{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			t.Fatalf("empty line in NDJSON export")
		}
		var m messageJSON
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("NDJSON line %d is not a message: %v: %q", len(out)+1, err, sc.Text())
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mustUsage reads GET /v1/usage.
func (s *server) mustUsage(t *testing.T, key string) usageJSON {
	t.Helper()
	var u usageJSON
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/usage", key, nil), 200), &u)
	return u
}

// pollUntil calls f until it returns true or the timeout passes; it returns
// f's last answer.
func pollUntil(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statusCounts summarises messages by status, for failure messages.
func statusCounts(ms []messageJSON) map[string]int {
	c := map[string]int{}
	for _, m := range ms {
		c[m.Direction+"/"+m.Status]++
	}
	return c
}

// rawExchange writes req as is on a new TCP connection to addr and reads one
// HTTP response. It reports a missing response (the server closed the
// connection or hung past timeout) as an error.
func rawExchange(addr string, req []byte, timeout time.Duration) (*apiResp, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	go func() { _, _ = conn.Write(req) }() // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, fmt.Errorf("no HTTP response: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("response body: %w", err)
	}
	line, _, _ := bytes.Cut(req, []byte("\r\n"))
	if len(line) > 80 {
		line = line[:80]
	}
	return &apiResp{method: "RAW", path: strconv.Quote(string(line)), Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}
