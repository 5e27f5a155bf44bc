package view

import (
	"maps"
	"net/http"
	"net/url"
	"strconv"
)

// PageLinks are the links to the page before and after the one at offset
// of a list shown size rows a page: path with the query q and the offset
// (left out on the first page). more says the read found a row past this
// page. A link is "" where there is no such page.
func PageLinks(path string, q url.Values, offset, size int, more bool) (prev, next string) {
	link := func(offset int) string {
		v := maps.Clone(q)
		if v == nil {
			v = url.Values{}
		}
		if offset > 0 {
			v.Set("offset", strconv.Itoa(offset))
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	if offset > 0 {
		prev = link(max(0, offset-size))
	}
	if more {
		next = link(offset + size)
	}
	return prev, next
}

// Done is the message that says what a form just did, from the done
// parameter its redirect carries: one of says, so a link can't make a page
// say anything else; "" for none.
func Done(r *http.Request, says map[string]string) string {
	return says[r.URL.Query().Get("done")]
}
