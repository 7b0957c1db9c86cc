package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
	"github.com/palisade-sec/palisade/remote/controller"
	"github.com/palisade-sec/palisade/remote/scanning"
)

// scanningModule builds the controller's registry scanning module, caching
// layers under the replica's data dir, with workers in-process scan
// workers (0: remote scanner workers only). byDigest serves results by
// digest, for a controller without the admission module (which serves
// them).
func scanningModule(h *controller.Handle, dataDir, vulnDir string, byDigest bool, workers int) (scanning.Routed, error) {
	cfg := scanning.DefaultConfig()
	cfg.Store, cfg.Logger, cfg.ServeResultByDigest, cfg.CA = h.Store, h.Logger, byDigest, h.CA
	cfg.CacheDir = filepath.Join(dataDir, "scancache")
	cfg.Workers = workers
	if vulnDir != "" {
		cfg.Feed = vulndb.DirSource{Dir: vulnDir}
	}
	m, err := scanning.New(cfg)
	if err != nil {
		return scanning.Routed{}, err
	}
	return m.WithWorkerRoutes(), nil
}

const registryUsage = `Usage: palisade registry SUBCOMMAND [flags]

Subcommands:
  add NAME URL [--filter REPO[:TAG]] [--interval 1h] [--fed] [--insecure]
      [--username U --password-stdin | --token-stdin]
                     scan a registry on a schedule; --fed (on a primary)
                     scans it once for the whole federation; credentials
                     are kept sealed and never shown (list says auth: basic)
  credentials NAME --username U --password-stdin | --token-stdin | --delete
                     set or remove a registry's credentials
  list [--name TEXT] [--federated true|false] [--limit N] [--offset N]
                     list registries with their last scan
  delete NAME        stop scanning a registry
  scan NAME          scan a registry now

`

func runRegistry(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stdout, registryUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: missing subcommand (want add, credentials, list, delete or scan)", errUsage)
		}
		return nil
	}
	switch args[0] {
	case "add":
		return runRegistryAdd(ctx, env, args[1:])
	case "list":
		return runRegistryList(ctx, env, args[1:])
	case "delete":
		return runRegistryNamed(ctx, env, "delete", args[1:])
	case "scan":
		return runRegistryNamed(ctx, env, "scan", args[1:])
	case "credentials":
		return runRegistryCredentials(ctx, env, args[1:])
	}
	return fmt.Errorf("%w: unknown registry subcommand %q (want add, list, delete, scan or credentials)", errUsage, args[0])
}

func runRegistryAdd(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("registry add", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	o := addAPIFlags(fs)
	filter := fs.String("filter", "", "repositories and tags to scan, REPO[:TAG] glob patterns (team/*, app:v1.*)")
	interval := fs.Duration("interval", time.Hour, "time between scans")
	fed := fs.Bool("fed", false, "scan for the whole federation (primary only): results go to every remote")
	insecure := fs.Bool("insecure", false, "allow plain HTTP and self-signed certificates")
	cf := addCredentialFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: want NAME URL, got %d arguments", errUsage, len(pos))
	}
	creds, err := cf.read(os.Stdin)
	if err != nil {
		return err
	}
	f, err := scanning.ParseFilter(*filter)
	if err != nil {
		return fmt.Errorf("%w: --filter: %v", errUsage, err)
	}
	reg := scanning.Registry{Name: pos[0], URL: pos[1], Filter: f, Interval: scanning.Duration(*interval), Federated: *fed, Insecure: *insecure}
	if creds != nil {
		// Declared first, so that the registry waits for its credentials
		// instead of being scanned without them.
		reg.Auth = creds.Kind()
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	var out scanning.RegistryInfo
	if err := c.Do(ctx, "POST", "/v1/registries", reg, &out); err != nil {
		return err
	}
	if creds != nil {
		if err := c.Do(ctx, "PUT", "/v1/registries/"+url.PathEscape(reg.Name)+"/credentials", creds, &out); err != nil {
			return fmt.Errorf("registry %s added, but its credentials were not stored (it waits for them: palisade registry credentials %s): %w", reg.Name, reg.Name, err)
		}
	}
	if o.json() {
		return writeJSON(env.stdout, out)
	}
	scope := "this cluster"
	if out.Federated {
		scope = "the federation"
	}
	auth := ""
	if out.Auth != "" {
		auth = ", auth " + out.Auth
	}
	fmt.Fprintf(env.stdout, "registry %s added: %s every %s for %s%s\n", out.Name, out.URL, time.Duration(out.Interval), scope, auth)
	return nil
}

// credentialFlags are the flags that give a registry's credentials; the
// secret is read from stdin, never from the command line.
type credentialFlags struct {
	username      *string
	passwordStdin *bool
	tokenStdin    *bool
}

func addCredentialFlags(fs *flag.FlagSet) *credentialFlags {
	return &credentialFlags{
		username:      fs.String("username", "", "user name for the registry (basic auth; give the password with --password-stdin)"),
		passwordStdin: fs.Bool("password-stdin", false, "read the registry password from stdin"),
		tokenStdin:    fs.Bool("token-stdin", false, "read a registry bearer token from stdin"),
	}
}

// read returns the credentials the flags give, or nil for none.
func (f *credentialFlags) read(stdin io.Reader) (*scanning.Credentials, error) {
	switch {
	case *f.tokenStdin && (*f.username != "" || *f.passwordStdin):
		return nil, fmt.Errorf("%w: give --username with --password-stdin, or --token-stdin, not both", errUsage)
	case *f.username != "" && !*f.passwordStdin, *f.username == "" && *f.passwordStdin:
		return nil, fmt.Errorf("%w: basic credentials need --username and --password-stdin", errUsage)
	case !*f.tokenStdin && *f.username == "":
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return nil, fmt.Errorf("%w: stdin is empty: pipe the secret in (echo \"$PASSWORD\" | palisade registry ...)", errUsage)
	}
	c := &scanning.Credentials{Username: *f.username, Password: secret}
	if *f.tokenStdin {
		c = &scanning.Credentials{Token: secret}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, nil
}

func runRegistryCredentials(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("registry credentials", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	o := addAPIFlags(fs)
	cf := addCredentialFlags(fs)
	del := fs.Bool("delete", false, "remove the registry's credentials (it is then scanned anonymously)")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one registry NAME", errUsage)
	}
	var creds *scanning.Credentials
	if !*del {
		if creds, err = cf.read(os.Stdin); err != nil {
			return err
		}
		if creds == nil {
			return fmt.Errorf("%w: give --username U --password-stdin, --token-stdin, or --delete", errUsage)
		}
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	p := "/v1/registries/" + url.PathEscape(pos[0]) + "/credentials"
	var out scanning.RegistryInfo
	if *del {
		err = c.Do(ctx, "DELETE", p, nil, &out)
	} else {
		err = c.Do(ctx, "PUT", p, creds, &out)
	}
	if err != nil {
		return err
	}
	if o.json() {
		return writeJSON(env.stdout, out)
	}
	fmt.Fprintf(env.stdout, "registry %s: auth %s\n", out.Name, dash(out.Auth))
	return nil
}

func runRegistryList(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("registry list", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	name := fs.String("name", "", "only registries whose name contains this")
	federated := fs.String("federated", "", "only federated (true) or local (false) registries")
	pos, err := positionals(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	fed, err := boolFilter("federated", *federated)
	if err != nil {
		return err
	}
	out, done, err := fetchList[scanning.RegistryInfo](ctx, env, o, lf, "/v1/registries", setQuery(url.Values{}, "name", *name, "federated", fed))
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tFILTER\tINTERVAL\tSCOPE\tAUTH\tLAST SCAN\tIMAGES\tSCANNED\tSKIPPED\tFAILED\tERROR")
	for _, r := range out.Items {
		scope, last := "local", "never"
		if r.Federated {
			scope = "federated"
		}
		var imgs, scanned, skipped, failed int
		errText := ""
		if st := r.Status; st != nil {
			last = st.Started.Local().Format(time.DateTime)
			if st.Finished.IsZero() {
				last += " (running)"
			}
			imgs, scanned, skipped, failed, errText = st.Images, st.Scanned, st.Skipped, st.Failed, st.Error
		}
		filter := r.Filter.Repository
		if r.Filter.Tag != "" {
			filter += ":" + r.Filter.Tag
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", r.Name, r.URL, dash(filter), time.Duration(r.Interval), scope, dash(r.Auth), last,
			imgs, scanned, skipped, failed, dash(errText))
	}
	return tw.Flush()
}

func runRegistryNamed(ctx context.Context, env *cliEnv, verb string, args []string) error {
	fs := flag.NewFlagSet("registry "+verb, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	o := addAPIFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one registry NAME", errUsage)
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	p := "/v1/registries/" + url.PathEscape(pos[0])
	switch verb {
	case "delete":
		if err := c.Do(ctx, "DELETE", p, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "registry %s deleted\n", pos[0])
	case "scan":
		if err := c.Do(ctx, "POST", p+"/scan", nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "scan of registry %s requested\n", pos[0])
	}
	return nil
}

// runScanResult shows the stored scan result of an image by digest or
// by reference (resolved through the cluster's index).
func runScanResult(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("scan result", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	o := addAPIFlags(fs)
	full := fs.Bool("full", false, "show the full report (packages, fixed versions, secrets) of an image this cluster scanned")
	lf := addListFlags(fs)
	image := fs.String("image", "", "list the results whose reference contains this")
	source := fs.String("source", "", "list the results of this origin: "+scanning.SourceLocal+" or "+scanning.SourceFederated)
	severity := fs.String("severity", "", "list the results with a finding of this severity or worse: critical, high, medium or low")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	listing := flagSet(fs, "image") || flagSet(fs, "source") || flagSet(fs, "severity") || flagSet(fs, "limit") || flagSet(fs, "offset")
	switch {
	case len(pos) == 0 && !*full:
		return runScanResultList(ctx, env, o, lf, setQuery(url.Values{}, "image", *image, "source", *source, "severity", *severity))
	case len(pos) != 1:
		return fmt.Errorf("%w: want one image DIGEST or REF, or none to list results", errUsage)
	case listing:
		return fmt.Errorf("%w: --image, --source, --severity, --limit and --offset list results; give them without a DIGEST or REF", errUsage)
	}
	q := url.Values{}
	if strings.HasPrefix(pos[0], "sha256:") {
		q.Set("digest", pos[0])
	} else {
		q.Set("ref", pos[0])
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	var out scanning.ResultList
	if err := c.Do(ctx, "GET", "/v1/scan/results?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	if len(out.Items) == 0 {
		return fmt.Errorf("no scan result for %s", pos[0])
	}
	r := out.Items[0]
	if *full {
		var rep report.Report
		if err := c.Do(ctx, "GET", "/v1/scan/reports/"+r.Digest, nil, &rep); err != nil {
			return err
		}
		f := report.Table
		if o.json() {
			f = report.JSON
		}
		return report.Write(env.stdout, f, &rep)
	}
	if o.json() {
		return writeJSON(env.stdout, r)
	}
	fmt.Fprintf(env.stdout, "Digest:     %s\n", r.Digest)
	if r.IndexDigest != "" {
		fmt.Fprintf(env.stdout, "Index:      %s\n", r.IndexDigest)
	}
	fmt.Fprintf(env.stdout, "Ref:        %s\n", dash(r.Ref))
	fmt.Fprintf(env.stdout, "Source:     %s\n", r.Source)
	fmt.Fprintf(env.stdout, "Scanned at: %s\n", r.ScannedAt.Local().Format(time.RFC3339))
	fmt.Fprintf(env.stdout, "Critical %d (%d fixable), High %d (%d fixable), Medium %d (%d fixable), Low %d\n",
		r.Critical, r.CriticalWithFix, r.High, r.HighWithFix, r.Medium, r.MediumWithFix, r.Low)
	if len(r.CVEs) > 0 {
		fmt.Fprintf(env.stdout, "Advisories: %s\n", strings.Join(r.CVEs, ", "))
	}
	return nil
}

// runScanResultList lists the stored scan results that match q, latest
// scan first.
func runScanResultList(ctx context.Context, env *cliEnv, o *apiOpts, lf *listFlags, q url.Values) error {
	out, done, err := fetchList[scanning.Result](ctx, env, o, lf, "/v1/scan/results", q)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tDIGEST\tSOURCE\tSCANNED\tCRITICAL\tHIGH\tMEDIUM\tLOW")
	for _, r := range out.Items {
		scanned := "-"
		if !r.ScannedAt.IsZero() {
			scanned = r.ScannedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", dash(r.Ref), shortDigest(r.Digest), r.Source, scanned,
			r.Critical, r.High, r.Medium, r.Low)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(out.Items) == 0 {
		fmt.Fprintln(env.stdout, "(no scan results)")
	}
	return nil
}

// runScanFailures lists the images whose scan failed.
func runScanFailures(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("scan failures", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	registry := fs.String("registry", "", "only failures of this registry")
	image := fs.String("image", "", "only failures whose reference contains this")
	pos, err := positionals(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	out, done, err := fetchList[scanning.Failure](ctx, env, o, lf, "/v1/scan/failures", setQuery(url.Values{}, "registry", *registry, "image", *image))
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGISTRY\tREF\tATTEMPTS\tAT\tRETRY AT\tERROR")
	for _, f := range out.Items {
		retry := "-"
		if !f.RetryAt.IsZero() {
			retry = f.RetryAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", f.Registry, f.Ref, f.Attempts, f.At.Local().Format(time.DateTime), retry, dash(f.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(out.Items) == 0 {
		fmt.Fprintln(env.stdout, "(no scan failures)")
	}
	return nil
}

// shortDigest cuts a digest to its algorithm and first 12 hex digits.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return dash(d)
}
