package containerd

import (
	"fmt"
	"path/filepath"
	"time"
)

// Config configures a Source.
type Config struct {
	// Socket is containerd's gRPC socket.
	Socket string
	// Namespace is the containerd namespace watched ("k8s.io" for
	// Kubernetes pods).
	Namespace string
	// HostNetns is the namespace that holds the host side of the veths
	// (where the datapath attaches); "" is this process's namespace.
	HostNetns string
	// ProcRoot is the host's /proc, where the tasks' network namespaces
	// and cgroups are read: the agent must see containerd's pids (run in
	// the host's PID namespace, or with the host's /proc mounted here).
	ProcRoot string
	// Resync is how often everything is listed again, besides the events;
	// it also picks up address changes inside the namespaces.
	Resync time.Duration
	// RetryInterval is the wait before subscribing again to the event
	// stream after it broke (containerd restarted, socket missing).
	RetryInterval time.Duration
	// CallTimeout bounds each list or get call.
	CallTimeout time.Duration
}

// DefaultConfig watches the k8s.io namespace on containerd's usual socket.
func DefaultConfig() Config {
	return Config{
		Socket:        "/run/containerd/containerd.sock",
		Namespace:     "k8s.io",
		ProcRoot:      "/proc",
		Resync:        2 * time.Second,
		RetryInterval: time.Second,
		CallTimeout:   5 * time.Second,
	}
}

// Validate reports the first problem of the configuration.
func (c Config) Validate() error {
	switch {
	case !filepath.IsAbs(c.Socket):
		return fmt.Errorf("containerd config: Socket %q is not absolute", c.Socket)
	case c.Namespace == "":
		return fmt.Errorf("containerd config: Namespace is empty")
	case c.HostNetns != "" && !filepath.IsAbs(c.HostNetns):
		return fmt.Errorf("containerd config: HostNetns %q is not absolute", c.HostNetns)
	case !filepath.IsAbs(c.ProcRoot):
		return fmt.Errorf("containerd config: ProcRoot %q is not absolute", c.ProcRoot)
	case c.Resync <= 0:
		return fmt.Errorf("containerd config: Resync %s is not positive", c.Resync)
	case c.RetryInterval <= 0:
		return fmt.Errorf("containerd config: RetryInterval %s is not positive", c.RetryInterval)
	case c.CallTimeout <= 0:
		return fmt.Errorf("containerd config: CallTimeout %s is not positive", c.CallTimeout)
	}
	return nil
}
