package httpx

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// BadText explains why s cannot be stored as text — invalid UTF-8, a
// control character (line breaks included) or a Unicode noncharacter — or
// returns "" when it can. Such characters break XML, iCal and mail headers.
func BadText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return fmt.Sprintf("must not contain control characters (found U+%04X)", r)
		case r == 0xFFFE || r == 0xFFFF || r >= 0xFDD0 && r <= 0xFDEF:
			return fmt.Sprintf("must not contain the noncharacter U+%04X", r)
		}
	}
	return ""
}
