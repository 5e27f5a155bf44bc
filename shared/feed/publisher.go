// Package feed publishes an event log as an Atom feed with RFC 5005
// archives, and follows such feeds.
//
// The subscription document (/feed) holds the events after the last full
// page; archive page k holds seq (k−1)·N+1 … k·N and never changes. Archive
// pages are kept rendered, plain and gzip-encoded, in a bounded in-memory
// cache. /feed answers conditional GETs and long-polls (Prefer: wait=N).
package feed

import (
	"bytes"
	"compress/gzip"
	"container/list"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/feeds"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
	"syndic/shared/metrics"
)

// Source is the event log a Publisher serves.
type Source interface {
	// Head returns the highest committed seq, 0 when there is none.
	Head(ctx context.Context) (int64, error)
	// Events returns the events with first ≤ seq ≤ last in seq order.
	Events(ctx context.Context, first, last int64) ([]Event, error)
}

// Options describe a feed.
type Options struct {
	Title    string // feed title, e.g. "syndic contacts"
	ID       string // feed id, e.g. urn:syndic:contacts:feed
	EntryID  string // entry id prefix; the seq is appended, e.g. urn:syndic:contacts:event:
	Author   string // author name of the feed and its entries
	Path     string // where the feed is mounted, e.g. /feed
	PageSize int    // events per archive page (FEED_PAGE_SIZE)
	BaseURL  string // public base URL; empty derives it from each request
	// CacheBytes bounds the rendered archive pages kept in memory.
	CacheBytes int
	// MaxWait caps a long-poll; 25 s when zero.
	MaxWait time.Duration
	// Recheck is how often a long-poll rereads the head, to see events
	// committed by another process; 1 s when zero.
	Recheck time.Duration
	// HeadMaxAge is how long /feed may answer from the head it last read:
	// a commit clears it at once, so only events committed by another
	// process (several instances on one PostgreSQL) wait up to this long to
	// show. 250 ms when zero; negative reads the source on every request.
	HeadMaxAge time.Duration
	// Changed returns a channel that is closed when the source next commits
	// events (sqldb.DB.Committed): it wakes long-polls and clears the head
	// kept in memory. Nil: only Recheck and HeadMaxAge notice new events.
	Changed func() <-chan struct{}
}

// Version is part of every ETag: bump it when the rendering changes.
const Version = "1"

// Publisher serves a Source as Atom documents.
type Publisher struct {
	src  Source
	opt  Options
	log  *slog.Logger
	etag string // constant part of ETags: version and page size

	mu      sync.Mutex
	closing chan struct{}
	closed  bool
	current *rendered       // the last /feed rendered
	headSeq int64           // the head last read from src…
	headAt  time.Time       // …at this time…
	headCh  <-chan struct{} // …valid until this commit signal closes
	lru     *list.List
	byKey   map[pageKey]*list.Element
	cached  int // bytes in lru

	mRequests, mArchive, mNotModified, mHits, mMisses, mRenders interface{ Inc(int64) }
	waiting                                                     atomic.Int64
}

type pageKey struct {
	k    int64
	base string
}

type rendered struct {
	key  pageKey
	head int64 // for /feed: the head it shows…
	from int64 // …from this seq
	body []byte
	etag string

	gzOnce sync.Once
	gz     []byte
}

// gzip returns the body gzip-encoded, compressing it on first use.
func (r *rendered) gzip() []byte {
	r.gzOnce.Do(func() { r.gz = gzipped(r.body) })
	return r.gz
}

func (r *rendered) size() int { return len(r.body) + len(r.gz) + 128 }

// NewPublisher returns a Publisher of src. m receives its metrics.
func NewPublisher(src Source, opt Options, log *slog.Logger, m *metrics.Set) *Publisher {
	if opt.PageSize <= 0 {
		opt.PageSize = 50
	}
	if opt.CacheBytes <= 0 {
		opt.CacheBytes = 16 << 20
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = 25 * time.Second
	}
	if opt.Recheck <= 0 {
		opt.Recheck = time.Second
	}
	if opt.HeadMaxAge == 0 {
		opt.HeadMaxAge = 250 * time.Millisecond
	}
	opt.Path = strings.TrimRight(opt.Path, "/")
	p := &Publisher{
		src: src, opt: opt, log: log,
		etag:         Version + "-" + strconv.Itoa(opt.PageSize),
		closing:      make(chan struct{}),
		lru:          list.New(),
		byKey:        map[pageKey]*list.Element{},
		mRequests:    m.Counter(`feed_requests{doc="current"}`),
		mArchive:     m.Counter(`feed_requests{doc="archive"}`),
		mNotModified: m.Counter("feed_not_modified"),
		mHits:        m.Counter(`feed_archive_cache{result="hit"}`),
		mMisses:      m.Counter(`feed_archive_cache{result="miss"}`),
		mRenders:     m.Counter("feed_renders"),
	}
	m.GaugeFunc("feed_longpolls_waiting", p.waiting.Load)
	m.GaugeFunc("feed_archive_cache_bytes", func() int64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return int64(p.cached)
	})
	return p
}

// changed returns the channel the source's next commit closes.
func (p *Publisher) changed() <-chan struct{} {
	if p.opt.Changed == nil {
		return nil // never ready: Recheck and HeadMaxAge notice new events
	}
	return p.opt.Changed()
}

// head returns the source's head, from memory when cached is true and it
// was read less than HeadMaxAge ago with no commit since. Every read from
// the source refreshes the memory.
func (p *Publisher) head(ctx context.Context, cached bool) (int64, error) {
	ch := p.changed() // before the read: a commit during it makes it stale
	p.mu.Lock()
	if cached && !closed(p.headCh) && !p.headAt.IsZero() && time.Since(p.headAt) < p.opt.HeadMaxAge {
		h := p.headSeq
		p.mu.Unlock()
		return h, nil
	}
	p.mu.Unlock()
	h, err := p.src.Head(ctx)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	if !closed(ch) { // no commit while we read: h is current
		p.headSeq, p.headAt, p.headCh = h, time.Now(), ch
	}
	p.mu.Unlock()
	return h, nil
}

// closed reports whether ch is closed; a nil ch never is.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Close answers waiting long-polls at once (with 304); call it when the
// server shuts down.
func (p *Publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.closing)
	}
}

// Register mounts the subscription document at Path and the archive pages
// at Path/archive/{k} on mux, each wrapped by guard.
func (p *Publisher) Register(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	mux.Handle("GET "+p.opt.Path, guard(http.HandlerFunc(p.serveCurrent)))
	mux.Handle("GET "+p.opt.Path+"/archive/{k}", guard(http.HandlerFunc(p.serveArchive)))
}

// ArchivePath returns the path of archive page k.
func (p *Publisher) ArchivePath(k int64) string {
	return p.opt.Path + "/archive/" + strconv.FormatInt(k, 10)
}

func (p *Publisher) base(r *http.Request) string { return httpx.BaseURL(p.opt.BaseURL, r) }

func (p *Publisher) serveArchive(w http.ResponseWriter, r *http.Request) {
	p.mArchive.Inc(1)
	k, err := strconv.ParseInt(r.PathValue("k"), 10, 64)
	if err != nil || k < 1 || r.PathValue("k") != strconv.FormatInt(k, 10) {
		httpx.WriteError(w, r, p.log, fmt.Errorf("archive page %q: want a page number from 1: %w", r.PathValue("k"), derrors.ErrNotFound))
		return
	}
	key := pageKey{k, p.base(r)}
	if doc := p.cachedArchive(key); doc != nil {
		p.mHits.Inc(1)
		p.write(w, r, doc, "public, max-age=31536000, immutable")
		return
	}
	p.mMisses.Inc(1)
	head, err := p.src.Head(r.Context())
	if err != nil {
		httpx.WriteError(w, r, p.log, fmt.Errorf("feed head: %w", err))
		return
	}
	n := int64(p.opt.PageSize)
	switch {
	case k*n <= head: // full: render and keep
	case k == head/n+1: // the page being filled is what /feed shows now
		w.Header().Set("Cache-Control", "no-cache")
		http.Redirect(w, r, key.base+p.opt.Path, http.StatusFound)
		return
	default:
		httpx.WriteError(w, r, p.log, fmt.Errorf("archive page %d: the feed has %d events: %w", k, head, derrors.ErrNotFound))
		return
	}
	doc, err := p.renderArchive(r.Context(), key)
	if err != nil {
		httpx.WriteError(w, r, p.log, err)
		return
	}
	doc.gzip() // archives are kept in both encodings, counted in the cache size
	p.keep(doc)
	p.write(w, r, doc, "public, max-age=31536000, immutable")
}

func (p *Publisher) renderArchive(ctx context.Context, key pageKey) (*rendered, error) {
	n := int64(p.opt.PageSize)
	first, last := (key.k-1)*n+1, key.k*n
	events, err := p.src.Events(ctx, first, last)
	if err != nil {
		return nil, fmt.Errorf("archive page %d: %w", key.k, err)
	}
	if int64(len(events)) != n {
		return nil, fmt.Errorf("archive page %d: %d events, want %d", key.k, len(events), n)
	}
	links := []feeds.AtomLink{
		{Rel: "self", Href: key.base + p.ArchivePath(key.k)},
		{Rel: "current", Href: key.base + p.opt.Path},
		{Rel: "first", Href: key.base + p.ArchivePath(1)},
		{Rel: "next-archive", Href: key.base + p.ArchivePath(key.k+1)},
	}
	if key.k > 1 {
		links = append(links, feeds.AtomLink{Rel: "prev-archive", Href: key.base + p.ArchivePath(key.k-1)})
	}
	body, err := p.render(key.base, links, true, events, events[len(events)-1].Time)
	if err != nil {
		return nil, err
	}
	return &rendered{key: key, body: body, etag: p.archiveETag(key)}, nil
}

func (p *Publisher) archiveETag(key pageKey) string {
	return `"a` + p.etag + "-" + strconv.FormatInt(key.k, 10) + "-" + baseHash(key.base) + `"`
}

func (p *Publisher) currentETag(head int64, base string) string {
	return `"f` + p.etag + "-" + strconv.FormatInt(head, 10) + "-" + baseHash(base) + `"`
}

func baseHash(base string) string {
	h := fnv.New32a()
	h.Write([]byte(base))
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

func (p *Publisher) render(base string, links []feeds.AtomLink, archive bool, events []Event, updated time.Time) ([]byte, error) {
	p.mRenders.Inc(1)
	links = append(links, feeds.AtomLink{Rel: "alternate", Type: "text/html", Href: base + "/"})
	pg := page{
		Title:     p.opt.Title,
		ID:        p.opt.ID,
		Updated:   formatTime(updated),
		Author:    &feeds.AtomAuthor{AtomPerson: feeds.AtomPerson{Name: p.opt.Author}},
		Generator: "syndic",
		Links:     links,
	}
	if archive {
		pg.Archive = &struct{}{}
	}
	return render(pg, events, func(seq int64) string { return p.opt.EntryID + strconv.FormatInt(seq, 10) }, base)
}

func (p *Publisher) serveCurrent(w http.ResponseWriter, r *http.Request) {
	p.mRequests.Inc(1)
	base := p.base(r)
	head, err := p.head(r.Context(), true)
	if err != nil {
		httpx.WriteError(w, r, p.log, fmt.Errorf("feed head: %w", err))
		return
	}
	after, err := afterParam(r)
	if err != nil {
		httpx.WriteError(w, r, p.log, err)
		return
	}
	etag := p.currentETag(head, base)
	inm := r.Header.Get("If-None-Match")
	if wait := preferWait(r.Header.Get("Prefer"), p.opt.MaxWait); wait > 0 && inm != "" {
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
		if matchesAny(inm, etag) {
			head, err = p.wait(r.Context(), head, wait)
			if err != nil {
				httpx.WriteError(w, r, p.log, fmt.Errorf("feed head: %w", err))
				return
			}
			etag = p.currentETag(head, base)
		}
	}
	if matchesAny(inm, etag) {
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			etag = gzETag(etag)
		}
		p.notModified(w, etag, "no-cache")
		return
	}
	doc, err := p.renderCurrent(r.Context(), head, base, after)
	if err != nil {
		httpx.WriteError(w, r, p.log, err)
		return
	}
	p.write(w, r, doc, "no-cache")
}

// afterParam reads ?after=SEQ (-1 when absent): a follower that has applied
// everything up to SEQ asks only for what is newer. The answer holds the
// events after SEQ — reaching back into the newest archive page, so a page
// filling up never forces a follower to fetch it — with the subscription
// document's links. Its ETag depends only on the head, so it still changes
// exactly when this resource does.
func afterParam(r *http.Request) (int64, error) {
	s := r.URL.Query().Get("after")
	if s == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, derrors.Problems{"after": "must be a seq: a whole number from 0"}
	}
	return n, nil
}

// wait holds a long-poll until the head moves past head, d passes, the
// request ends or the publisher closes; it returns the head then.
func (p *Publisher) wait(ctx context.Context, head int64, d time.Duration) (int64, error) {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	recheck := time.NewTicker(p.opt.Recheck)
	defer recheck.Stop()
	for {
		ch := p.changed()
		now, err := p.head(ctx, false)
		if err != nil || now != head {
			return now, err
		}
		select {
		case <-ch:
		case <-recheck.C:
		case <-deadline.C:
			return head, nil
		case <-ctx.Done():
			return head, nil
		case <-p.closing:
			return head, nil
		}
	}
}

// renderCurrent renders the subscription document at head: the events
// after the last full page or, when after ≥ 0, those after after, reaching
// back at most into the newest archive page.
func (p *Publisher) renderCurrent(ctx context.Context, head int64, base string, after int64) (*rendered, error) {
	n := int64(p.opt.PageSize)
	full := head / n // archive pages that are full
	from := full*n + 1
	if after >= 0 {
		from = max(after, full*n-n, 0) + 1
	}
	p.mu.Lock()
	cur := p.current
	p.mu.Unlock()
	if cur != nil && cur.head == head && cur.key.base == base && cur.from == min(from, head+1) {
		return cur, nil
	}
	var events []Event
	var updated time.Time
	if head > 0 {
		// Read from the head at least: the last event dates the page.
		var err error
		events, err = p.src.Events(ctx, min(from, head), head)
		if err != nil {
			return nil, fmt.Errorf("feed: %w", err)
		}
		if len(events) == 0 || events[len(events)-1].Seq != head {
			return nil, fmt.Errorf("feed: events up to %d missing", head)
		}
		updated = events[len(events)-1].Time
		if from > head {
			events = nil
		}
	} else {
		updated = time.Unix(0, 0)
	}
	links := []feeds.AtomLink{{Rel: "self", Href: base + p.opt.Path}, {Rel: "current", Href: base + p.opt.Path}}
	if full > 0 {
		links = append(links,
			feeds.AtomLink{Rel: "first", Href: base + p.ArchivePath(1)},
			feeds.AtomLink{Rel: "prev-archive", Href: base + p.ArchivePath(full)})
	}
	body, err := p.render(base, links, false, events, updated)
	if err != nil {
		return nil, err
	}
	doc := &rendered{key: pageKey{0, base}, head: head, from: min(from, head+1), body: body, etag: p.currentETag(head, base)}
	p.mu.Lock()
	if p.current == nil || p.current.head <= head {
		p.current = doc
	}
	p.mu.Unlock()
	return doc, nil
}

func (p *Publisher) cachedArchive(key pageKey) *rendered {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.byKey[key]; ok {
		p.lru.MoveToFront(el)
		return el.Value.(*rendered)
	}
	return nil
}

func (p *Publisher) keep(doc *rendered) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byKey[doc.key]; ok {
		return
	}
	p.byKey[doc.key] = p.lru.PushFront(doc)
	p.cached += doc.size()
	for p.cached > p.opt.CacheBytes && p.lru.Len() > 1 {
		old := p.lru.Remove(p.lru.Back()).(*rendered)
		delete(p.byKey, old.key)
		p.cached -= old.size()
	}
}

func (p *Publisher) notModified(w http.ResponseWriter, etag, cacheControl string) {
	p.mNotModified.Inc(1)
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", cacheControl)
	p.vary(h)
	w.WriteHeader(http.StatusNotModified)
}

func (p *Publisher) vary(h http.Header) {
	if p.opt.BaseURL == "" {
		h.Set("Vary", "Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto")
	} else {
		h.Set("Vary", "Accept-Encoding")
	}
}

// write answers doc, gzip-encoded when the client accepts it, or 304 when
// If-None-Match holds either encoding's ETag.
func (p *Publisher) write(w http.ResponseWriter, r *http.Request, doc *rendered, cacheControl string) {
	gz := acceptsGzip(r.Header.Get("Accept-Encoding"))
	etag := doc.etag
	if gz {
		etag = gzETag(doc.etag)
	}
	if matchesAny(r.Header.Get("If-None-Match"), doc.etag) {
		p.notModified(w, etag, cacheControl)
		return
	}
	body := doc.body
	h := w.Header()
	if gz {
		body = doc.gzip()
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Type", "application/atom+xml; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("ETag", etag)
	h.Set("Cache-Control", cacheControl)
	p.vary(h)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func gzETag(etag string) string { return strings.TrimSuffix(etag, `"`) + `-gz"` }

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// matches reports whether an If-None-Match value lists etag (weak
// comparison, as RFC 9110 asks for If-None-Match) or is "*".
func matches(inm, etag string) bool {
	for tag := range strings.SplitSeq(inm, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

// matchesAny reports whether If-None-Match lists either encoding's ETag of
// a document: both name the same content.
func matchesAny(inm, etag string) bool {
	return inm != "" && (matches(inm, etag) || matches(inm, gzETag(etag)))
}

// acceptsGzip reports whether Accept-Encoding admits gzip.
func acceptsGzip(ae string) bool {
	for part := range strings.SplitSeq(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// preferWait returns the wait=N of a Prefer header (RFC 7240), capped at
// max, or 0.
func preferWait(prefer string, max time.Duration) time.Duration {
	for pref := range strings.SplitSeq(prefer, ",") {
		pref, _, _ = strings.Cut(pref, ";")
		name, val, ok := strings.Cut(strings.TrimSpace(pref), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
			continue
		}
		n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
		if err != nil || n <= 0 {
			return 0
		}
		return min(time.Duration(n)*time.Second, max)
	}
	return 0
}
