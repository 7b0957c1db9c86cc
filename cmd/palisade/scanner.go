package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/palisade-sec/palisade/remote/scanning"
	"github.com/palisade-sec/palisade/remote/scanning/worker"
)

const scannerUsage = `Usage: palisade scanner --controller HOST:PORT[,HOST:PORT] --token T [--workers N] [--data-dir DIR] [--name NAME]
       palisade scanner token create [--ttl 1h]     make an enrolment token
       palisade scanner list [--limit N] [--offset N]  workers with their load and last contact
       palisade scanner delete NAME                 revoke a worker

Runs a scanner worker: it takes registry scan jobs from the controller's
leader (any replica may be given), pulls layers itself and returns the
inventories. Run the controller with --scan-workers 0 to scan only with
such workers.

Flags:
`

// runScanner runs a scanner worker, or manages them.
func runScanner(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runScannerToken(ctx, env, args[1:])
		case "list":
			return runScannerList(ctx, env, args[1:])
		case "delete":
			return runScannerDelete(ctx, env, args[1:])
		}
	}
	cfg := worker.DefaultConfig()
	fs := flag.NewFlagSet("scanner", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprint(env.stderr, scannerUsage)
		fs.PrintDefaults()
	}
	ctl := fs.String("controller", "", "comma-separated controller API addresses HOST:PORT (required)")
	fs.StringVar(&cfg.Token, "token", "", "scanner token from 'palisade scanner token create' (needed until enrolled)")
	tokenFile := fs.String("token-file", "", "file holding the scanner token")
	fs.IntVar(&cfg.Slots, "workers", cfg.Slots, "jobs run at once")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the worker's identity and layer cache (default: memory; the worker enrols at every start)")
	fs.StringVar(&cfg.Name, "name", "", "this worker's name in the cluster (default: the host name)")
	fs.StringVar(&cfg.Scan.Platform, "platform", cfg.Scan.Platform, "platform to scan from a multi-platform index")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (want token, list or delete, or flags)", errUsage, fs.Args())
	}
	cfg.Controllers = splitList(*ctl)
	if len(cfg.Controllers) == 0 {
		return fmt.Errorf("%w: --controller is required", errUsage)
	}
	if *tokenFile != "" {
		t, err := readSecretFile(*tokenFile)
		if err != nil {
			return err
		}
		cfg.Token = t
	}
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("%w: no --name and no host name: %v", errUsage, err)
		}
		cfg.Name = h
	}
	logger, err := newLogger(env, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	w, err := worker.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	logger.Info("scanner worker starting", "name", cfg.Name, "controllers", cfg.Controllers, "workers", cfg.Slots)
	return w.Run(ctx)
}

func runScannerToken(ctx context.Context, env *cliEnv, args []string) error {
	return runTokenCreate(ctx, env, args, "scanner", "/v1/scanners/tokens",
		func(ttl string) any { return scanning.WorkerTokenRequest{TTL: ttl} },
		func(out scanning.CreatedWorkerToken) string { return out.Token })
}

func runScannerList(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("scanner list", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	pos, err := positionals(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	out, done, err := fetchList[scanning.WorkerInfo](ctx, env, o, lf, "/v1/scanners", nil)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tCONNECTED\tSLOTS\tLOAD\tLAST CONTACT")
	for _, w := range out.Items {
		kind, last := "in-process", "-"
		if w.Remote {
			kind = "remote"
		}
		if !w.LastContact.IsZero() {
			last = time.Since(w.LastContact).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\n", w.Name, kind, w.Connected, w.Slots, w.Load, last)
	}
	return tw.Flush()
}

func runScannerDelete(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("scanner delete", flag.ContinueOnError)
	o := addAPIFlags(fs)
	pos, err := positionals(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one worker NAME", errUsage)
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	if err := c.Do(ctx, "DELETE", "/v1/scanners/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "scanner worker %s deleted\n", pos[0])
	return nil
}
