package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// ErrNotFound is returned by look-ups of records that do not exist.
var ErrNotFound = errors.New("not found")

// ErrDiskFull is returned when a write failed because the disk is full, and
// by CheckSpace while the free space is below the reserve.
var ErrDiskFull = errors.New("disk full")

// schemaVersion is the data format this build writes. Schema 2 added outbox
// blocks (evb/), deliveries that carry their events, and message statuses as
// merge operands: a build of schema 1 would ignore the blocks (and the events
// in them) and fail on the operands, so it must refuse such a directory
// rather than open it. Schema 3 compresses outbox blocks with S2 (tag 'S'),
// which a build of schema 2 cannot read. Schema 4 lets message records and
// events name the message they refer to (flagHasRef, eventHasRef), which a
// build of schema 3 would drop or refuse.
const schemaVersion = "4"

// upgradableSchemas are the older formats this build reads as they are; it
// marks them schemaVersion when it opens them.
var upgradableSchemas = map[string]bool{"1": true, "2": true, "3": true}

// DB is the node's Pebble database.
type DB struct {
	pdb   *pebble.DB
	dir   string
	dur   *durability
	space atomic.Pointer[spaceGuard] // set by WatchSpace
}

// memTableSize is Pebble's memtable size; a flush writes a table about as
// large, and each new write-ahead log is preallocated at 1.1 times it.
const memTableSize = 64 << 20

// Open opens (creating if needed) the database in dir.
func Open(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	// The directory holds message texts, webhook secrets and WhatsApp device
	// keys, in files made with the default umask: one that existed already
	// (a mounted volume, say) with access for others is made private. (The
	// server says so in its log.)
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, fi.Mode().Perm()&0o700); err != nil {
			return nil, fmt.Errorf("make data directory %s private (chmod 700): %w", dir, err)
		}
	}
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref() // the DB keeps its own reference
	opts := &pebble.Options{
		Merger:                dbMerger,
		MemTableSize:          memTableSize,
		Cache:                 cache,
		Logger:                quietLogger{},
		L0CompactionThreshold: 8,
		L0StopWritesThreshold: 32,
		LBaseMaxBytes:         256 << 20,
	}
	// Bloom filters: receipt and idempotency look-ups are point reads of
	// random keys that would otherwise touch every level.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		if i < 3 {
			// The upper levels hold fresh, soon rewritten data: compressing
			// it costs the send path CPU for little disk saved. Large values
			// are zstd-compressed by the codec already.
			opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
		}
	}
	pdb, err := pebble.Open(filepath.Join(dir, "pebble"), opts)
	if err != nil {
		return nil, fmt.Errorf("open pebble database in %s: %w", dir, err)
	}
	db := &DB{pdb: pdb, dir: dir, dur: newDurability(pdb)}
	go db.dur.loop(slog.Default())
	if err := db.checkSchema(); err != nil {
		db.dur.close()
		_ = pdb.Close()
		return nil, err
	}
	if err := db.indexIdempotency(); err != nil {
		db.dur.close()
		_ = pdb.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) checkSchema() error {
	v, err := db.get([]byte("meta/schema"))
	if errors.Is(err, ErrNotFound) || (err == nil && upgradableSchemas[string(v)]) {
		return db.pdb.Set([]byte("meta/schema"), []byte(schemaVersion), pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if string(v) != schemaVersion {
		return fmt.Errorf("data directory %s holds schema %q, this binary reads %q: upgrade walytic", db.dir, v, schemaVersion)
	}
	return nil
}

// Close flushes and closes the database.
func (db *DB) Close() error {
	db.space.Load().close()
	db.dur.close()
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("close pebble database: %w", err)
	}
	return nil
}

// get returns a copy of the value at key, or ErrNotFound.
func (db *DB) get(key []byte) ([]byte, error) {
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	return out, nil
}

// Batch collects writes that commit atomically.
type Batch struct {
	b         *pebble.Batch
	onDurable []func()    // see OnDurable
	outbox    []*Delivery // StageFirstDelivery; written as one key at commit
}

// NewBatch starts an empty batch.
func (db *DB) NewBatch() *Batch { return &Batch{b: db.pdb.NewBatch()} }

// Set writes a raw value; for packages (such as the webhook outbox) that keep
// their own table under a prefix this package reserves for them.
func (b *Batch) Set(key, value []byte) { _ = b.b.Set(key, value, nil) }

// Delete removes a raw key.
func (b *Batch) Delete(key []byte) { _ = b.b.Delete(key, nil) }

// Empty reports whether nothing was written to the batch.
func (b *Batch) Empty() bool { return b.b.Empty() && len(b.outbox) == 0 }

// CommitSync writes the batch and waits for the WAL fsync.
func (db *DB) CommitSync(b *Batch) error {
	defer b.b.Close()
	b.writeOutbox()
	before := db.dur.noSync.Load()
	err := wrapWriteErr(b.b.Commit(pebble.Sync))
	if err == nil {
		db.dur.committedSync(before, b.onDurable)
	}
	b.onDurable = nil
	return err
}

// CommitNoSync writes the batch in order without waiting for an fsync; the
// sync loop puts it on disk within SyncBound.
func (db *DB) CommitNoSync(b *Batch) error {
	defer b.b.Close()
	b.writeOutbox()
	err := wrapWriteErr(b.b.Commit(pebble.NoSync))
	if err == nil {
		db.dur.committedNoSync(b.onDurable)
	}
	b.onDurable = nil
	return err
}

// Discard drops a batch without writing it.
func (b *Batch) Discard() { _ = b.b.Close() }

func wrapWriteErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %v", ErrDiskFull, err)
	}
	return fmt.Errorf("commit batch: %w", err)
}

// Get reads a raw value (for packages with a reserved prefix).
func (db *DB) Get(key []byte) ([]byte, error) { return db.get(key) }

// Scan calls fn for each key in [lower, upper) in order (reverse if reverse),
// stopping when fn returns false. The slices are only valid during the call.
func (db *DB) Scan(lower, upper []byte, reverse bool, fn func(key, value []byte) bool) error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("open iterator: %w", err)
	}
	var ok bool
	if reverse {
		ok = it.Last()
	} else {
		ok = it.First()
	}
	for ; ok; ok = step(it, reverse) {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("read value: %w", err)
		}
		if !fn(it.Key(), v) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("iterate: %w", err)
	}
	return nil
}

func step(it *pebble.Iterator, reverse bool) bool {
	if reverse {
		return it.Prev()
	}
	return it.Next()
}

// prefixEnd returns the first key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// counterValue adds little-endian int64 operands; the quota counters use it
// (through dbMerger) so concurrent sends never read-modify-write a shared key.
type counterValue struct{ n int64 }

func (c *counterValue) MergeNewer(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("counter operand has %d bytes, want 8", len(v))
	}
	c.n += int64(binary.LittleEndian.Uint64(v))
	return nil
}

func (c *counterValue) MergeOlder(v []byte) error { return c.MergeNewer(v) }

func (c *counterValue) Finish(bool) ([]byte, io.Closer, error) {
	return encodeCounter(c.n), nil, nil
}

func encodeCounter(n int64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	return b[:]
}

// quietLogger keeps Pebble's informational chatter out of the JSON log,
// and its errors to a few lines a second: on a full disk Pebble retries a
// failed flush in a loop and reports every try (thousands a second).
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{}) {}
func (quietLogger) Errorf(format string, args ...interface{}) {
	if suppressed, ok := pebbleErrors.admit(time.Now()); ok {
		if suppressed > 0 {
			slog.Error("pebble: errors left out of the log", "count", suppressed)
		}
		slog.Error("pebble", "detail", fmt.Sprintf(format, args...))
	}
}

// Fatalf is how Pebble stops on an error it cannot go on from, a failed
// write-ahead-log write among them: the panic ends the process, after a
// line in the JSON log that says what to do.
func (quietLogger) Fatalf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	hint := "start walytic again; nothing it acknowledged is lost"
	if strings.Contains(msg, syscall.ENOSPC.Error()) {
		hint = "the disk holding the data directory is full: free some space, then start walytic again; nothing it acknowledged is lost"
	}
	slog.Error("pebble: fatal error, stopping", "detail", msg, "hint", hint)
	panic(msg)
}

// errorLines lets through at most errorLinesPerSecond lines a second and
// counts the rest.
type errorLines struct {
	mu         sync.Mutex
	second     int64
	n          int
	suppressed int
}

const errorLinesPerSecond = 10

var pebbleErrors errorLines

// admit reports whether a line at now may be logged, and how many were left
// out since the last one that was.
func (e *errorLines) admit(now time.Time) (suppressed int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := now.Unix(); s != e.second {
		e.second, e.n = s, 0
	}
	if e.n >= errorLinesPerSecond {
		e.suppressed++
		return 0, false
	}
	e.n++
	suppressed, e.suppressed = e.suppressed, 0
	return suppressed, true
}
