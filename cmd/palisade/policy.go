package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/remote/controller"
	"github.com/palisade-sec/palisade/remote/policyapi"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

const policyUsage = `Usage: palisade policy SUBCOMMAND [flags]

Subcommands:
  validate -f FILE   check a policy-as-code YAML file offline (no controller
                     needed): exit 0 when valid, 1 with one line per problem
  apply -f FILE [--dry-run] [--prune] [--fed]
                     apply a YAML file to the cluster (or, with --fed, to the
                     federation on a primary) and print the plan
  export [-o yaml]   print the cluster's effective policy as YAML
  import-neuvector -f FILE [--dry-run]
                     convert NeuVector's exported CRD YAML and apply it,
                     listing what could not be carried over

`

// runPolicy dispatches "palisade policy SUBCOMMAND".
func runPolicy(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stdout, policyUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: missing subcommand (want validate, apply, export or import-neuvector)", errUsage)
		}
		return nil
	}
	switch args[0] {
	case "validate":
		return runPolicyValidate(ctx, env, args[1:])
	case "apply":
		return runPolicyApply(ctx, env, args[1:])
	case "export":
		return runPolicyExport(ctx, env, args[1:])
	case "import-neuvector":
		return runPolicyImport(ctx, env, args[1:])
	}
	return fmt.Errorf("%w: unknown policy subcommand %q (want validate, apply, export or import-neuvector)", errUsage, args[0])
}

// runPolicyValidate checks every document of a file, converts them and
// validates the resulting policy on its own: references must resolve to
// groups defined in the file or to the reserved groups.
func runPolicyValidate(_ context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("policy validate", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var file string
	fs.StringVar(&file, "f", "", "YAML file of palisade.dev/v1 documents")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if file == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: policy validate -f FILE", errUsage)
	}
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	if st.Size() > code.MaxInputBytes {
		return fmt.Errorf("%s: %d bytes is more than the limit of %d", file, st.Size(), code.MaxInputBytes)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	set, err := code.Load(data, policy.SourceCode)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := set.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(env.stderr, "%s: %s\n", file, line)
		}
		return &exitError{code: 1}
	}
	fmt.Fprintf(env.stdout, "%s: valid (%d groups, %d network, %d process, %d file, %d admission rules)\n",
		file, len(set.Groups), len(set.NetworkRules), len(set.ProcessRules), len(set.FileRules), len(set.AdmissionRules))
	return nil
}

// readPolicyInput reads a YAML file no larger than the API accepts.
func readPolicyInput(file string) ([]byte, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if st.Size() > code.MaxInputBytes {
		return nil, fmt.Errorf("%s: %d bytes is more than the limit of %d", file, st.Size(), code.MaxInputBytes)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return data, nil
}

// applyOutput is the answer of a cluster apply or import
// (policystore.ApplyResult) or of a federated apply (changes, rollout).
type applyOutput struct {
	policystore.ApplyResult
	Changes []code.Change `json:"changes"`
	Rollout string        `json:"rollout,omitempty"`
}

// postPolicy sends a YAML file to path with dryRun (and prune) and prints
// the answer.
func postPolicy(ctx context.Context, env *cliEnv, o *apiOpts, path, file string, dryRun, prune *bool) error {
	if file == "" {
		return fmt.Errorf("%w: -f FILE is required", errUsage)
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	data, err := readPolicyInput(file)
	if err != nil {
		return err
	}
	q := url.Values{"dryRun": {strconv.FormatBool(*dryRun)}}
	if prune != nil {
		q.Set("prune", strconv.FormatBool(*prune))
	}
	resp, err := c.Raw(ctx, "POST", path+"?"+q.Encode(), policyapi.ContentTypeYAML, bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&raw); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if o.json() {
		return writeJSON(env.stdout, raw)
	}
	var out applyOutput
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	printPolicyPlan(env.stdout, &out)
	return nil
}

func printPolicyPlan(w io.Writer, out *applyOutput) {
	if len(out.Documents) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DOCUMENT\tOP")
		for _, d := range out.Documents {
			name := d.Name
			if d.Namespace != "" {
				name = d.Namespace + "/" + d.Name
			}
			op := string(d.Op)
			if d.Federated {
				op += " (federated, read-only)"
			}
			fmt.Fprintf(tw, "%s %s\t%s\n", d.Kind, name, op)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	switch {
	case out.Plan != nil:
		fmt.Fprint(w, "Plan:\n"+indent(out.Plan.String()))
	case out.Changes != nil:
		rep := code.Report{Changes: out.Changes}
		fmt.Fprint(w, "Plan:\n"+indent(rep.String()))
	}
	for _, g := range out.ModesReset {
		fmt.Fprintf(w, "  mode setting of group %q replaced by the mode in code\n", g)
	}
	if len(out.Skipped) > 0 {
		fmt.Fprintf(w, "\nNot carried over (%d):\n", len(out.Skipped))
		for _, s := range out.Skipped {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	switch {
	case out.DryRun:
		fmt.Fprintln(w, "\nDry run: nothing was changed.")
	case out.Revision != 0 && out.Rollout != "":
		fmt.Fprintf(w, "\nApplied at revision %d (rollout %s).\n", out.Revision, out.Rollout)
	case out.Revision != 0:
		fmt.Fprintf(w, "\nApplied at revision %d.\n", out.Revision)
	default:
		fmt.Fprintln(w, "\nNothing to change.")
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("  " + l)
		}
	}
	return b.String()
}

func runPolicyApply(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("policy apply", flag.ContinueOnError)
	o := addAPIFlags(fs)
	file := fs.String("f", "", "YAML file of palisade.dev/v1 documents (required)")
	dryRun := fs.Bool("dry-run", false, "print the plan without changing anything")
	prune := fs.Bool("prune", false, "delete the documents the file does not contain")
	fed := fs.Bool("fed", false, "apply to the federation (on a primary) instead of this cluster")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (policy apply -f FILE)", errUsage, fs.Args())
	}
	path := "/v1/policy/apply"
	if *fed {
		path = "/v1/fed/policy/apply"
	}
	return postPolicy(ctx, env, o, path, *file, dryRun, prune)
}

func runPolicyImport(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("policy import-neuvector", flag.ContinueOnError)
	o := addAPIFlags(fs)
	file := fs.String("f", "", "NeuVector CRD export (YAML, required)")
	dryRun := fs.Bool("dry-run", false, "print the plan and what cannot be carried over without changing anything")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (policy import-neuvector -f FILE)", errUsage, fs.Args())
	}
	return postPolicy(ctx, env, o, "/v1/policy/import-neuvector", *file, dryRun, nil)
}

func runPolicyExport(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("policy export", flag.ContinueOnError)
	o := addAPIFlags(fs)
	fs.Lookup("o").Usage = "output format: yaml"
	fs.Lookup("o").DefValue = "yaml"
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if o.output != "yaml" && o.output != "table" {
		return fmt.Errorf("%w: -o %q: export writes yaml", errUsage, o.output)
	}
	o.output = "table"
	c, err := o.client(env)
	if err != nil {
		return err
	}
	resp, err := c.Raw(ctx, "GET", "/v1/policy/export", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(env.stdout, resp.Body); err != nil {
		return fmt.Errorf("read export: %w", err)
	}
	return nil
}

// policyModule builds the policy API of a controller replica.
func policyModule(h *controller.Handle) (httpapi.Module, error) {
	scfg := policystore.DefaultConfig()
	scfg.KV, scfg.Logger = h.Store, h.Logger
	ps, err := policystore.New(scfg)
	if err != nil {
		return nil, err
	}
	acfg := policyapi.DefaultConfig()
	acfg.Policy, acfg.Logger = ps, h.Logger
	return policyapi.New(acfg)
}
