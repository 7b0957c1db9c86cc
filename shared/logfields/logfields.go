// Package logfields names the structured-log fields every Palisade
// component uses, so that logs from controllers, agents and the federation
// hub can be searched with one vocabulary.
package logfields

// Field names for log/slog attributes.
const (
	Component = "component"
	Error     = "err"
	Node      = "node"
	Replica   = "replica"
	Leader    = "leader"
	Address   = "addr"
	Revision  = "rev"
	Cluster   = "cluster"
	User      = "user"
	Role      = "role"
	Method    = "method"
	Path      = "path"
	Status    = "status"
	Duration  = "dur"
	Remote    = "remote"
	Count     = "count"
)
