package metrics

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"syndic/shared/metrics/metricstest"
)

// sampleSet has a metric of every kind, with and without labels.
func sampleSet() *Set {
	m := New()
	m.Counter(`feed_requests{doc="archive"}`, "Feed documents asked for, by document.").Inc(3)
	m.Counter(`feed_requests{doc="current"}`, "Feed documents asked for, by document.").Inc(2)
	m.Gauge("lag", "Events behind the head.").Update(7)
	m.GaugeFunc(`breaker_state{peer="smtp"}`, "Circuit breaker state: 0 closed, 1 half-open, 2 open.", func() int64 { return 2 })
	m.Timer("apply", "Time to apply a page of events.").Update(2 * time.Millisecond)
	m.Timer(`fetch{doc="archive"}`, "Time to fetch a feed document.").Update(3 * time.Second)
	m.Meter("mails", "Mails sent.").Mark(4)
	m.Histogram("batch", "Events per batch.").Update(5)
	writes := int64(0)
	m.CounterFunc("db_writes", "Write transactions committed.", func() int64 { return writes })
	writes = 9 // read when scraped, not when registered
	return m
}

func get(t *testing.T, m *Set, url string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
	return rec.Body.String()
}

func TestPrometheusAndJSON(t *testing.T) {
	t.Parallel()
	m := sampleSet()
	out := get(t, m, "/metrics")
	for _, want := range []string{
		"# HELP syndic_feed_requests_total Feed documents asked for, by document.\n# TYPE syndic_feed_requests_total counter\n",
		`syndic_feed_requests_total{doc="archive"} 3`,
		`syndic_feed_requests_total{doc="current"} 2`,
		"# HELP syndic_lag Events behind the head.\n# TYPE syndic_lag gauge\nsyndic_lag 7\n",
		`syndic_breaker_state{peer="smtp"} 2`,
		"# HELP syndic_apply_seconds Time to apply a page of events.\n# TYPE syndic_apply_seconds histogram\n",
		`syndic_apply_seconds_bucket{le="0.001"} 0` + "\n",
		`syndic_apply_seconds_bucket{le="0.0025"} 1` + "\n",
		`syndic_apply_seconds_bucket{le="60"} 1` + "\n",
		`syndic_apply_seconds_bucket{le="+Inf"} 1` + "\n",
		"syndic_apply_seconds_sum 0.002\n",
		"syndic_apply_seconds_count 1\n",
		`syndic_fetch_seconds_bucket{doc="archive",le="2.5"} 0` + "\n",
		`syndic_fetch_seconds_bucket{doc="archive",le="5"} 1` + "\n",
		`syndic_fetch_seconds_sum{doc="archive"} 3` + "\n",
		"# TYPE syndic_mails_total counter\nsyndic_mails_total 4\n",
		"# TYPE syndic_mails_rate1m gauge\n",
		"# TYPE syndic_batch summary\n",
		"# TYPE syndic_db_writes_total counter\nsyndic_db_writes_total 9\n",
		"# HELP syndic_process_resident_memory_bytes ",
		"syndic_process_resident_memory_bytes ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Prometheus text lacks %q:\n%s", want, out)
		}
	}
	for _, family := range []string{"syndic_feed_requests_total", "syndic_fetch_seconds"} {
		if n := strings.Count(out, "# TYPE "+family+" "); n != 1 {
			t.Errorf("%s: %d TYPE lines, want one for the family", family, n)
		}
		if n := strings.Count(out, "# HELP "+family+" "); n != 1 {
			t.Errorf("%s: %d HELP lines, want one for the family", family, n)
		}
	}

	var js map[string]map[string]any
	body := get(t, m, "/metrics?format=json")
	if err := json.Unmarshal([]byte(body), &js); err != nil {
		t.Fatalf("JSON: %v %s", err, body)
	}
	if js["lag"]["value"] != 7.0 || js["feed_requests{doc=\"current\"}"]["count"] != 2.0 || js["apply"]["count"] != 1.0 || js["apply"]["max"] != 2e6 {
		t.Errorf("JSON lost its shape (registered names; timers in nanoseconds): %s", body)
	}
}

// TestPromtool: what the Prometheus linter says of every kind of metric.
func TestPromtool(t *testing.T) {
	t.Parallel()
	metricstest.Check(t, "sampleSet", []byte(get(t, sampleSet(), "/metrics")))
}

// TestBuckets: a duration on a bound counts in that bound's bucket (le),
// one beyond the last bound only in +Inf, and the buckets are cumulative.
func TestBuckets(t *testing.T) {
	t.Parallel()
	m := New()
	tm := m.Timer("op", "An operation.")
	for _, d := range []time.Duration{time.Millisecond, time.Millisecond + 1, 0, 2 * time.Minute} {
		tm.Update(d)
	}
	// Every bucket, in order: the 0, the two around 1 ms, the 2 minutes.
	want := `syndic_op_seconds_bucket{le="0.00025"} 1
syndic_op_seconds_bucket{le="0.0005"} 1
syndic_op_seconds_bucket{le="0.001"} 2
syndic_op_seconds_bucket{le="0.0025"} 3
syndic_op_seconds_bucket{le="0.005"} 3
syndic_op_seconds_bucket{le="0.01"} 3
syndic_op_seconds_bucket{le="0.025"} 3
syndic_op_seconds_bucket{le="0.05"} 3
syndic_op_seconds_bucket{le="0.1"} 3
syndic_op_seconds_bucket{le="0.25"} 3
syndic_op_seconds_bucket{le="0.5"} 3
syndic_op_seconds_bucket{le="1"} 3
syndic_op_seconds_bucket{le="2.5"} 3
syndic_op_seconds_bucket{le="5"} 3
syndic_op_seconds_bucket{le="10"} 3
syndic_op_seconds_bucket{le="30"} 3
syndic_op_seconds_bucket{le="60"} 3
syndic_op_seconds_bucket{le="+Inf"} 4
syndic_op_seconds_sum 120.002000001
syndic_op_seconds_count 4
`
	if out := get(t, m, "/metrics"); !strings.Contains(out, want) {
		t.Errorf("lacks\n%s\nin:\n%s", want, out)
	}
	if m.Timer("op", "") != tm {
		t.Error("a second Timer call for the same name gave a new timer")
	}
}

// TestHelp: the first help text of a family is its help; reading a
// counter with "" keeps it; a help line is escaped.
func TestHelp(t *testing.T) {
	t.Parallel()
	m := New()
	m.Counter(`x{a="1"}`, "First.")
	m.Counter(`x{a="2"}`, "Second.")
	m.Counter(`x{a="1"}`, "").Inc(1)
	m.Gauge("y", "A back\\slash and a\nnewline.")
	out := get(t, m, "/metrics")
	for _, want := range []string{"# HELP syndic_x_total First.\n", `# HELP syndic_y A back\\slash and a\nnewline.` + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}
