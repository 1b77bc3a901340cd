package queue

import (
	"testing"
	"time"
)

func TestReadTimes(t *testing.T) {
	r := NewReadTimes("b", "a")
	later := time.Now().Add(10 * time.Second)
	ages := r.Ages(later)
	if len(ages) != 2 || ages[0].Queue != "a" || ages[1].Queue != "b" {
		t.Fatalf("ages = %+v; want a, b", ages)
	}
	for _, a := range ages {
		if a.Age < 9*time.Second || a.Age > 11*time.Second {
			t.Errorf("%s age %s; want about 10s", a.Queue, a.Age)
		}
	}

	time.Sleep(20 * time.Millisecond)
	if o := r.Mark("a"); o.Failures != 0 {
		t.Errorf("first Mark ended an outage %+v", o)
	}
	r.Mark("untracked")
	r.Failed("untracked")
	ages = r.Ages(time.Now())
	if len(ages) != 2 {
		t.Fatalf("untracked queue added: %+v", ages)
	}
	if ages[0].Age >= ages[1].Age || ages[1].Age < 20*time.Millisecond {
		t.Errorf("after Mark(a): a %s, b %s; want a younger than b, b at least 20ms", ages[0].Age, ages[1].Age)
	}

	r.Failed("b")
	time.Sleep(20 * time.Millisecond)
	r.Failed("b")
	r.Failed("b")
	o := r.Mark("b")
	if o.Failures != 3 || o.For < 20*time.Millisecond {
		t.Errorf("outage %+v; want 3 failures over at least 20ms", o)
	}
	if o := r.Mark("b"); o.Failures != 0 {
		t.Errorf("second Mark ended an outage again: %+v", o)
	}

	var none *ReadTimes
	none.Mark("a")
	none.Failed("a")
	if none.Ages(later) != nil {
		t.Error("nil ReadTimes has ages")
	}
}
