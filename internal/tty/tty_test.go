package tty

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Progress must never land in a pipe, a file or a buffer.
func TestNotATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, out := range map[string]interface{ Write([]byte) (int, error) }{"pipe": w, "file": f, "buffer": &bytes.Buffer{}} {
		if Is(out) {
			t.Errorf("%s taken for a terminal", name)
		}
	}
}

// A character device is: /dev/tty where the test has one, else /dev/null,
// which is also a character device and so stands for one here.
func TestACharacterDeviceIs(t *testing.T) {
	f, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/null")
	}
	defer f.Close()
	if !Is(f) {
		t.Fatal("a character device not taken for a terminal")
	}
}
