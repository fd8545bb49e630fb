//go:build !linux

package sqlite

import "errors"

// writerSyncSupported reports whether the writer can sync the log itself:
// elsewhere than on Linux, SQLite syncs it within each commit.
const writerSyncSupported = false

func openWALSync(string) (*walSync, error) { return nil, errors.ErrUnsupported }

func (w *walSync) close() error { return nil }

var fdatasync = func(int) error { return errors.ErrUnsupported }
