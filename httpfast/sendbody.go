package httpfast

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeSendBody decodes the body of POST /v1/messages. The body nearly
// every client sends — one flat object of the three string fields — is
// scanned by hand: encoding/json's decoder cost a tenth of the send path's
// CPU. Anything else (other value types, unknown, repeated or differently
// cased field names, invalid UTF-8, trailing data) goes through decodeBody,
// which also words the errors. FuzzSendBodyFastPath proves that whenever the
// scanner answers, encoding/json gives the same answer.
func decodeSendBody(body []byte) (sendBody, error) {
	if b, ok := scanSendBody(body); ok {
		return b, nil
	}
	var b sendBody
	err := decodeBody(body, &b, sendExample)
	return b, err
}

// scanSendBody parses body when it is a JSON object whose members are only
// "sessionId", "to" and "text", each at most once, each a string. ok is
// false for anything else, valid or not.
func scanSendBody(body []byte) (out sendBody, ok bool) {
	// Two allocations for the usual body: one string holding its bytes,
	// of which unescaped values are substrings, and the three values the
	// fields point at.
	all := string(body)
	vals := new([3]string)
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return out, false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return out, skipSpace(body, i+1) == len(body)
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return out, false
		}
		var field **string
		var val *string
		switch end := i + 1; {
		case hasKey(body, end, "sessionId"):
			field, val, i = &out.SessionID, &vals[0], end+len("sessionId")+1
		case hasKey(body, end, "to"):
			field, val, i = &out.To, &vals[1], end+len("to")+1
		case hasKey(body, end, "text"):
			field, val, i = &out.Text, &vals[2], end+len("text")+1
		default:
			return out, false
		}
		if *field != nil {
			return out, false // repeated: let encoding/json decide
		}
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ':' {
			return out, false
		}
		i = skipSpace(body, i+1)
		s, next, ok := scanString(body, all, i)
		if !ok {
			return out, false
		}
		*val = s
		*field = val
		i = skipSpace(body, next)
		if i >= len(body) {
			return out, false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			if skipSpace(body, i+1) != len(body) {
				return out, false
			}
			if n := len(vals[0]) + len(vals[1]) + len(vals[2]); len(all) > 2*n+256 {
				// Mostly padding: copy the values, so that a queued
				// message does not keep up to a MiB of body alive.
				for k := range vals {
					vals[k] = strings.Clone(vals[k])
				}
			}
			return out, true
		default:
			return out, false
		}
	}
}

// hasKey reports whether body[at:] is name followed by a closing quote.
func hasKey(body []byte, at int, name string) bool {
	end := at + len(name)
	return end < len(body) && string(body[at:end]) == name && body[end] == '"'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString decodes the JSON string starting at b[i] (an opening quote) the
// way encoding/json does, returning the index after its closing quote. It
// declines (ok false) strings holding invalid UTF-8, which encoding/json
// would silently repair. all holds b's bytes: a string without escapes is
// returned as a substring of it, without copying.
func scanString(b []byte, all string, i int) (s string, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	i++
	start := i
	// Fast path: no escapes, all ASCII or valid UTF-8.
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			raw := b[start:i]
			if !utf8.Valid(raw) {
				return "", 0, false
			}
			return all[start:i], i + 1, true
		case c == '\\':
			return scanEscapedString(b, start)
		case c < 0x20:
			return "", 0, false
		}
		i++
	}
	return "", 0, false
}

func scanEscapedString(b []byte, start int) (string, int, bool) {
	out := make([]byte, 0, 64)
	i := start
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return "", 0, false
			}
			return string(out), i + 1, true
		case c < 0x20:
			return "", 0, false
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return "", 0, false
		}
		switch b[i+1] {
		case '"', '\\', '/':
			out = append(out, b[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return "", 0, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair joins into one rune. A lone or broken half is left
				// to decodeBody, which refuses it (encoding/json would store
				// U+FFFD in its place).
				if r2, ok := hex4After(b, i); ok {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				return "", 0, false
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return "", 0, false
		}
		i += 2
	}
	return "", 0, false
}

// hex4After reads a `\uXXXX` escape at b[i].
func hex4After(b []byte, i int) (rune, bool) {
	if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
		return 0, false
	}
	return hex4(b, i+2)
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendQueuedJSON appends the 202 answer of a send, byte for byte what
// json.Marshal gives for q (TestAppendQueuedJSON), without reflection.
func appendQueuedJSON(dst []byte, q queuedJSON) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, q.ID)
	dst = append(dst, `,"status":`...)
	dst = appendJSONString(dst, q.Status)
	dst = append(dst, `,"sessionId":`...)
	dst = appendJSONString(dst, q.SessionID)
	dst = append(dst, `,"to":`...)
	dst = appendJSONString(dst, q.To)
	dst = append(dst, `,"createdAt":`...)
	dst = strconv.AppendInt(dst, q.CreatedAt, 10)
	return append(dst, '}')
}

// appendJSONString quotes s as encoding/json does. Plain printable ASCII
// (all our ids and numbers) is copied; anything else is left to
// encoding/json, which knows its escaping rules.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
