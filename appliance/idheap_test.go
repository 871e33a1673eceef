package appliance

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestIDHeapGivesTheSmallestLiveID(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h idHeap
	live := map[string]bool{}
	for round := 0; round < 2000; round++ {
		if r.IntN(3) > 0 {
			id := string(rune('a'+r.IntN(26))) + string(rune('a'+r.IntN(26))) + string(rune('a'+r.IntN(26)))
			if !live[id] {
				live[id] = true
				h.push(id)
			}
		} else {
			for id := range live {
				delete(live, id)
				break
			}
		}
		var want []string
		for id := range live {
			want = append(want, id)
		}
		got, ok := h.min(func(id string) bool { return live[id] })
		if len(want) == 0 {
			if ok {
				t.Fatalf("round %d: min %q of an empty set", round, got)
			}
			continue
		}
		if m := slices.Min(want); !ok || got != m {
			t.Fatalf("round %d: min = %q %v, want %q", round, got, ok, m)
		}
	}
}
