package protocol

import (
	"testing"
	"time"
)

// RFC3339 and UTCZ write chrono's shortest exact fraction (0, 3, 6 or 9 digits) in UTC.
func TestChronoUTCForms(t *testing.T) {
	loc := time.FixedZone("x", 2*3600)
	for _, tc := range []struct {
		ns         int
		rfc, withZ string
	}{
		{0, "2026-12-02T03:04:05+00:00", "2026-12-02T03:04:05Z"},
		{120_000_000, "2026-12-02T03:04:05.120+00:00", "2026-12-02T03:04:05.120Z"},
		{123_456_000, "2026-12-02T03:04:05.123456+00:00", "2026-12-02T03:04:05.123456Z"},
		{123_456_789, "2026-12-02T03:04:05.123456789+00:00", "2026-12-02T03:04:05.123456789Z"},
	} {
		at := time.Date(2026, 12, 2, 5, 4, 5, tc.ns, loc)
		if got := RFC3339(at); got != tc.rfc {
			t.Errorf("RFC3339(%v) = %s, want %s", at, got, tc.rfc)
		}
		if got := UTCZ(at); got != tc.withZ {
			t.Errorf("UTCZ(%v) = %s, want %s", at, got, tc.withZ)
		}
	}
}
