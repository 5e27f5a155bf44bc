package feed

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
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
	doc, body, err := f.download(ctx, r)
	if err != nil || doc.notModified {
		return doc, err
	}
	return f.decode(r.url, doc, body)
}

// download makes the GET r and reads the body: get without the parse.
func (f *Follower) download(ctx context.Context, r request) (fetched, []byte, error) {
	url := r.url
	req, err := http.NewRequest(http.MethodGet, r.reqURL, nil)
	if err != nil {
		return fetched{}, nil, fmt.Errorf("feed URL %q: %w", config.Redact(url), err)
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
	resp, body, err := f.send(ctx, req, url, timeout)
	if err != nil {
		return fetched{}, nil, err
	}
	doc := fetched{url: withoutAfter(resp.Request.URL), etag: resp.Header.Get("ETag"), askedWait: polling && f.cfg.Wait > 0, longPolled: resp.Header.Get("Preference-Applied") != ""}
	if polling && f.cfg.Wait > 0 {
		f.update(func(s *Status) { s.LongPoll = doc.longPolled })
	}
	if resp.StatusCode == http.StatusNotModified {
		doc.notModified = true
		f.update(func(s *Status) { s.LastPoll = time.Now().UTC() })
		return doc, nil, nil
	}
	return doc, body, nil
}

// send makes req, authorised, within timeout, and reads the body of a 200
// (at most MaxBody). It returns the response (its body closed; its headers
// and request still to read) and the body; a 304 comes with no body, any
// other answer is a *StatusError. url names the document in errors.
func (f *Follower) send(ctx context.Context, req *http.Request, url string, timeout time.Duration) (*http.Response, []byte, error) {
	if f.cfg.Authorize != nil {
		f.cfg.Authorize(req)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := f.cfg.Client.Do(req.WithContext(rctx))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", config.Redact(url), err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return resp, nil, nil
	default:
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // the rest too, so the connection is kept
		return nil, nil, &StatusError{URL: config.Redact(url), Code: resp.StatusCode, Body: string(bytes.TrimSpace(snippet))}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: read: %w", config.Redact(url), err)
	}
	if int64(len(body)) > f.cfg.MaxBody {
		return nil, nil, fmt.Errorf("GET %s: document over %d bytes", config.Redact(url), f.cfg.MaxBody)
	}
	return resp, body, nil
}

// decode parses the body of doc, fetched from url.
func (f *Follower) decode(url string, doc fetched, body []byte) (fetched, error) {
	var err error
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

// prefetch fetches and parses archive pages in its own goroutine, one
// after the other along next-archive, while the walk applies the ones
// before: the apply of page k overlaps the fetch and parse of pages k+1
// and k+2. Two pages ahead at most: one parsed and waiting for the walk,
// the next being fetched — from as soon as the page before it names it,
// before that page is parsed, so that the publisher renders one page while
// the follower parses the one before. It stops after a document that is
// not an archive (the newest archive's next leads to the subscription
// document), one whose next is the subscription document, or an error —
// which the walk meets when it takes that page, as a fetch would have
// answered it.
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
	a := &prefetch{pages: make(chan aheadPage), cancel: cancel}
	f.ahead = a
	current, feedURL := f.current, f.cfg.URL // the subscription document, never prefetched
	archive := func(u string) bool { return u != "" && u != current && u != feedURL }
	d := f.startDownload(ctx, f.plan(url))
	go func() {
		defer close(a.pages)
		for {
			<-d.done
			var next *download // the page after d, fetched while d is parsed
			if d.err == nil && !d.doc.notModified {
				if hint := nextArchiveHint(d.body); archive(hint) {
					next = f.startDownload(ctx, request{url: hint, reqURL: hint})
				}
			}
			doc, err := d.doc, d.err
			if err == nil && !doc.notModified {
				doc, err = f.decode(d.url, doc, d.body)
			}
			select {
			case a.pages <- aheadPage{url: d.url, doc: doc, err: err}:
			case <-ctx.Done():
				next.stop()
				return
			}
			if err != nil || doc.notModified || !doc.page.Archive || !archive(doc.page.NextArchive) {
				next.stop()
				return
			}
			if next == nil || next.url != doc.page.NextArchive { // no hint, or a wrong one: the parsed link decides
				next.stop()
				next = f.startDownload(ctx, request{url: doc.page.NextArchive, reqURL: doc.page.NextArchive})
			}
			d = next
		}
	}()
}

// download is a GET running in the background, its body not yet parsed.
type download struct {
	url    string
	done   chan struct{}
	cancel context.CancelFunc
	doc    fetched
	body   []byte
	err    error
}

func (f *Follower) startDownload(ctx context.Context, r request) *download {
	ctx, cancel := context.WithCancel(ctx)
	d := &download{url: r.url, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(d.done)
		defer cancel()
		d.doc, d.body, d.err = f.download(ctx, r)
	}()
	return d
}

// stop cancels d, if any, and waits for it to end.
func (d *download) stop() {
	if d != nil {
		d.cancel()
		<-d.done
	}
}

// nextArchiveHint is the next-archive link among a document's own
// elements, before its first entry, read without parsing the rest: a hint
// to start fetching that page while this one is parsed. Absolute links
// only; the parsed page's link has the last word.
func nextArchiveHint(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	depth := 0
	for {
		tok, err := d.RawToken()
		if err != nil {
			return ""
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 2 {
				continue
			}
			if t.Name.Local == "entry" {
				return ""
			}
			if t.Name.Local != "link" {
				continue
			}
			var rel, href string
			for _, at := range t.Attr {
				switch at.Name.Local {
				case "rel":
					rel = at.Value
				case "href":
					href = at.Value
				}
			}
			if rel == "next-archive" && (strings.HasPrefix(href, "http://") || strings.HasPrefix(href, "https://")) {
				return href
			}
		case xml.EndElement:
			depth--
		}
	}
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
