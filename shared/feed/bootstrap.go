// Bootstrapping a follower from the publisher's snapshot (see snapshot.go
// for the document).
//
// A follower with no checkpoint, started with StartSnapshot, reads every
// page of the snapshot the subscription document links, checks that all
// carry the same as-of seq, and then — in one transaction, fenced by the
// follower lease like every commit — applies every entry with its
// ApplyFunc and sets the checkpoint to that seq. From there it follows the
// feed as it always does. The entries are the latest event of each
// subject, deleted ones included as their tombstones, so applying them
// over any earlier copy (a re-bootstrap) leaves exactly the publisher's
// state as of the seq — provided the ApplyFunc sets a subject to the state
// an event carries (as calendar's upsert of the whole contact does) rather
// than applying a difference.
//
// One transaction keeps a crash harmless: until it commits, nothing of
// the snapshot is in the database and the checkpoint is where it was, so
// the next start bootstraps again from scratch; there is never a half
// copy to follow from. The price is that the whole snapshot — one parsed
// entry per subject — is held in memory while it is applied.
//
// A follower that meets 410 Gone — the publisher's retention dropped a page
// it needs because it was away too long — bootstraps again from the
// snapshot and goes on: the Kubernetes list-then-watch pattern. The
// checkpoint still only moves forward: the snapshot's seq is the head when
// it was read, past any page that was dropped.

package feed

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"syndic/shared/config"
	"syndic/shared/sqldb"
)

// Where a follower with no checkpoint starts (FollowerConfig.Start).
const (
	StartSnapshot  = "snapshot"  // from the snapshot when the feed links one, else from the oldest archive
	StartBeginning = "beginning" // replay every archive
)

// snapState is the follower's knowledge of the snapshot, used only by
// Run's goroutine.
type snapState struct {
	url     string // the snapshot as the feed last linked it
	skipped bool   // a bootstrap found nothing to apply: follow from the archives
	metric  interface{ Inc(int64) }
}

// startFromSnapshot reports whether the subscription document p should be
// answered by bootstrapping from the snapshot it links.
func (f *Follower) startFromSnapshot(p *Page) bool {
	return f.cp.Seq == 0 && !p.Archive && !p.IsSnapshot && p.Snapshot != "" &&
		f.cfg.Start == StartSnapshot && !f.snap.skipped
}

// bootstrapIfGone answers an error of a step: when it is 410 Gone, the
// follower bootstraps from the snapshot again and returns that result;
// any other error is returned as it is.
func (f *Follower) bootstrapIfGone(ctx context.Context, err error) error {
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusGone {
		return err
	}
	url := f.snap.url
	if url == "" { // not seen yet: ask the feed
		f.drainAhead()
		f.etag, f.etagURL = "", ""
		doc, ferr := f.fetch(ctx, f.cfg.URL)
		if ferr != nil {
			return fmt.Errorf("%w; reading the feed for its snapshot: %v", err, ferr)
		}
		if url = doc.page.Snapshot; url == "" {
			return fmt.Errorf("%w (and the feed links no snapshot to start again from)", err)
		}
	}
	f.log.Warn("a feed page this follower needs is gone (the publisher keeps fewer archive pages): bootstrapping from the snapshot again",
		"checkpoint", f.cp.Seq, "err", err)
	before := f.cp.Seq
	if berr := f.bootstrap(ctx, url); berr != nil {
		return berr
	}
	if f.cp.Seq == before { // the publisher's head is behind us (its log was reset?): back off, say why
		return fmt.Errorf("%w; and its snapshot holds nothing past checkpoint %d", err, before)
	}
	return nil
}

// bootstrap reads the snapshot at url and applies it with its checkpoint
// in one transaction.
func (f *Follower) bootstrap(ctx context.Context, url string) error {
	start := time.Now()
	f.drainAhead()
	pages, err := f.readSnapshot(ctx, url)
	if err != nil {
		return err
	}
	var events []Event
	asOf := pages[0].AsOf
	for _, p := range pages {
		if p.AsOf != asOf {
			return fmt.Errorf("snapshot: page %s is as of seq %d, the first page as of %d", config.Redact(p.Self), p.AsOf, asOf)
		}
		for _, e := range p.Events {
			if e.Seq > asOf {
				return fmt.Errorf("snapshot as of seq %d: page %s holds seq %d", asOf, config.Redact(p.Self), e.Seq)
			}
		}
		events = append(events, p.Events...)
	}
	fetched := time.Since(start)
	f.update(func(s *Status) { s.HeadSeq = max(s.HeadSeq, asOf) })
	if asOf <= f.cp.Seq { // nothing newer than what is applied: follow on
		f.snap.skipped = true
		return nil
	}
	slices.SortFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	cp := Checkpoint{Seq: asOf, Page: f.cfg.URL}
	applying := time.Now()
	err = f.cfg.DB.Write(ctx, func(tx *sqldb.Tx) error {
		if err := f.lease.fence(ctx, tx); err != nil {
			return err
		}
		for _, e := range events {
			if err := f.cfg.Apply(ctx, tx, e); err != nil {
				f.update(func(s *Status) { s.FailingSeq = e.Seq })
				return fmt.Errorf("apply snapshot entry seq %d (%s): %w", e.Seq, e.Type, err)
			}
		}
		return f.saveCheckpoint(ctx, tx, cp)
	})
	if err != nil {
		return fmt.Errorf("bootstrap from the snapshot as of seq %d: %w", asOf, err)
	}
	f.mApply.UpdateSince(applying)
	f.restart(cp)
	f.snap.metric.Inc(1)
	f.mApplied.Inc(int64(len(events)))
	f.update(func(s *Status) { s.LastApplied, s.FailingSeq = time.Now().UTC(), 0 })
	f.log.Info("bootstrapped from the snapshot", "as_of", asOf, "entries", len(events), "pages", len(pages),
		"read", fetched.String(), "took", time.Since(start).String())
	if f.cfg.OnApplied != nil {
		f.cfg.OnApplied(cp)
	}
	return nil
}

// readSnapshot fetches and parses every page of the snapshot from url.
// The publisher names each page's successor in a Link header as well as in
// the document, so the next page is asked for as soon as one arrives and
// pages are parsed while later ones are read, on every core; a page whose
// answer has no such header is parsed before going on. Every page must be a
// snapshot page whose next link (if any) matches the header.
func (f *Follower) readSnapshot(ctx context.Context, url string) ([]*Page, error) {
	type slot struct {
		page   *Page
		err    error
		header string // the next page, as the Link header named it
		done   chan struct{}
	}
	var slots []*slot
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	visited := map[string]bool{}
	fail := func(err error) ([]*Page, error) {
		for _, s := range slots {
			<-s.done
		}
		return nil, err
	}
	for next := url; next != ""; {
		if visited[next] {
			return fail(fmt.Errorf("snapshot: page %s links back to itself", config.Redact(next)))
		}
		visited[next] = true
		if len(slots) >= maxSnapshotPages {
			return fail(fmt.Errorf("snapshot: more than %d pages", maxSnapshotPages))
		}
		body, header, err := f.getSnapshotPage(ctx, next)
		if err != nil {
			return fail(fmt.Errorf("snapshot: %w", err))
		}
		s := &slot{header: header, done: make(chan struct{})}
		slots = append(slots, s)
		self := next
		sem <- struct{}{}
		go func() {
			defer close(s.done)
			defer func() { <-sem }()
			s.page, s.err = Parse(bytes.NewReader(body))
			if s.err == nil && s.page.Self == "" {
				s.page.Self = self
			}
			if s.err == nil && !s.page.IsSnapshot {
				s.err = fmt.Errorf("%s is not a snapshot document (no ev:snapshot element)", config.Redact(self))
			}
		}()
		if next = header; next == "" { // no header: the document says
			<-s.done
			if s.err != nil {
				return fail(fmt.Errorf("snapshot: %w", s.err))
			}
			next = s.page.Next
		}
	}
	pages := make([]*Page, len(slots))
	for i, s := range slots {
		<-s.done
		if s.err != nil {
			return fail(fmt.Errorf("snapshot: %w", s.err))
		}
		if s.header != "" && s.page.Next != s.header {
			return fail(fmt.Errorf("snapshot: page %s links next %q in its header, %q in the document", config.Redact(s.page.Self), config.Redact(s.header), config.Redact(s.page.Next)))
		}
		pages[i] = s.page
	}
	return pages, nil
}

// maxSnapshotPages bounds a snapshot, against a publisher that never ends
// one: 10 million subjects at the default page size.
const maxSnapshotPages = 10000

// getSnapshotPage GETs one snapshot page and returns its body and the
// next page its Link header names (resolved against url), if any.
func (f *Follower) getSnapshotPage(ctx context.Context, url string) (body []byte, next string, err error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, "", fmt.Errorf("snapshot URL %q: %w", config.Redact(url), err)
	}
	req.Header.Set("Accept", "application/atom+xml")
	resp, body, err := f.send(ctx, req, url, f.cfg.Timeout)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK { // a 304 to a GET that was not conditional
		return nil, "", &StatusError{URL: config.Redact(url), Code: resp.StatusCode}
	}
	f.update(func(s *Status) { s.LastPoll = time.Now().UTC() })
	if n := linkNext(resp.Header.Values("Link")); n != "" {
		if u, err := resp.Request.URL.Parse(n); err == nil {
			next = u.String()
		}
	}
	return body, next, nil
}

// linkNext returns the target of the rel="next" link of Link header
// values (RFC 8288), as the publisher writes them: <URI>; rel="next".
func linkNext(values []string) string {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			for param := range strings.SplitSeq(params, ";") {
				name, val, _ := strings.Cut(strings.TrimSpace(param), "=")
				if strings.EqualFold(name, "rel") && slices.Contains(strings.Fields(strings.Trim(val, `"`)), "next") {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}
