package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/remote/scanning"
)

func TestCredentialFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		want  *scanning.Credentials
		err   string
	}{
		{"none", nil, "", nil, ""},
		{"basic", []string{"--username", "robot", "--password-stdin"}, "s3cret\n", &scanning.Credentials{Username: "robot", Password: "s3cret"}, ""},
		{"bearer", []string{"--token-stdin"}, "tok\r\n", &scanning.Credentials{Token: "tok"}, ""},
		{"password without user", []string{"--password-stdin"}, "x", nil, "--username and --password-stdin"},
		{"user without password", []string{"--username", "robot"}, "", nil, "--username and --password-stdin"},
		{"both kinds", []string{"--username", "robot", "--password-stdin", "--token-stdin"}, "x", nil, "not both"},
		{"empty stdin", []string{"--token-stdin"}, "\n", nil, "stdin is empty"},
		{"colon in user", []string{"--username", "a:b", "--password-stdin"}, "x", nil, "username"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cf := addCredentialFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := cf.read(strings.NewReader(tc.stdin))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errUsage) {
					t.Fatalf("read: %v, want a usage error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Fatalf("read = %+v, want %+v", got, tc.want)
			}
		})
	}
}
