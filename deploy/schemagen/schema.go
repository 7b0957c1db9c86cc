package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Definitions whose OpenAPI v2 type is narrower than what the API server
// accepts: a Quantity is a string or a number ("cpu: 1").
var numberOrString = map[string]bool{
	"io.k8s.apimachinery.pkg.api.resource.Quantity": true,
}

const refPrefix = "#/definitions/"

// KindSuffix is kubeconform's {{.KindSuffix}} for an apiVersion: "-" and
// the group's first DNS label, then "-" and the version ("apps/v1" ->
// "-apps-v1"); for the core group only the version ("v1" -> "-v1").
func KindSuffix(apiVersion string) string {
	group, version, ok := strings.Cut(apiVersion, "/")
	label, _, _ := strings.Cut(group, ".")
	s := "-" + strings.ToLower(label)
	if ok {
		s += "-" + strings.ToLower(version)
	}
	return s
}

type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

func (g gvk) apiVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

// FromOpenAPIV2 returns a strict, standalone schema for each kind in an
// OpenAPI v2 document, keyed by its path in the schema folder.
// kubeVersion names the folder ("v1.37.2"); empty takes info.version.
func FromOpenAPIV2(doc []byte, kubeVersion string) (map[string][]byte, error) {
	var d struct {
		Info struct {
			Version string `json:"version"`
		} `json:"info"`
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("decode OpenAPI v2 document: %w", err)
	}
	if len(d.Definitions) == 0 {
		return nil, errors.New("schemagen: the OpenAPI document has no definitions")
	}
	if kubeVersion == "" {
		kubeVersion = d.Info.Version
	}
	if kubeVersion == "" {
		return nil, errors.New("schemagen: the OpenAPI document has no info.version; give --kube-version")
	}
	if !strings.HasPrefix(kubeVersion, "v") {
		kubeVersion = "v" + kubeVersion
	}
	// Make every definition strict once; files then copy what they use.
	defs := make(map[string]any, len(d.Definitions))
	for name, s := range d.Definitions {
		if s == nil {
			return nil, fmt.Errorf("definition %q: null", name)
		}
		if numberOrString[name] {
			delete(s, "type")
			delete(s, "format")
			s["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}
		}
		defs[name] = tighten(s)
	}
	dir := kubeVersion + "-standalone-strict"
	files := map[string][]byte{}
	names := make([]string, 0, len(d.Definitions))
	for name := range d.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		raw, ok := d.Definitions[name]["x-kubernetes-group-version-kind"]
		if !ok {
			continue
		}
		b, err := json.Marshal(raw)
		if err != nil {
			return nil, fmt.Errorf("definition %s: %w", name, err)
		}
		var kinds []gvk
		if err := json.Unmarshal(b, &kinds); err != nil {
			return nil, fmt.Errorf("definition %s: x-kubernetes-group-version-kind: %w", name, err)
		}
		used, err := closure(defs, name)
		if err != nil {
			return nil, err
		}
		for _, k := range kinds {
			if k.Kind == "" || k.Version == "" {
				return nil, fmt.Errorf("definition %s: group-version-kind %+v lacks kind or version", name, k)
			}
			schema := map[string]any{
				"$schema":     "http://json-schema.org/draft-07/schema#",
				"$ref":        refPrefix + name,
				"definitions": used,
			}
			b, err := marshal(schema)
			if err != nil {
				return nil, fmt.Errorf("definition %s: %w", name, err)
			}
			files[path.Join(dir, strings.ToLower(k.Kind)+KindSuffix(k.apiVersion())+".json")] = b
		}
	}
	return files, nil
}

// closure returns the definitions root refers to, itself included.
func closure(defs map[string]any, root string) (map[string]any, error) {
	out := map[string]any{}
	todo := []string{root}
	for len(todo) > 0 {
		name := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if _, done := out[name]; done {
			continue
		}
		s, ok := defs[name]
		if !ok {
			return nil, fmt.Errorf("definition %q: referred to but not defined", name)
		}
		out[name] = s
		for _, r := range refs(s, nil) {
			todo = append(todo, r)
		}
	}
	return out, nil
}

// refs appends the definition names node refers to.
func refs(node any, acc []string) []string {
	switch n := node.(type) {
	case map[string]any:
		if r, ok := n["$ref"].(string); ok && strings.HasPrefix(r, refPrefix) {
			acc = append(acc, strings.TrimPrefix(r, refPrefix))
		}
		for _, v := range n {
			acc = refs(v, acc)
		}
	case []any:
		for _, v := range n {
			acc = refs(v, acc)
		}
	}
	return acc
}

// tighten makes a schema node strict, in place, and returns it: an object
// that lists its properties allows no others (unless it preserves unknown
// fields), int-or-string fields take either, and nullable fields take null.
func tighten(node any) any {
	n, ok := node.(map[string]any)
	if !ok {
		return node
	}
	if f, _ := n["format"].(string); f == "int-or-string" || n["x-kubernetes-int-or-string"] == true {
		delete(n, "type")
		delete(n, "format")
		n["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
	}
	if props, ok := n["properties"].(map[string]any); ok {
		for k, v := range props {
			props[k] = tighten(v)
		}
		if _, set := n["additionalProperties"]; !set && n["x-kubernetes-preserve-unknown-fields"] != true {
			n["additionalProperties"] = false
		}
	}
	if ap, ok := n["additionalProperties"].(map[string]any); ok {
		n["additionalProperties"] = tighten(ap)
	}
	if items, ok := n["items"]; ok {
		n["items"] = tighten(items)
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := n[k].([]any); ok {
			for i, v := range list {
				list[i] = tighten(v)
			}
		}
	}
	if not, ok := n["not"]; ok {
		n["not"] = tighten(not)
	}
	if n["nullable"] == true {
		delete(n, "nullable")
		if t, ok := n["type"].(string); ok {
			n["type"] = []any{t, "null"}
		}
	}
	return n
}

// crd is the part of a CustomResourceDefinition schemagen reads.
type crd struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// FromCRDs returns a strict schema for each version of each
// CustomResourceDefinition in a YAML or JSON stream, keyed by
// GROUP/KIND_VERSION.json. Other objects in the stream are errors.
func FromCRDs(source string, stream []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	for i, doc := range splitYAML(stream) {
		var c crd
		if err := yaml.Unmarshal(doc, &c); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i+1, err)
		}
		if c.Kind == "" && c.APIVersion == "" {
			continue // an empty document
		}
		if c.Kind != "CustomResourceDefinition" || c.APIVersion != "apiextensions.k8s.io/v1" {
			return nil, fmt.Errorf("%s: document %d: %s %s is not an apiextensions.k8s.io/v1 CustomResourceDefinition", source, i+1, c.APIVersion, c.Kind)
		}
		if c.Spec.Group == "" || c.Spec.Names.Kind == "" {
			return nil, fmt.Errorf("%s: CustomResourceDefinition %q: spec.group or spec.names.kind is empty", source, c.Metadata.Name)
		}
		for _, v := range c.Spec.Versions {
			s := v.Schema.OpenAPIV3Schema
			if s == nil {
				return nil, fmt.Errorf("%s: CustomResourceDefinition %q version %q: no schema.openAPIV3Schema", source, c.Metadata.Name, v.Name)
			}
			props, _ := s["properties"].(map[string]any)
			if props == nil {
				props = map[string]any{}
				s["properties"] = props
			}
			// Every object has these, whether the CRD lists them or not.
			for _, k := range []string{"apiVersion", "kind"} {
				if _, ok := props[k]; !ok {
					props[k] = map[string]any{"type": "string"}
				}
			}
			if _, ok := props["metadata"]; !ok {
				props["metadata"] = map[string]any{"type": "object"}
			}
			tighten(s)
			s["$schema"] = "http://json-schema.org/draft-07/schema#"
			b, err := marshal(s)
			if err != nil {
				return nil, fmt.Errorf("%s: CustomResourceDefinition %q: %w", source, c.Metadata.Name, err)
			}
			files[path.Join(c.Spec.Group, strings.ToLower(c.Spec.Names.Kind)+"_"+v.Name+".json")] = b
		}
	}
	return files, nil
}

// FromCRDDir reads every CRD manifest in dir (FromCRDs).
func FromCRDDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read CRD folder: %w", err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || ext != ".yaml" && ext != ".yml" && ext != ".json" {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read CRD: %w", err)
		}
		got, err := FromCRDs(p, b)
		if err != nil {
			return nil, err
		}
		for k, v := range got {
			files[k] = v
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no CustomResourceDefinitions", dir)
	}
	return files, nil
}

// splitYAML splits a stream at "---" document separators.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

func marshal(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Write writes files (relative paths with forward slashes) under dir.
func Write(dir string, files map[string][]byte) error {
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write schemas: %w", err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("write schemas: %w", err)
		}
	}
	return nil
}
