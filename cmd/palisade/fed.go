package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palisade-sec/palisade/primary/hub"
	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/federation"
	"github.com/palisade-sec/palisade/shared/apiclient"
)

const fedUsage = `palisade fed: federation of clusters

  on a standalone cluster:  fed promote [--name NAME] [--fed-addr HOST:PORT,...]
                            fed join --token T [--name NAME] [--label k=v ...]
  on the primary:           fed token create [--ttl 1h] [--single-use]
                            fed status [-o json]
                            fed kick NAME
                            fed rollout [status] | pause | resume
                            fed rollout start -f FILE --canary CLUSTER,... [--dry-run]
                            fed clusters [--name TEXT] [--selector SEL] [--limit N] [--offset N] [-o json]
                            fed history [--user U] [--since 24h] [--limit N] [--offset N]
                            fed rollback --to REVISION
                            fed demote
  on a remote:              fed status [-o json]
                            fed leave`

// labelFlags collects repeated --label k=v flags.
type labelFlags map[string]string

func (l labelFlags) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labelFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not KEY=VALUE", v)
	}
	l[k] = val
	return nil
}

func runFed(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w\n%s", errUsage, fedUsage)
	}
	verb, args := args[0], args[1:]
	if verb == "token" || verb == "rollout" {
		sub := "status"
		if verb == "token" {
			sub = ""
		}
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			sub, args = args[0], args[1:]
		}
		verb += " " + sub
	}
	fs := flag.NewFlagSet("fed "+verb, flag.ContinueOnError)
	o := addAPIFlags(fs)
	var (
		name      = fs.String("name", "", "cluster name in the federation")
		fedAddrs  = fs.String("fed-addr", "", "comma-separated federation addresses to put in tokens (promote)")
		ttl       = fs.String("ttl", "1h", "token lifetime (token create)")
		singleUse = fs.Bool("single-use", false, "the token works for one join only (token create)")
		to        = fs.Uint64("to", 0, "revision to roll back to (rollback)")
		file      = fs.String("f", "", "policy YAML file (rollout start)")
		canary    = fs.String("canary", "", "comma-separated clusters of the first wave (rollout start)")
		dryRun    = fs.Bool("dry-run", false, "show what would change (rollout start)")
		labels    = labelFlags{}
		lf        = addListFlags(fs)
		user      = fs.String("user", "", "only states this user recorded (history)")
		since     = fs.String("since", "", "only states since this RFC 3339 time or this long ago, e.g. 24h (history)")
		selector  = fs.String("selector", "", "only remotes whose labels match, e.g. env=prod (clusters)")
	)
	fs.Var(labels, "label", "KEY=VALUE label of this cluster, repeatable (join)")
	var positional string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = args[0], args[1:]
	}
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	// For join, --token is the join token; the session comes from the
	// environment or the saved login.
	var joinToken string
	if verb == "join" {
		joinToken, o.token = o.token, ""
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	switch verb {
	case "promote":
		var resp map[string]any
		if err := c.Do(ctx, "POST", "/v1/fed/promote", hub.PromoteRequest{Name: *name, FedAddrs: splitList(*fedAddrs)}, &resp); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "Cluster %v is now the primary; remotes join through %v\n", resp["name"], resp["fedAddrs"])
		return nil
	case "demote":
		if err := c.Do(ctx, "POST", "/v1/fed/demote", nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, "Demoted: every remote was dismissed and the federation state removed")
		return nil
	case "token create":
		var resp hub.TokenResponse
		if err := c.Do(ctx, "POST", "/v1/fed/tokens", hub.TokenRequest{TTL: *ttl, SingleUse: *singleUse}, &resp); err != nil {
			return err
		}
		if o.json() {
			return writeJSON(env.stdout, resp)
		}
		fmt.Fprintln(env.stdout, resp.Token)
		fmt.Fprintf(env.stderr, "Token %s for %s, expires %s%s\n", resp.ID, strings.Join(resp.Addrs, ","), resp.Expires.Local().Format(time.RFC3339), map[bool]string{true: ", single use"}[resp.SingleUse])
		return nil
	case "join":
		if joinToken == "" {
			return fmt.Errorf("%w: palisade fed join --token TOKEN [--name NAME] [--label k=v ...]", errUsage)
		}
		var resp map[string]any
		if err := c.Do(ctx, "POST", "/v1/fed/join", federation.JoinRequest{Token: joinToken, Name: *name, Labels: labels}, &resp); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "Joined primary %v as %v (primary addresses %v)\n", resp["primary"], resp["name"], resp["addrs"])
		return nil
	case "leave":
		if err := c.Do(ctx, "POST", "/v1/fed/leave", nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, "Left the federation; federated objects removed")
		return nil
	case "kick":
		if positional == "" {
			return fmt.Errorf("%w: palisade fed kick NAME", errUsage)
		}
		if err := c.Do(ctx, "POST", "/v1/fed/members/"+url.PathEscape(positional)+"/kick", nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "Kicked %s: it is dismissed now or at its next contact\n", positional)
		return nil
	case "status":
		return fedStatus(ctx, env, c, o)
	case "history":
		w, err := lf.window()
		if err != nil {
			return err
		}
		resp, err := listWindow[hub.HistoryEntry](ctx, c, "/v1/fed/history", setQuery(url.Values{}, "user", *user, "since", *since), w)
		if err != nil {
			return err
		}
		if o.json() {
			return writeJSON(env.stdout, resp)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REVISION\tAT\tUSER\tOBJECTS")
		for _, e := range resp.Items {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", e.Revision, e.At.Local().Format(time.RFC3339), e.User, e.Objects)
		}
		return tw.Flush()
	case "clusters":
		w, err := lf.window()
		if err != nil {
			return err
		}
		list, err := listWindow[hub.RemoteInfo](ctx, c, "/v1/fed/clusters", setQuery(url.Values{}, "name", *name, "selector", *selector), w)
		if err != nil {
			return err
		}
		if o.json() {
			return writeJSON(env.stdout, list)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCONNECTED\tHEALTHY\tACKED\tLAG\tLAST CONTACT\tLABELS")
		for _, r := range list.Items {
			var labels []string
			for k, v := range r.Labels {
				labels = append(labels, k+"="+v)
			}
			sort.Strings(labels)
			contact := "-"
			if !r.LastContact.IsZero() {
				contact = r.LastContact.Local().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%v\t%v\t%d\t%d\t%s\t%s\n", r.Name, r.Connected, r.Healthy, r.AckedRevision, r.Lag, contact, strings.Join(labels, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(list.Items) == 0 {
			fmt.Fprintln(env.stdout, "(no remotes)")
		}
		return nil
	case "rollback":
		if *to == 0 {
			return fmt.Errorf("%w: palisade fed rollback --to REVISION (see palisade fed history)", errUsage)
		}
		var resp hub.ApplyResponse
		if err := c.Do(ctx, "POST", "/v1/fed/rollback", hub.RollbackRequest{To: *to}, &resp); err != nil {
			return err
		}
		return printApply(env, o, resp, fmt.Sprintf("Rolled back to revision %d", *to))
	case "rollout status", "rollout pause", "rollout resume":
		var st rollout.State
		var err error
		if verb == "rollout status" {
			err = c.Do(ctx, "GET", "/v1/fed/rollout", nil, &st)
		} else {
			err = c.Do(ctx, "POST", "/v1/fed/"+strings.Replace(verb, " ", "/", 1), nil, &st)
		}
		if err != nil {
			return err
		}
		if o.json() {
			return writeJSON(env.stdout, st)
		}
		paused := ""
		if st.Paused {
			paused = " (paused)"
		}
		fmt.Fprintf(env.stdout, "Rollout %s: phase %s%s, revision %d, canaries %s\n", st.ID, st.Phase, paused, st.Revision, strings.Join(st.Canaries, ","))
		if st.Message != "" {
			fmt.Fprintf(env.stdout, "  %s\n", st.Message)
		}
		return nil
	case "rollout start":
		if *file == "" || *canary == "" {
			return fmt.Errorf("%w: palisade fed rollout start -f FILE --canary CLUSTER,...", errUsage)
		}
		body, err := readPolicyFile(*file)
		if err != nil {
			return err
		}
		q := url.Values{"canary": {*canary}}
		if *dryRun {
			q.Set("dryRun", "true")
		}
		var resp hub.ApplyResponse
		if err := postYAML(ctx, c, "/v1/fed/policy/apply?"+q.Encode(), body, &resp); err != nil {
			return err
		}
		return printApply(env, o, resp, "Rollout "+resp.Rollout+" started: canaries first")
	}
	return fmt.Errorf("%w: unknown verb %q\n%s", errUsage, verb, fedUsage)
}

func readPolicyFile(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	return b, nil
}

func postYAML(ctx context.Context, c *apiclient.Client, path string, body []byte, out any) error {
	resp, err := c.Raw(ctx, "POST", path, "application/yaml", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func printApply(env *cliEnv, o *apiOpts, resp hub.ApplyResponse, done string) error {
	if o.json() {
		return writeJSON(env.stdout, resp)
	}
	for _, ch := range resp.Changes {
		fmt.Fprintf(env.stdout, "  %-9s %s %s\n", ch.Op, ch.Kind, ch.Name)
	}
	switch {
	case resp.DryRun:
		fmt.Fprintln(env.stdout, "Dry run: nothing written")
	case resp.Revision == 0:
		fmt.Fprintln(env.stdout, "Nothing to change")
	default:
		fmt.Fprintf(env.stdout, "%s at revision %d\n", done, resp.Revision)
	}
	return nil
}

func fedStatus(ctx context.Context, env *cliEnv, c *apiclient.Client, o *apiOpts) error {
	var cl api.Cluster
	if err := c.Do(ctx, "GET", "/v1/cluster", nil, &cl); err != nil {
		return err
	}
	switch cl.Role {
	case "primary":
		var st hub.Status
		if err := c.Do(ctx, "GET", "/v1/fed/status", nil, &st); err != nil {
			return err
		}
		if o.json() {
			return writeJSON(env.stdout, st)
		}
		fmt.Fprintf(env.stdout, "Primary %s at revision %d, federation addresses %s\n", st.Name, st.Revision, strings.Join(st.Addrs, ","))
		if st.Rollout != nil {
			fmt.Fprintf(env.stdout, "Rollout %s: phase %s, revision %d, canaries %s%s\n", st.Rollout.ID, st.Rollout.Phase, st.Rollout.Revision,
				strings.Join(st.Rollout.Canaries, ","), map[bool]string{true: " (paused)"}[st.Rollout.Paused])
		}
		fmt.Fprintln(env.stdout)
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REMOTE\tLABELS\tCONNECTED\tLAST CONTACT\tAPPLIED\tLAG\tPROTOCOL\tHEALTH")
		for _, r := range st.Remotes {
			conn := "no"
			if r.Connected {
				conn = "yes"
			}
			if r.Kicked {
				conn = "kicked"
			}
			health := "ok"
			if !r.Healthy {
				health = "-"
			}
			if r.LastError != "" {
				health = r.LastError
			}
			last := "never"
			if !r.LastContact.IsZero() {
				last = r.LastContact.Local().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Name, fmtLabels(r.Labels), conn, last, r.AckedRevision, r.Lag, r.Version, health)
		}
		return tw.Flush()
	case "remote":
		var st federation.LinkStatus
		if err := c.Do(ctx, "GET", "/v1/fed/link", nil, &st); err != nil {
			return err
		}
		if o.json() {
			return writeJSON(env.stdout, st)
		}
		fmt.Fprintf(env.stdout, "Remote %s of primary %s (%s)\nApplied revision: %d\n", st.Name, st.Primary, strings.Join(st.Addrs, ","), st.Applied)
		if st.Link != nil {
			if st.Link.Connected {
				fmt.Fprintf(env.stdout, "Connected to %s since %s\n", st.Link.Primary, st.Link.ConnectedSince.Local().Format(time.RFC3339))
			} else {
				fmt.Fprintf(env.stdout, "Disconnected since %s (%s); enforcing the federated rules it has\n", st.Link.DisconnectedSince.Local().Format(time.RFC3339), st.Link.LastError)
			}
		}
		return nil
	default:
		if o.json() {
			return writeJSON(env.stdout, map[string]string{"role": cl.Role, "name": cl.Name})
		}
		fmt.Fprintf(env.stdout, "Cluster %s is standalone (not in a federation)\n", cl.Name)
		return nil
	}
}

func fmtLabels(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
