package httpfast

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/storage"
)

const sendExample = `{"sessionId":"919876543210","to":"919999999999","text":"Your order #1042 has shipped"}`

type sendBody struct {
	SessionID *string `json:"sessionId"`
	To        *string `json:"to"`
	Text      *string `json:"text"`
}

type queuedJSON struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	SessionID string `json:"sessionId"`
	To        string `json:"to"`
	CreatedAt int64  `json:"createdAt"`
}

func (s *Server) sendMessage(ctx *fasthttp.RequestCtx, ws string) {
	body, err := decodeSendBody(ctx.PostBody())
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	switch {
	case body.SessionID == nil:
		s.writeError(ctx, required("sessionId", sendExample))
		return
	case body.To == nil:
		s.writeError(ctx, required("to", sendExample))
		return
	case body.Text == nil:
		s.writeError(ctx, required("text", sendExample))
		return
	}
	in := appliance.SendInput{SessionID: *body.SessionID, To: *body.To, Text: *body.Text,
		IdempotencyKey: string(ctx.Request.Header.Peek("Idempotency-Key"))}
	m, replay, err := s.app.Send(ctx, ws, in)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if replay {
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
	} else {
		s.metrics.messagesAccepted.Add(1)
	}
	ctx.SetStatusCode(202)
	ctx.SetContentType("application/json")
	out := appendQueuedJSON(make([]byte, 0, 160), queuedJSON{ID: m.ID, Status: appliance.StatusQueued, SessionID: m.SessionID, To: m.To, CreatedAt: m.CreatedAt})
	ctx.SetBody(append(out, '\n'))
}

type messageJSON struct {
	ID          string                `json:"id"`
	Direction   string                `json:"direction"`
	SessionID   string                `json:"sessionId"`
	To          *string               `json:"to"`
	From        *string               `json:"from"`
	FromLID     string                `json:"fromLid,omitempty"`
	Type        string                `json:"type"`
	Text        string                `json:"text"`
	Caption     string                `json:"caption,omitempty"`
	Context     *contextJSON          `json:"context,omitempty"`
	Status      string                `json:"status"`
	WAMessageID *string               `json:"waMessageId"`
	Error       *storage.MessageError `json:"error"`
	CreatedAt   int64                 `json:"createdAt"`
	UpdatedAt   int64                 `json:"updatedAt"`
}

// contextJSON names the message an inbound one quotes, reacts to, edits,
// revokes or votes in; MessageID is null when that message is not in the
// log (sent from the phone, or before the session was added).
type contextJSON struct {
	MessageID   *string `json:"messageId"`
	WAMessageID string  `json:"waMessageId"`
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toMessageJSON(m *storage.Message) messageJSON {
	out := messageJSON{
		ID: m.ID, Direction: m.Direction, SessionID: m.SessionID,
		To: strOrNil(m.To), From: strOrNil(m.From), FromLID: m.FromLID,
		Type: m.Type, Text: m.Text, Caption: m.Caption, Status: m.Status,
		Error: m.Error, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt,
	}
	if out.Type == "" {
		out.Type = "text"
	}
	if m.RefersToWAID != "" {
		out.Context = &contextJSON{MessageID: strOrNil(m.RefersTo), WAMessageID: m.RefersToWAID}
	}
	if m.Sent {
		out.WAMessageID = strOrNil(m.WAID)
	}
	return out
}

func (s *Server) getMessage(ctx *fasthttp.RequestCtx, ws, id string) {
	m, err := s.app.Message(ws, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toMessageJSON(m))
	compressBody(ctx) // a text can be 16 KiB
}

type messageListJSON struct {
	Data       []messageJSON `json:"data"`
	NextCursor *string       `json:"nextCursor"`
}

func (s *Server) listMessages(ctx *fasthttp.RequestCtx, ws string) {
	f, limit, err := parseMessageQuery(ws, ctx.QueryArgs())
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if wantsNDJSON(ctx.Request.Header.PeekAll("Accept")) {
		s.exportMessages(ctx, ws, f)
		return
	}
	page, next, err := s.app.MessagePage(ws, f, limit)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	out := messageListJSON{Data: make([]messageJSON, 0, len(page))}
	for _, m := range page {
		out.Data = append(out.Data, toMessageJSON(m))
	}
	if next != "" {
		c := makeCursor(next, messageListing(ws, f)...)
		out.NextCursor = &c
	}
	writeJSON(ctx, 200, out)
	compressBody(ctx)
}

// wantsNDJSON reports whether Accept asks for the NDJSON export: it names
// application/x-ndjson with a q-value above 0 and not below application/json's.
func wantsNDJSON(accept [][]byte) bool {
	ndjson, json := -1.0, -1.0
	for _, line := range accept {
		for part := range bytes.SplitSeq(line, []byte(",")) {
			typ, params, _ := bytes.Cut(bytes.TrimSpace(part), []byte(";"))
			switch string(bytes.ToLower(bytes.TrimSpace(typ))) {
			case "application/x-ndjson":
				ndjson = quality(params)
			case "application/json":
				json = quality(params)
			}
		}
	}
	return ndjson > 0 && ndjson >= json
}

// exportMessages streams every match as NDJSON, compressed when asked.
func (s *Server) exportMessages(ctx *fasthttp.RequestCtx, ws string, f appliance.MessageFilter) {
	enc := encodingFor(ctx)
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/x-ndjson")
	ctx.Response.Header.Add("Vary", "Accept-Encoding")
	if enc != "" {
		ctx.Response.Header.Set("Content-Encoding", enc)
	}
	app, log, rid := s.app, s.log, requestID(ctx)
	// fasthttp's WriteTimeout would bound the whole export, and cut a long
	// one off mid-stream (a client cannot tell it from the end of one
	// without reading the chunked encoding's last chunk). The deadline is
	// ours instead, moved on as the client takes the stream, so only a
	// client that takes nothing for exportIdle is dropped.
	idle := &idleDeadline{conn: ctx.Conn(), idle: s.exportIdle}
	idle.extend(time.Now())
	_ = ctx.SetWriteDeadline(idle.at)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		idle.w = w
		out, finish := encodeStream(enc, idle)
		je := json.NewEncoder(out)
		n := 0
		err := app.Messages(ws, f, func(m *storage.Message) bool {
			if je.Encode(toMessageJSON(m)) != nil {
				return false
			}
			n++
			if n%1000 == 0 {
				_ = idle.flush()
			}
			return true
		})
		if err != nil {
			log.Error("export messages", "requestId", rid, "err", err)
		}
		_ = finish()
		_ = idle.flush()
	})
}

// idleDeadline writes to an export's stream and moves the connection's
// write deadline to idle past each write (when it has moved by an eighth of
// idle or more): a write that returns means the client takes the stream.
type idleDeadline struct {
	w    *bufio.Writer
	conn net.Conn
	idle time.Duration
	at   time.Time // the deadline set last
}

func (d *idleDeadline) extend(now time.Time) {
	if d.conn == nil || (!d.at.IsZero() && now.Add(d.idle).Sub(d.at) < d.idle/8) {
		return
	}
	d.at = now.Add(d.idle)
	_ = d.conn.SetWriteDeadline(d.at)
}

// Write and flush move the deadline before writing too: reading the log
// between two writes may have taken longer than idle.
func (d *idleDeadline) Write(p []byte) (int, error) {
	d.extend(time.Now())
	n, err := d.w.Write(p)
	d.extend(time.Now())
	return n, err
}

func (d *idleDeadline) flush() error {
	d.extend(time.Now())
	err := d.w.Flush()
	d.extend(time.Now())
	return err
}

var validStatuses = map[string]bool{"queued": true, "sent": true, "delivered": true, "read": true, "failed": true, "received": true}

func parseMessageQuery(ws string, q *fasthttp.Args) (appliance.MessageFilter, int, error) {
	var f appliance.MessageFilter
	limit := 100
	var err error
	cursor := ""
	for k, v := range q.All() {
		if err != nil {
			break
		}
		val := string(v)
		switch string(k) {
		case "sessionId":
			if e := appliance.ValidateSessionID("sessionId", val); e != nil {
				err = e
			}
			f.SessionID = val
		case "direction":
			if val != "inbound" && val != "outbound" {
				err = appliance.Invalid("direction", "direction must be \"inbound\" or \"outbound\"")
			}
			f.Direction = val
		case "status":
			if !validStatuses[val] {
				err = appliance.Invalid("status", "status must be one of queued, sent, delivered, read, failed, received")
			}
			f.Status = val
		case "to":
			if val != "" {
				err = appliance.ValidateRecipient("to", val)
			}
			f.To = val
		case "from":
			if val != "" {
				err = appliance.ValidateNumberFilter("from", val)
			}
			f.From = val
		case "since", "until":
			n, e := strconv.ParseInt(val, 10, 64)
			if e != nil || n < 0 {
				err = appliance.Invalid(string(k), "%s must be a Unix time in seconds, for example 1714602000", k)
				continue
			}
			if string(k) == "since" {
				f.Since = n
			} else {
				f.Until = n
			}
		case "limit":
			n, e := strconv.Atoi(val)
			if e != nil || n < 1 || n > 1000 {
				err = appliance.Invalid("limit", "limit must be a whole number from 1 to 1000 (default 100)")
				continue
			}
			limit = n
		case "cursor":
			cursor = val
		default:
			name := string(k)
			if r := []rune(name); len(r) > 40 {
				name = string(r[:40]) // echoed in param and message: kept short
			}
			err = appliance.Invalid(name, "unknown query parameter %s: use sessionId, direction, status, to, from, since, until, limit or cursor", appliance.QuoteShort(string(k)))
		}
	}
	if err == nil && cursor != "" {
		f.Before, err = parseCursor(cursor, "msg_", " (same sessionId, direction, status, to, from, since and until)", messageListing(ws, f)...)
	}
	return f, limit, err
}

// A cursor is the id a page stopped at and a tag of the listing it belongs
// to (workspace, route and filters), so a cursor passed with other filters
// or another workspace's key is refused rather than silently continuing a
// different listing from a foreign position.
const cursorTagLen = 6

func makeCursor(next string, listing ...string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte(next), listingTag(listing)...))
}

// parseCursor returns the id in a cursor made by makeCursor for the same
// listing; ids are 24 bytes and start with prefix.
func parseCursor(cursor, prefix, filters string, listing ...string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) != 24+cursorTagLen || !strings.HasPrefix(string(raw), prefix) {
		return "", appliance.Invalid("cursor", "cursor is not one this API returned: pass nextCursor from the previous page unchanged")
	}
	if !bytes.Equal(raw[24:], listingTag(listing)) {
		return "", appliance.Invalid("cursor", "this cursor belongs to another listing: repeat the query that returned it%s, or leave cursor out to start from the newest", filters)
	}
	return string(raw[:24]), nil
}

func listingTag(listing []string) []byte {
	h := sha256.New()
	for _, s := range listing {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum(nil)[:cursorTagLen]
}

// messageListing names a message listing for its cursors.
func messageListing(ws string, f appliance.MessageFilter) []string {
	return []string{ws, "messages", f.SessionID, f.Direction, f.Status, f.To, f.From,
		strconv.FormatInt(f.Since, 10), strconv.FormatInt(f.Until, 10)}
}
