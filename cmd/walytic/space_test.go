package main

import (
	"strings"
	"testing"

	"github.com/walytic/appliance/storage"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"256MiB", 256 << 20, true},
		{"1GiB", 1 << 30, true},
		{"500MB", 500e6, true},
		{" 64 KiB ", 64 << 10, true},
		{"0", 0, true},
		{"256", 0, false}, // a unit is required: bytes or MB would be a guess
		{"12XB", 0, false},
		{"-1GiB", 0, false},
		{"99999999999999999TiB", 0, false},
		{"", 0, false},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
	for _, n := range []uint64{storage.DefaultDiskReserve, 1 << 30, 3 << 20, 1536 << 10} {
		if back, err := parseSize(formatSize(n)); err != nil || back != n {
			t.Errorf("formatSize(%d) = %q reads back as %d, %v", n, formatSize(n), back, err)
		}
	}
}

// serve refuses to open a database on a disk too full to open it (Pebble
// would retry a failed flush for ever instead of failing), and says what
// to do; with room enough, or no reserve, it goes on.
func TestCheckFreeSpace(t *testing.T) {
	dir := t.TempDir()
	freeIs := func(n uint64) func(string) (uint64, error) {
		return func(string) (uint64, error) { return n, nil }
	}
	err := checkFreeSpace(dir, storage.DefaultDiskReserve, freeIs(50<<20))
	if err == nil || !strings.Contains(err.Error(), "50MiB free") || !strings.Contains(err.Error(), "--disk-reserve") {
		t.Fatalf("50 MiB free: %v", err)
	}
	if err := checkFreeSpace(dir, storage.DefaultDiskReserve, freeIs(storage.OpenMinFree)); err != nil {
		t.Fatalf("enough to open, below the reserve (new data is refused once open): %v", err)
	}
	if err := checkFreeSpace(dir, 0, freeIs(0)); err != nil {
		t.Fatalf("no reserve: %v", err)
	}
	if err := checkFreeSpace(dir, 16<<20, freeIs(20<<20)); err != nil {
		t.Fatalf("a reserve below what opening needs is the bound: %v", err)
	}
}
