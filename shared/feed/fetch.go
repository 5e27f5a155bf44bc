package feed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"time"

	"syndic/shared/config"
)

type fetched struct {
	page        *Page
	url         string // after redirects, without ?after
	etag        string
	notModified bool
	askedWait   bool // the request carried Prefer: wait
	longPolled  bool // the publisher held the request (Preference-Applied)
}

// fetch GETs one document. A second fetch of the subscription document
// sends its ETag in If-None-Match and, unless disabled, Prefer: wait.
func (f *Follower) fetch(ctx context.Context, url string) (fetched, error) {
	return f.get(ctx, f.plan(url))
}

// request is one GET as the walk's state shapes it, taken by plan in the
// walk's goroutine so that get, which may run in another, reads none of
// that state.
type request struct {
	url     string // as linked
	reqURL  string // with ?after on the subscription document
	subject bool   // the subscription document
	etag    string // If-None-Match, when polling
}

// plan shapes the GET of url from the walk's state: the checkpoint and the
// subscription document's ETag.
func (f *Follower) plan(url string) request {
	r := request{url: url, reqURL: url, subject: url == f.current || url == f.cfg.URL}
	if r.subject && f.cp.Seq > 0 {
		r.reqURL = withAfter(url, f.cp.Seq) // only what is newer than the checkpoint
	}
	if url == f.etagURL {
		r.etag = f.etag
	}
	return r
}

// get makes the GET r and parses the document; it touches no walking
// state (Status only, under its lock), so it may run beside the walk.
func (f *Follower) get(ctx context.Context, r request) (fetched, error) {
	url := r.url
	req, err := http.NewRequest(http.MethodGet, r.reqURL, nil)
	if err != nil {
		return fetched{}, fmt.Errorf("feed URL %q: %w", config.Redact(url), err)
	}
	req.Header.Set("Accept", "application/atom+xml")
	if r.subject {
		// Small and fresh each time: compressing costs more than it saves.
		req.Header.Set("Accept-Encoding", "identity")
	}
	timeout := f.cfg.Timeout
	polling := r.etag != ""
	if polling {
		req.Header.Set("If-None-Match", r.etag)
		if f.cfg.Wait > 0 {
			req.Header.Set("Prefer", "wait="+strconv.Itoa(int(f.cfg.Wait/time.Second)))
			timeout += f.cfg.Wait
		}
	}
	if f.cfg.Authorize != nil {
		f.cfg.Authorize(req)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := f.cfg.Client.Do(req.WithContext(rctx))
	if err != nil {
		return fetched{}, fmt.Errorf("GET %s: %w", config.Redact(url), err)
	}
	defer resp.Body.Close()
	doc := fetched{url: withoutAfter(resp.Request.URL), etag: resp.Header.Get("ETag"), askedWait: polling && f.cfg.Wait > 0, longPolled: resp.Header.Get("Preference-Applied") != ""}
	if polling && f.cfg.Wait > 0 {
		f.update(func(s *Status) { s.LongPoll = doc.longPolled })
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		doc.notModified = true
		f.update(func(s *Status) { s.LastPoll = time.Now().UTC() })
		return doc, nil
	default:
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fetched{}, &StatusError{URL: config.Redact(url), Code: resp.StatusCode, Body: string(bytes.TrimSpace(snippet))}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBody+1))
	if err != nil {
		return fetched{}, fmt.Errorf("GET %s: read: %w", config.Redact(url), err)
	}
	if int64(len(body)) > f.cfg.MaxBody {
		return fetched{}, fmt.Errorf("GET %s: document over %d bytes", config.Redact(url), f.cfg.MaxBody)
	}
	if doc.page, err = Parse(bytes.NewReader(body)); err != nil {
		return fetched{}, fmt.Errorf("GET %s: %w", config.Redact(url), err)
	}
	if doc.page.Self == "" {
		doc.page.Self = doc.url
	}
	f.update(func(s *Status) { s.LastPoll = time.Now().UTC() })
	return doc, nil
}

// StatusError is an answer other than 200 or 304.
type StatusError struct {
	URL  string
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: status %d: %s", e.URL, e.Code, e.Body)
}

// Is makes a StatusError match ErrStatus.
func (e *StatusError) Is(target error) bool { return target == ErrStatus }

// withAfter adds ?after=seq to a subscription document's URL.
func withAfter(raw string, seq int64) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set("after", strconv.FormatInt(seq, 10))
	u.RawQuery = q.Encode()
	return u.String()
}

// withoutAfter is u without its after parameter.
func withoutAfter(u *neturl.URL) string {
	c := *u
	q := c.Query()
	if !q.Has("after") {
		return u.String()
	}
	q.Del("after")
	c.RawQuery = q.Encode()
	return c.String()
}

// aheadPages bounds how far the prefetch runs ahead of the apply: one page
// parsed and waiting, one being fetched and parsed. Two, so the
// publisher's rendering of one page overlaps the parsing of the one before.
const aheadPages = 2

// prefetch fetches and parses archive pages in its own goroutine, one
// after the other along next-archive, while the walk applies the ones
// before: the apply of page k overlaps the fetch and parse of pages k+1
// and k+2. It stops after a document that is not an archive (the newest
// archive's next leads to the subscription document), one whose next is
// the subscription document, or an error — which the walk meets when it
// takes that page, as a fetch would have answered it.
type prefetch struct {
	pages  chan aheadPage // in link order; closed when the goroutine ends
	cancel context.CancelFunc
}

type aheadPage struct {
	url string
	doc fetched
	err error
}

// startAhead starts a prefetch at url, an archive page linked by the page
// about to be applied.
func (f *Follower) startAhead(ctx context.Context, url string) {
	f.drainAhead()
	ctx, cancel := context.WithCancel(ctx)
	a := &prefetch{pages: make(chan aheadPage, aheadPages-1), cancel: cancel}
	f.ahead = a
	current, feedURL := f.current, f.cfg.URL // the subscription document, never prefetched
	r := f.plan(url)
	go func() {
		defer close(a.pages)
		for {
			doc, err := f.get(ctx, r)
			select {
			case a.pages <- aheadPage{url: r.url, doc: doc, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || doc.notModified || !doc.page.Archive {
				return
			}
			next := doc.page.NextArchive
			if next == "" || next == current || next == feedURL {
				return
			}
			r = request{url: next, reqURL: next}
		}
	}()
}

// drainAhead stops a prefetch and drops what it fetched.
func (f *Follower) drainAhead() {
	if a := f.ahead; a != nil {
		f.ahead = nil
		a.cancel()
		for range a.pages { // until its goroutine ends
		}
	}
}

// fetchAhead returns url's document — prefetched when the prefetch has
// reached it, with the error fetching it met (a 404 or 410 included),
// just as a fetch now would answer — or fetches it now. A prefetch that
// is elsewhere is stopped.
func (f *Follower) fetchAhead(ctx context.Context, url string) (fetched, error) {
	if a := f.ahead; a != nil {
		if p, ok := <-a.pages; ok && p.url == url {
			if p.err != nil {
				f.drainAhead()
			}
			return p.doc, p.err
		}
		f.drainAhead()
	}
	return f.fetch(ctx, url)
}

// prefetching reports whether a prefetch runs, ahead of the walk.
func (f *Follower) prefetching() bool { return f.ahead != nil }
