package calendar

import (
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseZone reads the form's time zone field: an IANA name such as
// Europe/Paris, or a fixed offset written UTC+01:00 or UTC-05:30 (what the
// edit form shows, since only the offset is stored). Empty is UTC.
func parseZone(name string) (*time.Location, error) {
	bad := errors.New("is unknown: use an IANA name such as Europe/Paris, or an offset such as UTC+01:00")
	switch {
	case name == "" || strings.EqualFold(name, "UTC"):
		return time.UTC, nil
	case len(name) > 3 && strings.EqualFold(name[:3], "UTC") && (name[3] == '+' || name[3] == '-'):
		return parseOffset(name[3:])
	case name == "Local": // the server's zone: meaningless to the person typing
		return nil, bad
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, bad
	}
	return loc, nil
}

// zoneLabel names an appointment's zone for people: "Europe/Paris,
// UTC+02:00" with an IANA zone (the offset that of its start), else the
// offset alone.
func zoneLabel(a Appointment) string {
	off := fixedZone(a.Start()).String()
	if a.TimeZone == "" || a.TimeZone == off {
		return off
	}
	return a.TimeZone + ", " + off
}

// ianaZone loads an IANA time zone name ("" is none, and no error).
func ianaZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" || strings.HasPrefix(name, "UTC+") || strings.HasPrefix(name, "UTC-") {
		return nil, errors.New("is not an IANA time zone name such as Europe/Paris")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, errors.New("is not an IANA time zone name such as Europe/Paris")
	}
	return loc, nil
}

// parseOffset reads a sign and hours with optional minutes ("+1",
// "+01", "+01:00", "-0530") as a fixed zone.
func parseOffset(s string) (*time.Location, error) {
	bad := errors.New("has an offset that is not ±hh:mm, like UTC+01:00 or UTC-05:30")
	sign, hh, mm := s[0], s[1:], "00"
	if h, m, ok := strings.Cut(hh, ":"); ok {
		hh, mm = h, m
	} else if len(hh) == 4 {
		hh, mm = hh[:2], hh[2:]
	}
	if len(hh) < 1 || len(hh) > 2 || len(mm) != 2 || strings.Trim(hh+mm, "0123456789") != "" {
		return nil, bad
	}
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if h > 23 || m > 59 {
		return nil, bad
	}
	offset := (h*60 + m) * 60
	if sign == '-' {
		offset = -offset
	}
	return time.FixedZone(offsetName(offset), offset), nil
}

// offsetName writes an offset in seconds as "UTC", "UTC+01:00" or
// "UTC-05:30".
func offsetName(offset int) string {
	if offset == 0 {
		return "UTC"
	}
	sign := '+'
	if offset < 0 {
		sign, offset = '-', -offset
	}
	return fmt.Sprintf("UTC%c%02d:%02d", sign, offset/3600, offset/60%60)
}

// fixedZone is t's offset as a fixed zone named by offsetName: the zone
// pages, forms and mails show an appointment in. (A parsed time may carry the server's Local zone when the offset matched it,
// which would shift other times across a DST change.)
func fixedZone(t time.Time) *time.Location {
	_, offset := t.Zone()
	return time.FixedZone(offsetName(offset), offset)
}

// zoneNames are the IANA zones the form offers (zones.txt), UTC first.
func zoneNames() []string {
	var names []string
	for _, l := range strings.Split(zonesTxt, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			names = append(names, l)
		}
	}
	return names
}

//go:embed zones.txt
var zonesTxt string
