package cli

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// enumValue is a string flag restricted to a fixed set of values; Set refuses any other (the
// error names the flag and the accepted values).
type enumValue struct {
	value   *string
	allowed []string
	// canon maps an accepted spelling to the stored value (an alias such as in_progress);
	// nil keeps the spelling.
	canon func(string) string
}

func (e *enumValue) String() string { return *e.value }
func (e *enumValue) Type() string   { return "string" }

func (e *enumValue) Set(v string) error {
	if e.canon != nil {
		v = e.canon(v)
	}
	if !slices.Contains(e.allowed, v) {
		return fmt.Errorf("want one of %s", strings.Join(e.allowed, ", "))
	}
	*e.value = v
	return nil
}

// EnumVar defines a string flag that accepts only allowed values (def may be "" for "none").
func EnumVar(fs *pflag.FlagSet, p *string, name, def, usage string, allowed ...string) {
	*p = def
	fs.Var(&enumValue{value: p, allowed: allowed}, name, usage+" ("+strings.Join(allowed, "|")+")")
}

// LogLevelVar defines --log-level (debug, info, warn or error).
func LogLevelVar(fs *pflag.FlagSet, p *string, def string) {
	EnumVar(fs, p, "log-level", def, "log level", "debug", "info", "warn", "error")
}

// singleDashLongFlags rewrites -name and -name=value to --name... for the long flags of the
// command args select (and -help), as the standard flag package the CLI used to parse with
// accepted them. Arguments after "--" and anything that is not a known flag name are kept.
func singleDashLongFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		cmd = root
	}
	known := map[string]bool{"help": true}
	for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
	}
	if cmd.Version != "" {
		known["version"] = true
	}
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if known[name] {
			out[i] = "-" + a
		}
	}
	return out
}

// ResolveVersion returns v, or when v is "dev" or empty the version the Go toolchain recorded
// in the binary: the main module's version and VCS revision (e.g. "v1.2.0", or
// "dev (3f2a1b4c5d6e, modified)" for a build of a checkout).
func ResolveVersion(v string) string {
	if v != "" && v != "dev" {
		return v
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionFromBuildInfo(info)
}

func versionFromBuildInfo(info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	var rev string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	var extra []string
	if rev != "" && !strings.Contains(v, rev) {
		extra = append(extra, rev)
	}
	if modified && !strings.Contains(v, "dirty") {
		extra = append(extra, "modified")
	}
	if len(extra) > 0 {
		v += " (" + strings.Join(extra, ", ") + ")"
	}
	return v
}
