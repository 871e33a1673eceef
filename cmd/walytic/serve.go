package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/appliance/webhook"
	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/sandbox"
	"github.com/walytic/appliance/appliance/whatsapp/whatsmeow"
	"github.com/walytic/appliance/httpfast"
	"github.com/walytic/appliance/storage"
)

type serveConfig struct {
	listen         string
	adminTokenFile string
	logLevel       string
	checkOnly      bool

	webhookAllowPrivate bool
	webhookSchedule     string
	webhookRetention    time.Duration
	maxQueueAge         time.Duration
	diskReserve         string
}

func serveFlags(c *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address of the public API")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", "", "file holding a token that unlocks /admin/v1 on --listen")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.checkOnly, "check-config", false, "check the configuration and exit")
	fs.BoolVar(&c.webhookAllowPrivate, "webhook-allow-private", false, "allow webhook URLs on loopback and private networks")
	fs.StringVar(&c.webhookSchedule, "webhook-retry-schedule", "", "delays before each webhook retry, e.g. 5s,5m,30m (default: about 3 days)")
	fs.DurationVar(&c.webhookRetention, "webhook-retention", 30*24*time.Hour, "how long the webhook deliveries log is kept")
	fs.DurationVar(&c.maxQueueAge, "max-queue-age", 24*time.Hour, "fail messages that waited longer than this for a disconnected, logged-out or banned session (0 = wait for ever)")
	fs.StringVar(&c.diskReserve, "disk-reserve", formatSize(storage.DefaultDiskReserve), "free disk space kept for the database: below it new messages get 507 (0 = no reserve)")
	return fs
}

// applyConfigFile sets flags from a file of "name = value" lines (the flag
// names of `walytic serve`, '#' starts a comment). Flags given on the command
// line win, because they are parsed after.
func applyConfigFile(fs *flag.FlagSet, g *globals, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		name, val = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(val), `"`)
		if !ok {
			return fmt.Errorf("%s:%d: want \"name = value\", got %q", path, n, line)
		}
		switch name {
		case "data-dir":
			g.dataDir = val
			continue
		case "admin-socket":
			g.adminSocket = val
			continue
		case "config", "check-config":
			return fmt.Errorf("%s:%d: %q cannot be set in a config file", path, n, name)
		}
		if fs.Lookup(name) == nil {
			return fmt.Errorf("%s:%d: unknown setting %q (settings are the flags of `walytic serve`)", path, n, name)
		}
		if err := fs.Set(name, val); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", path, n, name, err)
		}
	}
	return sc.Err()
}

func serve(g globals, args []string) error {
	var c serveConfig
	fs := serveFlags(&c)
	// --config is read first so the command line can override the file.
	cfgFile := ""
	for i, a := range args {
		if a == "--config" || a == "-config" {
			if i+1 >= len(args) {
				return usagef("--config needs a file")
			}
			cfgFile = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgFile = v
		}
	}
	var configArg string
	fs.StringVar(&configArg, "config", "", "file of settings, one \"name = value\" per line")
	if cfgFile != "" {
		if err := applyConfigFile(fs, &g, cfgFile); err != nil {
			return err
		}
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", pos[0])
	}
	level, err := parseLevel(c.logLevel)
	if err != nil {
		return usagef("%v", err)
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return usagef("--listen %q: want host:port, for example 127.0.0.1:8080", c.listen)
	}
	adminToken, tokenFileOpen := "", false
	if c.adminTokenFile != "" {
		if fi, err := os.Stat(c.adminTokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			tokenFileOpen = true // said in the log once it is up
		}
		b, err := os.ReadFile(c.adminTokenFile)
		if err != nil {
			return fmt.Errorf("read --admin-token-file: %w", err)
		}
		adminToken = strings.TrimSpace(string(b))
		if len(adminToken) < 16 {
			return fmt.Errorf("the admin token in %s is shorter than 16 characters: use a long random one (openssl rand -hex 32)", c.adminTokenFile)
		}
	}
	schedule := webhook.DefaultSchedule
	if c.webhookSchedule != "" {
		if schedule, err = webhook.ParseSchedule(c.webhookSchedule); err != nil {
			return usagef("--webhook-retry-schedule: %v", err)
		}
	}
	if c.maxQueueAge < 0 {
		return usagef("--max-queue-age must be 0 (no limit) or positive")
	}
	if c.webhookRetention < time.Hour {
		return usagef("--webhook-retention must be at least 1h, got %s", c.webhookRetention)
	}
	reserve, err := parseSize(c.diskReserve)
	if err != nil {
		return usagef("--disk-reserve: %v", err)
	}
	if c.checkOnly {
		fmt.Printf("configuration OK: data dir %s, listen %s, admin socket %s\n", g.dataDir, c.listen, g.socketPath())
		return nil
	}

	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	procs := setProcs()
	if tokenFileOpen {
		log.Warn("the admin token file can be read by other users: make it private (chmod 600)", "file", c.adminTokenFile)
	}

	if fi, err := os.Stat(g.dataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// storage.Open makes it private.
		log.Warn("the data directory was open to other users; it is now private (mode 700)", "dir", g.dataDir, "was", fi.Mode().Perm().String())
	}
	if err := checkFreeSpace(g.dataDir, reserve, storage.FreeSpace); err != nil {
		return err
	}
	db, err := storage.Open(g.dataDir)
	if err != nil {
		// Pebble's lock file is held: EAGAIN from flock.
		if errors.Is(err, syscall.EAGAIN) || strings.Contains(err.Error(), "lock") {
			return fmt.Errorf("%w: another walytic serve is using --data-dir %s; stop it, or give this one another --data-dir", err, g.dataDir)
		}
		return err
	}
	defer db.Close()
	if reserve > 0 {
		if err := db.WatchSpace(reserve, spaceEvery, nil); err != nil {
			log.Warn("the disk's free space cannot be measured: running without a disk reserve", "err", err)
		}
	}
	state, err := storage.OpenLocalState(db)
	if err != nil {
		return err
	}
	hooks := webhook.New(webhook.Options{
		DB: db, Endpoints: state, Schedule: schedule, AllowPrivate: c.webhookAllowPrivate,
		Retention: c.webhookRetention, Logger: log,
	})
	hooks.Start()
	defer hooks.Close()
	wa, err := whatsmeow.New(whatsmeow.Options{DBPath: filepath.Join(g.dataDir, "whatsmeow.db"), Logger: log})
	if err != nil {
		return fmt.Errorf("open WhatsApp device store: %w", err)
	}
	defer wa.Close()
	app, err := appliance.Open(appliance.Config{
		DB:                  db,
		State:               state,
		Drivers:             []whatsapp.Driver{sandbox.New(sandbox.Options{}), wa},
		MaxQueueAge:         c.maxQueueAge,
		Webhooks:            hooks,
		WebhookAllowPrivate: c.webhookAllowPrivate,
		Logger:              log,
	})
	if err != nil {
		return err
	}
	defer app.Close()

	srv := httpfast.New(httpfast.Config{App: app, Logger: log, AdminToken: adminToken})
	adminLn, err := listenAdminSocket(g.socketPath())
	if err != nil {
		return err
	}
	publicLn, err := net.Listen("tcp", c.listen)
	if err != nil {
		_ = adminLn.Close()
		return fmt.Errorf("listen on %s: %w (is the port in use? pick another with --listen)", c.listen, err)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServePublic(publicLn) }()
	go func() { errc <- srv.ServeAdmin(adminLn) }()
	log.Info("walytic serving", "version", version, "listen", publicLn.Addr().String(), "adminSocket", g.socketPath(), "dataDir", g.dataDir, "goMaxProcs", procs)
	if app.FirstStart {
		createKey := keysCreateHint(os.Args[0], g)
		createSession := fmt.Sprintf(`curl -X POST http://%s/v1/sessions -H "Authorization: Bearer $KEY" -d '{"sessionId":"919876543210","driver":"sandbox"}'`, publicLn.Addr().String())
		log.Info("new data directory: create an API key, then a sandbox session", "createKey", createKey, "createSession", createSession)
		// stderr carries JSON log lines only; a person at a terminal also
		// gets the two commands as they can be pasted.
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(os.Stderr, "walytic: new data directory %s. Create an API key:  %s\n", g.dataDir, createKey)
			fmt.Fprintf(os.Stderr, "walytic: then a sandbox session:  %s\n", createSession)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining requests in flight")
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	_ = os.Remove(g.socketPath())
	log.Info("stopped")
	return nil
}

// listenAdminSocket opens the admin unix socket with mode 0600, replacing a
// stale socket file left by a crash but never a live one.
func listenAdminSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create admin socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("another walytic serve is already listening on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale admin socket: %w", err)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod admin socket: %w", err)
	}
	return ln, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, errors.New("--log-level must be debug, info, warn or error")
	}
	return l, nil
}

// spaceEvery is how often the server measures its disk's free space: at the
// send benchmark's write rate (about 8 MB/s) a few MB go by between two
// measures, a small part of the reserve.
const spaceEvery = 250 * time.Millisecond

// checkFreeSpace refuses to start on a disk too full for the database to
// open: opening replays the write-ahead log into a memtable, may flush it and
// preallocates a new log, and Pebble retries a flush that fails for want of
// space for ever, logging every try, instead of failing. It needs the
// smaller of the reserve and storage.OpenMinFree.
func checkFreeSpace(dir string, reserve uint64, measure func(string) (uint64, error)) error {
	if reserve == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", dir, err)
	}
	free, err := measure(dir)
	if err != nil {
		return nil // not measurable here: WatchSpace says so in the log
	}
	if need := min(reserve, storage.OpenMinFree); free < need {
		return fmt.Errorf("the disk holding %s has %s free, less than the %s walytic needs to open its database: free some space (or lower --disk-reserve, now %s), then start it again; nothing stored is lost",
			dir, formatSize(free), formatSize(need), formatSize(reserve))
	}
	return nil
}

// sizeUnits are the units --disk-reserve takes, largest first.
var sizeUnits = []struct {
	name string
	n    uint64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}}

// parseSize reads a size such as "256MiB", "1GiB" or "500MB" ("0" for none).
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.name); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
			if err != nil || n > math.MaxUint64/u.n {
				break
			}
			return n * u.n, nil
		}
	}
	return 0, fmt.Errorf("want a size such as 256MiB, 1GiB or 500MB (or 0 for none), got %q", s)
}

// formatSize writes a size in the largest binary unit that divides it, or
// in MiB rounded down.
func formatSize(n uint64) string {
	for _, u := range sizeUnits[:4] {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatUint(n/u.n, 10) + u.name
		}
	}
	return strconv.FormatUint(n>>20, 10) + "MiB"
}

// keysCreateHint is the command that creates a key for this server, as it
// can be pasted: the binary as it was started (bin/walytic from a source
// tree, walytic when installed), this data directory and, when one was
// given, this admin socket.
func keysCreateHint(self string, g globals) string {
	words := []string{self, "--data-dir", g.dataDir}
	if g.adminSocket != "" {
		words = append(words, "--admin-socket", g.adminSocket)
	}
	for i, w := range words {
		words[i] = shellWord(w)
	}
	return strings.Join(append(words, "keys", "create"), " ")
}

// shellWord quotes w for a POSIX shell when it needs it.
func shellWord(w string) string {
	if w != "" && strings.IndexFunc(w, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r == '=' || r == '+' || r == ',' || r == '@' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
