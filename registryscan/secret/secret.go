// Package secret finds credentials left in image files: private keys, cloud
// access keys, API tokens, and passwords in well-known configuration files.
// A finding names the file, the line and the rule, never the secret itself.
package secret

import (
	"bytes"
	"path"
	"regexp"
	"strings"
)

// Finding is one secret found in one file.
type Finding struct {
	// Rule is the identifier of the rule that matched, e.g. "aws-access-key-id".
	Rule string `json:"rule"`
	// Title says in words what was found.
	Title string `json:"title"`
	// Severity is CRITICAL, HIGH, MEDIUM or LOW.
	Severity string `json:"severity"`
	// Path is the file, relative to the image root.
	Path string `json:"path"`
	// Line is the 1-based line of the match.
	Line int `json:"line"`
	// Layer is the digest of the layer holding the file.
	Layer string `json:"layer,omitempty"`
}

// rule matches content. files, when set, limits it to files with one of
// these base names; keyword (or any of keywords) is a cheap byte test done
// before the regexp.
type rule struct {
	id, title, severity string
	keyword             string
	keywords            []string
	files               []string
	re                  *regexp.Regexp
}

// Scanner holds the compiled rules. It is safe for concurrent use.
type Scanner struct {
	rules []rule
	// skip holds directories of documentation and data that never carry
	// credentials worth reporting; skipping them keeps a scan fast.
	skip []string
}

// New compiles the rule set.
func New() *Scanner {
	return &Scanner{skip: []string{"usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/",
		"usr/share/zoneinfo/", "usr/share/i18n/", "usr/share/common-licenses/", "usr/include/", "var/lib/dpkg/info/"},
		rules: []rule{
			{id: "private-key", title: "private key", severity: "HIGH", keyword: "PRIVATE KEY",
				re: regexp.MustCompile(`-----BEGIN[ A-Z0-9]*PRIVATE KEY( BLOCK)?-----\s*[A-Za-z0-9+/=]{16}`)},
			{id: "aws-access-key-id", title: "AWS access key ID", severity: "CRITICAL",
				keywords: []string{"AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"},
				re:       regexp.MustCompile(`\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}\b`)},
			{id: "aws-secret-access-key", title: "AWS secret access key", severity: "CRITICAL", keywords: []string{"ecret", "ECRET"},
				re: regexp.MustCompile(`(?i)aws_?secret_?(access_?)?key["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}\b`)},
			{id: "github-token", title: "GitHub token", severity: "CRITICAL",
				keywords: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"},
				re:       regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{82})\b`)},
			{id: "gitlab-token", title: "GitLab personal access token", severity: "CRITICAL", keyword: "glpat-",
				re: regexp.MustCompile(`\bglpat-[A-Za-z0-9_\-]{20}\b`)},
			{id: "slack-token", title: "Slack token", severity: "HIGH", keyword: "xox",
				re: regexp.MustCompile(`\bxox[baprs]-[0-9A-Za-z]{10,48}(-[0-9A-Za-z]{4,48})*`)},
			{id: "stripe-secret-key", title: "Stripe secret key", severity: "CRITICAL", keyword: "_live_",
				re: regexp.MustCompile(`\b[sr]k_live_[0-9A-Za-z]{24,99}\b`)},
			{id: "gcp-service-account", title: "Google Cloud service account key", severity: "CRITICAL", keyword: "service_account",
				re: regexp.MustCompile(`"type"\s*:\s*"service_account"`)},
			{id: "netrc-password", title: "password in .netrc", severity: "HIGH", keyword: "password",
				files: []string{".netrc", "_netrc"}, re: regexp.MustCompile(`\bpassword\s+\S+`)},
			{id: "git-credentials", title: "password in git credential store", severity: "HIGH", keyword: "@",
				files: []string{".git-credentials"}, re: regexp.MustCompile(`https?://[^:/\s]+:[^@\s]+@`)},
			{id: "pgpass-password", title: "password in .pgpass", severity: "HIGH", keyword: ":",
				files: []string{".pgpass"}, re: regexp.MustCompile(`(?m)^[^:#\s]*:[^:]*:[^:]*:[^:]*:\S+`)},
			{id: "docker-registry-auth", title: "registry credentials in Docker config", severity: "HIGH", keyword: "auth",
				files: []string{"config.json", ".dockercfg"}, re: regexp.MustCompile(`"(auth|identitytoken)"\s*:\s*"[A-Za-z0-9+/=._-]{8,}"`)},
			{id: "npm-token", title: "npm registry token", severity: "HIGH", keyword: "_auth",
				files: []string{".npmrc"}, re: regexp.MustCompile(`_auth(Token)?\s*=\s*\S{8,}`)},
			{id: "pypi-password", title: "password in .pypirc", severity: "HIGH", keyword: "password",
				files: []string{".pypirc"}, re: regexp.MustCompile(`(?m)^\s*password\s*[=:]\s*\S+`)},
			{id: "shadow-password-hash", title: "password hash in shadow file", severity: "MEDIUM", keyword: "$",
				files: []string{"shadow"}, re: regexp.MustCompile(`(?m)^[^:\n]+:\$(1|2[abxy]?|5|6|y|gy|7)\$[^:\n]+:`)},
		}}
}

// Wants reports whether the file at p (root-relative) of size bytes is
// worth scanning.
func (s *Scanner) Wants(p string, size int64) bool {
	if size == 0 || size > 1<<20 {
		return false
	}
	for _, d := range s.skip {
		if strings.HasPrefix(p, d) {
			return false
		}
	}
	return true
}

// Scan returns the findings in the file at p with content data. Binary
// files (a NUL byte in the first 8 KiB) are skipped.
func (s *Scanner) Scan(p string, data []byte) []Finding {
	head := data
	if len(head) > 8192 {
		head = head[:8192]
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return nil
	}
	base := path.Base(p)
	var out []Finding
	for i := range s.rules {
		r := &s.rules[i]
		if len(r.files) > 0 && !contains(r.files, base) {
			continue
		}
		if r.id == "shadow-password-hash" && p != "etc/shadow" {
			continue
		}
		if !r.mentioned(data) {
			continue
		}
		loc := r.re.FindIndex(data)
		if loc == nil {
			continue
		}
		out = append(out, Finding{Rule: r.id, Title: r.title, Severity: r.severity, Path: p,
			Line: 1 + bytes.Count(data[:loc[0]], []byte{'\n'})})
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *rule) mentioned(data []byte) bool {
	if r.keyword != "" {
		return bytes.Contains(data, []byte(r.keyword))
	}
	for _, k := range r.keywords {
		if bytes.Contains(data, []byte(k)) {
			return true
		}
	}
	return false
}
