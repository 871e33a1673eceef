package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walytic/appliance/appliance/limiter"
	"github.com/walytic/appliance/appliance/webhook"
	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/storage"
)

// DefaultWorkspace exists from the first start.
const DefaultWorkspace = "default"

// State is where replicated state lives: workspaces (with their quota
// budgets) and API keys (hashes only, with their limit overrides). The local
// implementation is storage.LocalState; a cluster implements it with raft.
//
// Implementations guarantee: a write has taken effect for every reader on
// every node when the method returns (so a rotated key is dead on return);
// reads never block on I/O (KeyByHash is on every request's path).
type State interface {
	Workspace(name string) (storage.Workspace, bool)
	Workspaces() []storage.Workspace
	CreateWorkspace(w storage.Workspace) error // storage.ErrExists if taken
	UpdateWorkspace(w storage.Workspace) error // storage.ErrNotFound if missing
	Key(id string) (storage.APIKey, bool)
	KeyByHash(h [32]byte) (storage.APIKey, bool)
	Keys(workspace string) []storage.APIKey // "" = all
	PutKey(k storage.APIKey) error          // insert by id
	// UpdateKey changes an existing key atomically; storage.ErrNotFound if missing.
	UpdateKey(id string, change func(*storage.APIKey) error) (storage.APIKey, error)
	DeleteKey(id string) error                   // storage.ErrNotFound if missing
	Webhooks(workspace string) []storage.Webhook // shared slice: do not modify
	Webhook(id string) (storage.Webhook, bool)
	PutWebhook(w storage.Webhook) error // insert by id
	// UpdateWebhook changes an existing endpoint atomically; storage.ErrNotFound if missing.
	UpdateWebhook(id string, change func(*storage.Webhook) error) (storage.Webhook, error)
	DeleteWebhook(id string) error // storage.ErrNotFound if missing
}

// Config wires an Appliance.
type Config struct {
	DB      *storage.DB
	State   State
	Drivers []whatsapp.Driver
	// Webhooks stages events in the outbox and delivers them; nil drops
	// events (Events, if set, receives them instead).
	Webhooks *webhook.Service
	// WebhookAllowPrivate lets webhook URLs point at loopback and private networks.
	WebhookAllowPrivate bool
	Events              EventSink        // for tests: a sink other than the webhook service
	Now                 func() time.Time // nil: time.Now
	// MaxQueueAge fails messages that waited longer than this for a
	// disconnected session (0: wait for ever).
	MaxQueueAge time.Duration
	Logger      *slog.Logger // nil: slog.Default()
}

// Appliance is the running domain.
type Appliance struct {
	db      *storage.DB
	state   State
	drivers map[string]whatsapp.Driver
	events  EventSink
	now     func() time.Time

	webhooks            *webhook.Service
	webhookAllowPrivate bool
	maxQueueAge         time.Duration
	log                 *slog.Logger
	limiter             *limiter.Limiter
	quota               *quotaTracker
	idem                keyedMutex
	// webhookCreate makes a workspace's endpoint count and the insert of a
	// new one a single step, so parallel creates cannot pass the bound.
	webhookCreate keyedMutex
	// lifecycle serialises, per session, what replaces or removes its
	// runtime or rewrites its record: DELETE, a pairing restart, SetPacing.
	// Two restarts at once left a second runtime (and transport) running
	// unseen; a restart or SetPacing racing a DELETE wrote the deleted
	// session back.
	lifecycle sessionLocks

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.RWMutex
	sessions map[sessionKey]*sessionRuntime

	sendFailures sync.Map // error code → *atomic.Uint64

	// FirstStart is true when Open created the default workspace: the data
	// directory was empty.
	FirstStart bool
}

type sessionKey struct{ ws, id string }

// Open starts the domain: makes sure the default workspace exists and opens
// a transport for every stored session.
func Open(cfg Config) (*Appliance, error) {
	if cfg.DB == nil || cfg.State == nil {
		return nil, errors.New("appliance: DB and State are required")
	}
	a := &Appliance{
		db:       cfg.DB,
		state:    cfg.State,
		drivers:  map[string]whatsapp.Driver{},
		events:   cfg.Events,
		now:      cfg.Now,
		log:      cfg.Logger,
		sessions: map[sessionKey]*sessionRuntime{},
	}
	a.webhooks, a.webhookAllowPrivate, a.maxQueueAge = cfg.Webhooks, cfg.WebhookAllowPrivate, cfg.MaxQueueAge
	if a.events == nil && a.webhooks != nil {
		a.events = a.webhooks
	}
	if a.events == nil {
		a.events = discardEvents{}
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	for _, d := range cfg.Drivers {
		a.drivers[d.Name()] = d
	}
	a.limiter = limiter.New(cfg.Now) // nil: the limiter's own, cheaper monotonic reads
	a.quota = newQuotaTracker(a.db)
	a.ctx, a.cancel = context.WithCancel(context.Background())

	if _, ok := a.state.Workspace(DefaultWorkspace); !ok {
		err := a.state.CreateWorkspace(storage.Workspace{Name: DefaultWorkspace, CreatedAt: a.now().Unix()})
		if err != nil && !errors.Is(err, storage.ErrExists) {
			return nil, fmt.Errorf("create default workspace: %w", err)
		}
		a.FirstStart = len(a.state.Keys("")) == 0
	}
	sessions, err := a.db.Sessions("")
	if err != nil {
		return nil, err
	}
	for _, s := range sessions {
		if err := a.startSession(s, true); err != nil {
			a.log.Error("session did not start", "workspace", s.Workspace, "sessionId", s.ID, "err", err)
		}
	}
	a.wg.Add(1)
	go a.housekeeping()
	return a, nil
}

// Close stops every session's dispatcher and transport. It does not close
// the database, which the caller owns.
func (a *Appliance) Close() {
	a.cancel()
	a.mu.Lock()
	runtimes := make([]*sessionRuntime, 0, len(a.sessions))
	for _, rt := range a.sessions {
		runtimes = append(runtimes, rt)
	}
	a.mu.Unlock()
	for _, rt := range runtimes {
		rt.stop()
	}
	a.wg.Wait()
}

// housekeeping evicts idle limiter entries and expired idempotency records.
func (a *Appliance) housekeeping() {
	defer a.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			a.limiter.Evict()
			if err := a.pruneIdempotency(); err != nil {
				a.log.Warn("prune idempotency records", "err", err)
			}
		}
	}
}

// Ready reports whether the node can serve requests.
func (a *Appliance) Ready() error {
	if a.ctx.Err() != nil {
		return errors.New("shutting down")
	}
	return nil
}

// storageErr turns a storage failure into the error the caller sees.
func storageErr(op string, err error) error {
	if errors.Is(err, storage.ErrDiskFull) {
		return newErr(CodeInsufficientDisk, "", "the server's disk is full (or down to the space its database keeps in reserve), so nothing was stored: free disk space on the appliance and retry")
	}
	return fmt.Errorf("%s: %w", op, err)
}

// keyedMutex serialises work per string key (idempotency keys) with striped
// locks: bounded memory, no global lock.
type keyedMutex struct{ stripes [256]sync.Mutex }

func (k *keyedMutex) lock(key string) func() {
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	m := &k.stripes[h%uint32(len(k.stripes))]
	m.Lock()
	return m.Unlock
}

// sessionLocks holds one mutex per session id ever locked (a few bytes
// each): striped locks would make a DELETE, which waits for WhatsApp to
// confirm a logout, hold up other sessions' requests.
type sessionLocks struct{ m sync.Map } // sessionKey → *sync.Mutex

func (l *sessionLocks) lock(key sessionKey) func() {
	v, ok := l.m.Load(key)
	if !ok {
		v, _ = l.m.LoadOrStore(key, new(sync.Mutex))
	}
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (a *Appliance) countSendFailure(code string) {
	v, ok := a.sendFailures.Load(code)
	if !ok {
		v, _ = a.sendFailures.LoadOrStore(code, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// SendFailures counts messages that failed, by error code, since start.
func (a *Appliance) SendFailures() map[string]uint64 {
	out := map[string]uint64{}
	a.sendFailures.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// DiskSpace is the free space on the data directory's disk at the last
// measure, and whether new data is refused for want of it; known is false
// when the server does not measure it.
func (a *Appliance) DiskSpace() (free uint64, low, known bool) {
	free, known = a.db.FreeBytes()
	return free, a.db.CheckSpace() != nil, known
}
