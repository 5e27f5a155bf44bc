package e2e

// Every service as several processes on one PostgreSQL (a schema each),
// behind a real HAProxy, with nginx caching contacts' archive pages — the
// configurations in deploy/.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"syndic/shared/servicetest"
	"syndic/shared/smtptest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// needTool returns the path of program, skipping the test when it is not
// installed — failing it under CI=true, where .ci/run installs it.
func needTool(t testing.TB, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed and CI=true: .ci/run installs it", program)
		}
		t.Skipf("%s is not installed", program)
	}
	return path
}

// cluster is the three services as replicas on one PostgreSQL, behind
// HAProxy.
type cluster struct {
	t     testing.TB
	cr    secCreds
	smtp  *smtptest.Server
	dbs   map[string]string       // service → DATABASE_URL: a schema each
	ports map[string][]int        // service → the replicas' ports (calendar: four slots)
	lb    map[string]string       // service → HAProxy's URL for it
	feed  string                  // the feed calendar follows (nginx's, or HAProxy's)
	procs map[string]*procService // "calendar1" … by name and slot
	spare []int                   // free ports for a test's own proxies
}

// newCluster picks the ports and makes the schemas; nothing runs yet.
func newCluster(t testing.TB) *cluster {
	c := &cluster{t: t, cr: secNewCreds(), smtp: smtptest.Start(t), dbs: map[string]string{}, ports: map[string][]int{},
		lb: map[string]string{}, procs: map[string]*procService{}}
	ports := procFreePorts(t, 3*(4+1)+4) // four slots and a front each, and spares for a test's own proxies
	for i, s := range []string{"contacts", "calendar", "notifications"} {
		c.dbs[s] = sqldbtest.PostgresURL(t)
		c.ports[s] = ports[i*5 : i*5+4 : i*5+4]
		c.lb[s] = fmt.Sprintf("http://127.0.0.1:%d", ports[i*5+4])
	}
	c.spare = ports[15:]
	c.feed = c.lb["contacts"] + "/feed"
	return c
}

// env is the environment of replica slot (1-based) of service.
func (c *cluster) env(service string, slot int) func(port int) []string {
	return func(port int) []string {
		env := []string{"DATABASE_URL=" + c.dbs[service], "API_TOKEN=" + c.cr.Token, "UI_PASSWORD=" + c.cr.Password,
			"UI_USER=" + secUser, "LOG_LEVEL=info", "BASE_URL=" + c.lb[service]}
		switch service {
		case "calendar":
			env = append(env, "CONTACTS_FEED_URL="+c.feed, "NOTIFICATIONS_URL="+c.lb["notifications"],
				"FOLLOWER_ID=calendar"+strconv.Itoa(slot), "POLL_INTERVAL=100ms", "NOTIFY_RETRY_MIN=10ms",
				"NOTIFY_RETRY_MAX=200ms", "NOTIFY_SWEEP=200ms", "NOTIFY_MAX_ATTEMPTS=10000", "BREAKER_OPEN_FOR=200ms")
		case "notifications":
			env = append(env, "SMTP_URL="+c.smtp.URL, "MAIL_FROM=syndic <noreply@syndic.test>",
				"RETRY_MIN=10ms", "RETRY_MAX=200ms", "MAX_ATTEMPTS=10000", "BREAKER_OPEN_FOR=200ms")
		}
		return env
	}
}

// launch starts replica slot of service, its environment then extra
// (a later setting wins), and does not wait for it.
func (c *cluster) launch(service string, slot int, extra ...string) *procService {
	name := service + strconv.Itoa(slot)
	env := c.env(service, slot)
	p := procLaunch(c.t, service, c.ports[service][slot-1], func(port int) []string { return append(env(port), extra...) }, " "+name)
	p.name = name // the replica, not the binary
	c.procs[name] = p
	return p
}

// start starts replica slot of service (see launch) and waits until it
// is ready.
func (c *cluster) start(service string, slot int, extra ...string) *procService {
	c.t.Helper()
	p := c.launch(service, slot, extra...)
	if !p.waitReady(c.t) {
		c.t.Fatalf("%s%d exited before it was ready: %v\n%s", service, slot, p.state, procTail(p.stderr.String()))
	}
	return p
}

// restart starts again, in its slot, the replica p that was stopped.
func (c *cluster) restart(p *procService) *procService {
	c.t.Helper()
	for name, q := range c.procs {
		if q == p {
			slot, _ := strconv.Atoi(name[len(name)-1:])
			return c.start(strings.TrimRight(name, "0123456789"), slot)
		}
	}
	c.t.Fatalf("%s is no replica of the cluster", p.name)
	return nil
}

// haproxy starts HAProxy with deploy/haproxy.cfg in front of the slots;
// settings in extra (like CONTACTS_BIND=…) win over the cluster's.
func (c *cluster) haproxy(extra ...string) {
	c.t.Helper()
	path := needTool(c.t, "haproxy")
	cmd := exec.Command(path, "-db", "-f", filepath.Join("..", "deploy", "haproxy.cfg"))
	for s, ports := range c.ports {
		upper := strings.ToUpper(s)
		cmd.Env = append(cmd.Env, upper+"_BIND="+strings.TrimPrefix(c.lb[s], "http://"))
		for i, port := range ports {
			cmd.Env = append(cmd.Env, fmt.Sprintf("%s_%d=127.0.0.1:%d", upper, i+1, port))
		}
	}
	cmd.Env = append(cmd.Env, extra...)
	procRun(c.t, "haproxy", c.lb["contacts"], cmd, "")
}

// reachable waits until /readyz answers 200 at u (HAProxy or nginx has a
// server up behind it).
func reachable(t testing.TB, u string) {
	t.Helper()
	servicetest.Poll(t, 20*time.Second, u+" to be reachable", func() bool {
		resp, err := http.Get(u + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// nginx starts nginx with deploy/nginx.conf in front of contacts' HAProxy
// address, checking the cluster's credentials, and returns its URL.
func (c *cluster) nginx() string {
	c.t.Helper()
	path := needTool(c.t, "nginx")
	dir := c.t.TempDir()
	port := c.spare[0]
	c.spare = c.spare[1:]
	user := ""
	if os.Geteuid() == 0 { // workers would run as nobody, who cannot write dir
		user = "user root;"
	}
	body, err := os.ReadFile(filepath.Join("..", "deploy", "nginx.conf"))
	if err != nil {
		c.t.Fatal(err)
	}
	conf := strings.NewReplacer("@DIR@", dir, "@LISTEN@", fmt.Sprintf("127.0.0.1:%d", port), "@UPSTREAM@", strings.TrimPrefix(c.lb["contacts"], "http://"),
		"@USER@", user, "@CHECK@", `if ($credentials_ok = 0) { add_header WWW-Authenticate 'Basic realm="syndic"' always; return 401; }`,
		"@TOKEN@", c.cr.Token, "@BASIC@", base64.StdEncoding.EncodeToString([]byte(secUser+":"+c.cr.Password))).Replace(string(body))
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		c.t.Fatal(err)
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	procRun(c.t, "nginx", u, exec.Command(path, "-p", dir, "-c", file), "")
	servicetest.Poll(c.t, 20*time.Second, "nginx to answer", func() bool { // anything, 502 included
		resp, err := http.Get(u + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return u
}

// mails counts notifications' notifications by status ("all" too), from
// its database: its API lists at most 1,000.
func (c *cluster) mails(db *sqldb.DB) map[string]int {
	c.t.Helper()
	rows, err := db.Query(context.Background(), `SELECT status, count(*) FROM notifications GROUP BY status`)
	if err != nil {
		c.t.Fatal(err)
	}
	defer rows.Close()
	n := map[string]int{}
	for rows.Next() {
		var status string
		var count int
		if err := rows.Scan(&status, &count); err != nil {
			c.t.Fatal(err)
		}
		n[status] += count
		n["all"] += count
	}
	return n
}

// followerStatus is what a calendar replica says of its follower.
type followerStatus struct {
	Follower      string `json:"follower"`
	LeaseHolder   string `json:"lease_holder"`
	CheckpointSeq int64  `json:"checkpoint_seq"`
	HeadSeq       int64  `json:"head_seq"`
	LastError     string `json:"last_error"`
	FailingSeq    int64  `json:"failing_seq"`
}

// follower asks replica p for its follower status ("" when it does not answer).
func (c *cluster) follower(p *procService) followerStatus {
	var st followerStatus
	req, _ := http.NewRequest("GET", p.URL+"/api/sync", nil)
	c.cr.bearer(req)
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// active waits until exactly one of the replicas says it follows the feed
// and returns it.
func (c *cluster) active(what string, replicas ...*procService) *procService {
	c.t.Helper()
	var found *procService
	servicetest.Poll(c.t, 20*time.Second, what, func() bool {
		found = nil
		n := 0
		for _, p := range replicas {
			if c.follower(p).Follower == "active" {
				found, n = p, n+1
			}
		}
		return n == 1
	})
	return found
}

// TestReplicasStartTogether: three replicas of every service started at
// the same moment on empty PostgreSQL schemas all come up (every schema
// change is made under one lock), and exactly one calendar follows.
func TestReplicasStartTogether(t *testing.T) {
	c := newCluster(t)
	var all []*procService
	for _, s := range []string{"contacts", "calendar", "notifications"} {
		for slot := 1; slot <= 3; slot++ {
			all = append(all, c.launch(s, slot))
		}
	}
	for _, p := range all {
		if !p.waitReady(t) {
			t.Fatalf("%s exited at start: %v\n%s", p.name, p.state, procTail(p.stderr.String()))
		}
	}
	c.active("one calendar replica to follow", c.procs["calendar1"], c.procs["calendar2"], c.procs["calendar3"])
}

// TestReplicasBehindLoadBalancer: two replicas of each service on one
// PostgreSQL behind HAProxy, calendar following contacts through nginx.
// Contact changes and appointments arrive through the load balancer while,
// in turn, the active calendar follower, a contacts replica holding
// long-polls and a notifications replica are SIGKILLed and restarted, and
// two new calendar replicas overlap the old ones for 30 s as in a rolling
// deploy. Afterwards calendar's copy equals contacts, the checkpoint —
// sampled every 20 ms — never went back nor was written under an older
// lease, and every participant has exactly one invitation per appointment.
func TestReplicasBehindLoadBalancer(t *testing.T) {
	c := newCluster(t)
	c.haproxy()
	c.feed = c.nginx() + "/feed"
	for _, s := range []string{"notifications", "contacts", "calendar"} {
		c.start(s, 1)
		c.start(s, 2)
		reachable(t, c.lb[s])
	}
	capi, kapi, napi := secAPI(t, c.lb["contacts"], c.cr.bearer), secAPI(t, c.lb["calendar"], c.cr.bearer), secAPI(t, c.lb["notifications"], c.cr.bearer)
	for _, a := range []*api{capi, kapi, napi} {
		a.HTTP.Transport = &http.Transport{DisableKeepAlives: true}
	}

	// The sampler: the checkpoint never goes back, and is never written
	// under a lease older than one it was written under before.
	cdb := servicetest.OpenDB(t, c.dbs["calendar"])
	var samples, bad atomic.Int64
	var firstBad atomic.Value
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		every := time.NewTicker(20 * time.Millisecond)
		defer every.Stop()
		var last, lastToken int64
		for {
			select {
			case <-every.C:
			case <-sampling.Done():
				return
			}
			var seq, token int64
			if cdb.QueryRow(sampling, `SELECT seq, lease_token FROM feed_checkpoints WHERE name = 'contacts'`).Scan(&seq, &token) != nil {
				continue // none yet
			}
			samples.Add(1)
			if (seq < last || token < lastToken) && bad.Add(1) == 1 {
				firstBad.Store(fmt.Sprintf("seq %d under token %d after seq %d under token %d", seq, token, last, lastToken))
			}
			last, lastToken = max(last, seq), max(lastToken, token)
		}
	}()

	g := &traffic{t: t, con: c.lb["contacts"], cal: c.lb["calendar"], abort: make(chan struct{}),
		c:   &http.Client{Timeout: 20 * time.Second, Transport: secAuthorizing{c.cr.bearer, &http.Transport{DisableKeepAlives: true}}},
		rng: rand.New(rand.NewPCG(9, 9)), invites: map[string][]string{}}
	for range 3 {
		g.createContact()
	}
	stop := g.start(2, 10000)
	// More contact changes beside the appointments' traffic.
	var changes atomic.Int64
	churnDone := make(chan struct{})
	churning, stopChurn := context.WithCancel(context.Background())
	go func() {
		defer close(churnDone)
		for i := 0; churning.Err() == nil && i < 2000; i++ {
			if i%4 == 3 {
				g.updateContact()
			} else {
				g.createContact()
			}
			changes.Add(1)
		}
	}()
	t.Cleanup(func() { stopChurn(); <-churnDone })
	// And appointments moved to another room: each participant is told once.
	var moves atomic.Int64
	moverDone := make(chan struct{})
	go func() {
		defer close(moverDone)
		for churning.Err() == nil && moves.Load() < 200 {
			if g.moveAppointment() {
				moves.Add(1)
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { stopChurn(); <-moverDone })
	cal := []*procService{c.procs["calendar1"], c.procs["calendar2"]}
	first := c.active("one calendar replica to follow", cal...)

	// 1. The active follower is SIGKILLed: the other takes over once its
	// lease runs out.
	g.flowing(10)
	other := cal[0]
	if other == first {
		other = cal[1]
	}
	first.cmd.Process.Kill()
	<-first.done
	killed := time.Now()
	servicetest.Poll(t, 10*time.Second, "the standby calendar to take over", func() bool { return c.follower(other).Follower == "active" })
	t.Logf("calendar follower SIGKILLed: the standby took over in %s", time.Since(killed).Round(time.Millisecond))
	c.restart(first)

	// 2. A contacts replica holding long-polls is SIGKILLed.
	g.flowing(10)
	var holder *procService
	servicetest.Poll(t, 20*time.Second, "a contacts replica holding a long-poll", func() bool {
		for _, p := range []*procService{c.procs["contacts1"], c.procs["contacts2"]} {
			if n, ok := procMetric(t, p.URL, c.cr.bearer, "syndic_feed_longpolls_waiting"); ok && n > 0 {
				holder = p
				return true
			}
		}
		return false
	})
	holder.cmd.Process.Kill()
	<-holder.done
	g.flowing(5)
	c.restart(holder)

	// 3. A notifications replica is SIGKILLed mid-delivery. The mail server
	// refuses first, and the kill waits until every mail it accepted is
	// marked sent: a crash between the server's acceptance and the mark is
	// the one window in which a mail goes out twice (its Message-ID lets a
	// mail system spot it; this test wants exactly one).
	g.flowing(10)
	c.smtp.Fail(451, "try again later")
	ndb := servicetest.OpenDB(t, c.dbs["notifications"])
	// Every mail the server accepted — one in its DATA phase when it began
	// refusing included — is marked sent, twice in a row.
	settled := 0
	servicetest.Poll(t, 20*time.Second, "every accepted mail marked sent", func() bool {
		if c.mails(ndb)["sent"] == len(c.smtp.Mails()) {
			settled++
		} else {
			settled = 0
		}
		time.Sleep(50 * time.Millisecond)
		return settled >= 2
	})
	c.procs["notifications1"].cmd.Process.Kill()
	<-c.procs["notifications1"].done
	g.flowing(5)
	c.restart(c.procs["notifications1"])
	c.smtp.Fail(0, "")

	// 4. A rolling deploy: two new calendar replicas start beside the two
	// running, all four overlap for 30 s, then the old ones get SIGTERM.
	c.start("calendar", 3)
	c.start("calendar", 4)
	overlap := time.Now()
	for time.Since(overlap) < 30*time.Second {
		g.flowing(5)
	}
	for _, name := range []string{"calendar1", "calendar2"} {
		c.procs[name].terminate(t)
	}
	handover := time.Now()
	c.active("a new calendar replica to follow", c.procs["calendar3"], c.procs["calendar4"])
	t.Logf("old calendar replicas stopped with SIGTERM: a new one followed %s later", time.Since(handover).Round(time.Millisecond))

	// Enough happened: at least 1,000 contact changes and 100 appointments.
	servicetest.Poll(t, 60*time.Second, "1,000 contact changes and 100 appointments", func() bool {
		g.mu.Lock()
		n := len(g.invites)
		g.mu.Unlock()
		return changes.Load()+g.rounds.Load() >= 1000 && n >= 100 && moves.Load() >= 50
	})
	stopChurn()
	<-churnDone
	<-moverDone
	stop()
	if t.Failed() {
		t.FailNow()
	}
	g.mu.Lock()
	t.Logf("%d contact changes, %d appointments (%d of them moved) through HAProxy", changes.Load()+g.rounds.Load()+g.rounds.Load()/3, len(g.invites), moves.Load())
	g.mu.Unlock()

	// Everything converges.
	gone := map[int64]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for diff := copyDiff(capi, kapi, gone); diff != ""; diff = copyDiff(capi, kapi, gone) {
		if time.Now().After(deadline) {
			t.Fatalf("calendar's copy after 60 s: %s; followers %+v, %+v", diff, c.follower(c.procs["calendar3"]), c.follower(c.procs["calendar4"]))
		}
		time.Sleep(50 * time.Millisecond)
	}
	sameState(t, capi, kapi, map[int64]bool{})
	want := map[string]map[string]int{"Invitation": g.wantInvites(), "Changed": g.wantChanges()}
	total := len(want["Invitation"]) + len(want["Changed"])
	deadline = time.Now().Add(60 * time.Second)
	for st := c.mails(ndb); st["all"] < total || st["sent"] != st["all"]; st = c.mails(ndb) {
		if time.Now().After(deadline) {
			t.Fatalf("notifications after 60 s: %v, smtp %d mails; want %d sent", st, len(c.smtp.Mails()), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkOneMailEach(t, c.smtp.Mails(), want) // names any mail too many or missing

	stopSampling()
	<-sampled
	if bad.Load() > 0 {
		t.Fatalf("%d of %d checkpoint samples went back: first %v", bad.Load(), samples.Load(), firstBad.Load())
	}
	var token int64
	if err := cdb.QueryRow(context.Background(), `SELECT lease_token FROM feed_checkpoints WHERE name = 'contacts'`).Scan(&token); err != nil || token < 2 {
		t.Fatalf("last checkpoint under lease token %d (%v): want the lease to have changed hands", token, err)
	}
	t.Logf("%d checkpoint samples, none going back; the lease changed hands up to token %d", samples.Load(), token)
}

// TestNoCacheAnswersWithoutCredentials: nginx in front of contacts, warmed
// by an authorised client, answers archive pages and the feed with 401 to
// requests without credentials or with wrong ones, every time — with
// contacts' default (archives private: never cached) and with
// ARCHIVE_CACHE=public (cached, nginx checking the credentials itself).
func TestNoCacheAnswersWithoutCredentials(t *testing.T) {
	for _, archiveCache := range []string{"", "public"} {
		t.Run("ARCHIVE_CACHE="+archiveCache, func(t *testing.T) {
			c := newCluster(t)
			c.haproxy()
			// Both replicas, as deployed: no slot HAProxy has yet to find down.
			for slot := 1; slot <= 2; slot++ {
				c.start("contacts", slot, "FEED_PAGE_SIZE=5", "ARCHIVE_CACHE="+archiveCache)
			}
			reachable(t, c.lb["contacts"])
			ngx := c.nginx()
			capi := secAPI(t, c.lb["contacts"], c.cr.bearer)
			for i := range 12 {
				capi.Must(201, "POST", "/api/contacts", map[string]string{"name": fmt.Sprint("P", i), "email": fmt.Sprintf("p%d@example.org", i)}, nil)
			}
			client := &http.Client{Timeout: 10 * time.Second}
			get := func(path string, auth func(*http.Request)) *http.Response {
				req, _ := http.NewRequest("GET", ngx+path, nil)
				if auth != nil {
					auth(req)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			basic := func(r *http.Request) { r.SetBasicAuth(secUser, c.cr.Password) }
			for range 3 { // warm the cache, with both kinds of credentials
				for _, auth := range []func(*http.Request){c.cr.bearer, basic} {
					if resp := get("/feed/archive/1", auth); resp.StatusCode != 200 {
						t.Fatalf("authorised archive: %d", resp.StatusCode)
					}
				}
			}
			cached := get("/feed/archive/1", c.cr.bearer).Header.Get("X-Cache")
			if want := map[string]string{"": "MISS", "public": "HIT"}[archiveCache]; cached != want {
				t.Errorf("X-Cache = %q, want %q", cached, want)
			}
			wrong := []func(*http.Request){
				nil,
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer not-"+c.cr.Token) },
				func(r *http.Request) { r.SetBasicAuth(secUser, "wrong") },
				func(r *http.Request) { r.SetBasicAuth("someone", c.cr.Password) },
			}
			for i, auth := range wrong {
				for _, path := range []string{"/feed/archive/1", "/feed/archive/2", "/feed"} {
					for range 3 {
						if resp := get(path, auth); resp.StatusCode != http.StatusUnauthorized {
							t.Errorf("credentials #%d, %s: status %d, want 401", i, path, resp.StatusCode)
						}
					}
				}
			}
		})
	}
}
