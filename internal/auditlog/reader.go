package auditlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"sync/atomic"
)

// DefaultMaxLine bounds one audit line. Vault writes a whole request and its
// response on one line; a response listing thousands of keys runs to a few
// MB, so this leaves room while keeping memory bounded.
const DefaultMaxLine = 16 << 20

const readBufferSize = 256 << 10

// gzipMagic starts every gzip stream (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// decompressed returns r, or a gunzipping reader over it when r starts with
// the gzip magic bytes: the file name does not matter, so a rotated log
// piped through stdin works as well. Concatenated gzip members (logrotate
// with copytruncate, cat a.gz b.gz) are read as one stream.
func decompressed(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, readBufferSize)
	head, err := br.Peek(len(gzipMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if !bytes.Equal(head, gzipMagic) {
		return br, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, err
	}
	return bufio.NewReaderSize(zr, readBufferSize), nil
}

// lineReader hands out the lines of a stream one at a time, without their
// end of line, in a buffer reused from line to line. A line longer than max
// is skipped whole and counted, so one corrupt line cannot exhaust memory.
type lineReader struct {
	br      *bufio.Reader
	max     int
	long    []byte // the line being assembled when it outgrows br's buffer
	TooLong int
	bytes   *atomic.Int64 // bytes consumed, ends of line included
}

func newLineReader(r io.Reader, max int, consumed *atomic.Int64) *lineReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, readBufferSize)
	}
	if max <= 0 {
		max = DefaultMaxLine
	}
	return &lineReader{br: br, max: max, bytes: consumed}
}

// next returns the next line, or io.EOF after the last one. The slice is
// valid until the following call.
func (lr *lineReader) next() ([]byte, error) {
	for {
		line, tooLong, err := lr.read()
		if tooLong {
			lr.TooLong++
			if err != nil {
				return nil, err
			}
			continue
		}
		if len(line) == 0 && err != nil {
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
}

// read reads through the next '\n' (or the end of the stream); tooLong says
// the line exceeded max and was discarded.
func (lr *lineReader) read() (line []byte, tooLong bool, err error) {
	lr.long = lr.long[:0]
	for {
		chunk, err := lr.br.ReadSlice('\n')
		lr.bytes.Add(int64(len(chunk)))
		if !tooLong {
			if len(lr.long)+len(chunk) > lr.max+2 {
				tooLong, lr.long = true, lr.long[:0]
			} else if err == nil && len(lr.long) == 0 {
				return chunk, false, nil // the common case: no copy
			} else {
				lr.long = append(lr.long, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return lr.long, tooLong, err
		default:
			return lr.long, tooLong, nil
		}
	}
}
