package fakewa

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"io"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
)

// noise is the server half of WhatsApp's Noise_XX_25519_AESGCM_SHA256
// handshake, written independently of whatsmeow's client half (socket
// package) so the test checks one against the other.
type noise struct {
	hash, salt []byte
	key        cipher.AEAD
	counter    uint32
}

func newGCM(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

func iv(n uint32) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b[8:], n)
	return b
}

func (n *noise) start(pattern string, header []byte) {
	if len(pattern) == 32 {
		n.hash = []byte(pattern)
	} else {
		h := sha256.Sum256([]byte(pattern))
		n.hash = h[:]
	}
	n.salt = n.hash
	n.key = newGCM(n.hash)
	n.authenticate(header)
}

func (n *noise) authenticate(data []byte) {
	h := sha256.Sum256(append(append([]byte(nil), n.hash...), data...))
	n.hash = h[:]
}

func (n *noise) encrypt(pt []byte) []byte {
	ct := n.key.Seal(nil, iv(n.counter), pt, n.hash)
	n.counter++
	n.authenticate(ct)
	return ct
}

func (n *noise) decrypt(ct []byte) ([]byte, error) {
	pt, err := n.key.Open(nil, iv(n.counter), ct, n.hash)
	n.counter++
	if err == nil {
		n.authenticate(ct)
	}
	return pt, err
}

func expand(salt, data []byte) (write, read []byte) {
	h := hkdf.New(sha256.New, data, salt, nil)
	write, read = make([]byte, 32), make([]byte, 32)
	_, _ = io.ReadFull(h, write)
	_, _ = io.ReadFull(h, read)
	return write, read
}

func (n *noise) mixIntoKey(data []byte) {
	n.counter = 0
	write, read := expand(n.salt, data)
	n.salt = write
	n.key = newGCM(read)
}

func (n *noise) mixShared(priv, pub *[32]byte) error {
	secret, err := curve25519.X25519(priv[:], pub[:])
	if err != nil {
		return err
	}
	n.mixIntoKey(secret)
	return nil
}

// finish returns the transport ciphers: what the client writes (the server
// reads) and what the client reads (the server writes).
func (n *noise) finish() (clientWrite, clientRead cipher.AEAD) {
	w, r := expand(n.salt, nil)
	return newGCM(w), newGCM(r)
}
