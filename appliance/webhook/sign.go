package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signing, per CONTRACT.md §3 "Webhooks". Every delivery carries two
// independent signatures over the same raw body:
//
//   - X-Walytic-Signature: sha256=<lowercase hex HMAC-SHA256(key = the whole
//     secret string, "whsec_" included; message = the raw body)>. It does not
//     cover the timestamp, so it gives no replay protection on its own.
//   - Standard Webhooks (https://www.standardwebhooks.com): webhook-id,
//     webhook-timestamp and webhook-signature: v1,<base64 HMAC-SHA256(key =
//     the base64-decoded part of the secret after "whsec_"; message =
//     "<webhook-id>.<webhook-timestamp>.<raw body>")>. The timestamp is
//     signed, so a receiver that checks it is protected against replays.
//
// While a rotated secret is still live, each header carries one signature per
// live secret: comma-separated sha256= values in X-Walytic-Signature,
// space-separated v1, values in webhook-signature.

// SecretPrefix starts every endpoint secret.
const SecretPrefix = "whsec_"

// secretBytes is how many random bytes NewSecret encodes.
const secretBytes = 32

// Header names of a delivery's signature block, spelled as in the contract.
// HTTP header names are case-insensitive; Go's http.Header canonicalizes
// "webhook-id" to "Webhook-Id", which receivers treat as the same header.
const (
	HeaderDelivery         = "X-Walytic-Delivery"
	HeaderTimestamp        = "X-Walytic-Timestamp"
	HeaderSignature        = "X-Walytic-Signature"
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

const (
	signaturePrefixSHA256    = "sha256="
	signaturePrefixV1        = "v1,"
	standardSecretMinBytes   = 24 // Standard Webhooks: secrets are 24–64 bytes
	standardSecretMaxBytes   = 64
	maxTimestampHeaderDigits = 19 // fits an int64
)

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock, either way, before Verify rejects it as stale.
const DefaultTolerance = 5 * time.Minute

// Verification failures. Verify's errors wrap exactly one of these, with a
// message that says which header was wrong and why; compare with errors.Is.
var (
	// ErrNoSignature: the request carries no signature Verify can check
	// (no webhook-* headers and no X-Walytic-Signature, or an incomplete set).
	ErrNoSignature = errors.New("webhook: no signature")
	// ErrBadSignature: no signature in the request matches the secret and
	// body (wrong secret, altered body or header, or a malformed header).
	ErrBadSignature = errors.New("webhook: signature does not match")
	// ErrStaleTimestamp: the signed timestamp is further from now than the
	// tolerance allows (a replay, or a clock that is badly off).
	ErrStaleTimestamp = errors.New("webhook: timestamp outside tolerance")
	// ErrBadSecret: the secret given to Verify is not a "whsec_" secret.
	ErrBadSecret = errors.New("webhook: malformed secret")
)

// NewSecret returns a fresh endpoint secret: "whsec_" followed by the
// standard base64 (padded) encoding of 32 bytes from crypto/rand.
func NewSecret() (string, error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhook: generating a secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// CheckSecret reports whether s is a usable secret: "whsec_" followed by
// standard, padded base64 of 24 to 64 bytes (the Standard Webhooks range;
// NewSecret makes 32). The error wraps ErrBadSecret.
func CheckSecret(s string) error {
	_, err := secretKey(s)
	return err
}

// secretKey returns the Standard Webhooks HMAC key of a secret: the bytes
// its base64 part decodes to.
func secretKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: it must start with %q, as the secret shown when the endpoint was created does", ErrBadSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil || strings.ContainsAny(enc, "\r\n") {
		return nil, fmt.Errorf("%w: the part after %q must be standard base64 with padding; copy the whole secret exactly as shown", ErrBadSecret, SecretPrefix)
	}
	if len(key) < standardSecretMinBytes || len(key) > standardSecretMaxBytes {
		return nil, fmt.Errorf("%w: it decodes to %d bytes, want %d to %d; copy the whole secret exactly as shown", ErrBadSecret, len(key), standardSecretMinBytes, standardSecretMaxBytes)
	}
	return key, nil
}

// Header is one HTTP header of a delivery.
type Header struct {
	Name, Value string
}

// Headers is an ordered list of headers, as SignatureHeaders returns them.
type Headers []Header

// Get returns the value of the first header named name (case-insensitive),
// or "".
func (hs Headers) Get(name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// SetOn sets every header on h, replacing values already there.
func (hs Headers) SetOn(h http.Header) {
	for _, x := range hs {
		h.Set(x.Name, x.Value)
	}
}

// SignatureHeaders returns the identity and signature headers of one delivery
// attempt, in this order: X-Walytic-Delivery, X-Walytic-Timestamp,
// X-Walytic-Signature, webhook-id, webhook-timestamp, webhook-signature.
// eventID is the event's id (the same on every retry), ts the Unix time in
// seconds of this attempt, body the exact bytes that will be POSTed, and
// secrets the endpoint's live secrets, newest first; each contributes one
// signature to each signature header. The caller adds Content-Type and
// X-Walytic-Event.
//
// eventID must not contain '.', which separates the fields of the Standard
// Webhooks signed message (Verify refuses such ids); event ids never do.
// A secret that fails CheckSecret has no Standard Webhooks key, so it signs
// only X-Walytic-Signature (whose key is the secret string itself); the
// endpoint store only holds secrets from NewSecret, so this does not happen
// in practice. With no secrets at all, the two signature headers are left
// out.
func SignatureHeaders(secrets []string, eventID string, ts int64, body []byte) Headers {
	tss := strconv.FormatInt(ts, 10)
	walytic, v1 := signatures(secrets, eventID, tss, body)
	hs := make(Headers, 0, 6)
	hs = append(hs, Header{HeaderDelivery, eventID}, Header{HeaderTimestamp, tss})
	if walytic != "" {
		hs = append(hs, Header{HeaderSignature, walytic})
	}
	hs = append(hs, Header{HeaderWebhookID, eventID}, Header{HeaderWebhookTimestamp, tss})
	if v1 != "" {
		hs = append(hs, Header{HeaderWebhookSignature, v1})
	}
	return hs
}

// signatures are the X-Walytic-Signature and webhook-signature values for
// secrets ("" when there is none), as SignatureHeaders describes; the
// deliverer sets them without building Headers.
func signatures(secrets []string, eventID, tss string, body []byte) (walytic, v1 string) {
	if len(secrets) == 1 { // the common case, without slices to join
		m := macsFor(secrets[0])
		walytic = m.signWalytic(body)
		if m.v1 != nil {
			v1 = m.signV1(eventID, tss, body)
		}
		return walytic, v1
	}
	var hexSigs, v1Sigs []string
	for _, s := range secrets {
		m := macsFor(s)
		hexSigs = append(hexSigs, m.signWalytic(body))
		if m.v1 != nil {
			v1Sigs = append(v1Sigs, m.signV1(eventID, tss, body))
		}
	}
	return strings.Join(hexSigs, ","), strings.Join(v1Sigs, " ")
}

func macWalytic(secret string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

func macV1(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a received delivery against one endpoint secret, for
// receivers written in Go. body must be the raw request body, read before
// any JSON decoding; headers the request's headers; now the receiver's clock.
// It is VerifyWithTolerance with DefaultTolerance (±5 minutes).
//
// The Standard Webhooks signature decides: webhook-id, webhook-timestamp and
// webhook-signature must all be present (every delivery carries them), the
// timestamp within the tolerance of now, and one of the space-separated v1
// signatures must match; it signs the timestamp, so an old delivery cannot
// be replayed as new. A request without them is refused, even with a valid
// X-Walytic-Signature: that one does not sign the timestamp, and stripping
// the others is how a replay would look (VerifyXWalytic checks it alone, for
// receivers that accept that). Signatures are compared in constant time.
//
// A nil error means the body is authentic. Otherwise the error wraps one of
// ErrNoSignature, ErrBadSignature, ErrStaleTimestamp or ErrBadSecret; answer
// such a request with a 4xx and do not act on it. During a secret rotation,
// call Verify with each secret you hold until one succeeds.
func Verify(secret string, body []byte, headers http.Header, now time.Time) error {
	return VerifyWithTolerance(secret, body, headers, now, DefaultTolerance)
}

// VerifyWithTolerance is Verify with a chosen timestamp tolerance; a
// tolerance ≤ 0 means DefaultTolerance.
func VerifyWithTolerance(secret string, body []byte, headers http.Header, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	ids := headerValues(headers, HeaderWebhookID)
	tss := headerValues(headers, HeaderWebhookTimestamp)
	sigs := headerValues(headers, HeaderWebhookSignature)
	if len(ids) == 0 && len(tss) == 0 && len(sigs) == 0 {
		return fmt.Errorf("%w: the request has no webhook-id, webhook-timestamp or webhook-signature header, which every Walytic delivery carries (with only %s it could be an old delivery replayed)", ErrNoSignature, HeaderSignature)
	}
	return verifyStandard(key, body, ids, tss, sigs, now, tolerance)
}

// VerifyXWalytic checks a delivery by its X-Walytic-Signature alone (any
// comma-separated sha256= value) and X-Walytic-Timestamp within the
// tolerance (≤ 0: DefaultTolerance). That timestamp is not signed, so a
// captured delivery can be replayed with a fresh one: use it only where the
// Standard Webhooks headers cannot reach the receiver, and de-duplicate on
// X-Walytic-Delivery. Prefer Verify.
func VerifyXWalytic(secret string, body []byte, headers http.Header, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	xsigs := headerValues(headers, HeaderSignature)
	if len(xsigs) == 0 {
		return fmt.Errorf("%w: the request has no %s; is it from a Walytic webhook?", ErrNoSignature, HeaderSignature)
	}
	xts := headerValues(headers, HeaderTimestamp)
	if len(xts) == 0 {
		return fmt.Errorf("%w: %s is present but %s is missing", ErrNoSignature, HeaderSignature, HeaderTimestamp)
	}
	if err := checkTimestamp(HeaderTimestamp, xts[0], now, tolerance); err != nil {
		return err
	}
	want := macWalytic(secret, body)
	for _, v := range xsigs {
		for _, sig := range strings.Split(v, ",") {
			h, ok := strings.CutPrefix(strings.TrimSpace(sig), signaturePrefixSHA256)
			if !ok {
				continue
			}
			got, err := hex.DecodeString(h)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: no %s value matches this secret and body (check the secret, and verify the raw body before parsing it)", ErrBadSignature, HeaderSignature)
}

func verifyStandard(key, body []byte, ids, tss, sigs []string, now time.Time, tolerance time.Duration) error {
	var missing []string
	if len(ids) == 0 {
		missing = append(missing, HeaderWebhookID)
	}
	if len(tss) == 0 {
		missing = append(missing, HeaderWebhookTimestamp)
	}
	if len(sigs) == 0 {
		missing = append(missing, HeaderWebhookSignature)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: Standard Webhooks header %s missing; a delivery carries webhook-id, webhook-timestamp and webhook-signature together", ErrNoSignature, strings.Join(missing, " and "))
	}
	id, ts := ids[0], tss[0]
	if strings.Contains(id, ".") {
		// '.' separates the signed fields; an id holding one would let the
		// id/timestamp/body split of a signed message be shifted.
		return fmt.Errorf("%w: webhook-id %q contains '.'", ErrBadSignature, id)
	}
	if err := checkTimestamp(HeaderWebhookTimestamp, ts, now, tolerance); err != nil {
		return err
	}
	want := macV1(key, id, ts, body)
	for _, v := range sigs {
		for _, sig := range strings.Fields(v) {
			b64, ok := strings.CutPrefix(sig, signaturePrefixV1)
			if !ok {
				continue // another scheme (v1a, …): not ours to check
			}
			got, err := base64.StdEncoding.Strict().DecodeString(b64)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: no v1 value in webhook-signature matches this secret, webhook-id, webhook-timestamp and body (check the secret, and verify the raw body before parsing it)", ErrBadSignature)
}

// checkTimestamp parses a decimal Unix-seconds header and checks that it is
// within tolerance of now.
func checkTimestamp(name, v string, now time.Time, tolerance time.Duration) error {
	if v == "" || len(v) > maxTimestampHeaderDigits || strings.Trim(v, "0123456789") != "" {
		return fmt.Errorf("%w: %s %q is not a Unix time in seconds", ErrBadSignature, name, v)
	}
	ts, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not a Unix time in seconds", ErrBadSignature, name, v)
	}
	tol := int64(tolerance / time.Second)
	n := now.Unix()
	// ts ≥ 0 here and tol ≤ MaxInt64/1e9, so these cannot overflow for any
	// clock within ±200 years of 1970.
	switch {
	case ts < n-tol:
		return fmt.Errorf("%w: %s is %s old, more than the %s allowed; a replayed delivery, or the sender's or this machine's clock is wrong",
			ErrStaleTimestamp, name, seconds(n-ts), tolerance)
	case ts > n+tol:
		return fmt.Errorf("%w: %s is %s in the future, more than the %s allowed; the sender's or this machine's clock is wrong",
			ErrStaleTimestamp, name, seconds(ts-n), tolerance)
	}
	return nil
}

// seconds formats a positive number of seconds as a duration, or as plain
// seconds when it is too long for a time.Duration.
func seconds(s int64) string {
	if s > int64(math.MaxInt64/time.Second) {
		return strconv.FormatInt(s, 10) + "s"
	}
	return (time.Duration(s) * time.Second).String()
}

// headerValues returns the values of a header by its canonical name, or, for
// maps built by hand with lower-case keys, by its lower-case name.
func headerValues(h http.Header, name string) []string {
	if v := h.Values(name); len(v) > 0 {
		return v
	}
	return h[strings.ToLower(name)]
}
