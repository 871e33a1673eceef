package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/walytic/appliance/storage"
)

// result is the outcome of one attempt, reported to the run loop.
type result struct {
	d        *storage.Delivery
	at       time.Time
	status   int
	latency  time.Duration
	err      error
	canceled bool
}

// loop state, owned by the run goroutine alone.
type loopState struct {
	inflight map[string]bool  // delivery ids being attempted
	lanes    map[string]bool  // endpoint+session lanes with an attempt in flight
	perEP    map[string]int   // attempts in flight per endpoint
	failing  map[string]int64 // endpoint → failing since (Unix s), cached
	// waiting caches due deliveries that could not start yet (lane busy or
	// endpoint at its limit), so each fill does not read them again.
	waiting map[string]*storage.Delivery
	timer   *time.Timer
}

const fillScanMax = 4096

func (s *Service) run(ctx context.Context) {
	defer s.wg.Done()
	st := &loopState{inflight: map[string]bool{}, lanes: map[string]bool{}, perEP: map[string]int{}, failing: map[string]int64{}, waiting: map[string]*storage.Delivery{}}
	st.timer = time.NewTimer(time.Hour)
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	s.fill(ctx, st)
	for {
		select {
		case <-ctx.Done():
			// Let attempts in flight notice the cancellation; their
			// deliveries stay pending in storage.
			for len(st.inflight) > 0 {
				r := <-s.results
				delete(st.inflight, r.d.ID)
			}
			return
		case <-s.wake:
		case <-st.timer.C:
		case <-prune.C:
			s.prune()
		case r := <-s.results:
			batch := []result{r}
		more:
			for len(batch) < 512 {
				select {
				case r := <-s.results:
					batch = append(batch, r)
				default:
					break more
				}
			}
			s.record(st, batch)
		}
		s.fill(ctx, st)
	}
}

func laneOf(d *storage.Delivery) string { return d.EndpointID + "\x00" + d.SessionID }

// fill starts attempts for due deliveries, respecting lanes and per-endpoint
// limits, and arms the timer for the next due one.
func (s *Service) fill(ctx context.Context, st *loopState) {
	now := s.now()
	var finished []*storage.Delivery // deliveries that end without an attempt
	type dueEntry struct {
		at int64
		id string
	}
	var stale []dueEntry
	waiting := make(map[string]*storage.Delivery, len(st.waiting))
	scanned := 0
	next, err := s.db.DueDeliveries(now.UnixNano(), func(id string, at int64) bool {
		if st.inflight[id] {
			return true
		}
		scanned++
		if scanned > fillScanMax {
			return false
		}
		d := st.waiting[id]
		if d == nil || d.NextAt != at {
			var err error
			if d, err = s.db.Delivery(id); err != nil {
				if !errors.Is(err, storage.ErrNotFound) {
					s.log.Error("read delivery", "deliveryId", id, "err", err)
				}
				return true
			}
		}
		if d.State != statePending || d.NextAt != at {
			stale = append(stale, dueEntry{at, id}) // left by a redelivery racing an attempt
			return true
		}
		ep, ok := s.eps.Webhook(d.EndpointID)
		switch {
		case !ok:
			d.LastError = "the endpoint was deleted"
			finished = append(finished, d)
			return true
		case !ep.Enabled:
			d.LastError = "the endpoint is disabled; re-enable it and redeliver"
			finished = append(finished, d)
			return true
		}
		lane := laneOf(d)
		if st.perEP[ep.ID] >= s.opts.MaxInFlight || st.lanes[lane] {
			waiting[id] = d
			return true
		}
		st.inflight[id] = true
		st.lanes[lane] = true
		st.perEP[ep.ID]++
		s.wg.Add(1)
		go s.attempt(ctx, d, ep)
		return true
	})
	if err != nil {
		s.log.Error("scan webhook outbox", "err", err)
	}
	st.waiting = waiting
	if len(finished) > 0 || len(stale) > 0 {
		b := s.db.NewBatch()
		for _, e := range stale {
			b.StageDeleteDue(e.at, e.id)
		}
		for _, d := range finished {
			prev := d.NextAt
			d.State = stateFailed
			d.UpdatedAt = now.Unix()
			if err := b.StageDelivery(d, prev); err != nil {
				s.log.Error("encode delivery", "err", err)
			}
		}
		if err := s.db.CommitNoSync(b); err != nil {
			s.log.Error("record undeliverable events", "err", err)
		}
	}
	wait := time.Hour
	if next > 0 {
		wait = time.Duration(next - now.UnixNano())
	}
	if scanned > fillScanMax {
		wait = 0
	}
	wait = max(wait, time.Millisecond)
	st.timer.Reset(wait)
}

// attempt POSTs one delivery and reports the outcome.
func (s *Service) attempt(ctx context.Context, d *storage.Delivery, ep storage.Webhook) {
	defer s.wg.Done()
	at := s.now()
	r := result{d: d, at: at}
	r.status, r.err = s.post(ctx, d, &ep, at)
	r.latency = s.now().Sub(at)
	r.canceled = ctx.Err() != nil
	s.results <- r
}

func (s *Service) post(ctx context.Context, d *storage.Delivery, ep *storage.Webhook, at time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Walytic-Webhooks/1")
	h.Set("X-Walytic-Event", d.EventType)
	for _, kv := range SignatureHeaders(liveSecrets(ep, at), d.EventID, at.Unix(), d.Body) {
		h.Set(kv.Name, kv.Value)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("the endpoint answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// record writes the outcomes of finished attempts in one batch.
func (s *Service) record(st *loopState, batch []result) {
	now := s.now()
	b := s.db.NewBatch()
	type disable struct {
		id    string
		since int64
	}
	var toDisable []disable
	for _, r := range batch {
		d := r.d
		delete(st.inflight, d.ID)
		delete(st.lanes, laneOf(d))
		st.perEP[d.EndpointID]--
		if r.canceled {
			continue // shutting down: the delivery stays pending as stored
		}
		prev := d.NextAt
		d.Attempts++
		d.Total++
		d.LastStatus = r.status
		d.UpdatedAt = now.Unix()
		a := &storage.Attempt{
			ID: storage.NewID("att_", r.at), DeliveryID: d.ID, EventID: d.EventID, EventType: d.EventType,
			EndpointID: d.EndpointID, Number: d.Total, At: r.at.UnixMilli(), StatusCode: r.status,
			LatencyMs: r.latency.Milliseconds(),
		}
		since, err := s.failingSince(st, d.EndpointID)
		if err != nil {
			s.log.Error("read endpoint failure time", "err", err)
		}
		if r.err == nil {
			d.State, d.LastError = stateDelivered, ""
			if since != 0 {
				b.StageEndpointFailing(d.EndpointID, 0)
				st.failing[d.EndpointID] = 0
			}
		} else {
			d.LastError = describe(r.err)
			a.Error = d.LastError
			if d.Attempts > len(s.opts.Schedule) {
				d.State = stateFailed
			} else {
				delay := Jitter(s.opts.Schedule[d.Attempts-1], s.rand)
				d.NextAt = now.Add(delay).UnixNano()
				a.NextRetryAt = (d.NextAt + int64(time.Second) - 1) / int64(time.Second)
			}
			if since == 0 {
				since = r.at.Unix()
				b.StageEndpointFailing(d.EndpointID, since)
				st.failing[d.EndpointID] = since
			} else if now.Sub(time.Unix(since, 0)) >= s.opts.DisableAfter {
				toDisable = append(toDisable, disable{d.EndpointID, since})
			}
		}
		a.State = d.State
		if err := b.StageDelivery(d, prev); err != nil {
			s.log.Error("encode delivery", "err", err)
		}
		if err := b.StageAttempt(a); err != nil {
			s.log.Error("encode attempt", "err", err)
		}
	}
	if err := s.db.CommitNoSync(b); err != nil {
		s.log.Error("record webhook attempts", "err", err)
	}
	for _, x := range toDisable {
		s.disable(x.id, x.since)
	}
}

func (s *Service) failingSince(st *loopState, endpointID string) (int64, error) {
	if v, ok := st.failing[endpointID]; ok {
		return v, nil
	}
	v, err := s.db.EndpointFailingSince(endpointID)
	if err == nil {
		st.failing[endpointID] = v
	}
	return v, err
}

// disable turns an endpoint off after it failed every attempt for too long.
func (s *Service) disable(id string, since int64) {
	ep, ok := s.eps.Webhook(id)
	if !ok || !ep.Enabled {
		return
	}
	ep.Enabled = false
	ep.DisabledReason = "every delivery attempt failed since " + time.Unix(since, 0).UTC().Format(time.RFC3339) +
		"; fix the receiver, then PATCH {\"enabled\":true} and redeliver what you need"
	ep.UpdatedAt = s.now().Unix()
	if err := s.eps.PutWebhook(ep); err != nil {
		s.log.Error("disable failing webhook", "endpointId", id, "err", err)
		return
	}
	s.log.Warn("webhook endpoint disabled after failing for too long", "endpointId", id, "failingSince", since)
}

// describe turns a delivery error into a short sentence for the log.
func describe(err error) string {
	var ue *URLError
	switch {
	case errors.As(err, &ue):
		return ue.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within the timeout"
	}
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return msg
}

func (s *Service) prune() {
	cut := s.now().Add(-s.opts.Retention)
	n, err := s.db.PruneWebhookLog(storage.IDBound("att_", cut), storage.IDBound("dlv_", cut))
	if err != nil {
		s.log.Error("prune webhook log", "err", err)
		return
	}
	if n > 0 {
		s.log.Info("pruned webhook log", "records", n, "retention", s.opts.Retention.String())
	}
}
