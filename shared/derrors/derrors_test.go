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
	p.Text("nick", "\u200B", true, 5)
	p.Text("where", " \u200B\u0301\uFEFF ", false, 9)
	p.Text("sign", "★", true, 5)
	want := map[string]string{
		"name":  "is required",
		"title": "must be at most 5 characters, not 6",
		"city":  "must not contain control characters (found U+000A)",
		"nick":  "must contain a visible character (letters, digits, punctuation or symbols), not only spaces or invisible ones",
		"where": "must contain a visible character (letters, digits, punctuation or symbols), not only spaces or invisible ones",
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
	for s, bad := range map[string]bool{"Ada Lovelace": false, "Zoë 🎉": false, "tab\t": true, "\xff": true, "\uFFFE": true, "\uFDD0": true,
		"photo\u202Egnp.exe": true, "a\u2066b": true, "a\u2069": true, "a\u202A": true, "\u200F": false, "עברית and English": false} {
		if got := BadText(s) != ""; got != bad {
			t.Errorf("BadText(%q) = %q", s, BadText(s))
		}
	}
}
