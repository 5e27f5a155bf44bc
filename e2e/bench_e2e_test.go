package e2e

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/shared/smtptest"
)

// The two benchmarks below look at the whole system under load, each beside
// a baseline measured in the same run. Like the others they report and never
// assert figures: only wrong answers fail them.
//
// BenchmarkEndToEnd: endToEndWriters writers create endToEndWrites contacts
// through contacts' JSON API at once. baseline is contacts alone (no
// calendar following) and reports writes/s, from the first POST to the last
// answer. service has a calendar following contacts' feed with its default
// settings (long-poll) and reports events/s, from the first POST to the
// commit of the last contact in calendar's copy, ratio, its events/s over
// the baseline's writes/s, and its own writes/s (to the last answer), which
// tells whether the writes slowed down or calendar fell behind. Both report
// p50-µs and p99-µs: from the start of each POST to its answer (baseline)
// or to the contact's commit in calendar's copy (service). Each
// sub-benchmark has a contacts of its own on a fresh database; one op is
// one batch of endToEndWrites.
//
// BenchmarkResidentMemory: the resident memory (VmRSS in /proc, in MB of
// 10⁶ bytes) of the three services as separate processes, each built with
// `go build` as `make build` does and configured only through the
// environment like `make run` (defaults, SQLite in a temporary folder,
// notifications sending to an SMTP server in the test process). The
// baseline is testdata/idleserver, a bare net/http server answering
// "hello". "idle" is read once, 2 s after every process answered /readyz:
// <service>-idle-MB, baseline-idle-MB and total-idle-MB (the three
// services together). Each op is a load phase: first the baseline gets
// memoryWrites+memoryAppointments POSTs from endToEndWriters clients; then
// contacts gets memoryWrites contact creations from as many writers,
// calendar follows until its copy holds them all, and memoryAppointments
// appointments, each inviting one of those contacts, go through calendar
// and notifications to the SMTP server. "load" is the highest VmRSS sampled
// every 50 ms during the load phases, the last sample taken once every mail
// has arrived: <service>-load-MB and baseline-load-MB. At the end the
// services are interrupted, calendar first, and must exit with status 0.
// Linux only; ns/op (one load phase, the baseline's and the services')
// means little.
//
//	go test -run '^$' -bench 'EndToEnd|ResidentMemory' -benchtime 3x ./e2e/

const (
	endToEndWrites  = 2000
	endToEndWriters = 8

	memoryWrites       = 2000
	memoryAppointments = 200
	memoryIdle         = 2 * time.Second
	memorySample       = 50 * time.Millisecond
)

// endToEndWrite is one contact created by endToEndCreate.
type endToEndWrite struct {
	contact     contacts.Contact
	start, done time.Time // the POST sent and answered
}

// endToEndCreate creates n contacts through base's JSON API from writers
// goroutines at once, numbering them with next so every run's contacts
// differ, and returns them. Any refusal is an error.
func endToEndCreate(c *http.Client, base string, n, writers int, next *atomic.Int64) ([]endToEndWrite, error) {
	out := make([]endToEndWrite, n)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				k := strconv.FormatInt(next.Add(1), 10)
				start := time.Now()
				got, err := benchCreate(c, base, "Load Person "+k, "load"+k+"@example.org", "+44 20 7946 0958")
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = endToEndWrite{contact: got, start: start, done: time.Now()}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// BenchmarkEndToEnd measures contacts written by several writers at once
// arriving in calendar's copy, beside the same writes with no calendar.
func BenchmarkEndToEnd(b *testing.B) {
	client := benchHTTPClient(b)
	var next atomic.Int64

	var baselineRate float64
	var baselineP50 time.Duration
	b.Run("baseline", func(b *testing.B) {
		con := startContacts(b, "", contacts.Config{Common: benchCommon()})
		took, _, lat := endToEndRounds(b, client, con.URL, &next, func(w endToEndWrite) time.Time { return w.done })
		baselineRate = benchRate(b.N*endToEndWrites, took)
		b.ReportMetric(baselineRate, "writes/s")
		baselineP50 = benchLatencies(b, lat, 0)
	})

	b.Run("service", func(b *testing.B) {
		con := startContacts(b, "", contacts.Config{Common: benchCommon()})
		arr := newBenchArrivals()
		cal := startCalendar(b, "", con.URL+"/feed", calendar.Config{Common: benchCommon(), Follow: arr.follow(nil)})
		// One contact through first, so the follower is in its steady
		// state (connection open, long-poll waiting).
		warm, err := benchCreate(client, con.URL, "Warm Up", "warmup@example.org", "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := arr.wait(warm.ID, 30*time.Second); err != nil {
			b.Fatalf("contact %d: %v; sync %s", warm.ID, err, benchSyncStatus(client, cal.URL))
		}
		arr.forget()

		want := map[int64]contacts.Contact{warm.ID: warm}
		took, wrote, lat := endToEndRounds(b, client, con.URL, &next, func(w endToEndWrite) time.Time {
			at, err := arr.wait(w.contact.ID, time.Minute)
			if err != nil {
				b.Fatalf("contact %d: %v; sync %s", w.contact.ID, err, benchSyncStatus(client, cal.URL))
			}
			want[w.contact.ID] = w.contact
			return at
		})
		got, err := benchCalendarCopy(client, cal.URL)
		if err == nil {
			err = benchSameCopy(got, want, 0, true)
		}
		if err != nil {
			b.Fatal(err)
		}
		rate := benchRate(b.N*endToEndWrites, took)
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(benchRate(b.N*endToEndWrites, wrote), "writes/s")
		if baselineRate > 0 {
			b.ReportMetric(rate/baselineRate, "ratio")
		} else {
			b.Log("no baseline in this run (select the baseline sub-benchmark too): ratio not reported")
		}
		benchLatencies(b, lat, baselineP50)
	})
}

// endToEndRounds runs b.N rounds of endToEndWrites creates by
// endToEndWriters writers against contacts at url; done says when a write
// counts as done. It returns the time from each round's start to its last
// write done, and to its last answer, summed, and each write's latency.
func endToEndRounds(b *testing.B, client *http.Client, url string, next *atomic.Int64, done func(endToEndWrite) time.Time) (took, wrote time.Duration, lat []time.Duration) {
	for b.Loop() {
		start := time.Now()
		writes, err := endToEndCreate(client, url, endToEndWrites, endToEndWriters, next)
		if err != nil {
			b.Fatal(err)
		}
		last, answered := start, start
		for _, w := range writes {
			answered = endToEndLater(answered, w.done)
			at := done(w)
			lat = append(lat, at.Sub(w.start))
			last = endToEndLater(last, at)
		}
		took += last.Sub(start)
		wrote += answered.Sub(start)
	}
	return took, wrote, lat
}

// endToEndLater returns the later of a and b.
func endToEndLater(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// BenchmarkResidentMemory measures each service's resident memory as its
// own process, idle and under load, beside a bare net/http server's.
func BenchmarkResidentMemory(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("reads VmRSS from /proc: Linux only")
	}
	dir := b.TempDir()
	memoryBuild(b, dir, "syndic/contacts/cmd/contacts", "syndic/calendar/cmd/calendar",
		"syndic/notifications/cmd/notifications", "./testdata/idleserver")

	smtp := smtptest.Start(b)
	db := func(name string) string { return "DATABASE_URL=sqlite:" + filepath.Join(dir, name+".db") }
	base := memoryStart(b, dir, "idleserver")
	con := memoryStart(b, dir, "contacts", db("contacts"))
	notif := memoryStart(b, dir, "notifications", db("notifications"), "SMTP_URL="+smtp.URL)
	cal := memoryStart(b, dir, "calendar", db("calendar"),
		"CONTACTS_FEED_URL="+con.url+"/feed", "NOTIFICATIONS_URL="+notif.url)
	services := []*memoryProc{con, cal, notif}
	for _, p := range append([]*memoryProc{base}, services...) {
		p.waitReady(b, 30*time.Second)
	}

	time.Sleep(memoryIdle) // what is measured: memory after this long idle
	idle, err := memoryRSS(append([]*memoryProc{base}, services...)...)
	if err != nil {
		b.Fatal(err)
	}

	client := benchHTTPClient(b)
	var (
		next     atomic.Int64
		baseLoad float64
		load     = make([]float64, len(services))
		events   int64
		mails    int
	)
	for b.Loop() {
		stop := memoryWatch(base)
		err := memoryPost(client, base.url+"/", memoryWrites+memoryAppointments, endToEndWriters)
		peak, werr := stop()
		if err = errors.Join(err, werr); err != nil {
			b.Fatal(err)
		}
		baseLoad = max(baseLoad, peak[0])

		stop = memoryWatch(services...)
		writes, err := endToEndCreate(client, con.url, memoryWrites, endToEndWriters, &next)
		if err != nil {
			b.Fatal(err)
		}
		events += memoryWrites
		memoryWaitSync(b, client, cal.url, events, time.Minute)
		if bad := createAppointments(cal.url, memoryAppointments, endToEndWriters, "Memory", []int64{writes[0].contact.ID}); len(bad) > 0 {
			b.Fatalf("%d appointments refused, the first: %s", len(bad), bad[0])
		}
		mails += memoryAppointments
		smtp.WaitFor(b, mails, 2*time.Minute)
		peak, err = stop()
		if err != nil {
			b.Fatal(err)
		}
		for i := range load {
			load[i] = max(load[i], peak[i])
		}
	}
	b.StopTimer()

	// Stop calendar first, as make run does, and expect clean exits.
	for _, p := range []*memoryProc{cal, con, notif} {
		if err := p.stop(15 * time.Second); err != nil {
			b.Error(err)
		}
	}
	if got := len(smtp.Mails()); got != mails {
		b.Errorf("%d mails at the SMTP server, want %d: some were doubled or lost", got, mails)
	}

	b.ReportMetric(idle[0], "baseline-idle-MB")
	total := 0.0
	for i, p := range services {
		b.ReportMetric(idle[i+1], p.name+"-idle-MB")
		total += idle[i+1]
	}
	b.ReportMetric(total, "total-idle-MB")
	b.ReportMetric(baseLoad, "baseline-load-MB")
	for i, p := range services {
		b.ReportMetric(load[i], p.name+"-load-MB")
	}
}

// memoryBuild builds the main packages pkgs into dir with the go command
// that runs the test, with no flags, as make build does: procBinaries'
// -ldflags=-s -w binaries are smaller and would show less resident memory.
func memoryBuild(b *testing.B, dir string, pkgs ...string) {
	b.Helper()
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
}

// memoryProc is one program BenchmarkResidentMemory runs as a process.
type memoryProc struct {
	name   string
	url    string // http://127.0.0.1:PORT
	log    string // the file its stdout and stderr go to
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited; err is then Wait's
	err    error
}

// memoryStart starts dir/name on a free loopback port with env and nothing
// else in its environment; it is killed when b ends, if still running.
func memoryStart(b *testing.B, dir, name string, env ...string) *memoryProc {
	b.Helper()
	port := strconv.Itoa(procFreePort(b))
	p := &memoryProc{name: name, url: "http://127.0.0.1:" + port, log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close() // the process has its own descriptor
	p.cmd = exec.Command(filepath.Join(dir, name))
	p.cmd.Env = append([]string{"PORT=" + port}, env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	b.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitReady waits until p answers GET /readyz with 200.
func (p *memoryProc) waitReady(b *testing.B, timeout time.Duration) {
	b.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			b.Fatalf("%s exited before it was ready: %v\n%s", p.name, p.err, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not ready after %v: %v\n%s", p.name, timeout, err, p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop interrupts p as Ctrl-C under make run does and returns an error
// unless it exits with status 0 within timeout.
func (p *memoryProc) stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		return fmt.Errorf("%s: interrupt: %w", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s still running %v after an interrupt\n%s", p.name, timeout, p.tail())
	}
	if p.err != nil {
		return fmt.Errorf("%s exited after an interrupt: %v\n%s", p.name, p.err, p.tail())
	}
	return nil
}

// tail returns the last lines p wrote, for messages.
func (p *memoryProc) tail() string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// memoryRSS returns each process's resident memory in MB (10⁶ bytes).
func memoryRSS(ps ...*memoryProc) ([]float64, error) {
	out := make([]float64, len(ps))
	for i, p := range ps {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		_, rest, ok := bytes.Cut(data, []byte("\nVmRSS:"))
		line, _, _ := bytes.Cut(rest, []byte("\n"))
		f := strings.Fields(string(line)) // "12345 kB"
		if !ok || len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("%s: no VmRSS in /proc/%d/status", p.name, p.cmd.Process.Pid)
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: VmRSS %q: %w", p.name, f[0], err)
		}
		out[i] = kb * 1024 / 1e6
	}
	return out, nil
}

// memoryWatch samples the processes' resident memory every memorySample
// until stop is called; stop takes a last sample and returns each one's
// highest.
func memoryWatch(ps ...*memoryProc) (stop func() ([]float64, error)) {
	var (
		mu    sync.Mutex
		peak  = make([]float64, len(ps))
		first error
	)
	sample := func() {
		rss, err := memoryRSS(ps...)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			first = cmp.Or(first, err)
			return
		}
		for i, v := range rss {
			peak[i] = max(peak[i], v)
		}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(memorySample)
		defer t.Stop()
		for {
			sample()
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	return func() ([]float64, error) {
		close(done)
		<-finished
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak, first
	}
}

// memoryPost sends n POSTs with a contact's JSON body to url from writers
// goroutines at once, expecting 200 to each.
func memoryPost(c *http.Client, url string, n, writers int) error {
	body := []byte(`{"name":"Load Person","email":"load@example.org","phone":"+44 20 7946 0958"}`)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				resp, err := c.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					errs[w] = err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs[w] = fmt.Errorf("POST %s: status = %d, want 200", url, resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// memoryWaitSync waits until calendar's checkpoint has reached seq.
func memoryWaitSync(b *testing.B, c *http.Client, calURL string, seq int64, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var s syncStatus
		if err := benchGetJSON(c, calURL+"/api/sync", &s); err != nil {
			b.Fatal(err)
		}
		if s.CheckpointSeq >= seq {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("calendar's checkpoint is %d after %v, want %d: %+v", s.CheckpointSeq, timeout, seq, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
