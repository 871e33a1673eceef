package main

// End-to-end tests of durability: a graceful restart and a kill -9 under load.

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkAllSettle polls the NDJSON export until every outbound message is read
// (or failed, for the sandbox's failing numbers) and returns the export; it
// reports the messages that did not get there.
func (s *server) checkAllSettle(t *testing.T, key string, timeout time.Duration) []messageJSON {
	t.Helper()
	var ms []messageJSON
	var stuck []string
	ok := pollUntil(timeout, func() bool {
		ms = s.mustExport(t, key, "?direction=outbound")
		stuck = stuck[:0]
		for _, m := range ms {
			if m.Status == "read" || m.Status == "failed" && strings.HasSuffix(str(m.To), "0001") {
				continue
			}
			stuck = append(stuck, m.ID+" "+m.Status)
		}
		return len(stuck) == 0
	})
	if !ok {
		show := stuck
		if len(show) > 10 {
			show = show[:10]
		}
		t.Errorf("%d of %d outbound messages did not reach read within %v (statuses %v), e.g. %v",
			len(stuck), len(ms), timeout, statusCounts(ms), show)
	}
	return ms
}

// TestE2ERestart: SIGTERM stops the server promptly with status 0; on the
// same data directory everything is back and queued work completes.
func TestE2ERestart(t *testing.T) {
	dir := newDataDir(t)
	s1 := mustStartServer(t, dir)
	key := s1.fastKey(t, "--name", "main")
	s1.mustCLI(t, "workspaces", "create", "b", "--monthly-quota", "10")
	keyB := s1.fastKey(t, "--workspace", "b")
	s1.mustCreateSandbox(t, key, sessA)
	s1.mustCreateSandbox(t, keyB, "14155550123")
	s1.mustSend(t, keyB, "14155550123", rcptOK, "b's message")

	first := s1.mustSend(t, key, sessA, rcptOK, "before the restart")
	s1.mustWaitStatus(t, key, first.ID, "read", 3*time.Second)
	idem := s1.mustSend(t, key, sessA, rcptOK, "idempotent", hdr("Idempotency-Key", "persist-1"))
	failed := s1.mustSend(t, key, sessA, rcptBad, "fails")
	mustStatus(t, s1.do(t, "POST", "/v1/sessions/"+sessA+"/sandbox/inbound", key, map[string]string{"from": rcptOK, "text": "inbound before"}), 202)
	if !pollUntil(3*time.Second, func() bool { return len(s1.mustList(t, key, "?direction=inbound").Data) == 1 }) {
		t.Fatal("inbound message did not appear")
	}

	// A burst from several clients, then SIGTERM at once: some of it is
	// still queued, sent or delivered when the server stops.
	var mu sync.Mutex
	var burst []string
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				r, err := s1.try("POST", "/v1/messages", key, sendBody(sessA, rcptOK, fmt.Sprintf("burst %d/%d", w, i)))
				if err != nil || r.Status != 202 {
					t.Errorf("burst send: %v %v", err, r)
					return
				}
				var q queuedJSON
				_ = json.Unmarshal(r.Body, &q)
				mu.Lock()
				burst = append(burst, q.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	before := s1.mustExport(t, key, "")
	usedBefore := s1.mustUsage(t, key).Used
	start := time.Now()
	s1.mustStop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("SIGTERM to exit took %v; want prompt (under 5 s)", d)
	}
	t.Logf("statuses at SIGTERM: %v", statusCounts(before))

	s2 := mustStartServer(t, dir)
	// Keys, both workspaces and the session are back.
	var sess sessionJSON
	mustDecode(t, mustStatus(t, s2.do(t, "GET", "/v1/sessions/"+sessA, key, nil), 200), &sess)
	if sess.Status != "connected" || sess.Driver != "sandbox" {
		t.Errorf("session after restart: %+v, want sandbox connected", sess)
	}
	if u := s2.mustUsage(t, keyB); u.Used != 1 || u.Quota == nil || *u.Quota != 10 {
		t.Errorf("workspace b usage after restart %+v, want used 1 of 10", u)
	}
	if id := s2.mustKeyID(t, "main"); !strings.HasPrefix(id, "key_") {
		t.Errorf("key id %q", id)
	}
	// Every message is still there, none twice.
	after := s2.mustExport(t, key, "")
	seen := map[string]bool{}
	for _, m := range after {
		if seen[m.ID] {
			t.Errorf("message %s listed twice after restart", m.ID)
		}
		seen[m.ID] = true
	}
	if len(after) != len(before) {
		t.Errorf("%d messages before the restart, %d after", len(before), len(after))
	}
	for _, id := range append(burst, first.ID, idem.ID, failed.ID) {
		if !seen[id] {
			t.Errorf("accepted message %s is missing after restart", id)
		}
	}
	if m := s2.mustGetMessage(t, key, failed.ID); m.Status != "failed" || m.Error == nil {
		t.Errorf("failed message after restart: %+v", m)
	}
	if m := s2.mustGetMessage(t, key, first.ID); m.Status != "read" || m.WAMessageID == nil {
		t.Errorf("read message after restart: %+v", m)
	}
	if u := s2.mustUsage(t, key); u.Used != usedBefore {
		t.Errorf("usage after restart %d, before %d", u.Used, usedBefore)
	}
	// The idempotency record survived.
	r := mustStatus(t, s2.do(t, "POST", "/v1/messages", key, sendBody(sessA, rcptOK, "idempotent"), hdr("Idempotency-Key", "persist-1")), 202)
	var q queuedJSON
	mustDecode(t, r, &q)
	if q.ID != idem.ID {
		t.Errorf("idempotent replay after restart: %s, want %s", q.ID, idem.ID)
	}
	// New sends work.
	s2.mustWaitStatus(t, key, s2.mustSend(t, key, sessA, rcptOK, "after the restart").ID, "read", 3*time.Second)

	// A restart is not a first start: no hints.
	for _, l := range s2.stderr.lines() {
		if !strings.HasPrefix(l, "{") {
			t.Errorf("restart printed a first-start hint: %q", l)
		}
	}

	// Everything queued, sent or delivered at the stop goes on to read.
	s2.checkAllSettle(t, key, 5*time.Second)
}

// TestE2ECrash: 16 clients send as fast as they can; the server is killed
// with SIGKILL mid-flight. After a restart every acknowledged message is
// there exactly once and is delivered; nothing unacknowledged beyond the
// requests in flight appears.
func TestE2ECrash(t *testing.T) {
	dir := newDataDir(t)
	s1 := mustStartServer(t, dir)
	key := s1.fastKey(t)
	s1.mustCreateSandbox(t, key, sessA)

	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		dupAck   []string
		inflight atomic.Int64 // requests that got no answer
		other    []string     // answers other than 202
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				to := fmt.Sprintf("9199%04d%04d", w, i%10000)
				if strings.HasSuffix(to, "0000") || strings.HasSuffix(to, "0001") {
					continue
				}
				r, err := s1.try("POST", "/v1/messages", key, sendBody(sessA, to, fmt.Sprintf("crash %d/%d", w, i)))
				if err != nil {
					inflight.Add(1)
					return
				}
				mu.Lock()
				if r.Status == 202 {
					var q queuedJSON
					if json.Unmarshal(r.Body, &q) == nil && q.ID != "" {
						if acked[q.ID] {
							dupAck = append(dupAck, q.ID)
						}
						acked[q.ID] = true
					}
				} else {
					other = append(other, r.String())
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond) // let the senders run
	stop.Store(true)
	s1.mustKill(t)
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("%d sends were not 202, e.g. %s", len(other), other[0])
	}
	if len(dupAck) > 0 {
		t.Fatalf("two 202s carried the same id: %v", dupAck)
	}
	t.Logf("kill -9 after %d acknowledged sends, %d in flight", len(acked), inflight.Load())
	if len(acked) < 50 {
		t.Fatalf("only %d sends acknowledged in 1.5 s; the test needs load", len(acked))
	}

	s2 := mustStartServer(t, dir)
	for id := range acked {
		r := s2.do(t, "GET", "/v1/messages/"+id, key, nil)
		if r.Status != 200 {
			t.Fatalf("acknowledged message %s lost after kill -9: %s", id, r)
		}
	}
	all := s2.mustExport(t, key, "")
	seen := map[string]bool{}
	outbound := 0
	for _, m := range all {
		if seen[m.ID] {
			t.Errorf("message %s listed twice", m.ID)
		}
		seen[m.ID] = true
		if m.Direction == "outbound" {
			outbound++
		}
	}
	if lo, hi := len(acked), len(acked)+int(inflight.Load()); outbound < lo || outbound > hi {
		t.Errorf("%d outbound messages after the crash, want between %d acknowledged and %d (+ in flight)", outbound, lo, hi)
	}
	if u := s2.mustUsage(t, key); u.Used != int64(outbound) {
		t.Errorf("usage %d after the crash, but %d messages are stored", u.Used, outbound)
	}
	// The restarted server takes new work, and its queue is empty after.
	s2.mustWaitStatus(t, key, s2.mustSend(t, key, sessA, rcptOK, "after the crash").ID, "read", 3*time.Second)
	var sess sessionJSON
	mustDecode(t, mustStatus(t, s2.do(t, "GET", "/v1/sessions/"+sessA, key, nil), 200), &sess)
	if sess.Status != "connected" || sess.QueueDepth != 0 {
		t.Errorf("session after the crash and a drained queue: %+v, want connected with queueDepth 0", sess)
	}

	// Every stored message, acknowledged or not, is delivered once.
	settled := s2.checkAllSettle(t, key, 5*time.Second)
	waIDs := map[string]string{}
	for _, m := range settled {
		if m.Status != "read" {
			continue
		}
		if m.WAMessageID == nil || !waIDRE.MatchString(*m.WAMessageID) {
			t.Errorf("message %s read without a WhatsApp id: %s", m.ID, str(m.WAMessageID))
			continue
		}
		if prev, dup := waIDs[*m.WAMessageID]; dup {
			t.Errorf("messages %s and %s share the WhatsApp id %s", prev, m.ID, *m.WAMessageID)
		}
		waIDs[*m.WAMessageID] = m.ID
	}
}
