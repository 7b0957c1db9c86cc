package apidoc

import (
	"encoding/json"
	"testing"

	"github.com/palisade-sec/palisade/shared/httpapi"
)

// FuzzValidateJSON feeds arbitrary bodies to the validator: it answers
// with an error or nil, never a panic.
func FuzzValidateJSON(f *testing.F) {
	for _, s := range []string{`{"items":[],"total":0,"limit":1,"offset":0}`, `null`, `[1,2,{"a":null}]`, `{"items":[{"next":{"next":{}}}]}`, `1e400`, `"x"`} {
		f.Add([]byte(s))
	}
	g := NewGenerator()
	doc := &Document{Components: Components{Schemas: g.Components}}
	schema := g.Of(httpapi.List[sample]{})
	f.Fuzz(func(t *testing.T, body []byte) {
		_ = doc.ValidateJSON(schema, body)
	})
}

// FuzzDocument decodes arbitrary documents and lints them: problems are
// reported, nothing panics.
func FuzzDocument(f *testing.F) {
	built, err := Build(testConfig(), testRoutes(), testOps())
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := json.Marshal(built)
	for _, s := range []string{string(seed), `{}`, `{"paths":{"/a":{"get":null}}}`,
		`{"components":{"schemas":{"a":{"$ref":"#/components/schemas/a"}}},"paths":{"/a":{"get":{"responses":{"200":{"description":"x","content":{"application/json":{"schema":{"$ref":"#/components/schemas/a"}}}}}}}}}`,
		`{"components":{"schemas":{"a":{"type":["string",1],"additionalProperties":true}}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Document
		if json.Unmarshal(b, &d) != nil {
			return
		}
		d.Lint()
		for p, item := range d.Paths {
			if item == nil {
				continue
			}
			for m := range *item {
				if s, err := d.ResponseSchema(m, p, 200); err == nil {
					_ = d.Validate(s, map[string]any{"items": []any{1}})
				}
			}
		}
	})
}
