// Package crdgen builds the CustomResourceDefinitions of the palisade.dev/v1
// policy-as-code kinds from their Go types in policy/code, so that the
// schemas the API server enforces are the ones the decoder reads. It
// reflects over the types: a struct becomes an object with one property per
// JSON field, a field without omitempty is required (slices, maps and
// pointers are nullable instead), slices become arrays and string-keyed maps
// objects with additionalProperties.
package crdgen

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/palisade-sec/palisade/policy/code"
)

// ErrUnsupported is returned for a Go type with no OpenAPI equivalent.
var ErrUnsupported = errors.New("crdgen: unsupported type")

// Schema is the subset of a structural OpenAPI v3 schema the kinds need.
// sigs.k8s.io/yaml writes keys sorted, so the output is stable.
type Schema struct {
	Description          string             `json:"description,omitempty"`
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	Nullable             bool               `json:"nullable,omitempty"`
	Minimum              *int64             `json:"minimum,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields,omitempty"`
}

// For returns the schema of a Go type as encoding/json encodes it.
func For(t reflect.Type) (*Schema, error) {
	return schemaOf(t, nil)
}

func schemaOf(t reflect.Type, seen []reflect.Type) (*Schema, error) {
	for _, s := range seen {
		if s == t {
			return nil, fmt.Errorf("%w: %v is recursive", ErrUnsupported, t)
		}
	}
	if t == reflect.TypeFor[time.Time]() {
		return &Schema{Type: "string", Format: "date-time"}, nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), seen)
	case reflect.String:
		return &Schema{Type: "string"}, nil
	case reflect.Bool:
		return &Schema{Type: "boolean"}, nil
	case reflect.Int, reflect.Int64:
		return &Schema{Type: "integer", Format: "int64"}, nil
	case reflect.Int8, reflect.Int16, reflect.Int32:
		return &Schema{Type: "integer", Format: "int32"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		zero := int64(0)
		return &Schema{Type: "integer", Format: "int64", Minimum: &zero}, nil
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: "number"}, nil
	case reflect.Interface:
		return &Schema{PreserveUnknown: true}, nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &Schema{Type: "string", Format: "byte"}, nil
		}
		items, err := schemaOf(t.Elem(), append(seen, t))
		if err != nil {
			return nil, err
		}
		return &Schema{Type: "array", Items: items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%w: %v has non-string keys", ErrUnsupported, t)
		}
		v, err := schemaOf(t.Elem(), append(seen, t))
		if err != nil {
			return nil, err
		}
		return &Schema{Type: "object", AdditionalProperties: v}, nil
	case reflect.Struct:
		s := &Schema{Type: "object", Properties: map[string]*Schema{}}
		if err := addFields(s, t, append(seen, t)); err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: %v (%v)", ErrUnsupported, t, t.Kind())
}

// addFields adds t's JSON fields to s, flattening embedded structs the way
// encoding/json does.
func addFields(s *Schema, t reflect.Type, seen []reflect.Type) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if err := addFields(s, ft, seen); err != nil {
					return err
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		p, err := schemaOf(f.Type, seen)
		if err != nil {
			return fmt.Errorf("%v.%s: %w", t, f.Name, err)
		}
		s.Properties[name] = p
		if strings.Contains(","+opts+",", ",omitempty,") {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			// encoding/json writes null for a nil value.
			p.Nullable = true
		default:
			s.Required = append(s.Required, name)
		}
	}
	return nil
}

// Kind describes one custom resource kind.
type Kind struct {
	// Kind is the resource's kind, for example SecurityRule.
	Kind string
	// Plural is the resource's plural name, for example securityrules.
	Plural string
	// ShortNames are kubectl's abbreviations.
	ShortNames []string
	// Namespaced says whether objects live in a namespace.
	Namespaced bool
	// Spec is the Go type of the kind's spec.
	Spec reflect.Type
	// Description says what the kind is for.
	Description string
	// Columns are extra kubectl get columns.
	Columns []Column
}

// Column is one additional printer column.
type Column struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	JSONPath string `json:"jsonPath"`
}

// Group is the API group of every kind.
const Group = "palisade.dev"

// Kinds returns the policy-as-code kinds of policy/code.
func Kinds() []Kind {
	mode := []Column{{Name: "Group", Type: "string", JSONPath: ".spec.target.selector.name"}, {Name: "Mode", Type: "string", JSONPath: ".spec.target.mode"}}
	return []Kind{
		{Kind: code.KindSecurityRule, Plural: "securityrules", ShortNames: []string{"psr"}, Namespaced: true,
			Spec:        reflect.TypeFor[code.SecurityRuleSpec](),
			Description: "SecurityRule is the network, process and file policy of one group, confined to a namespace.", Columns: mode},
		{Kind: code.KindClusterSecurityRule, Plural: "clustersecurityrules", ShortNames: []string{"pcsr"},
			Spec:        reflect.TypeFor[code.SecurityRuleSpec](),
			Description: "ClusterSecurityRule is the network, process and file policy of one group, across namespaces.", Columns: mode},
		{Kind: code.KindAdmissionRule, Plural: "admissionrules", ShortNames: []string{"par"},
			Spec:        reflect.TypeFor[code.AdmissionRuleSpec](),
			Description: "AdmissionRule holds admission control settings and rules.",
			Columns:     []Column{{Name: "Mode", Type: "string", JSONPath: ".spec.mode"}}},
		{Kind: code.KindGroupDefinition, Plural: "groupdefinitions", ShortNames: []string{"pgd"},
			Spec:        reflect.TypeFor[code.GroupDefinitionSpec](),
			Description: "GroupDefinition defines a group of workloads without rules."},
	}
}

// The CustomResourceDefinition, as far as this package writes it.
type crd struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Metadata   crdMeta `json:"metadata"`
	Spec       crdSpec `json:"spec"`
}

type crdMeta struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

type crdSpec struct {
	Group    string       `json:"group"`
	Names    crdNames     `json:"names"`
	Scope    string       `json:"scope"`
	Versions []crdVersion `json:"versions"`
}

type crdNames struct {
	Kind       string   `json:"kind"`
	ListKind   string   `json:"listKind"`
	Plural     string   `json:"plural"`
	Singular   string   `json:"singular"`
	ShortNames []string `json:"shortNames,omitempty"`
	Categories []string `json:"categories"`
}

type crdVersion struct {
	Name                     string    `json:"name"`
	Served                   bool      `json:"served"`
	Storage                  bool      `json:"storage"`
	Schema                   crdSchema `json:"schema"`
	AdditionalPrinterColumns []Column  `json:"additionalPrinterColumns"`
}

type crdSchema struct {
	OpenAPIV3Schema *Schema `json:"openAPIV3Schema"`
}

// CRD returns the CustomResourceDefinition of k as YAML.
func CRD(k Kind) ([]byte, error) {
	spec, err := For(k.Spec)
	if err != nil {
		return nil, fmt.Errorf("%s spec: %w", k.Kind, err)
	}
	root := &Schema{
		Description: k.Description,
		Type:        "object",
		Properties: map[string]*Schema{
			"apiVersion": {Type: "string", Description: "APIVersion is " + code.APIVersion + "."},
			"kind":       {Type: "string", Description: "Kind is " + k.Kind + "."},
			"metadata":   {Type: "object"},
			"spec":       spec,
		},
		Required: []string{"spec"},
	}
	scope := "Cluster"
	if k.Namespaced {
		scope = "Namespaced"
	}
	_, version, _ := strings.Cut(code.APIVersion, "/")
	cols := append([]Column(nil), k.Columns...)
	cols = append(cols, Column{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"})
	c := crd{
		APIVersion: "apiextensions.k8s.io/v1",
		Kind:       "CustomResourceDefinition",
		Metadata: crdMeta{
			Name:   k.Plural + "." + Group,
			Labels: map[string]string{"app.kubernetes.io/part-of": "palisade"},
		},
		Spec: crdSpec{
			Group: Group,
			Names: crdNames{Kind: k.Kind, ListKind: k.Kind + "List", Plural: k.Plural,
				Singular: strings.ToLower(k.Kind), ShortNames: k.ShortNames, Categories: []string{"palisade"}},
			Scope:    scope,
			Versions: []crdVersion{{Name: version, Served: true, Storage: true, Schema: crdSchema{root}, AdditionalPrinterColumns: cols}},
		},
	}
	y, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%s: marshal: %w", k.Kind, err)
	}
	return append([]byte(header), y...), nil
}

// header starts every generated file.
const header = "# Code generated by deploy/crdgen from the types in policy/code. DO NOT EDIT.\n"

// Files returns every CRD keyed by its file name (PLURAL.palisade.dev.yaml).
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, k := range Kinds() {
		b, err := CRD(k)
		if err != nil {
			return nil, err
		}
		out[k.Plural+"."+Group+".yaml"] = b
	}
	return out, nil
}
