package admit

import "strings"

// Request is what admission looks at in a pod (or a pod template of a
// deployment, job, ...).
type Request struct {
	// Kind is the object kind ("Pod", "Deployment"), for messages.
	Kind string `json:"kind,omitempty"`
	// Name is the object name, for messages.
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// HostNetwork, HostPID and HostIPC are the pod's host namespace flags.
	HostNetwork bool `json:"hostNetwork,omitempty"`
	HostPID     bool `json:"hostPID,omitempty"`
	HostIPC     bool `json:"hostIPC,omitempty"`
	// RunAsUser and RunAsNonRoot are the pod-level security context;
	// a container's own settings override them.
	RunAsUser           *int64      `json:"runAsUser,omitempty"`
	RunAsNonRoot        *bool       `json:"runAsNonRoot,omitempty"`
	Containers          []Container `json:"containers"`
	InitContainers      []Container `json:"initContainers,omitempty"`
	EphemeralContainers []Container `json:"ephemeralContainers,omitempty"`
}

// Container is one container of the pod.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	// Privileged, AllowPrivilegeEscalation, RunAsUser and RunAsNonRoot
	// are the container's security context; nil is unset.
	Privileged               *bool  `json:"privileged,omitempty"`
	AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation,omitempty"`
	RunAsUser                *int64 `json:"runAsUser,omitempty"`
	RunAsNonRoot             *bool  `json:"runAsNonRoot,omitempty"`
	// Env are the container's environment variables.
	Env []EnvVar `json:"env,omitempty"`
	// CPULimit and MemoryLimit are the resource limits as written
	// ("500m", "256Mi"); empty is unset.
	CPULimit    string `json:"cpuLimit,omitempty"`
	MemoryLimit string `json:"memoryLimit,omitempty"`
}

// EnvVar is one environment variable. Only literal values can leak a
// secret: a value taken from a Secret or ConfigMap has FromRef set.
type EnvVar struct {
	Name    string `json:"name"`
	Value   string `json:"value,omitempty"`
	FromRef bool   `json:"fromRef,omitempty"`
}

// ImageVerdict is what the registry scan knows about an image.
type ImageVerdict struct {
	Scanned bool `json:"scanned"`
	Signed  bool `json:"signed"`
	// Registry overrides the registry parsed from the image reference.
	Registry string `json:"registry,omitempty"`
	// User is the image's configured user; empty is unknown.
	User            string   `json:"user,omitempty"`
	CriticalCount   int      `json:"criticalCount"`
	CriticalWithFix int      `json:"criticalWithFix"`
	HighCount       int      `json:"highCount"`
	HighWithFix     int      `json:"highWithFix"`
	MediumCount     int      `json:"mediumCount"`
	MediumWithFix   int      `json:"mediumWithFix"`
	CVENames        []string `json:"cveNames,omitempty"`
}

// Verdicts maps an image reference, as written in the pod spec, to its
// verdict. An image without a verdict counts as not scanned.
type Verdicts map[string]ImageVerdict

// imageRef is a parsed image reference.
type imageRef struct {
	registry, repo, tag, digest string
}

// parseImage splits a reference such as "quay.io/org/app:1.2@sha256:..."
// or "nginx" (docker.io/library/nginx).
func parseImage(ref string) imageRef {
	var r imageRef
	rest := ref
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		rest, r.digest = rest[:i], rest[i+1:]
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i:], "/") {
		rest, r.tag = rest[:i], rest[i+1:]
	}
	first, after, hasSlash := strings.Cut(rest, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		r.registry, r.repo = first, after
	} else {
		r.registry, r.repo = "docker.io", rest
	}
	if r.registry == "docker.io" && !strings.Contains(r.repo, "/") {
		r.repo = "library/" + r.repo
	}
	return r
}

// forms are the spellings an image criterion item is matched against:
// the reference as written, with and without registry and tag, and Docker
// Hub official images without "library/".
func (r imageRef) forms(raw string) []string {
	out := []string{raw, r.registry + "/" + r.repo, r.repo}
	if short, ok := strings.CutPrefix(r.repo, "library/"); ok {
		out = append(out, short)
		if r.tag != "" {
			out = append(out, short+":"+r.tag)
		}
	}
	if r.tag != "" {
		out = append(out, r.registry+"/"+r.repo+":"+r.tag, r.repo+":"+r.tag)
	}
	return out
}
