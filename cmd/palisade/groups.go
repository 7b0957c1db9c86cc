package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/remote/policystore"
)

// positionals parses flags that may come before, between or after
// positional arguments, and returns the positional ones.
func positionals(fs *flag.FlagSet, env *cliEnv, args []string) ([]string, error) {
	fs.SetOutput(env.stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return pos, nil
}

func runGroup(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: palisade group list [--source S] [--name TEXT] [--mode M] [--criteria TEXT] [--limit N] [--offset N] [-o json]", errUsage)
	}
	fs := flag.NewFlagSet("group list", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	source := fs.String("source", "", "only groups of this source: federated, code, user or learned")
	name := fs.String("name", "", "only groups whose name contains this")
	mode := fs.String("mode", "", "only groups with this network or process mode: discover, monitor or protect")
	criteria := fs.String("criteria", "", "only groups with a criterion containing this (a label, namespace, image or address)")
	pos, err := positionals(fs, env, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	q := setQuery(url.Values{}, "source", *source, "name", *name, "mode", *mode, "criteria", *criteria)
	all, done, err := fetchRevisionList[policystore.GroupInfo](ctx, env, o, lf, "/v1/groups", q)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tNETWORK\tPROCESS\tMEMBERS\tCRITERIA")
	starred := false
	for _, g := range all.Items {
		members := "-"
		if g.Members != nil {
			members = strconv.Itoa(*g.Members)
		}
		nm, pm := string(g.NetworkMode), string(g.ProcessMode)
		if g.NetworkModeSet {
			nm += "*"
		}
		if g.ProcessModeSet {
			pm += "*"
		}
		starred = starred || g.NetworkModeSet || g.ProcessModeSet
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Source, nm, pm, members, strings.Join(g.Criteria, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case len(all.Items) == 0:
		fmt.Fprintln(env.stdout, "(no groups)")
	case starred:
		fmt.Fprintln(env.stdout, "* set with palisade mode set")
	}
	return nil
}

func runRule(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: palisade rule list [--learned] [--group G] [--source S] [--name TEXT] [--action A] [--limit N] [--offset N] [-o json]", errUsage)
	}
	fs := flag.NewFlagSet("rule list", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	name := fs.String("name", "", "only rules whose name contains this")
	action := fs.String("action", "", "only rules with this action: allow or deny")
	learned := fs.Bool("learned", false, "include rules learned in Discover mode")
	group := fs.String("group", "", "only rules from or to this group")
	source := fs.String("source", "", "only rules of this source: federated, code, user or learned")
	pos, err := positionals(fs, env, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	q := setQuery(url.Values{}, "group", *group, "source", *source, "name", *name, "action", *action)
	if *learned {
		q.Set("learned", "true")
	}
	all, done, err := fetchRevisionList[policystore.RuleInfo](ctx, env, o, lf, "/v1/rules", q)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tKIND\tNAME\tSOURCE\tFROM\tTO\tPORTS\tAPPLICATIONS\tACTION")
	for _, r := range all.Items {
		action := string(r.Action)
		if r.Disabled {
			action += " (disabled)"
		}
		kind, from, to, ports, apps := ruleColumns(r)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Order, kind, r.Name, r.Source, from, to, ports, apps, action)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(all.Items) == 0 {
		fmt.Fprintln(env.stdout, "(no rules)")
	}
	return nil
}

// ruleColumns renders the kind and the FROM, TO, PORTS and APPLICATIONS
// cells of a rule: a process rule runs from its group to its process
// (and executable path) and has no ports or applications.
func ruleColumns(r policystore.RuleInfo) (kind, from, to, ports, apps string) {
	if r.Kind == policy.KindProcessRule {
		to = r.Process
		switch {
		case to == "" && r.Path == "":
			to = "any"
		case to == "":
			to = r.Path
		case r.Path != "":
			to += " (" + r.Path + ")"
		}
		return "process", dash(r.Group), to, "-", "-"
	}
	apps = strings.Join(r.Applications, ",")
	if apps == "" {
		apps = "any"
	}
	return "network", r.From, r.To, r.Ports, apps
}

const modeUsage = "palisade mode set GROUP|--all discover|monitor|protect [--process]"

func runMode(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "set" {
		return fmt.Errorf("%w: %s", errUsage, modeUsage)
	}
	fs := flag.NewFlagSet("mode set", flag.ContinueOnError)
	o := addAPIFlags(fs)
	all := fs.Bool("all", false, "set the mode of every group (federated ones excepted) and the default")
	process := fs.Bool("process", false, "set the process and file mode instead of the network mode")
	pos, err := positionals(fs, env, args[1:])
	if err != nil {
		return err
	}
	req := policystore.ModeRequest{All: *all, Process: *process}
	switch {
	case *all && len(pos) == 1:
		req.Mode = pos[0]
	case !*all && len(pos) == 2:
		req.Group, req.Mode = pos[0], pos[1]
	default:
		return fmt.Errorf("%w: %s", errUsage, modeUsage)
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	var res policystore.ModeResult
	if err := c.Do(ctx, "PUT", "/v1/modes", req, &res); err != nil {
		return err
	}
	if o.json() {
		return writeJSON(env.stdout, res)
	}
	what := "network mode"
	if res.Process {
		what = "process and file mode"
	}
	target := "group " + strings.Join(res.Groups, ", ")
	if res.Default {
		target = fmt.Sprintf("%d groups and the default", len(res.Groups))
	}
	fmt.Fprintf(env.stdout, "Set the %s of %s to %s (revision %d)\n", what, target, res.Mode, res.Revision)
	if len(res.Skipped) > 0 {
		fmt.Fprintf(env.stdout, "Left federated groups alone: %s\n", strings.Join(res.Skipped, ", "))
	}
	return nil
}
