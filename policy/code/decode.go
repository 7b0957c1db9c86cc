package code

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// Limits on input, so that hostile files stay small.
const (
	// MaxInputBytes is the largest YAML stream Decode reads.
	MaxInputBytes = 8 << 20
	// MaxDocuments is the most documents (List items included) in a stream.
	MaxDocuments = 20000
)

// ErrDecode is returned for input that is not a stream of known documents.
var ErrDecode = errors.New("code: cannot decode")

// rawDoc is one document of a stream, as JSON.
type rawDoc struct {
	index int // 1-based position in the stream, for messages
	json  []byte
	meta  TypeMeta
	name  string
}

// splitStream splits a YAML stream on "---" lines, converts each document
// to JSON and expands kind: List into its items. Empty documents are
// skipped.
func splitStream(data []byte) ([]rawDoc, error) {
	if len(data) > MaxInputBytes {
		return nil, fmt.Errorf("%w: input is %d bytes (limit %d)", ErrDecode, len(data), MaxInputBytes)
	}
	var docs []rawDoc
	var cur bytes.Buffer
	index := 0
	flush := func() error {
		index++
		text := cur.Bytes()
		cur.Reset()
		if len(bytes.TrimSpace(stripComments(text))) == 0 {
			return nil
		}
		j, err := yaml.YAMLToJSON(text)
		if err != nil {
			return fmt.Errorf("%w: document %d: %v", ErrDecode, index, err)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			return nil
		}
		var head struct {
			TypeMeta
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(j, &head); err != nil {
			return fmt.Errorf("%w: document %d: not a mapping with apiVersion and kind: %v", ErrDecode, index, shortJSONError(err))
		}
		if head.Kind == "List" {
			for i, it := range head.Items {
				var m struct {
					TypeMeta
					Metadata struct {
						Name string `json:"name"`
					} `json:"metadata"`
				}
				if err := json.Unmarshal(it, &m); err != nil {
					return fmt.Errorf("%w: document %d item %d: %v", ErrDecode, index, i+1, shortJSONError(err))
				}
				docs = append(docs, rawDoc{index: index, json: it, meta: m.TypeMeta, name: m.Metadata.Name})
				if len(docs) > MaxDocuments {
					return fmt.Errorf("%w: more than %d documents", ErrDecode, MaxDocuments)
				}
			}
			return nil
		}
		docs = append(docs, rawDoc{index: index, json: j, meta: head.TypeMeta, name: head.Metadata.Name})
		if len(docs) > MaxDocuments {
			return fmt.Errorf("%w: more than %d documents", ErrDecode, MaxDocuments)
		}
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxInputBytes+1)
	for sc.Scan() {
		line := sc.Text()
		if isSeparator(line) {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

func isSeparator(line string) bool {
	if !strings.HasPrefix(line, "---") {
		return false
	}
	rest := strings.TrimSpace(line[3:])
	return rest == "" || strings.HasPrefix(rest, "#")
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}

// shortJSONError drops Go type names from a JSON error.
func shortJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s: wrong type (%s)", te.Field, te.Value)
		}
		return fmt.Sprintf("wrong type (%s)", te.Value)
	}
	return err.Error()
}

// strict decodes JSON into v, rejecting unknown fields.
func strict(j []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(j))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return errors.New(shortJSONError(err))
	}
	return nil
}

// Decode reads a YAML stream of palisade.dev/v1 documents. A document of
// another apiVersion or an unknown kind, or with a field the kind does not
// have, is an error naming the document.
func Decode(data []byte) ([]Object, error) {
	docs, err := splitStream(data)
	if err != nil {
		return nil, err
	}
	out := make([]Object, 0, len(docs))
	for _, d := range docs {
		where := fmt.Sprintf("document %d", d.index)
		if d.name != "" {
			where += fmt.Sprintf(" (%s %q)", d.meta.Kind, d.name)
		}
		if d.meta.APIVersion != APIVersion {
			return nil, fmt.Errorf("%w: %s: apiVersion %q is not %s", ErrDecode, where, d.meta.APIVersion, APIVersion)
		}
		var obj Object
		switch d.meta.Kind {
		case KindSecurityRule, KindClusterSecurityRule:
			obj = &SecurityRule{}
		case KindAdmissionRule:
			obj = &AdmissionRule{}
		case KindGroupDefinition:
			obj = &GroupDefinition{}
		default:
			return nil, fmt.Errorf("%w: %s: unknown kind %q (want SecurityRule, ClusterSecurityRule, AdmissionRule or GroupDefinition)", ErrDecode, where, d.meta.Kind)
		}
		if err := strict(d.json, obj); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDecode, where, err)
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("%w: %s: metadata.name is missing", ErrDecode, where)
		}
		out = append(out, obj)
	}
	return out, nil
}
