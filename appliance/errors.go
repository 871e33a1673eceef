package appliance

import (
	"errors"
	"fmt"
)

// Error codes of the public contract. httpfast maps each to its HTTP status
// in one table; the domain only names them.
const (
	CodeMissingAPIKey          = "missing_api_key"
	CodeInvalidAPIKey          = "invalid_api_key"
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidSessionID       = "invalid_session_id"
	CodeInvalidRecipient       = "invalid_recipient"
	CodeTextTooLong            = "text_too_long"
	CodeSessionNotFound        = "session_not_found"
	CodeMessageNotFound        = "message_not_found"
	CodeSessionNotConnected    = "session_not_connected"
	CodeSessionExists          = "session_exists"
	CodeSessionNotPairing      = "session_not_pairing"
	CodeIdempotencyKeyReused   = "idempotency_key_reused"
	CodeRecipientNotOnWhatsApp = "recipient_not_on_whatsapp"
	CodeRateLimited            = "rate_limited"
	CodeQuotaExceeded          = "quota_exceeded"
	CodePayloadTooLarge        = "payload_too_large"
	// Codes beyond the contract's table, for cases it does not name.
	CodeNotFound         = "not_found"            // admin plane: workspace or key; API: webhook endpoint or delivery
	CodeConflict         = "conflict"             // admin plane: name taken
	CodeInsufficientDisk = "insufficient_storage" // 507: the disk is full, nothing was stored
	CodeInternal         = "internal_error"
)

// Error is a domain error that the API reports to the caller as is.
type Error struct {
	Code    string
	Message string // a sentence the person can act on
	Param   string // the offending field, when there is one
	// RetryAfter is the number of whole seconds to wait, for 429s.
	RetryAfter int
	// Type groups codes for clients ("invalid_request_error", …); set by newErr.
	Type string
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Param, e.Message)
	}
	return e.Code + ": " + e.Message
}

func newErr(code, param, format string, args ...any) *Error {
	return &Error{Code: code, Param: param, Message: fmt.Sprintf(format, args...), Type: typeOf(code)}
}

// Invalid builds an invalid_request error naming the field; exported for the
// HTTP layer's body decoding, which reports through the same type.
func Invalid(param, format string, args ...any) *Error {
	return newErr(CodeInvalidRequest, param, format, args...)
}

// AsError returns the domain error inside err, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

func typeOf(code string) string {
	switch code {
	case CodeMissingAPIKey, CodeInvalidAPIKey:
		return "authentication_error"
	case CodeRateLimited, CodeQuotaExceeded:
		return "rate_limit_error"
	case CodeSessionNotFound, CodeMessageNotFound, CodeNotFound:
		return "not_found_error"
	case CodeSessionNotConnected, CodeSessionExists, CodeSessionNotPairing, CodeIdempotencyKeyReused, CodeConflict:
		return "conflict_error"
	case CodeInternal, CodeInsufficientDisk:
		return "api_error"
	}
	return "invalid_request_error"
}
