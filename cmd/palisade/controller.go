package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/palisade-sec/palisade/primary/hub"
	"github.com/palisade-sec/palisade/remote/console"
	"github.com/palisade-sec/palisade/remote/controller"
	"github.com/palisade-sec/palisade/remote/federation"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

func runController(ctx context.Context, env *cliEnv, args []string) error {
	cfg, err := controllerConfig(env, args)
	if err != nil {
		return err
	}
	c, err := controller.New(cfg)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// controllerConfig turns the controller's flags into its configuration,
// with every module wired.
func controllerConfig(env *cliEnv, args []string) (controller.Config, error) {
	cfg := controller.DefaultConfig()
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.StringVar(&cfg.Name, "name", "", "this replica's name, unique in the cluster (required)")
	fs.StringVar(&cfg.ClusterName, "cluster-name", cfg.ClusterName, "the cluster's name, recorded on first start")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for this replica's state (required)")
	fs.StringVar(&cfg.APIAddr, "api-addr", cfg.APIAddr, "HTTPS API listen address")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", cfg.RaftAddr, "Raft listen address (TCP)")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "gossip listen address (TCP and UDP)")
	fs.StringVar(&cfg.AdvertiseHost, "advertise", "", "IP peers and clients use to reach this replica (default: the listen IP, or the first non-loopback IP)")
	join := fs.String("join", "", "comma-separated gossip addresses of other replicas")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", cfg.BootstrapExpect, "replicas to wait for before forming a new cluster")
	pwFile := fs.String("admin-password-file", "", "file holding the first admin password (default: generate one and log it once)")
	sans := fs.String("api-san", "", "comma-separated extra DNS names or IPs for the API certificate")
	fs.DurationVar(&cfg.ReapTimeout, "reap-timeout", cfg.ReapTimeout, "how long an unreachable replica stays a member before it is removed")
	fs.BoolVar(&cfg.LeaveOnStop, "leave-on-terminate", false, "on SIGTERM or Ctrl-C, leave the cluster (removed from the replica set) instead of stopping to restart")
	fedAddr := fs.String("fed-addr", "0.0.0.0:11443", "federation listen address (UDP), served when this cluster is a primary")
	agentAddr := fs.String("agent-addr", "0.0.0.0:18400", "agent listen address (UDP)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	vulnDir := fs.String("vulndb", "", "directory of OSV and Alpine secdb files for registry scans, reloaded hourly (default: no feed)")
	scanWorkers := fs.Int("scan-workers", 2, "in-process registry scan workers on the leader; 0 leaves every scan to palisade scanner workers")
	adm := addAdmissionFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	cfg.Join = splitList(*join)
	cfg.APISANs = splitList(*sans)
	if *pwFile != "" {
		pw, err := readSecretFile(*pwFile)
		if err != nil {
			return cfg, err
		}
		cfg.AdminPassword = pw
	}
	logger, err := newLogger(env, *logLevel)
	if err != nil {
		return cfg, err
	}
	cfg.Logger = logger
	if cfg.Name == "" || cfg.DataDir == "" {
		return cfg, fmt.Errorf("%w: --name and --data-dir are required", errUsage)
	}
	if err := adm.check(); err != nil {
		return cfg, err
	}
	if _, _, err := net.SplitHostPort(*fedAddr); err != nil {
		return cfg, fmt.Errorf("%w: --fed-addr %q: %v", errUsage, *fedAddr, err)
	}
	fedAdvertise := controller.Advertise(*fedAddr, cfg.AdvertiseHost)
	cfg.Meta = map[string]string{"fed": fedAdvertise}
	ui, err := console.New(console.DefaultConfig())
	if err != nil {
		return cfg, err
	}
	cfg.UI = ui
	cfg.Modules = func(h *controller.Handle) []httpapi.Module {
		hcfg := hub.DefaultConfig()
		hcfg.Store, hcfg.CA, hcfg.Logger = h.Store, h.CA, h.Logger
		hcfg.FedAddr, hcfg.FedAdvertise = *fedAddr, fedAdvertise
		fedHub, err := hub.New(hcfg)
		if err != nil {
			logger.Error("federation hub disabled", "err", err)
		}
		link, err := federation.New(federation.Config{Store: h.Store, Logger: h.Logger, API: h.API})
		if err != nil {
			logger.Error("federation link disabled", "err", err)
		}
		var mods []httpapi.Module
		if fedHub != nil {
			mods = append(mods, fedHub)
		}
		if link != nil {
			mods = append(mods, link)
		}
		if am, err := agentsModule(h, *agentAddr, append([]string{cfg.AdvertiseHost}, cfg.APISANs...)); err != nil {
			logger.Error("agent listener disabled", "err", err)
		} else {
			mods = append(mods, am)
		}
		if pm, err := policyModule(h); err != nil {
			logger.Error("policy API disabled", "err", err)
		} else {
			mods = append(mods, pm)
		}
		admissionServed := false
		if am, err := adm.module(h, cfg.Name); err != nil {
			logger.Error("admission webhook disabled", "err", err)
		} else if am != nil {
			mods = append(mods, am)
			admissionServed = true
		}
		if sm, err := scanningModule(h, cfg.DataDir, *vulnDir, !admissionServed, *scanWorkers); err != nil {
			logger.Error("registry scanning disabled", "err", err)
		} else {
			mods = append(mods, sm)
		}
		return mods
	}
	return cfg, nil
}

func newLogger(env *cliEnv, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	return slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: lv})), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readSecretFile reads a password or token from a file, without its
// trailing newline.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}
