package inventory

import (
	"fmt"
	"strings"
)

// ParseOSRelease reads os-release(5).
func ParseOSRelease(data []byte) (*OSRelease, error) {
	o := &OSRelease{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			o.ID = v
		case "VERSION_ID":
			o.VersionID = v
		case "VERSION_CODENAME":
			o.VersionCodename = v
		case "PRETTY_NAME":
			o.PrettyName = v
		}
	}
	if o.ID == "" {
		return nil, fmt.Errorf("os-release: no ID")
	}
	return o, nil
}
