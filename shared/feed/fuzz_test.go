package feed

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"syndic/shared/derrors"
)

// FuzzParse: any bytes either fail to parse or give events in seq order,
// each with a type and valid JSON.
func FuzzParse(f *testing.F) {
	log := &memLog{}
	log.add(3)
	body, _ := renderForFuzz(log.events, "https://contacts.example.org")
	f.Add(body)
	f.Add([]byte(`<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id></entry></feed>`))
	f.Add([]byte(`<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xmlns:ev="urn:syndic:event"><entry><ev:event seq="1" type="t">{}</ev:event></entry></feed>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		for i, e := range p.Events {
			if i > 0 && e.Seq < p.Events[i-1].Seq {
				t.Fatalf("events out of order: %d after %d", e.Seq, p.Events[i-1].Seq)
			}
			if e.Seq < 1 || e.Type == "" || !json.Valid(e.Data) {
				t.Fatalf("accepted a bad event %+v", e)
			}
		}
	})
}

func renderForFuzz(events []Event, base string) ([]byte, error) {
	p := &Publisher{opt: Options{Title: "t", ID: "urn:x", EntryID: "urn:x:", Author: "a", Path: "/feed"}, mRenders: nopCounter{}}
	return p.render(base, nil, false, events, time.Unix(0, 0))
}

type nopCounter struct{}

func (nopCounter) Inc(int64) {}

// FuzzRoundTrip: whatever text validation lets through comes out of the
// feed exactly as it went in, human part and machine part.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, s+" summary", s)
	}
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, title, summary, name string) {
		for _, s := range []string{title, summary} {
			// What the services' validation refuses or trims never reaches a feed.
			if derrors.BadText(s) != "" || strings.TrimSpace(s) != s {
				t.Skip()
			}
		}
		data, _ := json.Marshal(map[string]string{"name": name})
		e := Event{Seq: 1, Type: "contact.created", Title: title, Summary: summary, Link: "/contacts/1", Data: data, Time: time.Unix(1, 0)}
		body, err := renderForFuzz([]Event{e}, "https://x.example")
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("our own page does not parse: %v\n%s", err, body)
		}
		got := p.Events[0]
		if got.Title != title || got.Summary != summary {
			t.Fatalf("title %q summary %q came back as %q and %q", title, summary, got.Title, got.Summary)
		}
		var back map[string]string
		if err := json.Unmarshal(got.Data, &back); err != nil {
			t.Fatal(err)
		}
		var want map[string]string
		json.Unmarshal(data, &want)
		if back["name"] != want["name"] {
			t.Fatalf("name %q came back as %q", want["name"], back["name"])
		}
	})
}

// FuzzFollow serves a subscription document with fuzzed seqs (gaps,
// duplicates, disorder) to a follower with no checkpoint: it applies a
// prefix 1…n once each, in order, or nothing — never out of order, never
// twice — and applies all when the seqs are exactly 1…m.
func FuzzFollow(f *testing.F) {
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{2, 3})
	f.Add([]byte{1, 1, 2})
	f.Add([]byte{3, 1, 2})
	f.Add([]byte{1, 2, 4})
	f.Fuzz(func(t *testing.T, seqs []byte) {
		if len(seqs) > 64 {
			return
		}
		var events []Event
		for _, s := range seqs {
			events = append(events, Event{Seq: int64(s), Type: "contact.created", Title: "x", Data: []byte(`{}`), Time: time.Unix(int64(s), 0)})
		}
		body, err := renderForFuzz(events, "")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
		defer srv.Close()
		s := newSink(t)
		var order []int64
		s.after = func(e Event) error { order = append(order, e.Seq); return nil }
		fl, err := NewFollower(context.Background(), FollowerConfig{Name: "f", URL: srv.URL + "/feed", DB: s.db, Apply: s.apply, Wait: -1})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := fl.lease.acquire(context.Background()); !ok {
			t.Fatalf("follower lease: %v, %v", ok, err)
		}
		_, stepErr := fl.step(context.Background())
		cp := fl.Status().CheckpointSeq
		s.check(t, cp) // 1…cp applied exactly once
		for i, seq := range order {
			if seq != int64(i+1) && cp > 0 {
				t.Fatalf("applied in order %v", order)
			}
		}
		exact := len(seqs) > 0
		seen := map[byte]bool{}
		for _, b := range seqs {
			if b == 0 || int(b) > len(seqs) || seen[b] {
				exact = false
			}
			seen[b] = true
		}
		if exact && (stepErr != nil || cp != int64(len(seqs))) {
			t.Fatalf("seqs %v are 1…%d but checkpoint %d, err %v", seqs, len(seqs), cp, stepErr)
		}
	})
}
