package whatsapp

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// NewMessageID returns an id in the form WhatsApp's own clients use ("3EB0"
// + 18 upper-case hex digits). The appliance chooses it when a message is
// queued, so a resend after a crash reuses it instead of making a duplicate.
func NewMessageID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return "3EB0" + strings.ToUpper(hex.EncodeToString(b[:]))
}
