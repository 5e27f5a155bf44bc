package e2e

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-vcard"

	"syndic/calendar"
	"syndic/contacts"
)

// TestVCardImportTenThousand: 10,000 vCards go in through the API in one
// file; the export of all parses back to the same names and emails; and
// calendar's copy equals contacts afterwards.
func TestVCardImportTenThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 cards")
	}
	t.Parallel()
	const n = 10000
	con := startContacts(t, "", contacts.Config{})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{})
	capi, kapi := newAPI(t, con.URL), newAPI(t, cal.URL)

	var file strings.Builder
	want := map[string]string{} // email → name
	for i := range n {
		name, email := fmt.Sprintf("Card Person %d «%c»", i, 'α'+rune(i%24)), fmt.Sprintf("card%d@example.org", i)
		want[email] = name
		fmt.Fprintf(&file, "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:%s\r\nEMAIL:%s\r\nTEL;VALUE=text:+44 20 7946 %04d\r\nEND:VCARD\r\n", name, email, i)
	}
	var res contacts.ImportResult
	start := time.Now()
	capi.Must(200, "POST", "/api/contacts/import", file.String(), &res, "Content-Type", "text/vcard")
	t.Logf("imported %d cards in %v", n, time.Since(start))
	if res.Created != n || len(res.Refused) != 0 {
		t.Fatalf("created %d, refused %d: want %d, 0", res.Created, len(res.Refused), n)
	}

	resp, body := capi.Do("GET", "/contacts.vcf", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	dec := vcard.NewDecoder(bytes.NewReader(body))
	got := 0
	for {
		card, err := dec.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if email := card.Value(vcard.FieldEmail); want[email] != card.Value(vcard.FieldFormattedName) {
			t.Fatalf("exported %q <%s>, imported %q", card.Value(vcard.FieldFormattedName), email, want[email])
		}
		got++
	}
	if got != n {
		t.Fatalf("the export holds %d cards, want %d", got, n)
	}

	waitSync(t, kapi, 60*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == n && s.Lag == 0 })
	if diff := copyDiff(capi, kapi, nil); diff != "" {
		t.Fatal(diff)
	}
}
