package calendar

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"syndic/shared/sqldb/sqldbtest"
)

// TestAppointmentsListParticipants: a list longer than one batch of ids
// (and of every padded size) gives each appointment exactly its own
// participants.
func TestAppointmentsListParticipants(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, db := openStore(t, url)
		for id := int64(1); id <= 5; id++ {
			applyContact(t, db, id, contactCreated, feedContact{ID: id, Name: fmt.Sprintf("P%d", id), Email: fmt.Sprintf("p%d@example.org", id), Version: 1})
		}
		const n = maxIDs + 20
		want := map[int64][]int64{}
		start := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
		for i := range n {
			var people []int64
			for id := int64(1); id <= 5; id++ {
				if (i+1)%int(id) == 0 {
					people = append(people, id)
				}
			}
			at := start.Add(time.Duration(i) * time.Hour)
			a, err := s.Create(ctx, Input{Title: fmt.Sprintf("A%d", i), StartsAt: at.Format(time.RFC3339), EndsAt: at.Add(30 * time.Minute).Format(time.RFC3339), Participants: people})
			if err != nil {
				t.Fatal(err)
			}
			want[a.ID] = people
		}
		for _, limit := range []int{1, 3, 8, 9, 65, n} {
			got, err := s.Appointments(ctx, AppointmentQuery{Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != limit {
				t.Fatalf("limit %d: %d appointments", limit, len(got))
			}
			for _, a := range got {
				p := slices.Sorted(slices.Values(a.Participants))
				if !slices.Equal(p, want[a.ID]) || len(a.Attendees) != len(p) {
					t.Fatalf("limit %d: appointment %d has participants %v (%d attendees), want %v", limit, a.ID, p, len(a.Attendees), want[a.ID])
				}
			}
		}
	})
}
