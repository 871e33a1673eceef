package httpfast

import (
	"encoding/json"
	"strings"
	"testing"
	"unsafe"
)

func strp(s string) *string { return &s }

func TestScanSendBody(t *testing.T) {
	cases := []struct {
		body string
		ok   bool
		want sendBody
	}{
		{sendExample, true, sendBody{strp("919876543210"), strp("919999999999"), strp("Your order #1042 has shipped")}},
		{" \n{ \"text\" : \"hi\" , \"to\":\"1\"}\t", true, sendBody{nil, strp("1"), strp("hi")}},
		{`{}`, true, sendBody{}},
		{`{"text":"line\nnext \"q\" \\ \/ \u00e9 \ud83d\ude00"}`, true, sendBody{nil, nil, strp("line\nnext \"q\" \\ / é 😀")}},
		{`{"text":"é😀"}`, true, sendBody{nil, nil, strp("é😀")}},
		// Left to encoding/json: other types, unknown, repeated or re-cased
		// names, escapes in names, invalid UTF-8, trailing data, bad JSON.
		{`{"text":null}`, false, sendBody{}},
		{`{"text":1}`, false, sendBody{}},
		{`{"Text":"a"}`, false, sendBody{}},
		{`{"t\u0065xt":"a"}`, false, sendBody{}},
		{`{"text":"a","text":"b"}`, false, sendBody{}},
		{`{"extra":"a"}`, false, sendBody{}},
		{"{\"text\":\"\xff\"}", false, sendBody{}},
		{`{"text":"a"} {}`, false, sendBody{}},
		{`{"text":"a",}`, false, sendBody{}},
		{`{"text":"a"`, false, sendBody{}},
		{"{\"text\":\"a\tb\"}", false, sendBody{}},
		{`{"text":"\x"}`, false, sendBody{}},
		{`{"text":"\ud83d"}`, false, sendBody{}}, // half a surrogate pair: refused there
		{`[]`, false, sendBody{}},
		{``, false, sendBody{}},
	}
	for _, c := range cases {
		got, ok := scanSendBody([]byte(c.body))
		if ok != c.ok {
			t.Errorf("%q: ok = %v, want %v", c.body, ok, c.ok)
			continue
		}
		if ok && !sameSendBody(got, c.want) {
			t.Errorf("%q: got %s, want %s", c.body, showSendBody(got), showSendBody(c.want))
		}
	}
}

// FuzzSendBodyFastPath: whenever the hand scanner accepts a body,
// encoding/json (the path that words every error) must accept it too and
// read the same three fields.
func FuzzSendBodyFastPath(f *testing.F) {
	f.Add([]byte(sendExample))
	f.Add([]byte(`{"text":"\ud83d\ude00\ud800\udc00\udbff","to":"1"}`))
	f.Add([]byte(`{"text":"\u0000\u001f\"\\"}`))
	f.Add([]byte(" {\"sessionId\" :\"x\"\r\n}\n"))
	f.Add([]byte(`{"text":"a","text":"b"}`))
	f.Add([]byte("{\"text\":\"\xed\xa0\x80\"}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := scanSendBody(body)
		if !ok {
			return
		}
		var slow sendBody
		if err := decodeBody(body, &slow, sendExample); err != nil {
			t.Fatalf("scanner accepted %q, encoding/json refused it: %v", body, err)
		}
		if !sameSendBody(fast, slow) {
			t.Fatalf("%q: scanner read %s, encoding/json %s", body, showSendBody(fast), showSendBody(slow))
		}
	})
}

func sameSendBody(a, b sendBody) bool {
	eq := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.SessionID, b.SessionID) && eq(a.To, b.To) && eq(a.Text, b.Text)
}

func showSendBody(b sendBody) string {
	out, _ := json.Marshal(b)
	return string(out)
}

func TestAppendQueuedJSON(t *testing.T) {
	for _, q := range []queuedJSON{
		{ID: "msg_01JABCDEF", Status: "queued", SessionID: "919876543210", To: "919999999999", CreatedAt: 1790000000},
		{ID: `a"b\c<d>&` + "\x01é\u2028", Status: "", SessionID: "", To: "x", CreatedAt: -5},
	} {
		want, _ := json.Marshal(q)
		if got := appendQueuedJSON(nil, q); string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

func FuzzAppendQueuedJSON(f *testing.F) {
	f.Add("msg_1", "919876543210", int64(1))
	f.Add("<\u2028\xff\"", strings.Repeat("\\", 3), int64(-1))
	f.Fuzz(func(t *testing.T, id, to string, at int64) {
		q := queuedJSON{ID: id, Status: "queued", SessionID: to, To: to, CreatedAt: at}
		want, _ := json.Marshal(q)
		if got := appendQueuedJSON(nil, q); string(got) != string(want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

// The usual body costs two allocations: one string holding the body, of
// which the values are substrings, and the three values' headers.
func TestScanSendBodyAllocations(t *testing.T) {
	body := []byte(sendExample)
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := scanSendBody(body); !ok {
			t.Fatal("example body declined")
		}
	}); n > 2 {
		t.Errorf("scanSendBody: %.0f allocations, want at most 2", n)
	}
}

// A body that is mostly padding does not stay alive behind its values: they
// are copied out of it. (Substrings of one string sit exactly as far apart
// as they do in it.)
func TestScanSendBodyCopiesValuesOutOfPadding(t *testing.T) {
	for _, pad := range []int{0, 1 << 20} {
		body := `{"sessionId":"919876543210",` + strings.Repeat(" ", pad) + `"text":"hi"}`
		b, ok := scanSendBody([]byte(body))
		if !ok || *b.SessionID != "919876543210" || *b.Text != "hi" {
			t.Fatalf("pad %d: %v %+v", pad, ok, b)
		}
		apart := uintptr(unsafe.Pointer(unsafe.StringData(*b.Text))) - uintptr(unsafe.Pointer(unsafe.StringData(*b.SessionID)))
		shared := apart == uintptr(strings.Index(body, "hi")-strings.Index(body, "919876543210"))
		if shared != (pad == 0) {
			t.Errorf("pad %d: values share the body: %v, want %v", pad, shared, pad == 0)
		}
	}
}
