package domainevents

import "testing"

func TestDEMatchPattern(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "payment.processed", true},
		{"*", "a", true},
		{"*", "a.b.c.d", true},
		{"order.completed", "order.completed", true},
		{"order.completed", "order.completed.v2", false},
		{"order.completed", "order.complete", false},
		{"order.completed", "other.completed", false},
		{"payment.*", "payment.processed", true},
		{"payment.*", "payment.failed", true},
		{"payment.*", "payment", false},               // segment counts differ
		{"payment.*", "payment.card.captured", false}, // * is one segment (tasker-core)
		{"payment.*", "payments.processed", false},    // first segment literal
		{"*.processed", "payment.processed", true},    // leading wildcard segment
		{"*.processed", "payment.failed", false},      // second segment literal
		{"*.*", "order.validated", true},              // two segments
		{"*.*", "order", false},                       // too few
		{"*.*", "a.b.c", false},                       // too many
		{"payment.*.captured", "payment.card.captured", true},
		{"payment.*.captured", "payment.card.refunded", false},
		{"pay*.processed", "payment.processed", true}, // partial-segment glob (superset)
		{"pay*.processed", "pay.processed", true},     // * may match nothing
		{"pay*.processed", "repay.processed", false},  // anchored at the segment start
		{"*ment.*", "payment.x", true},                // suffix glob in a segment
		{"p*t.x", "payment.x", true},
		{"p*t.x", "paymentx.x", false},
		{"a*b*c.z", "aXbYc.z", true},
		{"a*b*c.z", "aXcYb.z", false},
		{"payment.**", "payment.processed", true}, // ** is just * within the segment
		{"payment.*", "", false},
		{"order.validated", "", false},
	}
	for _, c := range cases {
		if got := MatchPattern(c.pattern, c.name); got != c.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestDEValidatePattern(t *testing.T) {
	for _, ok := range []string{"*", "payment.*", "order.completed", "*.failed", "a"} {
		if err := ValidatePattern(ok); err != nil {
			t.Errorf("ValidatePattern(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "payment.", ".x", "a..b", "a b", "payment.*\n"} {
		if err := ValidatePattern(bad); err == nil {
			t.Errorf("ValidatePattern(%q) accepted", bad)
		}
	}
}
