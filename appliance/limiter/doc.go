// Package limiter is the per-API-key rate limiter. It owns only the in-memory
// GCRA (generic cell rate algorithm) state of each key: one theoretical
// arrival time (TAT) plus the limits it was last computed with. It must not
// touch storage or HTTP: callers look up a key's limits, call Allow, and turn
// the Decision into a response (429, X-RateLimit-* and Retry-After headers).
//
// Semantics, per key:
//
//   - Each admitted request uses one request's worth of allowance; a rejected
//     request uses none.
//   - Allowance returns at PerMinute requests per minute (one every
//     60s/PerMinute, 1 s by default) and at most Burst are stored (100 by
//     default). An idle key can therefore send Burst at once, then one per
//     interval; in any window of w seconds at most Burst + w*PerMinute/60
//     requests are admitted.
//   - Every Decision carries Limit (= Burst), Remaining (requests that would
//     be admitted right now, after this decision), Reset (time until the
//     allowance is full again) and, on rejection, RetryAfter (the exact wait
//     after which a request is admitted). Use ResetSeconds and
//     RetryAfterSeconds for headers: they round up, so a client that waits
//     Retry-After seconds is admitted.
//   - Limits are passed on every call, and Update converts a key's state when
//     its limits change, so the change applies from that moment. The
//     requests a key has used stay used across a change: they come back at
//     the new rate, and a Burst lowered below them leaves none (rather than
//     locking the key out for the old, longer debt). Only a change of limits
//     moves the state back; a request decided after another but with an
//     earlier arrival time is judged at its time and gives nothing back.
//
// Memory is O(1) per key. Allow takes one of 256 shard locks chosen by a hash
// of the key, so distinct keys rarely contend and there is no global lock.
// A shard keeps its keys in a linear-probing table of 64-byte slots, each
// holding a key (up to 31 bytes; longer ones go to a map) with its hash and
// state: a look-up reads one cache line after the shard's, a new key
// allocates nothing until the table doubles, and the GC has no pointers to
// scan. A slot is taken up to 3/4 of the table, so a key costs 85–170 bytes;
// a shard whose keys were all evicted frees its table.
// A key whose allowance is full carries no information; Evict (or
// RunEvictor in a goroutine) drops such entries, and Forget drops a key's
// state at once (for a revoked key; a rotated one keeps its id, and with it
// its state, so a rotation is no way around the limit).
//
// Times are measured from the Limiter's creation on the monotonic clock
// (time.Since, which skips the wall-clock read time.Now makes), or through an
// injected clock with time.Time.Sub, so wall-clock jumps never move the
// state. AllowAt takes the request's arrival time from the caller instead:
// the HTTP server passes the time fasthttp read when the request came in,
// so the hot path reads no clock (on the benchmark VM a clock read is about
// 25–35 ns, a third of an Allow).
//
// The state is per process: in a cluster each node enforces its own share of
// a key's limits (the caller divides the limits if it needs a global bound).
package limiter
