// Package appliance is the domain of the Walytic Appliance: workspaces, API
// keys, sessions, messages and quota, and the Appliance value that wires them
// to storage and to the WhatsApp transports and owns their lifecycle.
//
// It decides what is allowed and what happens; it does not speak HTTP (no
// fasthttp import: the httpfast package translates), it does not open Pebble
// itself (storage does), and it does not know how messages travel (the
// whatsapp.Transport does). Replicated state (workspaces, keys, limit
// overrides, quota budgets) is reached only through the State interface, so a
// cluster swaps the implementation, not the domain.
//
// Invariants the code relies on:
//   - A send is acknowledged only after its message record, indexes and
//     idempotency record are in one synced batch. A month's quota use is its
//     stored counter plus its messages still queued: the dispatcher moves
//     messages into the counter in the batch that records their outcome.
//   - A session's marks (storage.SessionMarks) never pass a message that is
//     queued or owes receipts: ids are reserved before their batch commits,
//     and the marks move in the same batch that moves messages on.
//   - Quota is reserved in memory before that batch and released if it fails,
//     so concurrent sends never take one more than the budget.
//   - One dispatcher goroutine per session drains its queue in id order; a
//     status only moves forward (queued → sent → delivered → read), and every
//     status change is staged with its event in the same batch. The one
//     exception has no event: a delivered status no endpoint subscribed to
//     is held in memory for up to deferWindow, so the read receipt that
//     usually follows is written with it; reads see it at once (overlay).
package appliance
