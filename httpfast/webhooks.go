package httpfast

import (
	"strconv"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/storage"
)

const webhookExample = `{"url":"https://example.com/walytic","events":["message.received","message.read"]}`

type webhookJSON struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Enabled        bool     `json:"enabled"`
	DisabledReason *string  `json:"disabledReason,omitempty"`
	Secret         string   `json:"secret,omitempty"` // only on create and rotate
	CreatedAt      int64    `json:"createdAt"`
	UpdatedAt      int64    `json:"updatedAt"`
}

func toWebhookJSON(w storage.Webhook, secret string) webhookJSON {
	return webhookJSON{ID: w.ID, URL: w.URL, Events: w.Events, Enabled: w.Enabled, DisabledReason: strOrNil(w.DisabledReason),
		Secret: secret, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
}

type webhookBody struct {
	URL     *string   `json:"url"`
	Events  *[]string `json:"events"`
	Enabled *bool     `json:"enabled"`
}

func (s *Server) createWebhook(ctx *fasthttp.RequestCtx, ws string) {
	var body webhookBody
	if err := decodeBody(ctx.PostBody(), &body, webhookExample); err != nil {
		s.writeError(ctx, err)
		return
	}
	if body.URL == nil {
		s.writeError(ctx, required("url", webhookExample))
		return
	}
	events := []string{"*"}
	if body.Events != nil {
		events = *body.Events
	}
	w, secret, err := s.app.CreateWebhook(ws, *body.URL, events)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if body.Enabled != nil && !*body.Enabled {
		if w, err = s.app.UpdateWebhook(ws, w.ID, appliance.WebhookPatch{Enabled: body.Enabled}); err != nil {
			s.writeError(ctx, err)
			return
		}
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, 201, toWebhookJSON(w, secret))
}

func (s *Server) listWebhooks(ctx *fasthttp.RequestCtx, ws string) {
	list := s.app.Webhooks(ws)
	out := struct {
		Data []webhookJSON `json:"data"`
	}{Data: make([]webhookJSON, 0, len(list))}
	for _, w := range list {
		out.Data = append(out.Data, toWebhookJSON(w, ""))
	}
	writeJSON(ctx, 200, out)
}

func (s *Server) getWebhook(ctx *fasthttp.RequestCtx, ws, id string) {
	w, err := s.app.Webhook(ws, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toWebhookJSON(w, ""))
}

func (s *Server) patchWebhook(ctx *fasthttp.RequestCtx, ws, id string) {
	var body webhookBody
	if err := decodeBody(ctx.PostBody(), &body, `{"url":"https://example.com/new","events":["*"],"enabled":true}`); err != nil {
		s.writeError(ctx, err)
		return
	}
	w, err := s.app.UpdateWebhook(ws, id, appliance.WebhookPatch{URL: body.URL, Events: body.Events, Enabled: body.Enabled})
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toWebhookJSON(w, ""))
}

func (s *Server) deleteWebhook(ctx *fasthttp.RequestCtx, ws, id string) {
	if err := s.app.DeleteWebhook(ws, id); err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.SetStatusCode(204)
}

func (s *Server) rotateWebhookSecret(ctx *fasthttp.RequestCtx, ws, id string) {
	w, secret, err := s.app.RotateWebhookSecret(ws, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, 200, toWebhookJSON(w, secret))
}

type attemptJSON struct {
	ID          string  `json:"id"`
	DeliveryID  string  `json:"deliveryId"`
	EventID     string  `json:"eventId"`
	Event       string  `json:"event"`
	Attempt     *int    `json:"attempt"`     // null: the delivery ended without this attempt being made
	AttemptedAt int64   `json:"attemptedAt"` // Unix seconds, as every timestamp of the API
	StatusCode  *int    `json:"statusCode"`
	LatencyMs   int64   `json:"latencyMs"`
	Error       *string `json:"error"`
	NextRetryAt *int64  `json:"nextRetryAt"`
	State       string  `json:"state"`
}

func (s *Server) listDeliveries(ctx *fasthttp.RequestCtx, ws, id string) {
	q := ctx.QueryArgs()
	limit := 50
	if v := q.Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > 500 {
			s.writeError(ctx, appliance.Invalid("limit", "limit must be a whole number from 1 to 500 (default 50)"))
			return
		}
		limit = n
	}
	cursor := ""
	if v := q.Peek("cursor"); len(v) > 0 {
		var err error
		if cursor, err = parseCursor(string(v), "att_", " (same webhook)", ws, "deliveries", id); err != nil {
			s.writeError(ctx, err)
			return
		}
	}
	list, next, err := s.app.WebhookAttempts(ws, id, cursor, limit)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	out := struct {
		Data       []attemptJSON `json:"data"`
		NextCursor *string       `json:"nextCursor"`
	}{Data: make([]attemptJSON, 0, len(list))}
	for _, a := range list {
		j := attemptJSON{ID: a.ID, DeliveryID: a.DeliveryID, EventID: a.EventID, Event: a.EventType,
			AttemptedAt: a.At / 1000, LatencyMs: a.LatencyMs, Error: strOrNil(a.Error), NextRetryAt: intOrNil(a.NextRetryAt), State: a.State}
		if a.Number > 0 {
			n := a.Number
			j.Attempt = &n
		}
		if a.StatusCode != 0 {
			code := a.StatusCode
			j.StatusCode = &code
		}
		out.Data = append(out.Data, j)
	}
	if next != "" {
		c := makeCursor(next, ws, "deliveries", id)
		out.NextCursor = &c
	}
	writeJSON(ctx, 200, out)
	compressBody(ctx)
}

func (s *Server) redeliver(ctx *fasthttp.RequestCtx, ws, deliveryID string) {
	d, err := s.app.Redeliver(ws, deliveryID)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 202, map[string]string{"deliveryId": d.ID, "eventId": d.EventID, "state": d.State})
}
