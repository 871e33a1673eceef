package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
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
	db, err := storage.Open(g.dataDir)
	if err != nil {
		// Pebble's lock file is held: EAGAIN from flock.
		if errors.Is(err, syscall.EAGAIN) || strings.Contains(err.Error(), "lock") {
			return fmt.Errorf("%w: another walytic serve is using --data-dir %s; stop it, or give this one another --data-dir", err, g.dataDir)
		}
		return err
	}
	defer db.Close()
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
		createKey := fmt.Sprintf("walytic --data-dir %s keys create", g.dataDir)
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
