package scanning

import (
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/registryscan/scan"
)

func TestRegistryValidate(t *testing.T) {
	ok := Registry{Name: "hub", URL: "registry.example.com:5000", Interval: Duration(time.Hour)}
	for _, tc := range []struct {
		name string
		edit func(*Registry)
		want string // "" = valid
	}{
		{"valid", func(*Registry) {}, ""},
		{"https url", func(r *Registry) { r.URL = "https://registry.example.com" }, ""},
		{"http url", func(r *Registry) { r.URL = "http://127.0.0.1:5000/" }, ""},
		{"bad name", func(r *Registry) { r.Name = "Hub!" }, `name "Hub!"`},
		{"empty name", func(r *Registry) { r.Name = "" }, `name ""`},
		{"empty url", func(r *Registry) { r.URL = "" }, "url is empty"},
		{"ftp", func(r *Registry) { r.URL = "ftp://x" }, `scheme "ftp"`},
		{"path", func(r *Registry) { r.URL = "https://x/v2/" }, "only scheme://host"},
		{"credentials", func(r *Registry) { r.URL = "https://u:p@x" }, "only scheme://host"},
		{"bad host", func(r *Registry) { r.URL = "UPPER CASE" }, "url"},
		{"bad filter", func(r *Registry) { r.Filter = scan.Filter{Repository: "[a"} }, "pattern"},
		{"short interval", func(r *Registry) { r.Interval = Duration(time.Second) }, "below the minimum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			err := r.Validate(time.Minute)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestHost(t *testing.T) {
	for _, tc := range []struct {
		url, host string
		plain     bool
	}{
		{"127.0.0.1:5000", "127.0.0.1:5000", false},
		{"http://127.0.0.1:5000", "127.0.0.1:5000", true},
		{"https://ghcr.io", "ghcr.io", false},
	} {
		r := Registry{Name: "x", URL: tc.url}
		h, plain, err := r.Host()
		if err != nil || h != tc.host || plain != tc.plain {
			t.Errorf("Host(%q) = %q, %v, %v; want %q, %v", tc.url, h, plain, err, tc.host, tc.plain)
		}
	}
}

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		in        string
		repo, tag string
		err       bool
	}{
		{"", "", "", false},
		{"team/*", "team/*", "", false},
		{"app:v1.*", "app", "v1.*", false},
		{"*:latest", "*", "latest", false},
		{"[a", "", "", true},
		{"a:[", "", "", true},
	} {
		f, err := ParseFilter(tc.in)
		if (err != nil) != tc.err || f.Repository != tc.repo || f.Tag != tc.tag {
			t.Errorf("ParseFilter(%q) = %+v, %v; want %q %q (error %v)", tc.in, f, err, tc.repo, tc.tag, tc.err)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("90m")); err != nil || time.Duration(d) != 90*time.Minute {
		t.Fatalf("UnmarshalText(90m) = %s, %v", time.Duration(d), err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil || !strings.Contains(err.Error(), "soon") {
		t.Fatalf("UnmarshalText(soon) = %v, want an error naming the value", err)
	}
	b, _ := Duration(time.Hour).MarshalText()
	if string(b) != "1h0m0s" {
		t.Fatalf("MarshalText = %s", b)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "team/*", "app:v1.*", "[a", "a:b:c", "*:*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFilter(s)
		if err != nil {
			return
		}
		if err := fl.Validate(); err != nil {
			t.Fatalf("ParseFilter(%q) accepted %+v that does not validate: %v", s, fl, err)
		}
	})
}

func FuzzRegistryHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000", "http://x:1", "https://u:p@x/y", "ftp://a", "::", "%zz://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := Registry{Name: "x", URL: s}
		h, _, err := r.Host()
		if err == nil && h == "" {
			t.Fatalf("Host(%q) accepted an empty host", s)
		}
	})
}
