package main

import "testing"

func TestProcsFor(t *testing.T) {
	for _, tc := range []struct {
		env        string
		dflt, want int
	}{
		{"", 2, 4},
		{"", 1, 2},
		{"", 8, 16},
		{"3", 3, 3}, // GOMAXPROCS=3: the runtime already uses 3, serve keeps it
		{"1", 1, 1},
	} {
		if got := procsFor(tc.env, tc.dflt); got != tc.want {
			t.Errorf("procsFor(%q, %d) = %d, want %d", tc.env, tc.dflt, got, tc.want)
		}
	}
}
