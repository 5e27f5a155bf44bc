package e2e

// The services as built binaries, each in a process of its own, configured
// only through the environment and driven only through HTTP and signals.
// Helpers here start with proc.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"syndic/shared/servicetest"
	"syndic/shared/smtptest"
)

// procBuilt holds the binaries, built once per run of the test binary.
var procBuilt struct {
	once sync.Once
	dir  string
	err  error
}

// procBinaries returns the directory holding contacts, calendar and
// notifications built from this module (found with go env GOMOD), building
// them on first use. They go beside the test binary when that lives in go
// test's work directory, which go test removes when it ends; otherwise
// (a test binary run by hand) into a temporary directory of their own.
func procBinaries(t testing.TB) string {
	t.Helper()
	procBuilt.once.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
			procBuilt.err = fmt.Errorf("go env GOMOD: %q, %v", gomod, err)
			return
		}
		dir := filepath.Join(filepath.Dir(os.Args[0]), "syndic-bin")
		if !strings.Contains(dir, "go-build") {
			if dir, err = os.MkdirTemp("", "syndic-bin-"); err != nil {
				procBuilt.err = err
				return
			}
		}
		// -s -w: no symbol table or DWARF, which only the linker's time
		// would notice.
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", dir+string(filepath.Separator),
			"./contacts/cmd/contacts", "./calendar/cmd/calendar", "./notifications/cmd/notifications")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		if out, err := cmd.CombinedOutput(); err != nil {
			procBuilt.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		procBuilt.dir = dir
	})
	if procBuilt.err != nil {
		t.Fatal(procBuilt.err)
	}
	return procBuilt.dir
}

// procService is one service running as a process.
type procService struct {
	name   string
	URL    string // http://127.0.0.1:PORT
	cmd    *exec.Cmd
	stdout *secOutput
	stderr *secOutput
	done   chan struct{} // closed once the process has exited
	state  *os.ProcessState
}

// procFreePort returns a loopback port that was free a moment ago.
func procFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// procFreePorts returns n distinct loopback ports that were free a moment
// ago: their listeners are all open at once, so none is handed out twice
// (one at a time, a port just closed may come back — and HAProxy binds
// with SO_REUSEPORT, so it would share it with whoever else got it).
func procFreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// procStart starts the binary name with PORT set to a free port and the
// rest of its environment — nothing is inherited — from env(port), and
// waits for /readyz. The process is killed when the test ends, unless it
// has exited already. A port taken between picking and binding is picked
// again.
func procStart(t testing.TB, name string, env func(port int) []string) *procService {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := procLaunch(t, name, procFreePort(t), env, "")
		if p.waitReady(t) {
			return p
		}
		if strings.Contains(p.stderr.String(), "address already in use") && attempt < 5 {
			continue
		}
		t.Fatalf("%s exited before it was ready: %v\nstderr: %s\nstdout: %s", name, p.state, p.stderr, procTail(p.stdout.String()))
	}
}

// procLaunch starts the binary name on port with the environment env(port)
// and nothing else, and does not wait. The process is killed when the test
// ends, unless it has exited already; what (like " (restarted)") names it
// in the output logged when the test failed.
func procLaunch(t testing.TB, name string, port int, env func(port int) []string, what string) *procService {
	t.Helper()
	cmd := exec.Command(filepath.Join(procBinaries(t), name))
	cmd.Env = append([]string{"PORT=" + strconv.Itoa(port)}, env(port)...)
	cmd.Dir = t.TempDir() // where relative defaults such as data/ would land
	return procRun(t, name, fmt.Sprintf("http://127.0.0.1:%d", port), cmd, what)
}

// procRun starts cmd, named name (and what) in the output logged when the
// test failed, serving url; it is killed when the test ends, unless it has
// exited already.
func procRun(t testing.TB, name, url string, cmd *exec.Cmd, what string) *procService {
	t.Helper()
	p := &procService{name: name, URL: url, cmd: cmd, stdout: &secOutput{}, stderr: &secOutput{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	// A group of its own, so that kill ends what it started too (nginx's
	// workers, which hold its output open).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s%s: %v", name, what, err)
	}
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s%s stdout:\n%s\n%s stderr:\n%s", name, what, procTail(p.stdout.String()), name, procTail(p.stderr.String()))
		}
	})
	return p
}

// waitReady polls /readyz until it answers 200 (true) or the process exits
// (false); it fails t after 20 s.
func (p *procService) waitReady(t testing.TB) bool {
	t.Helper()
	return servicetest.WaitReady(t, p.URL, p.done)
}

// terminate sends SIGTERM and waits for the process to exit; it fails t
// if it is still running 30 s later.
func (p *procService) terminate(t testing.TB) *os.ProcessState {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	return p.wait(t)
}

func (p *procService) wait(t testing.TB) *os.ProcessState {
	t.Helper()
	select {
	case <-p.done:
		return p.state
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30 s after SIGTERM", p.name)
		return nil
	}
}

// kill ends the process unless it has exited, and waits for it.
func (p *procService) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func procTail(s string) string {
	if len(s) > 8000 {
		return "…" + s[len(s)-8000:]
	}
	return s
}

// procMetric reads one sample of base's /metrics, with credentials.
func procMetric(t testing.TB, base string, auth func(*http.Request), name string) (float64, bool) {
	t.Helper()
	resp, body := request(t, secClient(t), "GET", base+"/metrics", "", "", auth)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: status = %d", base, resp.StatusCode)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// procEnv is the environment every service of a test gets: its own SQLite
// file in dir, the credentials, info logs and its public address.
func procEnv(dir, name string, cr secCreds, port int) []string {
	return []string{
		"DATABASE_URL=sqlite:" + filepath.Join(dir, name+".db"),
		"API_TOKEN=" + cr.Token, "UI_PASSWORD=" + cr.Password, "UI_USER=" + secUser,
		"LOG_LEVEL=info", fmt.Sprintf("BASE_URL=http://127.0.0.1:%d", port),
	}
}

// TestProcessesStory: the three binaries in their own processes, wired
// together only by their environment — a contact created in contacts
// reaches calendar through the feed, an appointment with that person sends
// one invitation through notifications to a real SMTP server, and it
// arrives exactly once with a text/calendar part that parses. Each process
// then stops on SIGTERM with status 0, having logged only JSON lines and
// no credentials.
func TestProcessesStory(t *testing.T) {
	cr := secNewCreds()
	smtp := smtptest.Start(t)
	dir := t.TempDir()
	notif := procStart(t, "notifications", func(port int) []string {
		return append(procEnv(dir, "notifications", cr, port), "SMTP_URL="+smtp.URL, "MAIL_FROM=syndic <noreply@syndic.test>",
			"RETRY_MIN=10ms", "RETRY_MAX=200ms")
	})
	con := procStart(t, "contacts", func(port int) []string { return procEnv(dir, "contacts", cr, port) })
	cal := procStart(t, "calendar", func(port int) []string {
		return append(procEnv(dir, "calendar", cr, port), "CONTACTS_FEED_URL="+con.URL+"/feed", "NOTIFICATIONS_URL="+notif.URL,
			"POLL_INTERVAL=100ms", "NOTIFY_RETRY_MIN=10ms", "NOTIFY_RETRY_MAX=200ms", "NOTIFY_SWEEP=200ms")
	})
	capi, kapi, napi := secAPI(t, con.URL, cr.bearer), secAPI(t, cal.URL, cr.basic), secAPI(t, notif.URL, cr.bearer)

	inviteNextWeek(kapi, "Design review", addAda(t, capi, kapi).ID)
	smtp.WaitFor(t, 1, 30*time.Second)

	// Once calendar has nothing pending and notifications has sent its one
	// mail, nothing more can arrive.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, found := procMetric(t, cal.URL, cr.bearer, "syndic_notify_pending")
		var l list[notification]
		napi.Must(200, "GET", "/api/notifications", nil, &l)
		if found && pending == 0 && len(l.Items) == 1 && l.Items[0].Status == "sent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calendar pending %v (%v), notifications %+v", pending, found, l.Items)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mails := smtp.Mails()
	if len(mails) != 1 {
		t.Fatalf("%d mails, want exactly 1", len(mails))
	}
	inv := parseInvite(t, mails[0]) // fails unless the text/calendar part parses
	if inv.To != "ada@example.org" || inv.HeaderTo != inv.To {
		t.Errorf("mail to %q (header %q), want ada@example.org", inv.To, inv.HeaderTo)
	}
	if !strings.HasPrefix(inv.Subject, "Invitation: Design review — ") {
		t.Errorf("subject %q, want an invitation to Design review", inv.Subject)
	}
	if inv.Method != "REQUEST" || inv.PartType != "REQUEST" || inv.Sequence != 0 || inv.UID == "" {
		t.Errorf("invitation: METHOD %q, part method %q, SEQUENCE %d, UID %q; want REQUEST, REQUEST, 0 and a UID",
			inv.Method, inv.PartType, inv.Sequence, inv.UID)
	}

	secrets := []string{cr.Token, cr.Password, base64.StdEncoding.EncodeToString([]byte(secUser + ":" + cr.Password))}
	for _, p := range []*procService{cal, con, notif} {
		if st := p.terminate(t); !st.Success() {
			t.Errorf("%s after SIGTERM: %v, want exit status 0", p.name, st)
		}
		secCheckLog(t, p.name, p.stdout.String(), secrets...)
	}
}

// TestProcessesSIGTERM sends SIGTERM to contacts while long-polls on /feed
// wait and contact creations are half-sent: every long-poll is answered
// 304, every creation completes with 201 and is there after a restart, and
// the process exits with status 0 — so within the 10 s drain, as a drain
// that runs out exits 1. The long-polls ask to wait 25 s, longer than the
// drain: with 10 s, a long-poll never released would still end in a 304
// when its wait ran out, at the moment the drain does, and the test could
// not tell. Stdout is JSON lines only, among them "shutting down", and
// holds no credentials.
func TestProcessesSIGTERM(t *testing.T) {
	const longPolls, posts = 4, 3
	cr, wrong := secNewCreds(), secNewCreds()
	dir := t.TempDir()
	env := func(port int) []string { return procEnv(dir, "contacts", cr, port) }
	con := procStart(t, "contacts", env)
	capi := secAPI(t, con.URL, cr.bearer)
	c := secClient(t)

	// Traffic with good and bad credentials before the signal.
	capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Ada Lovelace", "email": "ada@example.org"}, nil)
	secAPI(t, con.URL, cr.basic).Must(200, "GET", "/api/contacts", nil, nil)
	for _, auth := range []func(*http.Request){wrong.bearer, func(r *http.Request) { r.SetBasicAuth(secUser, wrong.Password) }, nil} {
		if resp, _ := request(t, c, "GET", con.URL+"/api/contacts", "", "", auth); resp.StatusCode != 401 {
			t.Errorf("wrong credentials: status = %d, want 401", resp.StatusCode)
		}
	}
	resp, _ := request(t, c, "GET", con.URL+"/feed", "", "", cr.bearer)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" {
		t.Fatalf("GET /feed: status %d, ETag %q", resp.StatusCode, etag)
	}

	type answer struct {
		status   int
		location string
		err      error
	}
	// Long-polls, each on a connection of its own, until contacts says
	// they all wait.
	pollc := &http.Client{Transport: &http.Transport{}}
	defer pollc.CloseIdleConnections()
	polled := make(chan answer, longPolls)
	for range longPolls {
		go func() {
			req, _ := http.NewRequest("GET", con.URL+"/feed", nil)
			req.Header.Set("If-None-Match", etag)
			req.Header.Set("Prefer", "wait=25") // longer than the drain: one not released would make it fail
			cr.bearer(req)
			resp, err := pollc.Do(req)
			if err != nil {
				polled <- answer{err: err}
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			polled <- answer{status: resp.StatusCode, err: err}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if n, _ := procMetric(t, con.URL, cr.bearer, "syndic_feed_longpolls_waiting"); n == longPolls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d long-polls not all waiting after 20 s", longPolls)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Creations whose handler is running, reading a body that has not come
	// yet: with Expect: 100-continue the client learns the handler has
	// started reading (the server's 100 Continue) and only then sends the
	// body, which we hold back until after the signal.
	postc := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	defer postc.CloseIdleConnections()
	posted := make(chan answer, posts)
	bodies := make([]*io.PipeWriter, posts)
	for i := range posts {
		pr, pw := io.Pipe()
		bodies[i] = pw
		reading := make(chan struct{})
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{Got100Continue: func() { close(reading) }})
		req, _ := http.NewRequestWithContext(ctx, "POST", con.URL+"/api/contacts", pr)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Expect", "100-continue")
		cr.bearer(req)
		go func() {
			resp, err := postc.Do(req)
			if err != nil {
				posted <- answer{err: err}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			posted <- answer{status: resp.StatusCode, location: resp.Header.Get("Location")}
		}()
		select {
		case <-reading:
		case a := <-posted:
			t.Fatalf("POST %d answered before its body was sent: %+v", i, a)
		case <-time.After(20 * time.Second):
			t.Fatalf("POST %d: no 100 Continue after 20 s", i)
		}
	}

	if err := con.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range longPolls {
		select {
		case a := <-polled:
			if a.err != nil || a.status != http.StatusNotModified {
				t.Errorf("long-poll after SIGTERM: status %d, error %v; want 304", a.status, a.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("long-polls not answered 20 s after SIGTERM")
		}
	}
	for i, w := range bodies {
		fmt.Fprintf(w, `{"name":"Late %d","email":"late%d@example.org"}`, i, i)
		w.Close()
	}
	var created []string
	for range posts {
		select {
		case a := <-posted:
			if a.err != nil || a.status != http.StatusCreated {
				t.Errorf("POST in flight at SIGTERM: status %d, error %v; want 201", a.status, a.err)
			}
			created = append(created, a.location)
		case <-time.After(20 * time.Second):
			t.Fatal("POSTs not answered 20 s after their bodies were sent")
		}
	}
	if st := con.wait(t); !st.Success() {
		t.Errorf("contacts after SIGTERM: %v, want exit status 0", st)
	}

	out := con.stdout.String()
	lines := secCheckLog(t, "contacts", out, cr.Token, cr.Password, wrong.Token, wrong.Password,
		base64.StdEncoding.EncodeToString([]byte(secUser+":"+cr.Password)),
		base64.StdEncoding.EncodeToString([]byte(secUser+":"+wrong.Password)))
	if !slices.ContainsFunc(lines, func(m map[string]any) bool { return m["msg"] == "shutting down" }) {
		t.Errorf("no \"shutting down\" line in contacts' stdout:\n%s", out)
	}

	// The creations answered 201 are there after a restart on the same
	// database.
	again := procStart(t, "contacts", env)
	var l list[contact]
	secAPI(t, again.URL, cr.bearer).Must(200, "GET", "/api/contacts", nil, &l)
	var names []string
	for _, c := range l.Items {
		names = append(names, c.Name)
	}
	for i := range posts {
		if !slices.Contains(names, fmt.Sprint("Late ", i)) {
			t.Errorf("after a restart: contacts %q, want Late %d among them (created at %v)", names, i, created)
		}
	}
	if st := again.terminate(t); !st.Success() {
		t.Errorf("restarted contacts after SIGTERM: %v, want exit status 0", st)
	}
}

// TestProcessesConfig: each binary's -h exits 0 and lists its variables;
// a bad value stops it at start, before it opens its database, with a
// message on stderr naming the variable.
func TestProcessesConfig(t *testing.T) {
	bins := procBinaries(t)
	run := func(name string, env []string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bins, name), args...)
		cmd.Env, cmd.Dir = env, t.TempDir()
		var out, errOut secOutput
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("%s %v with %v: still running after 20 s", name, args, env)
		}
		if _, exited := err.(*exec.ExitError); err != nil && !exited {
			t.Fatalf("%s: %v", name, err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
	}
	bad := map[string][][2]string{ // binary → {setting, the variable its message must name}
		"contacts": {{"FEED_PAGE_SIZE=0", "FEED_PAGE_SIZE"}},
		"calendar": {{"POLL_INTERVAL=soon", "POLL_INTERVAL"}, {"CONTACTS_FEED_URL=ftp://contacts/feed", "CONTACTS_FEED_URL"},
			{"NOTIFY_WORKERS=0", "NOTIFY_WORKERS"}},
		"notifications": {{"SMTP_URL=http://mail.example.org", "SMTP_URL"}, {"MAIL_FROM=nobody", "MAIL_FROM"}},
	}
	for _, name := range []string{"contacts", "calendar", "notifications"} {
		code, stdout, stderr := run(name, []string{}, "-h")
		if code != 0 {
			t.Errorf("%s -h: exit status %d, want 0 (%s)", name, code, stderr)
		}
		for _, v := range []string{"PORT", "DATABASE_URL", "LOG_LEVEL", "API_TOKEN", "UI_PASSWORD"} {
			if !strings.Contains(stdout, v) {
				t.Errorf("%s -h does not list %s:\n%s", name, v, stdout)
			}
		}
		cases := append([][2]string{{"PORT=abc", "PORT"}, {"PORT=70000", "PORT"}, {"DATABASE_URL=mysql://db/x", "DATABASE_URL"},
			{"LOG_LEVEL=loud", "LOG_LEVEL"}}, bad[name]...)
		for _, c := range cases {
			dir := t.TempDir()
			db := filepath.Join(dir, "x.db")
			env := []string{"PORT=0", "DATABASE_URL=sqlite:" + db, "LOG_LEVEL=info", c[0]}
			code, stdout, stderr := run(name, env)
			if code == 0 {
				t.Errorf("%s with %s: exit status 0, want a failure", name, c[0])
			}
			if !strings.Contains(stderr, c[1]) {
				t.Errorf("%s with %s: stderr %q does not name %s", name, c[0], stderr, c[1])
			}
			if _, err := os.Stat(db); err == nil && c[1] != "DATABASE_URL" {
				t.Errorf("%s with %s: the database was created before the setting was checked", name, c[0])
			}
			if strings.TrimSpace(stdout) != "" {
				var m map[string]any
				for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
					if json.Unmarshal([]byte(line), &m) != nil {
						t.Errorf("%s with %s: stdout line %q is not JSON", name, c[0], line)
					}
				}
			}
		}
	}
}
