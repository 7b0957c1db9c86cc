package inventory

import (
	"bytes"
	"fmt"
)

// ParsePythonMetadata reads the core metadata of an installed Python
// distribution (dist-info/METADATA, egg-info/PKG-INFO): the header block's
// Name and Version fields.
func ParsePythonMetadata(data []byte) (Package, error) {
	// Only the header block: the body after the first blank line is the
	// long description, which may contain anything.
	if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
		data = data[:i+1]
	}
	var name, ver string
	err := stanzas(data, func(f map[string]string) error {
		name, ver = f["Name"], f["Version"]
		return nil
	})
	if err != nil {
		return Package{}, fmt.Errorf("python metadata: %w", err)
	}
	if name == "" || ver == "" {
		return Package{}, fmt.Errorf("python metadata: name %q version %q: missing Name or Version", name, ver)
	}
	return Package{Name: name, Version: ver, Type: Python}, nil
}
