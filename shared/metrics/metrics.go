// Package metrics holds a service's go-metrics registry and serves it at
// /metrics in the Prometheus text format, or as JSON with ?format=json.
//
// A metric name may end in Prometheus labels, as in
// `http_requests{code="2xx"}`; metrics that share the part before the brace
// are one family in the text format.
package metrics

import (
	"bufio"
	"cmp"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"syndic/shared/httpx"

	gometrics "github.com/rcrowley/go-metrics"
)

// Set is one service's metrics.
type Set struct {
	reg gometrics.Registry
}

// New returns an empty Set with the process gauges (goroutines, resident
// memory) registered.
func New() *Set {
	s := &Set{reg: gometrics.NewRegistry()}
	s.GaugeFunc("process_goroutines", func() int64 { return int64(runtime.NumGoroutine()) })
	s.GaugeFunc("process_resident_memory_bytes", residentBytes)
	return s
}

// Counter returns the counter called name, registering it on first use.
func (s *Set) Counter(name string) gometrics.Counter {
	return gometrics.GetOrRegisterCounter(name, s.reg)
}

// Gauge returns the gauge called name, registering it on first use.
func (s *Set) Gauge(name string) gometrics.Gauge {
	return gometrics.GetOrRegisterGauge(name, s.reg)
}

// GaugeFunc registers a gauge whose value f computes when read.
func (s *Set) GaugeFunc(name string, f func() int64) {
	s.reg.GetOrRegister(name, gometrics.NewFunctionalGauge(f))
}

// Meter returns the meter called name, registering it on first use.
func (s *Set) Meter(name string) gometrics.Meter {
	return gometrics.GetOrRegisterMeter(name, s.reg)
}

// Timer returns the timer called name, registering it on first use.
func (s *Set) Timer(name string) gometrics.Timer {
	return gometrics.GetOrRegisterTimer(name, s.reg)
}

// Histogram returns the histogram called name (an exponentially decaying
// sample), registering it on first use.
func (s *Set) Histogram(name string) gometrics.Histogram {
	return gometrics.GetOrRegisterHistogram(name, s.reg, gometrics.NewExpDecaySample(1028, 0.015))
}

// Registry returns the underlying go-metrics registry.
func (s *Set) Registry() gometrics.Registry { return s.reg }

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
	timer := s.Timer("http_request_duration")
	classes := [6]gometrics.Counter{}
	for i := 1; i <= 5; i++ {
		classes[i] = s.Counter(fmt.Sprintf(`http_responses{code="%dxx"}`, i))
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
	kind           string // counter, gauge, summary
	lines          func(w *bufio.Writer, name, labels string)
}

// WritePrometheus writes every metric in the Prometheus text format, names
// prefixed with "syndic_", timers in seconds.
func (s *Set) WritePrometheus(w *bufio.Writer) {
	var all []sample
	s.reg.Each(func(name string, m any) {
		family, labels := splitName(name)
		family = "syndic_" + sanitize(family)
		add := func(suffix, kind string, lines func(w *bufio.Writer, name, labels string)) {
			all = append(all, sample{family + suffix, labels, kind, lines})
		}
		switch m := m.(type) {
		case gometrics.Counter:
			add("", "counter", value(m.Count()))
		case gometrics.Gauge:
			add("", "gauge", value(m.Value()))
		case gometrics.GaugeFloat64:
			add("", "gauge", valueF(m.Value()))
		case gometrics.Meter:
			snap := m.Snapshot()
			add("_total", "counter", value(snap.Count()))
			add("_rate1m", "gauge", valueF(snap.Rate1()))
		case gometrics.Histogram:
			snap := m.Snapshot()
			add("", "summary", summary(snap.Percentiles(quantiles), float64(snap.Sum()), snap.Count(), 1))
		case gometrics.Timer:
			snap := m.Snapshot()
			add("_seconds", "summary", summary(snap.Percentiles(quantiles), float64(snap.Sum()), snap.Count(), 1e-9))
		}
	})
	slices.SortFunc(all, func(a, b sample) int {
		return cmp.Or(cmp.Compare(a.family, b.family), cmp.Compare(a.labels, b.labels))
	})
	last := ""
	for _, smp := range all {
		if smp.family != last {
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
		fmt.Fprintf(w, "%s%s %s\n", name, braces(labels), strconv.FormatFloat(v, 'g', -1, 64))
	}
}

func summary(ps []float64, sum float64, count int64, scale float64) func(*bufio.Writer, string, string) {
	return func(w *bufio.Writer, name, labels string) {
		for i, q := range quantiles {
			l := fmt.Sprintf(`quantile="%g"`, q)
			if labels != "" {
				l = labels + "," + l
			}
			fmt.Fprintf(w, "%s{%s} %s\n", name, l, strconv.FormatFloat(ps[i]*scale, 'g', -1, 64))
		}
		fmt.Fprintf(w, "%s_sum%s %s\n", name, braces(labels), strconv.FormatFloat(sum*scale, 'g', -1, 64))
		fmt.Fprintf(w, "%s_count%s %d\n", name, braces(labels), count)
	}
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
