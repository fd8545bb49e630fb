package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/client"
	"github.com/rendezvous-p2p/rendezvous/internal/identity"
)

// maxCommandTTL is the longest TTL the client subcommands ask for.
const maxCommandTTL = 365 * 24 * time.Hour

// defaultClientTimeout is the default of --timeout.
const defaultClientTimeout = 30 * time.Second

// clientFlags are the flags every client subcommand takes.
type clientFlags struct {
	identity string
	point    string
	listen   stringList
	addrs    stringList
	timeout  time.Duration
	// perRequest makes --timeout bound connecting and each request rather
	// than the whole command, which --deadline bounds instead (discover,
	// whose listing of a large point takes many requests).
	perRequest bool
	deadline   time.Duration
}

func defaultIdentityPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "rendezvous-identity.key"
	}
	return filepath.Join(dir, "rendezvous", "identity.key")
}

func (c *clientFlags) register(fs *flag.FlagSet, withPoint bool) {
	fs.StringVar(&c.identity, "identity", defaultIdentityPath(), "private key file, created (mode 0600) when missing")
	if withPoint {
		fs.StringVar(&c.point, "point", "", "multiaddr of the rendezvous point, ending in /p2p/<peer id> (required)")
		if c.perRequest {
			fs.DurationVar(&c.timeout, "timeout", defaultClientTimeout, "time allowed for connecting to the point, and for each request")
			fs.DurationVar(&c.deadline, "deadline", 0, "time allowed for the whole command (0: no bound but --timeout on each request)")
		} else {
			fs.DurationVar(&c.timeout, "timeout", defaultClientTimeout, "time allowed for the whole command")
		}
		c.listen.values = []string{"/ip4/127.0.0.1/tcp/0"}
		fs.Var(&c.listen, "listen", "multiaddr the client host listens on (repeatable)")
	}
}

// connect starts the client host and connects it to the point.
func (c *clientFlags) connect(ctx context.Context) (host.Host, *client.Client, peer.ID, error) {
	if c.point == "" {
		return nil, nil, "", errors.New("--point is required")
	}
	info, err := peer.AddrInfoFromString(c.point)
	if err != nil {
		return nil, nil, "", fmt.Errorf("--point %q: %w", c.point, err)
	}
	key, err := identity.LoadOrCreate(c.identity)
	if err != nil {
		return nil, nil, "", err
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings(c.listen.values...))
	if err != nil {
		return nil, nil, "", err
	}
	// The point decides which TTLs it grants; the command only refuses what
	// no point could accept.
	opts := []client.Option{
		client.WithTTLPolicy(rendezvous.TTLPolicy{Min: time.Second, Max: maxCommandTTL, Default: rendezvous.DefaultTTL}),
		client.WithRequestTimeout(c.timeout),
	}
	if len(c.addrs.values) > 0 {
		var addrs []ma.Multiaddr
		for _, s := range c.addrs.values {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				_ = h.Close()
				return nil, nil, "", fmt.Errorf("--addr %q: %w", s, err)
			}
			addrs = append(addrs, a)
		}
		opts = append(opts, client.WithAddrs(func() []ma.Multiaddr { return addrs }))
	}
	cl, err := client.New(h, opts...)
	if err != nil {
		_ = h.Close()
		return nil, nil, "", err
	}
	if err := h.Connect(ctx, *info); err != nil {
		_ = h.Close()
		return nil, nil, "", fmt.Errorf("connecting to %s: %w", info.ID, err)
	}
	return h, cl, info.ID, nil
}

// clientCommand parses a client subcommand's flags, connects, runs fn and
// turns its error into one line on stderr and exit code 1.
func clientCommand(name string, args []string, stdout, stderr io.Writer, extra func(fs *flag.FlagSet), fn func(ctx context.Context, cl *client.Client, point peer.ID, h host.Host) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := clientFlags{perRequest: name == "discover"}
	cf.register(fs, true)
	if name == "register" {
		fs.Var(&cf.addrs, "addr", "address to advertise (repeatable; default the client host's listen addresses)")
	}
	extra(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rendezvous %s: unexpected argument %q\n", name, fs.Arg(0))
		return 2
	}
	if cf.timeout <= 0 || cf.deadline < 0 {
		fmt.Fprintf(stderr, "rendezvous %s: --timeout must be positive and --deadline not negative\n", name)
		return 2
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	switch {
	case !cf.perRequest:
		ctx, cancel = context.WithTimeout(ctx, cf.timeout)
	case cf.deadline > 0:
		ctx, cancel = context.WithTimeout(ctx, cf.deadline)
	}
	defer cancel()
	// Connecting is bounded by --timeout whatever bounds the command; each
	// request is, by the client's request timeout.
	cctx, ccancel := context.WithTimeout(ctx, cf.timeout)
	h, cl, point, err := cf.connect(cctx)
	ccancel()
	if err == nil {
		err = fn(ctx, cl, point, h)
		_ = h.Close()
	}
	if err != nil {
		fmt.Fprintf(stderr, "rendezvous %s: %s\n", name, oneLine(err))
		return 1
	}
	return 0
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func registerCmd(args []string, stdout, stderr io.Writer) int {
	var ns string
	var ttl time.Duration
	return clientCommand("register", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&ns, "ns", "", "namespace to register in (required)")
		fs.DurationVar(&ttl, "ttl", 0, "TTL to ask for (default 2h)")
	}, func(ctx context.Context, cl *client.Client, point peer.ID, h host.Host) error {
		granted, err := cl.RegisterAt(ctx, point, ns, ttl)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "registered %s in %q at %s for %s\n", h.ID(), ns, point, granted)
		return nil
	})
}

func unregisterCmd(args []string, stdout, stderr io.Writer) int {
	var ns string
	return clientCommand("unregister", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&ns, "ns", "", "namespace to unregister from (required)")
	}, func(ctx context.Context, cl *client.Client, point peer.ID, h host.Host) error {
		if err := cl.UnregisterAt(ctx, point, ns); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "unregistered %s from %q at %s\n", h.ID(), ns, point)
		return nil
	})
}

// discoveredJSON is one line of `discover --json`.
type discoveredJSON struct {
	Peer       string   `json:"peer"`
	Addrs      []string `json:"addrs"`
	Namespace  string   `json:"ns"`
	TTLSeconds int64    `json:"ttl"`
}

func discoverCmd(args []string, stdout, stderr io.Writer) int {
	var (
		ns            string
		limit         int
		all           bool
		asJSON        bool
		maxPages      int
		progressEvery time.Duration
	)
	return clientCommand("discover", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&ns, "ns", "", "namespace to discover (every namespace if empty)")
		fs.IntVar(&limit, "limit", 0, fmt.Sprintf("registrations per request (0: the client's default, %d); a point may send fewer", client.DefaultDiscoverLimit))
		fs.BoolVar(&all, "all", false, "follow cookies until the point has nothing more, printing each page as it arrives")
		fs.BoolVar(&asJSON, "json", false, "one JSON object per registration, one per line")
		fs.IntVar(&maxPages, "max-pages", defaultMaxDiscoverPages, "most pages --all follows; more to list is then an error")
		fs.DurationVar(&progressEvery, "progress-interval", defaultProgressInterval, "how often to report progress on stderr when stdout is not a terminal (0: never)")
	}, func(ctx context.Context, cl *client.Client, point peer.ID, _ host.Host) error {
		if maxPages < 1 {
			return errors.New("--max-pages must be at least 1")
		}
		var out pageWriter = newTable(stdout)
		if asJSON {
			out = newJSONLines(stdout)
		}
		prog := newProgress(stdout, stderr, progressEvery)
		fetch := func(ctx context.Context, cookie []byte) ([]client.Registration, []byte, error) {
			return cl.DiscoverAt(ctx, point, ns, limit, cookie)
		}
		pages, found, err := listPages(ctx, fetch, all, maxPages, func(regs []client.Registration, pages, found int) error {
			if err := out.writePage(regs); err != nil {
				return err
			}
			prog.page(pages, found)
			return nil
		})
		prog.done(pages, found)
		// The stream's deadline may fire a little before the context's.
		if dl, ok := ctx.Deadline(); ok && err != nil && !time.Now().Before(dl) {
			return fmt.Errorf("--deadline reached: %w", err)
		}
		return err
	})
}

func idCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("id", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs, false)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	key, err := identity.LoadOrCreate(cf.identity)
	if err == nil {
		var id peer.ID
		if id, err = peer.IDFromPrivateKey(key); err == nil {
			fmt.Fprintln(stdout, id)
			return 0
		}
	}
	fmt.Fprintf(stderr, "rendezvous id: %s\n", oneLine(err))
	return 1
}
