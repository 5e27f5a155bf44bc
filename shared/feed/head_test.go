package feed

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"syndic/shared/metrics"
)

// staleReads is a Source whose Head answers from an older snapshot on
// every second call, as a read on another instance (or one that started
// earlier and answers later) can.
type staleReads struct {
	*memLog
	calls atomic.Int64
}

func (s *staleReads) Head(ctx context.Context) (int64, error) {
	h, err := s.memLog.Head(ctx)
	if s.calls.Add(1)%2 == 0 {
		return h - 3, err
	}
	return h, err
}

// TestHeadNeverGoesBackwards: /feed never answers from a head lower than
// one it answered from before.
func TestHeadNeverGoesBackwards(t *testing.T) {
	src := &staleReads{memLog: newMemLog(10)}
	p := NewPublisher(src, Options{Path: "/feed", PageSize: 50, HeadMaxAge: -1}, slog.New(slog.DiscardHandler), metrics.New())
	srv := httptest.NewServer(routes(p))
	defer srv.Close()
	var first string
	for i := range 20 {
		resp, body := get(t, srv.URL+"/feed")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		etag := resp.Header.Get("ETag")
		if i == 0 {
			first = etag
		}
		if etag != first {
			t.Fatalf("request %d: ETag %s, want %s: the head went back", i, etag, first)
		}
		if p := parsePage(t, body); len(p.Events) != 10 {
			t.Fatalf("request %d: %d events, want 10", i, len(p.Events))
		}
	}
	if src.calls.Load() < 20 {
		t.Fatalf("the source was read %d times for 20 requests: HeadMaxAge -1 should read every time", src.calls.Load())
	}
}
