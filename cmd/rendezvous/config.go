package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

// envPrefix starts the environment variable of every flag: --max-ttl is
// RENDEZVOUS_MAX_TTL.
const envPrefix = "RENDEZVOUS_"

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// commandLineOnly are the flags that neither the environment nor the config
// file set.
var commandLineOnly = map[string]bool{"config": true, "version": true}

// applySettings gives every flag of fs that the command line left unset the
// value of its environment variable or, failing that, of the JSON config
// file at configPath (if not empty): an object whose keys are flag names and
// whose values are strings, numbers, booleans, or arrays of them for
// repeatable flags. The command line wins over the environment, which wins
// over the file.
func applySettings(fs *flag.FlagSet, configPath string, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	file := map[string]json.RawMessage{}
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if err := json.Unmarshal(data, &file); err != nil {
			return fmt.Errorf("config %s: %w", configPath, err)
		}
		for name := range file {
			if fs.Lookup(name) == nil {
				return fmt.Errorf("config %s: unknown setting %q", configPath, name)
			}
		}
	}

	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] || commandLineOnly[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
			return
		}
		raw, ok := file[f.Name]
		if !ok {
			return
		}
		values, e := configValues(raw)
		if e != nil {
			err = fmt.Errorf("config %s: %s: %w", configPath, f.Name, e)
			return
		}
		for _, v := range values {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("config %s: %s=%q: %w", configPath, f.Name, v, e)
				return
			}
		}
	})
	return err
}

// configValues turns a JSON value of the config file into flag values.
func configValues(raw json.RawMessage) ([]string, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err == nil {
		var out []string
		for _, item := range list {
			v, err := configScalar(item)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	v, err := configScalar(raw)
	if err != nil {
		return nil, err
	}
	return []string{v}, nil
}

func configScalar(raw json.RawMessage) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case float64, bool:
		return strings.TrimSpace(string(raw)), nil
	default:
		return "", fmt.Errorf("want a string, number or boolean, got %s", raw)
	}
}
