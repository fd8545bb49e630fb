package identity

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateKeepsOneKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "key")
	first, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	second, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equals(second) {
		t.Fatal("a second load gave another key")
	}
}

func TestLoadOrCreateRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil {
		t.Fatal("garbage accepted as a key")
	}
}
