package main

import (
	"os"
	"runtime"
)

// procsFor is how many Ps serve runs with: what GOMAXPROCS says when it is
// set, otherwise twice the runtime's default (the CPUs it may use, cgroup
// limits included).
//
// Why twice: every accepted send waits for a WAL fsync, and Pebble's
// syncs, flushes and compactions block their OS thread in the kernel. With one
// P per CPU, a P held by a blocked thread is handed to another thread only
// when the runtime's monitor notices (20 µs and more), and handlers queue
// behind it meanwhile. Spare Ps keep the CPUs busy with handlers during the
// syncs: on the 2-CPU load benchmark the send path's p99 dropped by about a
// fifth (6.1–8.6 → 4.2–6.6 ms) at the same or higher throughput. Set
// GOMAXPROCS to choose another number, e.g. under a tight CPU quota.
func procsFor(env string, defaultProcs int) int {
	if env != "" {
		return defaultProcs // the runtime has already applied GOMAXPROCS
	}
	return 2 * defaultProcs
}

// setProcs applies procsFor and returns the number of Ps.
func setProcs() int {
	n := procsFor(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(n)
	return n
}
