package appliance

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walytic/appliance/appliance/whatsapp"
	"github.com/walytic/appliance/appliance/whatsapp/sandbox"
	"github.com/walytic/appliance/storage"
)

var waIDForm = regexp.MustCompile(`^3EB0[0-9A-F]{20}$`)

func TestOutboundWAIDPointsBackAtItsMessage(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	prev := ""
	for i := range 100 {
		id := storage.NewID("msg_", now) // same instant: ids still grow
		wa := outboundWAID(id)
		if !waIDForm.MatchString(wa) || !sandbox.IsMessageID(wa) {
			t.Fatalf("outboundWAID(%s) = %q: want 3EB0 and 20 upper-case hex digits", id, wa)
		}
		if wa <= prev {
			t.Fatalf("step %d: %s does not sort after %s", i, wa, prev)
		}
		prev = wa
		p, ok := messageIDPrefixOf(wa)
		if !ok || !strings.HasPrefix(id, p) || len(p) != len("msg_")+16 {
			t.Fatalf("messageIDPrefixOf(%s) = %q, %v; want a 16-character prefix of %s", wa, p, ok, id)
		}
	}
	for _, other := range []string{"", "3EB0", "3EB0ABCDEF0123456789AB", "3EB0abcdef0123456789abcd", "4EB00123456789ABCDEF0123", "3EB00123456789ABCDEF012G", "3EB00123456789ABCDEF01234"} {
		if p, ok := messageIDPrefixOf(other); ok {
			t.Errorf("messageIDPrefixOf(%q) = %q, want no match", other, p)
		}
	}
}

func FuzzMessageIDPrefixOf(f *testing.F) {
	f.Add(outboundWAID(storage.NewID("msg_", time.Now())))
	f.Add("3EB0ABCDEF0123456789AB")
	f.Add("3EB0FFFFFFFFFFFFFFFFFFFF")
	f.Fuzz(func(t *testing.T, wa string) {
		p, ok := messageIDPrefixOf(wa)
		if !ok {
			return
		}
		// Any accepted id names a prefix that maps back to the same id.
		head, ok := storage.IDHead("msg_", p+"0000")
		if !ok {
			t.Fatalf("prefix %q of %q is not the start of a message id", p, wa)
		}
		if back := outboundWAID(storage.IDHeadPrefix("msg_", head) + "0000"); back != wa {
			t.Fatalf("%q → %q → %q", wa, p, back)
		}
	})
}

// A receipt for a sent message that is no longer held in memory (beyond
// liveMax, say) finds it in storage through the message id its WhatsApp id
// was made from: sends write no WhatsApp-id index entry.
func TestReceiptFindsAnEvictedMessageByItsWAID(t *testing.T) {
	h := newHarness(t, silentSandbox())
	h.mustSession(DefaultWorkspace, sess, "sandbox")
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "evicted"})
	h.waitStatus(DefaultWorkspace, m.ID, StatusSent)
	if _, err := h.db.MessageIDByWAID(DefaultWorkspace, sess, m.WAID); err == nil {
		t.Fatal("the send wrote a WhatsApp-id index entry")
	}
	rt, err := h.app.runtime(DefaultWorkspace, sess)
	if err != nil {
		t.Fatal(err)
	}
	rt.msgMu.Lock()
	if rt.byWA[m.WAID] == nil {
		rt.msgMu.Unlock()
		t.Fatal("the sent message is not awaiting receipts in memory")
	}
	delete(rt.byWA, m.WAID)
	delete(rt.live, m.ID)
	rt.msgMu.Unlock()

	rt.OnReceipt(whatsapp.Receipt{WAMessageIDs: []string{m.WAID}, Kind: whatsapp.ReceiptRead, Timestamp: time.Now()})
	h.waitStatus(DefaultWorkspace, m.ID, StatusRead)
}

// SentText gives back a sent message's text by its WhatsApp id, from the
// log, for a recipient's retry request.
func TestSentTextByWhatsAppID(t *testing.T) {
	h, gate := newGatedHarness(t)
	gate.release(h)
	m := h.mustSend(DefaultWorkspace, SendInput{SessionID: sess, To: rcpt, Text: "Your order #1042 has shipped"})
	sent := h.waitStatus(DefaultWorkspace, m.ID, StatusSent)
	rt, _ := h.app.runtime(DefaultWorkspace, sess)
	if text, ok := rt.SentText(sent.WAID); !ok || text != "Your order #1042 has shipped" {
		t.Errorf("SentText(%s) = %q, %v", sent.WAID, text, ok)
	}
	if _, ok := rt.SentText("3EB0000000000000000000"); ok {
		t.Error("SentText found a message for an unknown id")
	}
}
