package storage

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// crashCopy copies the data directory as a kill -9 would leave it: what the
// process has written to its files (the OS keeps that), not what it still
// holds in memory. It opens the copy and reports whether key is in it.
func crashCopy(t *testing.T, dir string, key []byte) bool {
	t.Helper()
	db, err := Open(copyDir(t, dir))
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	defer db.Close()
	_, err = db.Get(key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatalf("read the copy: %v", err)
	}
	return err == nil
}

// An unsynced commit reaches the files within SyncBound, even on a server
// that writes nothing after it. (Pebble alone keeps it in its WAL buffer
// until a later synced commit or a full block.)
func TestUnsyncedCommitsReachTheDisk(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, dir)
	defer db.Close()
	key := []byte("test/unsynced")
	b := db.NewBatch()
	b.Set(key, []byte("v"))
	if err := db.CommitNoSync(b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !crashCopy(t, dir, key) {
		if time.Now().After(deadline) {
			t.Fatalf("an unsynced commit was still not in the files 5 s later (bound %v)", SyncBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OnDurable callbacks run only once their batch is in the files, and in
// commit order, synced batches included.
func TestOnDurableRunsOnceOnDiskInOrder(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, dir)
	defer db.Close()

	var mu sync.Mutex
	var order []int
	ran := make(chan int, 16)
	commit := func(i int, sync bool) {
		b := db.NewBatch()
		b.Set(fmt.Appendf(nil, "test/durable/%d", i), []byte("v"))
		b.OnDurable(func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			ran <- i
		})
		commit := db.CommitNoSync
		if sync {
			commit = db.CommitSync
		}
		if err := commit(b); err != nil {
			t.Fatal(err)
		}
	}
	commit(0, false)
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the callback of an unsynced commit never ran")
	}
	// Checked at once, well inside SyncBound: the callback's own sync put
	// the batch there, not the lazy one.
	if !crashCopy(t, dir, []byte("test/durable/0")) {
		t.Fatal("an OnDurable callback ran before its batch was in the files")
	}

	for i := 1; i <= 6; i++ {
		commit(i, i%3 == 0)
	}
	for range 6 {
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatal("callbacks did not all run")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range order {
		if v != i {
			t.Fatalf("callbacks ran in the order %v, want commit order", order)
		}
	}

	// A failed or discarded batch runs none.
	b := db.NewBatch()
	b.OnDurable(func() { t.Error("a discarded batch's callback ran") })
	b.Discard()
	if err := db.SyncWAL(); err != nil {
		t.Fatal(err)
	}
}

// A synced batch committed while the sync loop runs an earlier batch's
// callback does not overtake it: its own callback runs after.
func TestOnDurableSyncedWaitsForARunningCallback(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	started, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer letGo() // before Close, which waits for the loop
	var order []string
	var mu sync.Mutex
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	a := db.NewBatch()
	a.Set([]byte("test/a"), nil)
	a.OnDurable(func() {
		close(started)
		<-release
		note("a")
	})
	if err := db.CommitNoSync(a); err != nil {
		t.Fatal(err)
	}
	<-started
	bDone := make(chan struct{})
	b := db.NewBatch()
	b.Set([]byte("test/b"), nil)
	b.OnDurable(func() {
		note("b")
		close(bDone)
	})
	if err := db.CommitSync(b); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	early := len(order) > 0
	mu.Unlock()
	if early {
		t.Fatalf("a synced batch's callback ran while an earlier one was running: %v", order)
	}
	letGo()
	select {
	case <-bDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the synced batch's callback never ran")
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != "[a b]" {
		t.Fatalf("callbacks ran in the order %v, want [a b]", order)
	}
}
