// Package feed publishes an event log as an Atom feed with RFC 5005
// archives, and follows such feeds.
//
// The subscription document (/feed) holds the events after the last full
// page; archive page k holds seq (k−1)·N+1 … k·N and never changes. Archive
// pages are kept rendered, plain and gzip-encoded, in a bounded in-memory
// cache. /feed answers conditional GETs and long-polls (Prefer: wait=N).
package feed

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// Credentials says the feed is served only with credentials. Its
	// answers then vary by Authorization, and archive pages are
	// Cache-Control: private — kept a year by browsers and followers, by no
	// shared cache (a proxy, a CDN) — unless SharedCache says the cache in
	// front checks the same credentials itself.
	Credentials bool
	SharedCache bool
	// Changed returns a channel that is closed when the source next commits
	// events (sqldb.DB.Committed): it wakes long-polls and clears the head
	// kept in memory. Nil: only Recheck and HeadMaxAge notice new events.
	Changed func() <-chan struct{}
	// Stylesheet, when set, is the URL of a CSS stylesheet named in every
	// document (xml-stylesheet), so a browser opening the feed shows it as
	// a page; the server must serve it, same-origin for its CSP.
	Stylesheet string
	// RetainPages, when above 0, serves only the newest RetainPages full
	// archive pages; older ones answer 410 Gone pointing at the snapshot
	// (FEED_RETAIN_PAGES; see snapshot.go). 0 serves every page.
	RetainPages int
	// SnapshotPageSize is how many entries a snapshot page holds; 1000
	// when zero. The snapshot is served when the Source is a Snapshotter.
	SnapshotPageSize int
}

// Version is part of every ETag: bump it when the rendering changes.
const Version = "3"

// Publisher serves a Source as Atom documents.
type Publisher struct {
	src  Source
	opt  Options
	log  *slog.Logger
	etag string // constant part of ETags: version and page size

	mu       sync.Mutex
	closing  chan struct{}
	closed   bool
	current  map[currentKey]*rendered   // /feed at curHead, by first seq (?after) and base
	curHead  int64                      // the newest head rendered
	renders  map[currentKey]*renderCall // renders of /feed in flight
	lastRead *headRead                  // the last read of the head that succeeded
	reading  *headRead                  // the read in flight
	maxHead  int64                      // the highest head any read returned: never answer lower
	wake     *wakeup                    // the next wake-up of waiting long-polls
	lru      *list.List
	byKey    map[pageKey]*list.Element
	cached   int // bytes in lru
	gz       gzipper

	mRequests, mArchive, mNotModified, mHits, mMisses, mRenders interface{ Inc(int64) }
	mSnapshot                                                   interface{ Inc(int64) }
	waiting                                                     atomic.Int64
}

type pageKey struct {
	k    int64
	base string
}

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
		current:      map[currentKey]*rendered{},
		renders:      map[currentKey]*renderCall{},
		mRequests:    m.Counter(`feed_requests{doc="current"}`, "Feed requests, by document: the subscription document (current), an archive page or the snapshot."),
		mArchive:     m.Counter(`feed_requests{doc="archive"}`, "Feed requests, by document: the subscription document (current), an archive page or the snapshot."),
		mNotModified: m.Counter("feed_not_modified", "Feed requests answered 304 Not Modified."),
		mHits:        m.Counter(`feed_archive_cache{result="hit"}`, "Archive page lookups in the rendered-page cache, by result."),
		mMisses:      m.Counter(`feed_archive_cache{result="miss"}`, "Archive page lookups in the rendered-page cache, by result."),
		mRenders:     m.Counter("feed_renders", "Feed documents rendered."),
		mSnapshot:    m.Counter(`feed_requests{doc="snapshot"}`, "Feed requests, by document: the subscription document (current), an archive page or the snapshot."),
	}
	m.GaugeFunc("feed_longpolls_waiting", "Feed requests waiting in a long-poll for the next event.", p.waiting.Load)
	m.GaugeFunc("feed_archive_cache_bytes", "Bytes of rendered archive pages held in the cache.", func() int64 {
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

// headRead is one read of the source's head, shared by every request it is
// fresh enough for (see fresh): after a commit, a thousand waiting
// long-polls take one read between them, not a thousand.
type headRead struct {
	start time.Time       // when it began…
	ch    <-chan struct{} // …and the commit signal current then
	done  chan struct{}   // closed once h and err are set
	h     int64
	err   error
	// ended says err came from the context of the request that read, not
	// from the source: a request that joined it reads again.
	ended bool
}

// fresh reports whether r can answer a request that needs a head read no
// earlier than notBefore, or, when maxAge > 0, one read less than maxAge
// ago with no commit signal since it began. The second is what lets
// requests share a read: no local commit since r began means r sees every
// commit so far. It needs Changed to signal every commit, each by closing
// the channel it handed out, with only the newest channel still open
// (sqldb.DB.Committed does); without Changed, maxAge alone bounds how old
// a head may be.
//
// anyAge as maxAge makes the second rule the commit signal's alone.
func (r *headRead) fresh(notBefore time.Time, maxAge time.Duration) bool {
	return !r.start.Before(notBefore) ||
		maxAge > 0 && !closed(r.ch) && time.Since(r.start) < maxAge
}

// anyAge is a maxAge for headRead.fresh that no read reaches.
const anyAge = time.Duration(math.MaxInt64)

// head returns the source's head as of a read fresh enough for notBefore
// and maxAge (headRead.fresh): the last read's, the one in flight, or a
// new one. At most one read runs at a time. It never returns less than it
// returned before: a read that started earlier but answers later (several
// instances on one PostgreSQL, or plain scheduling) cannot take the head
// back.
func (p *Publisher) head(ctx context.Context, notBefore time.Time, maxAge time.Duration) (int64, error) {
	h, _, err := p.headAndSignal(ctx, notBefore, maxAge)
	return h, err
}

// headAndSignal is head, and the commit signal that was current when the
// read it answers from began: while that signal is open, no commit has
// come since the read.
func (p *Publisher) headAndSignal(ctx context.Context, notBefore time.Time, maxAge time.Duration) (int64, <-chan struct{}, error) {
	for {
		p.mu.Lock()
		if r := p.lastRead; r != nil && r.fresh(notBefore, maxAge) {
			p.mu.Unlock()
			return r.h, r.ch, nil
		}
		r := p.reading
		if r == nil {
			r = &headRead{start: time.Now(), ch: p.changed(), done: make(chan struct{})}
			p.reading = r
			p.mu.Unlock()
			p.readHead(ctx, r)
			return r.h, r.ch, r.err
		}
		join := r.fresh(notBefore, maxAge)
		p.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
		if join && !(r.ended && ctx.Err() == nil) {
			return r.h, r.ch, r.err
		}
		// r began too early for this request, or ended with the request
		// that read: the next read will do.
	}
}

// readHead runs r, the read in flight.
func (p *Publisher) readHead(ctx context.Context, r *headRead) {
	h, err := p.src.Head(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		h = max(h, p.maxHead)
		p.maxHead = h
		p.lastRead = r
	}
	r.h, r.err, r.ended = h, err, err != nil && ctx.Err() != nil
	p.reading = nil
	close(r.done)
}

// currentHead is the head for a request arriving now: from memory when
// it was read less than HeadMaxAge ago with no commit since, else read.
func (p *Publisher) currentHead(ctx context.Context) (int64, error) {
	return p.head(ctx, time.Now(), p.opt.HeadMaxAge)
}

// wakeup is the next wake-up of the waiting long-polls, shared by all of
// them: the next commit signal, recheck tick or Close, whichever comes
// first. One goroutine watches those three for every waiter, so a waiter
// waits on one shared channel beside its own deadline and request: a
// thousand waiters woken at once take one shared channel's lock each, not
// three.
type wakeup struct {
	c  chan struct{}   // closed at the wake-up
	ch <-chan struct{} // the commit signal it watches
	// Set before c is closed:
	tick   time.Time // when a recheck tick woke them; zero for a commit or Close
	closed bool      // the publisher closed
}

// nextWakeup returns the next wake-up, starting its watch when the first
// waiter asks: a commit signal, or a recheck tick at most Recheck from now.
func (p *Publisher) nextWakeup() *wakeup {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake == nil {
		w := &wakeup{c: make(chan struct{}), ch: p.changed()}
		p.wake = w
		go p.watch(w)
	}
	return p.wake
}

// watch wakes the waiters of w.
func (p *Publisher) watch(w *wakeup) {
	tick := time.NewTimer(p.opt.Recheck)
	defer tick.Stop()
	select {
	case <-w.ch:
	case w.tick = <-tick.C:
	case <-p.closing:
		w.closed = true
	}
	p.mu.Lock()
	p.wake = nil
	p.mu.Unlock()
	close(w.c)
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

// archiveCache is the Cache-Control of a full archive page.
func (p *Publisher) archiveCache() string {
	if p.opt.Credentials && !p.opt.SharedCache {
		return "private, max-age=31536000, immutable"
	}
	return "public, max-age=31536000, immutable"
}

// Register mounts the subscription document at Path and the archive pages
// at Path/archive/{k} on mux, each wrapped by guard.
func (p *Publisher) Register(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	mux.Handle("GET "+p.opt.Path, guard(http.HandlerFunc(p.serveCurrent)))
	mux.Handle("GET "+p.opt.Path+"/archive/{k}", guard(http.HandlerFunc(p.serveArchive)))
	mux.Handle("GET "+p.opt.Path+"/snapshot", guard(http.HandlerFunc(p.serveSnapshot)))
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
	if p.serveGone(w, r, k) { // dropped by retention
		return
	}
	key := pageKey{k, p.base(r)}
	if doc := p.cachedArchive(key); doc != nil {
		p.mHits.Inc(1)
		p.write(w, r, doc, p.archiveCache())
		return
	}
	p.mMisses.Inc(1)
	head, err := p.head(r.Context(), time.Now(), 0)
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
	doc.gzip(&p.gz) // archives are kept in both encodings, counted in the cache size
	p.keep(doc)
	p.write(w, r, doc, p.archiveCache())
}

func (p *Publisher) serveCurrent(w http.ResponseWriter, r *http.Request) {
	p.mRequests.Inc(1)
	base := p.base(r)
	head, err := p.currentHead(r.Context())
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
// request ends or the publisher closes; it returns the head then. After a
// commit signal every waiter needs the head again: they share one read
// that began after the signal. At each recheck they share one that began
// after the tick.
func (p *Publisher) wait(ctx context.Context, head int64, d time.Duration) (int64, error) {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	// First: the head as of the commit signal taken now, so no commit
	// between the request's read and this one is missed.
	notBefore, maxAge := time.Now(), p.opt.HeadMaxAge
	for {
		now, ch, err := p.headAndSignal(ctx, notBefore, maxAge)
		if err != nil || now != head {
			return now, err
		}
		w := p.nextWakeup()
		if closed(ch) {
			// A commit since the read began, which w, begun after it, may
			// not watch: read again.
			notBefore, maxAge = time.Now(), anyAge
			continue
		}
		// ch, current when the read began, is still open: no commit since,
		// and w watches ch or an older signal, closed already, so the next
		// commit wakes w.
		select {
		case <-w.c:
		case <-deadline.C:
			return head, nil
		case <-ctx.Done():
			return head, nil
		}
		switch {
		case w.closed:
			return head, nil
		case !w.tick.IsZero():
			notBefore, maxAge = w.tick, 0 // other processes' commits: read again
		default:
			// A read that began after this signal will do, however long
			// ago: its commit channel is open, every earlier one's closed.
			notBefore, maxAge = time.Now(), anyAge
		}
	}
}
