package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffWait(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		failures int
		lo, hi   time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond}, // treated as the first
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second}, // capped at Max
		{200, 500 * time.Millisecond, time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Wait(tc.failures)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("Wait(%d) = %s, want %s–%s", tc.failures, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Wait(%d) took %d distinct values in 200 draws: no jitter", tc.failures, len(seen))
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() { Sleep(ctx, time.Hour); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep with a done context did not return")
	}
}

func TestEvery(t *testing.T) {
	calls := make(chan struct{}, 100)
	stop := Every(context.Background(), time.Millisecond, func(context.Context) { calls <- struct{}{} })
	for range 3 {
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			t.Fatal("fn was not called again")
		}
	}
	stop()
	n := len(calls)
	time.Sleep(20 * time.Millisecond) // a stopped Every calls nothing more
	if len(calls) != n {
		t.Fatalf("fn called %d times after stop", len(calls)-n)
	}
}

func TestBackoffOr(t *testing.T) {
	for _, tc := range []struct{ in, want Backoff }{
		{Backoff{}, Backoff{time.Second, time.Minute}},
		{Backoff{Min: 2 * time.Second}, Backoff{2 * time.Second, time.Minute}},
		{Backoff{Min: 2 * time.Minute}, Backoff{2 * time.Minute, 2 * time.Minute}},
		{Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}, Backoff{time.Millisecond, 5 * time.Millisecond}},
	} {
		if got := tc.in.Or(time.Second, time.Minute); got != tc.want {
			t.Errorf("%+v.Or(1s, 1m) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
