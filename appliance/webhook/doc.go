// Package webhook owns the outbound event stream: the event payload format,
// signing (X-Walytic-Signature and Standard Webhooks), the URL guard, the
// durable outbox in Pebble and the deliverer that drains it with retries.
//
// Events enter through Service.Stage, inside the storage batch of the state
// change that caused them, so a change and its event commit together or not
// at all: one delivery (one event for one endpoint) per subscribed endpoint,
// all of a batch's in one outbox block (storage.Batch.StageFirstDelivery).
// The deliverer then POSTs each delivery, its body rendered from the event,
// until a 2xx, on the retry schedule, logging every attempt. The run loop
// counts each block's deliveries whose first attempt is not recorded yet;
// recording the last deletes the block. After a restart, blocks and the due
// index of retries are read back; a block's deliveries that have a record of
// their own (storage.DeliveryReader.Recorded) had their first attempt.
//
// Ordering: deliveries to one endpoint for one session ("a lane") are started
// one at a time in the order their events were staged, so first attempts
// arrive in order. A failed delivery waits for its retry while later events
// of the lane go on, so a retried event can arrive after newer ones: order
// by the payload's timestamp and the message status rank, and de-duplicate
// on the event id. Different lanes are independent, at most MaxInFlight
// deliveries per endpoint at once, so one slow receiver never delays another.
//
// Between attempts: while all of an endpoint's slots are busy, its next jobs
// wait on a deck (up to MaxInFlight of them, their lanes busy), and a worker
// that finishes an attempt takes its next one from there at once, reading
// the endpoint's configuration again, rather than waiting for the run loop.
// Finished attempts are recorded together, at most a millisecond after the
// first of them (and at a stop), in one commit.
//
// Memory: at most MaxQueuedPerEndpoint due deliveries per endpoint and
// MaxQueued in all are held; beyond its share an endpoint's first attempts
// are left in their outbox blocks ("behind", from its oldest such block on)
// and read back when it has drained half, so a backlog costs disk and never
// holds up another endpoint's deliveries from the same blocks. A block whose
// deliveries in memory are all recorded while some were left in it stays;
// the refill that reads them counts it again and deletes it at the end.
//
// It must not import the domain (package appliance) or HTTP server code; it
// reads endpoint configuration through the Endpoints interface.
package webhook
