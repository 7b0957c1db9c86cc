package inventory

import (
	"fmt"
	"strings"
)

// ParseAPKInstalled reads Alpine's /lib/apk/db/installed: one package per
// paragraph of "K:value" lines (P name, V version, A arch, o origin).
func ParseAPKInstalled(data []byte) ([]Package, error) {
	var out []Package
	var cur Package
	flush := func() error {
		if cur.Name == "" && cur.Version == "" {
			cur = Package{}
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return fmt.Errorf("apk installed: package %q version %q: missing P or V", cur.Name, cur.Version)
		}
		if cur.SourceName == "" {
			cur.SourceName = cur.Name
		}
		cur.SourceVersion = cur.Version
		cur.Type = APK
		out = append(out, cur)
		cur = Package{}
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if len(line) < 2 || line[1] != ':' {
			continue
		}
		v := line[2:]
		switch line[0] {
		case 'P':
			cur.Name = v
		case 'V':
			cur.Version = v
		case 'A':
			cur.Arch = v
		case 'o':
			cur.SourceName = v
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}
