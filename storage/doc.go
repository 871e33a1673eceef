// Package storage owns the node's embedded Pebble database: the keyspace, the
// record codecs, iterators and zstd-compressed values. It knows nothing of
// HTTP, of WhatsApp or of the domain's rules; it stores what the domain hands
// it, atomically and in order, and reads it back.
//
// # Keyspace
//
// Every key starts with a short prefix naming its table. Workspace names are
// [a-z0-9_-], session ids are digits, record ids are sortable base32 strings,
// so "/" is a safe separator. Idempotency keys are caller-supplied and always
// last in their key.
//
//	prefix                          value                     written by / read for
//	meta/schema                     "4"                       Open; marks schema "1"–"3" directories "4" (they read as they are), refuses newer
//	ws/<workspace>                  Workspace (JSON)          State; loaded into memory at Open
//	key/<keyID>                     APIKey (JSON, hash only)  State; loaded into memory at Open
//	sess/<ws>/<sessionID>           Session                   session create/status/delete
//	msg/<ws>/<msgID>                Message (binary, zstd>1K) send/inbound; later statuses as StatusUpdate merge operands (msgmerge.go); list newest first = reverse scan
//	ms/<ws>/<sessionID>/<msgID>     empty                     secondary index: messages of one session
//	wa/<ws>/<sessionID>/<waID>      msgID                     WhatsApp id → our message, for ids not made from a message id (inbound; older sends)
//	mark/<ws>/<sessionID>           SessionMarks              where a restart starts reading the session's log for queued messages and owed receipts
//	pace/<ws>/<sessionID>           PacedSends                a paced session's last 64 sends (time, recipient), so a restart keeps to its pacing
//	q/<ws>/<sessionID>/<msgID>      empty                     legacy (before marks): queued messages; read and cleared, never written
//	aw/<ws>/<sessionID>/<msgID>     empty                     legacy (before marks): messages owing receipts; read and cleared, never written
//	idem/<ws>/<idempotencyKey>      Idempotency               24 h replay of POST /v1/messages
//	idemx/<createdAt:8 bytes BE>/   empty                     the idem/ records by creation time, written with them, so the
//	  <ws>/<idempotencyKey>                                   expired ones are found without reading the rest
//	meta/idemx                      "1"                       Open gave the idem/ records of earlier builds their idemx/ entries
//	quota/<ws>/<YYYY-MM>            int64 counter (merge)     outbound messages of that UTC month that left the queue (plus the queued ones = accepted)
//	wh/<endpointID>                 Webhook (JSON)            State; endpoint config, loaded into memory at Open
//	evb/<first deliveryID>          outbox block (binary,     webhook outbox: the new deliveries (event, endpoint) one batch staged, written in
//	                                S2>256 B)                 that batch; deleted by the batch that records the last one's first attempt
//	dlv/<deliveryID>                Delivery with its event   a delivery once its first attempt is recorded (state, counts, next attempt); builds
//	                                (binary)                  before evb/ wrote it at staging, as a 'd' record with its body under dlb/
//	dlb/<deliveryID>                raw event JSON            legacy (before evb/): the body of a 'd' delivery; read, pruned, never written
//	due/<nextAt:8 bytes BE>/<dlvID> empty                     retries by next attempt time (and legacy deliveries never attempted)
//	att/<endpointID>/<attemptID>    Attempt (binary)          the deliveries log, newest first = reverse scan
//	whf/<endpointID>                int64 Unix seconds        since when an endpoint has failed every attempt
//
// Message ids begin with their creation time (for an inbound message,
// WhatsApp's time for it, NewIDAt), so ranges of time are key ranges and
// "newest first" is a reverse scan.
//
// # Durability
//
// CommitSync writes a batch and fsyncs the WAL before returning; Pebble joins
// concurrent commits into one fsync (group commit), which is what lets many
// concurrent sends share the cost. CommitNoSync is for status changes and
// logs whose loss on a crash costs little; it returns before the WAL write
// reaches the file, and a sync loop makes it durable within SyncBound (Pebble
// alone would hold it in its buffer until a later synced commit). Work that
// must not act on a change a crash could undo waits for Batch.OnDurable.
//
// # Free space
//
// Pebble stops the process on a write-ahead-log write that finds the disk
// full, so the disk must not fill: WatchSpace measures the free space of the
// data directory's file system, and CheckSpace, which the domain asks before
// it accepts new data, fails with ErrDiskFull below a reserve (space.go).
// The package logs little: the reserve reached and left, a failed sync of
// the write-ahead log, Pebble's errors (a few a second at most) and a
// fatal error's last line.
package storage
