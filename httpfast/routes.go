package httpfast

import (
	"strings"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/storage"
)

// handlePublic routes the public listener.
func (s *Server) handlePublic(ctx *fasthttp.RequestCtx) {
	path := withoutTrailingSlash(string(ctx.Path()))
	switch path {
	case "/healthz":
		s.only(ctx, "GET", func() { s.healthz(ctx) })
		return
	case "/readyz":
		s.only(ctx, "GET", func() { s.readyz(ctx) })
		return
	case "/metrics":
		s.only(ctx, "GET", func() { s.metricsHandler(ctx) })
		return
	case "/openapi.json":
		s.only(ctx, "GET", func() { s.serveDocs(ctx, "openapi") })
		return
	case "/documentation/postman.json":
		s.only(ctx, "GET", func() { s.serveDocs(ctx, "postman") })
		return
	case "/documentation":
		s.only(ctx, "GET", func() { s.serveDocs(ctx, "html") })
		return
	}
	if strings.HasPrefix(path, "/admin/") {
		if !s.adminAuthorized(ctx) {
			s.refuseAdmin(ctx)
			return
		}
		s.routeAdmin(ctx, path)
		return
	}
	if !strings.HasPrefix(path, "/v1/") {
		s.notFound(ctx)
		return
	}
	key, ok := s.authenticate(ctx)
	if !ok {
		return
	}
	var segs [8]string
	s.routeV1(ctx, key, splitPath(segs[:0], strings.Trim(path[len("/v1/"):], "/")))
}

// withoutTrailingSlash drops one trailing slash: it is ignored on every
// route alike, so "/healthz/" and "/v1/usage/" answer as without it.
func withoutTrailingSlash(path string) string {
	if len(path) > 1 && path[len(path)-1] == '/' {
		return path[:len(path)-1]
	}
	return path
}

// splitPath is strings.Split(p, "/") appended to buf, which the caller
// keeps on its stack: no allocation for the routes' few segments.
func splitPath(buf []string, p string) []string {
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return append(buf, p)
		}
		buf = append(buf, p[:i])
		p = p[i+1:]
	}
}

func (s *Server) routeV1(ctx *fasthttp.RequestCtx, key storage.APIKey, seg []string) {
	m := method(ctx)
	ws := key.Workspace
	switch {
	case len(seg) == 1 && seg[0] == "messages":
		switch m {
		case "POST":
			s.sendMessage(ctx, ws)
		case "GET":
			s.listMessages(ctx, ws)
		default:
			s.methodNotAllowed(ctx, "GET, POST")
		}
	case len(seg) == 2 && seg[0] == "messages":
		s.only(ctx, "GET", func() { s.getMessage(ctx, ws, seg[1]) })
	case len(seg) == 1 && seg[0] == "sessions":
		switch m {
		case "POST":
			s.createSession(ctx, ws)
		case "GET":
			s.listSessions(ctx, ws)
		default:
			s.methodNotAllowed(ctx, "GET, POST")
		}
	case len(seg) == 2 && seg[0] == "sessions":
		switch m {
		case "GET":
			s.getSession(ctx, ws, seg[1])
		case "PATCH":
			s.patchSession(ctx, ws, seg[1])
		case "DELETE":
			s.deleteSession(ctx, ws, seg[1])
		default:
			s.methodNotAllowed(ctx, "GET, PATCH, DELETE")
		}
	case len(seg) == 3 && seg[0] == "sessions" && seg[2] == "qr":
		s.only(ctx, "GET", func() { s.sessionQR(ctx, ws, seg[1]) })
	case len(seg) == 3 && seg[0] == "sessions" && seg[2] == "qr.png":
		s.only(ctx, "GET", func() { s.sessionQRPNG(ctx, ws, seg[1]) })
	case len(seg) == 3 && seg[0] == "sessions" && seg[2] == "pairing-code":
		s.only(ctx, "POST", func() { s.pairingCode(ctx, ws, seg[1]) })
	case len(seg) == 4 && seg[0] == "sessions" && seg[2] == "sandbox" && seg[3] == "inbound":
		s.only(ctx, "POST", func() { s.sandboxInbound(ctx, ws, seg[1]) })
	case len(seg) == 2 && seg[0] == "numbers" && seg[1] == "check":
		s.only(ctx, "POST", func() { s.checkNumbers(ctx, ws) })
	case len(seg) == 1 && seg[0] == "webhooks":
		switch m {
		case "POST":
			s.createWebhook(ctx, ws)
		case "GET":
			s.listWebhooks(ctx, ws)
		default:
			s.methodNotAllowed(ctx, "GET, POST")
		}
	case len(seg) == 2 && seg[0] == "webhooks":
		switch m {
		case "GET":
			s.getWebhook(ctx, ws, seg[1])
		case "PATCH":
			s.patchWebhook(ctx, ws, seg[1])
		case "DELETE":
			s.deleteWebhook(ctx, ws, seg[1])
		default:
			s.methodNotAllowed(ctx, "GET, PATCH, DELETE")
		}
	case len(seg) == 3 && seg[0] == "webhooks" && seg[2] == "rotate-secret":
		s.only(ctx, "POST", func() { s.rotateWebhookSecret(ctx, ws, seg[1]) })
	case len(seg) == 3 && seg[0] == "webhooks" && seg[2] == "deliveries":
		s.only(ctx, "GET", func() { s.listDeliveries(ctx, ws, seg[1]) })
	case len(seg) == 4 && seg[0] == "webhooks" && seg[1] == "deliveries" && seg[3] == "redeliver":
		s.only(ctx, "POST", func() { s.redeliver(ctx, ws, seg[2]) })
	case len(seg) == 1 && seg[0] == "usage":
		s.only(ctx, "GET", func() { s.usage(ctx, ws) })
	default:
		s.notFound(ctx)
	}
}

// handleAdmin routes the admin socket: every /admin/v1 route, no key.
func (s *Server) handleAdmin(ctx *fasthttp.RequestCtx) {
	path := withoutTrailingSlash(string(ctx.Path()))
	if path == "/healthz" {
		s.only(ctx, "GET", func() { s.healthz(ctx) })
		return
	}
	s.routeAdmin(ctx, path)
}

func (s *Server) routeAdmin(ctx *fasthttp.RequestCtx, path string) {
	if !strings.HasPrefix(path, "/admin/v1/") {
		s.notFound(ctx)
		return
	}
	seg := strings.Split(strings.Trim(path[len("/admin/v1/"):], "/"), "/")
	m := method(ctx)
	switch {
	case len(seg) == 1 && seg[0] == "workspaces":
		switch m {
		case "POST":
			s.adminCreateWorkspace(ctx)
		case "GET":
			s.adminListWorkspaces(ctx)
		default:
			s.methodNotAllowed(ctx, "GET, POST")
		}
	case len(seg) == 2 && seg[0] == "workspaces":
		switch m {
		case "GET":
			s.adminGetWorkspace(ctx, seg[1])
		case "PATCH":
			s.adminPatchWorkspace(ctx, seg[1])
		default:
			s.methodNotAllowed(ctx, "GET, PATCH")
		}
	case len(seg) == 3 && seg[0] == "workspaces" && seg[2] == "keys":
		switch m {
		case "POST":
			s.adminCreateKey(ctx, seg[1])
		case "GET":
			s.adminListKeys(ctx, seg[1])
		default:
			s.methodNotAllowed(ctx, "GET, POST")
		}
	case len(seg) == 3 && seg[0] == "workspaces" && seg[2] == "sessions":
		if !s.workspaceExists(ctx, seg[1]) {
			return
		}
		switch m {
		case "GET":
			s.listSessions(ctx, seg[1])
		case "POST":
			s.createSession(ctx, seg[1])
		default:
			s.methodNotAllowed(ctx, "GET, POST")
		}
	case len(seg) == 4 && seg[0] == "workspaces" && seg[2] == "sessions":
		if s.workspaceExists(ctx, seg[1]) {
			s.only(ctx, "GET", func() { s.getSession(ctx, seg[1], seg[3]) })
		}
	case len(seg) == 5 && seg[0] == "workspaces" && seg[2] == "sessions" && seg[4] == "qr":
		if s.workspaceExists(ctx, seg[1]) {
			s.only(ctx, "GET", func() { s.sessionQR(ctx, seg[1], seg[3]) })
		}
	case len(seg) == 5 && seg[0] == "workspaces" && seg[2] == "sessions" && seg[4] == "pairing-code":
		if s.workspaceExists(ctx, seg[1]) {
			s.only(ctx, "POST", func() { s.pairingCode(ctx, seg[1], seg[3]) })
		}
	case len(seg) == 2 && seg[0] == "keys":
		switch m {
		case "PATCH":
			s.adminPatchKey(ctx, seg[1])
		case "DELETE":
			s.adminRevokeKey(ctx, seg[1])
		default:
			s.methodNotAllowed(ctx, "PATCH, DELETE")
		}
	case len(seg) == 3 && seg[0] == "keys" && seg[2] == "rotate":
		s.only(ctx, "POST", func() { s.adminRotateKey(ctx, seg[1]) })
	default:
		s.notFound(ctx)
	}
}

func (s *Server) only(ctx *fasthttp.RequestCtx, allow string, h func()) {
	if method(ctx) != allow {
		s.methodNotAllowed(ctx, allow)
		return
	}
	h()
}

// method is the request's method for routing: HEAD is answered as GET
// (fasthttp leaves the body out), as HTTP asks of every GET route.
func method(ctx *fasthttp.RequestCtx) string {
	if ctx.IsHead() {
		return "GET"
	}
	return string(ctx.Method())
}

func (s *Server) notFound(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, 404, errorBody{Error: errorDetail{Type: "invalid_request_error", Code: "route_not_found",
		Message: "no route " + string(ctx.Method()) + " " + string(ctx.Path()) + ": see /documentation on the API listener (--listen) for the routes"}})
}

func (s *Server) methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	writeJSON(ctx, 405, errorBody{Error: errorDetail{Type: "invalid_request_error", Code: "method_not_allowed",
		Message: string(ctx.Method()) + " is not allowed on " + string(ctx.Path()) + "; allowed: " + allow}})
}
