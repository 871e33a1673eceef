// Package apikey owns the format of Walytic API keys: generation, the
// checksum that rejects a mistyped key before any look-up, and the hash that
// is the only form ever stored. It must not store, log or look keys up.
//
// A key is "wlt_live_" + 43 base62 characters carrying 256 random bits + 6
// base62 characters of CRC-32 over those 43 characters (58 characters after
// the prefix in all, 67 with it).
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"math/big"
)

// Prefix starts every live key.
const Prefix = "wlt_live_"

const (
	secretLen   = 43 // base62 digits needed for 256 bits
	checksumLen = 6  // base62 digits needed for 32 bits
	// Len is the length of a whole key, prefix included.
	Len = len(Prefix) + secretLen + checksumLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrMalformed means the string is not a well-formed key: wrong prefix,
// length, alphabet or checksum. Such a key cannot exist, so no look-up is made.
var ErrMalformed = errors.New("malformed API key")

// New returns a fresh random key.
func New() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	secret := encodeBase62(new(big.Int).SetBytes(raw[:]), secretLen)
	return Prefix + secret + checksum(secret), nil
}

// Parse checks a key's form and checksum without allocating.
func Parse(key []byte) error {
	if len(key) != Len || string(key[:len(Prefix)]) != Prefix {
		return ErrMalformed
	}
	body := key[len(Prefix):]
	for _, c := range body {
		if base62Index(c) < 0 {
			return ErrMalformed
		}
	}
	secret := body[:secretLen]
	sum := crc32.ChecksumIEEE(secret)
	var want [checksumLen]byte
	putChecksum(want[:], sum)
	if string(body[secretLen:]) != string(want[:]) {
		return ErrMalformed
	}
	return nil
}

// Hash is what is stored and looked up: SHA-256 of the whole key.
func Hash(key []byte) [32]byte { return sha256.Sum256(key) }

// Last4 is the part of a key safe to display.
func Last4(key string) string { return key[len(key)-4:] }

func checksum(secret string) string {
	var out [checksumLen]byte
	putChecksum(out[:], crc32.ChecksumIEEE([]byte(secret)))
	return string(out[:])
}

func putChecksum(out []byte, sum uint32) {
	n := uint64(sum)
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62[n%62]
		n /= 62
	}
}

func encodeBase62(n *big.Int, width int) string {
	out := make([]byte, width)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62[mod.Int64()]
	}
	return string(out)
}

func base62Index(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 36
	}
	return -1
}
