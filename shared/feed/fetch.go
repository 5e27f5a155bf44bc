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
	reqURL := url
	subscription := url == f.current || url == f.cfg.URL
	if subscription && f.cp.Seq > 0 {
		reqURL = withAfter(url, f.cp.Seq) // only what is newer than the checkpoint
	}
	req, err := http.NewRequest(http.MethodGet, reqURL, nil)
	if err != nil {
		return fetched{}, fmt.Errorf("feed URL %q: %w", config.Redact(url), err)
	}
	req.Header.Set("Accept", "application/atom+xml")
	if subscription {
		// Small and fresh each time: compressing costs more than it saves.
		req.Header.Set("Accept-Encoding", "identity")
	}
	timeout := f.cfg.Timeout
	polling := url == f.etagURL && f.etag != ""
	if polling {
		req.Header.Set("If-None-Match", f.etag)
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

// prefetch is an archive page fetched while the one before it applies.
type prefetch struct {
	url  string
	done chan struct{}
	doc  fetched
	err  error
}

// startAhead fetches url in the background; fetchAhead takes the result.
func (f *Follower) startAhead(ctx context.Context, url string) {
	a := &prefetch{url: url, done: make(chan struct{})}
	f.ahead = a
	go func() {
		defer close(a.done)
		a.doc, a.err = f.fetch(ctx, url)
	}()
}

// drainAhead waits for a prefetch in flight and drops it.
func (f *Follower) drainAhead() {
	if a := f.ahead; a != nil {
		f.ahead = nil
		<-a.done
	}
}

// fetchAhead returns the prefetched url, or fetches it now. A prefetch of
// another URL is waited for and dropped, so no fetch runs beside the walk.
func (f *Follower) fetchAhead(ctx context.Context, url string) (fetched, error) {
	if a := f.ahead; a != nil {
		f.ahead = nil
		<-a.done
		if a.url == url {
			return a.doc, a.err
		}
	}
	return f.fetch(ctx, url)
}
