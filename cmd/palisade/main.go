// Command palisade is the one Palisade binary: the cluster controller, the
// federation hub inside a promoted controller, the node agent, and the CLI
// that talks to all of them. It is the only place that parses flags, builds
// loggers and wires components together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one verb (or verb group) of the CLI. run receives the arguments
// after the verb's name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// commands is the table of verbs. Each verb group lives in its own file.
func commands() []command {
	return []command{
		{"controller", "run one cluster controller replica", runController},
		{"login", "log in to a controller API and save the session", runLogin},
		{"cluster", "show the controller cluster (status)", runCluster},
		{"user", "manage users (create, list, delete)", runUser},
		{"scan", "scan an image (scan image REF|--tar FILE), or show scan results and failures (scan result, scan failures)", runScan},
		{"registry", "registry scanning: add, list, delete, credentials, scan now (results: scan result REF)", runRegistry},
		{"policy", "policy as code: validate offline, apply, export, import-neuvector", runPolicy},
		{"group", "list the cluster's groups with their modes (group list)", runGroup},
		{"rule", "list the cluster's network rules in precedence order (rule list)", runRule},
		{"mode", "set group modes (mode set GROUP|--all MODE [--process])", runMode},
		{"admission", "admission control: dry-run a manifest (test -f), list decisions (events), status", runAdmission},
		{"fed", "federation: promote, tokens, join, status, rollout, rollback", runFed},
		{"agent", "run a node agent, list nodes (agent list), or make an agent token (agent token create)", runAgent},
		{"scanner", "run a registry scanner worker for a controller; token create, list, delete", runScanner},
		{"flow", "list the flows agents reported (flow list [--group G])", runFlow},
		{"event", "list security events (event list)", runEvent},
		{"version", "print the version", runVersion},
	}
}

// cliEnv is what every verb gets from the process: its streams and its
// environment, so that verbs are testable without touching globals.
type cliEnv struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// exitError carries a specific process exit code out of a verb.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// errUsage marks an error caused by the command line itself.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		if err == nil {
			return 0
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintf(env.stderr, "palisade %s: %v\n", c.name, ee.err)
			}
			return ee.code
		}
		fmt.Fprintf(env.stderr, "palisade %s: %v\n", c.name, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(env.stderr, "palisade: unknown command %q (run 'palisade help')\n", args[0])
	return 2
}

func usage(w io.Writer) {
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	var b strings.Builder
	b.WriteString("palisade: zero-trust security for fleets of Kubernetes clusters\n\nUsage: palisade COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'palisade COMMAND -h' for a command's flags.\n")
	io.WriteString(w, b.String())
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(_ context.Context, env *cliEnv, _ []string) error {
	fmt.Fprintf(env.stdout, "palisade %s\n", version)
	return nil
}
