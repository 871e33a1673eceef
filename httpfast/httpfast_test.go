package httpfast

import (
	"encoding/json"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
)

func TestEveryDomainCodeHasAStatus(t *testing.T) {
	codes := []string{
		appliance.CodeMissingAPIKey, appliance.CodeInvalidAPIKey, appliance.CodeInvalidRequest,
		appliance.CodeInvalidSessionID, appliance.CodeInvalidRecipient, appliance.CodeTextTooLong,
		appliance.CodeSessionNotFound, appliance.CodeMessageNotFound, appliance.CodeSessionNotConnected,
		appliance.CodeSessionExists, appliance.CodeSessionNotPairing, appliance.CodeIdempotencyKeyReused,
		appliance.CodeRecipientNotOnWhatsApp, appliance.CodeRateLimited, appliance.CodeQuotaExceeded,
		appliance.CodePayloadTooLarge, appliance.CodeNotFound, appliance.CodeConflict,
		appliance.CodeInsufficientDisk, appliance.CodeInternal,
	}
	want := map[string]int{"missing_api_key": 401, "invalid_api_key": 401, "invalid_request": 400,
		"invalid_session_id": 400, "invalid_recipient": 400, "text_too_long": 400, "session_not_found": 404,
		"message_not_found": 404, "session_not_connected": 409, "session_exists": 409, "session_not_pairing": 409,
		"idempotency_key_reused": 409, "recipient_not_on_whatsapp": 422, "rate_limited": 429, "quota_exceeded": 429,
		"payload_too_large": 413, "insufficient_storage": 507}
	for _, c := range codes {
		got, ok := statusOf[c]
		if !ok {
			t.Errorf("code %s has no HTTP status", c)
		}
		if w, pinned := want[c]; pinned && got != w {
			t.Errorf("%s → %d, the contract says %d", c, got, w)
		}
	}
}

func TestDecodeBodyNamesTheField(t *testing.T) {
	cases := []struct {
		body, param, contains string
	}{
		{``, "", "JSON object"},
		{`[]`, "", "JSON object"},
		{`{"sessionId":1}`, "sessionId", "a string"},
		{`{"text":["a"]}`, "text", "a string"},
		{`{"to":"1","extra":true}`, "extra", "unknown field"},
		{`{"to":"1"} {}`, "", "exactly one"},
		{`{"to":`, "", "ends before"},
		{`{"to":"1",}`, "", "not valid JSON"},
	}
	for _, c := range cases {
		var b sendBody
		err := decodeBody([]byte(c.body), &b, sendExample)
		e, ok := appliance.AsError(err)
		if !ok || e.Code != appliance.CodeInvalidRequest || e.Param != c.param || !strings.Contains(e.Message, c.contains) {
			t.Errorf("%q: got %+v, want invalid_request param %q mentioning %q", c.body, e, c.param, c.contains)
		}
	}
	var b sendBody
	if err := decodeBody([]byte(` {"sessionId":"919876543210","to":"919999999999","text":"hi"} `), &b, sendExample); err != nil || *b.Text != "hi" {
		t.Fatalf("valid body: %v", err)
	}
}

// A body that is not UTF-8 is refused, not stored with its bytes replaced;
// escapes and multi-byte text are fine.
func TestDecodeBodyRefusesInvalidUTF8(t *testing.T) {
	for body, ok := range map[string]bool{
		"{\"sessionId\":\"919876543210\",\"to\":\"919999999999\",\"text\":\"caf\xe9\"}":                      false, // Latin-1 é
		"{\"sessionId\":\"919876543210\",\"to\":\"919999999999\",\"text\":\"\xff\xfe\"}":                     false,
		"{\"sessionId\":\"919876543210\",\"to\":\"919999999999\",\"text\":\"caf\xc3\xa9 \xf0\x9f\x93\xa6\"}": true,
		`{"sessionId":"919876543210","to":"919999999999","text":"caf\u00e9"}`:                                true,
	} {
		b, err := decodeSendBody([]byte(body))
		switch {
		case ok && err != nil:
			t.Errorf("%q: %v", body, err)
		case !ok && (err == nil || !strings.Contains(err.Error(), "UTF-8")):
			t.Errorf("%q: decoded (text %q, err %v), want an invalid_request about UTF-8", body, deref(b.Text), err)
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// An escaped half of a surrogate pair is refused like invalid UTF-8:
// encoding/json would store U+FFFD in its place. Whole pairs, and text
// that only looks like an escape, are fine.
func TestDecodeBodyRefusesLoneSurrogates(t *testing.T) {
	cases := []struct {
		text string // as it appears in the JSON
		want string // "" when refused
	}{
		{`\ud800`, ""},
		{`a\udc00b`, ""},
		{`\ud83d`, ""},
		{`\ude00\ud83d`, ""},       // the halves in the wrong order
		{`\ud83d\u0041`, ""},       // a high half, then not a low one
		{`\ud83d\ud83d\ude00`, ""}, // a high half, then a pair
		{`\ud83d\ude00`, "😀"},
		{`x\\ud800`, `x\ud800`}, // an escaped backslash, then letters
		{`\u00e9\uFFFD`, "é\uFFFD"},
	}
	for _, c := range cases {
		body := `{"sessionId":"919876543210","to":"919999999999","text":"` + c.text + `"}`
		b, err := decodeSendBody([]byte(body))
		switch {
		case c.want == "" && (err == nil || !strings.Contains(err.Error(), "surrogate")):
			t.Errorf("%s: decoded (text %q, err %v), want an invalid_request about the surrogate", body, deref(b.Text), err)
		case c.want != "" && (err != nil || *b.Text != c.want):
			t.Errorf("%s: text %q, err %v; want %q", body, deref(b.Text), err, c.want)
		}
	}
}

func FuzzDecodeSendBody(f *testing.F) {
	f.Add([]byte(sendExample))
	f.Add([]byte(`{"sessionId":null,"to":1e400,"text":{"a":[[[[]]]]}}`))
	f.Add([]byte(strings.Repeat("[", 10000)))
	f.Add([]byte("{\"text\":\"\xff\"}"))
	f.Add([]byte(`{"text":"a","text":"b"}`))
	f.Add([]byte(`{"text":"\ud800\\ud800\ud83d\ude00"}`))
	f.Add([]byte("\v{\"to\":\"1\"}\f"))
	f.Add([]byte("\u00a0{}\u0085"))
	f.Add([]byte(" \t\r\n{}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var b sendBody
		err := decodeBody(body, &b, sendExample)
		if err == nil {
			// Only JSON: no leniency encoding/json would not have.
			if !json.Valid(body) {
				t.Fatalf("accepted a body that is not JSON: %q", body)
			}
			return
		}
		e, ok := appliance.AsError(err)
		if !ok || e.Code != appliance.CodeInvalidRequest || e.Message == "" {
			t.Fatalf("decode error is not an invalid_request: %v", err)
		}
	})
}

func TestEncodingNegotiation(t *testing.T) {
	cases := map[string]string{
		"":                         "",
		"gzip":                     "gzip",
		"gzip, zstd":               "zstd",
		"zstd;q=0, gzip":           "gzip",
		"zstd;q=0.0, gzip":         "gzip",
		"zstd; q=0.000,gzip":       "gzip",
		"br, deflate":              "",
		"GZIP;q=0.5":               "gzip",
		"zstd;q=0.1,gzip":          "gzip",
		"zstd;q=0.1, gzip;q=1":     "gzip",
		"gzip;q=0.5, zstd;q=0.5":   "zstd",
		"identity, *;q=0.1":        "",
		"zstd;q=0.5, identity":     "",
		"gzip, identity":           "gzip",
		"*":                        "zstd",
		"*;q=0":                    "",
		"gzip;q=0.5, *;q=0.8":      "zstd",
		"zstd;q=bogus, gzip;q=0.2": "gzip",
		"zstd;q=NaN, gzip;q=0.2":   "gzip",
		// two header lines, as HTTP combines them into one list
		"br\ngzip":         "gzip",
		"zstd;q=0.2\ngzip": "gzip",
	}
	for in, want := range cases {
		var ctx fasthttp.RequestCtx
		for line := range strings.SplitSeq(in, "\n") {
			ctx.Request.Header.Add("Accept-Encoding", line)
		}
		if got := encodingFor(&ctx); got != want {
			t.Errorf("Accept-Encoding %q → %q, want %q", in, got, want)
		}
	}
}

func TestMessageQueryValidation(t *testing.T) {
	cases := map[string]string{
		"limit=0":            "limit",
		"limit=1001":         "limit",
		"limit=x":            "limit",
		"direction=sideways": "direction",
		"status=lost":        "status",
		"since=-1":           "since",
		"until=yesterday":    "until",
		"cursor=%%%":         "cursor",
		"sessionId=12":       "sessionId",
		"colour=blue":        "colour",
	}
	for q, param := range cases {
		var args fasthttp.Args
		args.Parse(q)
		_, _, err := parseMessageQuery("default", &args)
		if e, ok := appliance.AsError(err); !ok || e.Param != param {
			t.Errorf("%s: got %v, want an error on %s", q, err, param)
		}
	}
	var args fasthttp.Args
	args.Parse("limit=1000&direction=inbound&status=received&since=1&until=2")
	f, limit, err := parseMessageQuery("default", &args)
	if err != nil || limit != 1000 || f.Direction != "inbound" || f.Since != 1 || f.Until != 2 {
		t.Fatalf("valid query: %+v %d %v", f, limit, err)
	}
}

// TestMessageCursorContinuesOnlyItsListing: a cursor round-trips with the
// workspace and filters that made it, and is refused with any other.
func TestMessageCursorContinuesOnlyItsListing(t *testing.T) {
	const id = "msg_0123456789abcdefghij"
	f := appliance.MessageFilter{SessionID: "919876543210", Status: "read", Since: 10}
	c := makeCursor(id, messageListing("default", f)...)
	parse := func(ws, q string) (appliance.MessageFilter, error) {
		var args fasthttp.Args
		args.Parse(q + "&cursor=" + c)
		f, _, err := parseMessageQuery(ws, &args)
		return f, err
	}
	got, err := parse("default", "sessionId=919876543210&status=read&since=10&limit=5")
	if err != nil || got.Before != id {
		t.Fatalf("same listing: before %q, %v; want %q", got.Before, err, id)
	}
	for _, tc := range []struct{ ws, q string }{
		{"acme", "sessionId=919876543210&status=read&since=10"},
		{"default", "sessionId=919876543210&status=read"},
		{"default", "sessionId=919876543210&status=sent&since=10"},
		{"default", "status=read&since=10"},
		{"default", "sessionId=919876543210&status=read&since=10&until=20"},
	} {
		_, err := parse(tc.ws, tc.q)
		if e, ok := appliance.AsError(err); !ok || e.Param != "cursor" || !strings.Contains(e.Message, "another listing") {
			t.Errorf("%s %s: %v; want the cursor refused as another listing's", tc.ws, tc.q, err)
		}
	}
}

func TestDocsAreServedAndDescribeEveryRoute(t *testing.T) {
	s := New(Config{})
	get := func(path string) *fasthttp.RequestCtx {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(path)
		ctx.Request.Header.SetMethod("GET")
		s.handlePublic(&ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("GET %s: %d", path, ctx.Response.StatusCode())
		}
		return &ctx
	}
	type operation struct {
		Responses map[string]struct {
			Content map[string]struct {
				Schema struct {
					Ref string `json:"$ref"`
				} `json:"schema"`
			} `json:"content"`
		} `json:"responses"`
	}
	var spec struct {
		OpenAPI  string                          `json:"openapi"`
		Paths    map[string]map[string]operation `json:"paths"`
		Webhooks map[string]map[string]struct {
			Parameters  []struct{ Name string } `json:"parameters"`
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Properties map[string]any `json:"properties"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(get("/openapi.json").Response.Body(), &spec); err != nil || spec.OpenAPI != "3.1.0" {
		t.Fatalf("openapi.json: %v %q", err, spec.OpenAPI)
	}
	for _, r := range apiRoutes {
		op, ok := spec.Paths[r.Path][strings.ToLower(r.Method)]
		if !ok {
			t.Errorf("%s %s missing from the OpenAPI document", r.Method, r.Path)
			continue
		}
		// Every operation says what it answers; errors have the one shape.
		success := false
		for code, resp := range op.Responses {
			if code[0] == '2' {
				success = true
			}
			if code[0] >= '4' && resp.Content["application/json"].Schema.Ref != "#/components/schemas/Error" {
				t.Errorf("%s %s: response %s does not refer to the Error schema", r.Method, r.Path, code)
			}
		}
		if !success {
			t.Errorf("%s %s: no success response in the OpenAPI document (%d responses)", r.Method, r.Path, len(op.Responses))
		}
	}
	if _, ok := spec.Paths["/admin/v1/workspaces/{name}"]["get"]; !ok {
		t.Error("GET /admin/v1/workspaces/{name} is served but not documented")
	}
	hook := spec.Webhooks["event"]["post"]
	var headers []string
	for _, p := range hook.Parameters {
		headers = append(headers, p.Name)
	}
	props := hook.RequestBody.Content["application/json"].Schema.Properties
	for _, h := range []string{"X-Walytic-Signature", "webhook-signature", "webhook-id", "webhook-timestamp"} {
		if !slices.Contains(headers, h) {
			t.Errorf("the webhook's %s header is not documented (%v)", h, headers)
		}
	}
	for _, f := range []string{"id", "event", "sessionId", "timestamp", "messageId", "waMessageId", "error", "reason"} {
		if props[f] == nil {
			t.Errorf("the webhook body's %s is not documented", f)
		}
	}
	for _, want := range []string{"/v1/messages", "/v1/sessions/{id}/qr", "/v1/webhooks/deliveries/{deliveryId}/redeliver", "/v1/usage", "/v1/numbers/check",
		"/healthz", "/metrics", "/documentation", "/openapi.json", "/documentation/postman.json"} {
		if spec.Paths[want] == nil {
			t.Errorf("%s is not documented", want)
		}
	}
	var postman struct {
		Info struct{ Schema string } `json:"info"`
		Item []any                   `json:"item"`
	}
	if err := json.Unmarshal(get("/documentation/postman.json").Response.Body(), &postman); err != nil ||
		!strings.Contains(postman.Info.Schema, "v2.1.0") || len(postman.Item) != len(apiRoutes) {
		t.Fatalf("postman: %v %+v", err, postman.Info)
	}
	page := string(get("/documentation").Response.Body())
	if !strings.Contains(page, "<code>/v1/messages</code>") || !strings.Contains(page, "/openapi.json") {
		t.Fatal("documentation page lacks the routes")
	}
}

func TestSplitPathIsStringsSplit(t *testing.T) {
	for _, p := range []string{"", "messages", "messages/msg_1", "sessions/919876543210/sandbox/inbound", "a//b", "/", "a/b/c/d/e/f/g/h/i/j"} {
		var buf [8]string
		got, want := splitPath(buf[:0], p), strings.Split(p, "/")
		if !slices.Equal(got, want) {
			t.Errorf("splitPath(%q) = %q, want %q", p, got, want)
		}
	}
}

// A zstd-compressed export holds a small encoder: a burst of concurrent
// exports must not take gigabytes (the default window took ~29 MB each).
func TestExportZstdEncoderIsSmall(t *testing.T) {
	line := []byte(`{"id":"msg_33nyedh1h2n3q8e9a6z0","direction":"outbound","sessionId":"919876543210","to":"919999999999","text":"Your order has shipped","status":"read"}` + "\n")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, finish := encodeStream("zstd", io.Discard)
	for range (4 << 20) / len(line) {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	t.Logf("allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
	if got := after.TotalAlloc - before.TotalAlloc; got > 3<<20 {
		t.Fatalf("a zstd export of 4 MiB allocated %d MiB", got>>20)
	}
}

func TestWantsNDJSON(t *testing.T) {
	for in, want := range map[string]bool{
		"":                                    false,
		"application/json":                    false,
		"application/x-ndjson":                true,
		"Application/X-NDJSON; charset=utf-8": true,
		"application/json, application/x-ndjson;q=0":   false,
		"application/x-ndjson;q=0.5, application/json": false,
		"application/x-ndjson, application/json":       true,
		"*/*\napplication/x-ndjson":                    true,
	} {
		var lines [][]byte
		for l := range strings.SplitSeq(in, "\n") {
			lines = append(lines, []byte(l))
		}
		if got := wantsNDJSON(lines); got != want {
			t.Errorf("Accept %q: NDJSON %v, want %v", in, got, want)
		}
	}
}

// TestAdminSocketIgnoresATrailingSlash: as on the public listener, one
// trailing slash is ignored on the admin socket too.
func TestAdminSocketIgnoresATrailingSlash(t *testing.T) {
	s := New(Config{})
	for _, path := range []string{"/healthz", "/healthz/"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(path)
		ctx.Request.Header.SetMethod("GET")
		s.handleAdmin(&ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Errorf("GET %s on the admin socket: %d", path, ctx.Response.StatusCode())
		}
	}
}
