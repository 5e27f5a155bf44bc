package e2e

// The security pass: who may reach which route, what a hostile name turns
// into on every surface that shows it, CSRF on every form, and what the
// logs never hold. Helpers here start with sec; process_test.go uses a few.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/notifications"
	"syndic/shared/config"
	"syndic/shared/feed"
	"syndic/shared/httpx"
	"syndic/shared/servicetest"
	"syndic/shared/smtptest"
	"syndic/shared/sqldb/sqldbtest"
)

// secUser is the UI_USER of every test here.
const secUser = "admin"

// secCreds are the credentials a test configures, random for each test so
// that finding one in a log can only mean it was written there.
type secCreds struct{ Token, Password string }

func secRandom(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func secNewCreds() secCreds {
	return secCreds{Token: secRandom("tok"), Password: secRandom("pw")}
}

func (c secCreds) common(level string) config.Common {
	return config.Common{APIToken: c.Token, UIUser: secUser, UIPassword: c.Password, LogLevel: level}
}

// bearer and basic present the credentials; an auth func may be nil for
// none.
func (c secCreds) bearer(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c.Token) }
func (c secCreds) basic(r *http.Request)  { r.SetBasicAuth(secUser, c.Password) }

// secOutput is a service's stdout, safe for its goroutines.
type secOutput = servicetest.Output

// secCheckLog fails t unless every line of out is a JSON object and no line
// holds any of secrets; it returns the decoded lines.
func secCheckLog(t testing.TB, service, out string, secrets ...string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" && out == "" {
			break
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("%s stdout line %d is not a JSON object: %v: %q", service, i+1, err, line)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("%s stdout line %d holds the secret %q: %s", service, i+1, s, line)
				break
			}
		}
		lines = append(lines, m)
	}
	return lines
}

// secAuthorizing adds credentials to every request it carries.
type secAuthorizing struct {
	auth func(*http.Request)
	base http.RoundTripper
}

func (a secAuthorizing) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	a.auth(r)
	return a.base.RoundTrip(r)
}

// secAPI is a JSON client of base that presents credentials with auth.
func secAPI(t testing.TB, base string, auth func(*http.Request)) *api {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &api{T: t, Base: base, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: tr}, Auth: auth}
}

// secClient follows no redirects and has a transport of its own.
func secClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 30 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func secHeader(k, v string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

const formType = "application/x-www-form-urlencoded"

// secRoute is one route of a service and what it answers.
type secRoute struct {
	method, path string
	access       string // "open", "machine" (API, feeds, metrics, iCal) or "people" (HTML)
	want         int    // the status with valid credentials
	ctype, body  string
	fresh        func() string // when set, the path of a new target for each request
	key          bool          // a new Idempotency-Key for each request
}

// secTableRoute is a row of a service's route table.
type secTableRoute struct{ pattern, access string }

func secTable[R any](rs []R, row func(R) (pattern, access string)) []secTableRoute {
	var t []secTableRoute
	for _, r := range rs {
		p, a := row(r)
		t = append(t, secTableRoute{p, a})
	}
	return t
}

// secCheckCovered fails t unless the requests of routes reach every route
// of the service's table, each with the access the test expects: a route
// added to a server.go must be added here too.
func secCheckCovered(t *testing.T, service, base string, table []secTableRoute, routes []secRoute) {
	t.Helper()
	mux := http.NewServeMux()
	access := map[string]string{}
	for _, r := range table {
		mux.Handle(r.pattern, http.NotFoundHandler())
		access[r.pattern] = r.access
	}
	reached := map[string]bool{}
	for _, rt := range routes {
		req, err := http.NewRequest(rt.method, base+strings.ReplaceAll(rt.path, "{new}", "1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, pattern := mux.Handler(req)
		if pattern == "" {
			t.Errorf("%s %s %s: no route of the service's table serves it", service, rt.method, rt.path)
			continue
		}
		reached[pattern] = true
		if access[pattern] != rt.access {
			t.Errorf("%s %s %s: the route table says %s has %q access, the test expects %q", service, rt.method, rt.path, pattern, access[pattern], rt.access)
		}
	}
	for _, r := range table {
		if !reached[r.pattern] {
			t.Errorf("%s route %s (%s) is asked by no request of TestAccessMatrix: add one", service, r.pattern, r.access)
		}
	}
}

// TestAccessMatrix asks every route of the three services, with
// API_TOKEN and UI_PASSWORD set, without credentials, with each kind of
// valid credentials and with wrong ones: /healthz, /readyz and the static
// files are open, everything else answers 401 (with a Basic challenge)
// unless the credentials are right. Then, with no credentials configured,
// the services listen on loopback only.
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	cr := secNewCreds()
	smtp := smtptest.Start(t)
	con := startContacts(t, "", contacts.Config{FeedPageSize: 2, Common: cr.common("warn")})
	notif := startNotifications(t, "", notifications.Config{SMTPURL: smtp.URL, Common: cr.common("error")})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{NotificationsURL: notif.URL, Common: cr.common("warn")})
	capi, kapi, napi := secAPI(t, con.URL, cr.bearer), secAPI(t, cal.URL, cr.bearer), secAPI(t, notif.URL, cr.bearer)

	made := 0
	newContact := func() int64 {
		var c contact
		made++ // emails are unique among contacts
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Ada Lovelace", "email": fmt.Sprintf("ada%d@example.org", made)}, &c)
		return c.ID
	}
	ada := newContact()
	newContact()
	newContact() // archive page 1 (seq 1–2) is full
	waitContacts(t, kapi, 3)
	start := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Hour)
	apptJSON := fmt.Sprintf(`{"title":"Review","starts_at":%q,"ends_at":%q,"participants":[%d]}`,
		start.Format(time.RFC3339), start.Add(time.Hour).Format(time.RFC3339), ada)
	newAppointment := func() int64 {
		var a calendar.Appointment
		kapi.Must(201, "POST", "/api/appointments", json.RawMessage(apptJSON), &a)
		return a.ID
	}
	appt := newAppointment()
	notifJSON := `{"to":"ada@example.org","subject":"Hello","text":"Hello Ada"}`
	var n notification
	napi.Must(202, "POST", "/api/notifications", json.RawMessage(notifJSON), &n, "Idempotency-Key", secRandom("key"))

	apptForm := url.Values{"title": {"Review"}, "starts_at": {start.Format("2006-01-02T15:04")},
		"ends_at": {start.Add(time.Hour).Format("2006-01-02T15:04")}, "timezone": {"UTC"}, "participants": {fmt.Sprint(ada)}}
	apptFormV1 := url.Values{"version": {"1"}}
	for k, v := range apptForm {
		apptFormV1[k] = v
	}
	freshContact := func(format string) func() string {
		return func() string { return fmt.Sprintf(format, newContact()) }
	}
	freshAppointment := func(format string) func() string {
		return func() string { return fmt.Sprintf(format, newAppointment()) }
	}
	const jsonType = "application/json"
	open := func(path string) secRoute { return secRoute{method: "GET", path: path, access: "open", want: 200} }
	get := func(access, path string) secRoute {
		return secRoute{method: "GET", path: path, access: access, want: 200}
	}

	services := []struct {
		name, base string
		table      []secTableRoute // the service's own route table
		routes     []secRoute
	}{
		{"contacts", con.URL, secTable(contacts.Routes(), func(r contacts.Route) (string, string) { return r.Pattern, r.Access }), []secRoute{
			open("/healthz"), open("/readyz"), open("/static/base.css"), open("/static/style.css"),
			get("machine", "/metrics"),
			get("machine", "/feed"),
			get("machine", "/feed/archive/1"),
			get("machine", "/feed/snapshot"),
			get("machine", "/api/contacts"),
			{method: "POST", path: "/api/contacts", access: "machine", want: 201, ctype: jsonType, body: `{"name":"Grace Hopper","email":"grace{n}@example.org"}`},
			get("machine", fmt.Sprintf("/api/contacts/%d", ada)),
			{method: "PUT", path: "/api/contacts/{new}", access: "machine", want: 200, ctype: jsonType, body: `{"name":"Grace Hopper","email":"grace{n}@example.org","version":1}`, fresh: freshContact("/api/contacts/%d")},
			{method: "DELETE", path: "/api/contacts/{new}", access: "machine", want: 204, fresh: freshContact("/api/contacts/%d")},
			{method: "POST", path: "/api/contacts/import", access: "machine", want: 200, ctype: "text/vcard", body: "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Card {n}\r\nEMAIL:card{n}@example.org\r\nEND:VCARD\r\n"},
			get("people", "/contacts.vcf"),
			{method: "POST", path: "/contacts/import", access: "people", want: 200, ctype: "multipart/form-data; boundary=b0undary",
				body: "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.vcf\"\r\nContent-Type: text/vcard\r\n\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:Form {n}\r\nEMAIL:form{n}@example.org\r\nEND:VCARD\r\n--b0undary--\r\n"},
			{method: "GET", path: "/api/nowhere", access: "machine", want: 404},
			get("people", "/"),
			get("people", "/contacts/new"),
			{method: "POST", path: "/contacts", access: "people", want: 303, ctype: formType, body: "name=Grace+Hopper&email=grace{n}%40example.org"},
			get("people", fmt.Sprintf("/contacts/%d", ada)),
			get("people", fmt.Sprintf("/contacts/%d/edit", ada)),
			{method: "POST", path: "/contacts/{new}", access: "people", want: 303, ctype: formType, body: "name=Grace+Hopper&email=grace{n}%40example.org&version=1", fresh: freshContact("/contacts/%d")},
			{method: "POST", path: "/contacts/{new}/delete", access: "people", want: 303, ctype: formType, body: "version=1&confirm=yes", fresh: freshContact("/contacts/%d/delete")},
		}},
		{"calendar", cal.URL, secTable(calendar.Routes(), func(r calendar.Route) (string, string) { return r.Pattern, r.Access }), []secRoute{
			open("/healthz"), open("/readyz"), open("/static/base.css"), open("/static/style.css"),
			get("machine", "/metrics"),
			get("machine", "/api/appointments"),
			{method: "POST", path: "/api/appointments", access: "machine", want: 201, ctype: jsonType, body: apptJSON},
			get("machine", fmt.Sprintf("/api/appointments/%d", appt)),
			{method: "PUT", path: "/api/appointments/{new}", access: "machine", want: 200, ctype: jsonType, body: strings.Replace(apptJSON, "{", `{"version":1,`, 1), fresh: freshAppointment("/api/appointments/%d")},
			{method: "DELETE", path: "/api/appointments/{new}", access: "machine", want: 200, fresh: freshAppointment("/api/appointments/%d")},
			get("machine", "/api/contacts"),
			get("machine", "/api/sync"),
			{method: "GET", path: "/api/nowhere", access: "machine", want: 404},
			get("machine", "/calendar.ics"),
			get("machine", fmt.Sprintf("/contacts/%d/calendar.ics", ada)),
			get("people", "/"),
			get("people", "/appointments/new"),
			{method: "POST", path: "/appointments", access: "people", want: 303, ctype: formType, body: apptForm.Encode()},
			get("people", fmt.Sprintf("/appointments/%d", appt)),
			get("people", fmt.Sprintf("/appointments/%d/edit", appt)),
			{method: "POST", path: "/appointments/{new}", access: "people", want: 303, ctype: formType, body: apptFormV1.Encode(), fresh: freshAppointment("/appointments/%d")},
			{method: "POST", path: "/appointments/{new}/cancel", access: "people", want: 303, ctype: formType, body: "version=1&confirm=yes", fresh: freshAppointment("/appointments/%d/cancel")},
			get("people", "/contacts"),
			get("people", fmt.Sprintf("/contacts/%d", ada)),
		}},
		{"notifications", notif.URL, secTable(notifications.Routes(), func(r notifications.Route) (string, string) { return r.Pattern, r.Access }), []secRoute{
			open("/healthz"), open("/readyz"), open("/static/base.css"), open("/static/style.css"),
			get("machine", "/metrics"),
			{method: "POST", path: "/api/notifications", access: "machine", want: 202, ctype: jsonType, body: notifJSON, key: true},
			get("machine", "/api/notifications"),
			get("machine", fmt.Sprintf("/api/notifications/%d", n.ID)),
			{method: "GET", path: "/api/nowhere", access: "machine", want: 404},
			get("people", "/"),
		}},
	}

	wrong := secNewCreds()
	presentations := []struct {
		name  string
		auth  func(*http.Request)
		valid bool
	}{
		{"no credentials", nil, false},
		{"bearer token", cr.bearer, true},
		{"basic", cr.basic, true},
		{"wrong bearer token", wrong.bearer, false},
		{"basic with a wrong password", func(r *http.Request) { r.SetBasicAuth(secUser, wrong.Password) }, false},
		{"basic with a wrong user", func(r *http.Request) { r.SetBasicAuth("root", cr.Password) }, false},
		{"basic with the token as password", func(r *http.Request) { r.SetBasicAuth(secUser, cr.Token) }, false},
		{"bearer with the UI password", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+cr.Password) }, false},
		{"empty bearer", secHeader("Authorization", "Bearer "), false},
	}
	c := secClient(t)
	sent := 0
	for _, svc := range services {
		secCheckCovered(t, svc.name, svc.base, svc.table, svc.routes)
		for _, rt := range svc.routes {
			for _, p := range presentations {
				path := rt.path
				if rt.fresh != nil {
					path = rt.fresh()
				}
				set := []func(*http.Request){p.auth}
				if rt.key {
					set = append(set, secHeader("Idempotency-Key", secRandom("key")))
				}
				sent++ // {n} in a body: a new number each time (a contact's email is its own)
				resp, body := request(t, c, rt.method, svc.base+path, rt.ctype, strings.ReplaceAll(rt.body, "{n}", strconv.Itoa(sent)), set...)
				want := rt.want
				if rt.access != "open" && !p.valid {
					want = http.StatusUnauthorized
				}
				if resp.StatusCode != want {
					t.Errorf("%s %s %s with %s: status = %d, want %d (%s)", svc.name, rt.method, rt.path, p.name, resp.StatusCode, want, secShort(body))
					continue
				}
				if want == http.StatusUnauthorized {
					if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic ") {
						t.Errorf("%s %s %s with %s: 401 with WWW-Authenticate %q, want a Basic challenge", svc.name, rt.method, rt.path, p.name, ch)
					}
					if ct := resp.Header.Get("Content-Type"); rt.access == "machine" && !strings.HasPrefix(ct, "application/json") {
						t.Errorf("%s %s %s with %s: 401 of type %q, want a JSON error", svc.name, rt.method, rt.path, p.name, ct)
					}
				}
			}
		}
	}

	t.Run("loopback without credentials", func(t *testing.T) {
		// What httpx.Run listens on when no Listener is given.
		for _, all := range []bool{false, true} {
			ln, err := httpx.Listen(0, all)
			if err != nil {
				t.Fatal(err)
			}
			ip := ln.Addr().(*net.TCPAddr).IP
			ln.Close()
			if !all && !ip.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("httpx.Listen(0, false) listens on %s, want 127.0.0.1", ip)
			}
			if all && !ip.IsUnspecified() {
				t.Errorf("httpx.Listen(0, true) listens on %s, want every interface", ip)
			}
		}
		// And each service's Run on PORT=0, as main calls it: the address it
		// logs, and whether a non-loopback address of this host reaches it.
		other := secNonLoopback()
		for _, svc := range []string{"contacts", "calendar", "notifications"} {
			for _, creds := range []secCreds{{}, cr} {
				var addr string
				reach := false
				secListenAddr(t, svc, creds, func(a string) {
					addr = a
					_, port, _ := net.SplitHostPort(addr)
					if other != nil {
						if conn, err := net.DialTimeout("tcp", net.JoinHostPort(other.String(), port), 5*time.Second); err == nil {
							conn.Close()
							reach = true
						}
					}
				})
				host, port, _ := net.SplitHostPort(addr)
				ip := net.ParseIP(host)
				switch {
				case creds == secCreds{} && !ip.Equal(net.IPv4(127, 0, 0, 1)):
					t.Errorf("%s without credentials listens on %s, want 127.0.0.1 only", svc, addr)
				case creds == secCreds{} && reach:
					t.Errorf("%s without credentials is reachable on %s:%s", svc, other, port)
				case creds != secCreds{} && !ip.IsUnspecified():
					t.Errorf("%s with credentials listens on %s, want every interface", svc, addr)
				case creds != secCreds{} && other != nil && !reach:
					t.Errorf("%s with credentials is not reachable on %s:%s", svc, other, port)
				}
			}
		}
		if other == nil {
			t.Log("no non-loopback IPv4 address on this host: reachability not checked")
		}
	})
}

// secNonLoopback returns an IPv4 address of this host that is not
// loopback and that reaches a listener on every interface, or nil.
func secNonLoopback() net.IP {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return nil
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort(n.IP.String(), port), 2*time.Second); err == nil {
				conn.Close()
				return n.IP
			}
		}
	}
	return nil
}

// secListenAddr runs service's Run with PORT=0 and creds, as main would
// (no Listener), and once /readyz answers calls check with the address it
// logged that it listens on; then it stops the service.
func secListenAddr(t *testing.T, service string, creds secCreds, check func(addr string)) {
	t.Helper()
	out := &secOutput{}
	common := creds.common("info")
	if creds == (secCreds{}) {
		common = config.Common{UIUser: secUser, LogLevel: "info"}
	}
	var run func(context.Context) error
	switch service {
	case "contacts":
		cfg := contacts.Config{}
		secDefaults(t, &cfg)
		cfg.Port, cfg.DatabaseURL, cfg.Common = 0, sqldbtest.SQLiteURL(t), common
		run = func(ctx context.Context) error { return contacts.Run(ctx, cfg, out) }
	case "calendar":
		cfg := calendar.Config{}
		secDefaults(t, &cfg)
		cfg.Port, cfg.DatabaseURL, cfg.Common = 0, sqldbtest.SQLiteURL(t), common
		cfg.ContactsFeedURL, cfg.NotificationsURL = "http://127.0.0.1:1/feed", "http://127.0.0.1:1"
		run = func(ctx context.Context) error { return calendar.Run(ctx, cfg, out) }
	case "notifications":
		cfg := notifications.Config{}
		secDefaults(t, &cfg)
		cfg.Port, cfg.DatabaseURL, cfg.Common = 0, sqldbtest.SQLiteURL(t), common
		run = func(ctx context.Context) error { return notifications.Run(ctx, cfg, out) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s Run: %v", service, err)
		}
	}
	defer stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(out.String(), "\n") {
			var m struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "listening" {
				_, port, err := net.SplitHostPort(m.Addr)
				if err != nil {
					t.Fatalf("%s logged listening on %q", service, m.Addr)
				}
				servicetest.WaitReady(t, "http://127.0.0.1:"+port, nil)
				check(m.Addr)
				return
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s Run returned before listening: %v\n%s", service, err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s logged no listening line in 20 s:\n%s", service, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func secDefaults(t testing.TB, cfg any) {
	t.Helper()
	if err := config.Defaults(cfg); err != nil {
		t.Fatal(err)
	}
}

func secShort(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// Hostile text: markup, quotes, the CDATA end, iCal's special characters,
// an emoji, right-to-left scripts, a right-to-left override and a line
// separator (which is not a control character).
const (
	secHostileName     = `<script>alert(1)</script> "Q" 'A' & ]]> 🦊 שלום עולם ` + "\u200f" + `evil` // a right-to-left mark; overrides are refused
	secHostileTitle    = `</title><script>alert(2)</script> & "T" 'x' ]]> ;,\ 📅 مرحبا` + "\u2028" + `end`
	secHostileLocation = `Room <b>1</b>; "B", \ ]]>`
)

// TestHostileNamesEscaped follows a hostile contact name and appointment
// title through every surface that shows them: HTML pages escape them, the
// Atom feed, the iCal documents and the invitation mail carry them exactly,
// and control characters are refused at the door.
func TestHostileNamesEscaped(t *testing.T) {
	t.Parallel()
	smtp := smtptest.Start(t)
	notif := startNotifications(t, "", notifications.Config{SMTPURL: smtp.URL})
	con := startContacts(t, "", contacts.Config{})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{NotificationsURL: notif.URL})
	capi, kapi, napi := newAPI(t, con.URL), newAPI(t, cal.URL), newAPI(t, notif.URL)
	c := secClient(t)

	// Control characters, bidirectional overrides and invisible names are
	// refused, in the API and in the forms.
	for _, bad := range []string{"Ada\x00Lovelace", "Ada\nLovelace", "Ada\r\nBcc: eve@example.org", "Ada\u0085Lovelace", "Ada\u202eLovelace", "\u200b"} {
		capi.Must(400, "POST", "/api/contacts", map[string]string{"name": bad, "email": "ada@example.org"}, nil)
		form := url.Values{"name": {bad}, "email": {"ada@example.org"}}
		if resp, _ := request(t, c, "POST", con.URL+"/contacts", formType, form.Encode()); resp.StatusCode != 400 {
			t.Errorf("form with name %q: status = %d, want 400", bad, resp.StatusCode)
		}
	}
	var l list[contact]
	capi.Must(200, "GET", "/api/contacts", nil, &l)
	if len(l.Items) != 0 {
		t.Fatalf("%d contacts after refused creates, want 0", len(l.Items))
	}

	var who contact
	capi.Must(201, "POST", "/api/contacts", map[string]string{"name": secHostileName, "email": "hostile@example.org"}, &who)
	if who.Name != secHostileName {
		t.Fatalf("stored name %q, want %q", who.Name, secHostileName)
	}
	waitContacts(t, kapi, 1)

	start := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Hour)
	in := map[string]any{"starts_at": start.Format(time.RFC3339), "ends_at": start.Add(time.Hour).Format(time.RFC3339),
		"location": secHostileLocation, "participants": []int64{who.ID}}
	for _, bad := range []string{"Review\r\nBcc: eve@example.org", "Review\x00", "Review\tTab"} {
		in["title"] = bad
		kapi.Must(400, "POST", "/api/appointments", in, nil)
	}
	in["title"] = secHostileTitle
	var appt calendar.Appointment
	kapi.Must(201, "POST", "/api/appointments", in, &appt)
	if appt.Title != secHostileTitle || appt.Location != secHostileLocation {
		t.Fatalf("stored title %q, location %q", appt.Title, appt.Location)
	}
	mails := waitDelivered(t, cal, notif, smtp, 1, 30*time.Second)

	// HTML: the escaped form, never markup.
	name, title := template.HTMLEscapeString(secHostileName), template.HTMLEscapeString(secHostileTitle)
	pages := []struct {
		base, path string
		want       []string
	}{
		{con.URL, "/", []string{name}},
		{con.URL, "/?q=" + url.QueryEscape(`<script>alert(1)</script>`), []string{name, template.HTMLEscapeString(`<script>alert(1)</script>`)}},
		{con.URL, fmt.Sprintf("/contacts/%d", who.ID), []string{name}},
		{con.URL, fmt.Sprintf("/contacts/%d/edit", who.ID), []string{name}},
		{cal.URL, "/", []string{title}},
		{cal.URL, "/appointments/new", []string{name}},
		{cal.URL, fmt.Sprintf("/appointments/%d", appt.ID), []string{title, name, template.HTMLEscapeString(secHostileLocation)}},
		{cal.URL, fmt.Sprintf("/appointments/%d/edit", appt.ID), []string{title, name}},
		{cal.URL, "/contacts", []string{name}},
		{cal.URL, fmt.Sprintf("/contacts/%d", who.ID), []string{name, title}},
		{notif.URL, "/", nil}, // the subject, checked below
	}
	for _, p := range pages {
		resp, body := request(t, c, "GET", p.base+p.path, "", "")
		secCheckPage(t, p.base+p.path, resp, body, p.want...)
	}
	// A form sent back with problems shows the input escaped.
	form := url.Values{"title": {secHostileTitle}, "starts_at": {"tomorrow"}, "ends_at": {"<script>alert(3)</script>"},
		"timezone": {`<script>alert(4)</script>`}, "participants": {fmt.Sprint(who.ID)}}
	resp, body := request(t, c, "POST", cal.URL+"/appointments", formType, form.Encode())
	if resp.StatusCode != 400 {
		t.Errorf("POST /appointments with bad times: status = %d, want 400", resp.StatusCode)
	}
	secCheckPage(t, "calendar POST /appointments (problems)", resp, body, title, template.HTMLEscapeString(`<script>alert(4)</script>`))
	form = url.Values{"name": {secHostileName}, "email": {"<script>alert(5)</script>"}}
	resp, body = request(t, c, "POST", con.URL+"/contacts", formType, form.Encode())
	if resp.StatusCode != 400 {
		t.Errorf("POST /contacts with a bad email: status = %d, want 400", resp.StatusCode)
	}
	secCheckPage(t, "contacts POST /contacts (problems)", resp, body, name, template.HTMLEscapeString(`<script>alert(5)</script>`))

	// Atom: parses, and gives the name back exactly.
	resp, body = request(t, c, "GET", con.URL+"/feed", "", "")
	page, err := feed.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("feed: %v\n%s", err, body)
	}
	if len(page.Events) != 1 {
		t.Fatalf("feed has %d events, want 1", len(page.Events))
	}
	var fed contacts.Contact
	if err := json.Unmarshal(page.Events[0].Data, &fed); err != nil {
		t.Fatal(err)
	}
	if fed.Name != secHostileName {
		t.Errorf("feed event name %q, want %q", fed.Name, secHostileName)
	}
	if got, want := page.Events[0].Title, secHostileName+" was added"; got != want {
		t.Errorf("feed entry title %q, want %q", got, want)
	}
	// Proxy headers that could break out of a link are ignored.
	resp, body = request(t, c, "GET", con.URL+"/feed", "", "",
		secHeader("X-Forwarded-Host", `evil.example/"><script>alert(6)</script>`), secHeader("X-Forwarded-Proto", "javascript"))
	if page, err = feed.Parse(strings.NewReader(body)); err != nil {
		t.Fatalf("feed with hostile proxy headers: %v\n%s", err, body)
	}
	if !strings.HasPrefix(page.Self, con.URL+"/") || strings.Contains(body, "evil.example") || strings.Contains(body, "javascript") {
		t.Errorf("feed with hostile proxy headers: self %q\n%s", page.Self, body)
	}

	// iCal: parses, with the exact title and location; a double quote,
	// which no iCal parameter can hold, becomes an apostrophe in CN.
	for _, path := range []string{"/calendar.ics", fmt.Sprintf("/contacts/%d/calendar.ics", who.ID)} {
		resp, body := request(t, c, "GET", cal.URL+path, "", "")
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: status = %d", path, resp.StatusCode)
		}
		doc, err := ical.NewDecoder(strings.NewReader(body)).Decode()
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
		secCheckEvent(t, path, doc, strings.ReplaceAll(secHostileName, `"`, "'"))
	}

	// The invitation: exactly the subject notifications was asked for, the
	// header lines notifications writes and no others, the name and title
	// intact in the text and iCal parts.
	var sent list[struct {
		Subject string `json:"subject"`
	}]
	napi.Must(200, "GET", "/api/notifications", nil, &sent)
	if len(sent.Items) != 1 {
		t.Fatalf("%d notifications, want 1", len(sent.Items))
	}
	subject := sent.Items[0].Subject
	if !strings.HasPrefix(subject, "Invitation: "+secHostileTitle+" — ") {
		t.Errorf("subject %q: want Invitation: and the title", subject)
	}
	m := mails[0]
	inv := parseInvite(t, m)
	if inv.Subject != subject {
		t.Errorf("mail subject decodes to %q, want %q", inv.Subject, subject)
	}
	head, _, ok := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("mail without a header/body separator:\n%s", m.Data)
	}
	var names []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("header line %q holds a bare CR or LF", line)
		}
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			continue // folded
		}
		k, _, ok := strings.Cut(line, ": ")
		if !ok || strings.ContainsAny(k, " \t") {
			t.Errorf("header line %q is not a field", line)
			continue
		}
		names = append(names, strings.ToLower(k))
	}
	slices.Sort(names)
	if want := []string{"content-type", "date", "from", "message-id", "mime-version", "subject", "to"}; !slices.Equal(names, want) {
		t.Errorf("mail header fields %v, want %v", names, want)
	}
	// (The text quotes the title with Go's %q, backslashes and \u escapes
	// included: not checked here.)
	if !strings.Contains(inv.Text, "Hello "+secHostileName+",") || !strings.Contains(inv.Text, secHostileLocation) {
		t.Errorf("text part does not hold the name and location exactly:\n%s", inv.Text)
	}
	secCheckEvent(t, "the invitation", secMailCalendar(t, m), strings.ReplaceAll(secHostileName, `"`, "'"))

	// notifications' page escapes the subject.
	resp, body = request(t, c, "GET", notif.URL+"/", "", "")
	secCheckPage(t, "notifications /", resp, body, template.HTMLEscapeString(subject))
}

// secCheckPage fails t unless the page is 2xx–4xx HTML holding every want
// and no markup beyond what the templates write (no script element at all).
func secCheckPage(t testing.TB, what string, resp *http.Response, body string, want ...string) {
	t.Helper()
	if resp.StatusCode >= 500 || resp.StatusCode < 200 {
		t.Errorf("%s: status = %d", what, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type %q, want text/html", what, ct)
	}
	low := strings.ToLower(body)
	for _, bad := range []string{"<script", "<b>1</b>"} {
		if strings.Contains(low, bad) {
			t.Errorf("%s: holds raw %q", what, bad)
		}
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("%s: does not hold %q", what, w)
		}
	}
}

// secCheckEvent checks the one VEVENT of doc: the exact hostile title and
// location, and one attendee named cn.
func secCheckEvent(t testing.TB, what string, doc *ical.Calendar, cn string) {
	t.Helper()
	evs := doc.Events()
	if len(evs) != 1 {
		t.Fatalf("%s: %d events, want 1", what, len(evs))
	}
	if got, err := evs[0].Props.Text(ical.PropSummary); err != nil || got != secHostileTitle {
		t.Errorf("%s: SUMMARY %q (%v), want %q", what, got, err, secHostileTitle)
	}
	if got, err := evs[0].Props.Text(ical.PropLocation); err != nil || got != secHostileLocation {
		t.Errorf("%s: LOCATION %q (%v), want %q", what, got, err, secHostileLocation)
	}
	att := evs[0].Props.Values(ical.PropAttendee)
	if len(att) != 1 {
		t.Fatalf("%s: %d attendees, want 1", what, len(att))
	}
	if got := att[0].Params.Get(ical.ParamCommonName); got != cn {
		t.Errorf("%s: attendee CN %q, want %q", what, got, cn)
	}
	if att[0].Value != "mailto:hostile@example.org" {
		t.Errorf("%s: attendee %q, want mailto:hostile@example.org", what, att[0].Value)
	}
}

// secMailCalendar returns the parsed text/calendar part of m.
func secMailCalendar(t testing.TB, m smtptest.Mail) *ical.Calendar {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no text/calendar part: %v", err)
		}
		if mt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); mt == "text/calendar" {
			doc, err := ical.NewDecoder(p).Decode()
			if err != nil {
				t.Fatalf("text/calendar part: %v", err)
			}
			return doc
		}
	}
}

// TestCSRFOnEveryForm posts to every HTML form route of contacts and
// calendar as a cross-site page would — with the headers of a modern
// browser, of an older one that sends only Origin, and from a sibling
// site — carrying valid Basic credentials (the browser would): each is
// refused with 403 and changes nothing. The same request from the
// service's own page works.
func TestCSRFOnEveryForm(t *testing.T) {
	t.Parallel()
	cr := secNewCreds()
	con := startContacts(t, "", contacts.Config{Common: cr.common("warn")})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{Common: cr.common("warn")})
	capi, kapi := secAPI(t, con.URL, cr.bearer), secAPI(t, cal.URL, cr.bearer)

	made := 0
	newContact := func() int64 {
		var c contact
		made++ // emails are unique among contacts
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Ada Lovelace", "email": fmt.Sprintf("ada%d@example.org", made)}, &c)
		return c.ID
	}
	ada := newContact()
	waitContacts(t, kapi, 1)
	start := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Hour)
	newAppointment := func() int64 {
		var a calendar.Appointment
		kapi.Must(201, "POST", "/api/appointments", map[string]any{"title": "Review", "starts_at": start.Format(time.RFC3339),
			"ends_at": start.Add(time.Hour).Format(time.RFC3339), "participants": []int64{ada}}, &a)
		return a.ID
	}
	apptForm := func(version string) string {
		v := url.Values{"title": {"Changed by the form"}, "starts_at": {start.Format("2006-01-02T15:04")},
			"ends_at": {start.Add(time.Hour).Format("2006-01-02T15:04")}, "timezone": {"UTC"}, "participants": {fmt.Sprint(ada)}}
		if version != "" {
			v.Set("version", version)
		}
		return v.Encode()
	}
	// state is everything the forms could change, as the API shows it.
	state := func() string {
		var b strings.Builder
		for _, s := range []struct {
			a    *api
			path string
		}{{capi, "/api/contacts?limit=1000"}, {kapi, "/api/appointments?cancelled=true"}} {
			var v any
			s.a.Must(200, "GET", s.path, nil, &v)
			js, _ := json.Marshal(v)
			b.Write(js)
		}
		resp, _ := request(t, secClient(t), "GET", con.URL+"/feed", "", "", cr.bearer)
		b.WriteString(resp.Header.Get("ETag"))
		return b.String()
	}

	forms := []struct {
		base, path, body string
	}{
		{con.URL, "/contacts", "name=Mallory&email=mallory%40example.org"},
		{con.URL, fmt.Sprintf("/contacts/%d", newContact()), "name=Mallory&email=mallory.m%40example.org&version=1"},
		{con.URL, fmt.Sprintf("/contacts/%d/delete", newContact()), "version=1&confirm=yes"},
		{cal.URL, "/appointments", apptForm("")},
		{cal.URL, fmt.Sprintf("/appointments/%d", newAppointment()), apptForm("1")},
		{cal.URL, fmt.Sprintf("/appointments/%d/cancel", newAppointment()), "version=1&confirm=yes"},
	}
	apis := []struct {
		base, path, body string
	}{ // the JSON API is behind the same protection
		{con.URL, "/api/contacts", `{"name":"Mallory","email":"mallory@example.org"}`},
		{cal.URL, fmt.Sprintf("/api/appointments/%d", newAppointment()), ""},
	}
	attacks := []struct {
		name string
		set  []func(*http.Request)
	}{
		{"cross-site", []func(*http.Request){secHeader("Sec-Fetch-Site", "cross-site"), secHeader("Origin", "https://evil.example")}},
		{"Origin only", []func(*http.Request){secHeader("Origin", "https://evil.example")}},
		{"same-site", []func(*http.Request){secHeader("Sec-Fetch-Site", "same-site"), secHeader("Origin", "https://evil.example")}},
		{"cross-site, no Origin", []func(*http.Request){secHeader("Sec-Fetch-Site", "cross-site")}},
	}
	c := secClient(t)
	for _, f := range forms {
		before := state()
		for _, a := range attacks {
			resp, body := request(t, c, "POST", f.base+f.path, formType, f.body, append(a.set, cr.basic)...)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s %s: status = %d, want 403 (%s)", f.path, a.name, resp.StatusCode, secShort(body))
			}
		}
		for _, a := range apis {
			method, ctype := "POST", "application/json"
			if a.body == "" {
				method, ctype = "DELETE", ""
			}
			resp, _ := request(t, c, method, a.base+a.path, ctype, a.body, cr.basic, secHeader("Sec-Fetch-Site", "cross-site"), secHeader("Origin", "https://evil.example"))
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s cross-site: status = %d, want 403", method, a.path, resp.StatusCode)
			}
		}
		if after := state(); after != before {
			t.Errorf("POST %s: refused cross-site requests changed the state:\nbefore %s\nafter  %s", f.path, before, after)
		}
		resp, body := request(t, c, "POST", f.base+f.path, formType, f.body, cr.basic,
			secHeader("Sec-Fetch-Site", "same-origin"), secHeader("Origin", f.base))
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("POST %s same-origin: status = %d, want 303 (%s)", f.path, resp.StatusCode, secShort(body))
		}
		if state() == before {
			t.Errorf("POST %s same-origin: nothing changed", f.path)
		}
	}
}

// TestNoSecretsInLogs drives the three services, with API_TOKEN,
// UI_PASSWORD and an SMTP password set and logging at debug level, through
// a story — a contact, an appointment, its invitation delivered after the
// mail server refused it once, requests with wrong credentials, a calendar
// configured with a wrong token and a password in its feed URL — and checks
// every log line: JSON, and never a secret or an Authorization header
// value.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	cr, wrong := secNewCreds(), secNewCreds()
	smtpUser, smtpPass := "mailer", secRandom("smtp")
	smtp := smtptest.Start(t)
	outs := map[string]*secOutput{"contacts": {}, "calendar": {}, "notifications": {}, "calendar with a wrong token": {}}

	ncfg := notifications.Config{SMTPURL: fmt.Sprintf("smtp://%s:%s@%s", smtpUser, smtpPass, smtp.Addr), DatabaseURL: sqldbtest.SQLiteURL(t),
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Common: cr.common("debug")}
	secDefaults(t, &ncfg)
	notif := servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		ncfg.Listener = ln
		return notifications.Run(ctx, ncfg, outs["notifications"])
	})
	ccfg := contacts.Config{DatabaseURL: sqldbtest.SQLiteURL(t), Common: cr.common("debug")}
	secDefaults(t, &ccfg)
	con := servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		ccfg.Listener = ln
		return contacts.Run(ctx, ccfg, outs["contacts"])
	})
	calCfg := func(common config.Common) calendar.Config {
		cfg := calendar.Config{DatabaseURL: sqldbtest.SQLiteURL(t), ContactsFeedURL: con.URL + "/feed", NotificationsURL: notif.URL,
			PollInterval: 50 * time.Millisecond, NotifyRetryMin: 10 * time.Millisecond, NotifyRetryMax: 100 * time.Millisecond,
			NotifySweep: 100 * time.Millisecond, Common: common}
		secDefaults(t, &cfg)
		return cfg
	}
	kcfg := calCfg(cr.common("debug"))
	cal := servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		kcfg.Listener = ln
		return calendar.Run(ctx, kcfg, outs["calendar"])
	})
	// This one also has a password in its feed URL, as a feed reader would
	// be given it: refused, it must show up in no error.
	wcfg := calCfg(config.Common{APIToken: wrong.Token, UIUser: secUser, LogLevel: "debug"})
	wcfg.ContactsFeedURL = strings.Replace(con.URL, "http://", "http://"+secUser+":"+wrong.Password+"@", 1) + "/feed"
	wcal := servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		wcfg.Listener = ln
		return calendar.Run(ctx, wcfg, outs["calendar with a wrong token"])
	})

	capi, kapi, napi := secAPI(t, con.URL, cr.bearer), secAPI(t, cal.URL, cr.basic), secAPI(t, notif.URL, cr.bearer)
	ada := addAda(t, capi, kapi)
	smtp.Fail(451, "try again later")
	inviteNextWeek(kapi, "Review", ada.ID)
	deadline := time.Now().Add(20 * time.Second)
	for smtp.Attempts() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery attempt in 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	smtp.Fail(0, "")
	mails := smtp.WaitFor(t, 1, 20*time.Second)
	if mails[0].User != smtpUser {
		t.Errorf("the mail came with AUTH user %q, want %q", mails[0].User, smtpUser)
	}
	for {
		var l list[notification]
		napi.Must(200, "GET", "/api/notifications", nil, &l)
		if len(l.Items) == 1 && l.Items[0].Status == "sent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notifications %+v, want one sent", l.Items)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Wrong credentials everywhere, a token in a query string, a form post
	// with credentials.
	c := secClient(t)
	for _, base := range []string{con.URL, cal.URL, notif.URL} {
		for _, set := range []func(*http.Request){wrong.bearer, func(r *http.Request) { r.SetBasicAuth(secUser, wrong.Password) },
			func(r *http.Request) { r.SetBasicAuth(secUser, cr.Token) }, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+cr.Password) }} {
			for _, path := range []string{"/api/nowhere", "/", "/metrics"} {
				if resp, _ := request(t, c, "GET", base+path, "", "", set); resp.StatusCode != 401 {
					t.Errorf("GET %s%s with wrong credentials: status = %d, want 401", base, path, resp.StatusCode)
				}
			}
		}
		request(t, c, "GET", base+"/api/nowhere?token="+cr.Token+"&password="+cr.Password, "", "", cr.bearer)
	}
	request(t, c, "POST", con.URL+"/contacts", formType, "name=Grace+Hopper&email=not-an-address", cr.basic)
	// The calendar with the wrong token has been refused by contacts.
	wapi := secAPI(t, wcal.URL, wrong.bearer)
	st := waitSync(t, wapi, 20*time.Second, func(s syncStatus) bool { return s.Errors > 0 })
	_, page := request(t, c, "GET", wcal.URL+"/contacts", "", "") // open: no UI_PASSWORD
	if !strings.Contains(st.LastError, "401") || strings.Contains(st.LastError, wrong.Password) || strings.Contains(page, wrong.Password) {
		t.Errorf("calendar with a wrong token: last error %q (want a 401 without the feed URL's password); its /contacts page holds the password: %v",
			st.LastError, strings.Contains(page, wrong.Password))
	}

	for _, s := range []*service{wcal, cal, con, notif} {
		s.Stop()
	}
	secrets := []string{cr.Token, cr.Password, smtpPass, wrong.Token, wrong.Password,
		base64.StdEncoding.EncodeToString([]byte(secUser + ":" + cr.Password)),
		base64.StdEncoding.EncodeToString([]byte(secUser + ":" + wrong.Password)),
		base64.StdEncoding.EncodeToString([]byte(secUser + ":" + cr.Token)),
		base64.StdEncoding.EncodeToString([]byte("\x00" + smtpUser + "\x00" + smtpPass))} // AUTH PLAIN
	for name, out := range outs {
		lines := secCheckLog(t, name, out.String(), secrets...)
		if len(lines) < 3 {
			t.Errorf("%s logged %d lines, want the requests and shutdown", name, len(lines))
		}
	}
	if t.Failed() {
		for name, out := range outs {
			t.Logf("%s:\n%s", name, out)
		}
	}
}
