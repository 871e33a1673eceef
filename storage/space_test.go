package storage

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// CheckSpace refuses new data while the measured free space is below the
// reserve, and accepts it again once space is freed.
func TestCheckSpaceFollowsTheFreeSpace(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	if err := db.CheckSpace(); err != nil {
		t.Fatalf("without WatchSpace: %v", err)
	}
	var free atomic.Uint64
	free.Store(300 << 20)
	measure := func(string) (uint64, error) { return free.Load(), nil }
	if err := db.WatchSpace(256<<20, time.Millisecond, measure); err != nil {
		t.Fatal(err)
	}
	if err := db.CheckSpace(); err != nil {
		t.Fatalf("300 MB free, 256 MB reserve: %v", err)
	}
	waitSpace := func(wantLow bool) error {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := db.CheckSpace()
			if (err != nil) == wantLow || time.Now().After(deadline) {
				return err
			}
			time.Sleep(time.Millisecond)
		}
	}
	free.Store(100 << 20)
	err := waitSpace(true)
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "100 MB free") || !strings.Contains(err.Error(), "256 MB") {
		t.Fatalf("100 MB free: %v, want ErrDiskFull naming both figures", err)
	}
	if got, ok := db.FreeBytes(); !ok || got != 100<<20 {
		t.Fatalf("FreeBytes = %d, %v", got, ok)
	}
	free.Store(1 << 30)
	if err := waitSpace(false); err != nil {
		t.Fatalf("after space was freed: %v", err)
	}
}

func TestWatchSpaceFailsWhenItCannotMeasure(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	defer db.Close()
	if err := db.WatchSpace(1, time.Second, func(string) (uint64, error) { return 0, ErrNoFreeSpaceInfo }); !errors.Is(err, ErrNoFreeSpaceInfo) {
		t.Fatalf("WatchSpace = %v", err)
	}
	if err := db.CheckSpace(); err != nil {
		t.Fatalf("CheckSpace after a failed WatchSpace: %v", err)
	}
}

func TestFreeSpaceMeasuresTheDataDirectory(t *testing.T) {
	free, err := FreeSpace(t.TempDir())
	if err != nil || free == 0 {
		t.Fatalf("FreeSpace = %d, %v", free, err)
	}
}

// A fatal Pebble error leaves a JSON line that says what to do before the
// panic ends the process; a flood of errors is cut to a few lines a second.
func TestPebbleLogLines(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, nil)))
	defer slog.SetDefault(prev)

	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("Fatalf did not panic")
			}
		}()
		quietLogger{}.Fatalf("pebble: fatal commit error: write 000007.log: %s", syscall.ENOSPC)
	}()
	if line := buf.String(); !strings.Contains(line, `"level":"ERROR"`) || !strings.Contains(line, "free some space") {
		t.Fatalf("fatal line: %s", line)
	}

	var e errorLines
	at := time.Unix(1_800_000_000, 0)
	logged := 0
	for range 1000 {
		if _, ok := e.admit(at); ok {
			logged++
		}
	}
	suppressed, ok := e.admit(at.Add(time.Second))
	if logged != errorLinesPerSecond || !ok || suppressed != 1000-errorLinesPerSecond {
		t.Fatalf("logged %d of 1000 in a second, then ok=%v with %d suppressed", logged, ok, suppressed)
	}
}
