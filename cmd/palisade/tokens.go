package main

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// runTokenCreate is "palisade KIND token create [--ttl 1h] [-o json]": it
// posts req(ttl) to path and prints the token that token reads from the
// answer, or the whole answer with -o json.
func runTokenCreate[Out any](ctx context.Context, env *cliEnv, args []string, kind, path string, req func(ttl string) any, token func(Out) string) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("%w: palisade %s token create [--ttl 1h] [-o json]", errUsage, kind)
	}
	fs := flag.NewFlagSet(kind+" token create", flag.ContinueOnError)
	o := addAPIFlags(fs)
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := parseFlags(fs, env, args[1:]); err != nil {
		return err
	}
	c, err := o.client(env)
	if err != nil {
		return err
	}
	var out Out
	if err := c.Do(ctx, "POST", path, req(ttl.String()), &out); err != nil {
		return err
	}
	if o.json() {
		return writeJSON(env.stdout, out)
	}
	fmt.Fprintln(env.stdout, token(out))
	return nil
}
