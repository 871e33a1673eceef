package appliance

import (
	"fmt"
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
		checkMin(t, round, &h, live)
	}
}

// Mostly ascending pushes with some out of order, as sessions make them:
// the run and the heap together still give the smallest live id.
func TestIDHeapMostlyAscending(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h idHeap
	live := map[string]bool{}
	next := 1000
	for round := 0; round < 20000; round++ {
		switch x := r.IntN(10); {
		case x < 5:
			next++
			id := fmt.Sprintf("msg_%06d", next)
			live[id] = true
			h.push(id)
		case x < 6: // an older id comes back (a retry, a recovered message)
			id := fmt.Sprintf("msg_%06d", next-r.IntN(500))
			if !live[id] {
				live[id] = true
				h.push(id)
			}
		default: // mostly the oldest go, sometimes any
			var want []string
			for id := range live {
				want = append(want, id)
			}
			if len(want) > 0 {
				slices.Sort(want)
				i := 0
				if r.IntN(4) == 0 {
					i = r.IntN(len(want))
				}
				delete(live, want[i])
			}
		}
		checkMin(t, round, &h, live)
	}
	if len(h.heap) > len(h.run)-h.head+600 {
		t.Errorf("heap holds %d ids, run %d: ascending pushes should go to the run", len(h.heap), len(h.run)-h.head)
	}
}

// checkMin fails the test unless h's min is the smallest id live holds.
func checkMin(t *testing.T, round int, h *idHeap, live map[string]bool) {
	t.Helper()
	var want []string
	for id := range live {
		want = append(want, id)
	}
	got, ok := h.min(func(id string) bool { return live[id] })
	if len(want) == 0 {
		if ok {
			t.Fatalf("round %d: min %q of an empty set", round, got)
		}
		return
	}
	if m := slices.Min(want); !ok || got != m {
		t.Fatalf("round %d: min = %q %v, want %q", round, got, ok, m)
	}
}
