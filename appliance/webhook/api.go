package webhook

import (
	"errors"
	"fmt"

	"github.com/walytic/appliance/storage"
)

// ErrNotFound is returned for unknown deliveries.
var ErrNotFound = errors.New("not found")

// UnattemptableError is Redeliver's answer for a delivery that could not be
// attempted: its endpoint was deleted (EndpointGone), is disabled, or no
// longer subscribes to the event. Reason says which, and what to do.
type UnattemptableError struct {
	EndpointGone bool
	Reason       string
}

func (e *UnattemptableError) Error() string { return "cannot redeliver: " + e.Reason }

// Attempts lists an endpoint's delivery attempts, newest first, after the
// attempt id cursor ("" = from the newest). next is "" on the last page.
func (s *Service) Attempts(endpointID, cursor string, limit int) (out []storage.Attempt, next string, err error) {
	more := false
	err = s.db.Attempts(endpointID, cursor, func(a *storage.Attempt) bool {
		if len(out) == limit {
			more = true
			return false
		}
		out = append(out, *a)
		return true
	})
	if err != nil {
		return nil, "", fmt.Errorf("list webhook attempts: %w", err)
	}
	if more {
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// Delivery returns one delivery of a workspace.
func (s *Service) Delivery(workspace, id string) (*storage.Delivery, error) {
	d, err := s.db.Delivery(id)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && d.Workspace != workspace) {
		return nil, ErrNotFound
	}
	return d, err
}

// Redeliver schedules a delivery for an attempt now, with a fresh run of the
// retry schedule, whatever its state. The event id (and so the receiver's
// de-duplication key) stays the same.
func (s *Service) Redeliver(workspace, id string) (*storage.Delivery, error) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	d, err := s.Delivery(workspace, id)
	if err != nil {
		return nil, err
	}
	// Refused now rather than accepted and then ended unattempted, where
	// the caller would not see why (a deleted endpoint's log is gone).
	cfg, ok := s.eps.Webhook(d.EndpointID)
	if why := unattemptable(&cfg, ok, d); why != "" {
		return nil, &UnattemptableError{EndpointGone: !ok, Reason: why}
	}
	prev := int64(0)
	if d.State == statePending {
		prev = d.NextAt
	}
	now := s.now()
	d.State, d.Attempts, d.NextAt, d.UpdatedAt = statePending, 0, now.UnixNano(), now.Unix()
	b := s.db.NewBatch()
	if err := b.StageDelivery(d, prev); err != nil {
		b.Discard()
		return nil, err
	}
	queued := *d
	b.OnDurable(func() { s.accept(&queued, true) })
	if err := s.db.CommitSync(b); err != nil {
		return nil, fmt.Errorf("schedule redelivery: %w", err)
	}
	return d, nil
}
