package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/shared/feed"

	"github.com/emersion/go-vcard"
)

// contact is a contact as either service's API answers it (contacts has
// no deleted or seq; calendar's copy has both).
type contact = calendar.Contact

type list[T any] struct {
	Items []T `json:"items"`
}

// churn makes n random contact changes through the API — creates, updates
// and deletes — with a few writers at once, and returns the ids it made.
func churn(t *testing.T, c *api, n int, seed uint64) map[int64]bool {
	var mu sync.Mutex
	ids := map[int64]bool{} // id → alive
	var alive []int64
	rng := rand.New(rand.NewPCG(seed, seed))
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range jobs {
				mu.Lock()
				op := rng.IntN(10)
				var id int64
				if len(alive) > 0 {
					id = alive[rng.IntN(len(alive))]
				}
				mu.Unlock()
				switch {
				case op < 6 || id == 0:
					var got contact
					c.Must(201, "POST", "/api/contacts", map[string]string{
						"name": fmt.Sprintf("Person %d «%s»", i, strings.Repeat("é", i%5)), "email": fmt.Sprintf("p%d-%d@example.org", seed, i), "phone": fmt.Sprint(i)}, &got) // emails are unique among contacts
					mu.Lock()
					ids[got.ID] = true
					alive = append(alive, got.ID)
					mu.Unlock()
				case op < 9:
					var cur contact
					if c.Call("GET", contactPath(id), nil, &cur) != 200 {
						continue // deleted meanwhile
					}
					c.Call("PUT", contactPath(id), map[string]any{"name": cur.Name + "+", "email": fmt.Sprintf("u%d-%d@example.org", seed, i), "phone": cur.Phone}, nil,
						"If-Match", fmt.Sprintf(`"%d"`, cur.Version)) // 412 when another writer won: fine
				default:
					if c.Call("DELETE", contactPath(id), nil, nil) == 204 {
						mu.Lock()
						ids[id] = false
						alive = slices.DeleteFunc(alive, func(x int64) bool { return x == id })
						mu.Unlock()
					}
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return ids
}

// head returns the seq of the newest event in the contacts feed.
func head(t *testing.T, contactsURL string) int64 {
	t.Helper()
	resp, err := http.Get(contactsURL + "/feed")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p, err := feed.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) == 0 { // right after a full page: read the archive before
		resp, err := http.Get(p.PrevArchive)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if p, err = feed.Parse(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	return p.Events[len(p.Events)-1].Seq
}

// sameState fails unless calendar's copy equals contacts' state, field by
// field: live contacts alike, deleted ones kept and marked deleted.
// allContacts reads every contact from contacts' API, a page at a time.
func allContacts(con *api) list[contact] {
	var all list[contact]
	for offset := 0; ; offset += 1000 {
		var page list[contact]
		con.Must(200, "GET", fmt.Sprintf("/api/contacts?limit=1000&offset=%d", offset), nil, &page)
		all.Items = append(all.Items, page.Items...)
		if len(page.Items) < 1000 {
			return all
		}
	}
}

func sameState(t *testing.T, con, cal *api, ids map[int64]bool) {
	t.Helper()
	gone := map[int64]bool{}
	for id, alive := range ids {
		if !alive {
			gone[id] = true
		}
	}
	if diff := copyDiff(con, cal, gone); diff != "" {
		t.Error(diff)
	}
}

// copyDiff says how calendar's copy differs from contacts — a live contact
// missing or different (name, email, phone, version), one of gone not
// marked deleted, a contact too many — or "" when it is the same.
func copyDiff(con, cal *api, gone map[int64]bool) string {
	upstream := allContacts(con)
	var local list[contact]
	cal.Must(200, "GET", "/api/contacts", nil, &local)
	byID := map[int64]contact{}
	for _, c := range local.Items {
		byID[c.ID] = c
	}
	for _, u := range upstream.Items {
		if l, ok := byID[u.ID]; !ok || l.Deleted || l.Name != u.Name || l.Email != u.Email || l.Phone != u.Phone || l.Version != u.Version {
			return fmt.Sprintf("contact %d: contacts %+v, calendar %+v", u.ID, u, l)
		}
	}
	for id := range gone {
		if !byID[id].Deleted {
			return fmt.Sprintf("contact %d deleted in contacts, calendar %+v", id, byID[id])
		}
	}
	if len(local.Items) != len(upstream.Items)+len(gone) {
		return fmt.Sprintf("calendar has %d contacts, want %d live + %d deleted", len(local.Items), len(upstream.Items), len(gone))
	}
	return ""
}

// TestPropagation: 1,000 contact changes reach calendar's copy exactly.
func TestPropagation(t *testing.T) {
	con := startContacts(t, "", contacts.Config{})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{})
	capi, kapi := newAPI(t, con.URL), newAPI(t, cal.URL)
	ids := churn(t, capi, 1000, 1)
	h := head(t, con.URL)
	waitSync(t, kapi, 60*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == h && s.Lag == 0 })
	sameState(t, capi, kapi, ids)
}

// TestCatchUp: a calendar started after 10,000 events with
// FEED_START=beginning reaches lag 0 from the oldest archive (the snapshot
// start is TestSnapshotRebootstrapAfterRetention's and BenchmarkSnapshot's).
func TestCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 events")
	}
	con := startContacts(t, "", contacts.Config{})
	capi := newAPI(t, con.URL)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1250 {
				capi.Must(201, "POST", "/api/contacts", map[string]string{"name": fmt.Sprint("P", w, "-", i), "email": fmt.Sprintf("p%d-%d@example.org", w, i)}, nil)
			}
		})
	}
	wg.Wait()
	var requests []string
	var mu sync.Mutex
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{FeedStart: feed.StartBeginning, Follow: func(fc *feed.FollowerConfig) {
		fc.Client = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			requests = append(requests, r.URL.Path)
			mu.Unlock()
			return http.DefaultTransport.RoundTrip(r)
		})}
	}})
	kapi := newAPI(t, cal.URL)
	waitSync(t, kapi, 120*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == 10000 && s.Lag == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(requests) < 3 || requests[0] != "/feed" || requests[1] != "/feed/archive/1" {
		t.Errorf("first requests %v: want /feed, then the oldest archive", requests[:min(3, len(requests))])
	}
	var local list[contact]
	kapi.Must(200, "GET", "/api/contacts", nil, &local)
	if len(local.Items) != 10000 {
		t.Errorf("calendar has %d contacts, want 10000", len(local.Items))
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestVCardImportTenThousand: 10,000 vCards go in through the API in one
// file; the export of all parses back to the same names and emails; and
// calendar's copy equals contacts afterwards.
func TestVCardImportTenThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 cards")
	}
	t.Parallel()
	const n = 10000
	con := startContacts(t, "", contacts.Config{})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{})
	capi, kapi := newAPI(t, con.URL), newAPI(t, cal.URL)

	var file strings.Builder
	want := map[string]string{} // email → name
	for i := range n {
		name, email := fmt.Sprintf("Card Person %d «%c»", i, 'α'+rune(i%24)), fmt.Sprintf("card%d@example.org", i)
		want[email] = name
		fmt.Fprintf(&file, "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:%s\r\nEMAIL:%s\r\nTEL;VALUE=text:+44 20 7946 %04d\r\nEND:VCARD\r\n", name, email, i)
	}
	var res contacts.ImportResult
	start := time.Now()
	capi.Must(200, "POST", "/api/contacts/import", file.String(), &res, "Content-Type", "text/vcard")
	t.Logf("imported %d cards in %v", n, time.Since(start))
	if res.Created != n || len(res.Refused) != 0 {
		t.Fatalf("created %d, refused %d: want %d, 0", res.Created, len(res.Refused), n)
	}

	resp, body := capi.Do("GET", "/contacts.vcf", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	dec := vcard.NewDecoder(bytes.NewReader(body))
	got := 0
	for {
		card, err := dec.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if email := card.Value(vcard.FieldEmail); want[email] != card.Value(vcard.FieldFormattedName) {
			t.Fatalf("exported %q <%s>, imported %q", card.Value(vcard.FieldFormattedName), email, want[email])
		}
		got++
	}
	if got != n {
		t.Fatalf("the export holds %d cards, want %d", got, n)
	}

	waitSync(t, kapi, 60*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == n && s.Lag == 0 })
	if diff := copyDiff(capi, kapi, nil); diff != "" {
		t.Fatal(diff)
	}
}
