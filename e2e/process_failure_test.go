package e2e

// The built binaries crashed (SIGKILL, no graceful shutdown) and restarted
// mid-traffic, and their access rules and logs as separate processes.
// Helpers here start with pk.

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"syndic/shared/smtptest"
	"syndic/shared/sqldb"
)

// pkRestart starts name again on old's port (and so with old's address),
// with the environment env(port), after old has exited; it waits for
// /readyz. The port may still be held for a moment: it is tried again
// then.
func pkRestart(t *testing.T, old *procService, env func(port int) []string) *procService {
	t.Helper()
	old.kill()
	u, err := url.Parse(old.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("%s: no port: %v", old.URL, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := procLaunch(t, old.name, port, env, " (restarted)")
		if p.waitReady(t) {
			return p
		}
		if strings.Contains(p.stderr.String(), "address already in use") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // a client's pause before it tries the port again
			continue
		}
		t.Fatalf("restarted %s exited before it was ready: %v\nstderr: %s\nstdout: %s", p.name, p.state, p.stderr, procTail(p.stdout.String()))
	}
}

// pkNotifications lists notifications' notifications by status.
func pkNotifications(napi *api) map[string]int {
	var l list[notification]
	napi.Must(200, "GET", "/api/notifications?limit=1000", nil, &l)
	status := map[string]int{"all": len(l.Items)}
	for _, n := range l.Items {
		status[n.Status]++
	}
	return status
}

// TestProcessesKilledMidTraffic: the three binaries, each killed in turn
// with SIGKILL — a crash, no graceful shutdown — and restarted after a
// short outage on its port and database, while two clients keep changing
// contacts and making appointments, retrying what a service that was down
// did not take. Before notifications is killed the mail server refuses
// (451) until it is back, so that no mail can be accepted by SMTP and not
// yet marked sent at the kill: the one window in which a crash resends a
// mail. At the end calendar's copy equals contacts, every participant got
// exactly one invitation per appointment and nothing failed.
func TestProcessesKilledMidTraffic(t *testing.T) {
	cr := secNewCreds()
	smtp := smtptest.Start(t)
	dir := t.TempDir()
	// The first notifications opens its SMTP breaker at the first refusal
	// and keeps it open: see the kill below. The restarted one recovers
	// quickly.
	notifEnv := func(breaker ...string) func(port int) []string {
		return func(port int) []string {
			return append(append(procEnv(dir, "notifications", cr, port), "SMTP_URL="+smtp.URL, "MAIL_FROM=syndic <noreply@syndic.test>",
				"RETRY_MIN=10ms", "RETRY_MAX=200ms", "MAX_ATTEMPTS=10000"), breaker...)
		}
	}
	notif := procStart(t, "notifications", notifEnv("BREAKER_FAILURES=1", "BREAKER_OPEN_FOR=10m"))
	conEnv := func(port int) []string { return procEnv(dir, "contacts", cr, port) }
	con := procStart(t, "contacts", conEnv)
	calEnv := func(port int) []string {
		return append(procEnv(dir, "calendar", cr, port), "CONTACTS_FEED_URL="+con.URL+"/feed", "NOTIFICATIONS_URL="+notif.URL,
			"POLL_INTERVAL=100ms", "NOTIFY_RETRY_MIN=10ms", "NOTIFY_RETRY_MAX=200ms", "NOTIFY_SWEEP=200ms",
			"NOTIFY_MAX_ATTEMPTS=10000", "BREAKER_OPEN_FOR=200ms")
	}
	cal := procStart(t, "calendar", calEnv)
	capi, kapi, napi := secAPI(t, con.URL, cr.bearer), secAPI(t, cal.URL, cr.bearer), secAPI(t, notif.URL, cr.bearer)
	// The addresses stay across restarts; a connection per request, so no
	// pooled connection of a killed process is ever reused.
	for _, a := range []*api{capi, kapi, napi} {
		a.HTTP.Transport = &http.Transport{DisableKeepAlives: true}
	}

	g := &traffic{t: t, con: con.URL, cal: cal.URL, abort: make(chan struct{}),
		c:   &http.Client{Timeout: 20 * time.Second, Transport: secAuthorizing{cr.bearer, &http.Transport{DisableKeepAlives: true}}},
		rng: rand.New(rand.NewPCG(7, 7)), invites: map[string][]string{}}
	for range 3 {
		g.createContact()
	}
	// Two people deleted before the traffic starts, once calendar has
	// them marked deleted: no appointment can pick them.
	gone := map[int64]bool{}
	for i := range 2 {
		var c contact
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": fmt.Sprint("Gone ", i), "email": fmt.Sprintf("gone%d@example.org", i)}, &c)
		capi.Must(204, "DELETE", contactPath(c.ID), nil, nil, "If-Match", fmt.Sprintf(`"%d"`, c.Version))
		gone[c.ID] = true
	}
	pollUntil(t, 20*time.Second, "calendar to have the first contacts", func() bool { return copyDiff(capi, kapi, gone) == "" })

	const clients, maxRounds = 2, 400 // each; the test stops them well before
	stop := g.start(clients, maxRounds)
	flowing := g.flowing
	began := time.Now()

	// crash kills p, waits until the clients have been refused 5 more
	// times, and starts it again.
	crash := func(p *procService, refused *atomic.Int64, env func(port int) []string) *procService {
		t.Helper()
		from := refused.Load()
		p.cmd.Process.Kill()
		<-p.done
		pollUntil(t, 10*time.Second, "the clients to meet "+p.name+" down", func() bool { return refused.Load() >= from+5 })
		p = pkRestart(t, p, env)
		t.Logf("%s was killed; the clients were refused %d times", p.name, refused.Load()-from)
		return p
	}

	// contacts crashes; the outage lasts until the clients have been
	// refused a few times.
	flowing(10)
	con = crash(con, &g.refusedCon, conEnv)

	// calendar crashes.
	flowing(10)
	cal = crash(cal, &g.refusedCal, calEnv)

	// notifications crashes. The mail server refuses first, and the kill
	// waits until every mail it accepted is marked sent: none is between
	// acceptance and being marked at the kill, the one window in which a
	// crash sends a mail twice. It also waits until no notification is
	// claimed, so the restarted service has every mail to send at once (a
	// claim held at a crash waits out DELIVERY_LEASE). With the breaker open
	// (at the first refusal, for 10 minutes) no worker calls SMTP, so none
	// holds a claim for longer than it takes to give it back.
	flowing(10)
	smtp.Fail(451, "try again later")
	accepted := len(smtp.Mails())
	ndb, err := sqldb.Open(context.Background(), "sqlite:"+filepath.Join(dir, "notifications.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ndb.Close()
	pollUntil(t, 20*time.Second, "notifications to open its breaker, mark every accepted mail sent and hold no claim", func() bool {
		if st, _ := procMetric(t, notif.URL, cr.bearer, `syndic_breaker_state{peer="smtp"}`); st != 2 {
			return false
		}
		var leased int
		if err := ndb.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE status = 'pending' AND lease_until > ?`,
			sqldb.Micro(time.Now())).Scan(&leased); err != nil {
			t.Fatal(err)
		}
		return leased == 0 && pkNotifications(napi)["sent"] == accepted
	})
	notif.cmd.Process.Kill()
	<-notif.done
	flowing(5) // appointments made while notifications is down
	notif = pkRestart(t, notif, notifEnv("BREAKER_OPEN_FOR=200ms"))
	smtp.Fail(0, "")
	t.Logf("notifications was killed with %d mails sent", accepted)

	flowing(10)
	stop()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d rounds of traffic by %d clients in %s", g.rounds.Load(), clients, time.Since(began).Round(time.Millisecond))

	// Everything converges: calendar's copy equals contacts...
	var diff string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if diff = copyDiff(capi, kapi, gone); diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calendar's copy after 30 s: %s", diff)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids := map[int64]bool{}
	for id := range gone {
		ids[id] = false
	}
	sameState(t, capi, kapi, ids)

	// ...and every invitation was delivered exactly once.
	want := g.wantInvites()
	deadline = time.Now().Add(30 * time.Second)
	for {
		pending, found := procMetric(t, cal.URL, cr.bearer, "syndic_notify_pending")
		st := pkNotifications(napi)
		if found && pending == 0 && st["all"] == len(want) && st["sent"] == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: calendar has %v pending (metric present %v), notifications %v, smtp %d mails; want 0 pending, %d sent",
				pending, found, st, len(smtp.Mails()), len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mails := smtp.Mails()
	checkOneInvitationEach(t, mails, want)
	var failed list[notification]
	napi.Must(200, "GET", "/api/notifications?status=failed&limit=1000", nil, &failed)
	if len(failed.Items) != 0 {
		t.Errorf("notifications has %d failed: %+v", len(failed.Items), failed.Items)
	}
	t.Logf("%d appointments, %d invitations, each delivered once", len(g.invites), len(mails))
}

// TestProcessesAccessAndLogs: the three binaries with API_TOKEN,
// UI_PASSWORD and SMTP credentials. Health is open; the API and /metrics
// take the bearer token or Basic and nothing else; the HTML pages take
// Basic. A short story — a contact, an appointment, its invitation
// delivered through the authenticated SMTP server — leaves only JSON lines
// on each stdout, none holding the token, the UI password or the SMTP
// password.
func TestProcessesAccessAndLogs(t *testing.T) {
	cr := secNewCreds()
	smtpPass := secRandom("smtp")
	smtp := smtptest.Start(t)
	smtpURL := "smtp://user:" + smtpPass + "@" + smtp.Addr
	dir := t.TempDir()
	notif := procStart(t, "notifications", func(port int) []string {
		return append(procEnv(dir, "notifications", cr, port), "SMTP_URL="+smtpURL, "MAIL_FROM=syndic <noreply@syndic.test>",
			"RETRY_MIN=10ms", "RETRY_MAX=200ms")
	})
	con := procStart(t, "contacts", func(port int) []string { return procEnv(dir, "contacts", cr, port) })
	cal := procStart(t, "calendar", func(port int) []string {
		return append(procEnv(dir, "calendar", cr, port), "CONTACTS_FEED_URL="+con.URL+"/feed", "NOTIFICATIONS_URL="+notif.URL,
			"POLL_INTERVAL=100ms", "NOTIFY_RETRY_MIN=10ms", "NOTIFY_RETRY_MAX=200ms", "NOTIFY_SWEEP=200ms")
	})

	c := secClient(t)
	wrong := secNewCreds()
	for _, s := range []struct {
		p    *procService
		api  string
		page string
	}{{con, "/api/contacts", "/"}, {cal, "/api/appointments", "/"}, {notif, "/api/notifications", "/"}} {
		check := func(path string, want int, auth func(*http.Request), how string) {
			t.Helper()
			if resp, body := request(t, c, "GET", s.p.URL+path, "", "", auth); resp.StatusCode != want {
				t.Errorf("%s GET %s %s: status %d, want %d: %.200s", s.p.name, path, how, resp.StatusCode, want, body)
			}
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			check(path, 200, nil, "without credentials")
		}
		for _, path := range []string{s.api, "/metrics"} {
			check(path, 401, nil, "without credentials")
			check(path, 401, wrong.bearer, "with a wrong token")
			check(path, 401, func(r *http.Request) { r.SetBasicAuth(secUser, wrong.Password) }, "with a wrong password")
			check(path, 200, cr.bearer, "with the token")
			check(path, 200, cr.basic, "with Basic")
		}
		check(s.page, 401, nil, "without credentials")
		check(s.page, 401, func(r *http.Request) { r.SetBasicAuth(secUser, wrong.Password) }, "with a wrong password")
		check(s.page, 200, cr.basic, "with Basic")
		if resp, body := request(t, c, "GET", s.p.URL+s.page, "", "", cr.basic); !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s GET %s: Content-Type %q, want an HTML page: %.200s", s.p.name, s.page, resp.Header.Get("Content-Type"), body)
		}
	}

	// The story.
	capi, kapi := secAPI(t, con.URL, cr.bearer), secAPI(t, cal.URL, cr.basic)
	inviteNextWeek(kapi, "Access review", addAda(t, capi, kapi).ID)
	mails := smtp.WaitFor(t, 1, 30*time.Second)
	if mails[0].User != "user" {
		t.Errorf("mail sent as SMTP user %q, want user", mails[0].User)
	}
	if inv := parseInvite(t, mails[0]); inv.To != "ada@example.org" {
		t.Errorf("mail to %q, want ada@example.org", inv.To)
	}
	napi := secAPI(t, notif.URL, cr.bearer)
	pollUntil(t, 20*time.Second, "notifications to mark the mail sent", func() bool { return pkNotifications(napi)["sent"] == 1 })

	secrets := []string{cr.Token, cr.Password, smtpPass, base64.StdEncoding.EncodeToString([]byte(secUser + ":" + cr.Password)),
		base64.StdEncoding.EncodeToString([]byte("\x00user\x00" + smtpPass))}
	for _, p := range []*procService{cal, con, notif} {
		if st := p.terminate(t); !st.Success() {
			t.Errorf("%s after SIGTERM: %v, want exit status 0", p.name, st)
		}
		lines := secCheckLog(t, p.name, p.stdout.String(), secrets...)
		if len(lines) == 0 {
			t.Errorf("%s wrote nothing on stdout", p.name)
		}
		for _, s := range secrets {
			if strings.Contains(p.stderr.String(), s) {
				t.Errorf("%s stderr holds the secret %q", p.name, s)
			}
		}
	}
}
