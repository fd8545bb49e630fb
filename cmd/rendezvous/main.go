// Command rendezvous runs a libp2p rendezvous point (serve) and talks to
// points from a shell.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `rendezvous: a libp2p Rendezvous (/rendezvous/1.0.0) point and client

Usage:
  rendezvous serve [flags]        run a rendezvous point
  rendezvous register [flags]     register this identity in a namespace at a point
  rendezvous unregister [flags]   remove that registration
  rendezvous discover [flags]     list the peers registered at a point
  rendezvous id [flags]           print the peer ID of an identity
  rendezvous bench [flags]        generate load against a point
  rendezvous version              print the version

Run "rendezvous COMMAND -h" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "register":
		return registerCmd(args[1:], stdout, stderr)
	case "unregister":
		return unregisterCmd(args[1:], stdout, stderr)
	case "discover":
		return discoverCmd(args[1:], stdout, stderr)
	case "id":
		return idCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "rendezvous", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "rendezvous: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
