package httpfast

import (
	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
)

const sessionExample = `{"sessionId":"919876543210","driver":"sandbox"}`

type sessionJSON struct {
	SessionID    string  `json:"sessionId"`
	Driver       string  `json:"driver"`
	Status       string  `json:"status"`
	StatusReason *string `json:"statusReason"`
	CreatedAt    int64   `json:"createdAt"`
	ConnectedAt  *int64  `json:"connectedAt"`
	QueueDepth   int64   `json:"queueDepth"`
	NextSendAt   *int64  `json:"nextSendAt"`
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
		CreatedAt: v.CreatedAt, ConnectedAt: intOrNil(v.ConnectedAt), QueueDepth: v.QueueDepth, NextSendAt: intOrNil(v.NextSendAt),
	}
}

type createSessionBody struct {
	SessionID *string `json:"sessionId"`
	Driver    *string `json:"driver"`
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
	v, err := s.app.CreateSession(ws, *body.SessionID, *body.Driver)
	if err != nil {
		s.writeError(ctx, err)
		return
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

// sessionQR answers QR and pairing-code requests. Only sessions that are
// pairing have either; every session this build can create pairs at once
// or not at all, so the answer is session_not_pairing with its status.
func (s *Server) sessionQR(ctx *fasthttp.RequestCtx, ws, id string) {
	v, err := s.app.Session(ws, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.writeError(ctx, &appliance.Error{Code: appliance.CodeSessionNotPairing, Type: "conflict_error", Param: "sessionId",
		Message: "session " + id + " is " + v.Status + ", not pairing: QR codes and pairing codes exist only while a whatsmeow session waits to be paired"})
}

const inboundExample = `{"from":"919999999999","text":"Hi, is my order on its way?"}`

type inboundBody struct {
	From *string `json:"from"`
	Text *string `json:"text"`
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
	if err := s.app.SimulateInbound(ws, id, *body.From, *body.Text); err != nil {
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
