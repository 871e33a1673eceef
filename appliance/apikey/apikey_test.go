package apikey

import (
	"strings"
	"testing"
)

func TestNewKeysParseAndDiffer(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		k, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != Len || !strings.HasPrefix(k, Prefix) {
			t.Fatalf("key %q: want %d chars starting %q", k, Len, Prefix)
		}
		if err := Parse([]byte(k)); err != nil {
			t.Fatalf("fresh key %q rejected: %v", k, err)
		}
		if seen[k] {
			t.Fatalf("duplicate key after %d", i)
		}
		seen[k] = true
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := New()
	flip := []byte(good)
	i := len(Prefix) + 5
	if flip[i] == 'a' {
		flip[i] = 'b'
	} else {
		flip[i] = 'a'
	}
	cases := map[string]string{
		"empty":          "",
		"wrong prefix":   "wlt_test_" + good[len(Prefix):],
		"short":          good[:Len-1],
		"long":           good + "x",
		"typo in secret": string(flip),
		"bad alphabet":   good[:Len-1] + "-",
		"bad checksum":   good[:Len-6] + "000000",
	}
	for name, k := range cases {
		if err := Parse([]byte(k)); err == nil {
			t.Errorf("%s: %q accepted", name, k)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	k := []byte(mustNew(t))
	if n := testing.AllocsPerRun(100, func() { _ = Parse(k) }); n != 0 {
		t.Fatalf("Parse allocates %v times", n)
	}
}

func mustNew(t *testing.T) string {
	t.Helper()
	k, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func FuzzParse(f *testing.F) {
	k, _ := New()
	f.Add(k)
	f.Add("")
	f.Add(Prefix)
	f.Add(Prefix + strings.Repeat("0", secretLen+checksumLen))
	f.Add("Bearer " + k)
	f.Fuzz(func(t *testing.T, s string) {
		if err := Parse([]byte(s)); err == nil {
			// Anything accepted must have the exact shape and a matching checksum.
			if len(s) != Len || !strings.HasPrefix(s, Prefix) {
				t.Fatalf("accepted %q of the wrong shape", s)
			}
			if checksum(s[len(Prefix):len(Prefix)+secretLen]) != s[len(Prefix)+secretLen:] {
				t.Fatalf("accepted %q with a wrong checksum", s)
			}
		}
	})
}
