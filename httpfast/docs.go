package httpfast

import (
	"encoding/json"
	"fmt"
	"html"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/walytic/appliance/appliance"
)

// route describes one operation of the public API. The OpenAPI document, the
// Postman collection and the HTML reference are all generated from apiRoutes,
// so they cannot disagree with each other.
type route struct {
	Method, Path, Summary string
	Auth                  string // "key", "admin" or ""
	Query                 []string
	Body                  string // JSON example of the request body
	Responses             map[int]string
}

var apiRoutes = []route{
	{"POST", "/v1/messages", "Queue a text message. 202 only after it is on disk; optional Idempotency-Key header (24 h).", "key", nil, sendExample,
		map[int]string{202: "queued", 400: "invalid_request, invalid_session_id, invalid_recipient, text_too_long", 401: "missing or invalid key", 404: "session_not_found", 409: "session_not_connected, idempotency_key_reused", 413: "payload_too_large", 422: "recipient_not_on_whatsapp", 429: "rate_limited, quota_exceeded (Retry-After)"}},
	{"GET", "/v1/messages", "List messages newest first; a page reads at most " + strconv.Itoa(appliance.ListScanBudget) + " messages, so it may hold fewer than limit with a nextCursor: follow it until null. Accept: application/x-ndjson streams every match; zstd/gzip honoured.", "key",
		[]string{"sessionId", "direction", "status", "to", "from", "since", "until", "limit", "cursor"}, "", map[int]string{200: "a page: {data, nextCursor}", 400: "invalid_request"}},
	{"GET", "/v1/messages/{id}", "One message with its status, waMessageId and error.", "key", nil, "", map[int]string{200: "the message", 404: "message_not_found"}},
	{"POST", "/v1/sessions", "Create a session (a WhatsApp number): driver whatsmeow or sandbox; optional pacing.", "key", nil, sessionExample, map[int]string{201: "the session", 400: "invalid_request, invalid_session_id", 409: "session_exists"}},
	{"GET", "/v1/sessions", "List sessions.", "key", nil, "", map[int]string{200: "{data}"}},
	{"GET", "/v1/sessions/{id}", "One session: status, statusReason, queueDepth, nextSendAt, pacing.", "key", nil, "", map[int]string{200: "the session", 404: "session_not_found"}},
	{"PATCH", "/v1/sessions/{id}", "Change a session's pacing (null: the driver's default).", "key", nil, `{"pacing":{"ratePerMinute":20,"maxJitterMs":2000,"recipientGapSeconds":10}}`, map[int]string{200: "the session", 404: "session_not_found"}},
	{"DELETE", "/v1/sessions/{id}", "Log out, delete the device state and the session; queued messages fail.", "key", nil, "", map[int]string{204: "deleted", 404: "session_not_found"}},
	{"GET", "/v1/sessions/{id}/qr", "The pairing QR code while pairing: {qr, expiresAt}.", "key", nil, "", map[int]string{200: "the code", 409: "session_not_pairing"}},
	{"GET", "/v1/sessions/{id}/qr.png", "The pairing QR code as a PNG image.", "key", []string{"size"}, "", map[int]string{200: "image/png", 409: "session_not_pairing"}},
	{"POST", "/v1/sessions/{id}/pairing-code", "An 8-character code to type on the phone instead of scanning.", "key", nil, "", map[int]string{200: `{"code":"ABCD-EFGH"}`, 409: "session_not_pairing"}},
	{"POST", "/v1/sessions/{id}/sandbox/inbound", "Sandbox only: make the session receive a text; an optional replyTo (a message id of the session) makes it a reply quoting that message. Answered once the message is on disk.", "key", nil, inboundExample, map[int]string{202: "accepted"}},
	{"POST", "/v1/numbers/check", "Which numbers are on WhatsApp (≤ 500; cached).", "key", nil, numbersExample, map[int]string{200: "{results}", 409: "session_not_connected"}},
	{"GET", "/v1/usage", "This month's quota: period, quota, used, remaining, resetsAt.", "key", nil, "", map[int]string{200: "usage"}},
	{"POST", "/v1/webhooks", "Register an endpoint; the secret is shown only in this answer.", "key", nil, webhookExample, map[int]string{201: "the endpoint with its secret", 400: "invalid_request (url, events)"}},
	{"GET", "/v1/webhooks", "List endpoints.", "key", nil, "", map[int]string{200: "{data}"}},
	{"GET", "/v1/webhooks/{id}", "One endpoint.", "key", nil, "", map[int]string{200: "the endpoint", 404: "not_found"}},
	{"PATCH", "/v1/webhooks/{id}", "Change url, events or enabled; applies to the next delivery.", "key", nil, `{"events":["*"],"enabled":true}`, map[int]string{200: "the endpoint", 404: "not_found"}},
	{"DELETE", "/v1/webhooks/{id}", "Delete an endpoint.", "key", nil, "", map[int]string{204: "deleted", 404: "not_found"}},
	{"POST", "/v1/webhooks/{id}/rotate-secret", "A new secret; the old one signs beside it for 24 h.", "key", nil, "", map[int]string{200: "the endpoint with its new secret"}},
	{"GET", "/v1/webhooks/{id}/deliveries", "Every delivery attempt, newest first.", "key", []string{"limit", "cursor"}, "", map[int]string{200: "{data, nextCursor}"}},
	{"POST", "/v1/webhooks/deliveries/{deliveryId}/redeliver", "Send a delivery again now (same event id). 404 if it or its endpoint is gone; 409 if the endpoint is disabled or no longer subscribes to the event.", "key", nil, "", map[int]string{202: "scheduled", 404: "not_found", 409: "conflict"}},
	{"POST", "/admin/v1/workspaces", "Create a workspace (admin).", "admin", nil, workspaceExample, map[int]string{201: "the workspace", 409: "conflict"}},
	{"GET", "/admin/v1/workspaces", "List workspaces (admin).", "admin", nil, "", map[int]string{200: "{data}"}},
	{"GET", "/admin/v1/workspaces/{name}", "One workspace, with its monthly quota (admin).", "admin", nil, "", map[int]string{200: "the workspace", 404: "not_found"}},
	{"PATCH", "/admin/v1/workspaces/{name}", "Set the monthly quota (0 or null: unlimited) (admin).", "admin", nil, patchWorkspaceExample, map[int]string{200: "the workspace"}},
	{"POST", "/admin/v1/workspaces/{name}/keys", "Create an API key; the key is shown only in this answer (admin).", "admin", nil, keyExample, map[int]string{201: "{id, key, name, last4, …}"}},
	{"GET", "/admin/v1/workspaces/{name}/keys", "List keys, never a key or hash (admin).", "admin", nil, "", map[int]string{200: "{data}"}},
	{"POST", "/admin/v1/keys/{id}/rotate", "New secret, same id; the old one dies on return (admin).", "admin", nil, "", map[int]string{200: "{id, key, …}"}},
	{"PATCH", "/admin/v1/keys/{id}", "Change ratePerMinute and burst (admin).", "admin", nil, patchKeyExample, map[int]string{200: "the key"}},
	{"DELETE", "/admin/v1/keys/{id}", "Revoke a key; it dies on return (admin).", "admin", nil, "", map[int]string{204: "revoked"}},
	{"GET", "/healthz", "The process is up.", "", nil, "", map[int]string{200: "ok"}},
	{"GET", "/readyz", "Storage is open and the node can serve.", "", nil, "", map[int]string{200: "ready", 503: "not ready"}},
	{"GET", "/metrics", "Prometheus metrics.", "", nil, "", map[int]string{200: "text exposition format"}},
	{"GET", "/documentation", "This reference, as a web page.", "", nil, "", map[int]string{200: "HTML"}},
	{"GET", "/openapi.json", "This reference, as OpenAPI 3.1.", "", nil, "", map[int]string{200: "the OpenAPI document"}},
	{"GET", "/documentation/postman.json", "This reference, as a Postman collection.", "", nil, "", map[int]string{200: "the Postman collection (v2.1)"}},
}

// queryParamDocs describes the query parameters whose meaning their name
// does not settle.
var queryParamDocs = map[string]string{
	"to":     "outbound messages to this number (8–15 digits); empty: no filter",
	"from":   "inbound messages from this number (8–15 digits); empty: no filter",
	"since":  "createdAt at or after this Unix time in seconds",
	"until":  "createdAt before this Unix time in seconds (exclusive); 0: no bound",
	"limit":  "page size: messages 1–1000 (default 100), deliveries 1–500 (default 50)",
	"cursor": "nextCursor of the previous page, unchanged, with the same filters",
}

var pathParam = regexp.MustCompile(`\{([a-zA-Z]+)\}`)

func exampleValue(s string) any {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	return v
}

// openAPIDoc builds the OpenAPI 3.1 document.
func openAPIDoc() map[string]any {
	paths := map[string]any{}
	for _, r := range apiRoutes {
		op := map[string]any{"summary": r.Summary, "operationId": strings.ToLower(r.Method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_", "-", "_").Replace(r.Path)}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range r.Query {
			param := map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}}
			if d := queryParamDocs[q]; d != "" {
				param["description"] = d
			}
			params = append(params, param)
		}
		if r.Method == "POST" && r.Path == "/v1/messages" {
			params = append(params, map[string]any{"name": "Idempotency-Key", "in": "header", "schema": map[string]any{"type": "string", "maxLength": 255}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch r.Auth {
		case "key":
			op["security"] = []any{map[string]any{"apiKey": []any{}}}
		case "admin":
			op["security"] = []any{map[string]any{"adminToken": []any{}}}
		default:
			op["security"] = []any{}
		}
		if r.Body != "" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{
				"schema": map[string]any{"type": "object"}, "example": exampleValue(r.Body)}}}
		}
		resp := map[string]any{}
		for code, desc := range r.Responses {
			item := map[string]any{"description": desc}
			if code >= 400 {
				item["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}
			}
			resp[fmt.Sprint(code)] = item
		}
		op["responses"] = resp
		p, _ := paths[r.Path].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[r.Path] = p
		}
		p[strings.ToLower(r.Method)] = op
	}
	errSchema := map[string]any{"type": "object", "required": []any{"error"}, "properties": map[string]any{"error": map[string]any{
		"type": "object", "required": []any{"type", "code", "message", "param"},
		"properties": map[string]any{"type": map[string]any{"type": "string"}, "code": map[string]any{"type": "string"},
			"message": map[string]any{"type": "string"}, "param": map[string]any{"type": []any{"string", "null"}}}}}}
	return map[string]any{
		"webhooks": webhookDocs(),
		"openapi":  "3.1.0",
		"info":     map[string]any{"title": "Walytic Appliance API", "version": "1", "description": "Self-hosted WhatsApp messaging API. Errors are {\"error\":{type,code,message,param}}; every response has X-Request-Id; timestamps are Unix seconds."},
		"paths":    paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"apiKey":     map[string]any{"type": "http", "scheme": "bearer", "description": "wlt_live_… API key of a workspace"},
				"adminToken": map[string]any{"type": "http", "scheme": "bearer", "description": "the token of --admin-token-file (or use the admin socket)"},
			},
			"schemas": map[string]any{"Error": errSchema},
		},
	}
}

// webhookDocs describes what a webhook endpoint receives: one POST per
// event, as in the contract's Webhooks section.
func webhookDocs() map[string]any {
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	nullable := func(desc string) map[string]any {
		return map[string]any{"type": []any{"string", "null"}, "description": desc}
	}
	event := map[string]any{
		"type":     "object",
		"required": []any{"id", "event", "sessionId", "timestamp"},
		"properties": map[string]any{
			"id":          str("event id, the same on every retry (= X-Walytic-Delivery and webhook-id): de-duplicate on it"),
			"event":       map[string]any{"type": "string", "enum": eventNames()},
			"sessionId":   str("the session's WhatsApp number"),
			"timestamp":   map[string]any{"type": "integer", "description": "Unix seconds of the event"},
			"messageId":   str("message.*: the message's id in the log"),
			"from":        nullable("message.received: the sender's number; null when only fromLid is known"),
			"fromLid":     str("message.received: the sender's LID when it could not be mapped to a number"),
			"text":        str("message.received: the text (or caption)"),
			"type":        str("message.received: text, image, video, audio, document, sticker, …"),
			"caption":     str("message.received: the caption of a media message"),
			"to":          str("message.sent/delivered/read/failed: the recipient"),
			"waMessageId": str("message.sent/delivered/read: WhatsApp's id of the message"),
			"error": map[string]any{"type": "object", "description": "message.failed: why",
				"properties": map[string]any{"code": map[string]any{"type": "string"}, "message": map[string]any{"type": "string"}}},
			"reason": str("session.*: why, where known"),
		},
	}
	header := func(name, desc string) map[string]any {
		return map[string]any{"name": name, "in": "header", "required": true, "description": desc, "schema": map[string]any{"type": "string"}}
	}
	return map[string]any{"event": map[string]any{"post": map[string]any{
		"summary": "One event, POSTed to each endpoint subscribed to it; a 2xx within 10 s is success, anything else is retried on the schedule.",
		"parameters": []any{
			header("X-Walytic-Event", "the event type"),
			header("X-Walytic-Delivery", "the event id, the same on every retry"),
			header("X-Walytic-Timestamp", "Unix seconds of this attempt"),
			header("X-Walytic-Signature", "sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret string>; one per live secret, comma-separated"),
			header("webhook-id", "Standard Webhooks: = X-Walytic-Delivery"),
			header("webhook-timestamp", "Standard Webhooks: = X-Walytic-Timestamp"),
			header("webhook-signature", "Standard Webhooks: v1,<base64 HMAC-SHA256 of \"id.timestamp.body\", keyed with the base64-decoded secret after whsec_>; one per live secret, space-separated"),
		},
		"requestBody": map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": event}}},
		"responses":   map[string]any{"2XX": map[string]any{"description": "received; any other answer, or none within 10 s, is retried"}},
	}}}
}

func eventNames() []any {
	return []any{appliance.EventMessageReceived, appliance.EventMessageSent, appliance.EventMessageDelivered,
		appliance.EventMessageRead, appliance.EventMessageFailed, appliance.EventSessionConnected,
		appliance.EventSessionDisconnected, appliance.EventSessionLoggedOut}
}

// postmanCollection builds a Postman collection (v2.1) of the same routes.
func postmanCollection() map[string]any {
	var items []any
	for _, r := range apiRoutes {
		raw := "{{baseUrl}}" + pathParam.ReplaceAllString(r.Path, ":$1")
		req := map[string]any{"method": r.Method, "url": map[string]any{"raw": raw, "host": []any{"{{baseUrl}}"},
			"path": strings.Split(strings.TrimPrefix(pathParam.ReplaceAllString(r.Path, ":$1"), "/"), "/")}, "description": r.Summary}
		switch r.Auth {
		case "key":
			req["auth"] = map[string]any{"type": "bearer", "bearer": []any{map[string]any{"key": "token", "value": "{{apiKey}}", "type": "string"}}}
		case "admin":
			req["auth"] = map[string]any{"type": "bearer", "bearer": []any{map[string]any{"key": "token", "value": "{{adminToken}}", "type": "string"}}}
		}
		if r.Body != "" {
			req["header"] = []any{map[string]any{"key": "Content-Type", "value": "application/json"}}
			req["body"] = map[string]any{"mode": "raw", "raw": r.Body}
		}
		items = append(items, map[string]any{"name": r.Method + " " + r.Path, "request": req})
	}
	return map[string]any{
		"info":     map[string]any{"name": "Walytic Appliance", "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"},
		"item":     items,
		"variable": []any{map[string]any{"key": "baseUrl", "value": "http://127.0.0.1:8080"}, map[string]any{"key": "apiKey", "value": ""}, map[string]any{"key": "adminToken", "value": ""}},
	}
}

func documentationHTML() string {
	var b strings.Builder
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Walytic Appliance API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}
pre{padding:.6rem;overflow:auto}h2{margin-top:2rem;font-size:1.05rem}.m{font-weight:700;display:inline-block;min-width:4.5rem}</style></head><body>
<h1>Walytic Appliance API</h1>
<p>Authenticate <code>/v1</code> routes with <code>Authorization: Bearer wlt_live_…</code>. Errors are <code>{"error":{"type","code","message","param"}}</code>.
Machine-readable: <a href="/openapi.json">OpenAPI 3.1</a>, <a href="/documentation/postman.json">Postman collection</a>.</p>
`)
	for _, r := range apiRoutes {
		fmt.Fprintf(&b, "<h2><span class=\"m\">%s</span><code>%s</code></h2><p>%s</p>\n", r.Method, html.EscapeString(r.Path), html.EscapeString(r.Summary))
		if len(r.Query) > 0 {
			fmt.Fprintf(&b, "<p>Query: <code>%s</code></p>\n", html.EscapeString(strings.Join(r.Query, ", ")))
		}
		if r.Body != "" {
			fmt.Fprintf(&b, "<pre>%s</pre>\n", html.EscapeString(r.Body))
		}
		b.WriteString("<ul>")
		for _, code := range []int{200, 201, 202, 204, 400, 401, 404, 409, 413, 422, 429, 503} {
			if d, ok := r.Responses[code]; ok {
				fmt.Fprintf(&b, "<li><b>%d</b> %s</li>", code, html.EscapeString(d))
			}
		}
		b.WriteString("</ul>\n")
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

type renderedDocs struct{ spec, postman, page []byte }

var docs = sync.OnceValue(func() renderedDocs {
	spec, _ := json.MarshalIndent(openAPIDoc(), "", "  ")
	postman, _ := json.MarshalIndent(postmanCollection(), "", "  ")
	return renderedDocs{spec, postman, []byte(documentationHTML())}
})

func (s *Server) serveDocs(ctx *fasthttp.RequestCtx, which string) {
	d := docs()
	spec, postman, page := d.spec, d.postman, d.page
	switch which {
	case "openapi":
		ctx.SetContentType("application/json")
		ctx.SetBody(spec)
	case "postman":
		ctx.SetContentType("application/json")
		ctx.SetBody(postman)
	default:
		ctx.SetContentType("text/html; charset=utf-8")
		ctx.SetBody(page)
	}
	compressBody(ctx)
}
