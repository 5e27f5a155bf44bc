package e2e

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mmcdole/gofeed/atom"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/shared/config"
	"syndic/shared/feed"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// The benchmarks below measure how calendar's copy of contacts keeps up,
// each beside a baseline measured in the same run (the baseline
// sub-benchmark runs first). They report and never assert timing: only
// wrong answers fail them. Both services log at error. The machine is
// shared and noisy: compare several runs.
//
// BenchmarkCatchUp: a new calendar reads 100,000 archived events (2,000
// pages of 50: 10,000 contacts created, then updated nine times each) from
// contacts, replaying every archive page (FEED_START=beginning). One op is one whole catch-up into a fresh database. service is
// timed from the call that starts calendar to the commit of checkpoint
// 100,000 (the follower's OnApplied hook). baseline is what the same work
// costs with nothing of ours in the way: one process, no HTTP, timed from
// opening its database (with calendar's schema) to the last commit — each
// page's bytes through gofeed's atom parser (atom.Parser, not feed.Parse),
// the event element's JSON decoded, and the entries upserted with plain
// database/sql statements prepared once, one transaction per page with the
// checkpoint. Both databases commit with synchronous=FULL (checked at
// setup). Both report events/s and cpu-µs/event (the process's CPU time
// per event, contacts and calendar being in the process: steadier than
// wall time on a shared machine); service also ratio, its events/s over
// the baseline's, and cpu-ratio, the baseline's CPU per event over its
// own. The events are seeded through contacts' store, not its API
// (100,000 HTTP writes would take most of a minute); the archive pages are
// fetched once during setup, so the publisher's cache holds what it can.
//
// BenchmarkPropagation: one contact at a time is created through the JSON
// API, and the next only once calendar has committed it; the latency runs
// from the start of the POST to that commit (OnApplied). baseline is the
// same POST through the same client with no calendar running; longpoll is
// calendar as configured by default; polling turns long-poll off and polls
// every 100 ms. One op is a batch of propagationWrites sequential writes
// (propagationPollingWrites for polling, where each write waits for a
// poll), so ns/op is per batch. Each reports p50-µs and p99-µs over all its
// writes; longpoll and polling also p50-ratio, their p50 over the bare
// write's.
//
//	go test -run '^$' -bench 'CatchUp|Propagation' -benchtime 3x ./e2e/

const (
	catchUpEvents   = 100000
	catchUpContacts = 10000
	catchUpPageSize = 50

	propagationWrites        = 200
	propagationPollingWrites = 50
	propagationPollInterval  = 100 * time.Millisecond
	propagationWarmup        = 5
)

// benchCommon is the services' test configuration with logs at error.
func benchCommon() config.Common {
	c := common()
	c.LogLevel = "error"
	return c
}

// benchHTTPClient is the loopback client of the benchmarks' own requests:
// keep-alive, and no transparent gzip, so feed pages arrive as sent.
func benchHTTPClient(b *testing.B) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// benchCreate creates a contact through the JSON API and returns it as
// answered, failing unless the answer is 201 with the contact sent.
func benchCreate(c *http.Client, base, name, email, phone string) (contacts.Contact, error) {
	body, _ := json.Marshal(map[string]string{"name": name, "email": email, "phone": phone})
	req, err := http.NewRequest(http.MethodPost, base+"/api/contacts", bytes.NewReader(body))
	if err != nil {
		return contacts.Contact{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return contacts.Contact{}, fmt.Errorf("POST /api/contacts: %w", err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return contacts.Contact{}, fmt.Errorf("POST /api/contacts: read body: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return contacts.Contact{}, fmt.Errorf("POST /api/contacts: status = %d, want 201: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	var got contacts.Contact
	if err := json.Unmarshal(data, &got); err != nil {
		return contacts.Contact{}, fmt.Errorf("POST /api/contacts: %w: %s", err, data)
	}
	if got.ID < 1 || got.Name != name || got.Email != email || got.Phone != phone || got.Version != 1 {
		return contacts.Contact{}, fmt.Errorf("POST /api/contacts: answered %+v for %s <%s> %s", got, name, email, phone)
	}
	return got, nil
}

// benchGetJSON GETs url and decodes the 200 answer into out.
func benchGetJSON(c *http.Client, url string, out any) error {
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status = %d, want 200: %s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// benchSyncStatus returns calendar's /api/sync answer, for messages.
func benchSyncStatus(c *http.Client, calURL string) string {
	var s json.RawMessage
	if err := benchGetJSON(c, calURL+"/api/sync", &s); err != nil {
		return err.Error()
	}
	return string(s)
}

// benchSameCopy reports how calendar's copy (got) differs from the contacts
// created (want): every one there once, equal, live, and carrying its own
// seq, within 1…head when head > 0. With all true, got must hold nothing
// else.
func benchSameCopy(got []calendar.Contact, want map[int64]contacts.Contact, head int64, all bool) error {
	seen := make(map[int64]bool, len(got))
	seqs := make(map[int64]bool, len(got))
	for _, c := range got {
		w, ok := want[c.ID]
		if !ok {
			if all {
				return fmt.Errorf("calendar has contact %d, which was never created: %+v", c.ID, c)
			}
			continue
		}
		switch {
		case seen[c.ID]:
			return fmt.Errorf("calendar has contact %d twice", c.ID)
		case c.Name != w.Name || c.Email != w.Email || c.Phone != w.Phone || c.Version != w.Version || c.Deleted:
			return fmt.Errorf("contact %d: calendar has %+v, want %+v", c.ID, c, w)
		case c.Seq < 1 || (head > 0 && c.Seq > head) || seqs[c.Seq]:
			return fmt.Errorf("contact %d: seq %d is out of range (head %d) or shared", c.ID, c.Seq, head)
		}
		seen[c.ID], seqs[c.Seq] = true, true
	}
	if len(seen) != len(want) {
		for id := range want {
			if !seen[id] {
				return fmt.Errorf("calendar has %d of the %d contacts created; contact %d is missing", len(seen), len(want), id)
			}
		}
	}
	return nil
}

// benchCalendarCopy reads calendar's copy through its API.
func benchCalendarCopy(c *http.Client, calURL string) ([]calendar.Contact, error) {
	var got struct {
		Items []calendar.Contact `json:"items"`
	}
	err := benchGetJSON(c, calURL+"/api/contacts", &got)
	return got.Items, err
}

// benchRate is events per second.
func benchRate(events int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(events) / d.Seconds()
}

// BenchmarkCatchUp measures a new calendar catching up with 100,000
// archived events, beside parsing and applying the same pages in process.
func BenchmarkCatchUp(b *testing.B) {
	conURL := sqldbtest.SQLiteURL(b)
	want := benchSeedStore(b, conURL)
	con := startContacts(b, "", contacts.Config{DatabaseURL: conURL, FeedPageSize: catchUpPageSize, Common: benchCommon()})
	client := benchHTTPClient(b)
	pages := benchArchivePages(b, client, con.URL)

	var baselineRate, baselineCPU float64
	b.Run("baseline", func(b *testing.B) {
		var took, cpu time.Duration
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "calendar.db")
			start, cpu0 := time.Now(), benchCPU()
			err := benchParseApply(context.Background(), path, pages)
			took += time.Since(start)
			cpu += benchCPU() - cpu0
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			db, err := sqldb.Open(context.Background(), "sqlite:"+path)
			if err != nil {
				b.Fatal(err)
			}
			got, err := benchStoredCopy(db)
			if err == nil {
				err = benchSameCopy(got, want, catchUpEvents, true)
			}
			if err == nil {
				err = benchStoredCheckpoint(db, catchUpEvents)
			}
			db.Close()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		baselineRate = benchRate(b.N*catchUpEvents, took)
		b.ReportMetric(baselineRate, "events/s")
		baselineCPU = float64(cpu.Microseconds()) / float64(b.N*catchUpEvents)
		b.ReportMetric(baselineCPU, "cpu-µs/event")
	})
	b.Run("service", func(b *testing.B) {
		var took, cpu time.Duration
		for b.Loop() {
			reached := make(chan time.Time, 1)
			var (
				mu    sync.Mutex
				wrong []int64 // checkpoints that went backwards or past the head
				last  int64
			)
			follow := func(fc *feed.FollowerConfig) {
				next := fc.OnApplied
				fc.OnApplied = func(cp feed.Checkpoint) {
					now := time.Now()
					if next != nil {
						next(cp)
					}
					mu.Lock()
					if cp.Seq <= last || cp.Seq > catchUpEvents {
						wrong = append(wrong, cp.Seq)
					}
					last = cp.Seq
					mu.Unlock()
					if cp.Seq == catchUpEvents {
						select {
						case reached <- now:
						default:
						}
					}
				}
			}
			calURL := benchDurableURL(b, sqldbtest.SQLiteURL(b))
			start, cpu0 := time.Now(), benchCPU()
			// FEED_START=beginning: the archives, every one, not the snapshot (that is BenchmarkSnapshot).
			cal := startCalendar(b, "", con.URL+"/feed", calendar.Config{DatabaseURL: calURL, FeedStart: feed.StartBeginning, Common: benchCommon(), Follow: follow})
			var done time.Time
			select {
			case done = <-reached:
			case <-time.After(5 * time.Minute):
				b.StopTimer()
				b.Fatalf("checkpoint not at %d within 5 min: %s", catchUpEvents, benchSyncStatus(client, cal.URL))
			}
			took += done.Sub(start)
			cpu += benchCPU() - cpu0 // a little past done: what calendar does by the time this runs
			b.StopTimer()
			mu.Lock()
			if len(wrong) > 0 {
				b.Fatalf("checkpoints out of order or past %d: %v", catchUpEvents, wrong)
			}
			mu.Unlock()
			got, err := benchCalendarCopy(client, cal.URL)
			if err == nil {
				err = benchSameCopy(got, want, catchUpEvents, true)
			}
			if err != nil {
				b.Fatal(err)
			}
			cal.Stop()
			b.StartTimer()
		}
		rate := benchRate(b.N*catchUpEvents, took)
		b.ReportMetric(rate, "events/s")
		cpuPer := float64(cpu.Microseconds()) / float64(b.N*catchUpEvents)
		b.ReportMetric(cpuPer, "cpu-µs/event")
		if baselineRate > 0 {
			b.ReportMetric(rate/baselineRate, "ratio")
			b.ReportMetric(baselineCPU/cpuPer, "cpu-ratio")
		} else {
			b.Log("no baseline in this run (select the baseline sub-benchmark too): ratio not reported")
		}
	})
}

// benchCPU is the CPU time (user and system) this process has used: with
// every service in process, the CPU both contacts and calendar spent.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchDurableURL returns the sqlite: url as it is, once a connection of
// sqldb's on it says synchronous=FULL (sqldb's default): every commit
// fsynced, as in the baseline.
func benchDurableURL(b *testing.B, url string) string {
	b.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var mode int
	if err := db.QueryRow(context.Background(), `PRAGMA synchronous`).Scan(&mode); err != nil {
		b.Fatal(err)
	}
	if mode != 2 {
		b.Fatalf("%s: synchronous = %d, want 2 (FULL)", url, mode)
	}
	return url
}

// benchSeedStore writes catchUpEvents events into a contacts database at
// url through contacts' store (no HTTP, commits not synced: this is
// setup): catchUpContacts contacts created, then each updated in turn, the
// name, email or phone changing, until there are catchUpEvents events. It
// returns the contacts as they end up, by id.
func benchSeedStore(b *testing.B, url string) map[int64]contacts.Contact {
	b.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, url+"?_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store, err := contacts.NewSQLStore(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	want := make(map[int64]contacts.Contact, catchUpContacts)
	ids := make([]int64, 0, catchUpContacts)
	for i := range catchUpContacts {
		c, err := store.Create(ctx, contacts.Input{Name: fmt.Sprintf("Catch Up %d", i), Email: fmt.Sprintf("catchup%d@example.org", i), Phone: fmt.Sprintf("+44 20 7946 %04d", i)})
		if err != nil {
			b.Fatal(err)
		}
		if _, dup := want[c.ID]; dup {
			b.Fatalf("contact id %d created twice", c.ID)
		}
		want[c.ID] = c
		ids = append(ids, c.ID)
	}
	for n := catchUpContacts; n < catchUpEvents; n++ {
		c := want[ids[n%catchUpContacts]]
		in := contacts.Input{Name: c.Name, Email: c.Email, Phone: c.Phone}
		switch n % 3 {
		case 0:
			in.Name = fmt.Sprintf("Catch Up %d v%d", c.ID, c.Version+1)
		case 1:
			in.Email = fmt.Sprintf("catchup%d.v%d@example.org", c.ID, c.Version+1)
		default:
			in.Phone = fmt.Sprintf("+44 20 7946 %04d ext %d", c.ID%10000, c.Version+1)
		}
		after, err := store.Update(ctx, c.ID, c.Version, in)
		if err != nil {
			b.Fatal(err)
		}
		if after.Version != c.Version+1 {
			b.Fatalf("contact %d: update answered version %d, want %d", c.ID, after.Version, c.Version+1)
		}
		want[c.ID] = after
	}
	if head, err := store.Head(ctx); err != nil || head != catchUpEvents {
		b.Fatalf("head = %d (%v), want %d", head, err, catchUpEvents)
	}
	return want
}

// benchArchivePages fetches the archive pages of catchUpEvents events,
// uncompressed, and checks that they and /feed hold exactly those events.
func benchArchivePages(b *testing.B, c *http.Client, base string) [][]byte {
	b.Helper()
	get := func(url string) []byte {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			b.Fatalf("GET %s: read body: %v", url, err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" {
			b.Fatalf("GET %s: status %d, Content-Encoding %q: want 200, identity", url, resp.StatusCode, resp.Header.Get("Content-Encoding"))
		}
		return body
	}
	n := catchUpEvents / catchUpPageSize
	cur, err := feed.Parse(bytes.NewReader(get(base + "/feed")))
	if err != nil {
		b.Fatalf("/feed: %v", err)
	}
	// /feed holds the newest page's worth, all of it in archive n.
	if highestSeq(cur.Events) > catchUpEvents || cur.PrevArchive != base+"/feed/archive/"+strconv.Itoa(n) {
		b.Fatalf("/feed holds events up to %d after %s: want none after archive %d", highestSeq(cur.Events), cur.PrevArchive, n)
	}
	pages := make([][]byte, n)
	for k := 1; k <= n; k++ {
		url := base + "/feed/archive/" + strconv.Itoa(k)
		pages[k-1] = get(url)
		p, err := feed.Parse(bytes.NewReader(pages[k-1]))
		if err != nil {
			b.Fatalf("%s: %v", url, err)
		}
		if !p.Archive || len(p.Events) != catchUpPageSize || p.Events[0].Seq != int64((k-1)*catchUpPageSize+1) || p.Self != url {
			b.Fatalf("%s: archive %v, self %s, %d events from seq %d: want a full archive page from %d", url, p.Archive, p.Self, len(p.Events), benchLowest(p), (k-1)*catchUpPageSize+1)
		}
	}
	return pages
}

func benchLowest(p *feed.Page) int64 {
	if len(p.Events) == 0 {
		return 0
	}
	return p.Events[0].Seq
}

// benchParseApply is the baseline's catch-up, built from the libraries
// alone: it creates calendar's schema in a fresh SQLite database at path,
// opens it with plain database/sql and the pragmas sqldb uses by default
// (synchronous=FULL among them), prepares the upserts once, then parses
// each page with gofeed's atom parser, decodes each entry's event element
// and applies the events after the checkpoint in one transaction with the
// new checkpoint.
func benchParseApply(ctx context.Context, path string, pages [][]byte) error {
	mdb, err := sqldb.Open(ctx, "sqlite:"+path)
	if err != nil {
		return err
	}
	_, err = calendar.NewSQLStore(ctx, mdb, calendar.Mailer{})
	mdb.Close()
	if err != nil {
		return err
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return err
	}
	defer db.Close()
	var mode int
	if err := db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&mode); err != nil || mode != 2 {
		return fmt.Errorf("synchronous = %d (%v), want 2 (FULL)", mode, err)
	}
	upsert, err := db.PrepareContext(ctx, `INSERT INTO contacts (id, name, email, phone, version, deleted, updated_at, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, phone = excluded.phone,
			version = excluded.version, deleted = excluded.deleted, updated_at = excluded.updated_at, seq = excluded.seq`)
	if err != nil {
		return err
	}
	defer upsert.Close()
	checkpoint, err := db.PrepareContext(ctx, `INSERT INTO feed_checkpoints (name, seq, page, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, page = excluded.page, updated_at = excluded.updated_at`)
	if err != nil {
		return err
	}
	defer checkpoint.Close()

	type event struct {
		seq     int64
		deleted bool
		c       struct {
			ID        int64     `json:"id"`
			Name      string    `json:"name"`
			Email     string    `json:"email"`
			Phone     string    `json:"phone"`
			Version   int64     `json:"version"`
			UpdatedAt time.Time `json:"updated_at"`
		}
	}
	var cp int64
	var events []event
	for _, body := range pages {
		f, err := (&atom.Parser{}).Parse(bytes.NewReader(body))
		if err != nil {
			return err
		}
		var self string
		for _, l := range f.Links {
			if l.Rel == "self" {
				self = l.Href
			}
		}
		events = events[:0]
		for _, en := range f.Entries {
			xs := en.Extensions["ev"]["event"]
			if len(xs) != 1 {
				return fmt.Errorf("entry %s: %d event elements", en.ID, len(xs))
			}
			var e event
			if e.seq, err = strconv.ParseInt(xs[0].Attrs["seq"], 10, 64); err != nil {
				return fmt.Errorf("entry %s: %w", en.ID, err)
			}
			if e.seq <= cp {
				continue
			}
			if err := json.Unmarshal([]byte(xs[0].Value), &e.c); err != nil {
				return fmt.Errorf("entry %s: %w", en.ID, err)
			}
			e.deleted = xs[0].Attrs["type"] == "contact.deleted"
			events = append(events, e)
		}
		slices.SortFunc(events, func(a, b event) int { return cmp.Compare(a.seq, b.seq) })
		for i, e := range events {
			if e.seq != cp+1+int64(i) {
				return fmt.Errorf("page %s jumps from %d to %d", self, cp+int64(i), e.seq)
			}
		}
		if len(events) == 0 {
			continue
		}
		seq := events[len(events)-1].seq
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		up, save := tx.StmtContext(ctx, upsert), tx.StmtContext(ctx, checkpoint)
		for _, e := range events {
			c := e.c
			if _, err := up.ExecContext(ctx, c.ID, c.Name, c.Email, c.Phone, c.Version, e.deleted, c.UpdatedAt.UnixMicro(), e.seq); err != nil {
				tx.Rollback()
				return fmt.Errorf("apply seq %d: %w", e.seq, err)
			}
		}
		if _, err := save.ExecContext(ctx, "contacts", seq, self, time.Now().UnixMicro()); err != nil {
			tx.Rollback()
			return fmt.Errorf("save checkpoint: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		cp = seq
	}
	return nil
}

// benchStoredCopy reads the baseline's copy of contacts.
func benchStoredCopy(db *sqldb.DB) ([]calendar.Contact, error) {
	rows, err := db.Query(context.Background(), `SELECT id, name, email, phone, version, deleted, seq FROM contacts`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []calendar.Contact
	for rows.Next() {
		var c calendar.Contact
		if err := rows.Scan(&c.ID, &c.Name, &c.Email, &c.Phone, &c.Version, &c.Deleted, &c.Seq); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// benchStoredCheckpoint checks the baseline's checkpoint.
func benchStoredCheckpoint(db *sqldb.DB, want int64) error {
	var seq int64
	if err := db.QueryRow(context.Background(), `SELECT seq FROM feed_checkpoints WHERE name = 'contacts'`).Scan(&seq); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if seq != want {
		return fmt.Errorf("checkpoint = %d, want %d", seq, want)
	}
	return nil
}

// BenchmarkPropagation measures how long a contact written through the
// API takes to be committed in calendar's copy, with long-poll and with
// polling, beside the write alone.
func BenchmarkPropagation(b *testing.B) {
	con := startContacts(b, "", contacts.Config{Common: benchCommon()})
	client := benchHTTPClient(b)
	n := 0
	create := func() (contacts.Contact, error) {
		n++
		return benchCreate(client, con.URL, "Propagation Person "+strconv.Itoa(n), "prop"+strconv.Itoa(n)+"@example.org", "+44 20 7946 0958")
	}

	var baselineP50 time.Duration
	b.Run("baseline", func(b *testing.B) {
		var lat []time.Duration
		for b.Loop() {
			for range propagationWrites {
				t0 := time.Now()
				if _, err := create(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
		}
		baselineP50 = benchLatencies(b, lat, 0)
	})
	b.Run("longpoll", func(b *testing.B) {
		benchPropagate(b, client, con.URL, "", create, propagationWrites, nil, 0, baselineP50)
	})
	b.Run("polling", func(b *testing.B) {
		benchPropagate(b, client, con.URL, "", create, propagationPollingWrites, func(fc *feed.FollowerConfig) {
			fc.Wait = -1
			fc.PollInterval = propagationPollInterval
		}, propagationPollInterval, baselineP50)
	})
}

// benchPropagate starts a calendar on calendarDB ("" for SQLite in a temp
// dir; tweak, if set, adjusts its follower) and, per op, creates writes
// contacts one after the other, each once the previous one is in
// calendar's copy, and reports the latencies. With
// spread > 0 each write waits a random part of spread first, so writes do
// not fall into step with a poll (right after an arrival the follower
// fetches again at once, which a write then would always catch).
func benchPropagate(b *testing.B, client *http.Client, contactsURL, calendarDB string, create func() (contacts.Contact, error), writes int, tweak func(*feed.FollowerConfig), spread, baselineP50 time.Duration) {
	arr := newBenchArrivals()
	cal := startCalendar(b, "", contactsURL+"/feed", calendar.Config{DatabaseURL: calendarDB, Common: benchCommon(), Follow: arr.follow(tweak)})
	await := func(c contacts.Contact) time.Time {
		at, err := arr.wait(c.ID, 30*time.Second)
		if err != nil {
			b.Fatalf("contact %d: %v; sync %s", c.ID, err, benchSyncStatus(client, cal.URL))
		}
		return at
	}
	// Catch up with what earlier sub-benchmarks wrote and settle into the
	// steady state (connections open, the long-poll waiting).
	for range propagationWarmup {
		c, err := create()
		if err != nil {
			b.Fatal(err)
		}
		await(c)
	}
	arr.forget()

	want := map[int64]contacts.Contact{}
	var lat []time.Duration
	for b.Loop() {
		for range writes {
			if spread > 0 {
				time.Sleep(rand.N(spread)) // spreads writes over the poll cycle; not synchronisation
			}
			t0 := time.Now()
			c, err := create()
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, await(c).Sub(t0))
			want[c.ID] = c
		}
	}
	got, err := benchCalendarCopy(client, cal.URL)
	if err == nil {
		err = benchSameCopy(got, want, 0, false)
	}
	if err != nil {
		b.Fatal(err)
	}
	benchLatencies(b, lat, baselineP50)
}

// benchLatencies reports p50-µs and p99-µs of lat and, when baselineP50 is
// set, p50-ratio: the p50 over the baseline's. It returns the p50.
func benchLatencies(b *testing.B, lat []time.Duration, baselineP50 time.Duration) time.Duration {
	if len(lat) == 0 {
		b.Fatal("no latencies measured")
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	p50 := q(0.50)
	b.ReportMetric(float64(p50.Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(q(0.99).Nanoseconds())/1e3, "p99-µs")
	if baselineP50 > 0 {
		b.ReportMetric(float64(p50)/float64(baselineP50), "p50-ratio")
	}
	return p50
}

// benchArrivals notes when each contact's event is committed in calendar's
// copy: the wrapped Apply collects the contact ids of the transaction being
// written, and OnApplied, called after the commit, stamps them.
type benchArrivals struct {
	mu      sync.Mutex
	tx      *sqldb.Tx // the transaction pending belongs to
	pending []int64
	at      map[int64]time.Time // contact id → commit time, until waited for
	signal  chan struct{}       // poked after each commit
}

func newBenchArrivals() *benchArrivals {
	return &benchArrivals{at: map[int64]time.Time{}, signal: make(chan struct{}, 1)}
}

// follow returns the calendar Follow hook: tweak (if set) first, then
// Apply and OnApplied wrapped around whatever they were.
func (a *benchArrivals) follow(tweak func(*feed.FollowerConfig)) func(*feed.FollowerConfig) {
	return func(fc *feed.FollowerConfig) {
		if tweak != nil {
			tweak(fc)
		}
		apply, applied := fc.Apply, fc.OnApplied
		fc.Apply = func(ctx context.Context, tx *sqldb.Tx, e feed.Event) error {
			if err := apply(ctx, tx, e); err != nil {
				return err
			}
			var c struct {
				ID int64 `json:"id"`
			}
			if err := json.Unmarshal(e.Data, &c); err != nil {
				return err
			}
			a.mu.Lock()
			if a.tx != tx { // a new transaction: a rolled-back one's ids never arrived
				a.tx, a.pending = tx, a.pending[:0]
			}
			a.pending = append(a.pending, c.ID)
			a.mu.Unlock()
			return nil
		}
		fc.OnApplied = func(cp feed.Checkpoint) {
			now := time.Now()
			if applied != nil {
				applied(cp)
			}
			a.mu.Lock()
			for _, id := range a.pending {
				a.at[id] = now
			}
			a.tx, a.pending = nil, a.pending[:0]
			a.mu.Unlock()
			select {
			case a.signal <- struct{}{}:
			default:
			}
		}
	}
}

// wait returns when contact id was committed in calendar's copy, waiting
// up to timeout for it.
func (a *benchArrivals) wait(id int64, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		at, ok := a.at[id]
		delete(a.at, id)
		a.mu.Unlock()
		if ok {
			return at, nil
		}
		select {
		case <-a.signal:
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("not in calendar's copy after %v", timeout)
		}
	}
}

// forget drops the arrivals not waited for.
func (a *benchArrivals) forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.at)
}

// highestSeq is the highest seq of es (0 for none).
func highestSeq(es []feed.Event) int64 {
	var h int64
	for _, e := range es {
		h = max(h, e.Seq)
	}
	return h
}
