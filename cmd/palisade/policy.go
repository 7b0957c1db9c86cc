package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
)

const policyUsage = `Usage: palisade policy SUBCOMMAND [flags]

Subcommands:
  validate -f FILE   check a policy-as-code YAML file offline (no controller
                     needed): exit 0 when valid, 1 with one line per problem

`

// runPolicy dispatches "palisade policy SUBCOMMAND".
func runPolicy(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stdout, policyUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: missing subcommand (want validate)", errUsage)
		}
		return nil
	}
	switch args[0] {
	case "validate":
		return runPolicyValidate(ctx, env, args[1:])
	}
	return fmt.Errorf("%w: unknown policy subcommand %q (want validate)", errUsage, args[0])
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
