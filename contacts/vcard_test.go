package contacts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-vcard"
)

// cards is a vCard file made of the given cards' lines.
func cards(cs ...[]string) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString("BEGIN:VCARD\r\n")
		for _, l := range c {
			b.WriteString(l + "\r\n")
		}
		b.WriteString("END:VCARD\r\n")
	}
	return b.String()
}

// TestVCardImport: each valid card becomes a contact with its event; a
// card that makes no valid contact, or whose email another contact has
// (in the database or earlier in the file), is refused by its position;
// a file that doesn't parse imports nothing.
func TestVCardImport(t *testing.T) {
	t.Parallel()
	c := newClient(t, runService(t, Config{}))
	c.create(Input{Name: "Ada Lovelace", Email: "ada@example.org"})
	before := feedHead(t, c)

	file := cards(
		[]string{"VERSION:4.0", "FN:Grace Hopper", "EMAIL;TYPE=work:grace@example.org", "TEL;VALUE=uri:tel:+1-202-555-0100"},
		[]string{"VERSION:3.0", "N:Turing;Alan;Mathison;;", "EMAIL:alan@example.org"}, // no FN: the structured name
		[]string{"VERSION:4.0", "FN:No Email"},
		[]string{"VERSION:4.0", "FN:Ada Again", "EMAIL:ADA@example.org"},
		[]string{"VERSION:4.0", "FN:Grace Twice", "EMAIL:grace@example.org"},
		[]string{"VERSION:4.0", "FN:Evil\u202Egnp.exe", "EMAIL:evil@example.org"},
		[]string{"VERSION:4.0", "FN:Émilie du Châtelet", "EMAIL;PREF=1:emilie@example.org", "EMAIL:other@example.org"},
	)
	resp, body := c.Do("POST", "/api/contacts/import", file, "Content-Type", "text/vcard")
	var res ImportResult
	if err := json.Unmarshal(body, &res); err != nil || resp.StatusCode != 200 {
		t.Fatalf("import: %d %s", resp.StatusCode, body)
	}
	refused := map[int]string{}
	for _, r := range res.Refused {
		for field := range r.Problems {
			refused[r.Card] = field
		}
	}
	if res.Created != 3 || fmt.Sprint(refused) != "map[3:email 4:email 5:email 6:name]" {
		t.Fatalf("created %d, refused %v; want 3 created and cards 3 (no email), 4 (Ada's), 5 (Grace's, earlier in the file), 6 (override) refused: %s", res.Created, refused, body)
	}
	var got []Contact
	for _, p := range readPage(t, c, "/feed").Events {
		if p.Seq > before {
			var ct Contact
			json.Unmarshal(p.Data, &ct)
			got = append(got, ct)
		}
	}
	if len(got) != 3 || got[0].Name != "Grace Hopper" || got[0].Phone != "+1-202-555-0100" || got[1].Name != "Alan Mathison Turing" || got[2].Email != "emilie@example.org" {
		t.Fatalf("events after the import: %+v", got)
	}

	head := feedHead(t, c)
	for name, tc := range map[string]struct {
		body, ctype string
		status      int
	}{
		"malformed":        {cards([]string{"VERSION:4.0", "FN:Fine", "EMAIL:fine@example.org"}) + "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Cut Short\r\n", "text/vcard", 400}, // ends inside a card
		"empty":            {"", "text/vcard", 400},
		"wrong media type": {cards([]string{"FN:X", "EMAIL:x@example.org"}), "application/json", 415},
	} {
		resp, body := c.Do("POST", "/api/contacts/import", tc.body, "Content-Type", tc.ctype)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, tc.status, body)
		}
	}
	if h := feedHead(t, c); h != head {
		t.Errorf("refused files moved the feed from %d to %d", head, h)
	}
}

// TestVCardExport: one contact's vCard and everyone's parse back to the
// contacts, and the import form takes a file exported so.
func TestVCardExport(t *testing.T) {
	t.Parallel()
	base := runService(t, Config{})
	c := newClient(t, base)
	ada := c.create(Input{Name: "Ada Lovelace", Email: "ada@example.org", Phone: "+44 20 7946 0958"})
	c.create(Input{Name: "Grace Hopper", Email: "grace@example.org"})

	get := func(path string) []vcard.Card {
		resp, body := c.Do("GET", path, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/vcard") {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var out []vcard.Card
		dec := vcard.NewDecoder(bytes.NewReader(body))
		for {
			card, err := dec.Decode()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatalf("GET %s: %v\n%s", path, err, body)
			}
			out = append(out, card)
		}
	}
	one := get(fmt.Sprintf("/contacts/%d.vcf", ada.ID))
	if len(one) != 1 || one[0].Value(vcard.FieldFormattedName) != "Ada Lovelace" || one[0].Value(vcard.FieldEmail) != "ada@example.org" ||
		one[0].Value(vcard.FieldTelephone) != "+44 20 7946 0958" || one[0].Name().FamilyName != "Lovelace" || one[0].Value(vcard.FieldUID) != fmt.Sprintf("urn:syndic:contacts:contact:%d", ada.ID) {
		t.Fatalf("Ada's vCard: %+v", one)
	}
	all := get("/contacts.vcf")
	if len(all) != 2 || all[1].Value(vcard.FieldEmail) != "grace@example.org" {
		t.Fatalf("all vCards: %+v", all)
	}
	if resp, _ := c.Do("GET", "/contacts/999.vcf", nil); resp.StatusCode != 404 {
		t.Errorf("vCard of no contact: %d", resp.StatusCode)
	}

	// The list page's form imports a file: here everyone's export, renamed.
	var file bytes.Buffer
	if err := writeVCard(&file, Contact{ID: 1, Name: "Alan Turing", Email: "alan@example.org"}, Contact{ID: 2, Name: "Ada Twice", Email: "ada@example.org"}); err != nil {
		t.Fatal(err)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "contacts.vcf")
	fw.Write(file.Bytes())
	mw.Close()
	req, _ := http.NewRequest("POST", base+"/contacts/import", &form)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", base)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "1 contact created. 1 card refused — card 2 (Ada Twice): invalid email: is already the email of Ada Lovelace") {
		t.Fatalf("import form: %d\n%s", resp.StatusCode, page)
	}
}
