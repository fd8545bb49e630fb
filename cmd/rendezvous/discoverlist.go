package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rendezvous-p2p/rendezvous/client"
)

// defaultMaxDiscoverPages bounds the pages `discover --all` follows unless
// told otherwise. A page that brings nothing ends the listing, so a point of
// the default size (10^6 registrations) is listed in at most that many pages
// whatever its page size: about 1000 of 1000, more when records are large
// and a page is cut by the point's byte budget (64 KiB: some 350 small
// records, 2900 pages for 10^6).
const defaultMaxDiscoverPages = 1_000_000

// fetchPage asks a point for the page after cookie (nil for the first) and
// returns its registrations, verified, and the cookie to continue with.
type fetchPage func(ctx context.Context, cookie []byte) ([]client.Registration, []byte, error)

// listPages asks for one page, or with all every page until the point has
// nothing more, and hands each page to emit as soon as it arrives, with the
// pages and registrations so far: nothing waits for the end of the listing. It stops at a page with no registration,
// without a cookie or with the cookie it was asked with, and fails after
// maxPages pages with more to come. It returns the pages and registrations
// handed to emit, even when it fails.
func listPages(ctx context.Context, fetch fetchPage, all bool, maxPages int, emit func(regs []client.Registration, pages, found int) error) (pages, found int, err error) {
	var cookie []byte
	for pages < maxPages {
		regs, next, err := fetch(ctx, cookie)
		if err != nil {
			if pages > 0 {
				err = fmt.Errorf("page %d, after %d registrations: %w", pages+1, found, err)
			}
			return pages, found, err
		}
		pages++
		found += len(regs)
		if err := emit(regs, pages, found); err != nil {
			return pages, found, fmt.Errorf("writing page %d: %w", pages, err)
		}
		if !all || len(regs) == 0 || len(next) == 0 || bytes.Equal(next, cookie) {
			return pages, found, nil
		}
		cookie = next
	}
	return pages, found, fmt.Errorf("stopped after %d pages (--max-pages) and %d registrations, with more to list", pages, found)
}

// pageWriter prints the registrations of a page and flushes them.
type pageWriter interface {
	writePage(regs []client.Registration) error
}

// jsonLines prints one JSON object (a discoveredJSON) per registration, one
// per line.
type jsonLines struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func newJSONLines(w io.Writer) *jsonLines {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &jsonLines{w: bw, enc: json.NewEncoder(bw)}
}

func (j *jsonLines) writePage(regs []client.Registration) error {
	for _, r := range regs {
		line := discoveredJSON{Peer: r.Peer.ID.String(), Addrs: make([]string, 0, len(r.Peer.Addrs)), Namespace: r.Namespace, TTLSeconds: int64(r.TTL / time.Second)}
		for _, a := range r.Peer.Addrs {
			line.Addrs = append(line.Addrs, a.String())
		}
		if err := j.enc.Encode(line); err != nil {
			return err
		}
	}
	return j.w.Flush()
}

// table prints registrations as aligned columns, page by page: the widths
// of the columns are those of the header and the first page, and a longer
// cell later only pushes the rest of its own row.
type table struct {
	w      *bufio.Writer
	widths []int // of every column but the last; nil until the first page
}

// tableHeader names the columns of the table.
var tableHeader = []string{"PEER", "NAMESPACE", "TTL", "ADDRESSES"}

// tableGap separates the columns of the table.
const tableGap = 2

func newTable(w io.Writer) *table { return &table{w: bufio.NewWriterSize(w, 64<<10)} }

func (t *table) writePage(regs []client.Registration) error {
	rows := make([][]string, len(regs))
	for i, r := range regs {
		addrs := make([]string, len(r.Peer.Addrs))
		for j, a := range r.Peer.Addrs {
			addrs[j] = a.String()
		}
		rows[i] = []string{r.Peer.ID.String(), r.Namespace, r.TTL.String(), strings.Join(addrs, ",")}
	}
	if t.widths == nil {
		t.widths = make([]int, len(tableHeader)-1)
		for _, row := range append([][]string{tableHeader}, rows...) {
			for c := range t.widths {
				t.widths[c] = max(t.widths[c], len(row[c]))
			}
		}
		t.row(tableHeader)
	}
	for _, row := range rows {
		t.row(row)
	}
	return t.w.Flush()
}

func (t *table) row(cells []string) {
	for c, cell := range cells[:len(cells)-1] {
		_, _ = t.w.WriteString(cell)
		_, _ = t.w.WriteString(strings.Repeat(" ", max(t.widths[c]-len(cell), 0)+tableGap))
	}
	_, _ = t.w.WriteString(cells[len(cells)-1])
	_ = t.w.WriteByte('\n')
}
