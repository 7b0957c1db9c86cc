package inventory

import (
	"encoding/json"
	"fmt"
)

// ParseNPMPackageJSON reads the package.json of an installed npm package
// (node_modules/NAME/package.json).
func ParseNPMPackageJSON(data []byte) (Package, error) {
	var doc struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return Package{}, fmt.Errorf("package.json: %w", err)
	}
	if doc.Name == "" || doc.Version == "" {
		return Package{}, fmt.Errorf("package.json: name %q version %q: missing name or version", doc.Name, doc.Version)
	}
	return Package{Name: doc.Name, Version: doc.Version, Type: NPM}, nil
}
