// Package jsonb knows what PostgreSQL's jsonb (and text) can store that
// JSON allows: no \u0000 and no unpaired UTF-16 surrogate. Every document
// that reaches the database from outside — request bodies, handler results,
// custom event payloads — is checked here first, so that a value PostgreSQL
// refuses becomes the caller's 4xx or the step's failure, not a failed
// statement (a failed flush would hold back every other step in its batch).
package jsonb

import (
	"fmt"
	"strconv"
	"unicode/utf16"
)

// Unstorable finds the first \u escape of a well-formed document
// that PostgreSQL cannot store: \u0000 (text has no NUL) and a UTF-16
// surrogate without its pair (not a character at all). It returns the
// escape's offset and what it is, or -1.
func Unstorable(body []byte) (int, string) {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 32)
		return rune(n), err == nil
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // a two-byte escape such as \\ or \": skip what it escapes
			continue
		}
		switch {
		case r == 0:
			return i, "the escape \\u0000 (a NUL character, which cannot be stored)"
		case utf16.IsSurrogate(r) && r < 0xdc00:
			if lo, ok := hex4(i + 6); ok && lo >= 0xdc00 && lo <= 0xdfff {
				i += 11 // the pair is one character
				continue
			}
			fallthrough
		case utf16.IsSurrogate(r):
			return i, fmt.Sprintf("the escape \\u%04x, half of a UTF-16 surrogate pair without its other half (not a character)", r)
		}
		i += 5
	}
	return -1, ""
}
