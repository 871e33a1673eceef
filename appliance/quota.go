package appliance

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walytic/appliance/storage"
)

// quotaTracker counts each workspace's accepted sends for the current UTC
// month in memory. Reserve/Release bracket the send's batch so concurrent
// sends can never take one more than the budget.
//
// The Pebble counter of a month counts the messages that have left the
// queue: the dispatcher adds them in its outcome batch, one merge per batch
// rather than one per send on a key every send would share. What a month
// has accepted is therefore that counter plus its messages still queued in
// storage; a restart adds the queued ones it recovers (addRecovered) before
// their session dispatches anything.
//
// A month's count is read from storage once, the first time it is needed,
// and kept: later the stored counter trails the memory by the messages still
// queued, so reading it again would lose them. That first read is exact:
// only a month's queued messages move its counter, and accepting or
// recovering one reads the month first.
type quotaTracker struct {
	db *storage.DB
	mu sync.Mutex
	m  map[quotaKey]*quotaCount
}

type quotaKey struct{ ws, period string }

type quotaCount struct {
	used int64 // accepted: in the stored counter, queued, or reserved
}

func newQuotaTracker(db *storage.DB) *quotaTracker {
	return &quotaTracker{db: db, m: map[quotaKey]*quotaCount{}}
}

// Period is the UTC calendar month of t, as "2026-11".
func Period(t time.Time) string {
	u := t.Unix()
	if p := lastPeriod.Load(); p != nil && p.from <= u && u < p.until {
		return p.name // every send asks, nearly always for the current month
	}
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	p := &periodSpan{from: start.Unix(), until: start.AddDate(0, 1, 0).Unix(), name: storage.Period(t.Year(), int(t.Month()))}
	lastPeriod.Store(p)
	return p.name
}

// periodSpan is a month's name and its bounds in Unix seconds, [from, until).
type periodSpan struct {
	from, until int64
	name        string
}

// lastPeriod is the month Period named last.
var lastPeriod atomic.Pointer[periodSpan]

// nextPeriodStart is the first instant of the month after t's, in UTC.
func nextPeriodStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

func (q *quotaTracker) countLocked(ws, period string) (*quotaCount, error) {
	k := quotaKey{ws, period}
	if c, ok := q.m[k]; ok {
		return c, nil
	}
	used, err := q.db.QuotaUsed(ws, period)
	if err != nil {
		return nil, fmt.Errorf("read quota of %s: %w", ws, err)
	}
	c := &quotaCount{used: used}
	q.m[k] = c
	return c, nil
}

// reserve takes one message from the budget, or says how long until the
// quota resets. limit 0 means unlimited (counted all the same).
func (q *quotaTracker) reserve(ws string, limit int64, now time.Time) (string, error) {
	period := Period(now)
	q.mu.Lock()
	defer q.mu.Unlock()
	c, err := q.countLocked(ws, period)
	if err != nil {
		return "", err
	}
	if limit > 0 && c.used >= limit {
		wait := secondsUntil(nextPeriodStart(now).Sub(now))
		return "", &Error{Code: CodeQuotaExceeded, Type: typeOf(CodeQuotaExceeded), RetryAfter: wait,
			Message: fmt.Sprintf("the workspace has used its monthly quota of %d messages for %s; it resets at the start of next month (UTC), or raise it with `walytic workspaces set-quota %s N`", limit, period, ws)}
	}
	c.used++
	return period, nil
}

// secondsUntil is d in whole seconds rounded up, at least 1: a client that
// waits that long arrives after d, never a moment before.
func secondsUntil(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

// addRecovered counts n messages of period that an earlier run accepted and
// left queued: they are not in the stored counter yet.
func (q *quotaTracker) addRecovered(ws, period string, n int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	c, err := q.countLocked(ws, period)
	if err != nil {
		return err
	}
	c.used += n
	return nil
}

// release returns a reservation whose batch did not commit.
func (q *quotaTracker) release(ws, period string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c, ok := q.m[quotaKey{ws, period}]; ok && c.used > 0 {
		c.used--
	}
}

func (q *quotaTracker) used(ws string, now time.Time) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c, err := q.countLocked(ws, Period(now))
	if err != nil {
		return 0, err
	}
	return c.used, nil
}

// Usage is a workspace's quota position for the current month.
type Usage struct {
	Period    string
	Quota     int64 // 0 = unlimited
	Used      int64
	ResetsAt  int64
	Unlimited bool
}

// Usage reports the workspace's quota for the current UTC month.
func (a *Appliance) Usage(workspace string) (Usage, error) {
	w, err := a.Workspace(workspace)
	if err != nil {
		return Usage{}, err
	}
	now := a.now()
	used, err := a.quota.used(workspace, now)
	if err != nil {
		return Usage{}, err
	}
	return Usage{
		Period:    Period(now),
		Quota:     w.MonthlyQuota,
		Used:      used,
		ResetsAt:  nextPeriodStart(now).Unix(),
		Unlimited: w.MonthlyQuota == 0,
	}, nil
}
