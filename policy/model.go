package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// Source says where an object came from. It decides precedence: a rule from
// an earlier source in the list below wins over one from a later source.
type Source string

// The sources, highest precedence first.
const (
	SourceFederated Source = "federated" // pushed by the primary; read-only on remotes
	SourceCode      Source = "code"      // policy as code (YAML kinds, CRDs)
	SourceUser      Source = "user"      // created through the API or console
	SourceLearned   Source = "learned"   // learned in Discover mode
)

// Rank orders sources by precedence: 0 is the highest. An unknown source
// ranks after every known one.
func (s Source) Rank() int {
	switch s {
	case SourceFederated:
		return 0
	case SourceCode:
		return 1
	case SourceUser:
		return 2
	case SourceLearned:
		return 3
	}
	return 4
}

// Valid reports whether s is one of the known sources.
func (s Source) Valid() bool { return s.Rank() < 4 }

// Mode is how a group is enforced.
type Mode string

// The modes, from the most permissive to the strictest.
const (
	ModeDiscover Mode = "discover" // learn rules, allow everything
	ModeMonitor  Mode = "monitor"  // alert on violations, allow
	ModeProtect  Mode = "protect"  // block violations
)

// ParseMode reads a mode, ignoring case ("Protect" and "protect" are the same).
func ParseMode(s string) (Mode, error) {
	m := Mode(strings.ToLower(strings.TrimSpace(s)))
	if m.Strictness() < 0 {
		return "", fmt.Errorf("%w: %q (want discover, monitor or protect)", ErrBadMode, s)
	}
	return m, nil
}

// Strictness orders modes: discover 0, monitor 1, protect 2, anything else -1.
func (m Mode) Strictness() int {
	switch m {
	case ModeDiscover:
		return 0
	case ModeMonitor:
		return 1
	case ModeProtect:
		return 2
	}
	return -1
}

// Stricter returns the stricter of two modes.
func Stricter(a, b Mode) Mode {
	if b.Strictness() > a.Strictness() {
		return b
	}
	return a
}

// Action is what a rule does with what it matches.
type Action string

// The actions.
const (
	ActionAllow Action = "allow"
	ActionDeny  Action = "deny"
)

// Valid reports whether a is allow or deny.
func (a Action) Valid() bool { return a == ActionAllow || a == ActionDeny }

// Kind names the type of a policy object.
type Kind string

// The kinds of policy object.
const (
	KindGroup         Kind = "group"
	KindNetworkRule   Kind = "networkRule"
	KindProcessRule   Kind = "processRule"
	KindFileRule      Kind = "fileRule"
	KindAdmissionRule Kind = "admissionRule"
	KindResponseRule  Kind = "responseRule"
)

// Title is the kind as people read it in messages ("network rule").
func (k Kind) Title() string {
	switch k {
	case KindGroup:
		return "group"
	case KindNetworkRule:
		return "network rule"
	case KindProcessRule:
		return "process rule"
	case KindFileRule:
		return "file rule"
	case KindAdmissionRule:
		return "admission rule"
	case KindResponseRule:
		return "response rule"
	}
	return string(k)
}

// Meta is what every policy object carries.
type Meta struct {
	// Name identifies the object among the objects of its kind.
	Name string `json:"name"`
	// Kind is the object's kind; empty means the kind of the field holding it.
	Kind Kind `json:"kind,omitempty"`
	// Source is where the object came from; it decides precedence.
	Source Source `json:"source"`
	// Revision is the primary's revision that last changed a federated
	// object; zero for every other source.
	Revision uint64 `json:"revision,omitempty"`
	// Comment is free text for people.
	Comment string `json:"comment,omitempty"`
}

// Reserved group names. They are never defined in a [Set]; rules refer to them.
const (
	// GroupExternal is every address that is not a workload or a node.
	GroupExternal = "external"
	// GroupNodes is the cluster's nodes (host network).
	GroupNodes = "nodes"
)

// IsReservedGroup reports whether name is a reserved group.
func IsReservedGroup(name string) bool { return name == GroupExternal || name == GroupNodes }

// Group selects workloads, or external addresses, by criteria.
type Group struct {
	Meta
	// Criteria select the members: criteria with the same key are OR-ed
	// (negative operators on the same key are AND-ed), different keys AND-ed.
	Criteria []Criterion `json:"criteria"`
	// NetworkMode is the group's network mode; empty means the default.
	NetworkMode Mode `json:"networkMode,omitempty"`
	// ProcessMode is the group's process and file mode; empty means the default.
	ProcessMode Mode `json:"processMode,omitempty"`
	// Baseline is the process baseline: basic (the profile only) or
	// zeroDrift (also only executables that came with the image).
	Baseline Baseline `json:"baseline,omitempty"`
}

// Baseline is how strict a group's process profile is.
type Baseline string

// The baselines.
const (
	BaselineBasic     Baseline = "basic"
	BaselineZeroDrift Baseline = "zeroDrift"
)

// NetworkRule allows or denies traffic from one group to another.
type NetworkRule struct {
	Meta
	// From is the client group (or a reserved group).
	From string `json:"from"`
	// To is the server group (or a reserved group).
	To string `json:"to"`
	// Ports is "any" (or empty) or a comma-separated list such as
	// "tcp/80,udp/53,tcp/8000-8100"; see [ParsePorts].
	Ports string `json:"ports,omitempty"`
	// Applications restrict the rule to detected L7 protocols; empty is any.
	Applications []string `json:"applications,omitempty"`
	// Action is allow or deny.
	Action Action `json:"action"`
	// Disabled rules are kept but not enforced.
	Disabled bool `json:"disabled,omitempty"`
}

// ProcessRule allows or denies an executable in the workloads of a group.
type ProcessRule struct {
	Meta
	// Group is the group the rule applies to.
	Group string `json:"group"`
	// Process is the process name ("nginx"); "*" matches any name.
	Process string `json:"process"`
	// Path is the executable's absolute path; it may use * and ? wildcards,
	// and "*" alone matches any path.
	Path string `json:"path"`
	// Action is allow or deny.
	Action Action `json:"action"`
}

// FileBehavior is what a file rule does on access.
type FileBehavior string

// The file behaviours.
const (
	FileMonitorChange FileBehavior = "monitorChange" // alert when a matching file changes
	FileBlockAccess   FileBehavior = "blockAccess"   // deny access to matching files
)

// FileRule watches or guards files in the workloads of a group.
type FileRule struct {
	Meta
	// Group is the group the rule applies to.
	Group string `json:"group"`
	// Filter is an absolute path, possibly with * and ? in its last element.
	Filter string `json:"filter"`
	// Recursive extends the rule to everything below Filter.
	Recursive bool `json:"recursive,omitempty"`
	// Behavior is monitorChange or blockAccess.
	Behavior FileBehavior `json:"behavior"`
	// Applications are executables still allowed to access the files
	// under blockAccess.
	Applications []string `json:"applications,omitempty"`
}

// Key is a group criterion key.
type Key string

// The criterion keys.
const (
	KeyNamespace Key = "namespace"
	KeyLabel     Key = "label"    // pod label; Criterion.Label names it
	KeyNSLabel   Key = "ns-label" // namespace label; Criterion.Label names it
	KeyImage     Key = "image"
	KeyNode      Key = "node"
	KeyContainer Key = "container"
	KeyAddress   Key = "address" // IPv4, IPv6, CIDR or FQDN (with a leading *.)
	KeyService   Key = "service"
)

// Op is a criterion operator.
type Op string

// The criterion operators. = and != accept * and ? wildcards.
const (
	OpEqual      Op = "="
	OpNotEqual   Op = "!="
	OpContains   Op = "contains"
	OpPrefix     Op = "prefix"
	OpRegex      Op = "regex"
	OpNotRegex   Op = "!regex"
	opNotDefined Op = ""
)

// Criterion is one condition of a group.
type Criterion struct {
	// Key is what the criterion looks at.
	Key Key `json:"key"`
	// Label is the label's name for label and ns-label keys.
	Label string `json:"label,omitempty"`
	// Op is the operator.
	Op Op `json:"op"`
	// Value is compared with the workload's attribute.
	Value string `json:"value"`
}

// String renders a criterion as "key op value" ("label:app = web").
func (c Criterion) String() string {
	k := string(c.Key)
	if c.Label != "" {
		k += ":" + c.Label
	}
	return fmt.Sprintf("%s %s %s", k, c.Op, c.Value)
}

// Workload is one pod (or plain network-namespace workload) as policy sees it.
type Workload struct {
	// ID is unique in the cluster (pod UID or namespace/name).
	ID string `json:"id"`
	// Name is the pod name.
	Name string `json:"name,omitempty"`
	// Namespace is the Kubernetes namespace.
	Namespace string `json:"namespace,omitempty"`
	// Labels are the pod labels.
	Labels map[string]string `json:"labels,omitempty"`
	// NamespaceLabels are the labels of the pod's namespace.
	NamespaceLabels map[string]string `json:"namespaceLabels,omitempty"`
	// Service is the workload's service (its owner, e.g. the deployment).
	Service string `json:"service,omitempty"`
	// Node is the node the workload runs on.
	Node string `json:"node,omitempty"`
	// Containers are the pod's containers.
	Containers []Container `json:"containers,omitempty"`
	// Addresses are the workload's IP addresses.
	Addresses []netip.Addr `json:"addresses,omitempty"`
}

// Container is one container of a workload.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
}

// Defaults are the modes a group gets when it sets none.
type Defaults struct {
	// NetworkMode is the default network mode (discover when empty).
	NetworkMode Mode `json:"networkMode,omitempty"`
	// ProcessMode is the default process and file mode (discover when empty).
	ProcessMode Mode `json:"processMode,omitempty"`
}

// AdmissionSettings are the cluster-wide admission control settings.
type AdmissionSettings struct {
	// Enabled turns admission control on.
	Enabled bool `json:"enabled"`
	// Mode is monitor (log what would be denied) or protect (deny).
	Mode Mode `json:"mode,omitempty"`
}

// Set is a whole policy: every group, rule and mode of a cluster.
type Set struct {
	Defaults       Defaults          `json:"defaults"`
	Admission      AdmissionSettings `json:"admission"`
	Groups         []Group           `json:"groups,omitempty"`
	NetworkRules   []NetworkRule     `json:"networkRules,omitempty"`
	ProcessRules   []ProcessRule     `json:"processRules,omitempty"`
	FileRules      []FileRule        `json:"fileRules,omitempty"`
	AdmissionRules []AdmissionRule   `json:"admissionRules,omitempty"`
	ResponseRules  []ResponseRule    `json:"responseRules,omitempty"`
}

// Normalize fills every object's Kind from the field that holds it.
func (s *Set) Normalize() {
	for i := range s.Groups {
		s.Groups[i].Kind = KindGroup
	}
	for i := range s.NetworkRules {
		s.NetworkRules[i].Kind = KindNetworkRule
	}
	for i := range s.ProcessRules {
		s.ProcessRules[i].Kind = KindProcessRule
	}
	for i := range s.FileRules {
		s.FileRules[i].Kind = KindFileRule
	}
	for i := range s.AdmissionRules {
		s.AdmissionRules[i].Kind = KindAdmissionRule
	}
	for i := range s.ResponseRules {
		s.ResponseRules[i].Kind = KindResponseRule
	}
}

// Group returns the group named name, or nil.
func (s *Set) Group(name string) *Group {
	for i := range s.Groups {
		if s.Groups[i].Name == name {
			return &s.Groups[i]
		}
	}
	return nil
}

// GroupModes returns the effective network and process modes of a group,
// falling back to the set's defaults and then to Discover.
func (s *Set) GroupModes(g *Group) (network, process Mode) {
	network, process = s.Defaults.NetworkMode, s.Defaults.ProcessMode
	if g.NetworkMode != "" {
		network = g.NetworkMode
	}
	if g.ProcessMode != "" {
		process = g.ProcessMode
	}
	if network == "" {
		network = ModeDiscover
	}
	if process == "" {
		process = ModeDiscover
	}
	return network, process
}

// SetMode sets the network mode (or, with process, the process and file
// mode) of one group, or of every group and the default when group is "".
func (s *Set) SetMode(group string, m Mode, process bool) error {
	if m.Strictness() < 0 {
		return fmt.Errorf("%w: %q", ErrBadMode, m)
	}
	set := func(g *Group) {
		if process {
			g.ProcessMode = m
		} else {
			g.NetworkMode = m
		}
	}
	if group == "" {
		if process {
			s.Defaults.ProcessMode = m
		} else {
			s.Defaults.NetworkMode = m
		}
		for i := range s.Groups {
			set(&s.Groups[i])
		}
		return nil
	}
	g := s.Group(group)
	if g == nil {
		return fmt.Errorf("%w: %q", ErrUnknownGroup, group)
	}
	set(g)
	return nil
}
