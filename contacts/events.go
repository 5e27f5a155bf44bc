package contacts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Event types in the feed.
const (
	EventCreated = "contact.created"
	EventUpdated = "contact.updated"
	EventDeleted = "contact.deleted"
)

// event is an event row before it has a seq: the human part (title and
// summary, worded once, when the change happens) and the machine part
// (the whole contact after the change).
type event struct {
	Type      string
	ContactID int64
	Title     string
	Summary   string
	Data      []byte
}

func newEvent(typ string, before, after Contact) event {
	var data bytes.Buffer
	enc := json.NewEncoder(&data)
	enc.SetEscapeHTML(false) // the feed escapes for XML; keep the JSON readable
	_ = enc.Encode(after)    // a Contact always encodes
	e := event{Type: typ, ContactID: after.ID, Data: bytes.TrimSuffix(data.Bytes(), []byte("\n"))}
	switch typ {
	case EventCreated:
		e.Title = after.Name + " was added"
		e.Summary = describe(after)
	case EventDeleted:
		e.Title = after.Name + " was deleted"
		e.Summary = describe(after) + " was removed from contacts"
	default:
		var fields, changes []string
		for _, f := range []struct{ name, old, new string }{
			{"name", before.Name, after.Name},
			{"email", before.Email, after.Email},
			{"phone", before.Phone, after.Phone},
		} {
			if f.old == f.new {
				continue
			}
			fields = append(fields, f.name)
			if f.new == "" {
				changes = append(changes, f.name+" removed")
			} else {
				changes = append(changes, f.name+" is now "+f.new)
			}
		}
		e.Title = fmt.Sprintf("%s's %s changed", before.Name, joinAnd(fields))
		e.Summary = after.Name + ": " + strings.Join(changes, ", ")
	}
	return e
}

// describe writes a contact for people: "Ada Lovelace <ada@example.org>, phone 123".
func describe(c Contact) string {
	s := c.Name + " <" + c.Email + ">"
	if c.Phone != "" {
		s += ", phone " + c.Phone
	}
	return s
}

func joinAnd(words []string) string {
	switch len(words) {
	case 0:
		return "details"
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
