//go:build !(linux || darwin || freebsd)

package storage

// FreeSpace cannot measure here: WatchSpace fails, and the server runs
// without a disk reserve.
func FreeSpace(dir string) (uint64, error) { return 0, ErrNoFreeSpaceInfo }
