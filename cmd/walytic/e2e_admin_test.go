package main

// End-to-end tests of the admin plane through the CLI: keys, workspaces,
// exit statuses, global flags, and workspace isolation on the API.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2EKeys: rotate and revoke take effect when the CLI returns; keys list
// never shows a secret; the admin socket is private.
func TestE2EKeys(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))

	fi, err := os.Lstat(filepath.Join(s.dataDir, "admin.sock"))
	if err != nil {
		t.Fatalf("admin socket: %v", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode %v, want a socket with 0600", fi.Mode())
	}

	key := s.mustCreateKey(t, "--name", "backend", "--rate-per-minute", "120", "--burst", "7")
	other := s.mustCreateKey(t, "--name", "reports")
	id := s.mustKeyID(t, "backend")
	mustStatus(t, s.do(t, "GET", "/v1/usage", key, nil), 200)

	// keys list: limits and last4, never the key or its hash.
	listOut := s.mustCLI(t, "keys", "list")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(listOut), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("keys list: want a JSON array of 2 keys, got %q (%v)", listOut, err)
	}
	for _, k := range listed {
		for f := range k {
			if strings.Contains(strings.ToLower(f), "hash") || f == "key" || strings.Contains(strings.ToLower(f), "secret") {
				t.Errorf("keys list shows field %q", f)
			}
		}
	}
	for _, plain := range []string{key, other} {
		sum := sha256.Sum256([]byte(plain))
		for _, leak := range []string{plain, plain[9:], plain[9:40], hex.EncodeToString(sum[:]), hex.EncodeToString(sum[:])[:32]} {
			if strings.Contains(listOut, leak) {
				t.Fatalf("keys list leaks a key or its hash: %q", listOut)
			}
		}
	}
	var recs []keyRecord
	_ = json.Unmarshal([]byte(listOut), &recs)
	for _, k := range recs {
		if k.ID == id && (k.Last4 != key[len(key)-4:] || k.RatePerMinute != 120 || k.Burst != 7 || k.Workspace != "default") {
			t.Errorf("keys list entry %+v: want last4 %s, 120/min, burst 7, workspace default", k, key[len(key)-4:])
		}
	}

	// Rotate: same id, new secret, the old one dead as the CLI returns.
	out := s.mustCLI(t, "keys", "rotate", id)
	if strings.Count(out, "\n") != 1 || !keyRE.MatchString(strings.TrimSpace(out)) {
		t.Fatalf("keys rotate printed %q, want the new key alone on one line", out)
	}
	rotated := strings.TrimSpace(out)
	if rotated == key {
		t.Fatalf("rotate returned the same key")
	}
	mustAPIError(t, s.do(t, "GET", "/v1/usage", key, nil), 401, "invalid_api_key", "")
	r := mustStatus(t, s.do(t, "GET", "/v1/usage", rotated, nil), 200)
	if lim, _, _ := mustRateLimitHeaders(t, r); lim != 7 {
		t.Errorf("rotated key has RateLimit-Limit %d, want its burst 7", lim)
	}
	if got := s.mustKeyID(t, "backend"); got != id {
		t.Errorf("rotation changed the key id from %s to %s", id, got)
	}

	// Revoke: nothing on stdout, dead as the CLI returns; others unaffected.
	if out := s.mustCLI(t, "keys", "revoke", id); out != "" {
		t.Errorf("keys revoke printed %q on stdout", out)
	}
	mustAPIError(t, s.do(t, "GET", "/v1/usage", rotated, nil), 401, "invalid_api_key", "")
	mustAPIError(t, s.do(t, "GET", "/v1/usage", key, nil), 401, "invalid_api_key", "")
	mustStatus(t, s.do(t, "GET", "/v1/usage", other, nil), 200)
	if strings.Contains(s.mustCLI(t, "keys", "list"), id) {
		t.Errorf("revoked key %s still listed", id)
	}

	// Rotating and revoking many times in a row, each takes effect at once.
	cur := other
	otherID := s.mustKeyID(t, "reports")
	for i := 0; i < 5; i++ {
		next := strings.TrimSpace(s.mustCLI(t, "keys", "rotate", otherID))
		mustAPIError(t, s.do(t, "GET", "/v1/usage", cur, nil), 401, "invalid_api_key", "")
		mustStatus(t, s.do(t, "GET", "/v1/usage", next, nil), 200)
		cur = next
	}

	// Failures: exit 1, one line on stderr.
	mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "keys", "revoke", id)
	mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "keys", "rotate", "key_nonexistent")
	mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "keys", "create", "--workspace", "nosuch")
	mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "keys", "list", "--workspace", "nosuch")
	mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "workspaces", "create", "Bad Name")
	s.mustCLI(t, "workspaces", "create", "dup")
	mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "workspaces", "create", "dup")
	mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "workspaces", "set-quota", "nosuch", "5")
}

// TestE2ECLI: exit statuses, usage errors, global flags anywhere, the
// environment, and a second server on the same data directory.
func TestE2ECLI(t *testing.T) {
	dir := newDataDir(t)
	// Global flags before the subcommand, for serve too.
	s := mustStartServerArgs(t, dir, "--data-dir", dir, "serve", "--listen", "127.0.0.1:0")
	s.mustCreateKey(t, "--name", "one")
	want := s.mustCLI(t, "keys", "list")
	sock := filepath.Join(dir, "admin.sock")

	for _, form := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"--data-dir", dir, "keys", "list"}},
		{nil, []string{"keys", "list", "--data-dir", dir}},
		{nil, []string{"keys", "--data-dir", dir, "list"}},
		{nil, []string{"--data-dir=" + dir, "keys", "list"}},
		{nil, []string{"keys", "list", "--data-dir=" + dir, "--workspace", "default"}},
		{[]string{"WALYTIC_DATA_DIR=" + dir}, []string{"keys", "list"}},
		{[]string{"WALYTIC_DATA_DIR=/nonexistent"}, []string{"keys", "list", "--data-dir", dir}},
		{nil, []string{"--admin-socket", sock, "keys", "list"}},
		{nil, []string{"keys", "list", "--admin-socket", sock, "--data-dir", "/nonexistent"}},
		{[]string{"WALYTIC_ADMIN_SOCKET=" + sock}, []string{"keys", "list"}},
	} {
		r := runCLI(t, form.env, form.args...)
		if r.code != 0 || r.stdout != want {
			t.Errorf("%v walytic %s: exit %d, stdout %q, stderr %q; want exit 0 and %q", form.env, strings.Join(form.args, " "), r.code, r.stdout, r.stderr, want)
		}
	}

	// Usage errors: exit 2, one line on stderr.
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"--data-dir", dir, "keys"},
		{"--data-dir", dir, "keys", "frobnicate"},
		{"--data-dir", dir, "keys", "create", "--rate-per-minute", "lots"},
		{"--data-dir", dir, "keys", "create", "--colour", "blue"},
		{"--data-dir", dir, "keys", "create", "extra"},
		{"--data-dir", dir, "keys", "rotate"},
		{"--data-dir", dir, "keys", "revoke", "a", "b"},
		{"--data-dir", dir, "workspaces"},
		{"--data-dir", dir, "workspaces", "create"},
		{"--data-dir", dir, "workspaces", "set-quota", "default", "-5"},
		{"--data-dir", dir, "workspaces", "set-quota", "default", "many"},
		{"--data-dir", dir, "workspaces", "create", "neg", "--monthly-quota", "-3"},
		{"--data-dir", dir, "keys", "create", "--rate-per-minute", "-1"},
		{"--data-dir", dir, "keys", "create", "--burst", "2000000"},
		{"--data-dir", dir, "keys", "create", "--rate-per-minute", "0"},
		{"--data-dir", dir, "keys", "create", "--burst", "0"},
		{"--data-dir", dir, "sessions", "list", "extra"},
		{"keys", "list", "--data-dir"},
		{"serve", "--listen", "nonsense", "--data-dir", newDataDir(t)},
		{"serve", "extra", "--data-dir", newDataDir(t)},
	} {
		mustCLIFail(t, 2, nil, args...)
	}

	// Failures: exit 1, one line that says what to do.
	empty := newDataDir(t)
	line := mustCLIFail(t, 1, nil, "--data-dir", empty, "keys", "list")
	if !strings.Contains(line, "walytic serve") {
		t.Errorf("server not running: %q does not say to start `walytic serve`", line)
	}
	mustCLIFail(t, 1, nil, "--data-dir", empty, "keys", "create")
	mustCLIFail(t, 1, nil, "--admin-socket", filepath.Join(empty, "nope.sock"), "workspaces", "list")
	// Names no workspace or key can have, some of which a URL would have to
	// escape, are unknown names, not unknown routes.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "list", "--workspace", "a b"}, `no workspace named "a b"`},
		{[]string{"keys", "create", "--workspace", ".."}, `no workspace named ".."`},
		{[]string{"sessions", "list", "--workspace", "x/y"}, `no workspace named "x/y"`},
		{[]string{"workspaces", "set-quota", "ACME?", "5"}, `no workspace named "ACME?"`},
		{[]string{"workspaces", "set-quota", "nope", "5"}, `no workspace named "nope"`},
		{[]string{"keys", "revoke", "key_%41"}, `no API key with id "key_%41"`},
		{[]string{"keys", "rotate", "key_nope"}, `no API key with id "key_nope"`},
	} {
		if line := mustCLIFail(t, 1, nil, append([]string{"--data-dir", dir}, tc.args...)...); !strings.Contains(line, tc.want) {
			t.Errorf("walytic %s: %q, want %s", strings.Join(tc.args, " "), line, tc.want)
		}
	}
	if line := mustCLIFail(t, 2, nil, "--data-dir", dir, "sessions", "pair", "+91 98765"); !strings.Contains(line, "international form") {
		t.Errorf("sessions pair with a malformed number: %q", line)
	}

	// A second server on the same data directory refuses with one line.
	r := runCLI(t, nil, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0")
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "another walytic serve is using") {
		t.Errorf("second serve on a live data dir: exit %d, stderr %q; want 1 and one line naming the other server", r.code, r.stderr)
	}
	if !s.alive() {
		t.Fatalf("the first server died when a second one started")
	}
	if got := s.mustCLI(t, "keys", "list"); got != want {
		t.Errorf("after a refused second server, keys list = %q", got)
	}

	// Help and version succeed.
	for _, args := range [][]string{{"version"}, {"--version"}, {"help"}, {"--help"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || r.stdout == "" {
			t.Errorf("walytic %s: exit %d, stdout %q", args[0], r.code, r.stdout)
		}
	}
	if r := runCLI(t, nil, "version"); !strings.Contains(r.stdout, "go1.") {
		t.Errorf("version %q does not name the Go version", r.stdout)
	}
	// ... and take no arguments: a usage error, like every other command's.
	for _, args := range [][]string{{"version", "--bogus"}, {"version", "extra"}, {"--version", "x"}} {
		mustCLIFail(t, 2, nil, args...)
	}
	if r := runCLI(t, nil, "--data-dir", dir, "version"); r.code != 0 {
		t.Errorf("a global flag before version: exit %d", r.code)
	}
	// A name taken: exit 1 with what to do instead.
	s.mustCLI(t, "workspaces", "create", "acme")
	if line := mustCLIFail(t, 1, nil, "--data-dir", dir, "workspaces", "create", "acme"); !strings.Contains(line, "choose another name") {
		t.Errorf("workspace name taken: %q does not say what to do", line)
	}
	// A workspace and sessions list through the CLI.
	ws := s.mustCLI(t, "workspaces", "list")
	if !strings.Contains(ws, `"default"`) {
		t.Errorf("workspaces list %q lacks the default workspace", ws)
	}
	if out := s.mustCLI(t, "sessions", "list"); strings.TrimSpace(out) != "[]" {
		t.Errorf("sessions list on a new server = %q, want []", out)
	}
}

// TestE2EWorkspaceIsolation: a key of workspace b sees nothing of a.
func TestE2EWorkspaceIsolation(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	keyA := s.fastKey(t)
	s.mustCreateSandbox(t, keyA, sessA)
	qa := s.mustSend(t, keyA, sessA, rcptOK, "for a's customer")
	mustStatus(t, s.do(t, "POST", "/v1/sessions/"+sessA+"/sandbox/inbound", keyA, map[string]string{"from": rcptOK, "text": "to a"}), 202)
	if !pollUntil(3*time.Second, func() bool { return len(s.mustList(t, keyA, "?direction=inbound").Data) == 1 }) {
		t.Fatal("inbound message for a did not appear")
	}

	out := s.mustCLI(t, "workspaces", "create", "b")
	if !strings.Contains(out, `"name": "b"`) {
		t.Errorf("workspaces create b printed %q", out)
	}
	keyB := s.fastKey(t, "--workspace", "b")
	var recs []keyRecord
	_ = json.Unmarshal([]byte(s.mustCLI(t, "keys", "list", "--workspace", "b")), &recs)
	if len(recs) != 1 || recs[0].Workspace != "b" {
		t.Errorf("keys list --workspace b = %+v, want b's one key", recs)
	}

	mustAPIError(t, s.do(t, "GET", "/v1/sessions/"+sessA, keyB, nil), 404, "session_not_found", "sessionId")
	mustAPIError(t, s.do(t, "GET", "/v1/messages/"+qa.ID, keyB, nil), 404, "message_not_found", "id")
	mustAPIError(t, s.do(t, "POST", "/v1/messages", keyB, sendBody(sessA, rcptOK, "through a's session")), 404, "session_not_found", "sessionId")
	mustAPIError(t, s.do(t, "POST", "/v1/sessions/"+sessA+"/sandbox/inbound", keyB, map[string]string{"from": rcptOK, "text": "x"}), 404, "session_not_found", "sessionId")
	mustAPIError(t, s.do(t, "POST", "/v1/numbers/check", keyB, map[string]any{"sessionId": sessA, "numbers": []string{rcptOK}}), 404, "session_not_found", "sessionId")
	mustAPIError(t, s.do(t, "GET", "/v1/sessions/"+sessA+"/qr", keyB, nil), 404, "session_not_found", "sessionId")
	mustAPIError(t, s.do(t, "DELETE", "/v1/sessions/"+sessA, keyB, nil), 404, "session_not_found", "sessionId")
	if l := s.mustList(t, keyB, ""); len(l.Data) != 0 {
		t.Errorf("b lists a's messages: %+v", l.Data)
	}
	for _, q := range []string{"?sessionId=" + sessA, "?to=" + rcptOK, "?from=" + rcptOK, "?direction=inbound"} {
		if l := s.mustList(t, keyB, q); len(l.Data) != 0 {
			t.Errorf("b lists a's messages with %s: %+v", q, l.Data)
		}
		if ms := s.mustExport(t, keyB, q); len(ms) != 0 {
			t.Errorf("b exports a's messages with %s: %+v", q, ms)
		}
	}
	var sl struct {
		Data []sessionJSON `json:"data"`
	}
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/sessions", keyB, nil), 200), &sl)
	if len(sl.Data) != 0 {
		t.Errorf("b lists a's sessions: %+v", sl.Data)
	}
	if u := s.mustUsage(t, keyB); u.Used != 0 {
		t.Errorf("b's usage %+v counts a's send", u)
	}

	// b may have a session with the same number; it is b's own.
	s.mustCreateSandbox(t, keyB, sessA)
	qb := s.mustSend(t, keyB, sessA, "919999999998", "for b's customer")
	s.mustWaitStatus(t, keyB, qb.ID, "read", 3*time.Second)
	mustAPIError(t, s.do(t, "GET", "/v1/messages/"+qb.ID, keyA, nil), 404, "message_not_found", "id")
	if l := s.mustList(t, keyB, ""); len(l.Data) != 1 || l.Data[0].ID != qb.ID {
		t.Errorf("b's list = %+v, want only %s", l.Data, qb.ID)
	}
	if l := s.mustList(t, keyA, "?direction=outbound"); len(l.Data) != 1 || l.Data[0].ID != qa.ID {
		t.Errorf("a's list = %+v, want only %s", l.Data, qa.ID)
	}
	if ua, ub := s.mustUsage(t, keyA), s.mustUsage(t, keyB); ua.Used != 1 || ub.Used != 1 {
		t.Errorf("usage a %d, b %d; want 1 each", ua.Used, ub.Used)
	}
	// Deleting b's session leaves a's alone.
	mustStatus(t, s.do(t, "DELETE", "/v1/sessions/"+sessA, keyB, nil), 204)
	mustAPIError(t, s.do(t, "GET", "/v1/sessions/"+sessA, keyB, nil), 404, "session_not_found", "sessionId")
	mustAPIError(t, s.do(t, "POST", "/v1/messages", keyB, sendBody(sessA, rcptOK, "after delete")), 404, "session_not_found", "sessionId")
	var sa sessionJSON
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/v1/sessions/"+sessA, keyA, nil), 200), &sa)
	if sa.Status != "connected" {
		t.Errorf("a's session after b deleted its own: %+v", sa)
	}
	s.mustWaitStatus(t, keyA, s.mustSend(t, keyA, sessA, rcptOK, "still here").ID, "read", 3*time.Second)

	// The CLI lists sessions per workspace.
	var cliSessions []sessionJSON
	if err := json.Unmarshal([]byte(s.mustCLI(t, "sessions", "list", "--workspace", "b")), &cliSessions); err != nil || len(cliSessions) != 0 {
		t.Errorf("sessions list --workspace b = %+v (%v), want []", cliSessions, err)
	}
	if err := json.Unmarshal([]byte(s.mustCLI(t, "sessions", "list")), &cliSessions); err != nil || len(cliSessions) != 1 || cliSessions[0].SessionID != sessA {
		t.Errorf("sessions list (default) = %+v (%v), want a's session", cliSessions, err)
	}
}

// TestE2EAdminOnTheListener: with --admin-token-file the admin plane answers
// on --listen to that token only; a missing token is missing_api_key, a
// wrong one invalid_api_key, checked before a body's size; keys it makes
// and rotates work on /v1 at once.
func TestE2EAdminOnTheListener(t *testing.T) {
	dir := newDataDir(t)
	token := "admin-token-0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustStartServer(t, dir, "--admin-token-file", tokenFile)

	mustAPIError(t, s.do(t, "GET", "/admin/v1/workspaces", "", nil), 401, "missing_api_key", "")
	mustAPIError(t, s.do(t, "GET", "/admin/v1/workspaces", "not-the-admin-token", nil), 401, "invalid_api_key", "")
	var wss struct{ Data []map[string]any }
	mustDecode(t, mustStatus(t, s.do(t, "GET", "/admin/v1/workspaces", token, nil), 200), &wss)
	if len(wss.Data) != 1 || wss.Data[0]["name"] != "default" {
		t.Errorf("workspaces over HTTP: %v, want only default", wss.Data)
	}

	var created struct{ ID, Key string }
	mustDecode(t, mustStatus(t, s.do(t, "POST", "/admin/v1/workspaces/default/keys", token, map[string]any{"name": "http"}), 201), &created)
	mustStatus(t, s.do(t, "GET", "/v1/usage", created.Key, nil), 200)
	var rotated struct{ ID, Key string }
	mustDecode(t, mustStatus(t, s.do(t, "POST", "/admin/v1/keys/"+created.ID+"/rotate", token, nil), 200), &rotated)
	if rotated.ID != created.ID || rotated.Key == created.Key {
		t.Errorf("rotate: id %q key changed %v, want the same id and a new key", rotated.ID, rotated.Key != created.Key)
	}
	mustAPIError(t, s.do(t, "GET", "/v1/usage", created.Key, nil), 401, "invalid_api_key", "")
	mustStatus(t, s.do(t, "GET", "/v1/usage", rotated.Key, nil), 200)

	// A rate lowered after the burst is used gives no second burst: the
	// requests used stay used, and come back one every 10 s.
	for i := 0; s.do(t, "GET", "/v1/usage", rotated.Key, nil).Status == 200; i++ {
		if i > 200 {
			t.Fatal("a default key was never limited")
		}
	}
	mustStatus(t, s.do(t, "PATCH", "/admin/v1/keys/"+rotated.ID, token, map[string]any{"ratePerMinute": 6}), 200)
	r := s.do(t, "GET", "/v1/usage", rotated.Key, nil)
	mustAPIError(t, r, 429, "rate_limited", "")
	if wait, _ := strconv.Atoi(r.Header.Get("Retry-After")); wait < 5 || wait > 10 {
		t.Errorf("Retry-After %q at 6/min with the burst used; want about 10 s", r.Header.Get("Retry-After"))
	}

	// PATCH leaves out what it does not name; null is unlimited.
	mustStatus(t, s.do(t, "POST", "/admin/v1/workspaces", token, map[string]any{"name": "acme", "monthlyQuota": 5}), 201)
	var w struct{ MonthlyQuota *int64 }
	mustDecode(t, mustStatus(t, s.do(t, "PATCH", "/admin/v1/workspaces/acme", token, map[string]any{}), 200), &w)
	if w.MonthlyQuota == nil || *w.MonthlyQuota != 5 {
		t.Errorf("PATCH {} changed the quota to %v, want 5 kept", w.MonthlyQuota)
	}
	mustDecode(t, mustStatus(t, s.do(t, "PATCH", "/admin/v1/workspaces/acme", token, `{"monthlyQuota":null}`), 200), &w)
	if w.MonthlyQuota != nil {
		t.Errorf("PATCH monthlyQuota null: quota %d, want null (unlimited)", *w.MonthlyQuota)
	}
	mustAPIError(t, s.do(t, "PATCH", "/admin/v1/workspaces/acme", token, `{"monthlyQuota":"lots"}`), 400, "invalid_request", "monthlyQuota")
	mustAPIError(t, s.do(t, "PATCH", "/admin/v1/workspaces/nope", token, map[string]any{}), 404, "not_found", "workspace")

	// Over 1 MiB: without the token, refused unread (headers alone sent);
	// with it, read and answered 413.
	for auth, code := range map[string]string{"": "missing_api_key", "Authorization: Bearer not-the-admin-token\r\n": "invalid_api_key",
		// Two headers, even both right, are refused: which one counts would
		// depend on who reads the request.
		"Authorization: Bearer " + token + "\r\nAuthorization: Bearer " + token + "\r\n": "invalid_api_key"} {
		head := fmt.Sprintf("POST /admin/v1/workspaces HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n", s.addr, auth, 2<<20)
		r, err := rawExchange(s.addr, []byte(head), 10*time.Second)
		if err != nil {
			t.Fatalf("admin, 2 MiB declared, auth %q: %v", auth, err)
		}
		mustAPIError(t, r, 401, code, "")
	}
	mustAPIError(t, s.do(t, "POST", "/admin/v1/workspaces", token, strings.Repeat("x", 1<<20+1)), 413, "payload_too_large", "")
}

// TestE2EPairGivesUp: offline, `sessions pair` follows a whatsmeow session
// that cannot reach WhatsApp, then gives up at --timeout with a line that
// says what to do; a sandbox session needs no pairing.
func TestE2EPairGivesUp(t *testing.T) {
	s := mustStartServer(t, newDataDir(t))
	const number = "919876543299"
	r := runCLI(t, nil, "--data-dir", s.dataDir, "sessions", "pair", number, "--timeout", "2s")
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if r.code != 1 || r.stdout != "" || !strings.Contains(last, "gave up after 2s") || !strings.Contains(last, "walytic sessions pair "+number) {
		t.Errorf("pair offline: exit %d, stdout %q, last line %q: want exit 1 and a line saying to run it again", r.code, r.stdout, last)
	}
	key := s.fastKey(t)
	s.mustCreateSandbox(t, key, sessA)
	if line := mustCLIFail(t, 1, nil, "--data-dir", s.dataDir, "sessions", "pair", sessA); !strings.Contains(line, "sandbox driver") {
		t.Errorf("pair of a sandbox session: %q", line)
	}
}

// TestE2EAdminTokenFileOpenToOthers: serve warns when other users can read
// the admin token file, and when it makes an open data directory private.
func TestE2EAdminTokenFileOpenToOthers(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte("admin-token-0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokenFile, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := newDataDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := mustStartServer(t, dir, "--admin-token-file", tokenFile)
	if !pollUntil(5*time.Second, func() bool { return strings.Contains(s.stderr.String(), "can be read by other users") }) {
		t.Errorf("no warning for a token file of mode 0644 in %q", s.stderr.String())
	}
	if !strings.Contains(s.stderr.String(), "it is now private") {
		t.Errorf("no warning for a data directory of mode 0755 in %q", s.stderr.String())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}
