package storage

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// SyncBound is the longest a CommitNoSync batch stays off the disk. Pebble
// keeps an unsynced commit in its WAL buffer until a later synced commit or
// a full 32 KiB block pushes it to the file, which on a quiet server can be
// never: a kill -9 would then lose statuses from minutes before. The sync
// loop fsyncs within SyncBound of an unsynced commit instead.
const SyncBound = 100 * time.Millisecond

// durability tracks which unsynced commits are on disk, and runs the
// callbacks that wait for that (Batch.OnDurable) in commit order.
//
// Unsynced commits are numbered as they return (noSync). A synced commit,
// or the loop's own WAL sync, makes every unsynced commit that returned
// before it started durable, since Pebble's WAL is written in commit order:
// synced rises to the number read before it.
type durability struct {
	noSync atomic.Uint64 // number of the last CommitNoSync that returned
	synced atomic.Uint64 // every CommitNoSync up to this number is on disk
	dirty  atomic.Bool   // an unsynced commit since the loop last looked

	mu      sync.Mutex
	waiting []durableCallback // in the order registered
	running bool              // the loop is running callbacks it took from waiting

	kick chan struct{} // callbacks are waiting: sync now
	lazy chan struct{} // an unsynced commit: sync within SyncBound
	stop chan struct{}
	done chan struct{}
	sync func() error // fsyncs the WAL, with whatever it holds
}

type durableCallback struct {
	seq uint64
	fn  func()
}

func newDurability(pdb *pebble.DB) *durability {
	return &durability{
		kick: make(chan struct{}, 1),
		lazy: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		sync: func() error { return pdb.LogData(nil, pebble.Sync) },
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// raise notes that every unsynced commit up to seq is on disk.
func (d *durability) raise(seq uint64) {
	for {
		cur := d.synced.Load()
		if seq <= cur || d.synced.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// committedNoSync numbers an unsynced commit that just returned and queues
// its callbacks.
func (d *durability) committedNoSync(fns []func()) {
	seq := d.noSync.Add(1)
	if !d.dirty.Load() && d.dirty.CompareAndSwap(false, true) { // the load keeps the line shared while dirty
		signal(d.lazy)
	}
	if len(fns) > 0 {
		d.enqueue(seq, fns)
		signal(d.kick)
	}
}

// committedSync runs the callbacks of a synced commit, which is durable
// already: at once when nothing registered earlier still waits, else after
// those (so that, for one goroutine's commits, callbacks keep their order).
// before is the unsynced count read before the commit started.
func (d *durability) committedSync(before uint64, fns []func()) {
	d.raise(before)
	if len(fns) == 0 {
		return
	}
	d.mu.Lock()
	if len(d.waiting) == 0 && !d.running {
		d.mu.Unlock()
		for _, f := range fns {
			f()
		}
		return
	}
	d.enqueueLocked(before, fns)
	d.mu.Unlock()
	signal(d.kick)
}

func (d *durability) enqueue(seq uint64, fns []func()) {
	d.mu.Lock()
	d.enqueueLocked(seq, fns)
	d.mu.Unlock()
}

func (d *durability) enqueueLocked(seq uint64, fns []func()) {
	for _, f := range fns {
		d.waiting = append(d.waiting, durableCallback{seq: seq, fn: f})
	}
}

// loop syncs the WAL when callbacks wait (at once) or unsynced commits were
// made (within SyncBound), and runs the callbacks that became durable, in
// order, on this one goroutine.
func (d *durability) loop(log *slog.Logger) {
	defer close(d.done)
	var bound <-chan time.Time // set while an unsynced commit waits for the lazy sync
	var retry <-chan time.Time // set after a failed sync
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
		case <-d.lazy:
			if bound == nil {
				bound = time.After(SyncBound)
			}
			continue
		case <-bound:
			bound = nil
		case <-retry:
			retry = nil
		}
		d.dirty.Store(false) // a commit after this line signals lazy again
		if target := d.noSync.Load(); d.synced.Load() < target {
			if err := d.sync(); err != nil {
				// The commits are in the WAL's buffer; their callbacks wait
				// for a sync that works (a full disk, say, may free up).
				log.Error("sync the write-ahead log", "err", err)
				if retry == nil {
					retry = time.After(time.Second)
				}
				continue
			}
			d.raise(target)
		}
		d.runDurable()
	}
}

// runDurable runs, in order, the waiting callbacks whose commits are on
// disk; it stops at the first that is not.
func (d *durability) runDurable() {
	synced := d.synced.Load()
	d.mu.Lock()
	n := 0
	for n < len(d.waiting) && d.waiting[n].seq <= synced {
		n++
	}
	due := d.waiting[:n:n]
	if n == len(d.waiting) {
		d.waiting = nil
	} else {
		d.waiting = append([]durableCallback(nil), d.waiting[n:]...)
	}
	d.running = n > 0
	d.mu.Unlock()
	if n == 0 {
		return
	}
	for _, c := range due {
		c.fn()
	}
	d.mu.Lock()
	d.running = false
	more := len(d.waiting) > 0 // queued behind these while they ran
	d.mu.Unlock()
	if more {
		signal(d.kick)
	}
}

// close stops the loop; callbacks still waiting are dropped (what they
// stand for is in storage, read back at the next start).
func (d *durability) close() {
	close(d.stop)
	<-d.done
}

// OnDurable registers f to run once the batch is on disk: at once after a
// CommitSync (after callbacks of earlier unsynced batches still waiting),
// within milliseconds of a CommitNoSync, on the DB's sync goroutine, in
// commit order. For work that must not act on a change a crash could undo,
// such as sending a webhook for a status written without a sync.
func (b *Batch) OnDurable(f func()) { b.onDurable = append(b.onDurable, f) }

// SyncWAL makes every commit that returned before the call durable. It costs
// nothing when there are no unsynced commits.
func (db *DB) SyncWAL() error {
	target := db.dur.noSync.Load()
	if db.dur.synced.Load() >= target {
		return nil
	}
	if err := db.dur.sync(); err != nil {
		return wrapWriteErr(err)
	}
	db.dur.raise(target)
	return nil
}
