// The compacted snapshot and archive retention, publisher side.
//
// The snapshot at Path/snapshot is the latest event of every subject (for
// contacts: of every contact, a deleted one's being its tombstone) with
// seq ≤ an as-of seq, as an Atom document whose entries are shaped exactly
// like the feed's, so a follower parses it with Parse and applies it with
// its ApplyFunc. The document carries the as-of seq in an ev:snapshot
// element; a follower that applies every entry of every page and then
// checkpoints that seq holds what a replay of the archives up to it would
// have left, and follows the feed from there.
//
// Paging: the first page (/feed/snapshot) takes the head as its as-of
// seq; it links its next page (rel="next", RFC 5005 §3) as
// /feed/snapshot?seq=S&after=KEY, each page carrying the same S, in subject
// key order. The pages are consistent as of S without one long read
// transaction: the event log is append-only and dense below the head, so
// "the latest event with seq ≤ S of each subject" is the same whenever it
// is read — every page computes it afresh over the same rows. (That is why
// retention refuses to serve dropped archive pages rather than deleting
// their events: deleting rows would take that stability away.)
//
// Retention (Options.RetainPages): only the newest N full archive pages
// are served; an older one answers 410 Gone with a body that says why and
// links the snapshot, which covers every dropped page since it is computed
// from the whole log. A follower that meets the 410 bootstraps again.

package feed

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/feeds"
	"github.com/mmcdole/gofeed/atom"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
)

// RelSnapshot is the link relation (RFC 8288 extension type) of the link
// from the feed's documents to the snapshot.
const RelSnapshot = "urn:syndic:rel:snapshot"

// Snapshotter is a Source that can also say the latest state of each of
// its subjects; a Publisher of one serves the snapshot.
type Snapshotter interface {
	// Snapshot returns the latest event with seq ≤ asOf of each subject
	// whose key sorts after after ("" for the first), in key order, at most
	// limit of them, and the key of the last one returned. A bad after
	// wraps derrors.ErrInvalid.
	Snapshot(ctx context.Context, asOf int64, after string, limit int) (events []Event, last string, err error)
}

// snapshotElement is ev:snapshot: the as-of seq of a snapshot document.
type snapshotElement struct {
	Seq int64 `xml:"seq,attr"`
}

// snapshotter returns the source as a Snapshotter, or nil.
func (p *Publisher) snapshotter() Snapshotter {
	s, _ := p.src.(Snapshotter)
	return s
}

// SnapshotPath is the path of the snapshot's first page; "" when the
// source keeps no snapshot.
func (p *Publisher) SnapshotPath() string {
	if p.snapshotter() == nil {
		return ""
	}
	return p.opt.Path + "/snapshot"
}

// snapshotLink is the link to the snapshot, for every feed document; none
// when the source keeps no snapshot.
func (p *Publisher) snapshotLink(base string) []feeds.AtomLink {
	if path := p.SnapshotPath(); path != "" {
		return []feeds.AtomLink{{Rel: RelSnapshot, Href: base + path}}
	}
	return nil
}

// oldestPage is the oldest archive page still served when full pages are
// full.
func (p *Publisher) oldestPage(full int64) int64 {
	if p.opt.RetainPages <= 0 {
		return 1
	}
	return max(1, full-int64(p.opt.RetainPages)+1)
}

// serveGone answers 410 Gone, and reports true, when retention has dropped
// archive page k.
func (p *Publisher) serveGone(w http.ResponseWriter, r *http.Request, k int64) bool {
	if p.opt.RetainPages <= 0 {
		return false
	}
	head, err := p.currentHead(r.Context())
	if err != nil {
		httpx.WriteError(w, r, p.log, fmt.Errorf("feed head: %w", err))
		return true
	}
	oldest := p.oldestPage(head / int64(p.opt.PageSize))
	if k >= oldest {
		return false
	}
	base := p.base(r)
	body := struct {
		Error    string `json:"error"`
		Oldest   string `json:"oldest"`
		Snapshot string `json:"snapshot,omitempty"`
	}{
		Error: fmt.Sprintf("archive page %d was dropped: this feed keeps only its newest %d archive pages (FEED_RETAIN_PAGES); "+
			"read the snapshot for the state they led to, then follow the feed from its seq", k, p.opt.RetainPages),
		Oldest: base + p.ArchivePath(oldest),
	}
	if path := p.SnapshotPath(); path != "" {
		body.Snapshot = base + path
		w.Header().Set("Link", "<"+body.Snapshot+`>; rel="`+RelSnapshot+`"`)
	}
	w.Header().Set("Cache-Control", "no-cache") // a page dropped stays dropped, but the body names the current oldest
	p.vary(w.Header())
	httpx.WriteJSON(w, http.StatusGone, body)
	return true
}

// snapshotPageSize is how many entries a snapshot page holds.
func (p *Publisher) snapshotPageSize() int {
	if p.opt.SnapshotPageSize > 0 {
		return p.opt.SnapshotPageSize
	}
	return 1000
}

func (p *Publisher) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	p.mSnapshot.Inc(1)
	snap := p.snapshotter()
	if snap == nil {
		httpx.WriteError(w, r, p.log, fmt.Errorf("this feed keeps no snapshot: %w", derrors.ErrNotFound))
		return
	}
	base := p.base(r)
	q := r.URL.Query()
	after := q.Get("after")
	head, err := p.currentHead(r.Context())
	if err != nil {
		httpx.WriteError(w, r, p.log, fmt.Errorf("feed head: %w", err))
		return
	}
	asOf := head
	if s := q.Get("seq"); s != "" {
		asOf, err = strconv.ParseInt(s, 10, 64)
		if err != nil || asOf < 0 {
			httpx.WriteError(w, r, p.log, derrors.Problems{"seq": "must be a seq: a whole number from 0"})
			return
		}
		if asOf > head {
			httpx.WriteError(w, r, p.log, fmt.Errorf("snapshot as of seq %d: the feed has %d events: %w", asOf, head, derrors.ErrNotFound))
			return
		}
	} else if after != "" {
		httpx.WriteError(w, r, p.log, derrors.Problems{"after": "only with seq: page on from the first page's next link"})
		return
	}
	// A page's content is fixed by its seq, its key and the page size.
	etag := `"s` + p.etag + "-" + strconv.Itoa(p.snapshotPageSize()) + "-" + strconv.FormatInt(asOf, 10) + "-" + baseHash(base+"\x00"+after) + `"`
	if matchesAny(r.Header.Get("If-None-Match"), etag) {
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			etag = gzETag(etag)
		}
		p.notModified(w, etag, "no-cache")
		return
	}
	doc, err := p.renderSnapshot(r.Context(), snap, base, asOf, after)
	if err != nil {
		httpx.WriteError(w, r, p.log, err)
		return
	}
	doc.etag = etag
	if doc.next != "" { // so a follower asks for it before parsing this page
		w.Header().Set("Link", "<"+doc.next+`>; rel="next"`)
	}
	p.write(w, r, doc, "no-cache")
}

// snapshotURL is the URL of the snapshot page as of asOf after key after.
func (p *Publisher) snapshotURL(base string, asOf int64, after string) string {
	v := url.Values{"seq": {strconv.FormatInt(asOf, 10)}}
	if after != "" {
		v.Set("after", after)
	}
	return base + p.opt.Path + "/snapshot?" + v.Encode()
}

func (p *Publisher) renderSnapshot(ctx context.Context, snap Snapshotter, base string, asOf int64, after string) (*rendered, error) {
	limit := p.snapshotPageSize()
	var events []Event
	var last string
	if asOf > 0 {
		var err error
		events, last, err = snap.Snapshot(ctx, asOf, after, limit)
		if err != nil {
			return nil, fmt.Errorf("snapshot as of %d after %q: %w", asOf, after, err)
		}
	}
	updated, err := p.snapshotUpdated(ctx, asOf)
	if err != nil {
		return nil, err
	}
	links := []feeds.AtomLink{
		{Rel: "self", Href: p.snapshotURL(base, asOf, after)},
		{Rel: "first", Href: p.snapshotURL(base, asOf, "")},
		{Rel: "current", Href: base + p.opt.Path},
	}
	var next string
	if len(events) >= limit { // perhaps more: the next page says (it may be empty)
		next = p.snapshotURL(base, asOf, last)
		links = append(links, feeds.AtomLink{Rel: "next", Href: next})
	}
	pg := p.shell(base, links, updated)
	pg.Title += " (snapshot)"
	pg.ID += ":snapshot:" + strconv.FormatInt(asOf, 10)
	pg.Snapshot = &snapshotElement{Seq: asOf}
	slices.SortFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) }) // render takes them in seq order
	body, err := p.renderPage(pg, events, base)
	if err != nil {
		return nil, err
	}
	return &rendered{key: pageKey{-1, base}, body: body, next: next}, nil
}

// snapshotUpdated is when event asOf was committed: the snapshot's date.
func (p *Publisher) snapshotUpdated(ctx context.Context, asOf int64) (time.Time, error) {
	if asOf == 0 {
		return time.Unix(0, 0), nil
	}
	events, err := p.src.Events(ctx, asOf, asOf)
	if err != nil {
		return time.Time{}, fmt.Errorf("snapshot as of %d: %w", asOf, err)
	}
	if len(events) != 1 {
		return time.Time{}, fmt.Errorf("snapshot as of %d: event %d missing", asOf, asOf)
	}
	return events[0].Time, nil
}

// parseSnapshot reads the ev:snapshot element of a parsed document, if it
// has one, into p.
func parseSnapshot(f *atom.Feed, p *Page) error {
	x, ok := findExt(f.Extensions, "snapshot")
	if !ok {
		return nil
	}
	seq, err := strconv.ParseInt(x.Attrs["seq"], 10, 64)
	if err != nil || seq < 0 {
		return fmt.Errorf("parse feed: snapshot seq %q: want a whole number", x.Attrs["seq"])
	}
	p.IsSnapshot, p.AsOf = true, seq
	return nil
}
