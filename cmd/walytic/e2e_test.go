package main

// End-to-end tests of the walytic binary: the README user path and message
// listing. The other scenarios are in e2e_*_test.go.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

const (
	sessA   = "919876543210" // the README's session number
	rcptOK  = "919999999999" // on WhatsApp, delivered and read
	rcptNot = "919999990000" // sandbox: not on WhatsApp
	rcptBad = "919999990001" // sandbox: accepted, then fails
)

var waIDRE = regexp.MustCompile(`^3EB0[0-9A-F]{16,20}$`)

// TestE2EReadmeUserPath walks the README: first start, a key, a sandbox
// session, sends that end read, failed and refused, an inbound message,
// usage and a number check.
func TestE2EReadmeUserPath(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))

	// First start: a log line with the next two commands. stderr is not a
	// terminal here, so it holds JSON log lines only.
	var hint struct{ CreateKey, CreateSession string }
	if !pollUntil(5*time.Second, func() bool {
		for _, l := range s.stderr.lines() {
			if strings.Contains(l, `"msg":"new data directory`) {
				return json.Unmarshal([]byte(l), &hint) == nil
			}
		}
		return false
	}) {
		t.Fatalf("first start: no log line with the next commands in %q", s.stderr.lines())
	}
	if !strings.Contains(hint.CreateKey, "--data-dir "+s.dataDir+" keys create") {
		t.Errorf("createKey %q does not say `keys create` for this data directory", hint.CreateKey)
	}
	// It runs as it is pasted: the binary as started, not a bare `walytic`
	// a source tree does not have on its PATH.
	if out, err := exec.Command("sh", "-c", hint.CreateKey).Output(); err != nil || !keyRE.Match(bytes.TrimSpace(out)) {
		t.Errorf("createKey %q run by sh: %v, stdout %q; want a key", hint.CreateKey, err, out)
	}
	if !strings.Contains(hint.CreateSession, "sandbox") || !strings.Contains(hint.CreateSession, "/v1/sessions") || !strings.Contains(hint.CreateSession, s.addr) {
		t.Errorf("createSession %q does not show how to create a sandbox session on %s", hint.CreateSession, s.addr)
	}
	for _, l := range s.stderr.lines() {
		if !json.Valid([]byte(l)) {
			t.Errorf("serve wrote a line that is not JSON on stderr: %q", l)
		}
	}

	r := runCLI(t, nil, "--data-dir", s.dataDir, "keys", "create")
	if r.code != 0 || !keyRE.MatchString(strings.TrimSuffix(r.stdout, "\n")) || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("keys create: exit %d, stdout %q: want the key alone on one line", r.code, r.stdout)
	}
	key := strings.TrimSuffix(r.stdout, "\n")
	if !strings.Contains(r.stderr, "key_") || strings.Contains(r.stderr, key) {
		t.Errorf("keys create stderr %q: want the key's id, never the key", r.stderr)
	}

	sess := s.mustCreateSandbox(t, key, sessA)
	if sess.ConnectedAt == nil || sess.CreatedAt == 0 {
		t.Errorf("created session %+v: want createdAt and connectedAt", sess)
	}

	// A send that goes sent → delivered → read.
	resp := mustStatus(t, s.do(t, "POST", "/v1/messages", key,
		map[string]string{"sessionId": sessA, "to": rcptOK, "text": "Your order #1042 has shipped"}), 202)
	if lim, rem, _ := mustRateLimitHeaders(t, resp); lim != 100 || rem > 99 {
		t.Errorf("default key: RateLimit-Limit %d, Remaining %d; want 100 and fewer than 100", lim, rem)
	}
	var q queuedJSON
	mustDecode(t, resp, &q)
	var raw map[string]any
	_ = json.Unmarshal(resp.Body, &raw)
	if len(raw) != 5 || q.Status != "queued" || !strings.HasPrefix(q.ID, "msg_") || q.SessionID != sessA || q.To != rcptOK {
		t.Fatalf("202 body %s: want exactly id, status queued, sessionId, to, createdAt", resp.Body)
	}
	if now := time.Now().Unix(); q.CreatedAt < now-5 || q.CreatedAt > now+5 {
		t.Errorf("createdAt %d is not Unix seconds near now (%d)", q.CreatedAt, now)
	}
	start := time.Now()
	m := s.mustWaitStatus(t, key, q.ID, "read", 3*time.Second)
	t.Logf("queued → read in %v", time.Since(start).Round(time.Millisecond))
	if m.Direction != "outbound" || m.SessionID != sessA || str(m.To) != rcptOK || str(m.From) != sessA ||
		m.Text != "Your order #1042 has shipped" || m.Error != nil || m.CreatedAt != q.CreatedAt || m.UpdatedAt < m.CreatedAt {
		t.Errorf("read message %+v does not match what was sent", m)
	}
	if m.WAMessageID == nil || !waIDRE.MatchString(*m.WAMessageID) {
		t.Errorf("waMessageId %s, want 3EB0 + 16–20 upper-case hex", str(m.WAMessageID))
	}
	get := s.do(t, "GET", "/v1/messages/"+q.ID, key, nil)
	var fields map[string]json.RawMessage
	mustDecode(t, get, &fields)
	for _, f := range []string{"id", "direction", "sessionId", "to", "from", "text", "status", "waMessageId", "error", "createdAt", "updatedAt"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("GET /v1/messages/{id} lacks %q: %s", f, get.Body)
		}
	}
	mustRateLimitHeaders(t, get)

	// A number ending 0001 is accepted, then fails.
	f := s.mustSend(t, key, sessA, rcptBad, "this one fails")
	fm := s.mustWaitStatus(t, key, f.ID, "failed", 3*time.Second)
	if fm.Error == nil || fm.Error.Code == "" || fm.Error.Message == "" {
		t.Errorf("failed message has error %+v, want code and message", fm.Error)
	}

	// A number ending 0000 is not on WhatsApp: 422 and nothing stored.
	mustAPIError(t, s.do(t, "POST", "/v1/messages", key, map[string]string{"sessionId": sessA, "to": rcptNot, "text": "hello?"}),
		422, "recipient_not_on_whatsapp", "to")

	// An inbound message from the sandbox.
	in := mustStatus(t, s.do(t, "POST", "/v1/sessions/"+sessA+"/sandbox/inbound", key,
		map[string]string{"from": "919812345678", "text": "Hi, is my order on its way?"}), 202)
	mustRateLimitHeaders(t, in)
	var inbound []messageJSON
	if !pollUntil(3*time.Second, func() bool {
		inbound = s.mustList(t, key, "?direction=inbound").Data
		return len(inbound) > 0
	}) {
		t.Fatalf("the sandbox inbound message did not show up within 3 s")
	}
	im := inbound[0]
	if len(inbound) != 1 || im.Status != "received" || str(im.From) != "919812345678" || str(im.To) != sessA ||
		im.SessionID != sessA || im.Text != "Hi, is my order on its way?" || im.Direction != "inbound" {
		t.Errorf("inbound messages %+v: want one, received, from 919812345678 to %s", inbound, sessA)
	}
	if got := s.mustGetMessage(t, key, im.ID); got.Status != "received" {
		t.Errorf("GET inbound message: status %q", got.Status)
	}

	// Usage counts the two accepted sends only.
	u := s.mustUsage(t, key)
	now := time.Now().UTC()
	next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	if u.Used != 2 || u.Quota != nil || u.Remaining != nil || u.Period != now.Format("2006-01") || u.ResetsAt != next.Unix() {
		t.Errorf("usage %+v: want used 2, quota and remaining null, period %s, resetsAt %d", u, now.Format("2006-01"), next.Unix())
	}

	// The session's queue is empty once everything is sent.
	var sv sessionJSON
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/sessions/"+sessA, key, nil), 200), &sv)
	if sv.Status != "connected" || sv.QueueDepth != 0 {
		t.Errorf("session %+v, want connected with queueDepth 0", sv)
	}

	// Operational endpoints need no key.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		r := mustStatus(t, s.do(t, "GET", path, "", nil), 200)
		if path == "/metrics" && (!strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(r.Body), "# TYPE ")) {
			t.Errorf("/metrics is not Prometheus text: %s", r)
		}
		if path == "/metrics" {
			// serve runs two Ps per CPU unless GOMAXPROCS says otherwise (procs.go).
			want := 2 * runtime.GOMAXPROCS(0)
			if os.Getenv("GOMAXPROCS") != "" {
				want = runtime.GOMAXPROCS(0)
			}
			if line := fmt.Sprintf("\nwalytic_go_maxprocs %d\n", want); !strings.Contains(string(r.Body), line) {
				t.Errorf("/metrics lacks %q:\n%s", strings.TrimSpace(line), r.Body)
			}
		}
	}

	// Number check.
	var nc struct {
		Results []struct {
			Number     string `json:"number"`
			OnWhatsApp bool   `json:"onWhatsApp"`
		} `json:"results"`
	}
	mustDecode(t, mustStatus(t, s.do(t, "POST", "/v1/numbers/check", key,
		map[string]any{"sessionId": sessA, "numbers": []string{rcptOK, "14155550000", rcptBad}}), 200), &nc)
	want := []struct {
		n  string
		on bool
	}{{rcptOK, true}, {"14155550000", false}, {rcptBad, true}}
	if len(nc.Results) != len(want) {
		t.Fatalf("numbers/check results %+v, want %d", nc.Results, len(want))
	}
	for i, w := range want {
		if nc.Results[i].Number != w.n || nc.Results[i].OnWhatsApp != w.on {
			t.Errorf("numbers/check result %d = %+v, want %s %v", i, nc.Results[i], w.n, w.on)
		}
	}
}

// listed is what the listing test knows about each message it made, in
// creation order.
type listed struct {
	id, session, dir, to, from, status string
	createdAt                          int64
}

// TestE2EListMessages checks every filter, the order, limit bounds, cursor
// pagination, the NDJSON export and compressed responses.
func TestE2EListMessages(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	key := s.fastKey(t)
	const (
		sessB  = "14155550123"
		rcptB  = "447700900123"
		sender = "33612345678"
	)
	s.mustCreateSandbox(t, key, sessA)
	s.mustCreateSandbox(t, key, sessB)

	var all []listed // creation order
	send := func(sess, to string) {
		q := s.mustSend(t, key, sess, to, fmt.Sprintf("message %d", len(all)))
		status := "read"
		if to == rcptBad {
			status = "failed"
		}
		all = append(all, listed{id: q.ID, session: sess, dir: "outbound", to: to, from: sess, status: status, createdAt: q.CreatedAt})
	}
	receive := func(sess string) {
		before := len(s.mustList(t, key, "?direction=inbound&limit=1000").Data)
		mustStatus(t, s.do(t, "POST", "/v1/sessions/"+sess+"/sandbox/inbound", key, map[string]string{"from": sender, "text": "hello"}), 202)
		var got []messageJSON
		if !pollUntil(3*time.Second, func() bool {
			got = s.mustList(t, key, "?direction=inbound&limit=1000").Data
			return len(got) > before
		}) {
			t.Fatalf("inbound message did not appear")
		}
		m := got[0]
		all = append(all, listed{id: m.ID, session: sess, dir: "inbound", to: sess, from: sender, status: "received", createdAt: m.CreatedAt})
	}

	// Batch 1, in one second or a few.
	for i := 0; i < 4; i++ {
		send(sessA, rcptOK)
		send(sessA, rcptB)
		send(sessB, rcptOK)
	}
	send(sessA, rcptBad)
	receive(sessA)
	send(sessA, rcptBad)
	receive(sessB)
	batch1 := len(all)
	last1 := all[batch1-1].createdAt
	for _, m := range all {
		last1 = max(last1, m.createdAt)
	}
	// Batch 2 starts in a later second, so since/until can split them.
	if !pollUntil(3*time.Second, func() bool { return time.Now().Unix() > last1 }) {
		t.Fatal("clock did not advance")
	}
	for i := 0; i < 5; i++ {
		send(sessA, rcptOK)
		send(sessB, rcptB)
	}
	t2 := all[batch1].createdAt
	if t2 <= last1 {
		t.Fatalf("batch 2 createdAt %d not after batch 1's %d", t2, last1)
	}

	// Let every send settle, so statuses are final.
	var settled []messageJSON
	if !pollUntil(5*time.Second, func() bool {
		settled = s.mustExport(t, key, "")
		for _, m := range settled {
			if m.Status == "queued" || m.Status == "sent" || m.Status == "delivered" {
				return false
			}
		}
		return len(settled) == len(all)
	}) {
		t.Fatalf("messages did not settle within 5 s: %v (%d of %d)", statusCounts(settled), len(settled), len(all))
	}

	// expect returns the ids matching pred, newest first.
	expect := func(pred func(listed) bool) []string {
		var ids []string
		for i := len(all) - 1; i >= 0; i-- {
			if pred(all[i]) {
				ids = append(ids, all[i].id)
			}
		}
		return ids
	}
	ids := func(ms []messageJSON) []string {
		out := make([]string, len(ms))
		for i, m := range ms {
			out[i] = m.ID
		}
		return out
	}
	filters := []struct {
		query string
		pred  func(listed) bool
	}{
		{"", func(listed) bool { return true }},
		{"sessionId=" + sessA, func(m listed) bool { return m.session == sessA }},
		{"sessionId=" + sessB, func(m listed) bool { return m.session == sessB }},
		{"direction=inbound", func(m listed) bool { return m.dir == "inbound" }},
		{"direction=outbound", func(m listed) bool { return m.dir == "outbound" }},
		{"status=read", func(m listed) bool { return m.status == "read" }},
		{"status=failed", func(m listed) bool { return m.status == "failed" }},
		{"status=received", func(m listed) bool { return m.status == "received" }},
		{"status=queued", func(listed) bool { return false }},
		{"to=" + rcptB, func(m listed) bool { return m.to == rcptB }},
		{"to=" + sessB, func(m listed) bool { return m.to == sessB }},
		{"from=" + sender, func(m listed) bool { return m.from == sender }},
		{"from=" + sessA, func(m listed) bool { return m.from == sessA }},
		{fmt.Sprintf("since=%d", t2), func(m listed) bool { return m.createdAt >= t2 }},
		{fmt.Sprintf("until=%d", t2), func(m listed) bool { return m.createdAt < t2 }},
		{fmt.Sprintf("since=%d&until=%d", all[0].createdAt, t2), func(m listed) bool { return m.createdAt < t2 }},
		{fmt.Sprintf("since=%d", t2+3600), func(listed) bool { return false }},
		{fmt.Sprintf("sessionId=%s&to=%s&since=%d", sessB, rcptB, t2), func(m listed) bool { return m.session == sessB && m.to == rcptB && m.createdAt >= t2 }},
		{"sessionId=" + sessA + "&direction=outbound&status=read&to=" + rcptOK, func(m listed) bool {
			return m.session == sessA && m.dir == "outbound" && m.status == "read" && m.to == rcptOK
		}},
		{"sessionId=19998887776", func(listed) bool { return false }},
		{"to=&from=", func(listed) bool { return true }}, // empty: no filter
		{"until=0", func(listed) bool { return true }},   // 0: no bound
		// Past the year 2262, where ids (Unix nanoseconds) end, up to the
		// largest int64: every message is before such an until, none after
		// such a since.
		{"until=9223372036", func(listed) bool { return true }},
		{"until=9223372037", func(listed) bool { return true }},
		{"until=92233720368", func(listed) bool { return true }},
		{"until=9223372036854775807", func(listed) bool { return true }},
		{"since=9223372037", func(listed) bool { return false }},
		{"since=9223372036854775807", func(listed) bool { return false }},
	}
	for _, f := range filters {
		want := expect(f.pred)
		l := s.mustList(t, key, "?limit=1000&"+f.query)
		if got := ids(l.Data); !slices.Equal(got, want) {
			t.Errorf("GET /v1/messages?%s: got %d ids %v\nwant %d newest first %v", f.query, len(got), got, len(want), want)
		}
		if l.NextCursor != nil {
			t.Errorf("GET /v1/messages?limit=1000&%s: nextCursor %q on the only page", f.query, *l.NextCursor)
		}
		for _, m := range l.Data {
			if m.Direction == "outbound" && (str(m.From) != m.SessionID || m.To == nil) || m.Direction == "inbound" && str(m.To) != m.SessionID {
				t.Errorf("listed message %+v: outbound from / inbound to must be the sessionId", m)
			}
		}
		if got := ids(s.mustExport(t, key, "?"+f.query)); !slices.Equal(got, want) {
			t.Errorf("NDJSON export ?%s: got %d ids, want %d newest first", f.query, len(got), len(want))
		}
	}

	// Default limit (100) covers all 29; the first page has no cursor.
	if l := s.mustList(t, key, ""); len(l.Data) != len(all) || l.NextCursor != nil {
		t.Errorf("default list: %d messages, cursor %v; want %d and null", len(l.Data), l.NextCursor, len(all))
	}

	// Limit bounds and bad parameters.
	for _, bad := range []struct{ query, code, param string }{
		{"limit=0", "invalid_request", "limit"},
		{"limit=1001", "invalid_request", "limit"},
		{"limit=-1", "invalid_request", "limit"},
		{"limit=ten", "invalid_request", "limit"},
		{"direction=sideways", "invalid_request", "direction"},
		{"status=lost", "invalid_request", "status"},
		{"sessionId=%2B919876543210", "invalid_session_id", "sessionId"},
		{"to=abc", "invalid_recipient", "to"},
		{"to=%2B919999999999", "invalid_recipient", "to"},
		{"from=12", "invalid_request", "from"},
		{"since=yesterday", "invalid_request", "since"},
		{"until=-5", "invalid_request", "until"},
		{"cursor=not-a-cursor", "invalid_request", "cursor"},
		{"colour=blue", "invalid_request", "colour"},
	} {
		r := s.do(t, "GET", "/v1/messages?"+bad.query, key, nil)
		mustAPIError(t, r, 400, bad.code, bad.param)
		mustRateLimitHeaders(t, r)
	}
	if l := s.mustList(t, key, "?limit=1"); len(l.Data) != 1 || l.Data[0].ID != all[len(all)-1].id || l.NextCursor == nil {
		t.Errorf("limit=1: want the newest message and a nextCursor, got %d messages, cursor %v", len(l.Data), l.NextCursor)
	} else {
		// A cursor continues only the listing that returned it.
		r := s.do(t, "GET", "/v1/messages?limit=1&direction=outbound&cursor="+url.QueryEscape(*l.NextCursor), key, nil)
		mustAPIError(t, r, 400, "invalid_request", "cursor")
	}

	// Cursor pagination visits every message exactly once, in order.
	for _, pg := range []struct {
		limit  int
		filter string
		pred   func(listed) bool
	}{
		{4, "", func(listed) bool { return true }},
		{1, "", func(listed) bool { return true }},
		{3, "&sessionId=" + sessA, func(m listed) bool { return m.session == sessA }},
		{2, fmt.Sprintf("&direction=outbound&until=%d", t2), func(m listed) bool { return m.dir == "outbound" && m.createdAt < t2 }},
		{len(all), "", func(listed) bool { return true }},
	} {
		want := expect(pg.pred)
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > len(all)+2 {
				t.Fatalf("pagination limit=%d%s does not end", pg.limit, pg.filter)
			}
			q := fmt.Sprintf("?limit=%d%s", pg.limit, pg.filter)
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			l := s.mustList(t, key, q)
			if len(l.Data) > pg.limit {
				t.Fatalf("page of %s has %d messages", q, len(l.Data))
			}
			got = append(got, ids(l.Data)...)
			if l.NextCursor == nil {
				break
			}
			if len(l.Data) == 0 { // only a log of over 50,000 messages gives one
				t.Fatalf("empty page with a nextCursor: %s", q)
			}
			cursor = *l.NextCursor
		}
		if !slices.Equal(got, want) {
			t.Errorf("pagination limit=%d%s visited %d ids %v\nwant %d %v", pg.limit, pg.filter, len(got), got, len(want), want)
		}
	}

	// Compressed responses decode to the same answer.
	plain := s.do(t, "GET", "/v1/messages?limit=1000", key, nil)
	if plain.Header.Get("Content-Encoding") != "" {
		t.Errorf("no Accept-Encoding, yet Content-Encoding %q", plain.Header.Get("Content-Encoding"))
	}
	var plainList messageList
	mustDecode(t, plain, &plainList)
	for _, c := range []struct{ accept, want string }{
		{"zstd", "zstd"},
		{"gzip", "gzip"},
		{"gzip, deflate, br", "gzip"},
		{"zstd;q=0, gzip", "gzip"},
		{"zstd;q=0.0, gzip", "gzip"},   // RFC 9110: q=0.0 means "not acceptable"
		{"zstd;q=0.000, gzip", "gzip"}, // likewise
		{"gzip;q=0, zstd;q=0", ""},
		{"br", ""},
		{"identity", ""},
	} {
		r := mustStatus(t, s.do(t, "GET", "/v1/messages?limit=1000", key, nil, hdr("Accept-Encoding", c.accept)), 200)
		if got := r.Header.Get("Content-Encoding"); got != c.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", c.accept, got, c.want)
			continue
		}
		if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Accept-Encoding") {
			t.Errorf("Accept-Encoding %q: no Vary: Accept-Encoding", c.accept)
		}
		body := mustDecompress(t, r.Header.Get("Content-Encoding"), r.Body)
		var l messageList
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatalf("Accept-Encoding %q: decoded body is not JSON: %v", c.accept, err)
		}
		if !slices.Equal(ids(l.Data), ids(plainList.Data)) {
			t.Errorf("Accept-Encoding %q: decoded list differs from the plain one", c.accept)
		}
	}
	for _, enc := range []string{"zstd", "gzip"} {
		r := mustStatus(t, s.do(t, "GET", "/v1/messages", key, nil, hdr("Accept", "application/x-ndjson"), hdr("Accept-Encoding", enc)), 200)
		if got := r.Header.Get("Content-Encoding"); got != enc {
			t.Errorf("NDJSON export with Accept-Encoding %s: Content-Encoding %q", enc, got)
			continue
		}
		if got := ids(mustParseNDJSON(t, mustDecompress(t, enc, r.Body))); !slices.Equal(got, expect(func(listed) bool { return true })) {
			t.Errorf("NDJSON export with %s: %d ids, want all %d newest first", enc, len(got), len(all))
		}
	}
	// One message, large enough to be worth compressing, is compressed too.
	long := s.mustSend(t, key, sessA, rcptOK, strings.Repeat("Your order has shipped. ", 150))
	for _, enc := range []string{"zstd", "gzip"} {
		r := mustStatus(t, s.do(t, "GET", "/v1/messages/"+long.ID, key, nil, hdr("Accept-Encoding", enc)), 200)
		if got := r.Header.Get("Content-Encoding"); got != enc {
			t.Errorf("GET of a 3600-character message with Accept-Encoding %s: Content-Encoding %q", enc, got)
			continue
		}
		var m messageJSON
		if err := json.Unmarshal(mustDecompress(t, enc, r.Body), &m); err != nil || m.ID != long.ID {
			t.Errorf("GET of a compressed message: %v, id %q", err, m.ID)
		}
	}
}

// mustDecompress decodes a body in the named Content-Encoding ("" = none).
func mustDecompress(t *testing.T, enc string, body []byte) []byte {
	t.Helper()
	switch enc {
	case "":
		return body
	case "zstd":
		d, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		out, err := d.DecodeAll(body, nil)
		if err != nil {
			t.Fatalf("zstd body does not decode: %v", err)
		}
		return out
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip body does not decode: %v", err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("gzip body does not decode: %v", err)
		}
		return out
	}
	t.Fatalf("unexpected Content-Encoding %q", enc)
	return nil
}
