// Command benchtable reads the output of `go test -bench` for the contacts
// and e2e benchmarks and prints two Markdown tables: each figure beside the
// baseline measured in the same run and their ratio (service ÷ baseline),
// then syndic's headline figures beside the anchors (RabbitMQ, NATS
// JetStream, Watermill SQL; e2e/bench_anchors_test.go) with their ratio
// (syndic ÷ anchor) and issue 10's target for it. `make bench` runs it on
// .bench/raw.txt:
//
//	go run ./e2e/cmd/benchtable .bench/raw.txt
//
// With no file it reads stdin. A result line is a name, an iteration count
// and value/unit pairs; a "--- SKIP: name" line marks a benchmark skipped,
// with the indented lines around it (go test -v) as the reason; everything
// else is ignored. A benchmark that ran several times (-count) is shown by
// its median. It exits 1, after the tables, when a figure is missing (one
// of a skipped benchmark is shown as skipped, not missing) or the output
// has a FAIL line.
package main

import (
	"bufio"
	"cmp"
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

var logPrefix = regexp.MustCompile(`^\S+\.go:\d+: `)

// output is what parse read.
type output struct {
	res     results
	failed  []string          // the FAIL lines
	times   []string          // each package's test time from its "ok" line
	skipped map[string]string // skipped benchmark → why (its log lines)
}

// skip returns why name, or the benchmark it is part of, was skipped.
func (o output) skip(name string) (string, bool) {
	for {
		if why, ok := o.skipped[name]; ok {
			return why, true
		}
		i := strings.LastIndex(name, "/")
		if i < 0 {
			return "", false
		}
		name = name[:i]
	}
}

// parse reads go test -bench output.
func parse(r io.Reader) (output, error) {
	out := output{res: results{}, skipped: map[string]string{}}
	var (
		logged  []string // the indented lines since the last other line
		skipped string   // the benchmark the "--- SKIP" line just named
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) > 0 && (line[0] == ' ' || line[0] == '\t') && !strings.HasPrefix(f[0], "---") {
			msg := logPrefix.ReplaceAllString(strings.TrimSpace(line), "")
			logged = append(logged, msg)
			if skipped != "" {
				out.skipped[skipped] = strings.Join(logged, "; ")
			}
			continue
		}
		skipped = ""
		switch {
		case len(f) == 0:
		case strings.HasPrefix(strings.TrimSpace(line), "--- SKIP:") && len(f) >= 3:
			skipped = f[2]
			out.skipped[skipped] = strings.Join(logged, "; ") // with -v it precedes
			continue                                          // and without, it follows
		case strings.HasPrefix(f[0], "FAIL") || strings.HasPrefix(strings.TrimSpace(line), "--- FAIL"):
			out.failed = append(out.failed, strings.TrimSpace(line))
		case f[0] == "ok" && len(f) >= 3:
			out.times = append(out.times, f[1]+" "+f[2])
		case strings.HasPrefix(f[0], "Benchmark") && len(f) >= 4 && len(f)%2 == 0:
			if _, err := strconv.Atoi(f[1]); err != nil {
				break
			}
			name := procsSuffix.ReplaceAllString(f[0], "")
			if out.res[name] == nil {
				out.res[name] = map[string][]float64{}
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					continue
				}
				out.res[name][f[i+1]] = append(out.res[name][f[i+1]], v)
			}
		}
		logged = logged[:0]
	}
	return out, sc.Err()
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

// percent is an optional figure of name shown in percent.
func percent(name, unit string) figure {
	return figure{name: name, unit: unit, format: func(v float64) string { return fmt.Sprintf("%.0f%%", v) }, optional: true}
}

// rows are the table's lines: the metrics `make bench` promises.
func rows() []row {
	lat := func(name, unit string) figure { return figure{name: name, unit: unit, format: ms} }
	rate := func(name, unit, shown string) figure {
		return figure{name: name, unit: unit, format: perSecond(shown)}
	}
	secs := func(name string) figure {
		return figure{name: name, unit: "s/start", format: func(v float64) string { return fmt.Sprintf("%.2f s", v) }}
	}
	mem := func(unit string) figure { return figure{name: "BenchmarkResidentMemory", unit: unit, format: mb} }
	const prop = "BenchmarkPropagation/"
	rs := []row{
		{"contact write → in calendar's copy, long-poll, p50", lat(prop+"baseline", "p50-µs"), lat(prop+"longpoll", "p50-µs")},
		{"contact write → in calendar's copy, long-poll, p99", lat(prop+"baseline", "p99-µs"), lat(prop+"longpoll", "p99-µs")},
		{"same, polling every 100 ms (long-poll off), p50", lat(prop+"baseline", "p50-µs"), lat(prop+"polling", "p50-µs")},
		{"same, polling every 100 ms (long-poll off), p99", lat(prop+"baseline", "p99-µs"), lat(prop+"polling", "p99-µs")},
		{"end to end: 8 writers → calendar's copy", rate("BenchmarkEndToEnd/baseline", "writes/s", "writes/s"), rate("BenchmarkEndToEnd/service", "events/s", "events/s")},
		{"catch-up of 100,000 archived events (goal ≥ 0.6)", rate("BenchmarkCatchUp/baseline", "events/s", "events/s"), rate("BenchmarkCatchUp/service", "events/s", "events/s")},
		{"new calendar to lag 0, 100,000 events over 10,000 contacts: snapshot (vs replaying every archive) (goal ≤ 0.2)",
			secs("BenchmarkSnapshot/beginning"), secs("BenchmarkSnapshot/snapshot")},
		{"cached archive page (gzip)", rate("BenchmarkArchivePage/baseline", "req/s", "req/s"), rate("BenchmarkArchivePage/service", "req/s", "req/s")},
		{"/feed 304", rate("BenchmarkFeed304/baseline", "req/s", "req/s"), rate("BenchmarkFeed304/service", "req/s", "req/s")},
		{"contact creation, JSON API, SQLite", rate("BenchmarkCreateContact/baseline", "req/s", "req/s"), rate("BenchmarkCreateContact/service", "creates/s", "creates/s")},
		{"invitations: calendar → notifications → SMTP", rate("BenchmarkMail/baseline", "mails/s", "mails/s"), rate("BenchmarkMail/service", "mails/s", "mails/s")},
	}
	// Fan-out: NATS core is the baseline, optional (skipped when no server).
	fan := func(name, unit string, optional bool) figure {
		return figure{name: "BenchmarkFanOut/" + name, unit: unit, factor: 1000, format: ms, optional: optional}
	}
	rs = append(rs,
		row{"fan-out: one write → the last of 1,000 long-polls (NATS core: subscribers), p50", fan("nats", "last-p50-ms", true), fan("contacts", "last-p50-ms", false)},
		row{"fan-out: one write → the last of 1,000 long-polls (NATS core: subscribers), p99", fan("nats", "last-p99-ms", true), fan("contacts", "last-p99-ms", false)},
		row{"contacts resident memory, 1,000 long-polls waiting (vs idle)", figure{name: "BenchmarkFanOut/contacts", unit: "idle-MB", format: mb}, figure{name: "BenchmarkFanOut/contacts", unit: "waiting-MB", format: mb}},
	)
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
		{"8 writers, PostgreSQL, HAProxy: 2 contacts replicas (vs 1, rounds alternating) (goal ≥ 1)", figure{name: "BenchmarkReplicaWrites/two", unit: "one-creates/s", format: perSecond("creates/s"), optional: true}, rate("BenchmarkReplicaWrites/two", "creates/s")},
		{"the machine's idle CPU in those rounds: 2 replicas (vs 1)", percent("BenchmarkReplicaWrites/two", "one-idle-%"), percent("BenchmarkReplicaWrites/two", "idle-%")},
		{"calendar takeover after SIGKILL, p50 (vs FOLLOWER_LEASE)", msec(fail+"sigkill", "lease-ms"), msec(fail+"sigkill", "p50-ms")},
		{"calendar takeover after SIGKILL, max (vs FOLLOWER_LEASE)", msec(fail+"sigkill", "lease-ms"), msec(fail+"sigkill", "max-ms")},
		{"calendar takeover after SIGTERM, p50 (vs FOLLOWER_LEASE)", msec(fail+"sigterm", "lease-ms"), msec(fail+"sigterm", "p50-ms")},
		{"calendar takeover after SIGTERM, max (vs FOLLOWER_LEASE)", msec(fail+"sigterm", "lease-ms"), msec(fail+"sigterm", "max-ms")},
		{"archive page through nginx's cache (vs contacts direct)", rate("BenchmarkArchiveThroughNginx/direct", "req/s"), rate("BenchmarkArchiveThroughNginx/nginx", "req/s")},
	}
	return rs
}

// micros shows microseconds as µs below a millisecond, else as ms.
func micros(us float64) string {
	if us < 1000 {
		return fmt.Sprintf("%.0f µs", us)
	}
	return ms(us)
}

// target is what issue 10 asks of a ratio: at least (atLeast) or at most v.
// The zero target asks nothing.
type target struct {
	atLeast bool
	v       float64
}

func (t target) String() string {
	switch {
	case t.v == 0:
		return ""
	case t.atLeast:
		return "≥ " + strconv.FormatFloat(t.v, 'f', -1, 64)
	}
	return "≤ " + strconv.FormatFloat(t.v, 'f', -1, 64)
}

// met says whether ratio meets t: "yes", "no", or "" for no target.
func (t target) met(ratio float64) string {
	ok := ratio <= t.v
	if t.atLeast {
		ok = ratio >= t.v
	}
	switch {
	case t.v == 0:
		return ""
	case ok:
		return "yes"
	}
	return "no"
}

// anchorRow is a line of the anchors' table: syndic's figure beside the
// same figure of a system a user would pick instead.
type anchorRow struct {
	metric         string
	syndic, anchor figure
	want           target // for syndic ÷ anchor
}

// anchorRows are the anchors' lines (e2e/bench_anchors_test.go): the
// latencies and rates issue 10 sets targets for, beside RabbitMQ durable,
// NATS JetStream and, on PostgreSQL, Watermill SQL.
func anchorRows() []anchorRow {
	lat := func(name, unit string) figure { return figure{name: name, unit: unit, format: micros} }
	rate := func(name, unit, shown string) figure {
		return figure{name: name, unit: unit, format: perSecond(shown)}
	}
	const (
		prop, e2e   = "BenchmarkAnchorPropagation/", "BenchmarkAnchorEndToEnd/"
		pgw, pgp    = "BenchmarkPostgresWrites/", "BenchmarkPostgresPropagation/"
		rmq, js, wm = "vs RabbitMQ durable", "vs NATS JetStream", "vs Watermill SQL"
	)
	syndicP50, syndicP99 := lat("BenchmarkPropagation/longpoll", "p50-µs"), lat("BenchmarkPropagation/longpoll", "p99-µs")
	syndicRate := rate("BenchmarkEndToEnd/service", "events/s", "events/s")
	return []anchorRow{
		{"write → in the consumer, p50, " + rmq, syndicP50, lat(prop+"rabbitmq", "p50-µs"), target{v: 3}},
		{"write → in the consumer, p50, " + js, syndicP50, lat(prop+"jetstream", "p50-µs"), target{}},
		{"write → in the consumer, p99, " + rmq, syndicP99, lat(prop+"rabbitmq", "p99-µs"), target{v: 4}},
		{"write → in the consumer, p99, " + js, syndicP99, lat(prop+"jetstream", "p99-µs"), target{}},
		{"end to end, 8 writers → the consumer, " + rmq, syndicRate, rate(e2e+"rabbitmq", "events/s", "events/s"), target{atLeast: true, v: 0.5}},
		{"end to end, 8 writers → the consumer, " + js, syndicRate, rate(e2e+"jetstream", "events/s", "events/s"), target{}},
		{"PostgreSQL: writes, 8 writers, " + wm + " publish", rate(pgw+"syndic", "writes/s", "writes/s"), rate(pgw+"watermill", "writes/s", "writes/s"), target{atLeast: true, v: 0.5}},
		{"PostgreSQL: write → in the consumer, p50, " + wm + " (10 ms poll)", lat(pgp+"syndic", "p50-µs"), lat(pgp+"watermill", "p50-µs"), target{v: 1}},
		{"PostgreSQL: write → in the consumer, p99, " + wm + " (10 ms poll)", lat(pgp+"syndic", "p99-µs"), lat(pgp+"watermill", "p99-µs"), target{}},
	}
}

// anchorTable renders rs from o as an aligned Markdown table. It returns
// the figures it could not find, and why the benchmarks it shows as
// skipped were skipped ("name: reason"), each once.
func anchorTable(w io.Writer, o output, rs []anchorRow) (missing, skips []string) {
	noted := map[string]bool{}
	show := func(f figure) (float64, string, bool) {
		v, ok := f.value(o.res)
		if ok {
			return v, f.format(v), true
		}
		why, skipped := o.skip(f.name)
		key := f.name + " " + f.unit
		switch {
		case skipped && !noted[f.name]:
			noted[f.name] = true
			skips = append(skips, f.name+": "+cmp.Or(why, "no reason given"))
		case !skipped && !f.optional && !noted[key]:
			noted[key] = true
			missing = append(missing, key)
		}
		if skipped {
			return 0, "skipped", false
		}
		return 0, "—", false
	}
	cells := [][]string{{"syndic beside the anchors", "syndic", "anchor", "ratio", "target", "met"}}
	for _, x := range rs {
		sv, ss, sok := show(x.syndic)
		av, as, aok := show(x.anchor)
		ratio, met := "—", "—"
		if sok && aok && av != 0 {
			ratio, met = fmt.Sprintf("%.2f", sv/av), x.want.met(sv/av)
		} else if x.want.v == 0 {
			met = ""
		}
		cells = append(cells, []string{x.metric, ss, as, ratio, x.want.String(), met})
	}
	markdown(w, cells)
	return missing, skips
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
	markdown(w, cells)
	return missing
}

// markdown writes cells, the first row the header, as an aligned Markdown
// table: the first column left-aligned, the others (numbers) right.
func markdown(w io.Writer, cells [][]string) {
	width := make([]int, len(cells[0]))
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
	out, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	missing := table(os.Stdout, out.res, rows())
	fmt.Println()
	fmt.Println("ratio = service ÷ baseline, both measured in this run: for rates higher is better,")
	fmt.Println("for latency and memory lower is. Memory is VmRSS in MB of 10⁶ bytes; its baseline")
	fmt.Println("is a bare net/http server (3 of them for the total). The replica rows (— when")
	fmt.Println("they skipped without PostgreSQL, haproxy or nginx) compare with one replica, or")
	fmt.Println("for takeovers with FOLLOWER_LEASE, the bound by design.")
	fmt.Println()
	more, skips := anchorTable(os.Stdout, out, anchorRows())
	missing = append(missing, more...)
	fmt.Println()
	fmt.Println("ratio = syndic ÷ anchor, both measured in this run; target is issue 10's for it.")
	fmt.Println("syndic: contacts → calendar's committed copy, SQLite (BenchmarkPropagation/longpoll,")
	fmt.Println("BenchmarkEndToEnd/service), or both on PostgreSQL (BenchmarkPostgres*/syndic).")
	fmt.Println("Anchors: a confirmed publish → the consumer's receipt (RabbitMQ: classic durable queue,")
	fmt.Println("persistent messages, publisher confirms, manual acks; JetStream: file storage, PubAck,")
	fmt.Println("durable consumer, explicit acks; Watermill SQL: Publish's INSERT → the Subscriber).")
	fmt.Println("What an anchor's confirm means: RabbitMQ's, on disk or already consumed and acked;")
	fmt.Println("JetStream's, written to the OS (fsync every 2 min by default); Watermill's, committed.")
	for _, s := range skips {
		fmt.Println("skipped:", s)
	}
	if len(out.times) > 0 {
		fmt.Println("go test:", strings.Join(out.times, ", "))
	}
	if len(missing) > 0 || len(out.failed) > 0 {
		for _, m := range missing {
			fmt.Fprintln(os.Stderr, "benchtable: missing", m)
		}
		for _, l := range out.failed {
			fmt.Fprintln(os.Stderr, "benchtable: the benchmarks failed:", l)
		}
		os.Exit(1)
	}
}
