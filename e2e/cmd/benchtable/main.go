// Command benchtable reads the output of `go test -bench` for the contacts
// and e2e benchmarks and prints one Markdown table: each figure beside the
// baseline measured in the same run and their ratio (service ÷ baseline).
// `make bench` runs it on .bench/raw.txt:
//
//	go run ./e2e/cmd/benchtable .bench/raw.txt
//
// With no file it reads stdin. A result line is a name, an iteration count
// and value/unit pairs; everything else is ignored. A benchmark that ran
// several times (-count) is shown by its median. It exits 1, after the
// table, when a figure is missing or the output has a FAIL line.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// results holds every value seen, by benchmark name (without the
// -GOMAXPROCS suffix) and unit.
type results map[string]map[string][]float64

// get returns the median of name's values in unit.
func (r results) get(name, unit string) (float64, bool) {
	v := slices.Clone(r[name][unit])
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads go test -bench output. It returns the results, the FAIL lines
// and each package's test time from its "ok" line.
func parse(r io.Reader) (results, []string, []string, error) {
	res := results{}
	var failed, times []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case strings.HasPrefix(f[0], "FAIL") || strings.HasPrefix(strings.TrimSpace(line), "--- FAIL"):
			failed = append(failed, strings.TrimSpace(line))
		case f[0] == "ok" && len(f) >= 3:
			times = append(times, f[1]+" "+f[2])
		case strings.HasPrefix(f[0], "Benchmark") && len(f) >= 4 && len(f)%2 == 0:
			if _, err := strconv.Atoi(f[1]); err != nil {
				continue
			}
			name := procsSuffix.ReplaceAllString(f[0], "")
			if res[name] == nil {
				res[name] = map[string][]float64{}
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					continue
				}
				res[name][f[i+1]] = append(res[name][f[i+1]], v)
			}
		}
	}
	return res, failed, times, sc.Err()
}

// figure is one value in the table: a benchmark's metric, times factor
// (0 means 1), shown by format. An optional figure may be missing (a
// benchmark that skips without PostgreSQL, haproxy or nginx).
type figure struct {
	name, unit string
	factor     float64
	format     func(float64) string
	optional   bool
}

func (f figure) value(r results) (float64, bool) {
	v, ok := r.get(f.name, f.unit)
	if f.factor != 0 {
		v *= f.factor
	}
	return v, ok
}

// row is a line of the table.
type row struct {
	metric            string
	baseline, service figure
}

// ms shows microseconds as milliseconds.
func ms(us float64) string {
	v := us / 1000
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// perSecond shows a rate with thousands separators.
func perSecond(unit string) func(float64) string {
	return func(v float64) string {
		s := strconv.FormatFloat(v, 'f', 0, 64)
		for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s + " " + unit
	}
}

func mb(v float64) string { return fmt.Sprintf("%.1f MB", v) }

// rows are the table's lines: the metrics `make bench` promises.
func rows() []row {
	lat := func(name, unit string) figure { return figure{name: name, unit: unit, format: ms} }
	rate := func(name, unit, shown string) figure {
		return figure{name: name, unit: unit, format: perSecond(shown)}
	}
	mem := func(unit string) figure { return figure{name: "BenchmarkResidentMemory", unit: unit, format: mb} }
	const prop = "BenchmarkPropagation/"
	rs := []row{
		{"contact write → in calendar's copy, long-poll, p50", lat(prop+"baseline", "p50-µs"), lat(prop+"longpoll", "p50-µs")},
		{"contact write → in calendar's copy, long-poll, p99", lat(prop+"baseline", "p99-µs"), lat(prop+"longpoll", "p99-µs")},
		{"same, polling every 100 ms (long-poll off), p50", lat(prop+"baseline", "p50-µs"), lat(prop+"polling", "p50-µs")},
		{"same, polling every 100 ms (long-poll off), p99", lat(prop+"baseline", "p99-µs"), lat(prop+"polling", "p99-µs")},
		{"end to end: 8 writers → calendar's copy", rate("BenchmarkEndToEnd/baseline", "writes/s", "writes/s"), rate("BenchmarkEndToEnd/service", "events/s", "events/s")},
		{"catch-up of 100,000 archived events", rate("BenchmarkCatchUp/baseline", "events/s", "events/s"), rate("BenchmarkCatchUp/service", "events/s", "events/s")},
		{"cached archive page (gzip)", rate("BenchmarkArchivePage/baseline", "req/s", "req/s"), rate("BenchmarkArchivePage/service", "req/s", "req/s")},
		{"/feed 304", rate("BenchmarkFeed304/baseline", "req/s", "req/s"), rate("BenchmarkFeed304/service", "req/s", "req/s")},
		{"contact creation, JSON API, SQLite", rate("BenchmarkCreateContact/baseline", "req/s", "req/s"), rate("BenchmarkCreateContact/service", "creates/s", "creates/s")},
		{"invitations: calendar → notifications → SMTP", rate("BenchmarkMail/baseline", "mails/s", "mails/s"), rate("BenchmarkMail/service", "mails/s", "mails/s")},
	}
	for _, state := range []string{"idle", "load"} {
		shown := map[string]string{"idle": "idle", "load": "under load"}[state]
		for _, s := range []string{"contacts", "calendar", "notifications"} {
			rs = append(rs, row{s + " resident memory, " + shown, mem("baseline-" + state + "-MB"), mem(s + "-" + state + "-MB")})
		}
	}
	total := mem("baseline-idle-MB")
	total.factor = 3
	rs = append(rs, row{"3 services' resident memory, idle (target < 60 MB)", total, mem("total-idle-MB")})
	return append(rs, replicaRows()...)
}

// replicaRows are the lines of the replica benchmarks
// (e2e/bench_replicas_test.go), whose figures are optional: they skip
// without PostgreSQL, haproxy or nginx.
func replicaRows() []row {
	lat := func(name, unit string) figure { return figure{name: name, unit: unit, format: ms, optional: true} }
	msec := func(name, unit string) figure { // ms, shown from µs
		return figure{name: name, unit: unit, factor: 1000, format: ms, optional: true}
	}
	rate := func(name, unit string) figure {
		return figure{name: name, unit: unit, format: perSecond(unit), optional: true}
	}
	const prop, fail = "BenchmarkReplicaPropagation/", "BenchmarkFailover/"
	rs := []row{
		{"write → calendar, other contacts replica (vs same), p50 (goal ≤ 1.5)", lat(prop+"same-replica", "p50-µs"), lat(prop+"cross-replica", "p50-µs")},
		{"write → calendar, other contacts replica (vs same), p99", lat(prop+"same-replica", "p99-µs"), lat(prop+"cross-replica", "p99-µs")},
		{"8 writers, PostgreSQL, HAProxy: 2 contacts replicas (vs 1) (goal ≥ 1)", rate("BenchmarkReplicaWrites/one", "creates/s"), rate("BenchmarkReplicaWrites/two", "creates/s")},
		{"calendar takeover after SIGKILL, p50 (vs FOLLOWER_LEASE)", msec(fail+"sigkill", "lease-ms"), msec(fail+"sigkill", "p50-ms")},
		{"calendar takeover after SIGKILL, max (vs FOLLOWER_LEASE)", msec(fail+"sigkill", "lease-ms"), msec(fail+"sigkill", "max-ms")},
		{"calendar takeover after SIGTERM, p50 (vs FOLLOWER_LEASE)", msec(fail+"sigterm", "lease-ms"), msec(fail+"sigterm", "p50-ms")},
		{"calendar takeover after SIGTERM, max (vs FOLLOWER_LEASE)", msec(fail+"sigterm", "lease-ms"), msec(fail+"sigterm", "max-ms")},
		{"archive page through nginx's cache (vs contacts direct)", rate("BenchmarkArchiveThroughNginx/direct", "req/s"), rate("BenchmarkArchiveThroughNginx/nginx", "req/s")},
	}
	return rs
}

// table renders rs from r as an aligned Markdown table and returns the
// figures it could not find.
func table(w io.Writer, r results, rs []row) (missing []string) {
	show := func(f figure) (float64, string, bool) {
		v, ok := f.value(r)
		if !ok {
			if !f.optional {
				missing = append(missing, f.name+" "+f.unit)
			}
			return 0, "—", false
		}
		return v, f.format(v), true
	}
	cells := [][]string{{"metric", "baseline", "service", "ratio"}}
	for _, x := range rs {
		bv, bs, bok := show(x.baseline)
		sv, ss, sok := show(x.service)
		ratio := "—"
		if bok && sok && bv != 0 {
			ratio = fmt.Sprintf("%.2f", sv/bv)
		}
		cells = append(cells, []string{x.metric, bs, ss, ratio})
	}
	width := make([]int, 4)
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	line := func(c []string) {
		for i, s := range c {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(s))
			if i == 0 {
				fmt.Fprintf(w, "| %s%s ", s, pad)
			} else {
				fmt.Fprintf(w, "| %s%s ", pad, s) // numbers right-aligned
			}
		}
		fmt.Fprintln(w, "|")
	}
	line(cells[0])
	for i := range cells[0] {
		dashes := strings.Repeat("-", width[i])
		if i > 0 {
			dashes = dashes[1:] + ":"
		}
		fmt.Fprintf(w, "| %s ", dashes)
	}
	fmt.Fprintln(w, "|")
	for _, c := range cells[1:] {
		line(c)
	}
	return missing
}

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable [go-test-bench-output]")
		os.Exit(2)
	}
	if len(os.Args) == 2 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	res, failed, times, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	missing := table(os.Stdout, res, rows())
	fmt.Println()
	fmt.Println("ratio = service ÷ baseline, both measured in this run: for rates higher is better,")
	fmt.Println("for latency and memory lower is. Memory is VmRSS in MB of 10⁶ bytes; its baseline")
	fmt.Println("is a bare net/http server (3 of them for the total). The replica rows (— when")
	fmt.Println("they skipped without PostgreSQL, haproxy or nginx) compare with one replica, or")
	fmt.Println("for takeovers with FOLLOWER_LEASE, the bound by design.")
	if len(times) > 0 {
		fmt.Println("go test:", strings.Join(times, ", "))
	}
	if len(missing) > 0 || len(failed) > 0 {
		for _, m := range missing {
			fmt.Fprintln(os.Stderr, "benchtable: missing", m)
		}
		for _, l := range failed {
			fmt.Fprintln(os.Stderr, "benchtable: the benchmarks failed:", l)
		}
		os.Exit(1)
	}
}
