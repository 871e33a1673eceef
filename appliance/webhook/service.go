package webhook

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walytic/appliance/storage"
)

// Endpoints is where endpoint configuration lives (replicated state). Reads
// must not block on I/O: Webhooks is called for every event.
type Endpoints interface {
	// Webhooks returns a workspace's endpoints; the slice must not be modified.
	Webhooks(workspace string) []storage.Webhook
	Webhook(id string) (storage.Webhook, bool)
	// UpdateWebhook changes an existing endpoint atomically (storage.ErrNotFound if it is gone).
	UpdateWebhook(id string, change func(*storage.Webhook) error) (storage.Webhook, error)
}

// Options configure a Service. Zero values take the defaults.
type Options struct {
	DB        *storage.DB
	Endpoints Endpoints
	// Schedule is the delay before each retry (DefaultSchedule).
	Schedule []time.Duration
	// AllowPrivate lets deliveries reach loopback and private addresses.
	AllowPrivate bool
	// Retention is how long the deliveries log is kept (30 days).
	Retention time.Duration
	// DisableAfter disables an endpoint that failed every attempt that long (5 days).
	DisableAfter time.Duration
	// Timeout bounds one attempt, connection to last byte (10 s).
	Timeout time.Duration
	// MaxInFlight bounds concurrent deliveries per endpoint (8).
	MaxInFlight int
	// MaxQueued bounds the deliveries held in memory: at most MaxQueued due
	// (in lanes or in flight) and MaxQueued waiting for a retry (20,000
	// each). The rest wait in the outbox and are read back, earliest due
	// first, as room frees: a backlog costs disk, not memory.
	MaxQueued int
	// MaxQueuedPerEndpoint bounds one endpoint's share of the due ones
	// (5,000, at most MaxQueued): beyond it the endpoint's new events wait
	// in the outbox while other endpoints' go on, so a receiver that hangs
	// fills its own share, not everybody's.
	MaxQueuedPerEndpoint int
	Now                  func() time.Time
	Logger               *slog.Logger
	// Transport overrides the HTTP transport (tests); nil builds one whose
	// dialer refuses forbidden addresses after DNS resolution.
	Transport http.RoundTripper
}

// Service stages events into the outbox and delivers them.
type Service struct {
	opts Options
	db   *storage.DB
	eps  Endpoints
	rt   http.RoundTripper // see Post
	now  func() time.Time
	log  *slog.Logger
	rand func() float64

	// recordDelay is how long finished attempts may wait to be recorded
	// together (defaultRecordDelay; tests set it longer).
	recordDelay time.Duration

	wake    chan struct{}
	results chan result
	jobs    chan attemptJob // idle attempt workers wait here
	queued  atomic.Int64    // deliveries in memory, as of the run loop's last pass
	// blocksCounted is how many outbox blocks the run loop counts, as of
	// its last pass (tests check it stays bounded by what is in memory).
	blocksCounted atomic.Int64
	inboxMu       sync.Mutex
	inbox         []inboxItem // committed deliveries not yet taken by the run loop
	// pruneMu keeps a prune step and Redeliver apart: a step must not
	// delete a finished delivery that Redeliver has just made pending.
	pruneMu sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// New builds a Service; call Start to begin delivering.
func New(o Options) *Service {
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.DisableAfter <= 0 {
		o.DisableAfter = 5 * 24 * time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 8
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 20_000
	}
	if o.MaxQueuedPerEndpoint <= 0 {
		o.MaxQueuedPerEndpoint = 5_000
	}
	o.MaxQueuedPerEndpoint = min(o.MaxQueuedPerEndpoint, o.MaxQueued)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	rt := o.Transport
	if rt == nil {
		rt = NewTransport(o.AllowPrivate, o.Timeout, o.MaxInFlight)
	}
	return &Service{
		opts:        o,
		db:          o.DB,
		eps:         o.Endpoints,
		rt:          rt,
		now:         o.Now,
		log:         o.Logger,
		rand:        rand.Float64,
		recordDelay: defaultRecordDelay,
		wake:        make(chan struct{}, 1),
		results:     make(chan result, 1024),
		jobs:        make(chan attemptJob),
	}
}

// Wants reports whether an enabled endpoint of the workspace subscribes to
// the event type.
func (s *Service) Wants(workspace, eventType string) bool {
	eps := s.eps.Webhooks(workspace)
	for i := range eps {
		if eps[i].Enabled && subscribed(&eps[i], eventType) {
			return true
		}
	}
	return false
}

// Stage adds one delivery per subscribed, enabled endpoint of the event's
// workspace to b's outbox block (storage.Batch.StageFirstDelivery): the
// event, not its JSON, which each attempt renders. It takes no lock and
// does no I/O outside b.
func (s *Service) Stage(b *storage.Batch, ev storage.Event) error {
	eps := s.eps.Webhooks(ev.Workspace)
	if len(eps) == 0 {
		return nil
	}
	now := s.now()
	for i := range eps {
		ep := &eps[i]
		if !ep.Enabled || !subscribed(ep, ev.Type) {
			continue
		}
		d := &storage.Delivery{
			ID: storage.NewID("dlv_", now), EndpointID: ep.ID, Event: ev, State: statePending,
			NextAt: now.UnixNano(), CreatedAt: now.Unix(), UpdatedAt: now.Unix(),
		}
		if b.StageFirstDelivery(d) {
			b.OnDurable(func() { s.acceptBlock(b.StagedDeliveries()) })
		}
	}
	return nil
}

// Committed is part of the domain's EventSink; deliveries reach the run
// loop through their batch's durability callback, so there is nothing to do.
func (s *Service) Committed() {}

func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start begins delivering in the background.
func (s *Service) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.started = true
	s.wg.Add(1)
	go s.run(ctx)
}

// Close stops delivering; attempts in flight are abandoned and stay pending,
// to be retried after the next start.
func (s *Service) Close() {
	if !s.started {
		return
	}
	s.cancel()
	s.wg.Wait()
}

const (
	statePending   = "pending"
	stateDelivered = "delivered"
	stateFailed    = "failed"
)

// liveSecrets are the secrets that sign now: the current one and any
// rotated-out one still inside its grace period.
func liveSecrets(ep *storage.Webhook, now time.Time) []string {
	out := make([]string, 0, len(ep.Secrets))
	for _, sec := range ep.Secrets {
		if sec.ExpiresAt == 0 || now.Unix() < sec.ExpiresAt {
			out = append(out, sec.Secret)
		}
	}
	return out
}
