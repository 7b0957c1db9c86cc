package code

// APIVersion is the API group and version of every kind of this package.
const APIVersion = "palisade.dev/v1"

// The kinds.
const (
	KindSecurityRule        = "SecurityRule"
	KindClusterSecurityRule = "ClusterSecurityRule"
	KindAdmissionRule       = "AdmissionRule"
	KindGroupDefinition     = "GroupDefinition"
)

// Object is one YAML document of a known kind.
type Object interface {
	// GetKind returns the document's kind.
	GetKind() string
	// GetName returns metadata.name.
	GetName() string
}

// TypeMeta is a document's apiVersion and kind.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta is the Kubernetes-style metadata of a document.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SecurityRule is the network, process and file policy of one group,
// confined to a namespace. ClusterSecurityRule is the same without the
// namespace.
type SecurityRule struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     SecurityRuleSpec `json:"spec"`
}

// GetKind implements Object.
func (r *SecurityRule) GetKind() string { return r.Kind }

// GetName implements Object.
func (r *SecurityRule) GetName() string { return r.Metadata.Name }

// SecurityRuleSpec is the spec of SecurityRule and ClusterSecurityRule.
type SecurityRuleSpec struct {
	Target         Target          `json:"target"`
	Ingress        []NetworkPolicy `json:"ingress,omitempty"`
	Egress         []NetworkPolicy `json:"egress,omitempty"`
	Process        []ProcessPolicy `json:"process,omitempty"`
	ProcessProfile *ProcessProfile `json:"processProfile,omitempty"`
	File           []FilePolicy    `json:"file,omitempty"`
}

// Target is the group a security rule is about, and its modes.
type Target struct {
	Selector Selector `json:"selector"`
	// Mode is the network mode: Discover, Monitor or Protect.
	Mode string `json:"mode,omitempty"`
	// ProcessMode is the process and file mode.
	ProcessMode string `json:"processMode,omitempty"`
}

// Selector names a group and, unless it refers to a group defined
// elsewhere, gives its criteria.
type Selector struct {
	Name     string      `json:"name"`
	Comment  string      `json:"comment,omitempty"`
	Criteria []Criterion `json:"criteria,omitempty"`
}

// Criterion is one group criterion. A key that is not a reserved word
// (namespace, domain, image, node, container, address, service) is a pod
// label; "ns:KEY" is a namespace label and "label:KEY" a pod label whose
// name is a reserved word.
type Criterion struct {
	Key   string `json:"key"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

// NetworkPolicy is one ingress or egress rule.
type NetworkPolicy struct {
	Name         string   `json:"name"`
	Comment      string   `json:"comment,omitempty"`
	Selector     Selector `json:"selector"`
	Ports        string   `json:"ports,omitempty"`
	Applications []string `json:"applications,omitempty"`
	Action       string   `json:"action"`
	Disabled     bool     `json:"disabled,omitempty"`
}

// ProcessPolicy is one process rule.
type ProcessPolicy struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Action string `json:"action"`
}

// ProcessProfile is the target's process baseline.
type ProcessProfile struct {
	// Baseline is basic or zeroDrift (zero-drift is accepted too).
	Baseline string `json:"baseline"`
}

// FilePolicy is one file rule.
type FilePolicy struct {
	Filter       string   `json:"filter"`
	Recursive    bool     `json:"recursive,omitempty"`
	Behavior     string   `json:"behavior"`
	Applications []string `json:"applications,omitempty"`
}

// AdmissionRule holds admission control settings and rules.
type AdmissionRule struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     AdmissionRuleSpec `json:"spec"`
}

// GetKind implements Object.
func (r *AdmissionRule) GetKind() string { return r.Kind }

// GetName implements Object.
func (r *AdmissionRule) GetName() string { return r.Metadata.Name }

// AdmissionRuleSpec is the spec of AdmissionRule.
type AdmissionRuleSpec struct {
	// Mode is monitor or protect.
	Mode string `json:"mode,omitempty"`
	// Enabled turns admission control on; unset means on.
	Enabled *bool            `json:"enabled,omitempty"`
	Rules   []AdmissionEntry `json:"rules,omitempty"`
}

// AdmissionEntry is one admission rule.
type AdmissionEntry struct {
	Name       string               `json:"name"`
	Action     string               `json:"action"`
	Comment    string               `json:"comment,omitempty"`
	Disabled   bool                 `json:"disabled,omitempty"`
	Containers []string             `json:"containers,omitempty"`
	Criteria   []AdmissionCriterion `json:"criteria"`
}

// AdmissionCriterion is one admission criterion.
type AdmissionCriterion struct {
	Name  string `json:"name"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

// GroupDefinition defines a group without rules.
type GroupDefinition struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta          `json:"metadata"`
	Spec     GroupDefinitionSpec `json:"spec"`
}

// GetKind implements Object.
func (g *GroupDefinition) GetKind() string { return g.Kind }

// GetName implements Object.
func (g *GroupDefinition) GetName() string { return g.Metadata.Name }

// GroupDefinitionSpec is the spec of GroupDefinition.
type GroupDefinitionSpec struct {
	Selector Selector `json:"selector"`
}
