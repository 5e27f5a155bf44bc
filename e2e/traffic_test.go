package e2e

// Helpers the failure tests share, in-process (failure_test.go) and as
// processes (process_failure_test.go): traffic that keeps changing things
// while services go down, and the check that nothing was lost or doubled.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/shared/smtptest"
)

// traffic is a client of contacts and calendar that keeps making changes
// and, like any client, retries what a service that is down did not take.
type traffic struct {
	t        *testing.T
	con, cal string // base URLs; a restarted service keeps its address
	c        *http.Client
	abort    chan struct{} // closed when the test fails: stop retrying

	refusedCon, refusedCal atomic.Int64 // connections refused: the service was down
	rounds                 atomic.Int64
	next                   atomic.Int64 // numbers people, so every address is unique

	mu      sync.Mutex
	rng     *rand.Rand
	people  []int64             // contact ids created
	invites map[string][]string // appointment title → participants' addresses
	changes map[string][]string // appointment title → who must be told it moved
}

// start runs clients traffic clients, each for at most maxRounds rounds,
// until the returned stop is called; stop waits for them. When the test
// has failed they give up retrying at once.
func (g *traffic) start(clients, maxRounds int) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { g.run(fmt.Sprint(i), quit, maxRounds) })
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if g.t.Failed() {
				close(g.abort)
			}
			close(quit)
			wg.Wait()
		})
	}
	g.t.Cleanup(stop)
	return stop
}

// flowing waits until the clients have made n more rounds.
func (g *traffic) flowing(n int64) {
	g.t.Helper()
	from := g.rounds.Load()
	pollUntil(g.t, 30*time.Second, fmt.Sprintf("%d rounds of traffic after round %d", n, from), func() bool { return g.rounds.Load() >= from+n })
}

// until sends a request until the service answers it. A refused connection
// never reached the service and is sent again; any other failure may have
// reached it, so took (when not nil) is asked first whether it took effect,
// and if it did, until returns status 0. A replica killed as it committed
// leaves a commit that lands a moment after the failure: when the retry of
// a conditional request is refused 412, took is asked again.
func (g *traffic) until(refused *atomic.Int64, method, url string, body any, took func() bool, header ...string) (int, []byte) {
	deadline := time.Now().Add(30 * time.Second)
	unsure := false
	for {
		status, _, data, err := send(g.c, method, url, body, header...)
		if err == nil && status >= 502 && status <= 504 { // a proxy: the replica it chose died mid-request
			err = fmt.Errorf("status %d from the proxy", status)
		}
		if err == nil && status == http.StatusPreconditionFailed && unsure && took != nil && took() {
			return 0, nil
		}
		if err == nil {
			return status, data
		}
		if time.Now().After(deadline) {
			g.t.Errorf("%s %s: still failing after 30 s: %v", method, url, err)
			return -1, nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused.Add(1)
		} else {
			g.t.Logf("%s %s: %v: may have been taken; checking before retrying", method, url, err)
			unsure = true
			if took != nil && took() {
				return 0, nil
			}
		}
		select {
		case <-g.abort:
			return -1, nil
		case <-time.After(10 * time.Millisecond): // a client's pause before it retries
		}
	}
}

// createContact creates a new person in contacts; it returns the id, or 0
// after reporting an error.
func (g *traffic) createContact() int64 {
	n := g.next.Add(1)
	in := map[string]string{"name": fmt.Sprintf("Person %d", n), "email": fmt.Sprintf("p%d@example.org", n), "phone": fmt.Sprint(n)}
	var id int64
	status, data := g.until(&g.refusedCon, "POST", g.con+"/api/contacts", in, func() bool {
		id = g.findContact(in["email"])
		return id != 0
	})
	switch status {
	case -1:
		return 0
	case 0: // taken before the failure
	case http.StatusCreated:
		var c contact
		if err := json.Unmarshal(data, &c); err != nil {
			g.t.Errorf("POST /api/contacts: %v: %s", err, data)
			return 0
		}
		id = c.ID
	default:
		g.t.Errorf("POST /api/contacts: status %d, want 201: %s", status, data)
		return 0
	}
	g.mu.Lock()
	g.people = append(g.people, id)
	g.mu.Unlock()
	return id
}

func (g *traffic) findContact(email string) int64 {
	status, data := g.until(&g.refusedCon, "GET", g.con+"/api/contacts?limit=1000", nil, nil)
	var l list[contact]
	if status != http.StatusOK || json.Unmarshal(data, &l) != nil {
		return 0
	}
	for _, c := range l.Items {
		if c.Email == email {
			return c.ID
		}
	}
	return 0
}

// updateContact changes the name and phone of a person made earlier, never
// the address (invitations are counted by address). A lost race (412) or
// a failure is fine: the change happened or it did not, and calendar must
// end up with what contacts has either way.
func (g *traffic) updateContact() {
	g.mu.Lock()
	if len(g.people) == 0 {
		g.mu.Unlock()
		return
	}
	id := g.people[g.rng.IntN(len(g.people))]
	g.mu.Unlock()
	status, data := g.until(&g.refusedCon, "GET", g.con+contactPath(id), nil, nil)
	var c contact
	if status != http.StatusOK || json.Unmarshal(data, &c) != nil {
		g.t.Errorf("GET %s: status %d: %s", contactPath(id), status, data)
		return
	}
	in := map[string]string{"name": c.Name + "+", "email": c.Email, "phone": c.Phone + "1"}
	status, _, data, err := send(g.c, "PUT", g.con+contactPath(id), in, "If-Match", fmt.Sprintf(`"%d"`, c.Version))
	proxyCut := status >= 502 && status <= 504 // the replica died mid-request: done or not, like a transport error
	if err == nil && !proxyCut && status != http.StatusOK && status != http.StatusPreconditionFailed {
		g.t.Errorf("PUT %s: status %d: %s", contactPath(id), status, data)
	}
}

// call sends a request to calendar: when strict once, every failure an
// error (-1); otherwise until calendar answers it (see until).
func (g *traffic) call(strict bool, method, url string, body any, took func() bool) (int, []byte) {
	if !strict {
		return g.until(&g.refusedCal, method, url, body, took)
	}
	status, _, data, err := send(g.c, method, url, body)
	if err != nil {
		g.t.Errorf("%s %s: %v", method, url, err)
		return -1, nil
	}
	return status, data
}

// createAppointment creates an appointment titled title in calendar with up
// to two participants picked from calendar's copy of contacts, and records
// who must be invited. strict makes every failure an error: for calls to a
// service that must be up.
func (g *traffic) createAppointment(title string, strict bool) {
	status, data := g.call(strict, "GET", g.cal+"/api/contacts", nil, nil)
	if status == -1 {
		return
	}
	var local list[contact]
	if status != http.StatusOK || json.Unmarshal(data, &local) != nil {
		g.t.Errorf("GET calendar /api/contacts: status %d: %s", status, data)
		return
	}
	ids, emails := []int64{}, []string{}
	g.mu.Lock()
	for _, i := range g.rng.Perm(len(local.Items)) {
		if c := local.Items[i]; !c.Deleted && len(ids) < 2 {
			ids = append(ids, c.ID)
			emails = append(emails, c.Email)
		}
	}
	g.mu.Unlock()
	start := time.Date(2027, 6, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(g.next.Add(1)) * time.Hour)
	in := map[string]any{"title": title, "starts_at": start.Format(time.RFC3339), "ends_at": start.Add(time.Hour).Format(time.RFC3339), "participants": ids}
	status, data = g.call(strict, "POST", g.cal+"/api/appointments", in, func() bool { return g.findAppointment(title) })
	switch status {
	case -1:
		return
	case 0, http.StatusCreated:
	default:
		g.t.Errorf("POST calendar /api/appointments %q: status %d, want 201: %s", title, status, data)
		return
	}
	g.mu.Lock()
	g.invites[title] = emails
	g.mu.Unlock()
}

func (g *traffic) findAppointment(title string) bool {
	_, ok := g.appointment(title)
	return ok
}

// appointment returns calendar's appointment titled title, if there is one.
func (g *traffic) appointment(title string) (calendar.Appointment, bool) {
	status, data := g.until(&g.refusedCal, "GET", g.cal+"/api/appointments", nil, nil)
	var l list[calendar.Appointment]
	if status != http.StatusOK || json.Unmarshal(data, &l) != nil {
		return calendar.Appointment{}, false
	}
	for _, a := range l.Items {
		if a.Title == title {
			return a, true
		}
	}
	return calendar.Appointment{}, false
}

// moveAppointment moves one appointment not moved yet to another room,
// with the same people, who must each be told once; it reports whether
// there was one to move.
func (g *traffic) moveAppointment() bool {
	g.mu.Lock()
	title := ""
	for t := range g.invites {
		if _, moved := g.changes[t]; !moved {
			title = t
			break
		}
	}
	g.mu.Unlock()
	if title == "" {
		return false
	}
	a, ok := g.appointment(title)
	if !ok {
		g.t.Errorf("appointment %q is not in calendar", title)
		return false
	}
	in := map[string]any{"title": a.Title, "starts_at": a.StartsAt, "ends_at": a.EndsAt, "location": "Room B", "participants": a.Participants}
	status, data := g.until(&g.refusedCal, "PUT", fmt.Sprintf("%s/api/appointments/%d", g.cal, a.ID), in, func() bool {
		b, ok := g.appointment(title)
		return ok && b.Location == "Room B"
	}, "If-Match", fmt.Sprintf(`"%d"`, a.Version))
	switch status {
	case -1:
		return false
	case 0, http.StatusOK:
	default:
		g.t.Errorf("PUT calendar appointment %q: status %d, want 200: %s", title, status, data)
		return false
	}
	var told []string
	for _, p := range a.Attendees {
		if !p.Deleted && p.Email != "" {
			told = append(told, p.Email)
		}
	}
	g.mu.Lock()
	if g.changes == nil {
		g.changes = map[string][]string{}
	}
	g.changes[title] = told
	g.mu.Unlock()
	return true
}

// run makes rounds of changes — a new person, now and then a changed one,
// and an appointment — until stop is closed or max rounds are made.
// Appointments are titled "Sync <name> <round>".
func (g *traffic) run(name string, stop <-chan struct{}, max int) {
	for r := range max {
		select {
		case <-stop:
			return
		case <-g.abort:
			return
		default:
		}
		g.createContact()
		if r%3 == 2 {
			g.updateContact()
		}
		g.createAppointment(fmt.Sprint("Sync ", name, " ", r), false)
		g.rounds.Add(1)
	}
}

// wantInvites returns the invitations the traffic asked for, as
// "title\x00address" → 1.
func (g *traffic) wantInvites() map[string]int { return g.want(g.invites) }

// wantChanges returns the change mails the moves asked for, as
// "title\x00address" → 1.
func (g *traffic) wantChanges() map[string]int { return g.want(g.changes) }

func (g *traffic) want(mails map[string][]string) map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	want := map[string]int{}
	for title, emails := range mails {
		for _, e := range emails {
			want[title+"\x00"+e]++
		}
	}
	return want
}

// checkOneInvitationEach fails unless mails hold exactly one invitation for
// each "title\x00address" in want, and none else, with distinct Message-IDs.
func checkOneInvitationEach(t *testing.T, mails []smtptest.Mail, want map[string]int) {
	t.Helper()
	checkOneMailEach(t, mails, map[string]map[string]int{"Invitation": want})
}

// checkOneMailEach fails unless mails hold exactly one mail of each kind
// (the subject's first word: Invitation, Changed, Cancelled) for each
// "title\x00address" in want[kind], and none else, with distinct
// Message-IDs.
func checkOneMailEach(t *testing.T, mails []smtptest.Mail, want map[string]map[string]int) {
	t.Helper()
	got, ids := map[string]int{}, map[string]int{}
	for _, m := range mails {
		inv := parseInvite(t, m)
		ids[inv.MessageID]++
		kind, title, _ := strings.Cut(inv.Subject, ": ")
		title, _, _ = strings.Cut(title, " — ")
		if want[kind] == nil {
			t.Errorf("subject %q: not a kind of mail wanted", inv.Subject)
		}
		got[kind+"\x00"+title+"\x00"+inv.To]++
	}
	all := map[string]int{}
	for kind, w := range want {
		for k, n := range w {
			all[kind+"\x00"+k] = n
		}
	}
	for k, n := range got {
		if all[k] != 1 || n != 1 {
			kind, rest, _ := strings.Cut(k, "\x00")
			title, to, _ := strings.Cut(rest, "\x00")
			t.Errorf("%q to %s: %d mails %q, want %d", title, to, n, kind, all[k])
		}
	}
	for k := range all {
		if got[k] == 0 {
			kind, rest, _ := strings.Cut(k, "\x00")
			title, to, _ := strings.Cut(rest, "\x00")
			t.Errorf("%q to %s: no mail %q", title, to, kind)
		}
	}
	if len(ids) != len(mails) {
		t.Errorf("%d mails with %d distinct Message-IDs", len(mails), len(ids))
	}
}
