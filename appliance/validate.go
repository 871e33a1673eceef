package appliance

import (
	"unicode/utf8"
)

// MaxTextRunes is the longest text a message may carry, in Unicode code points.
const MaxTextRunes = 4096

// validNumber reports whether s is a phone number in the contract's form:
// 8–15 digits with country code, no "+", no spaces.
func validNumber(s string) bool {
	if len(s) < 8 || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidateSessionID checks a session id, with the contract's error.
func ValidateSessionID(param, s string) error {
	if !validNumber(s) {
		return newErr(CodeInvalidSessionID, param,
			"%s must be the WhatsApp number in international form: 8 to 15 digits including the country code, with no '+', spaces or dashes (for example \"919876543210\"); got %s",
			param, QuoteShort(s))
	}
	return nil
}

// ValidateRecipient checks a recipient number, with the contract's error.
func ValidateRecipient(param, s string) error {
	if !validNumber(s) {
		return newErr(CodeInvalidRecipient, param,
			"%s must be a phone number in international form: 8 to 15 digits including the country code, with no '+', spaces or dashes (for example \"919999999999\"); got %s",
			param, QuoteShort(s))
	}
	return nil
}

// ValidateNumberFilter checks a phone number a list is filtered by (such as
// from): the same form, answered as invalid_request.
func ValidateNumberFilter(param, s string) error {
	if !validNumber(s) {
		return Invalid(param, "%s must be a phone number in international form: 8 to 15 digits including the country code, with no '+', spaces or dashes (for example \"919999999999\"); got %s",
			param, QuoteShort(s))
	}
	return nil
}

// ValidateText checks a message text.
func ValidateText(s string) error {
	if s == "" {
		return Invalid("text", "text must not be empty: send 1 to %d characters, for example \"Your order #1042 has shipped\"", MaxTextRunes)
	}
	if !utf8.ValidString(s) {
		return Invalid("text", "text must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > MaxTextRunes {
		return newErr(CodeTextTooLong, "text", "text has %d characters; the limit is %d: split it into several messages", n, MaxTextRunes)
	}
	return nil
}

// validWorkspaceName: 1–64 of [a-z0-9_-], starting with a letter or digit.
func validWorkspaceName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '-' || c == '_'))
		if !ok {
			return false
		}
	}
	return true
}

// QuoteShort quotes a value for an error message, cut to keep errors short
// (the HTTP layer uses it for what it echoes too).
func QuoteShort(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "…"
	}
	if s == "" {
		return "an empty string"
	}
	return "\"" + s + "\""
}
