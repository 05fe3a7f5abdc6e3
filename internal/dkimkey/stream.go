package dkimkey

import (
	"encoding/base64"
	"io"
)

// base64Reader decodes encoded as it is read, skipping ASCII whitespace, so
// that neither the joined base64 nor the decoded message is ever built.
func base64Reader(encoded string) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, &spaceSkipper{s: encoded})
}

// spaceSkipper reads a string without its ASCII whitespace.
type spaceSkipper struct{ s string }

func (r *spaceSkipper) Read(p []byte) (int, error) {
	if len(r.s) == 0 {
		return 0, io.EOF
	}
	n, i := 0, 0
	for ; i < len(r.s) && n < len(p); i++ {
		if c := r.s[i]; !isSpace(c) {
			p[n] = c
			n++
		}
	}
	r.s = r.s[i:]
	return n, nil
}
