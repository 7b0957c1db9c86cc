package main

import (
	"context"
	"encoding/json"
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

	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/apiclient"
)

// apiOpts are the flags every verb that talks to a controller accepts.
type apiOpts struct {
	api, caFile, token, output string
}

func addAPIFlags(fs *flag.FlagSet) *apiOpts {
	o := &apiOpts{}
	fs.StringVar(&o.api, "api", "", "controller API URL (env PALISADE_API; default: from the last login)")
	fs.StringVar(&o.caFile, "ca-file", "", "cluster CA certificate (env PALISADE_CA_FILE; default: from the last login)")
	fs.StringVar(&o.token, "token", "", "session token (env PALISADE_TOKEN; default: from the last login)")
	fs.StringVar(&o.output, "o", "table", "output format: table or json")
	return o
}

// savedSession is what `palisade login` stores for later verbs.
type savedSession struct {
	API    string `json:"api"`
	CAFile string `json:"caFile,omitempty"`
	Token  string `json:"token"`
	User   string `json:"user"`
}

func sessionPath(env *cliEnv) string {
	if p := env.getenv("PALISADE_SESSION_FILE"); p != "" {
		return p
	}
	dir := env.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := env.getenv("HOME")
		if home == "" {
			home = "."
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "palisade", "session.json")
}

func loadSession(env *cliEnv) savedSession {
	var s savedSession
	if b, err := os.ReadFile(sessionPath(env)); err == nil {
		json.Unmarshal(b, &s)
	}
	return s
}

// client resolves flags, then environment, then the saved session.
func (o *apiOpts) client(env *cliEnv) (*apiclient.Client, error) {
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("%w: -o %q: want table or json", errUsage, o.output)
	}
	saved := loadSession(env)
	pick := func(flagV, envName, savedV string) string {
		if flagV != "" {
			return flagV
		}
		if v := env.getenv(envName); v != "" {
			return v
		}
		return savedV
	}
	apiURL := pick(o.api, "PALISADE_API", saved.API)
	cfg := apiclient.Config{URL: apiURL, CAFile: pick(o.caFile, "PALISADE_CA_FILE", ""), Token: pick(o.token, "PALISADE_TOKEN", "")}
	// The saved token is sent only to the saved API, or to any replica
	// whose certificate TLS verifies against the same cluster CA.
	if apiURL == saved.API && cfg.CAFile == "" {
		cfg.CAFile = saved.CAFile
	}
	if cfg.Token == "" && (apiURL == saved.API || sameFile(cfg.CAFile, saved.CAFile)) {
		cfg.Token = saved.Token
	}
	return apiclient.New(cfg)
}

func (o *apiOpts) json() bool { return o.output == "json" }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func parseFlags(fs *flag.FlagSet, env *cliEnv, args []string) error {
	fs.SetOutput(env.stderr)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func runLogin(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	o := addAPIFlags(fs)
	user := fs.String("user", "admin", "user name")
	pwFile := fs.String("password-file", "", "file holding the password (required)")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if *pwFile == "" {
		return fmt.Errorf("%w: --password-file is required", errUsage)
	}
	pw, err := readSecretFile(*pwFile)
	if err != nil {
		return err
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	c = c.WithToken("")
	var resp api.LoginResponse
	if err := c.Do(ctx, "POST", "/v1/auth/login", api.LoginRequest{Username: *user, Password: pw}, &resp); err != nil {
		return err
	}
	saved := savedSession{API: o.api, CAFile: o.caFile, Token: resp.Token, User: resp.User}
	if saved.API == "" {
		saved.API = env.getenv("PALISADE_API")
	}
	if saved.CAFile == "" {
		saved.CAFile = env.getenv("PALISADE_CA_FILE")
	}
	if saved.CAFile != "" {
		if abs, err := filepath.Abs(saved.CAFile); err == nil {
			saved.CAFile = abs
		}
	}
	if saved.API == "" {
		saved.API = loadSession(env).API
	}
	path := sessionPath(env)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	b, _ := json.MarshalIndent(saved, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	fmt.Fprintf(env.stdout, "Logged in to %s as %s (%s) until %s; session saved in %s\n",
		saved.API, resp.User, resp.Role, resp.ExpiresAt.Local().Format(time.RFC3339), path)
	return nil
}

func runCluster(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "status" {
		return fmt.Errorf("%w: palisade cluster status [-o json]", errUsage)
	}
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	o := addAPIFlags(fs)
	if err := parseFlags(fs, env, args[1:]); err != nil {
		return err
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	var cl api.Cluster
	if err := c.Do(ctx, "GET", "/v1/cluster", nil, &cl); err != nil {
		return err
	}
	if o.json() {
		return writeJSON(env.stdout, cl)
	}
	fmt.Fprintf(env.stdout, "Cluster:  %s (%s)\nLeader:   %s\nRevision: %d\n\n", cl.Name, cl.Role, cl.Leader, cl.Revision)
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tAPI ADDRESS\tRAFT ADDRESS\tSTATE")
	for _, r := range cl.Replicas {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.APIAddress, r.RaftAddress, r.State)
	}
	return tw.Flush()
}

func runUser(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: palisade user create|list|delete", errUsage)
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	o := addAPIFlags(fs)
	role := fs.String("role", "", "admin, reader, fedAdmin or fedReader (create; list: only users of this role)")
	lf := addListFlags(fs)
	pwFile := fs.String("password-file", "", "file holding the new user's password (create)")
	// Allow the user name before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		// palisade user list [TEXT] [--role R] [--limit N] [--offset N]:
		// TEXT keeps users whose name contains it.
		w, err := lf.window()
		if err != nil {
			return err
		}
		list, err := listWindow[auth.User](ctx, c, "/v1/users", setQuery(url.Values{}, "name", name, "role", *role), w)
		if err != nil {
			return err
		}
		if o.json() {
			return writeJSON(env.stdout, list)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
		for _, u := range list.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Role, u.CreatedAt.Local().Format(time.RFC3339))
		}
		return tw.Flush()
	case "create":
		if name == "" || *role == "" || *pwFile == "" {
			return fmt.Errorf("%w: palisade user create NAME --role ROLE --password-file F", errUsage)
		}
		pw, err := readSecretFile(*pwFile)
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "POST", "/v1/users", api.CreateUserRequest{Name: name, Role: auth.Role(*role), Password: pw}, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "Created user %s (%s)\n", name, *role)
		return nil
	case "delete":
		if name == "" {
			return fmt.Errorf("%w: palisade user delete NAME", errUsage)
		}
		if err := c.Do(ctx, "DELETE", "/v1/users/"+name, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "Deleted user %s\n", name)
		return nil
	}
	return errors.Join(errUsage, fmt.Errorf("unknown verb %q: want create, list or delete", verb))
}

// sameFile reports whether two paths name files with identical contents.
func sameFile(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
