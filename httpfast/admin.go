package httpfast

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
	"github.com/walytic/appliance/storage"
)

type workspaceJSON struct {
	Name         string `json:"name"`
	MonthlyQuota *int64 `json:"monthlyQuota"` // null = unlimited
	CreatedAt    int64  `json:"createdAt"`
}

func toWorkspaceJSON(w storage.Workspace) workspaceJSON {
	return workspaceJSON{Name: w.Name, MonthlyQuota: intOrNil(w.MonthlyQuota), CreatedAt: w.CreatedAt}
}

const workspaceExample = `{"name":"acme","monthlyQuota":10000}`

type workspaceBody struct {
	Name         *string `json:"name"`
	MonthlyQuota *int64  `json:"monthlyQuota"`
}

func (s *Server) adminCreateWorkspace(ctx *fasthttp.RequestCtx) {
	var body workspaceBody
	if err := decodeBody(ctx.PostBody(), &body, workspaceExample); err != nil {
		s.writeError(ctx, err)
		return
	}
	if body.Name == nil {
		s.writeError(ctx, required("name", workspaceExample))
		return
	}
	var quota int64
	if body.MonthlyQuota != nil {
		quota = *body.MonthlyQuota
	}
	w, err := s.app.CreateWorkspace(*body.Name, quota)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 201, toWorkspaceJSON(w))
}

func (s *Server) adminListWorkspaces(ctx *fasthttp.RequestCtx) {
	ws := s.app.Workspaces()
	out := struct {
		Data []workspaceJSON `json:"data"`
	}{Data: make([]workspaceJSON, 0, len(ws))}
	for _, w := range ws {
		out.Data = append(out.Data, toWorkspaceJSON(w))
	}
	writeJSON(ctx, 200, out)
}

func (s *Server) adminGetWorkspace(ctx *fasthttp.RequestCtx, name string) {
	w, err := s.app.Workspace(name)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toWorkspaceJSON(w))
}

const patchWorkspaceExample = `{"monthlyQuota":10000}`

func (s *Server) adminPatchWorkspace(ctx *fasthttp.RequestCtx, name string) {
	var body struct {
		// Raw, to tell an absent field (leave the quota) from null
		// (unlimited).
		MonthlyQuota json.RawMessage `json:"monthlyQuota"`
	}
	if err := decodeBody(ctx.PostBody(), &body, patchWorkspaceExample); err != nil {
		s.writeError(ctx, err)
		return
	}
	if len(body.MonthlyQuota) == 0 {
		w, err := s.app.Workspace(name) // nothing to change
		if err != nil {
			s.writeError(ctx, err)
			return
		}
		writeJSON(ctx, 200, toWorkspaceJSON(w))
		return
	}
	var quota *int64 // null: unlimited
	if err := json.Unmarshal(body.MonthlyQuota, &quota); err != nil {
		s.writeError(ctx, appliance.Invalid("monthlyQuota", "monthlyQuota must be a whole number of messages per month, or 0 or null for unlimited; for example %s", patchWorkspaceExample))
		return
	}
	w, err := s.app.SetQuota(name, derefOr0(quota))
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toWorkspaceJSON(w))
}

type keyJSON struct {
	ID            string `json:"id"`
	Key           string `json:"key,omitempty"` // only when created or rotated
	Workspace     string `json:"workspace"`
	Name          string `json:"name"`
	Last4         string `json:"last4"`
	RatePerMinute int    `json:"ratePerMinute"`
	Burst         int    `json:"burst"`
	CreatedAt     int64  `json:"createdAt"`
	RotatedAt     *int64 `json:"rotatedAt"`
}

func toKeyJSON(k storage.APIKey, plaintext string) keyJSON {
	l := appliance.EffectiveLimits(k)
	return keyJSON{ID: k.ID, Key: plaintext, Workspace: k.Workspace, Name: k.Name, Last4: k.Last4,
		RatePerMinute: l.PerMinute, Burst: l.Burst, CreatedAt: k.CreatedAt, RotatedAt: intOrNil(k.RotatedAt)}
}

const keyExample = `{"name":"backend","ratePerMinute":60,"burst":100}`

type keyBody struct {
	Name          *string `json:"name"`
	RatePerMinute *int    `json:"ratePerMinute"`
	Burst         *int    `json:"burst"`
}

func (s *Server) adminCreateKey(ctx *fasthttp.RequestCtx, ws string) {
	var body keyBody
	if len(ctx.PostBody()) > 0 {
		if err := decodeBody(ctx.PostBody(), &body, keyExample); err != nil {
			s.writeError(ctx, err)
			return
		}
	}
	name := ""
	if body.Name != nil {
		name = *body.Name
	}
	plain, k, err := s.app.CreateKey(ws, name, appliance.KeyLimits{RatePerMinute: body.RatePerMinute, Burst: body.Burst})
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, 201, toKeyJSON(k, plain))
}

func (s *Server) adminListKeys(ctx *fasthttp.RequestCtx, ws string) {
	keys, err := s.app.Keys(ws)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	out := struct {
		Data []keyJSON `json:"data"`
	}{Data: make([]keyJSON, 0, len(keys))}
	for _, k := range keys {
		out.Data = append(out.Data, toKeyJSON(k, ""))
	}
	writeJSON(ctx, 200, out)
}

func (s *Server) adminRotateKey(ctx *fasthttp.RequestCtx, id string) {
	plain, k, err := s.app.RotateKey(id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, 200, toKeyJSON(k, plain))
}

const patchKeyExample = `{"ratePerMinute":600,"burst":1000}`

func (s *Server) adminPatchKey(ctx *fasthttp.RequestCtx, id string) {
	var body struct {
		RatePerMinute *int `json:"ratePerMinute"`
		Burst         *int `json:"burst"`
	}
	if err := decodeBody(ctx.PostBody(), &body, patchKeyExample); err != nil {
		s.writeError(ctx, err)
		return
	}
	k, err := s.app.SetKeyLimits(id, appliance.KeyLimits{RatePerMinute: body.RatePerMinute, Burst: body.Burst})
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	writeJSON(ctx, 200, toKeyJSON(k, ""))
}

func (s *Server) adminRevokeKey(ctx *fasthttp.RequestCtx, id string) {
	if err := s.app.RevokeKey(id); err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.SetStatusCode(204)
}

// workspaceExists answers not_found for an unknown workspace.
func (s *Server) workspaceExists(ctx *fasthttp.RequestCtx, ws string) bool {
	if _, err := s.app.Workspace(ws); err != nil {
		s.writeError(ctx, err)
		return false
	}
	return true
}

func derefOr0(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
