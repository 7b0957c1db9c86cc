package apidoc

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Schema is the subset of JSON Schema (as OpenAPI 3.1 uses it) that the
// document is written in and that Validate checks.
type Schema struct {
	Ref         string             `json:"$ref,omitempty"`
	Type        Types              `json:"type,omitempty"`
	Format      string             `json:"format,omitempty"`
	Description string             `json:"description,omitempty"`
	Properties  map[string]*Schema `json:"properties,omitempty"`
	Required    []string           `json:"required,omitempty"`
	// Additional is additionalProperties: nil allows any, Closed forbids
	// any, otherwise every other property must match Additional.Schema.
	Additional *Additional `json:"additionalProperties,omitempty"`
	Items      *Schema     `json:"items,omitempty"`
	AnyOf      []*Schema   `json:"anyOf,omitempty"`
	Enum       []any       `json:"enum,omitempty"`
	Minimum    *float64    `json:"minimum,omitempty"`
}

// Types is a schema's "type": one name, or several (["array", "null"]).
type Types []string

// MarshalJSON writes one type as a string, several as an array.
func (t Types) MarshalJSON() ([]byte, error) {
	if len(t) == 1 {
		return json.Marshal(t[0])
	}
	return json.Marshal([]string(t))
}

// UnmarshalJSON reads a string or an array of strings.
func (t *Types) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*t = Types{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("apidoc: type must be a string or an array of strings: %w", err)
	}
	*t = many
	return nil
}

// Additional is a schema's additionalProperties: false, or a schema.
type Additional struct {
	Closed bool
	Schema *Schema
}

// MarshalJSON writes false or the schema.
func (a Additional) MarshalJSON() ([]byte, error) {
	if a.Closed || a.Schema == nil {
		return []byte("false"), nil
	}
	return json.Marshal(a.Schema)
}

// UnmarshalJSON reads a boolean or a schema.
func (a *Additional) UnmarshalJSON(b []byte) error {
	var v bool
	if err := json.Unmarshal(b, &v); err == nil {
		if v {
			a.Schema = &Schema{}
		} else {
			a.Closed = true
		}
		return nil
	}
	a.Schema = &Schema{}
	return json.Unmarshal(b, a.Schema)
}

// Generator derives schemas from Go types, by their encoding/json
// encoding, and collects named struct types as components.
type Generator struct {
	// Components are the named schemas referenced with
	// "#/components/schemas/NAME".
	Components map[string]*Schema
	names      map[reflect.Type]string
}

// NewGenerator returns an empty Generator.
func NewGenerator() *Generator {
	return &Generator{Components: map[string]*Schema{}, names: map[reflect.Type]string{}}
}

var (
	timeType          = reflect.TypeFor[time.Time]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// Of returns the schema of v's JSON encoding.
func (g *Generator) Of(v any) *Schema {
	if v == nil {
		return &Schema{}
	}
	return g.schema(reflect.TypeOf(v))
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface))
}

func (g *Generator) schema(t reflect.Type) *Schema {
	switch {
	case t == timeType:
		return &Schema{Type: Types{"string"}, Format: "date-time"}
	case t == rawMessageType:
		return &Schema{}
	case t.Kind() == reflect.Pointer:
		return nullable(g.schema(t.Elem()))
	case implements(t, jsonMarshalerType):
		// Its own encoding: nothing is known about its shape.
		return &Schema{Description: "encoded by " + t.String()}
	case implements(t, textMarshalerType):
		return &Schema{Type: Types{"string"}}
	}
	switch t.Kind() {
	case reflect.Bool:
		return &Schema{Type: Types{"boolean"}}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &Schema{Type: Types{"integer"}}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		zero := 0.0
		return &Schema{Type: Types{"integer"}, Minimum: &zero}
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: Types{"number"}}
	case reflect.String:
		return &Schema{Type: Types{"string"}}
	case reflect.Interface:
		return &Schema{}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !implements(t.Elem(), jsonMarshalerType) && !implements(t.Elem(), textMarshalerType) {
			return &Schema{Type: Types{"string", "null"}, Format: "byte"}
		}
		return &Schema{Type: Types{"array", "null"}, Items: g.schema(t.Elem())}
	case reflect.Array:
		return &Schema{Type: Types{"array"}, Items: g.schema(t.Elem())}
	case reflect.Map:
		return &Schema{Type: Types{"object", "null"}, Additional: &Additional{Schema: g.schema(t.Elem())}}
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t)
		}
		name, ok := g.names[t]
		if !ok {
			name = g.nameFor(t)
			g.names[t] = name
			g.Components[name] = &Schema{} // placeholder for recursive types
			g.Components[name] = g.object(t)
		}
		return &Schema{Ref: "#/components/schemas/" + name}
	}
	// Channels, functions: encoding/json cannot encode them.
	return &Schema{Description: "not encodable: " + t.String()}
}

// nonNull drops "null" from a schema's types, for fields the API never
// leaves null (tagged `openapi:"nonnull"`).
func nonNull(s *Schema) *Schema {
	cp := *s
	cp.Type = nil
	for _, t := range s.Type {
		if t != "null" {
			cp.Type = append(cp.Type, t)
		}
	}
	return &cp
}

func nullable(s *Schema) *Schema {
	if s.Ref != "" {
		return &Schema{AnyOf: []*Schema{s, {Type: Types{"null"}}}}
	}
	if len(s.Type) == 0 {
		return s
	}
	for _, tn := range s.Type {
		if tn == "null" {
			return s
		}
	}
	cp := *s
	cp.Type = append(append(Types{}, s.Type...), "null")
	return &cp
}

var (
	pkgPathRE = regexp.MustCompile(`[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)+\.`)
	badNameRE = regexp.MustCompile(`[^A-Za-z0-9._\-]+`)
)

// nameFor names a struct type's component "pkg.Type"; generic arguments
// are kept without their import paths ("httpapi.List-auth.User").
func (g *Generator) nameFor(t reflect.Type) string {
	name := t.String()
	name = pkgPathRE.ReplaceAllStringFunc(name, func(s string) string {
		return s[strings.LastIndex(s[:len(s)-1], "/")+1:]
	})
	name = strings.Trim(badNameRE.ReplaceAllString(name, "-"), "-")
	base := name
	for i := 2; ; i++ {
		taken := false
		for other, n := range g.names {
			if n == name && other != t {
				taken = true
			}
		}
		if !taken {
			return name
		}
		name = fmt.Sprintf("%s%d", base, i)
	}
}

// object describes a struct as encoding/json writes it: exported fields
// under their json names, embedded structs' fields promoted, omitempty
// and omitzero fields optional, and nothing else.
func (g *Generator) object(t reflect.Type) *Schema {
	s := &Schema{Type: Types{"object"}, Properties: map[string]*Schema{}, Additional: &Additional{Closed: true}}
	seen := map[string]int{} // name -> depth of the field that set it
	var walk func(t reflect.Type, depth int, optional bool)
	walk = func(t reflect.Type, depth int, optional bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct && !implements(et, jsonMarshalerType) {
					walk(et, depth+1, optional || ft.Kind() == reflect.Pointer)
					continue
				}
				if !f.IsExported() {
					continue
				}
			} else if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if d, ok := seen[name]; ok && d <= depth {
				continue
			}
			seen[name] = depth
			fs := g.schema(ft)
			if strings.Contains(","+opts+",", ",string,") {
				fs = &Schema{Type: Types{"string"}}
			}
			if f.Tag.Get("openapi") == "nonnull" {
				fs = nonNull(fs)
			}
			s.Properties[name] = fs
			omit := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
			if !omit && !optional {
				s.Required = append(s.Required, name)
			} else {
				s.Required = slicesDelete(s.Required, name)
			}
		}
	}
	walk(t, 0, false)
	sort.Strings(s.Required)
	s.Required = slices.Compact(s.Required)
	return s
}

func slicesDelete(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
