package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"sigs.k8s.io/yaml"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/admit"
	"github.com/palisade-sec/palisade/registryscan/scan"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
	"github.com/palisade-sec/palisade/remote/admission"
	"github.com/palisade-sec/palisade/remote/admission/audit"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/admission/webhookconfig"
	"github.com/palisade-sec/palisade/remote/controller"
	"github.com/palisade-sec/palisade/remote/policyapi"
	"github.com/palisade-sec/palisade/shared/apiclient"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// Exit codes of "palisade admission test", for pipelines.
const (
	admitExitAdmitted = 0
	admitExitDenied   = 1
	admitExitError    = 2
)

const admissionUsage = `Usage: palisade admission SUBCOMMAND [flags]

Subcommands:
  test -f MANIFEST.yaml [--rules RULES.yaml] [--vulndb DIR]
                     run a manifest through admission rules without creating
                     anything: offline with --rules, or with the controller's
                     rules and scan results when --api is given. Exit 0 when
                     every object is admitted, 1 when one is denied, 2 on error
  events             list recent admission decisions (--denied, --namespace,
                     --rule, --kind, --name, --image, --since, --limit, --offset)
  rules              list admission rules in evaluation order (--source,
                     --name, --action, --limit, --offset)
  status             show the webhook's rules, mode and failure policy

`

// maxManifestBytes bounds a manifest file.
const maxManifestBytes = 8 << 20

func runAdmission(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.stdout, admissionUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: missing subcommand (want test, events or status)", errUsage)
		}
		return nil
	}
	switch args[0] {
	case "test":
		return runAdmissionTest(ctx, env, args[1:])
	case "events":
		return runAdmissionEvents(ctx, env, args[1:])
	case "status":
		return runAdmissionStatus(ctx, env, args[1:])
	case "rules":
		return runAdmissionRules(ctx, env, args[1:])
	}
	return fmt.Errorf("%w: unknown admission subcommand %q (want test, events, rules or status)", errUsage, args[0])
}

func runAdmissionTest(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("admission test", flag.ContinueOnError)
	o := addAPIFlags(fs)
	file := fs.String("f", "", "manifest: YAML or JSON Kubernetes objects (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController, List); - reads stdin")
	rulesFile := fs.String("rules", "", "AdmissionRule YAML (palisade.dev/v1) to test against offline")
	vulnDir := fs.String("vulndb", "", "offline: scan the manifest's images against this OSV directory to get their verdicts")
	mode := fs.String("mode", "protect", "offline: the mode when the rules set none (monitor or protect)")
	insecure := fs.Bool("insecure", false, "offline: allow plain-HTTP registries when scanning")
	fail := func(err error) error { return &exitError{code: admitExitError, err: err} }
	if err := parseFlags(fs, env, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fail(err)
	}
	switch {
	case *file == "" || fs.NArg() > 0:
		return fail(fmt.Errorf("%w: palisade admission test -f MANIFEST.yaml [--rules RULES.yaml] [--vulndb DIR] [--api URL]", errUsage))
	case o.api != "" && (*rulesFile != "" || *vulnDir != ""):
		return fail(fmt.Errorf("%w: --api tests against the controller's rules and scan results; --rules and --vulndb are for offline tests", errUsage))
	case o.api == "" && *rulesFile == "":
		return fail(fmt.Errorf("%w: give --rules RULES.yaml (offline) or --api URL (the controller's rules)", errUsage))
	}
	objects, err := readManifest(*file, env)
	if err != nil {
		return fail(err)
	}
	var resp admission.TestResponse
	if o.api != "" {
		c, err := o.client(env)
		if err != nil {
			return fail(err)
		}
		if err := c.Do(ctx, "POST", "/v1/admission/test", admission.TestRequest{Objects: objects}, &resp); err != nil {
			return fail(err)
		}
	} else {
		m, err := policy.ParseMode(*mode)
		if err != nil || (m != policy.ModeMonitor && m != policy.ModeProtect) {
			return fail(fmt.Errorf("%w: --mode %q: want monitor or protect", errUsage, *mode))
		}
		data, err := readLimited(*rulesFile, env)
		if err != nil {
			return fail(fmt.Errorf("read rules: %w", err))
		}
		rules, err := admission.LoadRules(data, m)
		if err != nil {
			return fail(fmt.Errorf("rules %s: %w", *rulesFile, err))
		}
		src, err := offlineVerdicts(ctx, env, *vulnDir, *insecure, objects)
		if err != nil {
			return fail(err)
		}
		for _, obj := range objects {
			resp.Results = append(resp.Results, admission.Test(ctx, rules, src, obj))
		}
	}
	if o.json() {
		if err := writeJSON(env.stdout, resp); err != nil {
			return fail(err)
		}
	} else {
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DECISION\tKIND\tOBJECT\tRULE\tREASON")
		for _, r := range resp.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", decisionWord(r), dash(r.Kind), dash(strings.Trim(r.Namespace+"/"+r.Name, "/")), dash(r.Rule), r.Message)
		}
		tw.Flush()
	}
	code := admitExitAdmitted
	for _, r := range resp.Results {
		switch {
		case r.Error != "":
			return &exitError{code: admitExitError, err: fmt.Errorf("an object could not be read: %s", r.Error)}
		case !r.Allowed:
			code = admitExitDenied
		}
	}
	if code != admitExitAdmitted {
		return &exitError{code: code}
	}
	return nil
}

func decisionWord(r admission.TestResult) string {
	switch {
	case r.Error != "":
		return "error"
	case r.Skipped:
		return "skipped"
	case !r.Allowed:
		return "denied"
	case r.Mode == string(policy.ModeMonitor) && strings.HasPrefix(r.Message, "would be denied"):
		return "admitted (monitor)"
	}
	return "admitted"
}

// dash shows an empty cell as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func readLimited(path string, env *cliEnv) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%s: over %d bytes", path, maxManifestBytes)
	}
	return b, nil
}

// readManifest splits a YAML (or JSON) stream into JSON objects, expanding
// kind: List.
func readManifest(path string, env *cliEnv) ([]json.RawMessage, error) {
	data, err := readLimited(path, env)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var out []json.RawMessage
	for i, doc := range splitYAML(data) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: document %d: %v", path, i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		var list struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(j, &list); err != nil {
			return nil, fmt.Errorf("manifest %s: document %d is not an object", path, i+1)
		}
		if list.Kind == "List" || strings.HasSuffix(list.Kind, "List") && list.Items != nil {
			out = append(out, list.Items...)
			continue
		}
		out = append(out, j)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("manifest %s holds no objects", path)
	}
	if len(out) > admission.MaxTestObjects {
		return nil, fmt.Errorf("manifest %s: %d objects (limit %d)", path, len(out), admission.MaxTestObjects)
	}
	return out, nil
}

// splitYAML splits a stream at "---" document separators.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		t := bytes.TrimRight(line, "\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) || bytes.HasPrefix(t, []byte("---#")) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	docs = append(docs, cur.Bytes())
	return docs
}

// offlineSource has the verdicts of a manifest's images, scanned before
// any decision.
type offlineSource map[string]offlineVerdict

type offlineVerdict struct {
	v    admit.ImageVerdict
	ok   bool
	note string
}

func (s offlineSource) Verdict(_ context.Context, image string) (admit.ImageVerdict, bool, string) {
	ov := s[image]
	return ov.v, ov.ok, ov.note
}

// offlineVerdicts scans every image of the manifest against the feed in
// dir; without dir every image counts as not scanned.
func offlineVerdicts(ctx context.Context, env *cliEnv, dir string, insecure bool, objects []json.RawMessage) (admission.VerdictSource, error) {
	src := offlineSource{}
	if dir == "" {
		return src, nil
	}
	db, err := vulndb.LoadDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("load --vulndb: %w", err)
	}
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := scan.DefaultConfig()
	cfg.Insecure = insecure
	cfg.Keychain = authn.DefaultKeychain
	s, err := scan.New(cfg, db, nil, log)
	if err != nil {
		return nil, err
	}
	for _, img := range manifestImages(objects) {
		reps, err := s.ScanImage(ctx, img)
		if err != nil || len(reps) == 0 {
			src[img] = offlineVerdict{note: fmt.Sprintf("image %q not scanned: %v", img, err)}
			continue
		}
		v := verdict.FromReport(reps[0])
		src[img] = offlineVerdict{v: v.Admit(), ok: true}
	}
	return src, nil
}

// manifestImages lists the distinct images of every container of the
// manifest's objects.
func manifestImages(objects []json.RawMessage) []string {
	var out []string
	seen := map[string]bool{}
	for _, o := range objects {
		for _, img := range admission.ObjectImages(o) {
			if !seen[img] {
				seen[img] = true
				out = append(out, img)
			}
		}
	}
	return out
}

func runAdmissionEvents(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("admission events", flag.ContinueOnError)
	o := addAPIFlags(fs)
	denied := fs.Bool("denied", false, "only denials (and denials monitor mode let through)")
	ns := fs.String("namespace", "", "only this namespace")
	rule := fs.String("rule", "", "only decisions of this rule")
	lf := &listFlags{
		limit:  fs.Int("limit", 50, "most events to show, newest first (0: all)"),
		offset: fs.Int("offset", 0, "newest events to skip first"),
	}
	since := fs.Duration("since", 0, "only events this recent (e.g. 10m)")
	kind := fs.String("kind", "", "only objects of this kind")
	name := fs.String("name", "", "only objects whose name contains this")
	image := fs.String("image", "", "only objects with an image whose reference contains this")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	w, err := lf.window()
	if err != nil {
		return err
	}
	q := setQuery(url.Values{}, "namespace", *ns, "rule", *rule, "kind", *kind, "name", *name, "image", *image)
	if *denied {
		q.Set("denied", "true")
	}
	if *since > 0 {
		q.Set("since", time.Now().Add(-*since).UTC().Format(time.RFC3339Nano))
	}
	pages, err := apiclient.Pages(ctx, c, "/v1/admission/events", q, w, func(p *admission.EventList) (int, int) { return len(p.Items), p.Total })
	if err != nil {
		return err
	}
	list := admission.EventList{Items: []audit.Event{}, Offset: w.Offset}
	for _, p := range pages {
		list.Items = append(list.Items, p.Items...)
		list.Total, list.Dropped = p.Total, p.Dropped
	}
	list.Limit = len(list.Items)
	if o.json() {
		return writeJSON(env.stdout, list)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tDECISION\tUSER\tOBJECT\tRULE\tLATENCY\tMESSAGE")
	for _, e := range list.Items {
		d := "admitted"
		switch {
		case !e.Allowed:
			d = "denied"
		case e.WouldDeny:
			d = "would deny"
		}
		obj := strings.Trim(e.Kind+" "+strings.Trim(e.Namespace+"/"+e.Name, "/"), " ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), d, dash(e.User), dash(obj), dash(e.Rule),
			time.Duration(e.LatencyMicros)*time.Microsecond, e.Message)
	}
	if list.Dropped > 0 {
		fmt.Fprintf(tw, "(%d events dropped: the store could not keep up)\n", list.Dropped)
	}
	return tw.Flush()
}

func runAdmissionRules(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("admission rules", flag.ContinueOnError)
	o := addAPIFlags(fs)
	lf := addListFlags(fs)
	source := fs.String("source", "", "only rules of this source: federated, code, user or learned")
	name := fs.String("name", "", "only rules whose name contains this")
	action := fs.String("action", "", "only rules with this action: allow or deny")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	q := setQuery(url.Values{}, "source", *source, "name", *name, "action", *action)
	all, done, err := fetchRevisionList[policyapi.AdmissionRuleInfo](ctx, env, o, lf, "/v1/admission/rules", q)
	if err != nil || done {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tNAME\tSOURCE\tACTION\tCRITERIA")
	for _, r := range all.Items {
		order := "-"
		if r.Order > 0 {
			order = strconv.Itoa(r.Order)
		}
		var crit []string
		for _, cr := range r.Criteria {
			crit = append(crit, cr.Name+" "+cr.Op+" "+cr.Value)
		}
		action := string(r.Action)
		if r.Disabled {
			action += " (disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", order, r.Name, r.Source, action, strings.Join(crit, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(all.Items) == 0 {
		fmt.Fprintln(env.stdout, "(no admission rules)")
	}
	return nil
}

func runAdmissionStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("admission status", flag.ContinueOnError)
	o := addAPIFlags(fs)
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	var st admission.Status
	if err := c.Do(ctx, "GET", "/v1/admission/status", nil, &st); err != nil {
		return err
	}
	if o.json() {
		return writeJSON(env.stdout, st)
	}
	fmt.Fprintf(env.stdout, "Replica:        %s\nEnabled:        %v\nMode:           %s\nRules:          %d (revision %d)\nVerdicts:       %d\nFailure policy: %s\nTimeout:        %v\nRegistration:   %v\n",
		st.Replica, st.Enabled, st.Mode, st.Rules, st.RulesRevision, st.Verdicts, st.FailurePolicy, time.Duration(st.TimeoutMillis)*time.Millisecond, st.Registered)
	for _, p := range st.Problems {
		fmt.Fprintf(env.stdout, "Left out:       %s\n", p)
	}
	return nil
}

// admissionFlags are the controller's admission webhook flags.
type admissionFlags struct {
	cfg        admission.Config
	policy     string
	mode       string
	url        string
	service    string
	sans       string
	exclude    string
	kubeconfig string
}

func addAdmissionFlags(fs *flag.FlagSet) *admissionFlags {
	a := &admissionFlags{cfg: admission.DefaultConfig()}
	fs.StringVar(&a.cfg.Addr, "admission-addr", a.cfg.Addr, "admission webhook HTTPS listen address (empty disables the webhook)")
	fs.DurationVar(&a.cfg.Timeout, "admission-timeout", a.cfg.Timeout, "the API server's timeout for the webhook (whole seconds, 1s-30s); decisions aim for three quarters of it")
	fs.StringVar(&a.policy, "admission-failure-policy", a.cfg.FailurePolicy, "what happens when no decision can be made in time: Ignore (admit) or Fail (deny)")
	fs.StringVar(&a.mode, "admission-mode", string(a.cfg.DefaultMode), "admission mode when no AdmissionRule sets one: monitor or protect")
	fs.StringVar(&a.url, "admission-url", "", "URL the API server calls the webhook at (default: the service of --admission-service)")
	fs.StringVar(&a.service, "admission-service", "palisade/palisade-admission", "NAMESPACE/NAME of the webhook's Kubernetes service")
	fs.StringVar(&a.sans, "admission-san", "", "comma-separated extra DNS names or IPs for the webhook certificate")
	fs.StringVar(&a.exclude, "admission-exclude-namespaces", strings.Join(a.cfg.Registration.ExcludeNamespaces, ","), "comma-separated namespaces never sent to the webhook")
	fs.BoolVar(&a.cfg.Resolver.Insecure, "admission-insecure-registry", false, "resolve image tags over plain HTTP too (test registries)")
	fs.DurationVar(&a.cfg.Registration.Interval, "admission-resync", a.cfg.Registration.Interval, "how often the webhook registration is checked and repaired")
	fs.StringVar(&a.kubeconfig, "kubeconfig", "", "kubeconfig to register the admission webhook with (default: the pod's service account when in a cluster; none otherwise)")
	return a
}

// check validates the flags before the controller starts.
func (a *admissionFlags) check() error {
	if a.cfg.Addr == "" {
		return nil
	}
	switch a.policy {
	case "Ignore", "Fail":
		a.cfg.FailurePolicy = a.policy
	default:
		return fmt.Errorf("%w: --admission-failure-policy %q: want Ignore or Fail", errUsage, a.policy)
	}
	m, err := policy.ParseMode(a.mode)
	if err != nil || (m != policy.ModeMonitor && m != policy.ModeProtect) {
		return fmt.Errorf("%w: --admission-mode %q: want monitor or protect", errUsage, a.mode)
	}
	a.cfg.DefaultMode = m
	if a.cfg.Timeout%time.Second != 0 || a.cfg.Timeout < time.Second || a.cfg.Timeout > 30*time.Second {
		return fmt.Errorf("%w: --admission-timeout %v: want whole seconds from 1s to 30s", errUsage, a.cfg.Timeout)
	}
	reg := &a.cfg.Registration
	reg.FailurePolicy, reg.TimeoutSeconds, reg.URL = a.cfg.FailurePolicy, int32(a.cfg.Timeout/time.Second), a.url
	reg.ExcludeNamespaces = splitList(a.exclude)
	ns, name, ok := strings.Cut(a.service, "/")
	if !ok || ns == "" || name == "" {
		return fmt.Errorf("%w: --admission-service %q: want NAMESPACE/NAME", errUsage, a.service)
	}
	reg.Service.Namespace, reg.Service.Name = ns, name
	svcNames := []string{name, name + "." + ns, name + "." + ns + ".svc", name + "." + ns + ".svc.cluster.local"}
	a.cfg.DNSNames = svcNames
	for _, s := range splitList(a.sans) {
		if ip := net.ParseIP(s); ip != nil {
			a.cfg.IPs = append(a.cfg.IPs, ip)
		} else {
			a.cfg.DNSNames = append(a.cfg.DNSNames, s)
		}
	}
	if a.kubeconfig != "" {
		cl, err := webhookconfig.LoadKubeconfig(a.kubeconfig)
		if err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
		a.cfg.Kube = cl
	} else {
		cl, inCluster, err := webhookconfig.InCluster()
		if err != nil {
			return err
		}
		if inCluster {
			a.cfg.Kube = cl
		}
	}
	if a.cfg.Kube != nil {
		if err := reg.Validate(); err != nil && !strings.Contains(err.Error(), "CA bundle") {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	return nil
}

// module builds the webhook for a running controller replica; nil when
// the webhook is disabled.
func (a *admissionFlags) module(h *controller.Handle, replica string) (httpapi.Module, error) {
	if a.cfg.Addr == "" {
		return nil, nil
	}
	cfg := a.cfg
	cfg.Replica, cfg.Store, cfg.CA, cfg.Registry, cfg.Logger = replica, h.Store, h.CA, h.Registry, h.Logger
	if host, _, err := net.SplitHostPort(h.Advertise(cfg.Addr)); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			cfg.IPs = append(cfg.IPs, ip)
		}
	}
	w, err := admission.New(cfg)
	if err != nil {
		return nil, err
	}
	return w, nil
}
