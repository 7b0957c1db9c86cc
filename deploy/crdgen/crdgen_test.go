package crdgen

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

type inner struct {
	A string `json:"a"`
}

type embedded struct {
	E string `json:"e"`
}

type sample struct {
	embedded `json:",inline"`
	Name     string            `json:"name"`
	Opt      string            `json:"opt,omitempty"`
	On       *bool             `json:"on,omitempty"`
	Count    int32             `json:"count"`
	Size     uint64            `json:"size,omitempty"`
	List     []inner           `json:"list"`
	Labels   map[string]string `json:"labels,omitempty"`
	At       time.Time         `json:"at,omitempty"`
	Raw      []byte            `json:"raw,omitempty"`
	Skipped  string            `json:"-"`
	hidden   string
	NoTag    bool
}

func TestFor(t *testing.T) {
	s, err := For(reflect.TypeFor[sample]())
	if err != nil {
		t.Fatalf("For: %v", err)
	}
	want := map[string]struct{ typ, format string }{
		"e": {"string", ""}, "name": {"string", ""}, "opt": {"string", ""}, "on": {"boolean", ""},
		"count": {"integer", "int32"}, "size": {"integer", "int64"}, "list": {"array", ""},
		"labels": {"object", ""}, "at": {"string", "date-time"}, "raw": {"string", "byte"}, "NoTag": {"boolean", ""},
	}
	for name, w := range want {
		p := s.Properties[name]
		if p == nil {
			t.Errorf("property %q missing", name)
			continue
		}
		if p.Type != w.typ || p.Format != w.format {
			t.Errorf("property %q: got type %q format %q, want %q %q", name, p.Type, p.Format, w.typ, w.format)
		}
	}
	if len(s.Properties) != len(want) {
		t.Errorf("got %d properties, want %d", len(s.Properties), len(want))
	}
	if got, want := s.Required, []string{"e", "name", "count", "NoTag"}; !slices.Equal(got, want) {
		t.Errorf("required: got %v, want %v", got, want)
	}
	if !s.Properties["list"].Nullable || s.Properties["labels"].Nullable {
		t.Errorf("nullable: list %v (want true), labels %v (want false)", s.Properties["list"].Nullable, s.Properties["labels"].Nullable)
	}
	if it := s.Properties["list"].Items; it == nil || it.Properties["a"] == nil || !slices.Equal(it.Required, []string{"a"}) {
		t.Errorf("list items: got %+v", it)
	}
	if ap := s.Properties["labels"].AdditionalProperties; ap == nil || ap.Type != "string" {
		t.Errorf("labels additionalProperties: got %+v", ap)
	}
	if m := s.Properties["size"].Minimum; m == nil || *m != 0 {
		t.Errorf("size minimum: got %v, want 0", m)
	}
}

type recursive struct {
	Next *recursive `json:"next,omitempty"`
}

func TestForUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  reflect.Type
	}{
		{"recursive", reflect.TypeFor[recursive]()},
		{"int keys", reflect.TypeFor[map[int]string]()},
		{"channel", reflect.TypeFor[struct {
			C chan int `json:"c"`
		}]()},
		{"func", reflect.TypeFor[func()]()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := For(tc.typ); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("For(%v): got %v, want ErrUnsupported", tc.typ, err)
			}
		})
	}
}

// TestCRDs checks the generated definitions are structural: every node has
// a type (or preserves unknown fields) and names match the kinds.
func TestCRDs(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	if len(files) != len(Kinds()) {
		t.Fatalf("got %d files, want %d", len(files), len(Kinds()))
	}
	for _, k := range Kinds() {
		name := k.Plural + "." + Group + ".yaml"
		var c crd
		if err := yaml.UnmarshalStrict(files[name], &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Spec.Names.Kind != k.Kind || c.Metadata.Name != k.Plural+"."+Group {
			t.Errorf("%s: got kind %q name %q", name, c.Spec.Names.Kind, c.Metadata.Name)
		}
		wantScope := map[bool]string{true: "Namespaced", false: "Cluster"}[k.Namespaced]
		if c.Spec.Scope != wantScope {
			t.Errorf("%s: scope %q, want %q", name, c.Spec.Scope, wantScope)
		}
		if len(c.Spec.Versions) != 1 || c.Spec.Versions[0].Name != "v1" {
			t.Fatalf("%s: versions %+v, want one v1", name, c.Spec.Versions)
		}
		checkStructural(t, name, "", c.Spec.Versions[0].Schema.OpenAPIV3Schema)
	}
}

func checkStructural(t *testing.T, file, path string, s *Schema) {
	t.Helper()
	if s.Type == "" && !s.PreserveUnknown {
		t.Errorf("%s: %s has no type", file, path)
	}
	for _, r := range s.Required {
		if s.Properties[r] == nil {
			t.Errorf("%s: %s requires %q, which is not a property", file, path, r)
		}
	}
	for n, p := range s.Properties {
		checkStructural(t, file, path+"."+n, p)
	}
	if s.Items != nil {
		checkStructural(t, file, path+"[]", s.Items)
	}
	if s.AdditionalProperties != nil {
		checkStructural(t, file, path+"{}", s.AdditionalProperties)
	}
}
