package dkimmilter

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenFile is a Vault token kept in a file that Vault Agent rewrites (its
// file sink): the file is read again whenever its modification time or size
// changes, and on demand after Vault refuses the token (Reload). The token
// itself never appears in an error or a log line.
type TokenFile struct {
	Path string

	mu    sync.Mutex
	token string
	mtime time.Time
	size  int64
}

// Token returns the current token, re-reading the file if it changed.
func (f *TokenFile) Token() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.Path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if f.token != "" && st.ModTime().Equal(f.mtime) && st.Size() == f.size {
		return f.token, nil
	}
	return f.read(st)
}

// Reload reads the file whatever its time stamp says: Agent may have
// written a new token within the file system's time resolution.
func (f *TokenFile) Reload() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.Path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return f.read(st)
}

func (f *TokenFile) read(st os.FileInfo) (string, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", errors.New("token file " + f.Path + " is empty")
	}
	f.token, f.mtime, f.size = tok, st.ModTime(), st.Size()
	return tok, nil
}
