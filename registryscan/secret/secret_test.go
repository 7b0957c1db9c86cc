package secret

import (
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	// Fake credentials in the shapes the rules look for.
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"
	tests := []struct {
		path, body string
		want       []string // rule IDs
		wantLine   int
	}{
		{"root/.ssh/id_ed25519", key, []string{"private-key"}, 1},
		{"app/config.env", "A=1\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", []string{"aws-access-key-id"}, 2},
		{"app/.env", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", []string{"aws-secret-access-key"}, 1},
		{"app/ci.sh", "export TOKEN=ghp_" + strings.Repeat("a1B2", 9) + "\n", []string{"github-token"}, 1},
		{"root/.netrc", "machine example.com login me password hunter2\n", []string{"netrc-password"}, 1},
		{"root/.git-credentials", "https://me:s3cret@example.com\n", []string{"git-credentials"}, 1},
		{"root/.docker/config.json", `{"auths":{"r.example.com":{"auth":"bWU6czNjcmV0"}}}`, []string{"docker-registry-auth"}, 1},
		{"etc/shadow", "root:*:19000:0:99999:7:::\nme:$6$salt$hash:19000::::::\n", []string{"shadow-password-hash"}, 2},
		{"etc/shadow", "root:*:19000:0:99999:7:::\n", nil, 0},
		{"app/readme.txt", "password: see the vault\n", nil, 0},
		{"usr/share/doc/x/example", "AKIAIOSFODNN7EXAMPLE", nil, 0},
		{"app/bin", "\x00\x01AKIAIOSFODNN7EXAMPLE", nil, 0},
	}
	s := New()
	for _, tt := range tests {
		var got []Finding
		if s.Wants(tt.path, int64(len(tt.body))) {
			got = s.Scan(tt.path, []byte(tt.body))
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %+v, want rules %v", tt.path, got, tt.want)
			continue
		}
		for i, f := range got {
			if f.Rule != tt.want[i] || f.Line != tt.wantLine || f.Path != tt.path {
				t.Errorf("%s: finding %+v, want rule %s line %d", tt.path, f, tt.want[i], tt.wantLine)
			}
			if strings.Contains(f.Title, "AKIA") || strings.Contains(f.Title, "hunter2") {
				t.Errorf("%s: finding leaks the secret: %+v", tt.path, f)
			}
		}
	}
}

func FuzzScan(f *testing.F) {
	f.Add("root/.netrc", []byte("password x"))
	f.Add("etc/shadow", []byte("a:$6$x:1"))
	f.Fuzz(func(t *testing.T, p string, data []byte) {
		for _, fd := range New().Scan(p, data) {
			if fd.Line < 1 {
				t.Fatalf("line %d", fd.Line)
			}
		}
	})
}
