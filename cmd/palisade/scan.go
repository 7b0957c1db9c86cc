package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/registryscan/scan"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

// Exit codes of "palisade scan image", for CI pipelines.
const (
	scanExitPass     = 0
	scanExitExceeded = 1
	scanExitFailed   = 2
)

const scanUsage = `Usage: palisade scan image REF|--tar FILE [flags]
       palisade scan result DIGEST|REF [--full] [-o json]   (a controller's stored result)
       palisade scan result [--image TEXT] [--source local|federated] [--severity S] [--limit N] [--offset N]
                                                  (list a controller's stored results, latest first)
       palisade scan failures [--registry R] [--image TEXT] [--limit N] [--offset N]
                                                  (images a controller could not scan)

Scans one image for vulnerable packages and secrets, with no controller.
Exit status: 0 pass, 1 a finding at or above --fail-on, 2 could not scan.

Flags:
`

// runScan dispatches "palisade scan SUBCOMMAND".
func runScan(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(env.stdout, scanUsage)
		scanFlags(env.stdout, &scanOptions{}).PrintDefaults()
		if len(args) == 0 {
			return &exitError{code: scanExitFailed}
		}
		return nil
	}
	switch args[0] {
	case "image":
		return runScanImage(ctx, env, args[1:])
	case "result":
		return runScanResult(ctx, env, args[1:])
	case "failures":
		return runScanFailures(ctx, env, args[1:])
	}
	return fmt.Errorf("%w: unknown scan subcommand %q (want image, result or failures)", errUsage, args[0])
}

type scanOptions struct {
	tar, vulndb, format, failOn, platform, cacheDir string
	insecure, allPlatforms                          bool
}

func scanFlags(out io.Writer, o *scanOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("scan image", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.tar, "tar", "", "scan an image tarball (docker save) instead of a registry reference")
	fs.StringVar(&o.vulndb, "vulndb", "", "directory of OSV JSON/YAML and Alpine secdb YAML files, read recursively")
	fs.StringVar(&o.format, "format", "table", "output format: table, json, sarif or cyclonedx")
	fs.StringVar(&o.failOn, "fail-on", "", "exit 1 if a vulnerability or secret is at least this severe: critical, high, medium or low")
	fs.StringVar(&o.platform, "platform", "linux/amd64", "platform to scan from a multi-platform index")
	fs.BoolVar(&o.allPlatforms, "all-platforms", false, "scan every platform of a multi-platform index")
	fs.BoolVar(&o.insecure, "insecure", false, "allow a plain-HTTP or self-signed registry")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "keep layer and image results here, so unchanged digests are not pulled again")
	return fs
}

// parseInterspersed parses flags that may come before or after the
// positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runScanImage(ctx context.Context, env *cliEnv, args []string) error {
	var o scanOptions
	fs := scanFlags(env.stderr, &o)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return &exitError{code: scanExitFailed, err: fmt.Errorf("%w: %v", errUsage, err)}
	}
	usageErr := func(format string, a ...any) error {
		return &exitError{code: scanExitFailed, err: fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)}
	}
	switch {
	case o.tar == "" && len(pos) != 1:
		return usageErr("give one image reference or --tar FILE")
	case o.tar != "" && len(pos) != 0:
		return usageErr("give an image reference or --tar FILE, not both")
	}
	f := report.Format(o.format)
	switch f {
	case report.Table, report.JSON, report.SARIF, report.CycloneDX:
	default:
		return usageErr("--format %q: want table, json, sarif or cyclonedx", o.format)
	}
	if o.failOn != "" {
		if _, _, err := (&report.Report{}).Exceeds(o.failOn); err != nil {
			return usageErr("--fail-on %q: want critical, high, medium or low", o.failOn)
		}
	}

	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var db *vulndb.DB
	if o.vulndb != "" {
		db, err = vulndb.LoadDir(ctx, o.vulndb)
		if err != nil {
			return &exitError{code: scanExitFailed, err: fmt.Errorf("load --vulndb: %w", err)}
		}
		for _, p := range db.Problems() {
			log.Warn("skipped advisory", "problem", p)
		}
		if db.Len() == 0 {
			log.Warn("no advisories found", "dir", o.vulndb)
		}
	} else {
		log.Warn("no --vulndb given: packages are listed but not matched against advisories")
	}
	cfg := scan.DefaultConfig()
	cfg.Insecure = o.insecure
	cfg.Platform = o.platform
	cfg.AllPlatforms = o.allPlatforms
	cfg.Keychain = authn.DefaultKeychain
	var cache scan.Cache
	if o.cacheDir != "" {
		if cache, err = scan.NewDirCache(o.cacheDir); err != nil {
			return &exitError{code: scanExitFailed, err: err}
		}
	}
	s, err := scan.New(cfg, db, cache, log)
	if err != nil {
		return &exitError{code: scanExitFailed, err: fmt.Errorf("%w: %v", errUsage, err)}
	}
	var reps []*report.Report
	if o.tar != "" {
		r, err := s.ScanTarball(ctx, o.tar, "")
		if err != nil {
			return &exitError{code: scanExitFailed, err: err}
		}
		reps = []*report.Report{r}
	} else {
		if reps, err = s.ScanImage(ctx, pos[0]); err != nil {
			return &exitError{code: scanExitFailed, err: err}
		}
	}
	if err := report.Write(env.stdout, f, reps...); err != nil {
		return &exitError{code: scanExitFailed, err: fmt.Errorf("write report: %w", err)}
	}
	if o.failOn == "" {
		return nil
	}
	total := 0
	for _, r := range reps {
		_, n, _ := r.Exceeds(o.failOn)
		total += n
	}
	if total > 0 {
		return &exitError{code: scanExitExceeded, err: fmt.Errorf("%d findings at or above %s", total, strings.ToLower(o.failOn))}
	}
	return nil
}
