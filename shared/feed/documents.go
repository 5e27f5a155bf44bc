// The documents a Publisher serves — the subscription document and the
// archive pages — rendered with their links and ETags.

package feed

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/feeds"
)

type rendered struct {
	key  pageKey
	body []byte
	etag string
	next string // a snapshot page's next page, for its Link header

	gzOnce sync.Once
	gz     []byte
}

// gzip returns the body gzip-encoded, compressing it with z on first use.
func (r *rendered) gzip(z *gzipper) []byte {
	r.gzOnce.Do(func() { r.gz = z.encode(r.body) })
	return r.gz
}

func (r *rendered) size() int { return len(r.body) + len(r.gz) + 128 }

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
	links = append(links, p.snapshotLink(key.base)...)
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
	pg := p.shell(base, links, updated)
	if archive {
		pg.Archive = &struct{}{}
	}
	return p.renderPage(pg, events, base)
}

// shell is the envelope every document of the feed shares: title, id,
// author, its links and the one to the HTML list, the stylesheet.
func (p *Publisher) shell(base string, links []feeds.AtomLink, updated time.Time) page {
	return page{
		Title:     p.opt.Title,
		ID:        p.opt.ID,
		Updated:   formatTime(updated),
		Author:    &feeds.AtomAuthor{AtomPerson: feeds.AtomPerson{Name: p.opt.Author}},
		Generator: "syndic",
		Links:     append(links, feeds.AtomLink{Rel: "alternate", Type: "text/html", Href: base + "/"}),

		stylesheet: p.opt.Stylesheet,
	}
}

// renderPage renders pg with events (in seq order), counting it.
func (p *Publisher) renderPage(pg page, events []Event, base string) ([]byte, error) {
	p.mRenders.Inc(1)
	return render(pg, events, func(seq int64) string { return p.opt.EntryID + strconv.FormatInt(seq, 10) }, base)
}

// currentKey names one /feed document: its head, its first seq and the
// base URL of its links.
type currentKey struct {
	head, from int64
	base       string
}

// renderCall is a rendering of /feed in flight, which every request for
// the same document waits for instead of rendering it again.
type renderCall struct {
	done  chan struct{} // closed once doc or err is set
	doc   *rendered
	err   error
	ended bool // err came from the context of the request that rendered
}

// maxCurrent bounds the /feed documents kept for the newest head: one per
// base URL and first seq (followers at different checkpoints ask ?after
// different seqs).
const maxCurrent = 64

// renderCurrent returns the subscription document at head: the events
// after the last full page or, when after ≥ 0, those after after, reaching
// back at most into the newest archive page. Each document is rendered
// once for the newest head and its bytes (and their gzip encoding) shared
// by every request for it; requests that ask for it while it renders wait
// for that rendering.
func (p *Publisher) renderCurrent(ctx context.Context, head int64, base string, after int64) (*rendered, error) {
	n := int64(p.opt.PageSize)
	// Without ?after: the newest page's worth of entries, reaching back into
	// the newest archive where the page being filled holds fewer — so a
	// feed reader subscribing right after a page filled still sees the
	// latest changes. (Followers order by seq and skip what they applied.)
	from := max(head-n, 0) + 1
	if after >= 0 {
		from = max(after, (head/n)*n-n, 0) + 1
	}
	from = min(from, head+1)
	key := currentKey{head, from, base}
	for {
		p.mu.Lock()
		if doc := p.current[key]; doc != nil {
			p.mu.Unlock()
			return doc, nil
		}
		if c := p.renders[key]; c != nil {
			p.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if c.ended && ctx.Err() == nil {
				continue // the request that rendered ended: render it here
			}
			return c.doc, c.err
		}
		c := &renderCall{done: make(chan struct{})}
		p.renders[key] = c
		p.mu.Unlock()
		doc, err := p.renderHead(ctx, head, base, from)
		p.mu.Lock()
		c.doc, c.err, c.ended = doc, err, err != nil && ctx.Err() != nil
		delete(p.renders, key)
		close(c.done)
		if err == nil && head >= p.curHead {
			if head > p.curHead || len(p.current) >= maxCurrent {
				clear(p.current)
				p.curHead = head
			}
			p.current[key] = doc
		}
		p.mu.Unlock()
		return doc, err
	}
}

// renderHead renders the subscription document at head from seq from.
func (p *Publisher) renderHead(ctx context.Context, head int64, base string, from int64) (*rendered, error) {
	full := head / int64(p.opt.PageSize) // archive pages that are full
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
			feeds.AtomLink{Rel: "first", Href: base + p.ArchivePath(p.oldestPage(full))},
			feeds.AtomLink{Rel: "prev-archive", Href: base + p.ArchivePath(full)})
	}
	links = append(links, p.snapshotLink(base)...)
	body, err := p.render(base, links, false, events, updated)
	if err != nil {
		return nil, err
	}
	return &rendered{key: pageKey{0, base}, body: body, etag: p.currentETag(head, base)}, nil
}
