package httpfast

import (
	"encoding/json"
	"log/slog"
	"strconv"

	"github.com/valyala/fasthttp"
	"github.com/walytic/appliance/appliance"
)

// statusOf is the one table from the contract's error codes to HTTP statuses.
var statusOf = map[string]int{
	appliance.CodeMissingAPIKey:          401,
	appliance.CodeInvalidAPIKey:          401,
	appliance.CodeInvalidRequest:         400,
	appliance.CodeInvalidSessionID:       400,
	appliance.CodeInvalidRecipient:       400,
	appliance.CodeTextTooLong:            400,
	appliance.CodeSessionNotFound:        404,
	appliance.CodeMessageNotFound:        404,
	appliance.CodeNotFound:               404,
	appliance.CodeSessionNotConnected:    409,
	appliance.CodeSessionExists:          409,
	appliance.CodeSessionNotPairing:      409,
	appliance.CodeIdempotencyKeyReused:   409,
	appliance.CodeConflict:               409,
	appliance.CodeRecipientNotOnWhatsApp: 422,
	appliance.CodeRateLimited:            429,
	appliance.CodeQuotaExceeded:          429,
	appliance.CodePayloadTooLarge:        413,
	appliance.CodeInsufficientDisk:       507,
	appliance.CodeInternal:               500,
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type    string  `json:"type"`
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
}

// writeError answers with the contract's error shape. Errors that are not
// domain errors are logged and reported as a 500 without their detail.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) {
	e, ok := appliance.AsError(err)
	if !ok {
		s.log.Error("request failed", "requestId", requestID(ctx), "method", string(ctx.Method()), "path", string(ctx.Path()), "err", err)
		e = &appliance.Error{Code: appliance.CodeInternal, Type: "api_error",
			Message: "the server hit an unexpected error; it has been logged with this request's X-Request-Id: retry, and report the id if it persists"}
	}
	status, ok := statusOf[e.Code]
	if !ok {
		status = 400
	}
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	body := errorBody{Error: errorDetail{Type: e.Type, Code: e.Code, Message: e.Message}}
	if body.Error.Type == "" {
		body.Error.Type = "invalid_request_error"
	}
	if e.Param != "" {
		p := e.Param
		body.Error.Param = &p
	}
	writeJSON(ctx, status, body)
}

// writeJSON answers with v as JSON.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		ctx.SetStatusCode(500)
		ctx.SetBodyString(`{"error":{"type":"api_error","code":"internal_error","message":"the response could not be encoded","param":null}}`)
		return
	}
	ctx.SetBody(append(b, '\n'))
}
