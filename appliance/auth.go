package appliance

import (
	"crypto/subtle"
	"encoding/hex"
	"time"

	"github.com/walytic/appliance/appliance/apikey"
	"github.com/walytic/appliance/appliance/limiter"
	"github.com/walytic/appliance/storage"
)

// Authenticate resolves a bearer token to its key record. The checksum is
// verified first, so a mistyped key costs no look-up.
func (a *Appliance) Authenticate(token []byte) (storage.APIKey, error) {
	if len(token) == 0 {
		return storage.APIKey{}, &Error{Code: CodeMissingAPIKey, Type: typeOf(CodeMissingAPIKey),
			Message: "no API key: send it as the header `Authorization: Bearer wlt_live_…` (create one with `walytic keys create`)"}
	}
	if apikey.Parse(token) != nil {
		return storage.APIKey{}, &Error{Code: CodeInvalidAPIKey, Type: typeOf(CodeInvalidAPIKey),
			Message: "the API key is malformed (wrong prefix, length or checksum): copy the whole key as `walytic keys create` printed it"}
	}
	h := apikey.Hash(token)
	k, ok := a.state.KeyByHash(h)
	if !ok || !hashEqual(k.Hash, h) {
		return storage.APIKey{}, &Error{Code: CodeInvalidAPIKey, Type: typeOf(CodeInvalidAPIKey),
			Message: "the API key is not valid: it was revoked or rotated, or never existed; create a new one with `walytic keys create`"}
	}
	return k, nil
}

// hashEqual compares the stored hex hash with h in constant time.
func hashEqual(stored string, h [32]byte) bool {
	var enc [64]byte
	hex.Encode(enc[:], h[:])
	return subtle.ConstantTimeCompare([]byte(stored), enc[:]) == 1
}

// Admit charges one request to the key's rate limit.
func (a *Appliance) Admit(k storage.APIKey) limiter.Decision {
	return a.limiter.Allow(k.ID, EffectiveLimits(k))
}

// AdmitAt is Admit for a request that arrived at `arrived` (time.Now, as the
// HTTP server read it when the request came in), so the limiter reads no
// clock of its own (see limiter.AllowAt).
func (a *Appliance) AdmitAt(k storage.APIKey, arrived time.Time) limiter.Decision {
	return a.limiter.AllowAt(k.ID, EffectiveLimits(k), arrived)
}
