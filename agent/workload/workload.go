// Package workload discovers the workloads of a node from a plain network
// namespace source: a YAML file listing {name, namespace, labels, netns,
// cgroup}, where netns names a namespace under /var/run/netns and the
// optional cgroup is the workload's cgroup v2 path relative to the cgroup
// root (for example /palisade/orders). For each workload it
// finds the interfaces inside the namespace, their addresses and the
// host-side veth peer the datapath attaches to, and reports workloads as
// they appear, change and disappear. The containerd sub-package is the
// container runtime source; both report the same Change and Endpoint.
package workload

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// ErrBadFile is wrapped by every workload file error.
var ErrBadFile = errors.New("workload: bad workloads file")

// Workload is one entry of the workloads file.
type Workload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Netns is a name under the netns directory (/var/run/netns).
	Netns string `json:"netns"`
	// Cgroup is the workload's cgroup v2 path relative to the cgroup root,
	// such as "/palisade/orders": absolute, clean, without "..". Empty when
	// unknown.
	Cgroup string `json:"cgroup,omitempty"`
}

// ID is namespace/name.
func (w Workload) ID() string { return w.Namespace + "/" + w.Name }

// Interface is one interface inside a workload's network namespace.
type Interface struct {
	Name    string
	Index   int
	Addrs   []netip.Prefix   // global-scope addresses
	Kind    string           // "veth", ...
	HostIf  int              // ifindex of the veth peer in the host namespace; 0 if none
	HostIfN string           // its name
	MAC     net.HardwareAddr // this interface's own address; nil if it has none
	HostMAC net.HardwareAddr // the host-side veth's address; nil without HostIf
}

// Image is the image one container of a workload runs.
type Image struct {
	Container string // the container's name in its pod, or its ID
	Name      string // image reference, such as registry.example/shop/orders:1.2
	Digest    string // digest of the image's manifest or index; "" if unknown
}

// Endpoint is a workload with what was found in its namespace and, for a
// container runtime source, the images its containers run.
type Endpoint struct {
	Workload
	Interfaces []Interface
	Images     []Image // by container; empty for the netns source
}

// Addrs returns every address of the endpoint.
func (e Endpoint) Addrs() []netip.Prefix {
	var out []netip.Prefix
	for _, i := range e.Interfaces {
		out = append(out, i.Addrs...)
	}
	return out
}

func (e Endpoint) equal(o Endpoint) bool {
	if e.Name != o.Name || e.Namespace != o.Namespace || e.Netns != o.Netns || e.Cgroup != o.Cgroup || !maps.Equal(e.Labels, o.Labels) {
		return false
	}
	if !slices.Equal(e.Images, o.Images) {
		return false
	}
	return slices.EqualFunc(e.Interfaces, o.Interfaces, func(a, b Interface) bool {
		return a.Name == b.Name && a.Index == b.Index && a.Kind == b.Kind && a.HostIf == b.HostIf &&
			a.HostIfN == b.HostIfN && slices.Equal(a.Addrs, b.Addrs) && bytes.Equal(a.MAC, b.MAC) && bytes.Equal(a.HostMAC, b.HostMAC)
	})
}

// Parse reads and validates a workloads file.
func Parse(data []byte) ([]Workload, error) {
	var ws []Workload
	if err := yaml.UnmarshalStrict(data, &ws); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFile, err)
	}
	seen := map[string]bool{}
	for i, w := range ws {
		where := fmt.Sprintf("entry %d", i)
		if w.Name != "" {
			where = fmt.Sprintf("workload %q", w.ID())
		}
		switch {
		case w.Name == "":
			return nil, fmt.Errorf("%w: %s: name is empty", ErrBadFile, where)
		case w.Namespace == "":
			return nil, fmt.Errorf("%w: %s: namespace is empty", ErrBadFile, where)
		case w.Netns == "" || w.Netns == "." || w.Netns == ".." || strings.ContainsAny(w.Netns, "/\x00"):
			return nil, fmt.Errorf("%w: %s: netns %q is not a plain name", ErrBadFile, where, w.Netns)
		case seen[w.ID()]:
			return nil, fmt.Errorf("%w: %s: listed twice", ErrBadFile, where)
		}
		if err := ValidateCgroup(w.Cgroup); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadFile, where, err)
		}
		for k := range w.Labels {
			if k == "" {
				return nil, fmt.Errorf("%w: %s: label with empty key", ErrBadFile, where)
			}
		}
		seen[w.ID()] = true
	}
	return ws, nil
}

// ValidateCgroup accepts "" or an absolute, clean cgroup v2 path without
// "..", such as "/palisade/orders".
func ValidateCgroup(p string) error {
	switch {
	case p == "":
		return nil
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("cgroup %q is not absolute", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("cgroup %q holds a NUL byte", p)
	case path.Clean(p) != p:
		return fmt.Errorf("cgroup %q is not clean", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("cgroup %q holds \"..\"", p)
	}
	return nil
}

// ChangeKind says what happened to a workload.
type ChangeKind uint8

// Change kinds.
const (
	Added ChangeKind = iota + 1
	Updated
	Removed
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("change(%d)", uint8(k))
}

// Change is one workload event. For Removed, Endpoint is the last state seen.
type Change struct {
	Kind     ChangeKind
	Endpoint Endpoint
}

// Diff compares two snapshots keyed by workload ID: additions and updates
// in ID order, then removals in ID order.
func Diff(old, cur map[string]Endpoint) []Change {
	var out []Change
	for _, id := range slices.Sorted(maps.Keys(cur)) {
		e := cur[id]
		o, ok := old[id]
		switch {
		case !ok:
			out = append(out, Change{Kind: Added, Endpoint: e})
		case !o.equal(e):
			out = append(out, Change{Kind: Updated, Endpoint: e})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(old)) {
		if _, ok := cur[id]; !ok {
			out = append(out, Change{Kind: Removed, Endpoint: old[id]})
		}
	}
	return out
}
