package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Pebble ends the process on a write it cannot make: its commit pipeline
// takes a failed write-ahead-log write as fatal, so a full disk can never
// come back from a commit as ErrDiskFull. The disk must therefore be kept
// from filling instead. WatchSpace measures the free space of the file
// system holding the data directory now and then, and CheckSpace refuses
// new data while it is below a reserve; the reserve is what Pebble itself
// still needs to go on (a new log file is preallocated at 1.1 times the
// memtable size, a flush writes a table of up to the memtable's size, a
// compaction its output before it deletes its input) while the writes
// already accepted drain: sends dispatched, receipts, webhook attempts.

// DefaultDiskReserve is the free space kept for Pebble: four memtables.
const DefaultDiskReserve = 4 * memTableSize

// OpenMinFree is what opening the database may need: a flush of the
// write-ahead log replayed into a memtable, and a new, preallocated log.
const OpenMinFree = 3 * memTableSize

// ErrNoFreeSpaceInfo is what FreeSpace returns where it cannot measure.
var ErrNoFreeSpaceInfo = errors.New("free space cannot be measured on this system")

// spaceGuard is the state WatchSpace keeps and CheckSpace reads.
type spaceGuard struct {
	reserve uint64
	free    atomic.Uint64 // bytes available at the last measure
	low     atomic.Bool   // free < reserve at the last measure
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// WatchSpace starts measuring the free space of the file system holding the
// data directory every interval, with measure (FreeSpace when nil), until
// Close; CheckSpace fails while fewer than reserve bytes are free. It
// measures once before returning and fails if that does. Call it once.
func (db *DB) WatchSpace(reserve uint64, every time.Duration, measure func(dir string) (uint64, error)) error {
	if measure == nil {
		measure = FreeSpace
	}
	g := &spaceGuard{reserve: reserve, stop: make(chan struct{}), done: make(chan struct{})}
	take := func() error {
		free, err := measure(db.dir)
		if err != nil {
			return err
		}
		g.free.Store(free)
		low := free < reserve
		switch was := g.low.Swap(low); {
		case low && !was:
			slog.Warn("disk space is down to the reserve: new messages are refused (507) until space is freed; sends already accepted, receipts and webhooks go on",
				"dir", db.dir, "freeMB", free>>20, "reserveMB", reserve>>20)
		case !low && was:
			slog.Info("disk space is above the reserve again: new messages are accepted", "dir", db.dir, "freeMB", free>>20)
		}
		return nil
	}
	if err := take(); err != nil {
		return fmt.Errorf("measure the free space of %s: %w", db.dir, err)
	}
	db.space.Store(g)
	go func() {
		defer close(g.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
				// A failed measure keeps the last one: statfs does not
				// fail on a mounted file system that is merely full.
				_ = take()
			}
		}
	}()
	return nil
}

// CheckSpace returns an error wrapping ErrDiskFull while the free space is
// below the reserve WatchSpace was given (nil without WatchSpace). Callers
// check it before they accept new data; writes that drain what was accepted
// go on into the reserve.
func (db *DB) CheckSpace() error {
	g := db.space.Load()
	if g == nil || !g.low.Load() {
		return nil
	}
	return fmt.Errorf("%w: %d MB free on the disk holding %s, below the %d MB kept for the database to go on: free some space or grow the disk (new data is refused until then; nothing stored is lost)",
		ErrDiskFull, g.free.Load()>>20, db.dir, g.reserve>>20)
}

// FreeBytes returns the free space at the last measure, and false without
// WatchSpace.
func (db *DB) FreeBytes() (uint64, bool) {
	g := db.space.Load()
	if g == nil {
		return 0, false
	}
	return g.free.Load(), true
}

func (g *spaceGuard) close() {
	if g == nil {
		return
	}
	g.once.Do(func() { close(g.stop) })
	<-g.done
}
