package main

import (
	"slices"
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: syndic/e2e
BenchmarkPropagation/baseline-2   	       3	  90000000 ns/op	       430.0 p50-µs	      1200 p99-µs
BenchmarkPropagation/longpoll-2   	       3	 300000000 ns/op	      1140 p50-µs	      3200 p99-µs	         2.651 p50-ratio
    bench_test.go:99: a log line 1 2
BenchmarkFeed304/service-2        	  100000	     21000 ns/op	     15903 req/s	       860.0 p50-µs
BenchmarkFeed304/service-2        	  100000	     21000 ns/op	     16903 req/s	       860.0 p50-µs
BenchmarkFeed304/service-2        	  100000	     21000 ns/op	     14903 req/s	       860.0 p50-µs
BenchmarkFeed304/baseline-2       	  100000	     21000 ns/op	   1234567 req/s
BenchmarkResidentMemory-2         	       1	1611615993 ns/op	         7.426 baseline-idle-MB	        54.52 total-idle-MB
--- FAIL: BenchmarkMail/service
ok  	syndic/e2e	14.424s
`

func TestParseAndTable(t *testing.T) {
	o, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	res, failed, times := o.res, o.failed, o.times
	if v, ok := res.get("BenchmarkFeed304/service", "req/s"); !ok || v != 15903 {
		t.Errorf("median req/s = %v, %v; want 15903", v, ok)
	}
	if v, ok := res.get("BenchmarkPropagation/longpoll", "p99-µs"); !ok || v != 3200 {
		t.Errorf("longpoll p99 = %v, %v; want 3200", v, ok)
	}
	if len(failed) != 1 || len(times) != 1 || times[0] != "syndic/e2e 14.424s" {
		t.Errorf("failed = %q, times = %q", failed, times)
	}

	var out strings.Builder
	missing := table(&out, res, []row{
		{"p50", figure{name: "BenchmarkPropagation/baseline", unit: "p50-µs", format: ms}, figure{name: "BenchmarkPropagation/longpoll", unit: "p50-µs", format: ms}},
		{"304", figure{name: "BenchmarkFeed304/baseline", unit: "req/s", format: perSecond("req/s")}, figure{name: "BenchmarkFeed304/service", unit: "req/s", format: perSecond("req/s")}},
		{"total", figure{name: "BenchmarkResidentMemory", unit: "baseline-idle-MB", factor: 3, format: mb}, figure{name: "BenchmarkResidentMemory", unit: "total-idle-MB", format: mb}},
		{"mail", figure{name: "BenchmarkMail/baseline", unit: "mails/s", format: perSecond("mails/s")}, figure{name: "BenchmarkMail/service", unit: "mails/s", format: perSecond("mails/s")}},
		{"replicas", figure{name: "BenchmarkReplicaWrites/two", unit: "one-creates/s", format: perSecond("creates/s"), optional: true},
			figure{name: "BenchmarkReplicaWrites/two", unit: "creates/s", format: perSecond("creates/s"), optional: true}},
	})
	got := out.String()
	var lines []string // with the padding squeezed out
	for l := range strings.Lines(got) {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"| metric | baseline | service | ratio |",
		"| -------- | --------------: | -----------: | ----: |",
		"| p50 | 0.43 ms | 1.14 ms | 2.65 |",
		"| 304 | 1,234,567 req/s | 15,903 req/s | 0.01 |",
		"| total | 22.3 MB | 54.5 MB | 2.45 |",
		"| mail | — | — | — |",
		"| replicas | — | — | — |",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("table:\n%s\nwant (padding aside):\n%s", got, strings.Join(want, "\n"))
	}
	if len(missing) != 2 {
		t.Errorf("missing = %q, want the two mail figures (the replicas' are optional)", missing)
	}
}

// anchorSample is go test -v -bench output: the anchors' figures, one of
// them skipped, beside syndic's.
const anchorSample = `BenchmarkPropagation/longpoll-2   	       3	 300000000 ns/op	      1050 p50-µs	      3300 p99-µs	         2.651 p50-ratio
BenchmarkEndToEnd/service-2       	       3	 900000000 ns/op	      2700 events/s
BenchmarkAnchorPropagation
BenchmarkAnchorPropagation/rabbitmq
    bench_anchors_test.go:417: RabbitMQ 3.10.8
BenchmarkAnchorPropagation/rabbitmq-2         	       3	 160838835 ns/op	       183.0 p50-µs	       495.0 p99-µs
BenchmarkAnchorPropagation/jetstream
    bench_anchors_test.go:480: NATS not reachable at nats://127.0.0.1:4222: nats: no servers available for connection
--- SKIP: BenchmarkAnchorPropagation/jetstream
BenchmarkAnchorEndToEnd/rabbitmq-2            	       3	 910793415 ns/op	     13400 events/s	       931.7 p50-µs
BenchmarkPostgresWrites
    bench_anchors_test.go:571: TEST_DATABASE_URL not set: no PostgreSQL to compare on
--- SKIP: BenchmarkPostgresWrites
ok  	syndic/e2e	15.610s
`

func TestAnchorTable(t *testing.T) {
	out, err := parse(strings.NewReader(anchorSample))
	if err != nil {
		t.Fatal(err)
	}
	if why, ok := out.skip("BenchmarkAnchorPropagation/jetstream"); !ok || why != "NATS not reachable at nats://127.0.0.1:4222: nats: no servers available for connection" {
		t.Errorf("jetstream skipped = %v, %q", ok, why)
	}
	if _, ok := out.skip("BenchmarkAnchorPropagation/rabbitmq"); ok {
		t.Error("rabbitmq ran, but is taken as skipped")
	}
	if why, ok := out.skip("BenchmarkPostgresWrites/syndic"); !ok || !strings.Contains(why, "TEST_DATABASE_URL") {
		t.Errorf("a part of skipped BenchmarkPostgresWrites: skipped = %v, %q", ok, why)
	}

	var w strings.Builder
	const prop = "BenchmarkAnchorPropagation/"
	lat := func(name, unit string) figure { return figure{name: name, unit: unit, format: micros} }
	rate := func(name string) figure { return figure{name: name, unit: "events/s", format: perSecond("events/s")} }
	missing, skips := anchorTable(&w, out, []anchorRow{
		{"p50 rabbitmq", lat("BenchmarkPropagation/longpoll", "p50-µs"), lat(prop+"rabbitmq", "p50-µs"), target{v: 3}},
		{"p99 rabbitmq", lat("BenchmarkPropagation/longpoll", "p99-µs"), lat(prop+"rabbitmq", "p99-µs"), target{v: 4}},
		{"p50 jetstream", lat("BenchmarkPropagation/longpoll", "p50-µs"), lat(prop+"jetstream", "p50-µs"), target{}},
		{"p99 jetstream", lat("BenchmarkPropagation/longpoll", "p99-µs"), lat(prop+"jetstream", "p99-µs"), target{}},
		{"rate rabbitmq", rate("BenchmarkEndToEnd/service"), rate("BenchmarkAnchorEndToEnd/rabbitmq"), target{atLeast: true, v: 0.5}},
		{"rate jetstream", rate("BenchmarkEndToEnd/service"), rate("BenchmarkAnchorEndToEnd/jetstream"), target{atLeast: true, v: 0.5}},
		{"pg", figure{name: "BenchmarkPostgresWrites/syndic", unit: "writes/s", format: perSecond("writes/s")},
			figure{name: "BenchmarkPostgresWrites/watermill", unit: "writes/s", format: perSecond("writes/s")}, target{atLeast: true, v: 0.5}},
	})
	var lines []string
	for l := range strings.Lines(w.String()) {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"| syndic beside the anchors | syndic | anchor | ratio | target | met |",
		"| ------------------------- | -------------: | --------------: | ----: | -----: | --: |",
		"| p50 rabbitmq | 1.05 ms | 183 µs | 5.74 | ≤ 3 | no |",
		"| p99 rabbitmq | 3.30 ms | 495 µs | 6.67 | ≤ 4 | no |",
		"| p50 jetstream | 1.05 ms | skipped | — | | |",
		"| p99 jetstream | 3.30 ms | skipped | — | | |",
		"| rate rabbitmq | 2,700 events/s | 13,400 events/s | 0.20 | ≥ 0.5 | no |",
		"| rate jetstream | 2,700 events/s | — | — | ≥ 0.5 | — |",
		"| pg | skipped | skipped | — | ≥ 0.5 | — |",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("table:\n%s\nwant (padding aside):\n%s", w.String(), strings.Join(want, "\n"))
	}
	wantSkips := []string{
		"BenchmarkAnchorPropagation/jetstream: NATS not reachable at nats://127.0.0.1:4222: nats: no servers available for connection",
		"BenchmarkPostgresWrites/syndic: TEST_DATABASE_URL not set: no PostgreSQL to compare on",
		"BenchmarkPostgresWrites/watermill: TEST_DATABASE_URL not set: no PostgreSQL to compare on",
	}
	if !slices.Equal(skips, wantSkips) {
		t.Errorf("skips = %q, want %q", skips, wantSkips)
	}
	if !slices.Equal(missing, []string{"BenchmarkAnchorEndToEnd/jetstream events/s"}) {
		t.Errorf("missing = %q, want the jetstream rate alone (neither run nor skipped)", missing)
	}
	if got := (target{v: 1}).met(1); got != "yes" {
		t.Errorf("ratio 1 against ≤ 1: met = %q, want yes", got)
	}
	if got := (target{atLeast: true, v: 0.5}).met(0.5); got != "yes" {
		t.Errorf("ratio 0.5 against ≥ 0.5: met = %q, want yes", got)
	}
}
