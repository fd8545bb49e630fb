package main

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// There is no container engine in CI: this test reads the Dockerfile and
// checks what it promises about the image, not a built image.

// dockerInstruction is one instruction of a Dockerfile, its continuation
// lines joined.
type dockerInstruction struct {
	cmd  string // upper case: FROM, RUN, COPY...
	args string
}

func readDockerfile(t *testing.T) [][]dockerInstruction {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]dockerInstruction
	var line string
	for _, raw := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(raw)
		if line == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			line += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		line += trimmed
		cmd, args, _ := strings.Cut(line, " ")
		line = ""
		in := dockerInstruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	return stages
}

// execForm parses a JSON-array (exec form) argument.
func execForm(t *testing.T, in dockerInstruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("Dockerfile: %s %s is not in exec form: %v", in.cmd, in.args, err)
	}
	return v
}

func TestDockerfileShipsADataDirTheUserOwns(t *testing.T) {
	stages := readDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and the image", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	var (
		user, volume, dataSrc string
		entrypoint, cmd       []string
	)
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "VOLUME":
			volume = strings.Join(execForm(t, in), " ")
		case "ENTRYPOINT":
			entrypoint = execForm(t, in)
		case "CMD":
			cmd = execForm(t, in)
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) >= 2 && f[len(f)-1] == "/data" {
				if !strings.Contains(in.args, "--chown=65532:65532") {
					t.Errorf("COPY of /data is not --chown=65532:65532: %s", in.args)
				}
				dataSrc = f[len(f)-2]
			}
		}
	}
	if !strings.Contains(final[0].args, "distroless") || !strings.HasSuffix(final[0].args, ":nonroot") {
		t.Errorf("the image is %q, want a distroless nonroot base (whose nonroot is uid 65532)", final[0].args)
	}
	if user != "nonroot:nonroot" && user != "65532:65532" {
		t.Errorf("USER %q, want nonroot:nonroot (65532)", user)
	}
	if volume != "/data" {
		t.Errorf("VOLUME %q, want /data", volume)
	}
	if dataSrc == "" {
		t.Fatal("the image gets no /data of its own (COPY --from=build --chown=65532:65532 DIR /data): a new volume would be root's")
	}
	made := false
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "mkdir") && strings.Contains(in.args, dataSrc) {
			made = true
		}
	}
	if !made {
		t.Errorf("the build stage does not make %s, which becomes /data", dataSrc)
	}

	// The command line is one serve accepts, on /data.
	if len(entrypoint) < 2 || entrypoint[len(entrypoint)-1] != "serve" {
		t.Fatalf("ENTRYPOINT %q, want the rendezvous binary and serve", entrypoint)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg serveConfig
	cfg.flags(fs)
	if err := fs.Parse(cmd); err != nil {
		t.Fatalf("serve does not accept the image's CMD %q: %v", cmd, err)
	}
	if cfg.dataDir != "/data" {
		t.Errorf("the image's serve keeps its data in %q, want /data", cfg.dataDir)
	}
	for _, want := range []string{"/tcp/4457", "/udp/4457/quic-v1", "/udp/4457/quic-v1/webtransport", "/udp/4457/webrtc-direct"} {
		found := false
		for _, l := range cfg.listen.values {
			found = found || strings.HasSuffix(l, want)
		}
		if !found {
			t.Errorf("the image listens on %q, not on %s", cfg.listen.values, want)
		}
	}
}
