package apidoc

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

var (
	templateParamRE = regexp.MustCompile(`\{([^{}/]+)\}`)
	componentNameRE = regexp.MustCompile(`^[A-Za-z0-9._\-]+$`)
	statusKeyRE     = regexp.MustCompile(`^([1-5][0-9X][0-9X]|default)$`)
)

var methods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

// Lint checks the structure OpenAPI 3.1 requires of a document: version,
// info, path templates and their path parameters, unique operation ids,
// responses, security schemes that exist, and references that resolve.
// It returns every problem found.
func (d *Document) Lint() []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		add("openapi is %q, want 3.x", d.OpenAPI)
	}
	if d.Info.Title == "" || d.Info.Version == "" {
		add("info needs a title and a version")
	}
	if len(d.Paths) == 0 {
		add("paths is empty")
	}
	for name, s := range d.Components.Schemas {
		if !componentNameRE.MatchString(name) {
			add("component name %q has characters OpenAPI does not allow", name)
		}
		problems = append(problems, d.lintSchema(s, "#/components/schemas/"+name)...)
	}
	ids := map[string]string{}
	for p, item := range d.Paths {
		if !strings.HasPrefix(p, "/") {
			add("path %q does not start with /", p)
		}
		if item == nil {
			add("path %q has no operations", p)
			continue
		}
		inTemplate := map[string]bool{}
		for _, m := range templateParamRE.FindAllStringSubmatch(p, -1) {
			inTemplate[m[1]] = true
		}
		for m, o := range *item {
			where := strings.ToUpper(m) + " " + p
			if !methods[m] {
				add("%s: %q is not an HTTP method", where, m)
			}
			if o == nil {
				add("%s: operation is null", where)
				continue
			}
			if o.OperationID == "" {
				add("%s: no operationId", where)
			} else if other, dup := ids[o.OperationID]; dup {
				add("%s: operationId %q is also used by %s", where, o.OperationID, other)
			} else {
				ids[o.OperationID] = where
			}
			if len(o.Responses) == 0 {
				add("%s: no responses", where)
			}
			for code, r := range o.Responses {
				if !statusKeyRE.MatchString(code) {
					add("%s: response key %q is not a status code", where, code)
				}
				if r == nil || r.Description == "" {
					add("%s: response %s needs a description", where, code)
					continue
				}
				for ct, mt := range r.Content {
					problems = append(problems, d.lintSchema(mt.Schema, where+" response "+code+" "+ct)...)
				}
			}
			if o.RequestBody != nil {
				if len(o.RequestBody.Content) == 0 {
					add("%s: request body has no content", where)
				}
				for ct, mt := range o.RequestBody.Content {
					problems = append(problems, d.lintSchema(mt.Schema, where+" request "+ct)...)
				}
			}
			declared := map[string]bool{}
			for _, prm := range o.Parameters {
				key := prm.In + ":" + prm.Name
				if declared[key] {
					add("%s: parameter %s is declared twice", where, key)
				}
				declared[key] = true
				switch prm.In {
				case "path":
					if !prm.Required {
						add("%s: path parameter %q must be required", where, prm.Name)
					}
					if !inTemplate[prm.Name] {
						add("%s: path parameter %q is not in the path", where, prm.Name)
					}
				case "query", "header", "cookie":
				default:
					add("%s: parameter %q is in %q", where, prm.Name, prm.In)
				}
				if prm.Schema == nil {
					add("%s: parameter %q has no schema", where, prm.Name)
				}
			}
			for name := range inTemplate {
				if !declared["path:"+name] {
					add("%s: path parameter {%s} is not declared", where, name)
				}
			}
			for _, req := range o.Security {
				for scheme := range req {
					if _, ok := d.Components.SecuritySchemes[scheme]; !ok {
						add("%s: security scheme %q is not defined", where, scheme)
					}
				}
			}
		}
	}
	sort.Strings(problems)
	return problems
}

func (d *Document) lintSchema(s *Schema, where string) []string {
	var problems []string
	var walk func(s *Schema, where string, depth int)
	walk = func(s *Schema, where string, depth int) {
		if s == nil || depth > 64 {
			return
		}
		if s.Ref != "" {
			if _, err := d.resolve(s.Ref); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			}
			return
		}
		for _, t := range s.Type {
			switch t {
			case "null", "boolean", "object", "array", "number", "string", "integer":
			default:
				problems = append(problems, fmt.Sprintf("%s: type %q is not a JSON Schema type", where, t))
			}
		}
		for _, r := range s.Required {
			if _, ok := s.Properties[r]; !ok && s.Additional != nil && s.Additional.Closed {
				problems = append(problems, fmt.Sprintf("%s: required property %q can never be present", where, r))
			}
		}
		for name, p := range s.Properties {
			walk(p, where+"."+name, depth+1)
		}
		walk(s.Items, where+"[]", depth+1)
		if s.Additional != nil {
			walk(s.Additional.Schema, where+".*", depth+1)
		}
		for i, a := range s.AnyOf {
			walk(a, fmt.Sprintf("%s|%d", where, i), depth+1)
		}
	}
	walk(s, where, 0)
	return problems
}
