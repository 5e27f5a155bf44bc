package contacts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syndic/shared/config"
)

// The benchmarks below measure the service over real loopback TCP, each
// beside a baseline in the same run: a bare net/http handler on its own
// loopback port that writes the same pre-rendered bytes and representation
// headers the service answered, reached through the same client. Each
// benchmark has two sub-benchmarks, baseline then service; both report
// req/s, p50-µs and p99-µs, and service also reports ratio (its req/s over
// the baseline's from the same run). They report and never assert timing:
// only wrong answers fail them. B/op and allocs/op count the whole process,
// client and server. With -count N the testing package runs the baseline N
// times, then the service N times: each ratio is against the last baseline.
// On a shared machine the ratio moves with the neighbours' load; compare
// several runs.
//
//	go test -run '^$' -bench 'ArchivePage|Feed304|CreateContact' -benchtime 2s ./contacts/

// benchParallelism multiplies GOMAXPROCS into the number of client
// goroutines, enough to keep both cores busy while requests wait on the
// loopback.
const benchParallelism = 8

// benchClient returns the loopback client every benchmark shares between
// the baseline and the service: keep-alive with enough idle connections for
// all client goroutines, and no transparent gzip, so encoded bodies arrive
// as sent.
func benchClient(b *testing.B) *http.Client {
	tr := &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// benchReply is a recorded answer that a baseline handler replays.
type benchReply struct {
	status int
	header http.Header
	body   []byte
}

// benchReplayedHeaders are the representation headers a baseline copies
// from the service's answer.
var benchReplayedHeaders = []string{"Content-Type", "Content-Encoding", "Content-Length", "ETag", "Cache-Control", "Vary", "Location"}

// benchRecord sends req with c and keeps the answer, failing unless it has
// status want.
func benchRecord(b *testing.B, c *http.Client, req *http.Request, want int) benchReply {
	b.Helper()
	resp, err := c.Do(req)
	if err != nil {
		b.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	if resp.StatusCode != want {
		b.Fatalf("%s %s: status = %d, want %d: %s", req.Method, req.URL, resp.StatusCode, want, body)
	}
	rep := benchReply{status: resp.StatusCode, header: http.Header{}, body: body}
	for _, k := range benchReplayedHeaders {
		if v := resp.Header.Get(k); v != "" {
			rep.header.Set(k, v)
		}
	}
	return rep
}

// benchBaseline starts a bare net/http server on loopback that drains each
// request body and writes rep.
func benchBaseline(b *testing.B, rep benchReply) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		for k, v := range rep.header {
			h[k] = v
		}
		w.WriteHeader(rep.status)
		w.Write(rep.body)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// benchResult is what one measured run of b.RunParallel saw.
type benchResult struct {
	reqs    int
	elapsed time.Duration
	lat     []time.Duration // sorted
}

func (l benchResult) perSecond() float64 { return float64(l.reqs) / l.elapsed.Seconds() }

func (l benchResult) quantile(q float64) time.Duration {
	if len(l.lat) == 0 {
		return 0
	}
	return l.lat[min(len(l.lat)-1, int(q*float64(len(l.lat))))]
}

// benchLoad runs do b.N times from benchParallelism×GOMAXPROCS goroutines, each
// call timed, and reports req/s, p50-µs and p99-µs. do returns an error for
// any answer that is not the one expected: any error fails the benchmark.
func benchLoad(b *testing.B, do func() error) benchResult {
	b.Helper()
	var (
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, b.N)
		failed int
		first  error
	)
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		own := make([]time.Duration, 0, 256)
		var (
			err  error
			errs int
		)
		for pb.Next() {
			t0 := time.Now()
			e := do()
			own = append(own, time.Since(t0))
			if e != nil {
				errs++
				if err == nil {
					err = e
				}
			}
		}
		mu.Lock()
		lat = append(lat, own...)
		failed += errs
		if err != nil && first == nil {
			first = err
		}
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d of %d requests failed; the first: %v", failed, b.N, first)
	}
	slices.Sort(lat)
	res := benchResult{reqs: b.N, elapsed: elapsed, lat: lat}
	b.ReportMetric(res.perSecond(), "req/s")
	b.ReportMetric(float64(res.quantile(0.50).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(res.quantile(0.99).Nanoseconds())/1e3, "p99-µs")
	return res
}

// benchRatio reports the service's req/s over the baseline's measured in
// the same run (the baseline sub-benchmark runs first).
func benchRatio(b *testing.B, service benchResult, baseline float64) {
	if baseline <= 0 {
		b.Log("no baseline in this run (select the baseline sub-benchmark too): ratio not reported")
		return
	}
	b.ReportMetric(service.perSecond()/baseline, "ratio")
}

// benchGetter returns a do function for benchLoad that GETs url with header and
// expects status and exactly len(body) bytes of body.
func benchGetter(c *http.Client, url string, header http.Header, status int, body int) func() error {
	return func() error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header = header.Clone()
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return fmt.Errorf("GET %s: read body: %w", url, err)
		case resp.StatusCode != status:
			return fmt.Errorf("GET %s: status = %d, want %d", url, resp.StatusCode, status)
		case n != int64(body):
			return fmt.Errorf("GET %s: body is %d bytes, want %d", url, n, body)
		}
		return nil
	}
}

// benchSeed creates n contacts through the JSON API.
func benchSeed(b *testing.B, base string, n int) {
	b.Helper()
	c := newClient(b, base)
	for i := range n {
		c.create(Input{Name: "Seed Person " + strconv.Itoa(i), Email: "seed" + strconv.Itoa(i) + "@example.org", Phone: "+44 20 7946 0000"})
	}
}

// benchGetPair runs the baseline and service sub-benchmarks of a GET that
// answers status: rec is the service's recorded answer to path with header.
func benchGetPair(b *testing.B, c *http.Client, base, path string, header http.Header, rec benchReply) {
	baseline := benchBaseline(b, rec)
	var baselineRate float64
	b.Run("baseline", func(b *testing.B) {
		baselineRate = benchLoad(b, benchGetter(c, baseline+path, header, rec.status, len(rec.body))).perSecond()
	})
	b.Run("service", func(b *testing.B) {
		benchRatio(b, benchLoad(b, benchGetter(c, base+path, header, rec.status, len(rec.body))), baselineRate)
	})
}

// BenchmarkArchivePage measures a full archive page served gzip-encoded
// from the publisher's cache.
func BenchmarkArchivePage(b *testing.B) {
	base := runService(b, Config{FeedPageSize: 50, Common: config.Common{LogLevel: "error"}})
	benchSeed(b, base, 120) // archive pages 1 and 2 are full
	c := benchClient(b)
	header := http.Header{"Accept-Encoding": {"gzip"}}
	const path = "/feed/archive/1"

	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header = header.Clone()
	benchRecord(b, c, req, http.StatusOK) // renders the page into the cache
	req, _ = http.NewRequest(http.MethodGet, base+path, nil)
	req.Header = header.Clone()
	rec := benchRecord(b, c, req, http.StatusOK)
	if got := rec.header.Get("Content-Encoding"); got != "gzip" {
		b.Fatalf("Content-Encoding = %q, want gzip", got)
	}
	if got := rec.header.Get("ETag"); got == "" {
		b.Fatal("archive page has no ETag")
	}
	benchGetPair(b, c, base, path, header, rec)
}

// BenchmarkFeed304 measures a conditional GET of /feed with the current
// ETag, answered 304.
func BenchmarkFeed304(b *testing.B) {
	base := runService(b, Config{FeedPageSize: 50, Common: config.Common{LogLevel: "error"}})
	benchSeed(b, base, 120)
	c := benchClient(b)
	const path = "/feed"

	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	full := benchRecord(b, c, req, http.StatusOK)
	etag := full.header.Get("ETag")
	if etag == "" {
		b.Fatal("/feed has no ETag")
	}
	header := http.Header{"If-None-Match": {etag}}
	req, _ = http.NewRequest(http.MethodGet, base+path, nil)
	req.Header = header.Clone()
	rec := benchRecord(b, c, req, http.StatusNotModified)
	if got := rec.header.Get("ETag"); got != etag {
		b.Fatalf("304 ETag = %q, want %q", got, etag)
	}
	benchGetPair(b, c, base, path, header, rec)
}

// BenchmarkCreateContact measures POST /api/contacts on SQLite, each
// request a new valid contact answered 201.
func BenchmarkCreateContact(b *testing.B) {
	base := runService(b, Config{Common: config.Common{LogLevel: "error"}}) // SQLite in a temp dir
	c := benchClient(b)
	const path = "/api/contacts"
	var seq atomic.Int64
	body := func() []byte {
		n := strconv.FormatInt(seq.Add(1), 10)
		return []byte(`{"name":"Bench Person ` + n + `","email":"bench` + n + `@example.org","phone":"+44 20 7946 0958"}`)
	}
	header := http.Header{"Content-Type": {"application/json"}}
	post := func(url string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body()))
		req.Header = header.Clone()
		return req
	}
	rec := benchRecord(b, c, post(base+path), http.StatusCreated)
	if rec.header.Get("Location") == "" {
		b.Fatal("201 without Location")
	}
	baseline := benchBaseline(b, rec)

	creator := func(url string) func() error {
		return func() error {
			resp, err := c.Do(post(url))
			if err != nil {
				return fmt.Errorf("POST %s: %w", url, err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case err != nil:
				return fmt.Errorf("POST %s: read body: %w", url, err)
			case resp.StatusCode != http.StatusCreated:
				return fmt.Errorf("POST %s: status = %d, want 201: %s", url, resp.StatusCode, got)
			case len(got) == 0 || resp.Header.Get("Location") == "":
				return fmt.Errorf("POST %s: 201 without a body or Location", url)
			}
			return nil
		}
	}
	var baselineRate float64
	b.Run("baseline", func(b *testing.B) {
		baselineRate = benchLoad(b, creator(baseline+path)).perSecond()
	})
	b.Run("service", func(b *testing.B) {
		res := benchLoad(b, creator(base+path))
		b.ReportMetric(res.perSecond(), "creates/s")
		benchRatio(b, res, baselineRate)
	})
}

// BenchmarkImport measures the bulk path: one vCard file of 10,000 cards
// through POST /api/contacts/import, each card a contact and its event, on
// SQLite. It reports contacts/s; each contact's event commits in the
// same transaction, so that is also the rate of events.
func BenchmarkImport(b *testing.B) {
	base := runService(b, Config{Common: config.Common{LogLevel: "error"}})
	c := benchClient(b)
	const cards = 10000
	made := 0
	var took time.Duration
	events := 0
	for b.Loop() {
		var file bytes.Buffer
		for range cards {
			made++
			fmt.Fprintf(&file, "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Bulk Person %d\r\nEMAIL:bulk%d@example.org\r\nTEL;VALUE=text:+44 20 7946 0958\r\nEND:VCARD\r\n", made, made)
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/api/contacts/import", &file)
		req.Header.Set("Content-Type", "text/vcard")
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var res ImportResult
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		took += time.Since(t0)
		if err != nil || resp.StatusCode != http.StatusOK || res.Created != cards {
			b.Fatalf("import: status %d, %+v, %v", resp.StatusCode, res, err)
		}
		events += res.Created
	}
	b.ReportMetric(float64(events)/took.Seconds(), "contacts/s")
}
