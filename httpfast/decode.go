package httpfast

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/walytic/appliance/appliance"
)

// jsonSpace is the whitespace JSON allows around a value (RFC 8259).
const jsonSpace = " \t\r\n"

// decodeBody reads a JSON object into v (a pointer to a struct whose fields
// are pointers, so absent fields are nil). It rejects unknown fields, wrong
// types and trailing data with an invalid_request naming the field.
func decodeBody(body []byte, v any, example string) error {
	trimmed := bytes.Trim(body, jsonSpace) // not TrimSpace: \v, NBSP and the like are no JSON whitespace
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return appliance.Invalid("", "the request body must be a JSON object, for example %s", example)
	}
	// encoding/json would turn invalid bytes into U+FFFD and store a text
	// other than the one sent; JSON is UTF-8, so refuse it instead.
	if !utf8.Valid(trimmed) {
		return appliance.Invalid("", "the request body is not valid UTF-8: send the JSON (and the text in it) encoded as UTF-8")
	}
	// The same for an escaped half of a UTF-16 surrogate pair, which is
	// no character either.
	if at := loneSurrogate(trimmed); at >= 0 {
		return appliance.Invalid("", "the request body escapes half a UTF-16 surrogate pair at byte %d (%s), which is no character: escape a character beyond U+FFFF as a whole pair, or send it as UTF-8", at, trimmed[at:at+6])
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, example)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return appliance.Invalid("", "the request body must hold exactly one JSON object, for example %s", example)
	}
	return nil
}

func jsonError(err error, example string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return appliance.Invalid("", "the request body must be a JSON object, for example %s", example)
		}
		return appliance.Invalid(field, "%s must be %s, not a JSON %s; for example %s", field, describeType(typeErr.Type.String()), typeErr.Value, example)
	case errors.As(err, &syntaxErr):
		return appliance.Invalid("", "the request body is not valid JSON (at byte %d): %v; for example %s", syntaxErr.Offset, syntaxErr, example)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return appliance.Invalid(field, "unknown field %q: the accepted fields are those of %s", field, example)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return appliance.Invalid("", "the request body ends before the JSON object does; for example %s", example)
	}
	return appliance.Invalid("", "the request body could not be read as JSON: %v; for example %s", err, example)
}

func describeType(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "a string"
	case "int", "int64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "[]string":
		return "an array of strings"
	}
	return fmt.Sprintf("of type %s", goType)
}

// required reports a missing field.
func required(param, example string) error {
	return appliance.Invalid(param, "%s is required; for example %s", param, example)
}

// loneSurrogate is the offset of the first \u escape in b that is half of
// a UTF-16 surrogate pair without its other half, or -1. A backslash
// outside a string is a syntax error that decoding reports, so escapes are
// found without tracking strings.
func loneSurrogate(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++ // an escaped character, perhaps a backslash
			continue
		}
		r, ok := hex4(b, i+2)
		if !ok || !utf16.IsSurrogate(r) {
			i++
			continue
		}
		if r2, ok := hex4After(b, i+6); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
			i += 11 // the pair
			continue
		}
		return i
	}
	return -1
}
