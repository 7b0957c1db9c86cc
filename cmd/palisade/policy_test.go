package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join("..", "..", "policy", "code", "testdata", "policy.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: palisade.dev/v1
kind: ClusterSecurityRule
metadata: {name: web}
spec:
  target: {selector: {name: web, criteria: [{key: app, op: "=", value: web}]}}
  egress:
  - {name: web-to-db, selector: {name: db}, ports: tcp/99999, action: allow}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: palisade.dev/v1\nkind: Nope\nmetadata: {name: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args       []string
		code       int
		wantOut    string
		wantStderr []string
	}{
		{[]string{"policy", "validate", "-f", good}, 0, "valid (5 groups, 4 network, 2 process, 1 file, 3 admission rules)", nil},
		{[]string{"policy", "validate", "-f", bad}, 1, "", []string{`network rule "web-to-db": ports: "tcp/99999" is out of range`, `network rule "web-to-db": to: unknown group "db"`}},
		{[]string{"policy", "validate", "-f", broken}, 1, "", []string{`unknown kind "Nope"`}},
		{[]string{"policy", "validate", "-f", filepath.Join(dir, "missing.yaml")}, 1, "", []string{"no such file"}},
		{[]string{"policy", "validate"}, 2, "", []string{"policy validate -f FILE"}},
		{[]string{"policy", "frobnicate"}, 2, "", []string{`unknown policy subcommand "frobnicate"`}},
		{[]string{"policy", "apply"}, 2, "", []string{"-f FILE is required"}},
		{[]string{"policy", "import-neuvector", "--dry-run"}, 2, "", []string{"-f FILE is required"}},
		{[]string{"policy", "export", "-o", "json"}, 2, "", []string{"export writes yaml"}},
		{[]string{"mode", "set", "web"}, 2, "", []string{"mode set GROUP|--all"}},
		{[]string{"mode", "set", "--all", "web", "protect"}, 2, "", []string{"mode set GROUP|--all"}},
		{[]string{"mode", "set", "web", "protect", "--bogus"}, 2, "", []string{"flag provided but not defined"}},
		{[]string{"group"}, 2, "", []string{"group list"}},
		{[]string{"rule", "list", "extra"}, 2, "", []string{"unexpected arguments"}},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), &cliEnv{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, tt.args)
		if code != tt.code {
			t.Errorf("%v: exit %d, want %d (stderr %s)", tt.args, code, tt.code, errb.String())
		}
		if !strings.Contains(out.String(), tt.wantOut) {
			t.Errorf("%v: stdout %q, want containing %q", tt.args, out.String(), tt.wantOut)
		}
		for _, w := range tt.wantStderr {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%v: stderr %q, want containing %q", tt.args, errb.String(), w)
			}
		}
	}
}
