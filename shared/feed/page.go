package feed

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"html"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gorilla/feeds"
)

// XML namespaces used in the documents.
const (
	AtomNS    = "http://www.w3.org/2005/Atom"
	HistoryNS = "http://purl.org/syndication/history/1.0" // RFC 5005
	EventNS   = "urn:syndic:event"                        // the machine part of each entry
	// EventTypeScheme is the scheme of the category that names the event type.
	EventTypeScheme = "urn:syndic:event-type"
)

// Event is one entry of the event log a feed is built from.
type Event struct {
	Seq     int64           // dense, from 1, never reused
	Type    string          // e.g. contact.updated
	Title   string          // for people: "Ada Lovelace's email changed"
	Summary string          // for people: one line of detail
	Link    string          // the subject's HTML page: a path (/contacts/7) to publish; absolute when parsed
	Data    json.RawMessage // for programs: the whole subject after the change
	Time    time.Time       // when the change was committed
}

// page is the Atom document envelope. gorilla/feeds' AtomFeed holds a
// single link, which RFC 5005 cannot live with; its person, link and
// summary types are used inside this envelope.
type page struct {
	XMLName   xml.Name          `xml:"feed"`
	Xmlns     string            `xml:"xmlns,attr"`
	XmlnsFH   string            `xml:"xmlns:fh,attr"`
	XmlnsEv   string            `xml:"xmlns:ev,attr"`
	Title     string            `xml:"title"`
	ID        string            `xml:"id"`
	Updated   string            `xml:"updated"`
	Author    *feeds.AtomAuthor `xml:"author"`
	Generator string            `xml:"generator,omitempty"`
	Links     []feeds.AtomLink  `xml:"link"`
	Archive   *struct{}         `xml:"fh:archive"`
	Snapshot  *snapshotElement  `xml:"ev:snapshot"`
	Entries   []entry           `xml:"entry"`

	stylesheet string // a CSS stylesheet's URL for browsers (xml-stylesheet), or ""
}

type entry struct {
	ID       string             `xml:"id"`
	Title    text               `xml:"title"`
	Updated  string             `xml:"updated"`
	Links    []feeds.AtomLink   `xml:"link"`
	Category category           `xml:"category"`
	Summary  *feeds.AtomSummary `xml:"summary"`
	Event    eventElement       `xml:"ev:event"`
}

type text struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

type category struct {
	Term   string `xml:"term,attr"`
	Scheme string `xml:"scheme,attr"`
}

type eventElement struct {
	Seq  int64  `xml:"seq,attr"`
	Type string `xml:"type,attr"`
	JSON []byte `xml:",innerxml"` // escaped by escapeJSON
}

// timeFormat is RFC 3339 in UTC with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// render writes one Atom document. entries are given in seq order and
// written newest first, as feed readers expect. The entries are kept light
// for the programs that parse every one of them (gofeed parses each text
// element through a reflective decode): they carry no author of their own
// — the feed's applies to them (RFC 4287 §4.2.1) — and the document has
// no indentation, whose whitespace is tokens for every parser to skip.
func render(p page, events []Event, entryID func(seq int64) string, base string) ([]byte, error) {
	p.Xmlns, p.XmlnsFH, p.XmlnsEv = AtomNS, HistoryNS, EventNS
	p.Entries = make([]entry, 0, len(events))
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		en := entry{
			ID:       entryID(e.Seq),
			Title:    text{Type: "text", Value: e.Title},
			Updated:  formatTime(e.Time),
			Category: category{Term: e.Type, Scheme: EventTypeScheme},
			Event:    eventElement{Seq: e.Seq, Type: e.Type, JSON: escapeJSON(e.Data)},
		}
		if e.Link != "" {
			en.Links = []feeds.AtomLink{{Rel: "alternate", Type: "text/html", Href: base + e.Link}}
		}
		if e.Summary != "" {
			en.Summary = &feeds.AtomSummary{Type: "text", Content: e.Summary}
		}
		p.Entries = append(p.Entries, en)
	}
	var b bytes.Buffer
	b.Grow(512 + 1024*len(events))
	b.WriteString(xml.Header)
	if p.stylesheet != "" { // a browser shows the document as a page, not as raw XML
		b.WriteString(`<?xml-stylesheet type="text/css" href="` + html.EscapeString(p.stylesheet) + `"?>` + "\n")
	}
	enc := xml.NewEncoder(&b)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// escapeJSON makes JSON text safe as XML character data: &, < and > become
// entities (so "]]>" cannot appear), and any character XML 1.0 forbids —
// which JSON can only hold inside a string — becomes a JSON \u escape, so
// the parsed value is unchanged.
func escapeJSON(js []byte) []byte {
	out := make([]byte, 0, len(js)+len(js)/8)
	for i := 0; i < len(js); {
		c := js[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '&':
				out = append(out, "&amp;"...)
			case c == '<':
				out = append(out, "&lt;"...)
			case c == '>':
				out = append(out, "&gt;"...)
			case c < 0x20 && c != '\t' && c != '\n':
				out = appendUEscape(out, rune(c))
			default:
				out = append(out, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(js[i:])
		if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
			out = appendUEscape(out, r)
		} else {
			out = append(out, js[i:i+n]...)
		}
		i += n
	}
	return out
}

func appendUEscape(out []byte, r rune) []byte {
	s := strconv.FormatInt(int64(r), 16)
	out = append(out, `\u`...)
	for range 4 - len(s) {
		out = append(out, '0')
	}
	return append(out, s...)
}
