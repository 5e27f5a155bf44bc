package derrors

import (
	"errors"
	"strings"
	"testing"
)

func TestProblems(t *testing.T) {
	p := Problems{}
	if p.Err() != nil {
		t.Fatal("no problems is not an error")
	}
	p.Text("name", "", true, 5)
	p.Text("note", "", false, 5)
	p.Text("title", "abcdef", true, 5)
	p.Text("city", "a\nb", false, 5)
	p.Add("name", "a second problem is not kept")
	want := map[string]string{
		"name":  "is required",
		"title": "must be at most 5 characters, not 6",
		"city":  "must not contain control characters (found U+000A)",
	}
	if len(p) != len(want) {
		t.Fatalf("problems %v, want %v", p, want)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s: %q, want %q", k, p[k], v)
		}
	}
	err := p.Err()
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid city: ") {
		t.Fatalf("Err() = %v: want ErrInvalid listing fields in order", err)
	}
}

func TestBadText(t *testing.T) {
	for s, bad := range map[string]bool{"Ada Lovelace": false, "Zoë 🎉": false, "tab\t": true, "\xff": true, "\uFFFE": true, "\uFDD0": true} {
		if got := BadText(s) != ""; got != bad {
			t.Errorf("BadText(%q) = %q", s, BadText(s))
		}
	}
}
