package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSettingsPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	config := `{"max-ttl": "48h", "min-ttl": "1h", "listen": ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1/quic-v1"], "max-registrations": 7, "canvas": true}`
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.flags(fs)
	if err := fs.Parse([]string{"--max-ttl", "24h"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RENDEZVOUS_MIN_TTL": "30m"}
	if err := applySettings(fs, path, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	r := cfg.resources
	if r.MaxTTL != 24*time.Hour || r.MinTTL != 30*time.Minute || r.MaxRegistrations != 7 || !cfg.canvas {
		t.Fatalf("got max-ttl %v (flag 24h), min-ttl %v (env 30m), max-registrations %d (file 7), canvas %v (file true)",
			r.MaxTTL, r.MinTTL, r.MaxRegistrations, cfg.canvas)
	}
	if len(cfg.listen.values) != 2 {
		t.Fatalf("listen %v, want the 2 addresses of the file", cfg.listen.values)
	}
}

func TestSettingsRejectUnknownAndBadValues(t *testing.T) {
	dir := t.TempDir()
	for name, config := range map[string]string{
		"unknown":   `{"no-such-flag": 1}`,
		"bad value": `{"max-ttl": "soon"}`,
		"object":    `{"max-ttl": {"h": 1}}`,
		"not json":  `max-ttl = 1h`,
	} {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		var cfg serveConfig
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		cfg.flags(fs)
		if err := applySettings(fs, path, func(string) string { return "" }); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStoreSettingRedactedForLogs(t *testing.T) {
	for spec, want := range map[string]string{
		"embedded": "embedded",
		"postgres://rdv:s3cret@db:5432/rdv?sslmode=require": "postgres://rdv:xxxxx@db:5432/rdv?sslmode=require",
		"postgres://rdv@db/rdv":                             "postgres://rdv@db/rdv",
	} {
		if got := redactStore(spec); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("redactStore(%q) = %q, want %q", spec, got, want)
		}
	}
}

func TestQuotaRateAndAllowlistSettings(t *testing.T) {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.flags(fs)
	args := []string{
		"--max-registrations-per-ipv4", "10", "--max-registrations-per-ipv6-net", "20",
		"--crowded-percent", "80", "--register-rate", "0.5", "--discover-net-burst", "7",
		"--allow-prefix", "10.1.2.3/16", "--allow-prefix", "2001:db8::/32",
		"--allow-peer", "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	r := cfg.resources
	if r.MaxRegistrationsPerIPv4 != 10 || r.MaxRegistrationsPerIPv6Net != 20 || r.CrowdedPercent != 80 ||
		r.RegisterRate.RPS != 0.5 || r.DiscoverNetRate.Burst != 7 || r.MaxRegistrationsPerIPv4Net != 5000 {
		t.Fatalf("resources %+v", r)
	}
	a, err := cfg.allowlist()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Prefixes) != 2 || a.Prefixes[0].String() != "10.1.0.0/16" || len(a.Peers) != 1 {
		t.Fatalf("allowlist %+v", a)
	}
	for _, bad := range [][]string{{"--allow-prefix", "10.1.2.3"}, {"--allow-peer", "nobody"}} {
		var cfg serveConfig
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		cfg.flags(fs)
		if err := fs.Parse(bad); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.allowlist(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
