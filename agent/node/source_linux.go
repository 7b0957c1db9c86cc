//go:build linux

package node

import (
	"context"
	"fmt"

	"github.com/palisade-sec/palisade/agent/workload"
	"github.com/palisade-sec/palisade/agent/workload/containerd"
)

// Workload sources.
const (
	SourceNetns      = "netns"      // the workloads file and named network namespaces
	SourceContainerd = "containerd" // containerd's API
)

// workloadSource reports workload changes until ctx ends.
type workloadSource interface {
	Run(ctx context.Context, fn func(workload.Change)) error
}

// validateSource checks the chosen source and its configuration.
func (c *Config) validateSource() error {
	switch c.Source {
	case SourceNetns:
		return c.Workloads.Validate()
	case SourceContainerd:
		cc := c.Containerd
		cc.HostNetns = c.Workloads.HostNetns
		return cc.Validate()
	}
	return fmt.Errorf("node: config: Source %q is not %q or %q", c.Source, SourceNetns, SourceContainerd)
}

// newSource builds the configured workload source.
func (a *Agent) newSource() (workloadSource, error) {
	if a.cfg.Source == SourceContainerd {
		cc := a.cfg.Containerd
		cc.HostNetns = a.cfg.Workloads.HostNetns
		return containerd.New(cc, a.log)
	}
	return workload.New(a.cfg.Workloads, a.log)
}
