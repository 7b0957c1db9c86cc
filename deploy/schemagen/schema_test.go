package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKindSuffix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1", "-v1"},
		{"apps/v1", "-apps-v1"},
		{"admissionregistration.k8s.io/v1", "-admissionregistration-v1"},
		{"policy/v1", "-policy-v1"},
		{"palisade.dev/v1", "-palisade-v1"},
		{"Example.COM/V1beta1", "-example-v1beta1"},
	} {
		if got := KindSuffix(tc.in); got != tc.want {
			t.Errorf("KindSuffix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// openapiDoc is a small OpenAPI v2 document in the API server's shape: a
// kind in two groups, a self-referring definition, an int-or-string, a
// Quantity, and an object that keeps unknown fields.
const openapiDoc = `{
  "swagger": "2.0",
  "info": {"title": "Kubernetes", "version": "1.37"},
  "definitions": {
    "io.k8s.api.x.v1.Widget": {
      "type": "object",
      "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "spec": {"$ref": "#/definitions/io.k8s.api.x.v1.Spec"}
      },
      "x-kubernetes-group-version-kind": [
        {"group": "", "version": "v1", "kind": "Widget"},
        {"group": "widgets.example.io", "version": "v2", "kind": "Widget"}
      ]
    },
    "io.k8s.api.x.v1.Spec": {
      "type": "object",
      "required": ["port"],
      "properties": {
        "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
        "size": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
        "children": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.x.v1.Spec"}},
        "free": {"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-preserve-unknown-fields": true},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
      }
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
    "io.k8s.api.x.v1.Unused": {"type": "object", "properties": {"z": {"type": "string"}}}
  }
}`

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode schema: %v\n%s", err, b)
	}
	return m
}

func TestFromOpenAPIV2(t *testing.T) {
	files, err := FromOpenAPIV2([]byte(openapiDoc), "")
	if err != nil {
		t.Fatalf("FromOpenAPIV2: %v", err)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	if len(files) != 2 || files["v1.37-standalone-strict/widget-v1.json"] == nil || files["v1.37-standalone-strict/widget-widgets-v2.json"] == nil {
		t.Fatalf("files = %v, want widget-v1.json and widget-widgets-v2.json in v1.37-standalone-strict", names)
	}
	s := decode(t, files["v1.37-standalone-strict/widget-v1.json"])
	if got := s["$ref"]; got != "#/definitions/io.k8s.api.x.v1.Widget" {
		t.Errorf("$ref = %v", got)
	}
	defs := s["definitions"].(map[string]any)
	if _, ok := defs["io.k8s.api.x.v1.Unused"]; ok {
		t.Error("an unreferenced definition was copied into the file")
	}
	for _, want := range []string{"io.k8s.api.x.v1.Widget", "io.k8s.api.x.v1.Spec", "io.k8s.apimachinery.pkg.util.intstr.IntOrString"} {
		if _, ok := defs[want]; !ok {
			t.Errorf("definition %s missing from the standalone file", want)
		}
	}
	spec := defs["io.k8s.api.x.v1.Spec"].(map[string]any)
	if spec["additionalProperties"] != false {
		t.Errorf("Spec.additionalProperties = %v, want false (strict)", spec["additionalProperties"])
	}
	props := spec["properties"].(map[string]any)
	if free := props["free"].(map[string]any); free["additionalProperties"] != nil {
		t.Errorf("free keeps unknown fields but got additionalProperties %v", free["additionalProperties"])
	}
	if labels := props["labels"].(map[string]any); labels["additionalProperties"].(map[string]any)["type"] != "string" {
		t.Errorf("labels.additionalProperties = %v, want a string schema", labels["additionalProperties"])
	}
	ios := defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"].(map[string]any)
	if ios["type"] != nil || len(ios["oneOf"].([]any)) != 2 {
		t.Errorf("IntOrString = %v, want oneOf string, integer", ios)
	}
	q := defs["io.k8s.apimachinery.pkg.api.resource.Quantity"].(map[string]any)
	if q["type"] != nil || !strings.Contains(string(mustJSON(t, q)), `"number"`) {
		t.Errorf("Quantity = %v, want oneOf string, number", q)
	}

	if _, err := FromOpenAPIV2([]byte(openapiDoc), "v9.9.9"); err != nil {
		t.Errorf("with a version: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFromOpenAPIV2Errors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"not JSON", "{", "decode OpenAPI v2 document"},
		{"no definitions", `{"info": {"version": "1.0"}}`, "no definitions"},
		{"no version", `{"definitions": {"a": {"type": "object"}}}`, "no info.version"},
		{"dangling ref", `{"info": {"version": "1"}, "definitions": {"a": {"$ref": "#/definitions/b", "x-kubernetes-group-version-kind": [{"version": "v1", "kind": "A"}]}}}`, `definition "b": referred to but not defined`},
		{"null definition", `{"info": {"version": "1"}, "definitions": {"io.k8s.apimachinery.pkg.api.resource.Quantity": null}}`, "null"},
		{"bad gvk", `{"info": {"version": "1"}, "definitions": {"a": {"x-kubernetes-group-version-kind": [{"group": "g"}]}}}`, "lacks kind or version"},
	} {
		_, err := FromOpenAPIV2([]byte(tc.doc), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

const crdDoc = `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.io}
spec:
  group: example.io
  names: {kind: Gadget, plural: gadgets}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              port: {x-kubernetes-int-or-string: true}
              note: {type: string, nullable: true}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

func TestFromCRDs(t *testing.T) {
	files, err := FromCRDs("gadgets.yaml", []byte(crdDoc))
	if err != nil {
		t.Fatalf("FromCRDs: %v", err)
	}
	b := files["example.io/gadget_v1.json"]
	if b == nil || len(files) != 1 {
		t.Fatalf("files = %v, want example.io/gadget_v1.json", files)
	}
	s := decode(t, b)
	if s["additionalProperties"] != false {
		t.Errorf("root additionalProperties = %v, want false", s["additionalProperties"])
	}
	props := s["properties"].(map[string]any)
	for _, k := range []string{"apiVersion", "kind", "metadata"} {
		if props[k] == nil {
			t.Errorf("property %s not added", k)
		}
	}
	spec := props["spec"].(map[string]any)
	sp := spec["properties"].(map[string]any)
	if port := sp["port"].(map[string]any); port["oneOf"] == nil {
		t.Errorf("port = %v, want oneOf string, integer", port)
	}
	if note := sp["note"].(map[string]any); !bytes.Contains(mustJSON(t, note["type"]), []byte(`"null"`)) {
		t.Errorf("note type = %v, want string or null", note["type"])
	}
	if extra := sp["extra"].(map[string]any); extra["additionalProperties"] != nil {
		t.Errorf("extra keeps unknown fields but got additionalProperties %v", extra["additionalProperties"])
	}
}

func TestFromCRDsErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"not a CRD", "apiVersion: v1\nkind: ConfigMap\n", "v1 ConfigMap is not an apiextensions.k8s.io/v1 CustomResourceDefinition"},
		{"no group", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x}\nspec: {names: {kind: X}}\n", `CustomResourceDefinition "x": spec.group or spec.names.kind is empty`},
		{"no schema", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x}\nspec: {group: g, names: {kind: X}, versions: [{name: v1}]}\n", `version "v1": no schema.openAPIV3Schema`},
		{"bad YAML", "a: [", "document 1"},
	} {
		_, err := FromCRDs("f.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestRunChartCRDs writes the schemas of the chart's own CRDs.
func TestRunChartCRDs(t *testing.T) {
	out := t.TempDir()
	var log bytes.Buffer
	if err := run(context.Background(), []string{"--crds", filepath.Join("..", "helm", "palisade", "crds"), "--out", out}, &log); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, kind := range []string{"securityrule", "clustersecurityrule", "admissionrule", "groupdefinition"} {
		b, err := os.ReadFile(filepath.Join(out, "palisade.dev", kind+"_v1.json"))
		if err != nil {
			t.Errorf("%s: %v", kind, err)
			continue
		}
		if s := decode(t, b); s["additionalProperties"] != false {
			t.Errorf("%s: root additionalProperties = %v, want false", kind, s["additionalProperties"])
		}
	}
	if err := run(context.Background(), []string{"--out", out}, &log); err == nil || !strings.Contains(err.Error(), "nothing to do") {
		t.Errorf("run without inputs = %v, want nothing to do", err)
	}
}

// FuzzFromCRDs: any input gives schemas or an error, never a panic.
func FuzzFromCRDs(f *testing.F) {
	f.Add([]byte(crdDoc))
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = FromCRDs("fuzz.yaml", b)
	})
}

// FuzzFromOpenAPIV2: any input gives schemas or an error, never a panic.
func FuzzFromOpenAPIV2(f *testing.F) {
	f.Add([]byte(openapiDoc))
	f.Add([]byte(`{"info": {"version": "1"}, "definitions": {"a": {"x-kubernetes-group-version-kind": 3}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = FromOpenAPIV2(b, "")
	})
}
