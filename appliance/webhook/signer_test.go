package webhook

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// The cached, reused HMAC states give the signatures the plain formulas
// give, for every secret and body, from many goroutines at once (a state
// handed to two attempts, or not reset between them, would break this).
func TestCachedMACsMatchPlainHMAC(t *testing.T) {
	secrets := []string{vecSecret, vecSecret2, "not-a-secret"}
	for range 5 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 300 {
				secret := secrets[r.IntN(len(secrets))]
				body := strings.Repeat("x", r.IntN(700))
				id := fmt.Sprintf("evt_%d_%d", g, i)
				ts := int64(1714602000 + i)
				hs := SignatureHeaders([]string{secret}, id, ts, []byte(body))
				if got, want := hs.Get(HeaderSignature), refXSig(secret, body); got != want {
					errs <- fmt.Sprintf("X-Walytic-Signature for %q: %s, want %s", secret, got, want)
					return
				}
				got := hs.Get(HeaderWebhookSignature)
				if secret == "not-a-secret" {
					if got != "" {
						errs <- "a secret without a Standard Webhooks key signed webhook-signature"
						return
					}
					continue
				}
				if want := refV1Sig(t, secret, id, ts, body); got != want {
					errs <- fmt.Sprintf("webhook-signature for %q: %s, want %s", secret, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// The cache of keyed states stays bounded however many secrets pass
// through it, and starting over does not change a signature.
func TestMACCacheIsBounded(t *testing.T) {
	for i := range macCacheMax + 50 {
		s := fmt.Sprintf("whsec_%d", i) // distinct strings; only the X-Walytic key matters here
		if got, want := macsFor(s).signWalytic([]byte("b")), refXSig(s, "b"); got != want {
			t.Fatalf("secret %d: %s, want %s", i, got, want)
		}
	}
	n := 0
	macCache.Range(func(any, any) bool { n++; return true })
	if n > macCacheMax {
		t.Errorf("cache holds %d secrets, bound %d", n, macCacheMax)
	}
}

func BenchmarkSignatureHeaders(b *testing.B) {
	body := []byte(`{"id":"evt_33nsn3ccrfdhg7pfa7p0","event":"message.delivered","sessionId":"919876543210","timestamp":1795698809,"messageId":"msg_33nsn3ccrfdhj19kq2g0","to":"919876543210","waMessageId":"3EB0ABCDEF0123456789AB"}`)
	b.ReportAllocs()
	for b.Loop() {
		SignatureHeaders([]string{vecSecret}, "evt_33nsn3ccrfdhg7pfa7p0", 1795698809, body)
	}
}
