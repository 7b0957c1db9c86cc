package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestAgentSourceFlags(t *testing.T) {
	base := []string{"--controller", "127.0.0.1:1", "--node", "n1", "--data-dir", t.TempDir()}
	tests := []struct {
		name  string
		args  []string
		usage bool // a usage error, not a configuration error
	}{
		{"unknown source", []string{"--source", "docker"}, true},
		{"workloads file with containerd", []string{"--source", "containerd", "--workloads", "w.yaml"}, true},
		{"netns dir with containerd", []string{"--source", "containerd", "--netns-dir", "/run/netns"}, true},
		{"relative socket", []string{"--source", "containerd", "--containerd-socket", "containerd.sock"}, false},
		{"empty containerd namespace", []string{"--source", "containerd", "--containerd-namespace", ""}, false},
		{"relative proc root", []string{"--source", "containerd", "--proc-root", "host/proc"}, false},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		err := runAgent(context.Background(), env, append(append([]string{}, base...), tc.args...))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if got := errors.Is(err, errUsage); got != tc.usage {
			t.Errorf("%s: %v: usage error %v, want %v", tc.name, err, got, tc.usage)
		}
	}
}
