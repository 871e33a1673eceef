package appliance

import (
	"testing"
	"time"
)

// Period names the UTC month, whichever month it named last (it keeps the
// last one to answer the common case without formatting).
func TestPeriodAcrossMonthsAndZones(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	cases := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), "2026-11"},
		{time.Date(2026, 11, 30, 23, 59, 59, 999_999_999, time.UTC), "2026-11"},
		{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "2026-12"},
		{time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), "2026-11"},
		{time.Date(2026, 10, 31, 23, 59, 59, 0, time.UTC), "2026-10"},
		{time.Date(2027, 1, 1, 3, 0, 0, 0, ist), "2026-12"}, // 21:30 UTC on Dec 31
		{time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), "2026-12"},
		{time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "2027-01"},
		{time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC), "2024-02"},
		{time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), "2024-03"},
		{time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC), "2024-02"},
	}
	for range 2 { // the second round starts from the last month named
		for _, c := range cases {
			if got := Period(c.t); got != c.want {
				t.Errorf("Period(%v) = %s, want %s", c.t, got, c.want)
			}
		}
	}
}
