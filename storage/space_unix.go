//go:build linux || darwin || freebsd

package storage

import "syscall"

// FreeSpace returns the bytes an unprivileged process may still write on the
// file system holding dir (blocks reserved for root are not counted: the
// server may not run as root, and Pebble's writes failed once those were
// all that was left).
func FreeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
