package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkFanOut: one write, fanOutFollowers followers waiting for it.
//
// contacts runs as its own process, built as make build does (see
// BenchmarkResidentMemory), on SQLite in a temporary folder.
// fanOutFollowers light followers — one goroutine and one keep-alive
// connection each — long-poll GET /feed the way shared/feed's Follower
// does once it has caught up: ?after=SEQ, If-None-Match with the last
// ETag, Prefer: wait=25, Accept-Encoding: identity. A follower reads each
// 200 whole, checks that it holds the event it waited for, and asks again
// at once. In contacts each follower writes its requests to its own
// connection and reads the answers by hand (status line, headers,
// Content-Length body), so the client side takes less of the machine than
// contacts does; contacts-httpclient sends the same requests through
// net/http's client, one shared Transport with room for every connection
// (MaxIdleConnsPerHost above fanOutFollowers), and costs about three times
// the client CPU. Each round waits until contacts'
// syndic_feed_longpolls_waiting gauge shows every follower waiting, then
// creates one contact through the JSON API; last-p50-ms and last-p99-ms
// are, over all rounds, the time from that POST's answer to the last
// follower's 200, and follower-p50-ms / follower-p99-ms the same to each
// follower's 200 (a follower may have its answer before the writer has its
// own: those times are negative). idle-MB is contacts' VmRSS 2 s after
// /readyz, before any follower connects; waiting-MB the highest VmRSS read
// with every follower waiting, before each round's write, and
// waiting-extra-MB the difference. contacts-cpu-ms/round and
// client-cpu-ms/round are the CPU time contacts and this test process (the
// followers) used per round: both share the machine.
//
// nats is the anchor, in the same run: NATS core at 127.0.0.1:4222 (skipped
// with a note when it is not there), fanOutFollowers connections with one
// subscription each; each round publishes one message and measures from
// just before Publish (core NATS has no acknowledgment) to the last
// subscriber's callback, and to each one's.
//
// One op is fanOutRounds rounds.
//
//	go test -run '^$' -bench FanOut -benchtime 3x ./e2e/
const (
	fanOutFollowers = 1000
	fanOutRounds    = 50
	fanOutNATS      = "nats://127.0.0.1:4222"
)

func BenchmarkFanOut(b *testing.B) {
	b.Run("nats", benchFanOutNATS)
	b.Run("contacts", func(b *testing.B) { benchFanOutContacts(b, false) })
	b.Run("contacts-httpclient", func(b *testing.B) { benchFanOutContacts(b, true) })
}

// fanOutStats gathers a round's times and reports their percentiles.
type fanOutStats struct {
	last, each []time.Duration
}

func (s *fanOutStats) report(b *testing.B) {
	if len(s.last) == 0 {
		return
	}
	slices.Sort(s.last)
	slices.Sort(s.each)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(ms(percentile(s.last, 50)), "last-p50-ms")
	b.ReportMetric(ms(percentile(s.last, 99)), "last-p99-ms")
	b.ReportMetric(ms(percentile(s.each, 50)), "follower-p50-ms")
	b.ReportMetric(ms(percentile(s.each, 99)), "follower-p99-ms")
	b.ReportMetric(float64(len(s.last)), "rounds")
}

// percentile returns the pth percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func benchFanOutNATS(b *testing.B) {
	pub, err := nats.Connect(fanOutNATS, nats.Timeout(2*time.Second))
	if err != nil {
		b.Skipf("no NATS at %s (%v): the anchor is skipped", fanOutNATS, err)
	}
	defer pub.Close()
	subject := "syndic.fanout." + strconv.FormatInt(time.Now().UnixNano(), 36)
	var (
		got  = make([]atomic.Int64, fanOutFollowers) // unix ns of each one's last message
		left atomic.Int64
		done = make(chan struct{}, 1)
	)
	conns := make([]*nats.Conn, fanOutFollowers)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := nats.Connect(fanOutNATS, nats.Timeout(5*time.Second))
		if err != nil {
			b.Fatalf("subscriber %d: %v", i, err)
		}
		conns[i] = c
		if _, err := c.Subscribe(subject, func(*nats.Msg) {
			got[i].Store(time.Now().UnixNano())
			if left.Add(-1) == 0 {
				done <- struct{}{}
			}
		}); err != nil {
			b.Fatal(err)
		}
		if err := c.Flush(); err != nil { // the server has the subscription
			b.Fatal(err)
		}
	}
	var s fanOutStats
	for b.Loop() {
		for range fanOutRounds {
			left.Store(fanOutFollowers)
			start := time.Now()
			if err := pub.Publish(subject, []byte("one contact changed")); err != nil {
				b.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				b.Fatalf("%d of %d subscribers still without the message after 10 s", left.Load(), fanOutFollowers)
			}
			s.add(start, got)
		}
	}
	s.report(b)
}

// add records one round: each follower's time in got (unix ns) against
// start.
func (s *fanOutStats) add(start time.Time, got []atomic.Int64) {
	var last time.Duration
	for i := range got {
		d := time.Duration(got[i].Load() - start.UnixNano())
		s.each = append(s.each, d)
		last = max(last, d)
	}
	s.last = append(s.last, last)
}

func benchFanOutContacts(b *testing.B, httpClient bool) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("reads VmRSS from /proc: Linux only")
	}
	dir := b.TempDir()
	// FANOUT_CONTACTS names another main package to run as contacts, e.g.
	// ./testdata/pprofcontacts, which serves net/http/pprof on PPROF_ADDR,
	// to profile it under this load.
	pkg, env := cmp.Or(os.Getenv("FANOUT_CONTACTS"), "syndic/contacts/cmd/contacts"), []string{"DATABASE_URL=sqlite:" + filepath.Join(dir, "contacts.db")}
	if a := os.Getenv("PPROF_ADDR"); a != "" {
		env = append(env, "PPROF_ADDR="+a)
	}
	// FANOUT_GOGC is contacts' GOGC (the runtime's; this process keeps its own).
	if g := os.Getenv("FANOUT_GOGC"); g != "" {
		env = append(env, "GOGC="+g)
	}
	memoryBuild(b, dir, pkg)
	con := memoryStart(b, dir, filepath.Base(pkg), env...)
	con.waitReady(b, 30*time.Second)
	time.Sleep(memoryIdle)
	idle, err := memoryRSS(con)
	if err != nil {
		b.Fatal(err)
	}

	writer := benchHTTPClient(b)
	if _, err := benchCreate(writer, con.url, "Fan Out", "fan0@example.org", "+44 20 7946 0958"); err != nil {
		b.Fatal(err)
	}
	// contacts-httpclient: one Transport for every follower, with room for
	// all their connections. contacts: each follower its own connection,
	// written to and read from directly, so the client side takes less of
	// the machine than contacts does.
	followers := make([]fanOutPoller, fanOutFollowers)
	if httpClient {
		tr := &http.Transport{
			MaxIdleConnsPerHost: fanOutFollowers + 10,
			MaxIdleConns:        fanOutFollowers + 10,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		for i := range followers {
			followers[i] = &fanOutFollower{client: client, url: con.url + "/feed"}
		}
	} else {
		for i := range followers {
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(con.url, "http://"), 5*time.Second)
			if err != nil {
				b.Fatalf("follower %d: %v", i, err)
			}
			defer c.Close() // also what ends its poll once the benchmark is done
			followers[i] = &fanOutRaw{conn: c, br: bufio.NewReader(c), host: strings.TrimPrefix(con.url, "http://"), path: "/feed"}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var (
		got    = make([]atomic.Int64, fanOutFollowers) // unix ns of each one's last 200
		seen   = make([]atomic.Int64, fanOutFollowers) // the head each one has
		want   atomic.Int64                            // the head of the round
		left   atomic.Int64
		done   = make(chan struct{}, 1)
		errMu  sync.Mutex
		failed error
		wg     sync.WaitGroup
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if failed == nil && ctx.Err() == nil {
			failed = err
		}
	}
	for i := range fanOutFollowers {
		wg.Go(func() {
			f := followers[i]
			for ctx.Err() == nil {
				head, err := f.poll(ctx)
				if err != nil {
					fail(fmt.Errorf("follower %d: %w", i, err))
					return
				}
				if head == seen[i].Load() {
					continue // 304 after the wait: ask again
				}
				seen[i].Store(head)
				if head == want.Load() {
					got[i].Store(time.Now().UnixNano())
					if left.Add(-1) == 0 {
						done <- struct{}{}
					}
				}
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	check := func() {
		errMu.Lock()
		defer errMu.Unlock()
		if failed != nil {
			b.Fatal(failed)
		}
	}

	var (
		s       fanOutStats
		waiting float64
		head    int64 = 1
		conCPU  time.Duration
		ownCPU  time.Duration
	)
	for b.Loop() {
		fanOutWaitAll(b, con.url, check)
		con0, err := fanOutCPU(con.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		own0 := fanOutOwnCPU()
		for range fanOutRounds {
			fanOutWaitAll(b, con.url, check)
			rss, err := memoryRSS(con)
			if err != nil {
				b.Fatal(err)
			}
			waiting = max(waiting, rss[0])
			head++
			want.Store(head)
			left.Store(fanOutFollowers)
			if _, err := benchCreate(writer, con.url, "Fan Out", fmt.Sprintf("fan%d@example.org", head), "+44 20 7946 0958"); err != nil { // emails are unique
				b.Fatal(err)
			}
			answered := time.Now()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				check()
				b.Fatalf("%d of %d followers still without seq %d after 30 s", left.Load(), fanOutFollowers, head)
			}
			s.add(answered, got)
		}
		fanOutWaitAll(b, con.url, check)
		con1, err := fanOutCPU(con.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		conCPU += con1 - con0
		ownCPU += fanOutOwnCPU() - own0
	}
	b.StopTimer()
	check()
	s.report(b)
	rounds := float64(len(s.last))
	b.ReportMetric(float64(conCPU)/1e6/rounds, "contacts-cpu-ms/round")
	b.ReportMetric(float64(ownCPU)/1e6/rounds, "client-cpu-ms/round")
	b.ReportMetric(idle[0], "idle-MB")
	b.ReportMetric(waiting, "waiting-MB")
	b.ReportMetric(waiting-idle[0], "waiting-extra-MB")
}

// fanOutCPU returns the CPU time (user and system) process pid has used.
func fanOutCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	_, rest, _ := bytes.Cut(data, []byte(") ")) // after the command name
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}

// fanOutOwnCPU returns the CPU time this process has used: the followers,
// the writer and the benchmark.
func fanOutOwnCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fanOutWaitAll waits until contacts' syndic_feed_longpolls_waiting shows every
// follower waiting.
func fanOutWaitAll(b *testing.B, base string, check func()) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		check()
		n, err := fanOutMetric(c, base, "syndic_feed_longpolls_waiting")
		if err != nil {
			b.Fatal(err)
		}
		if n >= fanOutFollowers {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%v of %d followers waiting after 30 s", n, fanOutFollowers)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fanOutMetric(c *http.Client, base, name string) (float64, error) {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s/metrics", name, base)
}

// fanOutPoller is one light follower: poll sends one long-poll and returns
// the head the feed has then.
type fanOutPoller interface {
	poll(ctx context.Context) (int64, error)
}

// fanOutFollower long-polls a feed through net/http's client as
// shared/feed's Follower does after catching up, without parsing: the
// ETag names the head.
type fanOutFollower struct {
	client *http.Client
	url    string
	etag   string
	head   int64
}

// poll sends one GET and returns the head the feed has then.
func (f *fanOutFollower) poll(ctx context.Context) (int64, error) {
	url := f.url
	if f.head > 0 {
		url += "?after=" + strconv.FormatInt(f.head, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/atom+xml")
	req.Header.Set("Accept-Encoding", "identity")
	if f.etag != "" {
		req.Header.Set("If-None-Match", f.etag)
		req.Header.Set("Prefer", "wait=25")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return f.head, nil
	case http.StatusOK:
	default:
		return 0, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	etag := resp.Header.Get("ETag")
	head, err := fanOutETagHead(etag)
	if err != nil {
		return 0, err
	}
	if head > f.head && !bytes.Contains(body, []byte(` seq="`+strconv.FormatInt(head, 10)+`"`)) {
		return 0, fmt.Errorf("GET %s: the document with ETag %s does not hold seq %d", url, etag, head)
	}
	f.etag, f.head = etag, head
	return head, nil
}

// fanOutETagHead reads the head from a subscription document's ETag,
// "f<version>-<page size>-<head>-<base hash>".
func fanOutETagHead(etag string) (int64, error) {
	parts := strings.Split(strings.Trim(etag, `"`), "-")
	if len(parts) < 4 || !strings.HasPrefix(parts[0], "f") {
		return 0, errors.New("ETag " + etag + ": not a subscription document's")
	}
	return strconv.ParseInt(parts[2], 10, 64)
}

// fanOutRaw long-polls a feed with the same requests as fanOutFollower,
// written to its connection by hand, and reads the answers by hand: a
// status line, headers and a Content-Length body (the publisher's answers
// are never chunked).
type fanOutRaw struct {
	conn       net.Conn
	br         *bufio.Reader
	host, path string
	etag       string
	head       int64
	req, body  []byte
}

func (f *fanOutRaw) poll(context.Context) (int64, error) {
	f.req = fmt.Appendf(f.req[:0], "GET %s?after=%d HTTP/1.1\r\nHost: %s\r\nAccept: application/atom+xml\r\nAccept-Encoding: identity\r\n", f.path, f.head, f.host)
	if f.etag != "" {
		f.req = fmt.Appendf(f.req, "If-None-Match: %s\r\nPrefer: wait=25\r\n", f.etag)
	}
	f.req = append(f.req, "\r\n"...)
	if _, err := f.conn.Write(f.req); err != nil {
		return 0, err
	}
	line, err := f.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	_, rest, _ := bytes.Cut(line, []byte(" "))
	status, _, _ := bytes.Cut(rest, []byte(" "))
	length, etag := -1, ""
	for {
		line, err := f.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, fmt.Errorf("Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("ETag")):
			etag = string(value)
		}
	}
	switch string(status) {
	case "304":
		return f.head, nil
	case "200":
	default:
		return 0, fmt.Errorf("GET %s: status %s", f.path, status)
	}
	if length < 0 {
		return 0, fmt.Errorf("GET %s: 200 without Content-Length", f.path)
	}
	f.body = slices.Grow(f.body[:0], length)[:length]
	if _, err := io.ReadFull(f.br, f.body); err != nil {
		return 0, err
	}
	head, err := fanOutETagHead(etag)
	if err != nil {
		return 0, err
	}
	if head > f.head && !bytes.Contains(f.body, []byte(` seq="`+strconv.FormatInt(head, 10)+`"`)) {
		return 0, fmt.Errorf("GET %s: the document with ETag %s does not hold seq %d", f.path, etag, head)
	}
	f.etag, f.head = etag, head
	return head, nil
}
