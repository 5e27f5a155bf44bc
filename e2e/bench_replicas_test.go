package e2e

// Benchmarks of every service as several replicas: the built binaries on
// PostgreSQL schemas (the cluster harness of replicas_test.go), behind
// HAProxy with deploy/haproxy.cfg and nginx with deploy/nginx.conf. Each
// figure has its single-replica (or by-design) baseline measured in the
// same run, and they report, never assert, timing: only wrong answers fail
// them. They skip without TEST_DATABASE_URL, haproxy or nginx, except under
// CI=true, where they fail. The services log at error.
//
// BenchmarkReplicaPropagation: two contacts replicas on one schema, one
// calendar long-polling contacts1 directly. One contact at a time is
// created, the next once the previous is in calendar's database; the
// latency runs from the start of the POST to the first poll of calendar's
// database (SELECT on its contacts table every replicaPollEvery) that finds
// the row. It includes the POST's round trip and commit, for cross-replica
// contacts2's NOTIFY through PostgreSQL to contacts1, the long-poll's
// answer, calendar's fetch, apply and commit, and up to replicaPollEvery
// plus one query of detection lag. same-replica (the baseline) writes to
// contacts1, cross-replica to contacts2. One op is replicaPropWrites
// writes; both report p50-µs and p99-µs (and post-p50-µs, the POST
// alone), cross-replica also p50-ratio (its p50 over same-replica's).
// The goal: cross within 1.5× of same.
//
// BenchmarkReplicaWrites: replicaWriters concurrent writers create
// replicaWriteOps contacts per op over HTTP through HAProxy
// (deploy/haproxy.cfg), whose two contacts slots point at the same replica
// for one (the baseline) and at two replicas for two, so the proxy hop is
// in both. Both report creates/s, two also ratio (two over one); the goal
// is two not slower than one. Afterwards every creation is in the
// database once. What limits it: every write increments the
// one event_head row in its transaction, so commits of all replicas queue
// on that row lock in PostgreSQL; a second replica adds CPU for HTTP and
// JSON, not write concurrency — and on a 2-core machine the replicas,
// HAProxy, PostgreSQL and the writers share the same two cores. Each also
// reports idle-% (two: also one-idle-%), the machine's idle share of its
// rounds from /proc/stat: near 0, the machine's CPU bounds the rate.
//
// BenchmarkFailover: two calendar replicas follow contacts with
// FOLLOWER_LEASE=failoverLease (the default). The active one gets SIGKILL
// (sigkill) or SIGTERM (sigterm); the takeover time runs from the signal to
// the first /api/sync of the other replica (asked every 5 ms) that says
// "active". The stopped replica is then started again, as a standby. One op
// is failoverReps takeovers; each reports p50-ms and max-ms over them and
// lease-ms, the baseline: after SIGKILL the standby waits for the lease to
// run out, so the lease bounds it by design; after SIGTERM the replica
// gives the lease up and the standby hears of it through LISTEN/NOTIFY.
//
// BenchmarkArchiveThroughNginx: contacts runs with ARCHIVE_CACHE=public
// behind HAProxy and nginx (which checks the credentials, then answers
// from its cache). archiveClients clients on keep-alive connections GET
// the same full archive page, with the same bearer token and
// Accept-Encoding: gzip, archiveRequests requests per op: direct (the
// baseline) from the contacts replica, nginx through nginx. Both report
// req/s, nginx also ratio and hit-ratio (the share of X-Cache: HIT).
//
//	go test -run '^$' -bench 'Replica|Failover|ArchiveThroughNginx' -benchtime 1x ./e2e/

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"syndic/shared/servicetest"
)

const (
	replicaPropWrites = 300 // 100 read 1.00–1.63 over four runs: a p50 of a few ms on a shared machine wants more
	replicaPropWarmup = 5
	replicaPollEvery  = 200 * time.Microsecond

	replicaWriters  = 8
	replicaWriteOps = 1000
	replicaRounds   = 3 // of one replica and of two, alternating, in an op of BenchmarkReplicaWrites/two

	failoverReps  = 3
	failoverLease = 5 * time.Second

	archiveClients  = 4
	archiveRequests = 4000
	archiveContacts = 60 // one full archive page of 50 and some
)

// benchAuthClient is benchHTTPClient with the cluster's bearer token on
// every request.
func (c *cluster) benchAuthClient(b *testing.B) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: secAuthorizing{c.cr.bearer, tr}, Timeout: 30 * time.Second}
}

// BenchmarkReplicaPropagation measures write → calendar latency when the
// write lands on the contacts replica calendar long-polls and on the other.
func BenchmarkReplicaPropagation(b *testing.B) {
	c := newCluster(b)
	con1 := c.start("contacts", 1, "LOG_LEVEL=error")
	con2 := c.start("contacts", 2, "LOG_LEVEL=error")
	// The replicas' BASE_URL names the load balancer, which this benchmark
	// does not run: calendar must not follow the snapshot link there.
	cal := c.start("calendar", 1, "LOG_LEVEL=error", "CONTACTS_FEED_URL="+con1.URL+"/feed", "FEED_START=beginning")
	client := c.benchAuthClient(b)
	cdb := servicetest.OpenDB(b, c.dbs["calendar"])
	c.active("one active calendar follower", cal)

	n := 0
	// propagate creates a contact at target and returns when calendar's
	// database has it, with the POST's own part.
	propagate := func(b *testing.B, target *procService) (arrived, posted time.Duration) {
		n++
		t0 := time.Now()
		got, err := benchCreate(client, target.URL, "Replica Person "+strconv.Itoa(n), "replica"+strconv.Itoa(n)+"@example.org", "+44 20 7946 0958")
		if err != nil {
			b.Fatal(err)
		}
		posted = time.Since(t0)
		deadline := t0.Add(30 * time.Second)
		for {
			var found int
			if err := cdb.QueryRow(context.Background(), `SELECT count(*) FROM contacts WHERE id = $1`, got.ID).Scan(&found); err != nil {
				b.Fatal(err)
			}
			if found == 1 {
				return time.Since(t0), posted
			}
			if time.Now().After(deadline) {
				b.Fatalf("contact %d (written to %s) not in calendar's database after 30 s: %+v", got.ID, target.name, c.follower(cal))
			}
			time.Sleep(replicaPollEvery) // the detection grain, not synchronisation
		}
	}
	// Settle: connections open, the long-poll waiting on contacts1.
	for range replicaPropWarmup {
		propagate(b, con1)
		propagate(b, con2)
	}

	run := func(b *testing.B, target *procService, baselineP50 time.Duration) time.Duration {
		var lat, post []time.Duration
		for b.Loop() {
			for range replicaPropWrites {
				l, p := propagate(b, target)
				lat, post = append(lat, l), append(post, p)
			}
		}
		slices.Sort(post)
		b.ReportMetric(float64(post[len(post)/2].Nanoseconds())/1e3, "post-p50-µs")
		return benchLatencies(b, lat, baselineP50)
	}
	var sameP50 time.Duration
	b.Run("same-replica", func(b *testing.B) { sameP50 = run(b, con1, 0) })
	b.Run("cross-replica", func(b *testing.B) { run(b, con2, sameP50) })
}

// BenchmarkReplicaWrites measures contact creations per second with 8
// writers through HAProxy to one contacts replica (one) and to two (two,
// which alternates its rounds with rounds on one replica and reports the
// ratio of the two from them).
func BenchmarkReplicaWrites(b *testing.B) {
	c := newCluster(b)
	c.start("contacts", 1, "LOG_LEVEL=error")
	c.start("contacts", 2, "LOG_LEVEL=error")
	addr := func(slot int) string { return fmt.Sprintf("127.0.0.1:%d", c.ports["contacts"][slot-1]) }
	one := fmt.Sprintf("http://127.0.0.1:%d", c.spare[1])
	c.haproxy("CONTACTS_BIND="+strings.TrimPrefix(one, "http://"), "CONTACTS_1="+addr(1), "CONTACTS_2="+addr(1), // both slots: one replica
		fmt.Sprintf("CALENDAR_BIND=127.0.0.1:%d", c.spare[2]), fmt.Sprintf("NOTIFICATIONS_BIND=127.0.0.1:%d", c.spare[3]))
	c.haproxy()
	reachable(b, one)
	reachable(b, c.lb["contacts"])
	client := c.benchAuthClient(b)

	var next atomic.Int64
	create := func(base string, n int) error {
		var (
			wg    sync.WaitGroup
			left  atomic.Int64
			mu    sync.Mutex
			first error
		)
		left.Store(int64(n))
		for range replicaWriters {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					i := strconv.FormatInt(next.Add(1), 10)
					if _, err := benchCreate(client, base, "Writer "+i, "writer"+i+"@example.org", ""); err != nil {
						mu.Lock()
						first = firstErr(first, err)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		return first
	}
	// Warm both paths: connections, prepared statements, both replicas.
	for _, base := range []string{one, c.lb["contacts"]} {
		if err := create(base, 4*replicaWriters); err != nil {
			b.Fatal(err)
		}
	}

	// round creates replicaWriteOps contacts through base and returns how
	// long it took.
	// The machine's idle share over the rounds (/proc/stat) says whether a
	// rate is bound by the CPU of the machine everything shares.
	round := func(b *testing.B, base string, idle *machineIdle) time.Duration {
		idle.begin(b)
		t0 := time.Now()
		if err := create(base, replicaWriteOps); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		idle.end(b)
		return took
	}
	b.Run("one", func(b *testing.B) {
		var took time.Duration
		var idle machineIdle
		for b.Loop() {
			took += round(b, one, &idle)
		}
		b.ReportMetric(benchRate(b.N*replicaWriteOps, took), "creates/s")
		b.ReportMetric(idle.percent(), "idle-%")
	})
	// two alternates rounds on one replica and on two, replicaRounds of
	// each an op, so that the machine's drift (other load, PostgreSQL's
	// checkpoints) falls on both alike; one-creates/s is the one replica's
	// rate in those same rounds, and ratio is two's over it.
	b.Run("two", func(b *testing.B) {
		var tookOne, tookTwo time.Duration
		var idleOne, idleTwo machineIdle
		for b.Loop() {
			for range replicaRounds {
				tookOne += round(b, one, &idleOne)
				tookTwo += round(b, c.lb["contacts"], &idleTwo)
			}
		}
		n := b.N * replicaRounds * replicaWriteOps
		oneRate, twoRate := benchRate(n, tookOne), benchRate(n, tookTwo)
		b.ReportMetric(twoRate, "creates/s")
		b.ReportMetric(oneRate, "one-creates/s")
		b.ReportMetric(twoRate/oneRate, "ratio")
		b.ReportMetric(idleTwo.percent(), "idle-%")
		b.ReportMetric(idleOne.percent(), "one-idle-%")
	})

	// Every creation answered 201 is there, once.
	var total int
	if err := servicetest.OpenDB(b, c.dbs["contacts"]).QueryRow(context.Background(), `SELECT count(*) FROM contacts`).Scan(&total); err != nil {
		b.Fatal(err)
	}
	if int64(total) != next.Load() {
		b.Fatalf("contacts holds %d contacts, %d were created", total, next.Load())
	}
}

// machineIdle sums the machine's idle and total CPU time (all cores, every
// process: /proc/stat's first line) over the spans between begin and end.
type machineIdle struct{ idle, total, idle0, total0 uint64 }

func (m *machineIdle) begin(b *testing.B) { m.idle0, m.total0 = procStat(b) }

func (m *machineIdle) end(b *testing.B) {
	idle, total := procStat(b)
	m.idle, m.total = m.idle+idle-m.idle0, m.total+total-m.total0
}

// percent is the idle share of the spans, in percent.
func (m *machineIdle) percent() float64 {
	if m.total == 0 {
		return 0
	}
	return 100 * float64(m.idle) / float64(m.total)
}

// procStat returns the machine's idle (idle and iowait) and total CPU
// time so far, in clock ticks.
func procStat(b *testing.B) (idle, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		b.Fatalf("/proc/stat begins %q, not with the cpu line", line)
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %q: %v", line, err)
		}
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
		if i < 8 { // user … steal; guest time is counted in user already
			total += v
		}
	}
	return idle, total
}

// firstErr returns first unless it is nil, then err.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// BenchmarkFailover measures how long the standby calendar takes to follow
// after the active one is SIGKILLed and after it gets SIGTERM.
func BenchmarkFailover(b *testing.B) {
	c := newCluster(b)
	con := c.start("contacts", 1, "LOG_LEVEL=error")
	lease := "FOLLOWER_LEASE=" + failoverLease.String()
	calEnv := []string{"CONTACTS_FEED_URL=" + con.URL + "/feed", lease}
	replicas := func() []*procService {
		return []*procService{c.procs["calendar1"], c.procs["calendar2"]}
	}

	run := func(b *testing.B, sig syscall.Signal) {
		// The replicas a sub-benchmark starts end with it: start what is
		// not running (the next takeover may first wait for a lease).
		for slot := 1; slot <= 2; slot++ {
			if p := c.procs["calendar"+strconv.Itoa(slot)]; p == nil || exited(p) {
				c.start("calendar", slot, append([]string{"LOG_LEVEL=error"}, calEnv...)...)
			}
		}
		var took []time.Duration
		for b.Loop() {
			for range failoverReps {
				active := c.active("one active calendar follower", replicas()...)
				other := c.procs["calendar1"]
				if other == active {
					other = c.procs["calendar2"]
				}
				t0 := time.Now()
				if err := syscall.Kill(active.cmd.Process.Pid, sig); err != nil {
					b.Fatal(err)
				}
				deadline := t0.Add(3 * failoverLease)
				for c.follower(other).Follower != "active" {
					if time.Now().After(deadline) {
						b.Fatalf("%s: %s not active %s after %s: %+v", sig, other.name, 3*failoverLease, active.name, c.follower(other))
					}
					time.Sleep(5 * time.Millisecond) // the measuring grain
				}
				took = append(took, time.Since(t0))
				b.StopTimer()
				if st := active.wait(b); sig == syscall.SIGTERM && !st.Success() {
					b.Fatalf("%s after SIGTERM: %v, want exit status 0", active.name, st)
				}
				slot, _ := strconv.Atoi(strings.TrimPrefix(active.name, "calendar"))
				again := c.start("calendar", slot, append([]string{"LOG_LEVEL=error"}, calEnv...)...)
				servicetest.Poll(b, 20*time.Second, again.name+" to stand by", func() bool { return c.follower(again).Follower == "standby" })
				b.StartTimer()
			}
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1e3, "p50-ms")
		b.ReportMetric(float64(took[len(took)-1].Microseconds())/1e3, "max-ms")
		b.ReportMetric(float64(failoverLease.Milliseconds()), "lease-ms")
	}
	b.Run("sigkill", func(b *testing.B) { run(b, syscall.SIGKILL) })
	b.Run("sigterm", func(b *testing.B) { run(b, syscall.SIGTERM) })
}

// exited reports whether p's process has ended.
func exited(p *procService) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// BenchmarkArchiveThroughNginx measures archive page requests per second
// from nginx's cache beside the same requests to the contacts replica.
func BenchmarkArchiveThroughNginx(b *testing.B) {
	c := newCluster(b)
	con := c.start("contacts", 1, "LOG_LEVEL=error", "ARCHIVE_CACHE=public")
	c.haproxy()
	reachable(b, c.lb["contacts"])
	ngx := c.nginx()
	reachable(b, ngx)
	client := c.benchAuthClient(b)
	for i := range archiveContacts {
		if _, err := benchCreate(client, con.URL, fmt.Sprint("Archived ", i), fmt.Sprintf("archived%d@example.org", i), ""); err != nil {
			b.Fatal(err)
		}
	}
	const page = "/feed/archive/1"
	get := func(base string) (body []byte, cache string, err error) {
		req, _ := http.NewRequest("GET", base+page, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s%s: status %d", base, page, resp.StatusCode)
		}
		return body, resp.Header.Get("X-Cache"), err
	}
	want, _, err := get(con.URL)
	if err != nil {
		b.Fatal(err)
	}
	servicetest.Poll(b, 10*time.Second, "nginx to answer the archive page from its cache", func() bool {
		body, cache, err := get(ngx)
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(body, want) {
			b.Fatalf("nginx's %s (%d bytes) differs from contacts' (%d bytes)", page, len(body), len(want))
		}
		return cache == "HIT"
	})

	run := func(b *testing.B, base string, baseline float64) float64 {
		var (
			took time.Duration
			hits atomic.Int64
		)
		for b.Loop() {
			var (
				wg    sync.WaitGroup
				left  atomic.Int64
				mu    sync.Mutex
				first error
			)
			left.Store(archiveRequests)
			t0 := time.Now()
			for range archiveClients {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						body, cache, err := get(base)
						if err == nil && !bytes.Equal(body, want) {
							err = fmt.Errorf("GET %s%s: %d bytes, want the %d of the page", base, page, len(body), len(want))
						}
						if err != nil {
							mu.Lock()
							first = firstErr(first, err)
							mu.Unlock()
							return
						}
						if cache == "HIT" {
							hits.Add(1)
						}
					}
				})
			}
			wg.Wait()
			took += time.Since(t0)
			if first != nil {
				b.Fatal(first)
			}
		}
		rate := benchRate(b.N*archiveRequests, took)
		b.ReportMetric(rate, "req/s")
		if baseline > 0 {
			b.ReportMetric(rate/baseline, "ratio")
			b.ReportMetric(float64(hits.Load())/float64(b.N*archiveRequests), "hit-ratio")
		}
		return rate
	}
	var direct float64
	b.Run("direct", func(b *testing.B) { direct = run(b, con.URL, 0) })
	b.Run("nginx", func(b *testing.B) { run(b, ngx, direct) })
}
