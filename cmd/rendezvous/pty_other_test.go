//go:build !linux

package main

import "testing"

func testNoProgressOnATerminal(t *testing.T, _ bigPoint) {
	t.Skip("needs a pseudo-terminal, opened here on Linux only")
}
