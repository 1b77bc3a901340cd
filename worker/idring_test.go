package worker

import "testing"

func TestIDRingForgetsOldest(t *testing.T) {
	r := newIDRing(3)
	for id := int64(1); id <= 4; id++ {
		r.add(id)
	}
	for id, want := range map[int64]bool{1: false, 2: true, 3: true, 4: true, 5: false} {
		if got := r.has(id); got != want {
			t.Errorf("has(%d) = %v, want %v", id, got, want)
		}
	}
	r.add(5)
	if r.has(2) || !r.has(5) {
		t.Errorf("after add(5): has(2) = %v, has(5) = %v", r.has(2), r.has(5))
	}
}
