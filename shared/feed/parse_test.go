package feed

import (
	"bytes"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/feeds"

	"syndic/shared/metrics"
)

// benchPage renders a full archive page of 50 events shaped like contacts'
// (a change of one field each, the whole contact as JSON).
func benchPage(b *testing.B) []byte {
	p := NewPublisher(newMemLog(0), Options{Title: "syndic contacts", ID: "urn:syndic:contacts:feed",
		EntryID: "urn:syndic:contacts:event:", Author: "contacts", Path: "/feed", PageSize: 50},
		slog.New(slog.DiscardHandler), metrics.New())
	b.Cleanup(p.Close)
	t0 := time.Date(2026, 11, 23, 17, 4, 5, 0, time.UTC)
	var events []Event
	for i := range 50 {
		seq, id := int64(1000+i), int64(17+i)
		at := t0.Add(time.Duration(i) * time.Millisecond)
		events = append(events, Event{Seq: seq, Type: "contact.updated",
			Title:   fmt.Sprintf("Catch Up %d's phone changed", id),
			Summary: fmt.Sprintf("Catch Up %d: phone is now +44 20 7946 %04d ext 3", id, id),
			Link:    fmt.Sprintf("/contacts/%d", id),
			Data: fmt.Appendf(nil, `{"id":%d,"name":"Catch Up %d","email":"catchup%d@example.org","phone":"+44 20 7946 %04d ext 3","version":3,"created_at":"%s","updated_at":"%s"}`,
				id, id, id, id, t0.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano)),
			Time: at})
	}
	base := "http://127.0.0.1:8081"
	body, err := p.render(base, []feeds.AtomLink{
		{Rel: "self", Href: base + "/feed/archive/21"}, {Rel: "current", Href: base + "/feed"},
		{Rel: "first", Href: base + "/feed/archive/1"}, {Rel: "next-archive", Href: base + "/feed/archive/22"},
		{Rel: "prev-archive", Href: base + "/feed/archive/20"},
	}, true, events, events[len(events)-1].Time)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkParsePage parses one full archive page of contacts-like events
// (what the follower does per page) and reports µs/page, the process's CPU
// time per page (cpu-µs/page: steadier than wall time on a shared machine)
// and the page's bytes.
func BenchmarkParsePage(b *testing.B) {
	body := benchPage(b)
	cpu0 := cpuTime()
	for b.Loop() {
		p, err := Parse(bytes.NewReader(body))
		if err != nil || len(p.Events) != 50 || !p.Archive || p.NextArchive == "" {
			b.Fatalf("parse: %v, %d events", err, len(p.Events))
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/page")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/page")
	b.ReportMetric(float64(len(body)), "bytes/page")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestNextArchiveHint(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`<feed xmlns="http://www.w3.org/2005/Atom"><link rel="self" href="http://x/feed/archive/2"/><link rel="next-archive" href="http://x/feed/archive/3"/><entry/></feed>`, "http://x/feed/archive/3"},
		{`<feed xmlns="http://www.w3.org/2005/Atom"><link href="https://x/a?k=3&amp;v=1" rel="next-archive"></link></feed>`, "https://x/a?k=3&v=1"},
		{`<feed xmlns="http://www.w3.org/2005/Atom"><link rel="next-archive" href="/feed/archive/3"/></feed>`, ""}, // relative: no hint
		{`<feed xmlns="http://www.w3.org/2005/Atom"><entry><link rel="next-archive" href="http://x/3"/></entry></feed>`, ""},
		{`<feed xmlns="http://www.w3.org/2005/Atom"><author><link rel="next-archive" href="http://x/3"/></author></feed>`, ""},
		{`not xml`, ""},
	} {
		if got := nextArchiveHint([]byte(tc.doc)); got != tc.want {
			t.Errorf("nextArchiveHint(%s) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}
