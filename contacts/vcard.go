package contacts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-vcard"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
)

// vCard (RFC 6350), the format every address book reads and writes: one
// contact or all of them out (/contacts/{id}.vcf, /contacts.vcf), a file of
// many cards in (POST /api/contacts/import, or the form on the list page).

// MaxImportBytes bounds a vCard file to import (about 300,000 short cards).
const MaxImportBytes = httpx.MaxBulkBytes

// importChunk is how many cards one transaction creates: each chunk
// commits whole or not at all, and a chunk's events go out with one insert.
const importChunk = 1000

// writeVCard writes c as a vCard 4.0.
func writeVCard(w io.Writer, cs ...Contact) error {
	enc := vcard.NewEncoder(w)
	for _, c := range cs {
		card := vcard.Card{}
		card.SetValue(vcard.FieldVersion, "4.0")
		card.SetValue(vcard.FieldFormattedName, c.Name)
		card.SetName(splitName(c.Name))
		card.Add(vcard.FieldEmail, &vcard.Field{Value: c.Email, Params: vcard.Params{vcard.ParamType: {"internet"}}})
		if c.Phone != "" {
			card.Add(vcard.FieldTelephone, &vcard.Field{Value: c.Phone, Params: vcard.Params{vcard.ParamValue: {"text"}}})
		}
		card.SetValue(vcard.FieldUID, "urn:syndic:contacts:contact:"+strconv.FormatInt(c.ID, 10))
		card.SetRevision(c.UpdatedAt)
		if err := enc.Encode(card); err != nil {
			return fmt.Errorf("vCard of contact %d: %w", c.ID, err)
		}
	}
	return nil
}

// splitName is the structured name (N) of a formatted one, as address
// books expect it: the last word the family name, the rest given names.
func splitName(fn string) *vcard.Name {
	i := strings.LastIndexByte(fn, ' ')
	if i < 0 {
		return &vcard.Name{GivenName: fn}
	}
	return &vcard.Name{GivenName: fn[:i], FamilyName: fn[i+1:]}
}

// ImportRefusal is a card that was not imported, by its position in the
// file (1 for the first card), and why.
type ImportRefusal struct {
	Card     int              `json:"card"`
	Name     string           `json:"name,omitempty"`
	Problems derrors.Problems `json:"problems"`
}

// ImportResult says what an import did.
type ImportResult struct {
	Created int             `json:"created"`
	Refused []ImportRefusal `json:"refused"`
}

// readVCards reads every card of a vCard file and turns each into an
// Input. A file that doesn't parse is refused whole (nothing is imported),
// naming the card where it broke; a card that parses but makes no valid
// contact is refused alone, by its position.
func readVCards(r io.Reader) ([]Input, []ImportRefusal, error) {
	dec := vcard.NewDecoder(r)
	var ins []Input
	var refused []ImportRefusal
	for n := 1; ; n++ {
		card, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			if n == 1 {
				return nil, nil, derrors.Problems{"body": "holds no vCard (BEGIN:VCARD … END:VCARD)"}
			}
			return ins, refused, nil
		}
		if err != nil {
			return nil, nil, derrors.Problems{"body": fmt.Sprintf("card %d is not a vCard: %v; nothing was imported", n, err)}
		}
		in := cardInput(card).Normalize()
		if err := in.Validate(); err != nil {
			var p derrors.Problems
			errors.As(err, &p)
			refused = append(refused, ImportRefusal{Card: n, Name: in.Name, Problems: p})
			ins = append(ins, Input{}) // keeps positions: an empty Input is skipped
			continue
		}
		ins = append(ins, in)
	}
}

// cardInput is the contact a card describes: its formatted name (or its
// structured one), its preferred email and telephone.
func cardInput(card vcard.Card) Input {
	name := card.PreferredValue(vcard.FieldFormattedName)
	if name == "" {
		if n := card.Name(); n != nil {
			name = strings.Join(strings.Fields(strings.Join([]string{n.HonorificPrefix, n.GivenName, n.AdditionalName, n.FamilyName, n.HonorificSuffix}, " ")), " ")
		}
	}
	phone := strings.TrimPrefix(card.PreferredValue(vcard.FieldTelephone), "tel:")
	return Input{Name: name, Email: strings.TrimPrefix(card.PreferredValue(vcard.FieldEmail), "mailto:"), Phone: phone}
}

// vcardBody is the vCard of cs, for a response.
func vcardBody(cs ...Contact) ([]byte, error) {
	var b bytes.Buffer
	err := writeVCard(&b, cs...)
	return b.Bytes(), err
}
