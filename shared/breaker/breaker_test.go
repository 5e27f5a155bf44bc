package breaker

import (
	"context"
	"errors"
	"testing"
	"time"

	"syndic/shared/metrics"
)

var (
	errDown   = errors.New("connection refused")
	errRefuse = errors.New("550 no such user")
)

func TestOpensOnCountedFailuresOnly(t *testing.T) {
	m := metrics.New()
	b := New(Settings{Name: "smtp", Failures: 3, OpenFor: 100 * time.Millisecond, Met: m,
		Counts: func(err error) bool { return errors.Is(err, errDown) }})
	for range 10 { // the peer answers: a refusal is not unwellness
		if err := b.Do(func() error { return errRefuse }); !errors.Is(err, errRefuse) {
			t.Fatal(err)
		}
	}
	if b.State() != "closed" {
		t.Fatalf("state %s after refusals, want closed", b.State())
	}
	calls := 0
	for range 10 {
		b.Do(func() error { calls++; return errDown })
	}
	if b.State() != "open" || calls != 3 {
		t.Fatalf("state %s after %d calls, want open after 3", b.State(), calls)
	}
	start := time.Now()
	b.Wait(context.Background())
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("Wait returned after %v, before the open time", waited)
	}
	if err := b.Do(func() error { calls++; return nil }); err != nil || b.State() != "closed" {
		t.Fatalf("probe: %v, state %s", err, b.State())
	}
	start = time.Now()
	b.Wait(context.Background())
	if time.Since(start) > 10*time.Millisecond {
		t.Error("Wait blocked on a closed breaker")
	}
}
