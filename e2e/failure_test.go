package e2e

// Failure is a feature: services killed and restarted mid-traffic, slow and
// refusing peers, databases that cannot take writes, and a SIGTERM (the
// context Run gets, cancelled) while requests are in flight.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/notifications"
	"syndic/shared/feed"
	"syndic/shared/smtptest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// TestKillAndRestartMidTraffic stops and restarts contacts, calendar and
// notifications in turn, each on its address and database, while two
// clients keep changing contacts and making appointments. During each outage the
// other services keep answering; at the end calendar's copy equals contacts
// and every participant got exactly one invitation per appointment.
func TestKillAndRestartMidTraffic(t *testing.T) {
	smtp := smtptest.Start(t)
	conDB, calDB, notifDB := sqldbtest.SQLiteURL(t), sqldbtest.SQLiteURL(t), sqldbtest.SQLiteURL(t)
	notifCfg := notifications.Config{SMTPURL: smtp.URL, DatabaseURL: notifDB}
	notif := startNotifications(t, "", notifCfg)
	conCfg := contacts.Config{DatabaseURL: conDB}
	con := startContacts(t, "", conCfg)
	calCfg := calendar.Config{DatabaseURL: calDB, NotificationsURL: notif.URL, NotifyMaxAttempts: 10000,
		Follow: func(fc *feed.FollowerConfig) {
			fc.MinBackoff, fc.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
		}}
	cal := startCalendar(t, "", con.URL+"/feed", calCfg)
	capi, kapi := freshAPI(t, con.URL), freshAPI(t, cal.URL)

	g := &traffic{t: t, con: con.URL, cal: cal.URL, c: freshClient(), abort: make(chan struct{}),
		rng: rand.New(rand.NewPCG(5, 5)), invites: map[string][]string{}}
	for range 3 {
		g.createContact()
	}
	waitContacts(t, kapi, 3)

	const clients, maxRounds = 2, 150 // each
	stop := g.start(clients, maxRounds)
	flowing := g.flowing
	began := time.Now()

	// contacts down: calendar answers reads and writes.
	flowing(20)
	refused := g.refusedCon.Load()
	con.Stop()
	kapi.Must(200, "GET", "/api/appointments", nil, nil)
	kapi.Must(200, "GET", "/api/sync", nil, nil)
	for i := range 3 {
		g.createAppointment(fmt.Sprint("While contacts is down ", i), true)
	}
	pollUntil(t, 10*time.Second, "the clients to meet contacts down", func() bool { return g.refusedCon.Load() >= refused+10 })
	con = startContacts(t, con.Addr, conCfg)
	t.Logf("contacts was down; the clients were refused %d times", g.refusedCon.Load()-refused)

	// calendar down: contacts answers reads and writes.
	flowing(20)
	refused = g.refusedCal.Load()
	cal.Stop()
	capi.Must(200, "GET", "/api/contacts", nil, nil)
	for range 3 {
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Added while calendar is down", "email": fmt.Sprintf("p%d@example.org", g.next.Add(1))}, nil)
	}
	pollUntil(t, 10*time.Second, "the clients to meet calendar down", func() bool { return g.refusedCal.Load() >= refused+10 })
	cal = startCalendar(t, cal.Addr, con.URL+"/feed", calCfg)
	t.Logf("calendar was down; the clients were refused %d times", g.refusedCal.Load()-refused)

	// notifications down: calendar still takes appointments, and the
	// clients keep making them.
	flowing(20)
	const opened = `syndic_breaker_opened_total{peer="notifications"}`
	before := metrics(t, cal.URL)[opened]
	notif.Stop()
	for i := range 3 {
		g.createAppointment(fmt.Sprint("While notifications is down ", i), true)
	}
	kapi.Must(200, "GET", "/api/appointments", nil, nil)
	pollUntil(t, 10*time.Second, "calendar's breaker to open", func() bool { return metrics(t, cal.URL)[opened] > before })
	flowing(10)
	t.Logf("notifications was down; %v invitations pending in calendar", metrics(t, cal.URL)["syndic_notify_pending"])
	notif = startNotifications(t, notif.Addr, notifCfg)

	flowing(10)
	stop()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d rounds of traffic by %d clients in %s", g.rounds.Load(), clients, time.Since(began).Round(time.Millisecond))

	// Everything converges.
	h := head(t, con.URL)
	waitSync(t, kapi, 30*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == h && s.Lag == 0 })
	sameState(t, capi, kapi, map[int64]bool{})

	want := g.wantInvites()
	mails := waitDelivered(t, cal, notif, smtp, len(want), 60*time.Second)
	checkOneInvitationEach(t, mails, want)
	var failed list[notification]
	freshAPI(t, notif.URL).Must(200, "GET", "/api/notifications?status=failed&limit=1000", nil, &failed)
	if len(failed.Items) != 0 {
		t.Errorf("notifications has %d failed: %+v", len(failed.Items), failed.Items)
	}
	t.Logf("%d appointments, %d invitations, each delivered once", len(g.invites), len(mails))
}

// slowProxy serves a reverse proxy to target that holds every answer for
// delay, and counts the requests it passed on.
func slowProxy(t *testing.T, target string, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.SetXForwarded() // the feed's links point at the proxy
		},
		Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			n.Add(1)
			resp, err := http.DefaultTransport.RoundTrip(r)
			select { // the slowness injected, not a synchronisation
			case <-time.After(delay):
			case <-r.Context().Done():
			}
			return resp, err
		}),
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0), // a request cancelled by calendar's stop is no news
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestSlowAndRefusingPeers: calendar follows contacts through a proxy that
// answers every request 300 ms late, and its notifications peer accepts
// connections and drops them. calendar still converges, keeps answering,
// shows the pending invitations with their last errors, and once the real
// notifications comes up on that address each invitation is mailed once.
func TestSlowAndRefusingPeers(t *testing.T) {
	smtp := smtptest.Start(t)
	con := startContacts(t, "", contacts.Config{})
	capi := freshAPI(t, con.URL)
	ids := churn(t, capi, 70, 11) // more than a page: calendar walks back through the proxy
	proxy, proxied := slowProxy(t, con.URL, 300*time.Millisecond)
	down := listenDown(t)
	cal := startCalendar(t, "", proxy.URL+"/feed", calendar.Config{NotificationsURL: "http://" + down.Addr(), NotifyMaxAttempts: 10000})
	kapi := freshAPI(t, cal.URL)

	for id, alive := range churn(t, capi, 20, 12) { // while calendar follows
		ids[id] = alive
	}
	h := head(t, con.URL)
	waitSync(t, kapi, 30*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == h && s.Lag == 0 })
	sameState(t, capi, kapi, ids)
	t.Logf("calendar reached seq %d through the slow proxy in %d requests", h, proxied.Load())

	var local list[contact]
	kapi.Must(200, "GET", "/api/contacts", nil, &local)
	var who []int64
	addr := map[int64]string{}
	for _, c := range local.Items {
		if !c.Deleted && len(who) < 2 {
			who = append(who, c.ID)
			addr[c.ID] = c.Email
		}
	}
	var apps []calendar.Appointment
	for i := range 3 {
		var a calendar.Appointment
		start := time.Date(2027, 9, 1+i, 9, 0, 0, 0, time.UTC)
		kapi.Must(201, "POST", "/api/appointments", map[string]any{"title": fmt.Sprint("Refused ", i),
			"starts_at": start.Format(time.RFC3339), "ends_at": start.Add(time.Hour).Format(time.RFC3339), "participants": who}, &a)
		apps = append(apps, a)
	}
	for _, a := range apps {
		path := fmt.Sprintf("/appointments/%d", a.ID)
		var page string
		pollUntil(t, 20*time.Second, path+" to show each pending invitation's last error", func() bool {
			status, _, body, err := send(kapi.HTTP, "GET", cal.URL+path, nil)
			if err != nil || status != http.StatusOK {
				t.Fatalf("GET %s: %d %v", path, status, err)
			}
			page = string(body)
			return strings.Count(page, `class="status-pending"`) == len(who) && strings.Count(page, `class="error">notifications: `) == len(who)
		})
		if strings.Contains(page, "status-failed") {
			t.Errorf("%s shows a failed invitation while notifications is merely down", path)
		}
	}
	kapi.Must(200, "GET", "/api/appointments", nil, nil)
	t.Logf("%d connections reached the refusing notifications", down.calls.Load())

	down.Close()
	notif := startNotifications(t, down.Addr(), notifications.Config{SMTPURL: smtp.URL})
	mails := waitDelivered(t, cal, notif, smtp, len(apps)*len(who), 30*time.Second)
	got := map[string]int{}
	for _, m := range mails {
		inv := parseInvite(t, m)
		title, _, _ := strings.Cut(strings.TrimPrefix(inv.Subject, "Invitation: "), " — ")
		got[title+" to "+inv.To]++
	}
	for _, a := range apps {
		for _, id := range who {
			if k := a.Title + " to " + addr[id]; got[k] != 1 {
				t.Errorf("%s: %d invitations, want 1 (all: %v)", k, got[k], got)
			}
		}
	}
}

// pageCount reads the size in pages of the SQLite database at databaseURL.
func pageCount(t *testing.T, databaseURL string) int {
	t.Helper()
	db, err := sqldb.Open(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(context.Background(), `PRAGMA page_count`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// unwritable is a service under test with a database that cannot take
// writes: how to start it, one write (i makes it unique), and what to read.
type unwritable struct {
	name   string
	start  func(t *testing.T, databaseURL string) *service
	write  func(c *http.Client, base string, i int) (int, string, []byte, error)
	reads  []string
	status int // of a write that succeeds
}

func unwritables(smtp *smtptest.Server) []unwritable {
	pad := strings.Repeat("x", 150)
	return []unwritable{
		{
			name: "contacts",
			start: func(t *testing.T, u string) *service {
				return startContacts(t, "", contacts.Config{DatabaseURL: u})
			},
			write: func(c *http.Client, base string, i int) (int, string, []byte, error) {
				return send(c, "POST", base+"/api/contacts", map[string]string{"name": fmt.Sprint("Person ", i, " ", pad), "email": fmt.Sprintf("p%d@example.org", i)})
			},
			reads:  []string{"/api/contacts", "/feed", "/"},
			status: http.StatusCreated,
		},
		{
			name: "calendar",
			start: func(t *testing.T, u string) *service {
				return startCalendar(t, "", "http://127.0.0.1:1/feed", calendar.Config{DatabaseURL: u})
			},
			write: func(c *http.Client, base string, i int) (int, string, []byte, error) {
				start := time.Date(2027, 1, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
				return send(c, "POST", base+"/api/appointments", map[string]any{"title": fmt.Sprint("Meeting ", i, " ", pad), "location": pad,
					"starts_at": start.Format(time.RFC3339), "ends_at": start.Add(time.Hour).Format(time.RFC3339), "participants": []int64{}})
			},
			reads:  []string{"/api/appointments", "/api/contacts", "/api/sync", "/"},
			status: http.StatusCreated,
		},
		{
			name: "notifications",
			start: func(t *testing.T, u string) *service {
				return startNotifications(t, "", notifications.Config{SMTPURL: smtp.URL, DatabaseURL: u})
			},
			write: func(c *http.Client, base string, i int) (int, string, []byte, error) {
				return send(c, "POST", base+"/api/notifications", map[string]string{"to": "ada@example.org", "subject": fmt.Sprint("Note ", i), "text": strings.Repeat(pad, 4)},
					"Idempotency-Key", fmt.Sprint("unwritable-", i))
			},
			reads:  []string{"/api/notifications", "/"},
			status: http.StatusAccepted,
		},
	}
}

// writable starts the service on databaseURL, fails t unless a write
// works there, and stops it: the schema is in place.
func (s unwritable) writable(t *testing.T, c *http.Client, databaseURL string) {
	t.Helper()
	svc := s.start(t, databaseURL)
	if status, _, body, err := s.write(c, svc.URL, 0); err != nil || status != s.status {
		t.Fatalf("write on a writable database: %d %v %s", status, err, body)
	}
	svc.Stop()
}

// checkRefused fails unless a write was answered 503 with a JSON error
// that names the cause.
func checkRefused(t *testing.T, status int, ctype string, body []byte, err error, cause string) {
	t.Helper()
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	var e struct{ Error string }
	if status != http.StatusServiceUnavailable || !strings.HasPrefix(ctype, "application/json") || json.Unmarshal(body, &e) != nil {
		t.Fatalf("write: %d %s %s, want 503 with a JSON error", status, ctype, body)
	}
	if !strings.Contains(e.Error, cause) {
		t.Errorf("write: error %q does not say %q", e.Error, cause)
	}
}

// checkServing fails unless the service answers its reads and /healthz.
func checkServing(t *testing.T, c *http.Client, base string, reads []string) {
	t.Helper()
	for _, p := range append([]string{"/healthz", "/readyz"}, reads...) {
		status, _, body, err := send(c, "GET", base+p, nil)
		if err != nil || status != http.StatusOK {
			t.Errorf("GET %s: %d %v %.200s, want 200", p, status, err, body)
		}
	}
}

// TestUnwritableDatabase starts each service on a database that takes no
// writes — read-only, or full — and checks that writes are answered 503
// with the reason while reads, health and the service itself carry on.
func TestUnwritableDatabase(t *testing.T) {
	smtp := smtptest.Start(t)
	c := freshClient()
	for _, s := range unwritables(smtp) {
		t.Run(s.name+"/read-only", func(t *testing.T) {
			u := "sqlite:" + filepath.Join(t.TempDir(), s.name+".db")
			s.writable(t, c, u) // creates the schema

			svc := s.start(t, u+"?_pragma=query_only(1)")
			status, ctype, body, err := s.write(c, svc.URL, 1)
			checkRefused(t, status, ctype, body, err, "read-only")
			checkServing(t, c, svc.URL, s.reads)
			if s.name == "contacts" { // the HTML form says so in a page
				form := url.Values{"name": {"Ada Lovelace"}, "email": {"ada@example.org"}}
				req, _ := http.NewRequest("POST", svc.URL+"/contacts", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Origin", svc.URL)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				page, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
					!strings.Contains(string(page), "read-only") || !strings.Contains(string(page), "</html>") {
					t.Errorf("POST /contacts (form): %d %s, want a 503 page saying read-only:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
				}
			}
			status, ctype, body, err = s.write(c, svc.URL, 2) // still refused, still running
			checkRefused(t, status, ctype, body, err, "read-only")
			checkServing(t, c, svc.URL, s.reads[:1])
			svc.Stop() // Run must return nil
		})
		t.Run(s.name+"/full", func(t *testing.T) {
			u := "sqlite:" + filepath.Join(t.TempDir(), s.name+".db")
			s.writable(t, c, u)
			pages := pageCount(t, u)

			svc := s.start(t, fmt.Sprintf("%s?_pragma=max_page_count(%d)", u, pages+6))
			var written int
			for i := 1; ; i++ {
				status, ctype, body, err := s.write(c, svc.URL, i)
				if err == nil && status == s.status {
					written++
					if i < 500 { // a few dozen fill the pages left
						continue
					}
				}
				checkRefused(t, status, ctype, body, err, "full")
				break
			}
			t.Logf("%d pages at start, %d writes before the limit", pages, written)
			checkServing(t, c, svc.URL, s.reads)
			status, ctype, body, err := s.write(c, svc.URL, 5000)
			checkRefused(t, status, ctype, body, err, "full")
			checkServing(t, c, svc.URL, s.reads[:1])
			svc.Stop()
		})
	}
	t.Run("contacts/postgres-read-only", func(t *testing.T) {
		s := unwritables(smtp)[0]
		u := sqldbtest.PostgresURL(t)
		s.writable(t, c, u)
		svc := s.start(t, u+"&default_transaction_read_only=on")
		status, ctype, body, err := s.write(c, svc.URL, 1)
		checkRefused(t, status, ctype, body, err, "read-only")
		checkServing(t, c, svc.URL, s.reads)
		svc.Stop()
	})
}

// TestGracefulShutdownCompletesInFlight stops contacts (as SIGTERM does)
// while 25 long-polls wait on /feed and 25 POSTs are being read: each gets
// a whole answer, and each contact answered 201 is there after a restart,
// in the API and in the feed.
func TestGracefulShutdownCompletesInFlight(t *testing.T) {
	const polls, posts = 25, 25
	db := sqldbtest.SQLiteURL(t)
	cfg := contacts.Config{DatabaseURL: db, FeedPageSize: 1000}
	con := startContacts(t, "", cfg)
	capi := freshAPI(t, con.URL)
	createN(t, capi, 0, 3)
	resp, err := http.Get(con.URL + "/feed")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("/feed has no ETag")
	}

	type answer struct {
		what   string
		status int
		body   []byte
		err    error
	}
	answers := make(chan answer, polls+posts)
	for i := range polls {
		go func() {
			status, _, body, err := send(freshClient(), "GET", con.URL+"/feed", nil, "If-None-Match", etag, "Prefer", "wait=5")
			answers <- answer{fmt.Sprint("long-poll ", i), status, body, err}
		}()
	}
	// Each POST says Expect: 100-continue and holds its body back: the
	// server's "100 Continue" proves its handler is reading the request.
	var reading sync.WaitGroup
	reading.Add(posts)
	release := make(chan struct{}) // closed once shutdown has begun
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // on failure too: no request is left hanging
	for i := range posts {
		pr, pw := io.Pipe()
		go func() {
			js, _ := json.Marshal(map[string]string{"name": fmt.Sprint("In flight ", i), "email": fmt.Sprintf("inflight%d@example.org", i)})
			trace := &httptrace.ClientTrace{Got100Continue: reading.Done}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", con.URL+"/api/contacts", pr)
			req.ContentLength = int64(len(js))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Expect", "100-continue")
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: 30 * time.Second}}
			go func() {
				<-release
				pw.Write(js)
				pw.Close()
			}()
			var a answer
			a.what = fmt.Sprint("POST ", i)
			resp, err := c.Do(req)
			if err == nil {
				a.status = resp.StatusCode
				a.body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			a.err = err
			answers <- a
		}()
	}
	pollUntil(t, 10*time.Second, "the long-polls to wait", func() bool {
		return metrics(t, con.URL)["syndic_feed_longpolls_waiting"] == polls
	})
	readingDone := make(chan struct{})
	go func() { reading.Wait(); close(readingDone) }()
	select {
	case <-readingDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the POSTs were not all being read within 10 s")
	}

	stopped := make(chan struct{})
	go func() { con.Stop(); close(stopped) }()
	pollUntil(t, 10*time.Second, "shutdown to close the listener", func() bool {
		c, err := net.Dial("tcp", con.Addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	free()

	created := map[int64]string{}
	for range polls + posts {
		a := <-answers
		switch {
		case a.err != nil:
			t.Errorf("%s: %v: an in-flight request without a whole answer", a.what, a.err)
		case strings.HasPrefix(a.what, "long-poll"):
			if a.status != http.StatusNotModified && a.status != http.StatusOK {
				t.Errorf("%s: status %d, want 304 or 200", a.what, a.status)
			}
		default:
			var c contact
			if a.status != http.StatusCreated || json.Unmarshal(a.body, &c) != nil {
				t.Errorf("%s: status %d %s, want 201 with the contact", a.what, a.status, a.body)
				continue
			}
			created[c.ID] = c.Name
		}
	}
	<-stopped

	con = startContacts(t, "", cfg)
	var l list[contact]
	freshAPI(t, con.URL).Must(200, "GET", "/api/contacts?limit=1000", nil, &l)
	have := map[int64]string{}
	for _, c := range l.Items {
		have[c.ID] = c.Name
	}
	resp, err = http.Get(con.URL + "/feed")
	if err != nil {
		t.Fatal(err)
	}
	p, err := feed.Parse(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	inFeed := map[int64]bool{}
	for _, e := range p.Events {
		var c contact
		if json.Unmarshal(e.Data, &c) == nil && e.Type == "contact.created" {
			inFeed[c.ID] = true
		}
	}
	for id, name := range created {
		if have[id] != name {
			t.Errorf("contact %d %q answered 201 before shutdown, after restart: %q", id, name, have[id])
		}
		if !inFeed[id] {
			t.Errorf("contact %d %q answered 201 before shutdown is not in the feed after restart", id, name)
		}
	}
	t.Logf("%d long-polls and %d POSTs in flight at shutdown; all answered, %d contacts kept", polls, posts, len(created))
}
