package loadbench

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
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The benchmark runs both servers as separate processes, like the real
// deployment: the ceiling is this test binary re-executed with roleEnv set
// (TestMain then serves instead of testing), walytic is the built binary.
const (
	roleEnv       = "WALYTIC_LOADBENCH_ROLE"
	ceilingDirEnv = "WALYTIC_LOADBENCH_DIR"
	ceilingRole   = "ceiling"
	readyPrefix   = "ceiling listening "
)

// serveCeilingProcess is the whole life of the re-executed ceiling process:
// serve until SIGTERM/SIGINT or until stdin (a pipe from the parent) closes,
// so it never outlives the benchmark.
func serveCeilingProcess() int {
	dir := os.Getenv(ceilingDirEnv)
	if dir == "" {
		fmt.Fprintln(os.Stderr, "ceiling: "+ceilingDirEnv+" is not set")
		return 2
	}
	// The same Ps as walytic serve gets (cmd/walytic/procs.go): two per CPU
	// unless GOMAXPROCS is set, so the runtime setting is no part of the gap.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
	}
	c, err := OpenCeiling(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		_ = c.Close()
		return 1
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Serve(ln) }()
	fmt.Printf("%s%s\n", readyPrefix, ln.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	code := 0
	select {
	case <-stop:
	case <-stdinClosed:
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		code = 1
	}
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		code = 1
	}
	return code
}

// server is a server process under test.
type server struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	logPath string
	lifeW   io.Closer // ceiling only: closing it tells the child to exit
	waitMu  sync.Mutex
	waited  bool
	waitErr error
}

func (s *server) wait() error {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if !s.waited {
		s.waitErr = s.cmd.Wait()
		s.waited = true
	}
	return s.waitErr
}

// stop ends the process with SIGTERM (SIGKILL after 30 s) and reports a
// non-zero exit.
func (s *server) stop() error {
	if s.lifeW != nil {
		_ = s.lifeW.Close()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s exited: %w (log %s)", s.name, err, s.logPath)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within 30 s of SIGTERM; killed", s.name)
	}
}

// cpuTime is the process's user+system CPU time so far.
func (s *server) cpuTime() time.Duration { return cpuTimeOf(s.cmd.Process.Pid) }

// cpuTimeOf is a process's user+system CPU time so far, from /proc (Linux);
// zero where that is not available.
func cpuTimeOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line (clock ticks, USER_HZ = 100).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// startCeiling re-executes this test binary as the ceiling server.
func startCeiling(tb testing.TB) *server {
	tb.Helper()
	base, err := os.MkdirTemp("", "wlb-ceiling-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(base) })
	logPath := filepath.Join(base, "ceiling.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"="+ceilingRole, ceilingDirEnv+"="+filepath.Join(base, "data"))
	cmd.Stdin = lifeR
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start the ceiling server (%s): %v", os.Args[0], err)
	}
	_ = lifeR.Close()
	s := &server{name: "ceiling", cmd: cmd, logPath: logPath, lifeW: lifeW}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				line <- a
			}
		}
		close(line)
	}()
	select {
	case a, ok := <-line:
		if !ok {
			_ = s.stop()
			tb.Fatalf("the ceiling server exited before listening; its log:\n%s", readLog(logPath))
		}
		s.addr = a
	case <-time.After(30 * time.Second):
		_ = s.stop()
		tb.Fatalf("the ceiling server did not start within 30 s; its log:\n%s", readLog(logPath))
	}
	return s
}

// moduleRoot is the directory holding go.mod.
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		tb.Fatalf("find the module root with `go env GOMOD`: %v (or set WALYTIC_BIN to an absolute path)", err)
	}
	return filepath.Dir(strings.TrimSpace(string(gomod)))
}

// walyticBinary returns WALYTIC_BIN (a relative path is taken from the
// module root, where `make` runs) or builds the binary as `make build` does
// (static) into a temporary directory.
func walyticBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("WALYTIC_BIN"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(moduleRoot(tb), p)
		}
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("WALYTIC_BIN: %v (run `make build` first)", err)
		}
		return p
	}
	bin := filepath.Join(tb.TempDir(), "walytic")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/walytic")
	cmd.Dir = moduleRoot(tb)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/walytic: %v\n%s", err, out)
	}
	return bin
}

// startWalytic runs `walytic serve` (with any extra flags) on a fresh data
// directory and returns it with its address; the data directory path is kept
// short so the admin socket path fits a sockaddr_un.
func startWalytic(tb testing.TB, bin string, extra ...string) (*server, string) {
	tb.Helper()
	base, err := os.MkdirTemp("", "wlb-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(base) })
	dataDir := filepath.Join(base, "d")
	logPath := filepath.Join(base, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, extra...)...)
	cmd.Stdout = logf
	cmd.Stderr = logf // a file, not a pipe: nothing in this process copies the log
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s serve: %v", bin, err)
	}
	s := &server{name: "walytic", cmd: cmd, logPath: logPath}
	exited := make(chan struct{})
	go func() { _ = s.wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for s.addr == "" {
		if a := servingAddr(logPath); a != "" {
			s.addr = a
			break
		}
		select {
		case <-exited:
			tb.Fatalf("walytic serve exited before serving: %v; its log:\n%s", s.waitErr, readLog(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stop()
			tb.Fatalf("walytic serve did not log \"walytic serving\" within 30 s; its log:\n%s", readLog(logPath))
		}
	}
	return s, dataDir
}

// servingAddr finds the "walytic serving" JSON log line and returns its
// listen address.
func servingAddr(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	for line := range bytes.Lines(b) {
		if !bytes.Contains(line, []byte(`"walytic serving"`)) {
			continue
		}
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "walytic serving" && rec.Listen != "" {
			return rec.Listen
		}
	}
	return ""
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 8<<10 {
		b = append([]byte("…"), b[len(b)-8<<10:]...)
	}
	return string(b)
}

// createKey makes an API key with effectively no rate limit.
func createKey(tb testing.TB, bin, dataDir string) string {
	tb.Helper()
	cmd := exec.Command(bin, "--data-dir", dataDir, "keys", "create", "--name", "loadbench",
		"--rate-per-minute", "6000000", "--burst", "1000000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("walytic keys create: %v\n%s", err, stderr.Bytes())
	}
	key := strings.TrimSpace(string(out))
	if !strings.HasPrefix(key, "wlt_") {
		tb.Fatalf("walytic keys create printed %q, not a key", key)
	}
	return key
}

// apiCall sends one JSON request with net/http and checks the status.
func apiCall(tb testing.TB, method, url, key, body string, want int) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read the body: %v", method, url, err)
	}
	if resp.StatusCode != want {
		tb.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, b)
	}
	return b
}

var errNoProc = errors.New("no /proc")

// cpuWindow samples the server's and this process's (the load generator's)
// CPU time at the edges of the measured window.
type cpuWindow struct {
	s                  *server
	start, end         time.Duration
	selfStart, selfEnd time.Duration
}

func (w *cpuWindow) atStart() {
	w.start, w.selfStart = w.s.cpuTime(), cpuTimeOf(os.Getpid())
}

func (w *cpuWindow) atEnd() {
	w.end, w.selfEnd = w.s.cpuTime(), cpuTimeOf(os.Getpid())
}

// used returns the server's and the load generator's CPU time in the window.
func (w *cpuWindow) used() (server, client time.Duration, err error) {
	if w.start == 0 || w.end == 0 {
		return 0, 0, errNoProc
	}
	return w.end - w.start, w.selfEnd - w.selfStart, nil
}
