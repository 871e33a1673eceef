package whatsmeow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" database/sql driver

	"github.com/walytic/appliance/appliance/whatsapp"
)

// Defaults for Options.
const (
	DefaultDeviceName        = "Walytic"
	DefaultPairingClientName = "Chrome (Linux)"
	DefaultSendTimeout       = 60 * time.Second
	DefaultLoginTimeout      = 60 * time.Second
	DefaultCheckBatch        = 100
	// FirstQRTimeout and NextQRTimeout are how long each QR code is offered,
	// as in whatsmeow's GetQRChannel (the server hands out 6 refs at once).
	FirstQRTimeout = 60 * time.Second
	NextQRTimeout  = 20 * time.Second
	// PairingCodeValidity is how long the session keeps waiting for the phone
	// after a pairing code was handed out, even if the QR codes ran out.
	PairingCodeValidity = 3 * time.Minute
)

// Options configures a Driver.
type Options struct {
	// DBPath is the SQLite file that holds every session's device state
	// (normally <data-dir>/whatsmeow.db). Required. Its directory is created
	// (0700) if missing and the file is made 0600: it holds private keys.
	DBPath string
	// Logger receives the driver's and whatsmeow's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for timestamps the driver makes itself (QR expiry);
	// nil means Clock.Now.
	Now func() time.Time
	// Clock drives the reconnect, QR-rotation and login-watchdog timers; nil
	// means the wall clock.
	Clock Clock
	// Backoff is the reconnect schedule (zero fields take DefaultBackoff).
	Backoff Backoff
	// Rand returns uniform numbers in [0, 1) for the backoff jitter; nil
	// means math/rand/v2.
	Rand func() float64
	// HTTPClient, if set, is used for the websocket both before and after
	// login (and for media). Tests point it at a fake server; production
	// leaves it nil (whatsmeow's default transport, honouring https_proxy).
	HTTPClient *http.Client
	// DeviceName is the name the phone shows under "Linked devices"
	// (default "Walytic"). whatsmeow keeps it in a package variable, so the
	// last Driver created wins.
	DeviceName string
	// PairingClientName is the "Browser (OS)" the phone shows while linking
	// with a pairing code (default "Chrome (Linux)"; WhatsApp only accepts
	// common browsers and operating systems).
	PairingClientName string
	// SendTimeout bounds the wait for the server's ack of a send (default
	// 60 s); it ends in a send_timeout error.
	SendTimeout time.Duration
	// LoginTimeout bounds the wait from an open socket to logged-in for a
	// paired session (default 60 s); then the driver reconnects.
	LoginTimeout time.Duration
	// CheckBatch is how many numbers go into one IsOnWhatsApp query
	// (default 100).
	CheckBatch int
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = wallClock{}
	}
	if o.Now == nil {
		o.Now = o.Clock.Now
	}
	o.Backoff = o.Backoff.withDefaults()
	if o.Rand == nil {
		o.Rand = defaultRand
	}
	if o.DeviceName == "" {
		o.DeviceName = DefaultDeviceName
	}
	if o.PairingClientName == "" {
		o.PairingClientName = DefaultPairingClientName
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = DefaultLoginTimeout
	}
	if o.CheckBatch <= 0 {
		o.CheckBatch = DefaultCheckBatch
	}
	return o
}

// Driver is the whatsmeow whatsapp.Driver: one per process, serving every
// whatsmeow session from one device database.
type Driver struct {
	opts      Options
	log       *slog.Logger
	db        *sql.DB
	container *sqlstore.Container

	mu       sync.Mutex
	closed   bool
	sessions map[whatsapp.SessionRef]*session
}

var (
	_ whatsapp.Driver    = (*Driver)(nil)
	_ whatsapp.Transport = (*session)(nil)
	_ whatsapp.Pairer    = (*session)(nil)
)

// mappingSchema is our one table beside whatsmeow's: which device belongs to
// which session. whatsmeow's tables are keyed by the device JID, which is
// only known after pairing and carries a device number the server picks.
const mappingSchema = `CREATE TABLE IF NOT EXISTS walytic_session_device (
	workspace  TEXT NOT NULL,
	session_id TEXT NOT NULL,
	device_jid TEXT NOT NULL,
	paired_at  INTEGER NOT NULL,
	PRIMARY KEY (workspace, session_id)
)`

// dsn builds the modernc.org/sqlite address: foreign keys on (whatsmeow's
// store refuses to start without them, and relies on ON DELETE CASCADE), WAL,
// a busy timeout, and immediate write transactions so concurrent writers
// wait instead of failing with SQLITE_BUSY.
func dsn(path string) string {
	return "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

// New opens (creating if needed) the device database and returns the driver.
func New(opts Options) (*Driver, error) {
	if opts.DBPath == "" {
		return nil, errors.New("whatsmeow: Options.DBPath is required")
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(filepath.Dir(opts.DBPath), 0o700); err != nil {
		return nil, fmt.Errorf("whatsmeow: create data directory: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(opts.DBPath))
	if err != nil {
		return nil, fmt.Errorf("whatsmeow: open %s: %w", opts.DBPath, err)
	}
	db.SetMaxOpenConns(4)
	ctx := context.Background()
	container := sqlstore.NewWithDB(db, "sqlite", newWALogger(opts.Logger, "whatsmeow/db"))
	if err := container.Upgrade(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("whatsmeow: prepare device database %s: %w", opts.DBPath, err)
	}
	if _, err := db.ExecContext(ctx, mappingSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("whatsmeow: prepare session table: %w", err)
	}
	_ = os.Chmod(opts.DBPath, 0o600)
	store.SetOSInfo(opts.DeviceName, [3]uint32{1, 0, 0})
	return &Driver{
		opts:      opts,
		log:       opts.Logger,
		db:        db,
		container: container,
		sessions:  make(map[whatsapp.SessionRef]*session),
	}, nil
}

// Name returns whatsapp.DriverWhatsmeow ("whatsmeow").
func (d *Driver) Name() string { return whatsapp.DriverWhatsmeow }

// Close closes every open transport (keeping their devices) and the database.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	open := make([]*session, 0, len(d.sessions))
	for _, s := range d.sessions {
		if s != nil {
			open = append(open, s)
		}
	}
	d.mu.Unlock()
	for _, s := range open {
		_ = s.Close()
	}
	return d.container.Close()
}

// deviceFor finds the device paired for ref, or makes a fresh unpaired one.
// A mapping whose device is gone (whatsmeow deletes it when WhatsApp logs the
// device out) is dropped.
func (d *Driver) deviceFor(ctx context.Context, ref whatsapp.SessionRef) (*store.Device, error) {
	jid, ok, err := d.mappedJID(ctx, ref)
	if err != nil {
		return nil, err
	}
	if ok {
		dev, err := d.container.GetDevice(ctx, jid)
		if err != nil {
			return nil, fmt.Errorf("load device %s: %w", jid, err)
		}
		if dev != nil {
			return dev, nil
		}
		d.log.Info("whatsmeow: device of session is gone; it must be paired again", "workspace", ref.Workspace, "sessionId", ref.SessionID, "device", jid.String())
		if err := d.deleteMapping(ctx, ref); err != nil {
			return nil, err
		}
	}
	return d.container.NewDevice(), nil
}

func (d *Driver) mappedJID(ctx context.Context, ref whatsapp.SessionRef) (types.JID, bool, error) {
	var s string
	err := d.db.QueryRowContext(ctx, `SELECT device_jid FROM walytic_session_device WHERE workspace=? AND session_id=?`, ref.Workspace, ref.SessionID).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return types.EmptyJID, false, nil
	}
	if err != nil {
		return types.EmptyJID, false, fmt.Errorf("look up session device: %w", err)
	}
	jid, err := types.ParseJID(s)
	if err != nil {
		return types.EmptyJID, false, fmt.Errorf("stored device id %q: %w", s, err)
	}
	return jid, true, nil
}

func (d *Driver) saveMapping(ctx context.Context, ref whatsapp.SessionRef, jid types.JID) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO walytic_session_device (workspace, session_id, device_jid, paired_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (workspace, session_id) DO UPDATE SET device_jid=excluded.device_jid, paired_at=excluded.paired_at`,
		ref.Workspace, ref.SessionID, jid.String(), d.opts.Now().Unix())
	if err != nil {
		return fmt.Errorf("save session device: %w", err)
	}
	return nil
}

func (d *Driver) deleteMapping(ctx context.Context, ref whatsapp.SessionRef) error {
	if _, err := d.db.ExecContext(ctx, `DELETE FROM walytic_session_device WHERE workspace=? AND session_id=?`, ref.Workspace, ref.SessionID); err != nil {
		return fmt.Errorf("delete session device: %w", err)
	}
	return nil
}

// Open starts the transport of one session: a whatsmeow client on the
// session's device (or a fresh one to pair). It reports "connecting" before
// it returns; later statuses follow as WhatsApp answers. The transport also
// implements whatsapp.Pairer.
func (d *Driver) Open(ctx context.Context, ref whatsapp.SessionRef, h whatsapp.Handler) (whatsapp.Transport, error) {
	if h == nil {
		return nil, errors.New("whatsmeow: Open needs a Handler")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, errors.New("whatsmeow: driver is closed")
	}
	if _, dup := d.sessions[ref]; dup {
		d.mu.Unlock()
		return nil, fmt.Errorf("whatsmeow: session %s/%s is already open", ref.Workspace, ref.SessionID)
	}
	d.sessions[ref] = nil // reserve
	d.mu.Unlock()

	dev, err := d.deviceFor(ctx, ref)
	if err != nil {
		d.mu.Lock()
		delete(d.sessions, ref)
		d.mu.Unlock()
		return nil, fmt.Errorf("whatsmeow: %w", err)
	}
	log := d.log.With("workspace", ref.Workspace, "sessionId", ref.SessionID)
	cli := whatsmeow.NewClient(dev, newWALogger(log, "whatsmeow"))
	// We reconnect ourselves (capped backoff on our clock, permanent stops);
	// whatsmeow's own loop retries forever at 2 s·n.
	cli.EnableAutoReconnect = false
	// After pairing the server asks for a fresh login (stream error 515);
	// we do it ourselves, so a failure there goes through our backoff too.
	cli.DisableLoginAutoReconnect = true
	if d.opts.HTTPClient != nil {
		cli.SetPreLoginHTTPClient(d.opts.HTTPClient)
		cli.SetWebsocketHTTPClient(d.opts.HTTPClient)
		cli.SetMediaHTTPClient(d.opts.HTTPClient)
	}
	rc := &realConn{cli: cli, d: d, ref: ref, opts: d.opts}
	s := newSession(ref, h, rc, d.opts, log)
	s.onClosed = func() {
		d.mu.Lock()
		if d.sessions[ref] == s {
			delete(d.sessions, ref)
		}
		d.mu.Unlock()
	}
	cli.PrePairCallback = s.prePair
	// Messages and receipts are acknowledged only once the appliance has
	// stored them (handleEventStored). The buffer keeps a decrypted
	// message's plaintext until then: the Signal session has moved on, so a
	// message sent again after a crash could not be decrypted a second time.
	cli.SynchronousAck = true
	cli.EnableDecryptedEventBuffer = true
	cli.AddEventHandlerWithSuccessStatus(s.handleEventStored)
	cli.GetMessageForRetry = s.messageForRetry
	d.mu.Lock()
	d.sessions[ref] = s
	d.mu.Unlock()
	s.start()
	return s, nil
}
