package appliance

// idHeap is a min-heap of message ids with lazy deletion: an id leaves when
// it reaches the top and its owner no longer counts it. It gives the
// session marks (storage.SessionMarks) their smallest live id in O(log n)
// per message instead of a scan.
type idHeap []string

func (h *idHeap) push(id string) {
	*h = append(*h, id)
	s := *h
	i := len(s) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if s[parent] <= s[i] {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

// min returns the smallest id for which live is true, dropping the dead
// ones above it; ok is false when none is left.
func (h *idHeap) min(live func(string) bool) (id string, ok bool) {
	for len(*h) > 0 {
		if top := (*h)[0]; live(top) {
			return top, true
		}
		h.pop()
	}
	return "", false
}

func (h *idHeap) pop() {
	s := *h
	n := len(s) - 1
	s[0] = s[n]
	s[n] = ""
	s = s[:n]
	i := 0
	for {
		l, r, small := 2*i+1, 2*i+2, i
		if l < n && s[l] < s[small] {
			small = l
		}
		if r < n && s[r] < s[small] {
			small = r
		}
		if small == i {
			break
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
	if cap(s) > 1024 && n < cap(s)/4 {
		s = append(idHeap(nil), s...) // give back the memory of a drained backlog
	}
	*h = s
}
