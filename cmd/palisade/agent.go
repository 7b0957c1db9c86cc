package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palisade-sec/palisade/agent/node"
	"github.com/palisade-sec/palisade/remote/agents"
	"github.com/palisade-sec/palisade/remote/controller"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// runAgent runs a node agent, or with "token create" makes an agent token.
func runAgent(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 && args[0] == "token" {
		return runAgentToken(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "list" {
		return runAgentList(ctx, env, args[1:])
	}
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	ctl := fs.String("controller", "", "comma-separated controller agent addresses HOST:PORT (UDP) (required)")
	token := fs.String("token", "", "agent token from `palisade agent token create` (needed until enrolled)")
	tokenFile := fs.String("token-file", "", "file holding the agent token")
	fs.StringVar(&cfg.Node, "node", "", "this node's name (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the agent's identity and last policy (required)")
	fs.StringVar(&cfg.Workloads.File, "workloads", cfg.Workloads.File, "workloads YAML file (network-namespace workloads)")
	fs.StringVar(&cfg.Workloads.NetnsDir, "netns-dir", cfg.Workloads.NetnsDir, "directory of named network namespaces")
	fs.StringVar(&cfg.Source, "source", cfg.Source, "workload source: netns (the --workloads file) or containerd (containerd's API)")
	fs.StringVar(&cfg.Containerd.Socket, "containerd-socket", cfg.Containerd.Socket, "containerd's gRPC socket (--source containerd)")
	fs.StringVar(&cfg.Containerd.Namespace, "containerd-namespace", cfg.Containerd.Namespace, "containerd namespace to watch (--source containerd)")
	fs.StringVar(&cfg.Containerd.ProcRoot, "proc-root", cfg.Containerd.ProcRoot, "the host's /proc, to read the containers' namespaces and cgroups (--source containerd)")
	hostNetns := fs.String("host-netns", "", "named network namespace holding the host side of the workloads' veths (default: the agent's)")
	pinDir := fs.String("pin-dir", "", "bpffs directory for pinned maps (default /sys/fs/bpf/palisade/NODE)")
	addrs := fs.String("address", "", "comma-separated addresses of this node")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	cfg.Controllers = splitList(*ctl)
	if len(cfg.Controllers) == 0 || cfg.Node == "" || cfg.DataDir == "" {
		return fmt.Errorf("%w: --controller, --node and --data-dir are required", errUsage)
	}
	switch cfg.Source {
	case node.SourceNetns:
	case node.SourceContainerd:
		if flagSet(fs, "workloads") || flagSet(fs, "netns-dir") {
			return fmt.Errorf("%w: --workloads and --netns-dir are for --source netns", errUsage)
		}
	default:
		return fmt.Errorf("%w: --source %q: want netns or containerd", errUsage, cfg.Source)
	}
	cfg.Token = *token
	if *tokenFile != "" {
		t, err := readSecretFile(*tokenFile)
		if err != nil {
			return err
		}
		cfg.Token = t
	}
	if *hostNetns != "" {
		cfg.Workloads.HostNetns = *hostNetns
		if !filepath.IsAbs(*hostNetns) {
			cfg.Workloads.HostNetns = filepath.Join(cfg.Workloads.NetnsDir, *hostNetns)
		}
	}
	cfg.Datapath.PinDir = *pinDir
	if cfg.Datapath.PinDir == "" {
		cfg.Datapath.PinDir = filepath.Join("/sys/fs/bpf/palisade", cfg.Node)
	}
	cfg.Datapath.MountBPFFS = true
	for _, s := range splitList(*addrs) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%w: --address %q: %v", errUsage, s, err)
		}
		cfg.Addresses = append(cfg.Addresses, a)
	}
	logger, err := newLogger(env, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	a, err := node.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func runAgentToken(ctx context.Context, env *cliEnv, args []string) error {
	return runTokenCreate(ctx, env, args, "agent", "/v1/agents/tokens",
		func(ttl string) any { return agents.TokenRequest{TTL: ttl} },
		func(out agents.CreatedToken) string { return out.Token })
}

func runAgentList(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("agent list", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	name := fs.String("name", "", "only nodes whose name contains this")
	connected := fs.String("connected", "", "only nodes whose agent is (true) or is not (false) connected to the replica that answers")
	workload := fs.String("workload", "", "only nodes running a workload whose ID, name or namespace contains this")
	pos, err := positionals(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (palisade agent list [--name TEXT] [--connected true|false] [--workload TEXT] [--limit N] [--offset N] [-o json])", errUsage, pos)
	}
	conn, err := boolFilter("connected", *connected)
	if err != nil {
		return err
	}
	q := setQuery(url.Values{}, "name", *name, "connected", conn, "workload", *workload)
	all, done, err := fetchList[agents.AgentInfo](ctx, env, o, lf, "/v1/agents", q)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCONNECTED\tADDRESSES\tWORKLOADS\tUPDATED")
	for _, a := range all.Items {
		addrs := make([]string, len(a.Addresses))
		for i, ad := range a.Addresses {
			addrs[i] = ad.String()
		}
		updated := "-"
		if !a.Updated.IsZero() {
			updated = a.Updated.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\n", a.Name, a.Connected, dash(strings.Join(addrs, ",")), len(a.Workloads), updated)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(all.Items) == 0 {
		fmt.Fprintln(env.stdout, "(no agents)")
	}
	return nil
}

const flowListUsage = "palisade flow list [--group G] [--node N] [--app TEXT] [--mode M] [--port P] [--violations true|false] [--since 24h] [--limit N] [--offset N] [-o json]"

func runFlow(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: %s", errUsage, flowListUsage)
	}
	fs := flag.NewFlagSet("flow list", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	group := fs.String("group", "", "only flows with an end in this group")
	node := fs.String("node", "", "only flows reported by this node")
	app := fs.String("app", "", "only flows whose application contains this")
	mode := fs.String("mode", "", "only flows last seen under this mode: discover, monitor or protect")
	port := fs.Int("port", 0, "only flows to this port (0: any)")
	violations := fs.String("violations", "", "only flows with (true) or without (false) violations")
	since := fs.String("since", "", "only flows seen since this RFC 3339 time or within this duration (24h)")
	pos, err := positionals(fs, env, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	viol, err := boolFilter("violations", *violations)
	if err != nil {
		return err
	}
	portText := ""
	if *port != 0 {
		if *port < 1 || *port > 65535 {
			return fmt.Errorf("%w: --port %d: want a port from 1 to 65535", errUsage, *port)
		}
		portText = strconv.Itoa(*port)
	}
	q := setQuery(url.Values{}, "group", *group, "node", *node, "app", *app, "mode", *mode, "port", portText,
		"violations", viol, "since", *since)
	all, done, err := fetchList[agents.FlowRecord](ctx, env, o, lf, "/v1/flows", q)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tSERVER\tPORT\tAPP\tMODE\tFLOWS\tVIOLATIONS\tLAST SEEN")
	for _, f := range all.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", f.Client, f.Server, protoPort(f.Proto, f.Port), dash(f.App), f.Mode,
			f.Flows, f.Violations, f.LastSeen.Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(all.Items) == 0 {
		fmt.Fprintln(env.stdout, "(no flows)")
	}
	return nil
}

const eventListUsage = "palisade event list [--node N] [--kind K] [--action alert|deny] [--workload TEXT] [--since 24h] [--limit N] [--offset N] [-o json]"

func runEvent(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: %s", errUsage, eventListUsage)
	}
	fs := flag.NewFlagSet("event list", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	node := fs.String("node", "", "only events from this node")
	kind := fs.String("kind", "", "only events of this kind")
	action := fs.String("action", "", "only events with this action: alert or deny")
	workload := fs.String("workload", "", "only events of workloads whose ID contains this")
	since := fs.String("since", "", "only events since this RFC 3339 time or within this duration (24h)")
	pos, err := positionals(fs, env, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	q := setQuery(url.Values{}, "node", *node, "kind", *kind, "action", *action, "workload", *workload, "since", *since)
	all, done, err := fetchList[agents.EventRecord](ctx, env, o, lf, "/v1/events", q)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNODE\tKIND\tACTION\tMODE\tCLIENT\tSERVER\tPORT\tDETAIL")
	for _, e := range all.Items {
		detail := strings.TrimSpace(e.Path + " " + e.Message)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Node, e.Kind, e.Action, e.Mode,
			dash(e.Client), dash(e.Server), protoPort(e.Proto, e.Port), dash(detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(all.Items) == 0 {
		fmt.Fprintln(env.stdout, "(no events)")
	}
	return nil
}

func protoPort(proto uint8, port uint16) string {
	switch proto {
	case 0:
		return "-"
	case 6:
		return "tcp/" + strconv.Itoa(int(port))
	case 17:
		return "udp/" + strconv.Itoa(int(port))
	}
	return fmt.Sprintf("%d/%d", proto, port)
}

// agentsModule builds the agent side of a controller replica.
func agentsModule(h *controller.Handle, addr string, names []string) (httpapi.Module, error) {
	scfg := policystore.DefaultConfig()
	scfg.KV, scfg.Logger = h.Store, h.Logger
	ps, err := policystore.New(scfg)
	if err != nil {
		return nil, err
	}
	cfg := agents.DefaultConfig()
	cfg.Store, cfg.Policy, cfg.CA, cfg.Logger = h.Store, ps, h.CA, h.Logger
	cfg.Addr, cfg.ServerNames = addr, names
	return agents.New(cfg)
}

// flagSet says whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
