package httpfast

import (
	"strconv"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/storage"
)

const sessionExample = `{"sessionId":"919876543210","driver":"sandbox"}`

type sessionJSON struct {
	SessionID    string          `json:"sessionId"`
	Driver       string          `json:"driver"`
	Status       string          `json:"status"`
	StatusReason *string         `json:"statusReason"`
	CreatedAt    int64           `json:"createdAt"`
	ConnectedAt  *int64          `json:"connectedAt"`
	QueueDepth   int64           `json:"queueDepth"`
	NextSendAt   *int64          `json:"nextSendAt"`
	Pacing       *storage.Pacing `json:"pacing"` // in force; null: not paced
}

func intOrNil(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

func toSessionJSON(v appliance.SessionView) sessionJSON {
	return sessionJSON{
		SessionID: v.ID, Driver: v.Driver, Status: v.Status, StatusReason: strOrNil(v.StatusReason),
		CreatedAt: v.CreatedAt, ConnectedAt: intOrNil(v.ConnectedAt), QueueDepth: v.QueueDepth, NextSendAt: intOrNil(v.NextSendAt), Pacing: v.Pacing,
	}
}

type createSessionBody struct {
	SessionID *string         `json:"sessionId"`
	Driver    *string         `json:"driver"`
	Pacing    *storage.Pacing `json:"pacing"`
}

func (s *Server) createSession(ctx *fasthttp.RequestCtx, ws string) {
	var body createSessionBody
	if err := decodeBody(ctx.PostBody(), &body, sessionExample); err != nil {
		s.writeError(ctx, err)
		return
	}
	if body.SessionID == nil {
		s.writeError(ctx, required("sessionId", sessionExample))
		return
	}
	if body.Driver == nil {
		s.writeError(ctx, required("driver", sessionExample))
		return
	}
	if body.Pacing != nil {
		if err := appliance.ValidatePacing(body.Pacing); err != nil {
			s.writeError(ctx, err)
			return
		}
	}
	v, err := s.app.CreateSession(ws, *body.SessionID, *body.Driver)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if body.Pacing != nil {
		if v, err = s.app.SetPacing(ws, v.ID, body.Pacing); err != nil {
			s.writeError(ctx, err)
			return
		}
	}
	writeJSON(ctx, 201, toSessionJSON(v))
}

type sessionListJSON struct {
	Data []sessionJSON `json:"data"`
}

func (s *Server) listSessions(ctx *fasthttp.RequestCtx, ws string) {
	views := s.app.Sessions(ws)
	out := sessionListJSON{Data: make([]sessionJSON, 0, len(views))}
	for _, v := range views {
		out.Data = append(out.Data, toSessionJSON(v))
	}
	writeJSON(ctx, 200, out)
	compressBody(ctx)
}

func (s *Server) getSession(ctx *fasthttp.RequestCtx, ws, id string) {
	v, err := s.app.Session(ws, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toSessionJSON(v))
}

func (s *Server) deleteSession(ctx *fasthttp.RequestCtx, ws, id string) {
	if err := s.app.DeleteSession(ctx, ws, id); err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.SetStatusCode(204)
}

func (s *Server) sessionQR(ctx *fasthttp.RequestCtx, ws, id string) {
	q, err := s.app.QR(ctx, ws, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, 200, map[string]any{"qr": q.Code, "expiresAt": q.ExpiresAt})
}

func (s *Server) sessionQRPNG(ctx *fasthttp.RequestCtx, ws, id string) {
	size := 256
	if v := ctx.QueryArgs().Peek("size"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 64 || n > 1024 {
			s.writeError(ctx, appliance.Invalid("size", "size must be 64 to 1024 pixels (default 256)"))
			return
		}
		size = n
	}
	png, q, err := s.app.QRPNG(ctx, ws, id, size)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("X-QR-Expires-At", strconv.FormatInt(q.ExpiresAt, 10))
	ctx.SetContentType("image/png")
	ctx.SetBody(png)
}

func (s *Server) pairingCode(ctx *fasthttp.RequestCtx, ws, id string) {
	code, err := s.app.PairingCode(ctx, ws, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, 200, map[string]string{"code": code})
}

func (s *Server) patchSession(ctx *fasthttp.RequestCtx, ws, id string) {
	var body struct {
		Pacing *storage.Pacing `json:"pacing"`
	}
	if err := decodeBody(ctx.PostBody(), &body, `{"pacing":{"ratePerMinute":20,"maxJitterMs":2000,"recipientGapSeconds":10}}`); err != nil {
		s.writeError(ctx, err)
		return
	}
	v, err := s.app.SetPacing(ws, id, body.Pacing)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toSessionJSON(v))
}

const inboundExample = `{"from":"919999999999","text":"Hi, is my order on its way?"}`

type inboundBody struct {
	From    *string `json:"from"`
	Text    *string `json:"text"`
	ReplyTo string  `json:"replyTo"`
}

func (s *Server) sandboxInbound(ctx *fasthttp.RequestCtx, ws, id string) {
	var body inboundBody
	if err := decodeBody(ctx.PostBody(), &body, inboundExample); err != nil {
		s.writeError(ctx, err)
		return
	}
	if body.From == nil {
		s.writeError(ctx, required("from", inboundExample))
		return
	}
	if body.Text == nil {
		s.writeError(ctx, required("text", inboundExample))
		return
	}
	if err := s.app.SimulateInbound(ctx, ws, id, *body.From, *body.Text, body.ReplyTo); err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 202, map[string]string{"status": "accepted"})
}

const numbersExample = `{"sessionId":"919876543210","numbers":["919999999999","14155550000"]}`

type numbersBody struct {
	SessionID *string   `json:"sessionId"`
	Numbers   *[]string `json:"numbers"`
}

type numberJSON struct {
	Number     string `json:"number"`
	OnWhatsApp bool   `json:"onWhatsApp"`
}

func (s *Server) checkNumbers(ctx *fasthttp.RequestCtx, ws string) {
	var body numbersBody
	if err := decodeBody(ctx.PostBody(), &body, numbersExample); err != nil {
		s.writeError(ctx, err)
		return
	}
	if body.SessionID == nil {
		s.writeError(ctx, required("sessionId", numbersExample))
		return
	}
	if body.Numbers == nil {
		s.writeError(ctx, required("numbers", numbersExample))
		return
	}
	res, err := s.app.CheckNumbers(ctx, ws, *body.SessionID, *body.Numbers)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	out := struct {
		Results []numberJSON `json:"results"`
	}{Results: make([]numberJSON, len(res))}
	for i, r := range res {
		out.Results[i] = numberJSON{Number: r.Number, OnWhatsApp: r.OnWhatsApp}
	}
	writeJSON(ctx, 200, out)
	compressBody(ctx)
}

type usageJSON struct {
	Period    string `json:"period"`
	Quota     *int64 `json:"quota"`
	Used      int64  `json:"used"`
	Remaining *int64 `json:"remaining"`
	ResetsAt  int64  `json:"resetsAt"`
}

func (s *Server) usage(ctx *fasthttp.RequestCtx, ws string) {
	u, err := s.app.Usage(ws)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	out := usageJSON{Period: u.Period, Used: u.Used, ResetsAt: u.ResetsAt}
	if !u.Unlimited {
		q := u.Quota
		r := max(u.Quota-u.Used, 0)
		out.Quota, out.Remaining = &q, &r
	}
	writeJSON(ctx, 200, out)
}
