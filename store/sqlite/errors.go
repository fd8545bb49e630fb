package sqlite

import (
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/rendezvous-p2p/rendezvous/store"
)

// wrapErr gives an error of the database its context, and marks as
// store.ErrUnavailable the ones that come from the machine rather than the
// request, which end when the machine recovers: a full disk, an I/O error, a
// file that cannot be opened or written, no memory, a lock held too long.
func wrapErr(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary code of an extended one
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_READONLY, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("sqlite: %w: %w", store.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("sqlite: %w", err)
}
