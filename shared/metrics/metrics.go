// Package metrics holds a service's go-metrics registry and serves it at
// /metrics in the Prometheus text format, or as JSON with ?format=json.
//
// Every metric is registered with a help text, one sentence saying what it
// is, which the text format gives as its HELP line. A metric name may end in
// Prometheus labels, as in `http_requests{code="2xx"}`; metrics that share
// the part before the brace are one family in the text format, and the
// first help text given for a family is its help.
//
// In the text format every name gets the prefix "syndic_"; counters end in
// "_total" (added there, not in the registered name, so the registered
// names and the JSON stay as they are); timers are histograms in seconds
// with bucket bounds from 0.25 ms to 60 s.
package metrics

import (
	"bufio"
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"syndic/shared/httpx"

	gometrics "github.com/rcrowley/go-metrics"
)

// Set is one service's metrics.
type Set struct {
	reg gometrics.Registry

	mu   sync.Mutex
	help map[string]string // by family: the registered name before any brace
}

// New returns an empty Set with the process gauges (goroutines, resident
// memory) registered.
func New() *Set {
	s := &Set{reg: gometrics.NewRegistry(), help: map[string]string{}}
	s.GaugeFunc("process_goroutines", "Goroutines that currently exist.",
		func() int64 { return int64(runtime.NumGoroutine()) })
	s.GaugeFunc("process_resident_memory_bytes", "Resident memory size of the process in bytes.", residentBytes)
	return s
}

// describe records help as the help of name's family unless it has one.
func (s *Set) describe(name, help string) {
	family, _ := splitName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.help[family] == "" {
		s.help[family] = help
	}
}

// Counter returns the counter called name, registering it on first use
// with help, what it counts. A caller that only reads a counter already
// registered may give "" for help.
func (s *Set) Counter(name, help string) gometrics.Counter {
	s.describe(name, help)
	return gometrics.GetOrRegisterCounter(name, s.reg)
}

// Gauge returns the gauge called name, registering it on first use with
// help, what it measures.
func (s *Set) Gauge(name, help string) gometrics.Gauge {
	s.describe(name, help)
	return gometrics.GetOrRegisterGauge(name, s.reg)
}

// GaugeFunc registers a gauge whose value f computes when read; help says
// what it measures.
func (s *Set) GaugeFunc(name, help string, f func() int64) {
	s.describe(name, help)
	s.reg.GetOrRegister(name, gometrics.NewFunctionalGauge(f))
}

// CounterFunc registers a counter whose value f computes when read: a
// count kept elsewhere, which only grows; help says what it counts.
func (s *Set) CounterFunc(name, help string, f func() int64) {
	s.describe(name, help)
	s.reg.GetOrRegister(name, countFunc(f))
}

// countFunc is a counter read from a function.
type countFunc func() int64

// Meter returns the meter called name, registering it on first use with
// help, what it counts. The text format gives its count (name_total) and
// its one-minute rate per second (name_rate1m).
func (s *Set) Meter(name, help string) gometrics.Meter {
	s.describe(name, help)
	return gometrics.GetOrRegisterMeter(name, s.reg)
}

// Timer returns the timer called name, registering it on first use with
// help, what it times. The text format gives it as the histogram
// name_seconds.
func (s *Set) Timer(name, help string) *Timer {
	s.describe(name, help)
	s.mu.Lock() // one Timer per name, even when two callers register it at once
	defer s.mu.Unlock()
	if t, ok := s.reg.Get(name).(*Timer); ok {
		return t
	}
	t := &Timer{Timer: gometrics.NewTimer(), counts: make([]int64, len(bounds)+1)}
	if err := s.reg.Register(name, t); err != nil {
		panic(fmt.Sprintf("metrics: %s is registered and is not a timer", name))
	}
	return t
}

// Histogram returns the histogram called name (an exponentially decaying
// sample), registering it on first use with help, what it measures. The
// text format gives it as a summary: quantiles of the sample.
func (s *Set) Histogram(name, help string) gometrics.Histogram {
	s.describe(name, help)
	return gometrics.GetOrRegisterHistogram(name, s.reg, gometrics.NewExpDecaySample(1028, 0.015))
}

// bounds are the upper bounds, in seconds, of every timer's histogram
// buckets: from a quarter of a millisecond (a follower applying a page of
// events, a request served from memory) to a minute (a feed long-poll,
// FEED_WAIT at most 60 s).
var bounds = []float64{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Timer is a go-metrics timer (which the JSON format shows as before)
// that also counts each duration in the histogram bucket it falls in,
// for the Prometheus histogram.
type Timer struct {
	gometrics.Timer

	mu     sync.Mutex
	counts []int64 // per bucket, not cumulative; the last one is +Inf
	sum    time.Duration
}

// Update records that an event took d.
func (t *Timer) Update(d time.Duration) {
	t.Timer.Update(d)
	i, _ := slices.BinarySearch(bounds, d.Seconds()) // le: a duration on a bound is in that bound's bucket
	t.mu.Lock()
	t.counts[i]++
	t.sum += d
	t.mu.Unlock()
}

// UpdateSince records that an event took from start until now.
func (t *Timer) UpdateSince(start time.Time) { t.Update(time.Since(start)) }

// Time calls f and records how long it took.
func (t *Timer) Time(f func()) {
	start := time.Now()
	f()
	t.UpdateSince(start)
}

// buckets returns the cumulative counts per bound (the last is +Inf, the
// count) and the sum of the durations.
func (t *Timer) buckets() ([]int64, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cum := make([]int64, len(t.counts))
	var n int64
	for i, c := range t.counts {
		n += c
		cum[i] = n
	}
	return cum, t.sum
}

// Handler serves the metrics: Prometheus text by default, JSON with
// ?format=json.
func (s *Set) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			gometrics.WriteJSONOnce(s.reg, w)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		s.WritePrometheus(bw)
		bw.Flush()
	})
}

// Middleware counts responses by status class and times them.
func (s *Set) Middleware(h http.Handler) http.Handler {
	timer := s.Timer("http_request_duration", "Time from a request reaching the service to its handler returning, feed long-polls included.")
	classes := [6]gometrics.Counter{}
	for i := 1; i <= 5; i++ {
		classes[i] = s.Counter(fmt.Sprintf(`http_responses{code="%dxx"}`, i), "HTTP responses by status class.")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &httpx.Recorder{ResponseWriter: w}
		defer func() {
			timer.UpdateSince(start)
			if c := cmp.Or(rec.Status, http.StatusOK) / 100; c >= 1 && c <= 5 {
				classes[c].Inc(1)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

var quantiles = []float64{0.5, 0.9, 0.99}

type sample struct {
	family, labels string
	kind           string // counter, gauge, histogram, summary
	help           string
	lines          func(w *bufio.Writer, name, labels string)
}

// WritePrometheus writes every metric in the Prometheus text format: names
// prefixed with "syndic_", a HELP and a TYPE line per family, counters
// ending in "_total", timers as histograms in seconds (name_seconds).
func (s *Set) WritePrometheus(w *bufio.Writer) {
	s.mu.Lock()
	help := maps.Clone(s.help)
	s.mu.Unlock()
	var all []sample
	s.reg.Each(func(name string, m any) {
		base, labels := splitName(name)
		family := "syndic_" + sanitize(base)
		add := func(suffix, kind, help string, lines func(w *bufio.Writer, name, labels string)) {
			all = append(all, sample{strings.TrimSuffix(family, suffix) + suffix, labels, kind, help, lines})
		}
		h := help[base]
		switch m := m.(type) {
		case *Timer:
			counts, sum := m.buckets()
			add("_seconds", "histogram", h, histogram(counts, sum))
		case gometrics.Counter:
			add("_total", "counter", h, value(m.Count()))
		case countFunc:
			add("_total", "counter", h, value(m()))
		case gometrics.Gauge:
			add("", "gauge", h, value(m.Value()))
		case gometrics.GaugeFloat64:
			add("", "gauge", h, valueF(m.Value()))
		case gometrics.Meter:
			snap := m.Snapshot()
			add("_total", "counter", h, value(snap.Count()))
			add("_rate1m", "gauge", h+" Per second, moving average over one minute.", valueF(snap.Rate1()))
		case gometrics.Histogram:
			snap := m.Snapshot()
			add("", "summary", h, summary(snap.Percentiles(quantiles), float64(snap.Sum()), snap.Count()))
		}
	})
	slices.SortFunc(all, func(a, b sample) int {
		return cmp.Or(cmp.Compare(a.family, b.family), cmp.Compare(a.labels, b.labels))
	})
	last := ""
	for _, smp := range all {
		if smp.family != last {
			if smp.help != "" {
				fmt.Fprintf(w, "# HELP %s %s\n", smp.family, escapeHelp(smp.help))
			}
			fmt.Fprintf(w, "# TYPE %s %s\n", smp.family, smp.kind)
			last = smp.family
		}
		smp.lines(w, smp.family, smp.labels)
	}
}

func value(v int64) func(*bufio.Writer, string, string) {
	return func(w *bufio.Writer, name, labels string) {
		fmt.Fprintf(w, "%s%s %d\n", name, braces(labels), v)
	}
}

func valueF(v float64) func(*bufio.Writer, string, string) {
	return func(w *bufio.Writer, name, labels string) {
		fmt.Fprintf(w, "%s%s %s\n", name, braces(labels), fmtFloat(v))
	}
}

// histogram writes a timer's buckets (cumulative counts, the last +Inf),
// sum and count, in seconds.
func histogram(counts []int64, sum time.Duration) func(*bufio.Writer, string, string) {
	return func(w *bufio.Writer, name, labels string) {
		for i, n := range counts {
			le := "+Inf"
			if i < len(bounds) {
				le = fmtFloat(bounds[i])
			}
			fmt.Fprintf(w, "%s_bucket%s %d\n", name, braces(join(labels, `le="`+le+`"`)), n)
		}
		fmt.Fprintf(w, "%s_sum%s %s\n", name, braces(labels), fmtFloat(sum.Seconds()))
		fmt.Fprintf(w, "%s_count%s %d\n", name, braces(labels), counts[len(counts)-1])
	}
}

// summary writes a go-metrics histogram's quantiles; its sum is the sum of
// the sample, not of every value.
func summary(ps []float64, sum float64, count int64) func(*bufio.Writer, string, string) {
	return func(w *bufio.Writer, name, labels string) {
		for i, q := range quantiles {
			fmt.Fprintf(w, "%s%s %s\n", name, braces(join(labels, fmt.Sprintf(`quantile="%g"`, q))), fmtFloat(ps[i]))
		}
		fmt.Fprintf(w, "%s_sum%s %s\n", name, braces(labels), fmtFloat(sum))
		fmt.Fprintf(w, "%s_count%s %d\n", name, braces(labels), count)
	}
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// join adds the label pair l to labels.
func join(labels, l string) string {
	if labels == "" {
		return l
	}
	return labels + "," + l
}

// escapeHelp escapes a help text for a HELP line: backslash and newline.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func braces(labels string) string {
	if labels == "" {
		return ""
	}
	return "{" + labels + "}"
}

// splitName splits `name{labels}` into name and labels.
func splitName(name string) (string, string) {
	base, labels, ok := strings.Cut(name, "{")
	if !ok {
		return name, ""
	}
	return base, strings.TrimSuffix(labels, "}")
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' {
			return r
		}
		return '_'
	}, name)
}

// residentBytes reads the resident set size from /proc (Linux), or 0.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
