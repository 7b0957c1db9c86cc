package apidoc

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Validate checks a decoded JSON value (as encoding/json decodes into
// any, with numbers as float64 or json.Number) against s, resolving
// references in d's components. The error names the first offending
// place as a JSON path ("$.items[0].name").
func (d *Document) Validate(s *Schema, v any) error {
	steps := maxSteps
	return d.validate(s, v, "$", 0, &steps)
}

// maxSteps bounds the work of one validation (schemas that refer to
// themselves through anyOf could otherwise take exponential time).
const maxSteps = 1 << 20

// ValidateJSON decodes body and validates it against s.
func (d *Document) ValidateJSON(s *Schema, body []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("apidoc: response is not JSON: %w", err)
	}
	return d.Validate(s, v)
}

func (d *Document) resolve(ref string) (*Schema, error) {
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	if !ok {
		return nil, fmt.Errorf("apidoc: reference %q is not to #/components/schemas/", ref)
	}
	s, ok := d.Components.Schemas[name]
	if !ok {
		return nil, fmt.Errorf("apidoc: reference %q: no such schema", ref)
	}
	return s, nil
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func typeAllows(types Types, got string) bool {
	for _, t := range types {
		if t == got || (t == "number" && got == "integer") {
			return true
		}
	}
	return false
}

func (d *Document) validate(s *Schema, v any, path string, depth int, steps *int) error {
	if depth > 64 {
		return fmt.Errorf("%s: schema nests too deep", path)
	}
	if *steps--; *steps < 0 {
		return fmt.Errorf("%s: schema too complex to check", path)
	}
	if s == nil {
		return nil
	}
	if s.Ref != "" {
		rs, err := d.resolve(s.Ref)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return d.validate(rs, v, path, depth+1, steps)
	}
	if len(s.AnyOf) > 0 {
		var first error
		for _, alt := range s.AnyOf {
			err := d.validate(alt, v, path, depth+1, steps)
			if err == nil {
				first = nil
				break
			}
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("%s: matches none of %d alternatives (the first: %w)", path, len(s.AnyOf), first)
		}
	}
	got := jsonType(v)
	if len(s.Type) > 0 && !typeAllows(s.Type, got) {
		return fmt.Errorf("%s: want %s, got %s", path, strings.Join(s.Type, " or "), got)
	}
	if len(s.Enum) > 0 {
		found := false
		for _, e := range s.Enum {
			found = found || reflect.DeepEqual(e, v)
		}
		if !found {
			return fmt.Errorf("%s: %v is not one of %v", path, v, s.Enum)
		}
	}
	switch x := v.(type) {
	case string:
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
				return fmt.Errorf("%s: %q is not an RFC 3339 date-time", path, x)
			}
		}
	case json.Number:
		if s.Minimum != nil {
			if f, err := x.Float64(); err == nil && f < *s.Minimum {
				return fmt.Errorf("%s: %s is below the minimum %v", path, x, *s.Minimum)
			}
		}
	case float64:
		if s.Minimum != nil && x < *s.Minimum {
			return fmt.Errorf("%s: %v is below the minimum %v", path, x, *s.Minimum)
		}
	case []any:
		for i, item := range x {
			if err := d.validate(s.Items, item, fmt.Sprintf("%s[%d]", path, i), depth+1, steps); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, r := range s.Required {
			if _, ok := x[r]; !ok {
				return fmt.Errorf("%s: required property %q is missing", path, r)
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "." + k
			if ps, ok := s.Properties[k]; ok {
				if err := d.validate(ps, x[k], p, depth+1, steps); err != nil {
					return err
				}
				continue
			}
			if s.Additional == nil {
				continue
			}
			if s.Additional.Closed {
				return fmt.Errorf("%s: property %q is not in the schema (additionalProperties is false)", path, k)
			}
			if err := d.validate(s.Additional.Schema, x[k], p, depth+1, steps); err != nil {
				return err
			}
		}
	}
	return nil
}
