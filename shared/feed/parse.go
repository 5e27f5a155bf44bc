package feed

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/mmcdole/gofeed/atom"
	ext "github.com/mmcdole/gofeed/extensions"
)

// Page is one parsed feed document: its RFC 5005 links and its events in
// seq order.
type Page struct {
	Self, Current, First, PrevArchive, NextArchive string
	Archive                                        bool // carries fh:archive
	Events                                         []Event
	// Snapshot links the publisher's snapshot (rel RelSnapshot). In a
	// snapshot page, IsSnapshot is set, AsOf is its seq and Next links the
	// next page (see snapshot.go).
	Snapshot, Next string
	IsSnapshot     bool
	AsOf           int64
}

// Parse reads an Atom document with gofeed's atom parser. Every entry must
// carry the machine part (an event element with seq, type and JSON); an
// entry without one, or with a bad one, is an error naming the entry.
func Parse(r io.Reader) (*Page, error) {
	f, err := (&atom.Parser{}).Parse(r)
	if err != nil {
		return nil, fmt.Errorf("parse feed: %w", err)
	}
	p := &Page{}
	for _, l := range f.Links {
		switch l.Rel {
		case "self":
			p.Self = l.Href
		case "current":
			p.Current = l.Href
		case "first":
			p.First = l.Href
		case "prev-archive":
			p.PrevArchive = l.Href
		case "next-archive":
			p.NextArchive = l.Href
		case "next":
			p.Next = l.Href
		case RelSnapshot:
			p.Snapshot = l.Href
		}
	}
	_, p.Archive = findExt(f.Extensions, "archive")
	if err := parseSnapshot(f, p); err != nil {
		return nil, err
	}
	for _, en := range f.Entries {
		e, err := parseEntry(en)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", en.ID, err)
		}
		p.Events = append(p.Events, e)
	}
	slices.SortFunc(p.Events, func(a, b Event) int { return int(a.Seq - b.Seq) })
	return p, nil
}

func parseEntry(en *atom.Entry) (Event, error) {
	x, ok := findExt(en.Extensions, "event")
	if !ok {
		return Event{}, fmt.Errorf("no %s event element", EventNS)
	}
	seq, err := strconv.ParseInt(x.Attrs["seq"], 10, 64)
	if err != nil || seq < 1 {
		return Event{}, fmt.Errorf("event seq %q: want a positive integer", x.Attrs["seq"])
	}
	e := Event{Seq: seq, Type: x.Attrs["type"], Title: en.Title, Summary: en.Summary, Data: json.RawMessage(x.Value)}
	if e.Type == "" {
		return Event{}, fmt.Errorf("event %d: no type", seq)
	}
	if !json.Valid(e.Data) {
		return Event{}, fmt.Errorf("event %d: the data is not valid JSON", seq)
	}
	for _, l := range en.Links {
		if l.Rel == "alternate" || l.Rel == "" {
			e.Link = l.Href
			break
		}
	}
	if en.UpdatedParsed != nil {
		e.Time = en.UpdatedParsed.UTC()
	} else if t, err := time.Parse(time.RFC3339, en.Updated); err == nil {
		e.Time = t.UTC()
	}
	return e, nil
}

// findExt finds an extension element by name, whatever prefix the
// document bound its namespace to.
func findExt(exts ext.Extensions, name string) (ext.Extension, bool) {
	for _, byName := range exts {
		if xs := byName[name]; len(xs) > 0 {
			return xs[0], true
		}
	}
	return ext.Extension{}, false
}
