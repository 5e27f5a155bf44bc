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
	res, failed, times, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
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
		{"replicas", figure{name: "BenchmarkReplicaWrites/one", unit: "creates/s", format: perSecond("creates/s"), optional: true},
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
