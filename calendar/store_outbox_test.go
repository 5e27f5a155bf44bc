package calendar

import (
	"context"
	"testing"
	"time"

	"syndic/shared/sqldb/sqldbtest"
)

// TestOutboxClaims: two replicas' claims on one outbox entry. One claim at
// a time; a replica whose claim ran out and was taken renews nothing, gives
// nothing back and records no failure or retry over the holder's; sent is
// recorded whoever holds the entry.
func TestOutboxClaims(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, db := openMailStore(t, url)
		seedMailContacts(t, db)
		id := appointmentWith(t, s, 7)
		entry := outboxOf(t, s, id)[0]
		lease := 10 * time.Second
		now := time.Now()

		aHeld := now.Add(lease)
		if _, ok, err := s.ClaimOutbox(ctx, entry.ID, now, lease, time.Time{}); err != nil || !ok {
			t.Fatalf("A's claim: ok %v, err %v", ok, err)
		}
		if _, ok, err := s.ClaimOutbox(ctx, entry.ID, now.Add(time.Second), lease, time.Time{}); err != nil || ok {
			t.Fatalf("B's claim while A holds it: ok %v, err %v; want refused", ok, err)
		}
		if ok, err := s.RenewOutbox(ctx, entry.ID, aHeld, now.Add(3*time.Second+lease)); err != nil || !ok {
			t.Fatalf("A renews: ok %v, err %v", ok, err)
		}
		aHeld = now.Add(3*time.Second + lease)

		// A stalls past its claim; B takes the entry.
		later := aHeld.Add(time.Second)
		bHeld := later.Add(lease)
		if _, ok, err := s.ClaimOutbox(ctx, entry.ID, later, lease, time.Time{}); err != nil || !ok {
			t.Fatalf("B's claim once A's ran out: ok %v, err %v", ok, err)
		}
		if ok, err := s.RenewOutbox(ctx, entry.ID, aHeld, later.Add(lease)); err != nil || ok {
			t.Errorf("A renews a claim it lost: ok %v, err %v; want refused", ok, err)
		}
		if err := s.ReleaseOutbox(ctx, []int64{entry.ID}, []time.Time{aHeld}); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkOutbox(ctx, entry.ID, aHeld, "failed", 10, "A gave up", later); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkOutbox(ctx, entry.ID, aHeld, "pending", 1, "A's call failed", later.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := outboxOf(t, s, id)[0]; got.Status != "pending" || got.Attempts != 0 || got.LastError != "" {
			t.Fatalf("after A's records under a lost claim: %s, %d attempts, %q; want B's entry untouched", got.Status, got.Attempts, got.LastError)
		}
		if _, ok, err := s.ClaimOutbox(ctx, entry.ID, later, lease, time.Time{}); err != nil || ok {
			t.Fatalf("a third claim after A's release: ok %v, err %v; want B's claim kept", ok, err)
		}

		// B's call failed: recorded under its claim, the claim ends.
		if err := s.MarkOutbox(ctx, entry.ID, bHeld, "pending", 3, "503", later); err != nil {
			t.Fatal(err)
		}
		if got := outboxOf(t, s, id)[0]; got.Status != "pending" || got.Attempts != 3 || got.LastError != "503" {
			t.Fatalf("after B's retry: %s, %d attempts, %q", got.Status, got.Attempts, got.LastError)
		}
		// A, still calling on its old claim, is accepted: sent stands,
		// and the attempts B counted are kept.
		if err := s.MarkOutboxSent(ctx, entry.ID, 2, later); err != nil {
			t.Fatal(err)
		}
		if got := outboxOf(t, s, id)[0]; got.Status != "sent" || got.Attempts != 3 {
			t.Fatalf("after A's sent: %s, %d attempts; want sent, 3", got.Status, got.Attempts)
		}
		if due, err := s.DueOutbox(ctx, later.Add(time.Hour), 10); err != nil || len(due) != 0 {
			t.Errorf("due after sent: %v, %v; want none", due, err)
		}
	})
}
