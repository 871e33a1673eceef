package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Test vectors, also in testdata/signature-vectors.json for receivers in
// other languages (and fit for the README):
//
//	secret     whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
//	           ("whsec_" + base64 of the bytes 0x00, 0x01, …, 0x1f)
//	event id   evt_test
//	timestamp  1714602000
//	body       {"id":"evt_test","event":"message.sent"}
//
//	X-Walytic-Delivery:  evt_test
//	X-Walytic-Timestamp: 1714602000
//	X-Walytic-Signature: sha256=899374a0978215096c758616469bfcc1ee22b9fb43ba097e6255bcaf33a372a5
//	webhook-id:          evt_test
//	webhook-timestamp:   1714602000
//	webhook-signature:   v1,as/TKPPtA7K/KKs/JJFnPYG8K11sYcxMav9QN5fKNp8=
//
// Rotation: with a second secret
//
//	whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8= (bytes 0x20 … 0x3f)
//
// listed after the first, the same delivery carries
//
//	X-Walytic-Signature: sha256=899374a0978215096c758616469bfcc1ee22b9fb43ba097e6255bcaf33a372a5,sha256=e647a0b0cd88fb2905eac864864ebbf19f3565b1faf930462e851dd95102ea9a
//	webhook-signature:   v1,as/TKPPtA7K/KKs/JJFnPYG8K11sYcxMav9QN5fKNp8= v1,ZfFvNf0N+OYSodZcQgDzQUA2271RejG4KXdRh7NxCko=
const (
	vecSecret    = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	vecSecret2   = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	vecEventID   = "evt_test"
	vecTimestamp = int64(1714602000)
	vecBody      = `{"id":"evt_test","event":"message.sent"}`
	vecXSig      = "sha256=899374a0978215096c758616469bfcc1ee22b9fb43ba097e6255bcaf33a372a5"
	vecXSig2     = "sha256=e647a0b0cd88fb2905eac864864ebbf19f3565b1faf930462e851dd95102ea9a"
	vecV1Sig     = "v1,as/TKPPtA7K/KKs/JJFnPYG8K11sYcxMav9QN5fKNp8="
	vecV1Sig2    = "v1,ZfFvNf0N+OYSodZcQgDzQUA2271RejG4KXdRh7NxCko="
)

var vecNow = time.Unix(vecTimestamp, 0)

// seqBytes returns the bytes from, from+1, …, from+n-1.
func seqBytes(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

// Independent recomputation of both signatures with the standard library
// alone, straight from the contract's wording.
func refXSig(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret)) // key: the whole secret string
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func refV1Sig(t *testing.T, secret, id string, ts int64, body string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestVectorsIndependent(t *testing.T) {
	// The hard-coded vectors are what the contract's formulas give.
	if got := "whsec_" + base64.StdEncoding.EncodeToString(seqBytes(0, 32)); got != vecSecret {
		t.Fatalf("vector secret = %s, want %s", got, vecSecret)
	}
	if got := "whsec_" + base64.StdEncoding.EncodeToString(seqBytes(32, 32)); got != vecSecret2 {
		t.Fatalf("vector secret 2 = %s, want %s", got, vecSecret2)
	}
	for _, c := range []struct{ got, want string }{
		{refXSig(vecSecret, vecBody), vecXSig},
		{refXSig(vecSecret2, vecBody), vecXSig2},
		{refV1Sig(t, vecSecret, vecEventID, vecTimestamp, vecBody), vecV1Sig},
		{refV1Sig(t, vecSecret2, vecEventID, vecTimestamp, vecBody), vecV1Sig2},
	} {
		if c.got != c.want {
			t.Errorf("recomputed %s, hard-coded %s", c.got, c.want)
		}
	}
}

func wantHeaders(t *testing.T, got Headers, want Headers) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("headers:\n got %q\nwant %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("header %d = %s: %s, want %s: %s", i, got[i].Name, got[i].Value, want[i].Name, want[i].Value)
		}
	}
}

func TestSignatureHeadersVector(t *testing.T) {
	got := SignatureHeaders([]string{vecSecret}, vecEventID, vecTimestamp, []byte(vecBody))
	wantHeaders(t, got, Headers{
		{"X-Walytic-Delivery", "evt_test"},
		{"X-Walytic-Timestamp", "1714602000"},
		{"X-Walytic-Signature", vecXSig},
		{"webhook-id", "evt_test"},
		{"webhook-timestamp", "1714602000"},
		{"webhook-signature", vecV1Sig},
	})
	// And against the independent computation, not only the constants.
	if v := got.Get("x-walytic-signature"); v != refXSig(vecSecret, vecBody) {
		t.Errorf("X-Walytic-Signature %s, independent %s", v, refXSig(vecSecret, vecBody))
	}
	if v, ref := got.Get("Webhook-Signature"), refV1Sig(t, vecSecret, vecEventID, vecTimestamp, vecBody); v != ref {
		t.Errorf("webhook-signature %s, independent %s", v, ref)
	}
}

func TestSignatureHeadersRotation(t *testing.T) {
	got := SignatureHeaders([]string{vecSecret, vecSecret2}, vecEventID, vecTimestamp, []byte(vecBody))
	wantHeaders(t, got, Headers{
		{"X-Walytic-Delivery", "evt_test"},
		{"X-Walytic-Timestamp", "1714602000"},
		{"X-Walytic-Signature", vecXSig + "," + vecXSig2},
		{"webhook-id", "evt_test"},
		{"webhook-timestamp", "1714602000"},
		{"webhook-signature", vecV1Sig + " " + vecV1Sig2},
	})
	// A receiver holding either secret accepts the delivery.
	h := http.Header{}
	got.SetOn(h)
	for _, s := range []string{vecSecret, vecSecret2} {
		if err := Verify(s, []byte(vecBody), h, vecNow); err != nil {
			t.Errorf("Verify with %s: %v", s, err)
		}
		if err := VerifyXWalytic(s, []byte(vecBody), legacyOnly(h), vecNow, 0); err != nil {
			t.Errorf("VerifyXWalytic with %s: %v", s, err)
		}
	}
}

func TestSignatureHeadersEdgeSecrets(t *testing.T) {
	// No secrets: identity headers only.
	got := SignatureHeaders(nil, vecEventID, vecTimestamp, []byte(vecBody))
	wantHeaders(t, got, Headers{
		{"X-Walytic-Delivery", "evt_test"},
		{"X-Walytic-Timestamp", "1714602000"},
		{"webhook-id", "evt_test"},
		{"webhook-timestamp", "1714602000"},
	})
	// A malformed secret signs X-Walytic-Signature only.
	got = SignatureHeaders([]string{"not-a-secret", vecSecret}, vecEventID, vecTimestamp, []byte(vecBody))
	if v, want := got.Get(HeaderSignature), refXSig("not-a-secret", vecBody)+","+vecXSig; v != want {
		t.Errorf("X-Walytic-Signature = %s, want %s", v, want)
	}
	if v := got.Get(HeaderWebhookSignature); v != vecV1Sig {
		t.Errorf("webhook-signature = %s, want %s", v, vecV1Sig)
	}
}

func TestSignatureVectorsFile(t *testing.T) {
	raw, err := os.ReadFile("testdata/signature-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []struct {
		Secrets   []string          `json:"secrets"`
		EventID   string            `json:"eventId"`
		Timestamp int64             `json:"timestamp"`
		Body      string            `json:"body"`
		Headers   map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	for i, v := range vs {
		hs := SignatureHeaders(v.Secrets, v.EventID, v.Timestamp, []byte(v.Body))
		if len(hs) != len(v.Headers) {
			t.Errorf("vector %d: %d headers, file has %d", i, len(hs), len(v.Headers))
		}
		for name, want := range v.Headers {
			if got := hs.Get(name); got != want {
				t.Errorf("vector %d: %s = %q, file has %q", i, name, got, want)
			}
		}
		var xs, v1s []string
		for _, s := range v.Secrets {
			xs = append(xs, refXSig(s, v.Body))
			v1s = append(v1s, refV1Sig(t, s, v.EventID, v.Timestamp, v.Body))
		}
		if got := v.Headers["X-Walytic-Signature"]; got != strings.Join(xs, ",") {
			t.Errorf("vector %d: file's X-Walytic-Signature %q, independent %q", i, got, strings.Join(xs, ","))
		}
		if got := v.Headers["webhook-signature"]; got != strings.Join(v1s, " ") {
			t.Errorf("vector %d: file's webhook-signature %q, independent %q", i, got, strings.Join(v1s, " "))
		}
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s, SecretPrefix) {
			t.Fatalf("%q lacks %q", s, SecretPrefix)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
		if err != nil || len(key) != 32 {
			t.Fatalf("%q: %d bytes, %v", s, len(key), err)
		}
		if len(s) != len("whsec_")+44 {
			t.Fatalf("%q: length %d", s, len(s))
		}
		if err := CheckSecret(s); err != nil {
			t.Fatal(err)
		}
		if seen[s] {
			t.Fatalf("duplicate secret %q", s)
		}
		seen[s] = true
	}
}

func TestCheckSecret(t *testing.T) {
	for _, s := range []string{
		"",
		"whsec_",
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", // no prefix
		"WHSEC_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",   // padding missing
		"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=x", // trailing junk
		"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\nHh8=",
		"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-", // URL alphabet
		"whsec_AAECAwQFBgcICQoLDA0ODxAREhMU",                 // 20 bytes: too short
		"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)),
	} {
		err := CheckSecret(s)
		if !errors.Is(err, ErrBadSecret) {
			t.Errorf("CheckSecret(%q) = %v, want ErrBadSecret", s, err)
		}
		if err := Verify(s, []byte(vecBody), vectorHeaders(), vecNow); !errors.Is(err, ErrBadSecret) {
			t.Errorf("Verify with secret %q = %v, want ErrBadSecret", s, err)
		}
	}
	for _, n := range []int{24, 32, 64} {
		if err := CheckSecret("whsec_" + base64.StdEncoding.EncodeToString(make([]byte, n))); err != nil {
			t.Errorf("%d-byte secret: %v", n, err)
		}
	}
}

// vectorHeaders are the headers of the test vector's delivery, written out
// by hand as a receiver gets them.
func vectorHeaders() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Walytic-Event", "message.sent")
	h.Set("X-Walytic-Delivery", vecEventID)
	h.Set("X-Walytic-Timestamp", "1714602000")
	h.Set("X-Walytic-Signature", vecXSig)
	h.Set("webhook-id", vecEventID)
	h.Set("webhook-timestamp", "1714602000")
	h.Set("webhook-signature", vecV1Sig)
	return h
}

// legacyOnly drops the Standard Webhooks headers.
func legacyOnly(h http.Header) http.Header {
	h = h.Clone()
	h.Del("webhook-id")
	h.Del("webhook-timestamp")
	h.Del("webhook-signature")
	return h
}

func TestVerify(t *testing.T) {
	body := []byte(vecBody)
	with := func(mod func(h http.Header)) http.Header {
		h := vectorHeaders()
		mod(h)
		return h
	}
	tests := []struct {
		name    string
		secret  string
		body    []byte
		headers http.Header
		now     time.Time
		want    error // nil: accepted
	}{
		{"good", vecSecret, body, vectorHeaders(), vecNow, nil},
		{"good, 5 min late", vecSecret, body, vectorHeaders(), vecNow.Add(5 * time.Minute), nil},
		{"good, 5 min early", vecSecret, body, vectorHeaders(), vecNow.Add(-5 * time.Minute), nil},
		{"good, X-Walytic only", vecSecret, body, legacyOnly(vectorHeaders()), vecNow, nil},
		{"good, lower-case keys", vecSecret, body, http.Header{
			"webhook-id": {vecEventID}, "webhook-timestamp": {"1714602000"}, "webhook-signature": {vecV1Sig},
		}, vecNow, nil},
		{"good, among other versions", vecSecret, body, with(func(h http.Header) {
			h.Set("webhook-signature", "v1a,AAAA v1,bm90IGl0 "+vecV1Sig)
		}), vecNow, nil},
		{"good, signature split over two header lines", vecSecret, body, with(func(h http.Header) {
			h.Set("webhook-signature", "v1,bm90IGl0")
			h.Add("webhook-signature", vecV1Sig)
		}), vecNow, nil},
		{"good, X-Walytic among others", vecSecret, body, legacyOnly(with(func(h http.Header) {
			h.Set("X-Walytic-Signature", vecXSig2+", "+vecXSig)
		})), vecNow, nil},

		{"tampered body", vecSecret, []byte(`{"id":"evt_test","event":"message.read"}`), vectorHeaders(), vecNow, ErrBadSignature},
		{"tampered body, X-Walytic only", vecSecret, []byte(vecBody + " "), legacyOnly(vectorHeaders()), vecNow, ErrBadSignature},
		{"body re-encoded", vecSecret, []byte(`{"event":"message.sent","id":"evt_test"}`), vectorHeaders(), vecNow, ErrBadSignature},
		{"wrong secret", vecSecret2, body, vectorHeaders(), vecNow, ErrBadSignature},
		{"wrong secret, X-Walytic only", vecSecret2, body, legacyOnly(vectorHeaders()), vecNow, ErrBadSignature},
		{"tampered id", vecSecret, body, with(func(h http.Header) { h.Set("webhook-id", "evt_other") }), vecNow, ErrBadSignature},
		{"id with a dot", vecSecret, body, with(func(h http.Header) { h.Set("webhook-id", "evt.test") }), vecNow, ErrBadSignature},
		{"tampered timestamp", vecSecret, body, with(func(h http.Header) { h.Set("webhook-timestamp", "1714602001") }), vecNow, ErrBadSignature},
		{"timestamp with sign", vecSecret, body, with(func(h http.Header) { h.Set("webhook-timestamp", "+1714602000") }), vecNow, ErrBadSignature},
		{"timestamp not a number", vecSecret, body, with(func(h http.Header) { h.Set("webhook-timestamp", "yesterday") }), vecNow, ErrBadSignature},
		{"timestamp too big", vecSecret, body, with(func(h http.Header) { h.Set("webhook-timestamp", "99999999999999999999") }), vecNow, ErrBadSignature},
		{"signature not base64", vecSecret, body, with(func(h http.Header) { h.Set("webhook-signature", "v1,!!!") }), vecNow, ErrBadSignature},
		{"signature of another scheme only", vecSecret, body, with(func(h http.Header) { h.Set("webhook-signature", "v1a,"+vecV1Sig[3:]) }), vecNow, ErrBadSignature},
		{"hex upper-cased is still the same bytes", vecSecret, body, legacyOnly(with(func(h http.Header) {
			h.Set("X-Walytic-Signature", "sha256="+strings.ToUpper(vecXSig[7:]))
		})), vecNow, nil},
		{"X-Walytic signature without prefix", vecSecret, body, legacyOnly(with(func(h http.Header) {
			h.Set("X-Walytic-Signature", vecXSig[7:])
		})), vecNow, ErrBadSignature},

		{"stale", vecSecret, body, vectorHeaders(), vecNow.Add(5*time.Minute + time.Second), ErrStaleTimestamp},
		{"future", vecSecret, body, vectorHeaders(), vecNow.Add(-5*time.Minute - time.Second), ErrStaleTimestamp},
		{"stale by years", vecSecret, body, vectorHeaders(), vecNow.AddDate(3, 0, 0), ErrStaleTimestamp},
		{"stale, X-Walytic only", vecSecret, body, legacyOnly(vectorHeaders()), vecNow.Add(time.Hour), ErrStaleTimestamp},
		{"far-future timestamp", vecSecret, body, with(func(h http.Header) { h.Set("webhook-timestamp", "9223372036854775807") }), vecNow, ErrStaleTimestamp},

		{"no headers", vecSecret, body, http.Header{}, vecNow, ErrNoSignature},
		{"nil headers", vecSecret, body, nil, vecNow, ErrNoSignature},
		// The X-Walytic headers are valid here: a broken Standard Webhooks
		// set does not fall back to them.
		{"webhook-signature missing", vecSecret, body, with(func(h http.Header) { h.Del("webhook-signature") }), vecNow, ErrNoSignature},
		{"webhook-id missing", vecSecret, body, with(func(h http.Header) { h.Del("webhook-id") }), vecNow, ErrNoSignature},
		{"webhook-timestamp missing", vecSecret, body, with(func(h http.Header) { h.Del("webhook-timestamp") }), vecNow, ErrNoSignature},
		{"X-Walytic-Timestamp missing", vecSecret, body, legacyOnly(with(func(h http.Header) { h.Del("X-Walytic-Timestamp") })), vecNow, ErrNoSignature},
		{"X-Walytic-Signature missing", vecSecret, body, legacyOnly(with(func(h http.Header) { h.Del("X-Walytic-Signature") })), vecNow, ErrNoSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.body, tc.headers, tc.now)
			if h := tc.headers; h != nil && h.Get("webhook-id") == "" && h.Get("webhook-timestamp") == "" && h.Get("webhook-signature") == "" && h.Get(HeaderSignature) != "" {
				// X-Walytic headers alone: Verify refuses them (a replay
				// with the others stripped looks so); VerifyXWalytic judges.
				if !errors.Is(err, ErrNoSignature) {
					t.Fatalf("Verify of X-Walytic headers alone = %v, want ErrNoSignature", err)
				}
				err = VerifyXWalytic(tc.secret, tc.body, tc.headers, tc.now, 0)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestVerifyWithTolerance(t *testing.T) {
	h := vectorHeaders()
	late := vecNow.Add(time.Hour)
	if err := VerifyWithTolerance(vecSecret, []byte(vecBody), h, late, 2*time.Hour); err != nil {
		t.Errorf("2h tolerance, 1h late: %v", err)
	}
	if err := VerifyWithTolerance(vecSecret, []byte(vecBody), h, late, 30*time.Minute); !errors.Is(err, ErrStaleTimestamp) {
		t.Errorf("30m tolerance, 1h late: %v", err)
	}
	if err := VerifyWithTolerance(vecSecret, []byte(vecBody), h, vecNow.Add(4*time.Minute), 0); err != nil {
		t.Errorf("0 tolerance means the default: %v", err)
	}
	if err := VerifyWithTolerance(vecSecret, []byte(vecBody), h, vecNow.Add(6*time.Minute), -1); !errors.Is(err, ErrStaleTimestamp) {
		t.Errorf("negative tolerance means the default: %v", err)
	}
}

func TestVerifyRoundTrip(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"evt_01J","event":"message.received","text":"héllo\n"}`)
	now := time.Now()
	h := http.Header{}
	SignatureHeaders([]string{s}, "evt_01J", now.Unix(), body).SetOn(h)
	if err := Verify(s, body, h, now); err != nil {
		t.Fatal(err)
	}
	if err := VerifyXWalytic(s, body, legacyOnly(h), now, 0); err != nil {
		t.Fatal(err)
	}
	// A captured delivery replayed an hour later with a fresh, unsigned
	// X-Walytic-Timestamp and the Standard Webhooks headers stripped.
	replay := legacyOnly(h)
	replay.Set(HeaderTimestamp, strconv.FormatInt(now.Add(time.Hour).Unix(), 10))
	if err := Verify(s, body, replay, now.Add(time.Hour)); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("replay without the Standard Webhooks headers: %v, want refused", err)
	}
	other, _ := NewSecret()
	if err := Verify(other, body, h, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other secret: %v", err)
	}
}

func TestHeadersSetOn(t *testing.T) {
	h := http.Header{}
	h.Set("X-Walytic-Signature", "stale")
	hs := SignatureHeaders([]string{vecSecret}, vecEventID, vecTimestamp, []byte(vecBody))
	hs.SetOn(h)
	if got := h.Values("X-Walytic-Signature"); len(got) != 1 || got[0] != vecXSig {
		t.Errorf("X-Walytic-Signature = %q", got)
	}
	if got := h.Get("Webhook-Signature"); got != vecV1Sig {
		t.Errorf("webhook-signature = %q", got)
	}
	if hs.Get("no-such-header") != "" {
		t.Error("Get of a missing header is not empty")
	}
}

// FuzzVerify: Verify never panics, fails only with one of its sentinel
// errors, and never accepts a body other than the one that was signed,
// whatever the headers say.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(vecBody), []byte(vecBody), uint8(0), "", "", "", "", "")
	f.Add([]byte(vecBody), []byte(vecBody+" "), uint8(0), "", "", "", "", "")
	// Seeds carry well-formed but bogus signatures only: a genuine one for
	// some body would let the fuzzer "forge" by copying it.
	bogusV1 := "v1," + base64.StdEncoding.EncodeToString(make([]byte, 32))
	bogusX := "sha256=" + strings.Repeat("0", 64)
	f.Add([]byte(vecBody), []byte(vecBody), uint8(0xff), vecEventID, "1714602000", bogusV1, bogusX, "1714602000")
	f.Add([]byte("1714602000.x"), []byte("x"), uint8(0b000001), "evt_test.1714602000", "", "", "", "")
	f.Add([]byte(""), []byte(""), uint8(0b101010), "evt", "01714602000", bogusV1+" v1,", "sha256=,sha256=zz", "-1")
	f.Add([]byte(vecBody), []byte(vecBody), uint8(0b011000), "", "", "", bogusX+","+bogusX, "")
	f.Add([]byte{0, 0xff}, []byte{0, 0xff}, uint8(0b010101), "", "", "", "", "")
	secrets := []string{vecSecret, vecSecret2}
	f.Fuzz(func(t *testing.T, signed, received []byte, mode uint8, wid, wts, wsig, xsig, xts string) {
		// Sign signed with both secrets; then, per bit of mode, replace a
		// header with the fuzzer's value (or drop it when that is "").
		h := http.Header{}
		SignatureHeaders(secrets, vecEventID, vecTimestamp, signed).SetOn(h)
		for i, c := range []struct{ name, v string }{
			{HeaderWebhookID, wid}, {HeaderWebhookTimestamp, wts}, {HeaderWebhookSignature, wsig},
			{HeaderSignature, xsig}, {HeaderTimestamp, xts},
		} {
			if mode&(1<<i) == 0 {
				continue
			}
			if c.v == "" {
				h.Del(c.name)
			} else {
				h.Set(c.name, c.v)
			}
		}
		for _, s := range secrets {
			err := Verify(s, received, h, vecNow)
			if err == nil && !bytes.Equal(received, signed) {
				t.Fatalf("accepted a body that was not signed: signed %q, received %q, headers %v", signed, received, h)
			}
			if err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrNoSignature) && !errors.Is(err, ErrStaleTimestamp) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			if mode == 0 && bytes.Equal(received, signed) && err != nil {
				t.Fatalf("genuine delivery rejected: %v", err)
			}
		}
	})
}

func TestAttemptHeaderNamesAreCanonical(t *testing.T) {
	for name, canon := range map[string]string{
		"X-Walytic-Event": canonEvent, HeaderDelivery: canonDelivery, HeaderTimestamp: canonTimestamp, HeaderSignature: canonSignature,
		HeaderWebhookID: canonWebhookID, HeaderWebhookTimestamp: canonWebhookTimestamp, HeaderWebhookSignature: canonWebhookSignature,
	} {
		if want := http.CanonicalHeaderKey(name); canon != want {
			t.Errorf("%q is sent as %q, want %q", name, canon, want)
		}
	}
}
