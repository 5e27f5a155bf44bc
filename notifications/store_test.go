package notifications

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/sqldb/sqldbtest"
)

// TestStore runs the store suite on SQLite and PostgreSQL.
func TestStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s *SQLStore)
	}{
		{"accept", testStoreAccept},
		{"concurrent accept", testStoreConcurrentAccept},
		{"claim", testStoreClaim},
		{"concurrent claims", testStoreConcurrentClaims},
		{"claims racing a delivery", testStoreClaimRace},
		{"retry and release", testStoreRetry},
		{"sent and failed", testStoreOutcomes},
		{"a lost claim clears nothing", testStoreLostClaim},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sqldbtest.Each(t, func(t *testing.T, databaseURL string) {
				tc.fn(t, openStore(t, databaseURL))
			})
		})
	}
}

func mustAccept(t *testing.T, s *SQLStore, key string, req Request) Notification {
	t.Helper()
	n, created, err := s.Accept(context.Background(), key, req)
	if err != nil || !created {
		t.Fatalf("Accept %q: created %v, err %v; want created", key, created, err)
	}
	return n
}

func mustClaim(t *testing.T, s *SQLStore, now time.Time, lease time.Duration) (Notification, bool) {
	t.Helper()
	n, ok, err := s.Claim(context.Background(), now, lease)
	if err != nil {
		t.Fatal(err)
	}
	return n, ok
}

// claimOne claims a due notification at now for lease, failing t when
// there is none.
func claimOne(t *testing.T, s *SQLStore, now time.Time, lease time.Duration) Notification {
	t.Helper()
	n, ok := mustClaim(t, s, now, lease)
	if !ok {
		t.Fatal("nothing to claim")
	}
	return n
}

func testStoreAccept(t *testing.T, s *SQLStore) {
	ctx := context.Background()
	req := ada
	req.Calendar = validCalendar
	n, created, err := s.Accept(ctx, "k1", req)
	if err != nil || !created {
		t.Fatalf("Accept: created %v, err %v", created, err)
	}
	if n.ID < 1 || n.IdempotencyKey != "k1" || n.To != req.To || n.Subject != req.Subject || n.Text != req.Text || n.Calendar != req.Calendar {
		t.Errorf("accepted %+v, want the request stored", n)
	}
	if n.Status != StatusPending || n.Attempts != 0 || n.LastError != "" || n.NextAttemptAt == nil || n.SentAt != nil || n.CreatedAt.IsZero() {
		t.Errorf("accepted %+v, want pending, untried, due", n)
	}

	again, created, err := s.Accept(ctx, "k1", req)
	if err != nil || created || again.ID != n.ID {
		t.Errorf("Accept again: id %d created %v err %v; want id %d, not created", again.ID, created, err, n.ID)
	}
	other := req
	other.Text = "something else"
	if _, _, err := s.Accept(ctx, "k1", other); !errors.Is(err, derrors.ErrUnprocessable) {
		t.Errorf("Accept with the key and another request: err = %v, want ErrUnprocessable", err)
	}
	second := mustAccept(t, s, "k2", ada)
	if second.ID == n.ID {
		t.Errorf("two keys, one id %d", n.ID)
	}

	got, err := s.Get(ctx, n.ID)
	if err != nil || got.ID != n.ID || got.Text != req.Text || got.Calendar != req.Calendar {
		t.Errorf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, 9999); !errors.Is(err, derrors.ErrNotFound) {
		t.Errorf("Get unknown: err = %v, want ErrNotFound", err)
	}
	list, err := s.List(ctx, "", 0)
	if err != nil || len(list) != 2 || list[0].ID != second.ID || list[1].ID != n.ID {
		t.Errorf("List = %v, %v; want the two, newest first", list, err)
	}
	if list, err := s.List(ctx, StatusSent, 10); err != nil || list == nil || len(list) != 0 {
		t.Errorf("List sent = %#v, %v; want an empty list", list, err)
	}
	if p, err := s.Pending(ctx); err != nil || p != 2 {
		t.Errorf("Pending = %d, %v; want 2", p, err)
	}
}

func testStoreConcurrentAccept(t *testing.T, s *SQLStore) {
	const n = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, ids := 0, map[int64]bool{}
	for range n {
		wg.Go(func() {
			got, c, err := s.Accept(context.Background(), "same", ada)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("Accept: %v", err)
				return
			}
			if c {
				created++
			}
			ids[got.ID] = true
		})
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Errorf("%d created, %d ids; want 1 and 1", created, len(ids))
	}
}

func testStoreClaim(t *testing.T, s *SQLStore) {
	a := mustAccept(t, s, "a", ada)
	b := mustAccept(t, s, "b", ada)
	now := time.Now()
	const lease = time.Minute

	first, ok := mustClaim(t, s, now, lease)
	if !ok || first.ID != a.ID {
		t.Fatalf("first claim = %d (%v), want %d", first.ID, ok, a.ID)
	}
	second, ok := mustClaim(t, s, now, lease)
	if !ok || second.ID != b.ID {
		t.Fatalf("second claim = %d (%v), want %d", second.ID, ok, b.ID)
	}
	if n, ok := mustClaim(t, s, now, lease); ok {
		t.Fatalf("third claim got %d, want none: both are leased", n.ID)
	}
	if n, ok := mustClaim(t, s, now.Add(lease-time.Millisecond), lease); ok {
		t.Fatalf("claim before the lease ends got %d, want none", n.ID)
	}
	// The lease ends: a worker that died holding a notification gives it up.
	later := now.Add(lease)
	again, ok := mustClaim(t, s, later, lease)
	if !ok || again.ID != a.ID {
		t.Fatalf("claim after the lease = %d (%v), want %d", again.ID, ok, a.ID)
	}
	if at, ok, err := s.NextDue(context.Background()); err != nil || !ok || at.After(later) {
		t.Errorf("NextDue = %v (%v, %v), want b's lease end %v at the latest", at, ok, err, later)
	}
}

func testStoreConcurrentClaims(t *testing.T, s *SQLStore) {
	const rows, claimers = 20, 8
	want := map[int64]bool{}
	for i := range rows {
		want[mustAccept(t, s, fmt.Sprint("c", i), ada).ID] = true
	}
	now := time.Now()
	var mu sync.Mutex
	claimed := map[int64]int{}
	var wg sync.WaitGroup
	for range claimers {
		wg.Go(func() {
			for {
				n, ok, err := s.Claim(context.Background(), now, time.Minute)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				claimed[n.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// A claim that lost a race may come back empty while rows are left:
	// take what is left one by one.
	for {
		n, ok := mustClaim(t, s, now, time.Minute)
		if !ok {
			break
		}
		claimed[n.ID]++
	}
	for id, c := range claimed {
		if c != 1 || !want[id] {
			t.Errorf("notification %d claimed %d times (known %v), want once", id, c, want[id])
		}
	}
	if len(claimed) != rows {
		t.Errorf("%d notifications claimed, want %d", len(claimed), rows)
	}
}

func testStoreRetry(t *testing.T, s *SQLStore) {
	ctx := context.Background()
	a := mustAccept(t, s, "a", ada)
	now := time.Now()
	claimOne(t, s, now, time.Minute)
	next := now.Add(time.Hour).Truncate(time.Microsecond)
	if err := s.MarkRetry(ctx, a.ID, now.Add(time.Minute), 1, next, "SMTP 451: busy"); err != nil {
		t.Fatal(err)
	}
	n, err := s.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n.Status != StatusPending || n.Attempts != 1 || n.LastError != "SMTP 451: busy" || n.NextAttemptAt == nil || !n.NextAttemptAt.Equal(next) {
		t.Errorf("after MarkRetry: %+v, want pending, 1 attempt, the error, next at %v", n, next)
	}
	if n, ok := mustClaim(t, s, now.Add(time.Minute), time.Minute); ok {
		t.Errorf("claimed %d before its next attempt", n.ID)
	}
	if at, ok, err := s.NextDue(ctx); err != nil || !ok || !at.Equal(next) {
		t.Errorf("NextDue = %v (%v, %v), want %v", at, ok, err, next)
	}

	got, ok := mustClaim(t, s, next, time.Minute)
	if !ok || got.ID != a.ID || got.Attempts != 1 {
		t.Fatalf("claim at the next attempt = %+v (%v), want %d with 1 attempt", got, ok, a.ID)
	}
	if at, ok, err := s.NextDue(ctx); err != nil || !ok || !at.Equal(next.Add(time.Minute)) {
		t.Errorf("NextDue while leased = %v (%v, %v), want the lease end %v", at, ok, err, next.Add(time.Minute))
	}
	// Released untried (breaker open): claimable again at once, attempts unchanged.
	if err := s.Release(ctx, Held{a.ID, next.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got, ok = mustClaim(t, s, next, time.Minute)
	if !ok || got.ID != a.ID || got.Attempts != 1 || got.LastError != "SMTP 451: busy" {
		t.Errorf("claim after Release = %+v (%v), want %d as it was", got, ok, a.ID)
	}
}

func testStoreOutcomes(t *testing.T, s *SQLStore) {
	ctx := context.Background()
	a := mustAccept(t, s, "a", ada)
	b := mustAccept(t, s, "b", ada)
	now := time.Now()
	for range 2 {
		claimOne(t, s, now, time.Minute)
	}
	held := now.Add(time.Minute)
	if err := s.MarkRetry(ctx, a.ID, held, 1, now, "SMTP 451: busy"); err != nil {
		t.Fatal(err)
	}
	sentAt := now.Add(time.Second).Truncate(time.Microsecond)
	if err := s.MarkSent(ctx, a.ID, sentAt); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, b.ID, held, 1, "SMTP 550: no such user"); err != nil {
		t.Fatal(err)
	}

	sent, err := s.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sent.Status != StatusSent || sent.Attempts != 2 || sent.LastError != "" || sent.SentAt == nil || !sent.SentAt.Equal(sentAt) || sent.NextAttemptAt != nil {
		t.Errorf("sent: %+v, want sent at %v after 2 attempts, no error", sent, sentAt)
	}
	failed, err := s.Get(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if failed.Status != StatusFailed || failed.Attempts != 1 || failed.LastError != "SMTP 550: no such user" || failed.SentAt != nil || failed.NextAttemptAt != nil {
		t.Errorf("failed: %+v, want failed after 1 attempt with its error", failed)
	}

	if n, ok := mustClaim(t, s, now.Add(24*time.Hour), time.Minute); ok {
		t.Errorf("claimed %d (%s), want nothing: none is pending", n.ID, n.Status)
	}
	if _, ok, err := s.NextDue(ctx); err != nil || ok {
		t.Errorf("NextDue: ok %v, err %v; want none", ok, err)
	}
	if p, err := s.Pending(ctx); err != nil || p != 0 {
		t.Errorf("Pending = %d, %v; want 0", p, err)
	}
	for status, id := range map[string]int64{StatusSent: a.ID, StatusFailed: b.ID} {
		if list, err := s.List(ctx, status, 10); err != nil || len(list) != 1 || list[0].ID != id {
			t.Errorf("List %s = %v, %v; want only %d", status, list, err, id)
		}
	}
}

// testStoreClaimRace: workers claim while another marks its claim sent; a
// sent notification is never claimed again (on PostgreSQL a claim whose
// snapshot predates the delivery must not take the row back).
func testStoreClaimRace(t *testing.T, s *SQLStore) {
	ctx := context.Background()
	for round := range 50 {
		mustAccept(t, s, fmt.Sprint("race-", round), ada)
		var claims atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					n, ok, err := s.Claim(ctx, time.Now(), time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						claims.Add(1)
						if err := s.MarkSent(ctx, n.ID, time.Now()); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
		wg.Wait()
		if c := claims.Load(); c != 1 {
			t.Fatalf("round %d: the notification was claimed %d times, want once", round, c)
		}
	}
}

// testStoreLostClaim: an instance whose claim ran out, and was taken by
// another, can neither renew, release nor record an outcome under it: the
// other's claim stands, and so does the notification's record.
func testStoreLostClaim(t *testing.T, s *SQLStore) {
	ctx := context.Background()
	a := mustAccept(t, s, "a", ada)
	now := time.Now()
	claimOne(t, s, now, time.Minute)
	lost := now.Add(time.Minute)
	later := now.Add(2 * time.Minute) // the first claim has run out: another instance takes it
	if n, ok := mustClaim(t, s, later, time.Minute); !ok || n.ID != a.ID {
		t.Fatalf("second claim = %+v (%v), want %d", n, ok, a.ID)
	}
	held := later.Add(time.Minute)

	if ok, err := s.Renew(ctx, a.ID, lost, later.Add(time.Hour)); err != nil || ok {
		t.Errorf("renew under the lost claim = %v, %v; want false", ok, err)
	}
	for what, err := range map[string]error{
		"release": s.Release(ctx, Held{a.ID, lost}),
		"retry":   s.MarkRetry(ctx, a.ID, lost, 1, later, "SMTP 451: busy"),
		"fail":    s.MarkFailed(ctx, a.ID, lost, 1, "SMTP 550: no such user"),
	} {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	n, err := s.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n.Status != StatusPending || n.Attempts != 0 || n.LastError != "" {
		t.Errorf("after the lost claim's calls: %+v, want pending, untouched", n)
	}
	if got, ok := mustClaim(t, s, later.Add(30*time.Second), time.Minute); ok {
		t.Errorf("claimed %d while the second claim holds it", got.ID)
	}
	if ok, err := s.Renew(ctx, a.ID, held, held.Add(time.Minute)); err != nil || !ok {
		t.Errorf("renew under the claim in force = %v, %v; want true", ok, err)
	}
}
