package appliance

// idHeap gives the session marks (storage.SessionMarks) the smallest live id
// of a set of message ids, with lazy deletion: an id leaves when it reaches
// the front and its owner no longer counts it.
//
// Ids are mostly pushed in ascending order (a session's messages are queued,
// sent and read in id order), so those go to a FIFO run, O(1) each; an id
// smaller than the run's last goes to a min-heap, O(log n). The smallest
// live id is the smaller of the two fronts.
type idHeap struct {
	run  []string // ascending; run[head:] are the ones not yet dropped
	head int
	heap []string
}

func (h *idHeap) push(id string) {
	if h.head == len(h.run) {
		h.run, h.head = h.run[:0], 0
	}
	if n := len(h.run); n == 0 || h.run[n-1] <= id {
		h.run = append(h.run, id)
		return
	}
	h.heap = append(h.heap, id)
	s := h.heap
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
// ones before it; ok is false when none is left.
func (h *idHeap) min(live func(string) bool) (id string, ok bool) {
	for h.head < len(h.run) && !live(h.run[h.head]) {
		h.run[h.head] = ""
		h.head++
	}
	h.compactRun()
	for len(h.heap) > 0 && !live(h.heap[0]) {
		h.pop()
	}
	switch {
	case h.head < len(h.run) && (len(h.heap) == 0 || h.run[h.head] <= h.heap[0]):
		return h.run[h.head], true
	case len(h.heap) > 0:
		return h.heap[0], true
	}
	return "", false
}

// compactRun gives back the run's dropped front once it is most of it.
func (h *idHeap) compactRun() {
	if h.head == len(h.run) {
		h.run, h.head = h.run[:0], 0
	}
	if h.head > 1024 && h.head > len(h.run)/2 {
		n := copy(h.run, h.run[h.head:])
		clear(h.run[n:])
		h.run, h.head = h.run[:n], 0
	}
	if cap(h.run) > 1024 && len(h.run) < cap(h.run)/4 {
		h.run = append([]string(nil), h.run...) // give back the memory of a drained backlog
	}
}

func (h *idHeap) pop() {
	s := h.heap
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
		s = append([]string(nil), s...) // give back the memory of a drained backlog
	}
	h.heap = s
}
