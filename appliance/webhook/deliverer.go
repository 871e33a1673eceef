package webhook

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
	// skipped: a job from the deck not attempted because its endpoint was
	// deleted or disabled meanwhile (d.LastError says which).
	skipped bool
	// tookNext: the worker went on with a job from its endpoint's deck, so
	// the endpoint's slot passed to that job instead of coming free.
	tookNext bool
}

// delivered reports whether the attempt succeeded (the delivery is done).
func (r *result) delivered() bool { return r.err == nil && !r.canceled && !r.skipped }

// The run loop keeps the outbox's pending deliveries in memory: the Pebble
// due index is read once at start (recovery); afterwards deliveries arrive
// through Stage's durability callbacks (storage.Batch.OnDurable: once the
// batch that staged them is on disk, so no event is sent that a crash could
// undo) and retries wait in a heap. No work is
// proportional to the backlog of an endpoint that is not answering.

// lane is one endpoint's deliveries for one session, attempted one at a time.
type lane struct {
	key    laneKey
	ep     *epState
	q      []*storage.Delivery
	busy   bool // an attempt is in flight
	queued bool // in ep.ready
}

// laneKey names a lane: an endpoint and a session. A struct rather than
// the two ids joined, which allocated for every attempt's release.
type laneKey struct{ endpoint, session string }

// epState is one endpoint's share of the loop.
type epState struct {
	id       string
	inflight int     // attempts in flight, at most MaxInFlight
	ready    []*lane // lanes with work and no attempt in flight, FIFO
	// deck holds the endpoint's next jobs while all its slots are busy: a
	// worker that finishes an attempt takes one and goes on at once,
	// instead of waiting for the run loop to hand it work (a wake-up of
	// the loop and one of the worker, most of the time between attempts).
	// decked counts the jobs put there that the loop has not yet learnt
	// were taken (result.tookNext); their lanes are busy, so a lane still
	// has one attempt at a time.
	deck   chan attemptJob
	decked int
	held   int // its due deliveries in memory: in lanes or in flight
	// behind: first attempts of this endpoint were left in their outbox
	// blocks because it held MaxQueuedPerEndpoint; its later ones wait
	// there too (order), from the block from on, until refill reads them.
	behind bool
	from   string
}

// leaveBehind notes a first attempt of ep left in the outbox block block.
func (st *loopState) leaveBehind(ep *epState, block string) {
	if !ep.behind {
		ep.behind = true
		st.behind++
	}
	if ep.from == "" || block < ep.from {
		ep.from = block
	}
}

// catchUp clears ep's behind mark before a refill reads its blocks again.
func (st *loopState) catchUp(ep *epState) {
	if ep.behind {
		ep.behind = false
		st.behind--
	}
	ep.from = ""
}

// blockCount is what the loop knows of an outbox block it holds deliveries
// of: how many of them are in memory without a recorded first attempt, and
// whether others were left in the block (some endpoint was behind).
type blockCount struct {
	owed    int
	partial bool
}

// retryHeap orders deliveries waiting for a retry by due time.
type retryHeap []*storage.Delivery

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].NextAt < h[j].NextAt }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*storage.Delivery)) }
func (h *retryHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}

// loopState is owned by the run goroutine alone.
type loopState struct {
	eps   map[string]*epState
	lanes map[laneKey]*lane
	known map[string]bool // delivery ids queued, waiting or in flight
	// again holds deliveries redelivered while an attempt of theirs was
	// already under way (in flight, or taken for one): once it is recorded
	// they start afresh and are attempted again at once.
	again map[string]bool
	// done remembers recently finished deliveries: the start-up scan can
	// see a delivery whose durability callback has not run yet, and the late
	// callback must not send it a second time.
	done    recentSet
	retries retryHeap
	failing map[string]int64 // endpoint → failing since (Unix s), cached
	// blocks counts, per outbox block with deliveries in memory, those
	// whose first attempt is not recorded yet; the batch that records the
	// last one deletes the block, unless others were left in it (partial):
	// then the refill that reads them back counts the block again. So the
	// map is bounded by the deliveries in memory, however long a backlog
	// waits on disk. doneBlocks remembers recently deleted blocks, for the
	// same reason as done.
	blocks     map[string]*blockCount
	doneBlocks recentSet
	behind     int // endpoints with epState.behind set
	deckSize   int // each endpoint's deck holds this many jobs (MaxInFlight)
	timer      *time.Timer
	// overflow is set when deliveries due now were left in storage because
	// MaxQueued were ready in memory; overflowAt is the earliest due time of
	// retries left in storage because MaxQueued were waiting in memory (0:
	// none). refill reads them back.
	overflow   bool
	overflowAt int64
}

func newLoopState(deckSize int) *loopState {
	return &loopState{eps: map[string]*epState{}, lanes: map[laneKey]*lane{}, known: map[string]bool{}, again: map[string]bool{}, done: newRecentSet(),
		failing: map[string]int64{}, blocks: map[string]*blockCount{}, doneBlocks: newRecentSet(), deckSize: deckSize,
		timer: time.NewTimer(time.Hour)}
}

// ready is how many deliveries in memory are due: in lanes or in flight.
func (st *loopState) ready() int { return len(st.known) - len(st.retries) }

// endpoint returns the loop's state for an endpoint, made on demand.
func (st *loopState) endpoint(id string) *epState {
	ep := st.eps[id]
	if ep == nil {
		ep = &epState{id: id, deck: make(chan attemptJob, st.deckSize)}
		st.eps[id] = ep
	}
	return ep
}

// placement is what enqueue did with a delivery.
type placement int

const (
	ignored       placement = iota // already in memory, or finished
	inMemory                       // in its lane, or in the retry heap
	leftInStorage                  // left where it is stored, for refill
)

// inboxItem is a committed delivery on its way to the run loop.
type inboxItem struct {
	d         *storage.Delivery
	redeliver bool // asked for again: it may have finished before
	blockSize int  // for a delivery in an outbox block: how many the block holds
}

// accept hands a committed delivery to the run loop.
func (s *Service) accept(d *storage.Delivery, redeliver bool) {
	s.inboxMu.Lock()
	s.inbox = append(s.inbox, inboxItem{d: d, redeliver: redeliver})
	s.inboxMu.Unlock()
	s.kick()
}

// acceptBlock hands the deliveries of a committed outbox block to the run
// loop, all at once, so the loop counts the whole block before any of them
// can finish.
func (s *Service) acceptBlock(ds []*storage.Delivery) {
	s.inboxMu.Lock()
	for _, d := range ds {
		s.inbox = append(s.inbox, inboxItem{d: d, blockSize: len(ds)})
	}
	s.inboxMu.Unlock()
	s.kick()
}

func (s *Service) run(ctx context.Context) {
	defer s.wg.Done()
	st := newLoopState(s.opts.MaxInFlight)
	var pass prunePass
	prune := time.NewTimer(pruneFirst)
	defer prune.Stop()
	inflight := 0
	st.overflow = true // what an earlier run left pending is read by refill
	inflight += s.fill(ctx, st)
	// Finished attempts are recorded together, at most recordDelay after
	// the first of them: one commit for many outcomes instead of one each
	// (a commit per outcome was a third of the outbox benchmark's run-loop
	// CPU). Workers do not wait for it: they go on with jobs from the deck.
	var unrecorded []result
	recordTimer := time.NewTimer(time.Hour)
	recordTimer.Stop()
	defer recordTimer.Stop()
	flushRecords := func() {
		if len(unrecorded) > 0 {
			s.record(st, unrecorded)
			clear(unrecorded)
			unrecorded = unrecorded[:0]
		}
	}
	for {
		select {
		case <-ctx.Done():
			flushRecords()
			// Attempts in flight notice the cancellation; their deliveries
			// stay pending in storage, and so do the jobs left on decks.
			for inflight > 0 {
				if r := <-s.results; !r.tookNext {
					inflight--
				}
			}
			return
		case <-s.wake:
		case <-st.timer.C:
		case <-prune.C:
			prune.Reset(s.pruneStep(&pass))
		case <-recordTimer.C:
			flushRecords()
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
			for _, r := range batch {
				if !r.tookNext {
					inflight--
				}
			}
			// Free the slots and start the next attempts before writing the
			// outcomes: with at most MaxInFlight per endpoint, time spent
			// between attempts is throughput lost.
			s.release(st, batch)
			inflight += s.fill(ctx, st)
			if len(unrecorded) == 0 {
				recordTimer.Reset(s.recordDelay)
			}
			unrecorded = append(unrecorded, batch...)
			if len(unrecorded) >= recordBatch {
				recordTimer.Stop()
				flushRecords()
			}
		}
		inflight += s.fill(ctx, st)
	}
}

// defaultRecordDelay and recordBatch bound how long and how many finished
// attempts wait to be recorded together.
const (
	defaultRecordDelay = time.Millisecond
	recordBatch        = 256
)

// enqueue places a pending delivery: due now into its lane, later into the
// retry heap. Ids already known are ignored (a redelivery of a delivery that
// is queued or in flight is already on its way), and so are recently
// finished ones unless asked for again. A first attempt is left in its
// outbox block while memory is full (MaxQueued) or its endpoint holds its
// share (MaxQueuedPerEndpoint), and then so are the later ones, so refill
// hands each lane its deliveries in order.
func (s *Service) enqueue(st *loopState, d *storage.Delivery, redeliver bool) placement {
	if d.Block != "" && !redeliver {
		// A first attempt while earlier ones wait in their blocks: it waits
		// in its own (whether or not a copy is in memory or finished), and
		// a backlog costs no look-ups per event beyond its endpoint's.
		if st.overflow {
			return leftInStorage
		}
		if ep := st.eps[d.EndpointID]; ep != nil && ep.behind {
			st.leaveBehind(ep, d.Block)
			return leftInStorage
		}
	}
	if st.done.has(d.ID) {
		if !redeliver {
			return ignored
		}
		st.done.remove(d.ID)
	}
	if st.known[d.ID] {
		if !redeliver {
			// A second copy of one in memory: a late durability callback for
			// a delivery a refill read first. The copy in memory is newer.
			return ignored
		}
		for _, w := range st.retries { // a redelivery of one waiting to retry: now
			if w.ID == d.ID {
				*w = *d
				heap.Init(&st.retries)
				return ignored
			}
		}
		if l := st.lanes[laneKey{d.EndpointID, d.SessionID}]; l != nil {
			for _, q := range l.q { // due, not yet taken: its attempt is the one asked for
				if q.ID == d.ID {
					q.Attempts = 0
					return ignored
				}
			}
		}
		st.again[d.ID] = true // under way: once more after it
		return ignored
	}
	if d.NextAt > s.now().UnixNano() {
		if s.wait(st, d) {
			return inMemory
		}
		return leftInStorage
	}
	if !redeliver {
		if st.overflow || st.ready() >= s.opts.MaxQueued {
			st.overflow = true // it waits in storage; refill reads it back
			return leftInStorage
		}
		if ep := st.endpoint(d.EndpointID); d.Block != "" && ep.held >= s.opts.MaxQueuedPerEndpoint {
			st.leaveBehind(ep, d.Block)
			return leftInStorage
		}
	}
	st.known[d.ID] = true
	s.toLane(st, d)
	return inMemory
}

// wait puts a delivery due later into the retry heap, or, with MaxQueued
// waiting there already, leaves it in storage until it is due (false).
func (s *Service) wait(st *loopState, d *storage.Delivery) bool {
	if len(st.retries) >= s.opts.MaxQueued {
		delete(st.known, d.ID)
		if st.overflowAt == 0 || d.NextAt < st.overflowAt {
			st.overflowAt = d.NextAt
		}
		return false
	}
	st.known[d.ID] = true
	heap.Push(&st.retries, d)
	return true
}

func (s *Service) toLane(st *loopState, d *storage.Delivery) {
	key := laneKey{d.EndpointID, d.SessionID}
	l := st.lanes[key]
	if l == nil {
		l = &lane{key: key, ep: st.endpoint(d.EndpointID)}
		st.lanes[key] = l
	}
	l.ep.held++
	l.q = append(l.q, d)
	s.markReady(l)
}

func (s *Service) markReady(l *lane) {
	if !l.busy && !l.queued && len(l.q) > 0 {
		l.queued = true
		l.ep.ready = append(l.ep.ready, l)
	}
}

// fill moves due retries into their lanes and starts attempts wherever a
// lane and its endpoint have room. It returns how many it started.
func (s *Service) fill(ctx context.Context, st *loopState) int {
	s.inboxMu.Lock()
	inbox := s.inbox
	s.inbox = nil
	s.inboxMu.Unlock()
	var counts blockTally
	for _, it := range inbox {
		block := it.d.Block
		p := s.enqueue(st, it.d, it.redeliver)
		if it.blockSize > 0 {
			// A block's deliveries are counted as they come into memory;
			// those left in it are counted when refill reads them back.
			counts.add(block, p)
		}
	}
	counts.apply(st, false)
	now := s.now()
	if (st.overflow && st.ready() <= s.opts.MaxQueued/2) || (st.overflowAt != 0 && st.overflowAt <= now.UnixNano()) {
		s.refill(st, now)
	}
	if st.behind > 0 && !st.overflow {
		var catchUp []*epState
		for _, ep := range st.eps {
			if ep.behind && ep.held <= s.opts.MaxQueuedPerEndpoint/2 {
				catchUp = append(catchUp, ep)
			}
		}
		if len(catchUp) > 0 {
			s.refillEndpoints(st, catchUp)
		}
	}
	for len(st.retries) > 0 && st.retries[0].NextAt <= now.UnixNano() {
		s.toLane(st, heap.Pop(&st.retries).(*storage.Delivery))
	}
	started := 0
	var finished []*storage.Delivery // deliveries that end without an attempt
	for _, ep := range st.eps {
		deckTaken := false // the deck is empty: its jobs' reports are on their way
		for ep.inflight < s.opts.MaxInFlight {
			if ep.decked > 0 && !deckTaken {
				// A free slot with jobs on the deck (workers finished
				// without taking them): they go first, they were next.
				select {
				case j := <-ep.deck:
					ep.decked--
					ep.inflight++
					started++
					s.startAttempt(ctx, j)
					continue
				default:
					deckTaken = true
				}
			}
			j, ok := s.takeReady(ep, &finished)
			if !ok {
				break
			}
			ep.inflight++
			started++
			s.startAttempt(ctx, j)
		}
		for ep.inflight >= s.opts.MaxInFlight && ep.decked < st.deckSize {
			// Every slot is busy: the next jobs wait on the deck, where the
			// channel has room, since decked never counts fewer than it holds.
			j, ok := s.takeReady(ep, &finished)
			if !ok {
				break
			}
			j.fromDeck = true
			ep.decked++
			ep.deck <- j
		}
		if ep.inflight == 0 && ep.decked == 0 && len(ep.ready) == 0 && !ep.behind {
			delete(st.eps, ep.id) // lanes keep their pointer; a new epState is made on demand
			if _, ok := s.eps.Webhook(ep.id); !ok {
				delete(st.failing, ep.id) // deleted: nothing will ask again
			}
			for k, l := range st.lanes {
				if l.ep == ep && len(l.q) == 0 && !l.busy {
					delete(st.lanes, k)
				}
			}
		}
	}
	if len(finished) > 0 {
		s.finishUnattempted(st, finished, now)
	}
	wait := time.Hour
	if len(st.retries) > 0 {
		wait = max(time.Duration(st.retries[0].NextAt-now.UnixNano()), time.Millisecond)
	}
	if st.overflowAt != 0 {
		wait = min(wait, max(time.Duration(st.overflowAt-now.UnixNano()), time.Millisecond))
	}
	if (st.overflow && st.ready() == 0) || st.behind > 0 {
		wait = min(wait, time.Second) // a refill may have failed: try again soon
	}
	st.timer.Reset(wait)
	s.queued.Store(int64(len(st.known)))
	s.blocksCounted.Store(int64(len(st.blocks)))
	return started
}

// takeReady takes the first delivery of ep's next ready lane, marks the lane
// busy and returns its job, with the endpoint's configuration as it is now.
// Deliveries whose endpoint is gone or disabled go to finished instead.
func (s *Service) takeReady(ep *epState, finished *[]*storage.Delivery) (attemptJob, bool) {
	for len(ep.ready) > 0 {
		l := ep.ready[0]
		ep.ready[0] = nil
		ep.ready = ep.ready[1:]
		l.queued = false
		d := l.q[0]
		l.q[0] = nil
		l.q = l.q[1:]
		cfg, ok := s.eps.Webhook(ep.id)
		if why := unattemptable(&cfg, ok, d); why != "" {
			d.LastError = why
			ep.held--
			*finished = append(*finished, d)
			s.markReady(l)
			continue
		}
		l.busy = true
		return attemptJob{d: d, ep: cfg, deck: ep.deck}, true
	}
	return attemptJob{}, false
}

// unattemptable is why d ends without an attempt, "" if it may be made:
// its endpoint cfg is gone (found false), disabled, or no longer subscribes
// to d's event (a PATCH of its events applies to the backlog too).
func unattemptable(cfg *storage.Webhook, found bool, d *storage.Delivery) string {
	switch {
	case !found:
		return "the endpoint was deleted"
	case !cfg.Enabled:
		return "the endpoint is disabled; re-enable it and redeliver"
	case !subscribed(cfg, d.EventType):
		return "the endpoint no longer subscribes to " + d.EventType + "; add it to its events and redeliver"
	}
	return ""
}

// refill reads pending deliveries that are due but not in memory back from
// the outbox, until MaxQueued are ready in memory: retries from the due
// index, earliest due first (noting when the first one due later that is not
// in memory comes due), then, when some were left there (overflow), first
// attempts from the outbox blocks, oldest first.
func (s *Service) refill(st *loopState, now time.Time) {
	prevAt := st.overflowAt
	blocks := st.overflow
	st.overflow, st.overflowAt = false, 0
	defer func() {
		// A scan that stopped early (memory full) did not reach a retry left
		// in storage for later: keep its time. One already due is read by
		// the refill that overflow brings once room frees.
		if st.overflow && st.overflowAt == 0 && prevAt > now.UnixNano() {
			st.overflowAt = prevAt
		}
	}()
	reader, closeReader := s.lazyReader()
	defer closeReader()
	err := s.db.PendingDeliveryIDs(func(id string, nextAt int64) bool {
		if st.known[id] || st.done.has(id) {
			return true
		}
		if nextAt > now.UnixNano() {
			st.overflowAt = nextAt
			return false
		}
		if st.ready() >= s.opts.MaxQueued {
			st.overflow = true
			return false
		}
		rd, err := reader()
		if err != nil {
			s.log.Error("read webhook outbox", "err", err)
			st.overflow = true
			return false
		}
		d, err := rd.Delivery(id)
		if errors.Is(err, storage.ErrNotFound) {
			return true
		}
		if err != nil {
			s.log.Error("read webhook delivery", "deliveryId", id, "err", err)
			st.overflow = true
			return false
		}
		if d.State == statePending && d.NextAt == nextAt {
			s.enqueue(st, d, false)
		}
		return true
	})
	if err != nil {
		s.log.Error("read webhook outbox", "err", err)
		st.overflow = true
	}
	if blocks && !st.overflow {
		// Every block is read from the first: endpoints behind catch up too.
		for _, ep := range st.eps {
			st.catchUp(ep)
		}
		if err := s.refillBlocks(st, reader, "", nil); err != nil {
			s.log.Error("read webhook outbox blocks", "err", err)
			st.overflow = true
		}
	}
}

// lazyReader returns a function that opens one storage.DeliveryReader at
// its first call and returns it from then on, and a function that closes
// it if it was opened.
func (s *Service) lazyReader() (reader func() (*storage.DeliveryReader, error), closeReader func()) {
	var rd *storage.DeliveryReader
	reader = func() (*storage.DeliveryReader, error) {
		var err error
		if rd == nil {
			rd, err = s.db.NewDeliveryReader()
		}
		return rd, err
	}
	closeReader = func() {
		if rd != nil {
			_ = rd.Close()
		}
	}
	return reader, closeReader
}

// refillEndpoints reads back the first attempts that endpoints behind left
// in their outbox blocks, from the oldest such block, until each holds its
// share again or has nothing left there.
func (s *Service) refillEndpoints(st *loopState, eps []*epState) {
	from := ""
	targets := make(map[string]bool, len(eps))
	for _, ep := range eps {
		if from == "" || ep.from < from {
			from = ep.from
		}
		targets[ep.id] = true
	}
	reader, closeReader := s.lazyReader()
	defer closeReader()
	for _, ep := range eps {
		st.catchUp(ep)
	}
	if err := s.refillBlocks(st, reader, from, targets); err != nil {
		s.log.Error("read webhook outbox blocks", "err", err)
		for _, ep := range eps { // try again at the next refill
			st.leaveBehind(ep, from)
		}
	}
}

// blockTally adds up, per outbox block, what enqueue did with the block's
// deliveries, so the block is counted once for the whole of them. A block's
// deliveries come one after another (acceptBlock, refillBlocks), so a new
// entry starts only when the block changes.
type blockTally []blockTallyEntry

type blockTallyEntry struct {
	id      string
	entered int
	left    bool
}

func (t *blockTally) add(block string, p placement) {
	if n := len(*t); n == 0 || (*t)[n-1].id != block {
		*t = append(*t, blockTallyEntry{id: block})
	}
	e := &(*t)[len(*t)-1]
	switch p {
	case inMemory:
		e.entered++
	case leftInStorage:
		e.left = true
	}
}

// apply counts the tallied blocks. whole: the tally saw every delivery of
// each block still owed, so it says whether some are left in the block.
func (t blockTally) apply(st *loopState, whole bool) {
	for _, e := range t {
		c := st.blocks[e.id]
		if c == nil {
			if e.entered == 0 || st.doneBlocks.has(e.id) {
				continue
			}
			c = &blockCount{}
			st.blocks[e.id] = c
		}
		c.owed += e.entered
		if whole {
			c.partial = e.left
		} else if e.left {
			c.partial = true
		}
	}
}

// refillBlocks reads outbox blocks, oldest first from the block from on,
// and enqueues their deliveries that have had no attempt and are not in
// memory: all of them (targets nil), or those of the target endpoints,
// until memory is full (st.overflow) or every target is behind again. A
// block with nothing left to attempt is deleted.
func (s *Service) refillBlocks(st *loopState, reader func() (*storage.DeliveryReader, error), from string, targets map[string]bool) error {
	var inner error
	var empty []string // blocks found with nothing left to attempt
	err := s.db.OutboxBlocks(from, func(id string, ds []*storage.Delivery) bool {
		c := st.blocks[id]
		if c == nil && st.doneBlocks.has(id) {
			return true // deleted by a commit this iterator began before
		}
		var tally blockTally
		owed := false
		for _, d := range ds {
			if st.done.has(d.ID) {
				continue
			}
			if st.known[d.ID] {
				if c == nil { // in memory but not counted: keep the block
					tally.add(id, leftInStorage)
				}
				owed = true
				continue
			}
			rd, err := reader()
			if err != nil {
				inner = err
				return false
			}
			recorded, err := rd.Recorded(d.ID)
			if err != nil {
				inner = err
				return false
			}
			if recorded {
				continue
			}
			owed = true
			if targets != nil && !targets[d.EndpointID] {
				tally.add(id, leftInStorage) // its endpoint is behind, or memory was full
				continue
			}
			tally.add(id, s.enqueue(st, d, false))
		}
		if !owed && c == nil {
			empty = append(empty, id)
			return true
		}
		tally.apply(st, true)
		if st.overflow {
			return false
		}
		if targets != nil {
			for ep := range targets {
				if e := st.eps[ep]; e == nil || !e.behind {
					return true
				}
			}
			return false // every target holds its share again
		}
		return true
	})
	if err == nil {
		err = inner
	}
	// A block read here may be an unsynced batch's whose durability
	// callback has not run yet: it is on disk before any of its deliveries
	// is attempted (the run loop starts them after the refill).
	if serr := s.db.SyncWAL(); serr != nil && err == nil {
		err = serr
	}
	if len(empty) > 0 {
		b := s.db.NewBatch()
		for _, id := range empty {
			b.StageBlockDone(id)
			st.blockDone(id)
		}
		if cerr := s.db.CommitNoSync(b); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// firstRecorded stages, into b, what follows from d's first recorded
// attempt (or its end without one): the last of its block in memory deletes
// the block, unless others were left in it.
func (st *loopState) firstRecorded(b *storage.Batch, d *storage.Delivery) {
	id := d.Block
	d.Block = ""
	c := st.blocks[id]
	if c == nil {
		return // not counted: a refill reads the block and deletes it when it is done
	}
	if c.owed--; c.owed > 0 {
		return
	}
	delete(st.blocks, id)
	if !c.partial {
		b.StageBlockDone(id)
		st.doneBlocks.add(id)
	}
}

func (st *loopState) blockDone(id string) {
	delete(st.blocks, id)
	st.doneBlocks.add(id)
}

// dueIndexed is the due time a delivery is indexed under in storage, for
// StageDelivery: 0 while it is in its outbox block.
func dueIndexed(d *storage.Delivery) int64 {
	if d.Block != "" {
		return 0
	}
	return d.NextAt
}

// finishUnattempted fails deliveries whose endpoint is gone or disabled and
// logs why, so the deliveries log shows the end of each.
func (s *Service) finishUnattempted(st *loopState, ds []*storage.Delivery, now time.Time) {
	b := s.db.NewBatch()
	for _, d := range ds {
		s.finished(st, d.ID)
		delete(st.again, d.ID)
		prev := dueIndexed(d)
		d.State = stateFailed
		d.UpdatedAt = now.Unix()
		// A row of the log that is no attempt: Number 0 (attempts count
		// from 1), shown as "attempt": null.
		a := &storage.Attempt{ID: storage.NewID("att_", now), DeliveryID: d.ID, EventID: d.EventID, EventType: d.EventType,
			EndpointID: d.EndpointID, Number: 0, At: now.UnixMilli(), Error: d.LastError + " (not attempted)", State: stateFailed}
		if err := b.StageDelivery(d, prev); err != nil {
			s.log.Error("encode delivery", "err", err)
		}
		if d.Block != "" {
			st.firstRecorded(b, d)
		}
		if err := b.StageAttempt(a); err != nil {
			s.log.Error("encode attempt", "err", err)
		}
	}
	if err := s.db.CommitNoSync(b); err != nil {
		s.log.Error("record undeliverable events", "err", err)
	}
}

// attemptJob is one attempt for a worker: the delivery and the endpoint's
// configuration as it was when the attempt was started. A job taken from the
// deck (fromDeck) reads the configuration again, since it may have waited
// there for as long as an attempt takes.
type attemptJob struct {
	d        *storage.Delivery
	ep       storage.Webhook
	deck     chan attemptJob // the endpoint's deck, where the worker looks for its next job
	fromDeck bool
}

// workerIdle is how long an attempt worker waits for more work before it
// exits. Workers outlive their attempt because a new goroutine must grow its
// stack to what an HTTP round trip needs (stack growth was about 4 % of the
// outbox benchmark's CPU with a goroutine per attempt).
const workerIdle = 30 * time.Second

// startAttempt hands j to an idle worker, or starts a new worker for it.
func (s *Service) startAttempt(ctx context.Context, j attemptJob) {
	select {
	case s.jobs <- j:
	default:
		s.wg.Add(1)
		go s.worker(ctx, j)
	}
}

func (s *Service) worker(ctx context.Context, j attemptJob) {
	defer s.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		for j.d != nil {
			r := s.attempt(ctx, &j)
			next := s.takeNext(ctx, j.deck)
			r.tookNext = next.d != nil
			s.results <- r
			j = next
		}
		idle.Reset(workerIdle)
		select {
		case j = <-s.jobs:
		case <-idle.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// takeNext takes the next job from an endpoint's deck, if one waits there
// and the service is not stopping.
func (s *Service) takeNext(ctx context.Context, deck chan attemptJob) attemptJob {
	if deck == nil || ctx.Err() != nil {
		return attemptJob{}
	}
	select {
	case j := <-deck:
		return j
	default:
		return attemptJob{}
	}
}

// attempt POSTs one delivery and returns the outcome.
func (s *Service) attempt(ctx context.Context, j *attemptJob) result {
	d := j.d
	at := s.now()
	r := result{d: d, at: at}
	if j.fromDeck {
		cfg, ok := s.eps.Webhook(d.EndpointID)
		if why := unattemptable(&cfg, ok, d); why != "" {
			d.LastError = why
			r.skipped = true
			return r
		}
		j.ep = cfg
	}
	if d.Body == nil { // rendered once per delivery in memory, by the worker that sends it first
		body, err := Body(&d.Event)
		if err != nil {
			r.err = fmt.Errorf("render the event: %w", err)
			return r
		}
		d.Body = body
	}
	r.status, r.err = s.post(ctx, d, &j.ep, at)
	r.latency = s.now().Sub(at)
	r.canceled = ctx.Err() != nil
	return r
}

// Header values every delivery carries, shared read-only by all requests.
var (
	contentTypeJSON = []string{"application/json"}
	userAgent       = []string{"Walytic-Webhooks/1"}
)

// The canonical forms (http.CanonicalHeaderKey) of the header names each
// attempt sets, so post need not canonicalize them every time.
const (
	canonEvent            = "X-Walytic-Event"
	canonDelivery         = "X-Walytic-Delivery"
	canonTimestamp        = "X-Walytic-Timestamp"
	canonSignature        = "X-Walytic-Signature"
	canonWebhookID        = "Webhook-Id"
	canonWebhookTimestamp = "Webhook-Timestamp"
	canonWebhookSignature = "Webhook-Signature"
)

// post sends one attempt.
func (s *Service) post(ctx context.Context, d *storage.Delivery, ep *storage.Webhook, at time.Time) (int, error) {
	// Canonical names assigned directly: Header.Set would canonicalize
	// each name again on every attempt. The values of this attempt share
	// one backing array.
	tss := strconv.FormatInt(at.Unix(), 10)
	walytic, v1 := signatures(liveSecrets(ep, at), d.EventID, tss, d.Body)
	vals := make([]string, 0, 7)
	h := make(http.Header, 9)
	set := func(name, v string) {
		vals = append(vals, v)
		h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	h["Content-Type"] = contentTypeJSON
	h["User-Agent"] = userAgent
	set(canonEvent, d.EventType)
	set(canonDelivery, d.EventID)
	set(canonTimestamp, tss)
	set(canonWebhookID, d.EventID)
	set(canonWebhookTimestamp, tss)
	if walytic != "" {
		set(canonSignature, walytic)
	}
	if v1 != "" {
		set(canonWebhookSignature, v1)
	}
	status, err := Post(ctx, s.rt, s.opts.Timeout, ep.URL, h, d.Body)
	if err == nil && (status < 200 || status > 299) {
		err = fmt.Errorf("the endpoint answered %d", status)
	}
	return status, err
}

// release frees the lanes and endpoint slots of finished attempts. A
// delivered one is finished at once, before it is recorded: the memory it
// held is free, and a late copy of it is still refused (done).
func (s *Service) release(st *loopState, batch []result) {
	for _, r := range batch {
		d := r.d
		if r.delivered() {
			s.finished(st, d.ID)
		}
		if l := st.lanes[laneKey{d.EndpointID, d.SessionID}]; l != nil {
			l.busy = false
			if r.tookNext {
				l.ep.decked-- // the slot went on to that job
			} else {
				l.ep.inflight--
			}
			l.ep.held--
			if st.eps[l.ep.id] == nil {
				st.eps[l.ep.id] = l.ep
			}
			s.markReady(l)
			if !l.queued && len(l.q) == 0 {
				// Nothing left in the lane: its next delivery makes it again.
				// Kept, an endpoint that never idles would hold a lane for
				// every session it ever carried.
				delete(st.lanes, l.key)
			}
		}
	}
}

// record writes the outcomes of finished attempts in one batch and puts
// retries back in the heap.
func (s *Service) record(st *loopState, batch []result) {
	now := s.now()
	b := s.db.NewBatch()
	type disable struct {
		id    string
		since int64
	}
	var toDisable []disable
	var skipped []*storage.Delivery
	for _, r := range batch {
		d := r.d
		if r.canceled {
			continue // shutting down: the delivery stays pending as stored
		}
		if r.skipped {
			skipped = append(skipped, d)
			continue
		}
		prev := dueIndexed(d)
		d.Attempts++
		d.Total++
		d.LastStatus = r.status
		d.UpdatedAt = now.Unix()
		a := &storage.Attempt{
			ID: storage.NewID("att_", r.at), DeliveryID: d.ID, EventID: d.EventID, EventType: d.EventType,
			EndpointID: d.EndpointID, Number: d.Total, At: r.at.UnixMilli(), StatusCode: r.status,
			LatencyMs: r.latency.Milliseconds(),
		}
		// since: when the endpoint began failing every attempt (0: it has
		// not), or -1 for an endpoint deleted while this attempt was in
		// flight, whose failure time went with it and is not written back.
		since := int64(-1)
		ep, ok := s.eps.Webhook(d.EndpointID)
		if ok {
			var err error
			if since, err = s.failingSince(st, d.EndpointID); err != nil {
				s.log.Error("read endpoint failure time", "err", err)
			}
		} else {
			delete(st.failing, d.EndpointID)
		}
		if r.err == nil {
			d.State, d.LastError = stateDelivered, ""
			if since > 0 {
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
			} else if since > 0 {
				// Failures from before the endpoint was last enabled again
				// (or re-pointed) do not count.
				from := time.Unix(since, 0)
				if ep.FailingCountsFrom > 0 {
					from = later(from, time.UnixMilli(ep.FailingCountsFrom))
				}
				if now.Sub(from) >= s.opts.DisableAfter {
					toDisable = append(toDisable, disable{d.EndpointID, from.Unix()})
				}
			}
		}
		a.State = d.State
		if len(st.again) > 0 && st.again[d.ID] { // rare: no hashing per attempt otherwise
			// Redelivered while this attempt was under way: a fresh
			// schedule, starting with an attempt now.
			delete(st.again, d.ID)
			if since >= 0 {
				d.State, d.Attempts, d.NextAt = statePending, 0, now.UnixNano()
				if r.delivered() {
					st.done.remove(d.ID) // finished by release; pending again
				}
			}
		}
		if err := b.StageDelivery(d, prev); err != nil {
			s.log.Error("encode delivery", "err", err)
		}
		if d.Block != "" {
			st.firstRecorded(b, d)
		}
		if err := b.StageAttempt(a); err != nil {
			s.log.Error("encode attempt", "err", err)
		}
		switch {
		case d.State == statePending:
			s.wait(st, d)
		case !r.delivered(): // delivered ones were finished by release
			s.finished(st, d.ID)
		}
	}
	if err := s.db.CommitNoSync(b); err != nil {
		s.log.Error("record webhook attempts", "err", err)
	}
	if len(skipped) > 0 {
		s.finishUnattempted(st, skipped, now)
	}
	for _, x := range toDisable {
		s.disable(x.id, x.since)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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
	if ep, ok := s.eps.Webhook(id); !ok || !ep.Enabled {
		return
	}
	errAlready := errors.New("already disabled")
	_, err := s.eps.UpdateWebhook(id, func(ep *storage.Webhook) error {
		if !ep.Enabled {
			return errAlready
		}
		ep.Enabled = false
		ep.DisabledReason = "every delivery attempt failed since " + time.Unix(since, 0).UTC().Format(time.RFC3339) +
			"; fix the receiver, then PATCH {\"enabled\":true} and redeliver what you need"
		ep.UpdatedAt = s.now().Unix()
		return nil
	})
	switch {
	case errors.Is(err, errAlready) || errors.Is(err, storage.ErrNotFound):
		return // disabled or deleted meanwhile
	case err != nil:
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

// The deliveries log is pruned a minute after start and then hourly, in
// steps of at most pruneChunk finished deliveries with pruneGap between
// them, so that the run loop, which makes the steps, goes on delivering
// while a large log is pruned.
const (
	pruneFirst = time.Minute
	pruneEvery = time.Hour
	pruneGap   = 10 * time.Millisecond
)

// pruneChunk is a variable for tests.
var pruneChunk = 5000

// prunePass is the progress of one pass over the deliveries log.
type prunePass struct {
	active bool
	cut    time.Time
	from   string // the delivery id the next step starts at
	n      int    // deliveries deleted so far
}

// pruneStep makes one step of the current pass, starting one if none is
// under way, and returns when the next step is due.
func (s *Service) pruneStep(p *prunePass) time.Duration {
	if !p.active {
		*p = prunePass{active: true, cut: s.now().Add(-s.opts.Retention)}
		// Attempts go at once: one range deletion per endpoint.
		if _, err := s.db.PruneWebhookAttempts(storage.IDBound("att_", p.cut)); err != nil {
			s.log.Error("prune webhook attempts", "err", err)
		}
	}
	s.pruneMu.Lock()
	n, next, err := s.db.PruneWebhookDeliveries(p.from, storage.IDBound("dlv_", p.cut), pruneChunk)
	s.pruneMu.Unlock()
	if err != nil {
		p.active = false
		s.log.Error("prune webhook deliveries", "err", err)
		return pruneEvery
	}
	p.n += n
	if next != "" {
		p.from = next
		return pruneGap
	}
	p.active = false
	if p.n > 0 {
		s.log.Info("pruned webhook log", "deliveries", p.n, "before", p.cut.UTC().Format(time.RFC3339), "retention", s.opts.Retention.String())
	}
	return pruneEvery
}

func (s *Service) finished(st *loopState, id string) {
	delete(st.known, id)
	st.done.add(id)
}

// recentMax bounds how many ids a recentSet remembers.
const recentMax = 100_000

// recentSet remembers the last recentMax ids added to it.
type recentSet struct {
	ids   map[string]bool
	order []string // oldest first; removed ids stay here until they age out
}

func newRecentSet() recentSet { return recentSet{ids: map[string]bool{}} }

func (r *recentSet) has(id string) bool { return r.ids[id] }
func (r *recentSet) remove(id string)   { delete(r.ids, id) }

func (r *recentSet) add(id string) {
	r.ids[id] = true
	r.order = append(r.order, id)
	if len(r.order) > recentMax {
		delete(r.ids, r.order[0])
		r.order[0] = ""
		r.order = r.order[1:]
	}
}
