// Package code reads and writes policy as code: Kubernetes-style YAML kinds
// under palisade.dev/v1 (SecurityRule, ClusterSecurityRule, AdmissionRule,
// GroupDefinition), for export, import, review in Git and dry-run plans. It
// also imports NeuVector's exported NvSecurityRule, NvClusterSecurityRule,
// NvGroupDefinition and NvAdmissionControlSecurityRule YAML, reporting
// whatever cannot be carried over.
package code
