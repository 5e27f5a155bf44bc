package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/notifications"
	"syndic/shared/smtptest"
	"syndic/shared/sqldb/sqldbtest"
)

// downPeer holds the address of a service that is down behind a port that
// still answers: it accepts each connection and closes it at once, and
// counts them — every call that reached the address.
type downPeer struct {
	ln    net.Listener
	calls atomic.Int64
	done  chan struct{}
}

func listenDown(t testing.TB) *downPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &downPeer{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.calls.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(d.Close)
	return d
}

// Addr is the host:port held.
func (d *downPeer) Addr() string { return d.ln.Addr().String() }

// Close frees the address; closing twice does nothing.
func (d *downPeer) Close() {
	d.ln.Close()
	<-d.done
}

type notification struct {
	ID             int64  `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	To             string `json:"to"`
	Subject        string `json:"subject"`
	Status         string `json:"status"`
	Attempts       int    `json:"attempts"`
	LastError      string `json:"last_error"`
}

// waitContacts polls calendar's copy until it holds n contacts.
func waitContacts(t testing.TB, cal *api, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var l list[contact]
		cal.Must(200, "GET", "/api/contacts", nil, &l)
		if len(l.Items) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("calendar has %d contacts after 20 s, want %d", len(l.Items), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDelivered polls until calendar's outbox has nothing pending and
// notifications holds want notifications, all sent: then nothing more can
// arrive, and smtp must hold exactly want mails, which it returns.
func waitDelivered(t testing.TB, cal, notif *service, smtp *smtptest.Server, want int, timeout time.Duration) []smtptest.Mail {
	t.Helper()
	napi := newAPI(t, notif.URL)
	deadline := time.Now().Add(timeout)
	for {
		pending, found := metrics(t, cal.URL)["syndic_notify_pending"]
		var l list[notification]
		napi.Must(200, "GET", "/api/notifications?limit=1000", nil, &l)
		status := map[string]int{}
		for _, n := range l.Items {
			status[n.Status]++
		}
		if found && pending == 0 && len(l.Items) == want && status["sent"] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: calendar has %v pending (metric present %v), notifications %d %v, smtp %d mails; want 0 pending, %d sent",
				timeout, pending, found, len(l.Items), status, len(smtp.Mails()), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mails := smtp.Mails()
	if len(mails) != want {
		t.Fatalf("smtp has %d mails, want exactly %d", len(mails), want)
	}
	return mails
}

// invite is what a test checks in a mail calendar sent through
// notifications.
type invite struct {
	To        string // RCPT TO
	HeaderTo  string // the To header's address
	Subject   string // decoded
	MessageID string
	Method    string // of the calendar object
	PartType  string // the text/calendar part's method parameter
	UID       string
	Sequence  int
	Text      string // the text/plain part
}

// parseInvite reads m as notifications writes it: multipart/alternative
// with a text/plain and a text/calendar part.
func parseInvite(t testing.TB, m smtptest.Mail) invite {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("mail does not parse: %v\n%s", err, m.Data)
	}
	var inv invite
	if len(m.To) != 1 {
		t.Fatalf("RCPT TO %v: want one recipient", m.To)
	}
	inv.To = m.To[0]
	to, err := mail.ParseAddress(msg.Header.Get("To"))
	if err != nil {
		t.Fatalf("To %q: %v", msg.Header.Get("To"), err)
	}
	inv.HeaderTo = to.Address
	if inv.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		t.Fatalf("Subject %q: %v", msg.Header.Get("Subject"), err)
	}
	inv.MessageID = msg.Header.Get("Message-ID")
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: want multipart/alternative", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var cal *ical.Calendar
	for {
		p, err := mr.NextPart() // undoes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: parts: %v", inv.Subject, err)
		}
		pt, pp, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("%s: part Content-Type %q: %v", inv.Subject, p.Header.Get("Content-Type"), err)
		}
		switch pt {
		case "text/plain":
			b, _ := io.ReadAll(p)
			inv.Text = string(b)
		case "text/calendar":
			inv.PartType = pp["method"]
			if cal, err = ical.NewDecoder(p).Decode(); err != nil {
				t.Fatalf("%s: text/calendar part: %v", inv.Subject, err)
			}
		}
	}
	if cal == nil {
		t.Fatalf("%s: no text/calendar part", inv.Subject)
	}
	if p := cal.Props.Get(ical.PropMethod); p != nil {
		inv.Method = p.Value
	}
	evs := cal.Events()
	if len(evs) != 1 {
		t.Fatalf("%s: %d VEVENTs, want 1", inv.Subject, len(evs))
	}
	if p := evs[0].Props.Get(ical.PropUID); p != nil {
		inv.UID = p.Value
	}
	p := evs[0].Props.Get(ical.PropSequence)
	if p == nil {
		t.Fatalf("%s: VEVENT without SEQUENCE", inv.Subject)
	}
	if inv.Sequence, err = strconv.Atoi(p.Value); err != nil {
		t.Fatalf("%s: SEQUENCE %q: %v", inv.Subject, p.Value, err)
	}
	return inv
}

// createAppointments creates n appointments titled "<title> <i>" with
// participants, with writers requests at once, and returns a line for
// each request not answered 201.
func createAppointments(calURL string, n, writers int, title string, participants []int64) []string {
	// A connection per writer, kept: the default keeps only two idle.
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	var mu sync.Mutex
	var bad []string
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := range jobs {
				start := time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
				body, _ := json.Marshal(map[string]any{"title": fmt.Sprint(title, " ", i),
					"starts_at": start.Format(time.RFC3339), "ends_at": start.Add(30 * time.Minute).Format(time.RFC3339), "participants": participants})
				resp, err := c.Post(calURL+"/api/appointments", "application/json", bytes.NewReader(body))
				if err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("appointment %d: %v", i, err))
					mu.Unlock()
					continue
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("appointment %d: %d %s", i, resp.StatusCode, bytes.TrimSpace(msg)))
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	c.CloseIdleConnections() // a connection dialled and never used holds a shutdown for 5 s
	return bad
}

// checkOncePerAppointment fails unless mails holds one invitation for each
// of the n appointments "<title> i", with distinct Message-IDs.
func checkOncePerAppointment(t *testing.T, mails []smtptest.Mail, n int, title string) {
	t.Helper()
	ids := map[string]int{}
	titles := map[string]int{}
	for _, m := range mails {
		inv := parseInvite(t, m)
		ids[inv.MessageID]++
		rest, ok := strings.CutPrefix(inv.Subject, "Invitation: ")
		if !ok {
			t.Errorf("subject %q: want an invitation", inv.Subject)
		}
		name, _, _ := strings.Cut(rest, " — ")
		titles[name]++
	}
	if len(ids) != n {
		t.Errorf("%d mails with %d distinct Message-IDs, want %d", len(mails), len(ids), n)
	}
	for i := range n {
		if name := fmt.Sprint(title, " ", i); titles[name] != 1 {
			t.Errorf("%q: %d invitations, want 1", name, titles[name])
		}
	}
}

// TestInvitationsChangesCancellations: an appointment with three
// participants sends each of them one invitation; a change sends each one
// change and the cancellation one cancellation, all with an iCal part for
// the same event whose SEQUENCE grows.
func TestInvitationsChangesCancellations(t *testing.T) {
	smtp := smtptest.Start(t)
	notif := startNotifications(t, "", notifications.Config{SMTPURL: smtp.URL})
	con := startContacts(t, "", contacts.Config{})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{NotificationsURL: notif.URL})
	capi, kapi := newAPI(t, con.URL), newAPI(t, cal.URL)

	people := map[int64]string{} // contact id → address
	var ids []int64
	for _, name := range []string{"Ada Lovelace", "Grace Hopper", "Émilie du Châtelet"} {
		var c contact
		email := strings.ToLower(strings.Fields(name)[0]) + "@example.org"
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": name, "email": email}, &c)
		people[c.ID] = c.Email
		ids = append(ids, c.ID)
	}
	waitContacts(t, kapi, 3)

	var a calendar.Appointment
	in := map[string]any{"title": "Design review", "starts_at": "2027-05-04T10:00:00+02:00", "ends_at": "2027-05-04T11:00:00+02:00",
		"location": "Room 1", "participants": ids}
	kapi.Must(201, "POST", "/api/appointments", in, &a)
	smtp.WaitFor(t, 3, 20*time.Second)
	mails := waitDelivered(t, cal, notif, smtp, 3, 20*time.Second)

	in["title"], in["location"] = "Design review (moved)", "Room 2"
	kapi.Must(200, "PUT", fmt.Sprintf("/api/appointments/%d", a.ID), in, &a, "If-Match", fmt.Sprintf(`"%d"`, a.Version))
	smtp.WaitFor(t, 6, 20*time.Second)
	mails = waitDelivered(t, cal, notif, smtp, 6, 20*time.Second)

	kapi.Must(200, "DELETE", fmt.Sprintf("/api/appointments/%d", a.ID), nil, &a, "If-Match", fmt.Sprintf(`"%d"`, a.Version))
	smtp.WaitFor(t, 9, 20*time.Second)
	mails = waitDelivered(t, cal, notif, smtp, 9, 20*time.Second)

	var uid string
	for round, want := range []struct {
		prefix, method, title string
		seq                   int
	}{
		{"Invitation: ", "REQUEST", "Design review", 0},
		{"Changed: ", "REQUEST", "Design review (moved)", 1},
		{"Cancelled: ", "CANCEL", "Design review (moved)", 2},
	} {
		to := map[string]int{}
		msgIDs := map[string]bool{}
		for _, m := range mails[3*round : 3*round+3] {
			inv := parseInvite(t, m)
			to[inv.To]++
			msgIDs[inv.MessageID] = true
			if inv.HeaderTo != inv.To {
				t.Errorf("%s: To header %q, RCPT TO %q", inv.Subject, inv.HeaderTo, inv.To)
			}
			if !strings.HasPrefix(inv.Subject, want.prefix+want.title+" — ") {
				t.Errorf("subject %q: want it to start with %q", inv.Subject, want.prefix+want.title+" — ")
			}
			if inv.Method != want.method || inv.PartType != want.method {
				t.Errorf("%s: METHOD %q, part method=%q, want %s", inv.Subject, inv.Method, inv.PartType, want.method)
			}
			if inv.Sequence != want.seq {
				t.Errorf("%s: SEQUENCE %d, want %d", inv.Subject, inv.Sequence, want.seq)
			}
			if uid == "" {
				uid = inv.UID
			}
			if inv.UID == "" || inv.UID != uid {
				t.Errorf("%s: UID %q, want %q throughout", inv.Subject, inv.UID, uid)
			}
		}
		if len(msgIDs) != 3 {
			t.Errorf("%s mails: %d distinct Message-IDs, want 3", want.prefix, len(msgIDs))
		}
		for _, addr := range people {
			if to[addr] != 1 {
				t.Errorf("%s mails: %v, want one to each of %v", want.prefix, to, slices.Collect(maps.Values(people)))
				break
			}
		}
	}
	if t.Failed() {
		for _, m := range mails {
			t.Logf("mail to %v:\n%s", m.To, m.Data)
		}
	}
}

// TestNotificationsDown: with notifications down, calendar still answers
// every write; its breaker opens, so the calls that reach notifications
// are bounded by the breaker's settings, not by the number of requests;
// once notifications is back, each request is delivered exactly once.
func TestNotificationsDown(t *testing.T) {
	const n, writers = 200, 8
	smtp := smtptest.Start(t)
	down := listenDown(t)
	con := startContacts(t, "", contacts.Config{})
	cfg := calendar.Config{NotificationsURL: "http://" + down.Addr(), NotifyWorkers: 4, BreakerFailures: 3, BreakerOpenFor: 300 * time.Millisecond}
	cal := startCalendar(t, "", con.URL+"/feed", cfg)
	capi, kapi := newAPI(t, con.URL), newAPI(t, cal.URL)
	var c contact
	capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Ada Lovelace", "email": "ada@example.org"}, &c)
	waitContacts(t, kapi, 1)

	began := time.Now() // no call can be made before the first appointment
	for _, b := range createAppointments(cal.URL, n, writers, "Standup", []int64{c.ID}) {
		t.Error(b)
	}
	created := time.Since(began)

	// Watch the breaker for at least 1.5 s of the outage.
	const state, opened = `syndic_breaker_state{peer="notifications"}`, `syndic_breaker_opened_total{peer="notifications"}`
	sawOpen := false
	var m map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		m = metrics(t, cal.URL)
		sawOpen = sawOpen || m[state] == 2
		if sawOpen && m[opened] >= 1 && time.Since(began) >= 1500*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker state %v, opened %v; seen open: %v", m[state], m[opened], sawOpen)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := m["syndic_notify_pending"]; p != n {
		t.Errorf("calendar's outbox has %v pending during the outage, want %d", p, n)
	}
	down.Close()
	window := time.Since(began)
	calls := int(down.calls.Load())

	// Closed, the breaker lets through at most BreakerFailures failed calls
	// plus those already under way at the other workers; open, it lets one
	// probe through per BreakerOpenFor, and each failed probe reopens it.
	const slack = 3
	bound := cfg.BreakerFailures + cfg.NotifyWorkers + int(window/cfg.BreakerOpenFor) + 1 + slack
	t.Logf("%d appointments created in %s; %d calls reached notifications in %s (bound %d); breaker opened %v times",
		n, created.Round(time.Millisecond), calls, window.Round(time.Millisecond), bound, m[opened])
	if calls < cfg.BreakerFailures {
		t.Errorf("%d calls reached notifications: fewer than the %d failures that open the breaker", calls, cfg.BreakerFailures)
	}
	if calls > bound {
		t.Errorf("%d calls reached notifications while it was down, more than the breaker allows (%d)", calls, bound)
	}
	if calls*4 > n {
		t.Errorf("%d calls reached notifications while it was down: not far below the %d requests", calls, n)
	}

	notif := startNotifications(t, down.Addr(), notifications.Config{SMTPURL: smtp.URL})
	smtp.WaitFor(t, n, 30*time.Second)
	mails := waitDelivered(t, cal, notif, smtp, n, 30*time.Second)
	checkOncePerAppointment(t, mails, n, "Standup")
	var sent list[notification]
	newAPI(t, notif.URL).Must(200, "GET", "/api/notifications?status=sent&limit=1000", nil, &sent)
	if len(sent.Items) != n {
		t.Errorf("notifications lists %d sent, want %d", len(sent.Items), n)
	}
	m = metrics(t, cal.URL)
	if m[state] != 0 {
		t.Errorf("breaker state %v after recovery, want 0 (closed)", m[state])
	}
	if m["syndic_notify_sent_total"] != n {
		t.Errorf("calendar posted %v requests successfully, want %d: one each", m["syndic_notify_sent_total"], n)
	}
}

// TestCalendarRestartWithPending: calendar stopped with 500 notification
// requests pending in its outbox, and started again once notifications is
// up, delivers each exactly once.
func TestCalendarRestartWithPending(t *testing.T) {
	const n, writers = 500, 8
	smtp := smtptest.Start(t)
	down := listenDown(t)
	con := startContacts(t, "", contacts.Config{})
	calDB := sqldbtest.SQLiteURL(t)
	cfg := calendar.Config{DatabaseURL: calDB, NotificationsURL: "http://" + down.Addr()}
	cal := startCalendar(t, "", con.URL+"/feed", cfg)
	capi, kapi := newAPI(t, con.URL), newAPI(t, cal.URL)
	var c contact
	capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Grace Hopper", "email": "grace@example.org"}, &c)
	waitContacts(t, kapi, 1)

	began := time.Now()
	for _, b := range createAppointments(cal.URL, n, writers, "Review", []int64{c.ID}) {
		t.Error(b)
	}
	t.Logf("%d appointments created in %s; %d calls reached notifications while down", n, time.Since(began).Round(time.Millisecond), down.calls.Load())
	if p := metrics(t, cal.URL)["syndic_notify_pending"]; p != n {
		t.Fatalf("calendar's outbox has %v pending, want %d", p, n)
	}
	cal.Stop()

	down.Close()
	notif := startNotifications(t, down.Addr(), notifications.Config{SMTPURL: smtp.URL})
	began = time.Now()
	cal = startCalendar(t, "", con.URL+"/feed", cfg)
	smtp.WaitFor(t, n, 30*time.Second)
	mails := waitDelivered(t, cal, notif, smtp, n, 30*time.Second)
	t.Logf("%d mails delivered %s after the restart", len(mails), time.Since(began).Round(time.Millisecond))
	checkOncePerAppointment(t, mails, n, "Review")
	if sent := metrics(t, cal.URL)["syndic_notify_sent_total"]; sent != n {
		t.Errorf("calendar posted %v requests successfully after the restart, want %d: one each", sent, n)
	}
	var sent list[notification]
	newAPI(t, notif.URL).Must(200, "GET", "/api/notifications?status=sent&limit=1000", nil, &sent)
	if len(sent.Items) != n {
		t.Errorf("notifications lists %d sent, want %d", len(sent.Items), n)
	}
}
