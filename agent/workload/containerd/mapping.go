package containerd

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/agent/workload"
)

// CRI labels set by containerd's CRI plugin on every container of a pod.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelContainerName = "io.kubernetes.container.name"
	LabelKind          = "io.cri-containerd.kind" // "sandbox" or "container"
)

// reserved says whether a label key belongs to the runtime or to
// Kubernetes itself, never a pod label.
func reserved(k string) bool {
	for _, p := range []string{"io.kubernetes.", "io.cri-containerd.", "io.containerd.", "org.opencontainers."} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return k == ""
}

// ErrBadCgroupFile is wrapped by the errors of ParseProcCgroup.
var ErrBadCgroupFile = errors.New("containerd: bad /proc/PID/cgroup")

// container is what a scan found of one container.
type container struct {
	ID     string
	Labels map[string]string
	Image  string
	Digest string // the image's target digest; "" if unknown
	Pid    uint32 // the running task's pid; 0 if no task runs
	Cgroup string // the running task's cgroup v2 path; "" if unknown
}

// candidate is a workload before its network namespace is read.
type candidate struct {
	Endpoint workload.Endpoint // without interfaces
	Pid      uint32            // a task whose network namespace is the workload's
}

// podLabels keeps the labels that are not the runtime's or Kubernetes'.
func podLabels(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if reserved(k) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// workloadOf names the workload a container belongs to: its pod for CRI
// containers, else the container itself in the containerd namespace.
func workloadOf(ns string, c container) (name, namespace string) {
	if n, pns := c.Labels[LabelPodName], c.Labels[LabelPodNamespace]; n != "" && pns != "" {
		return n, pns
	}
	return c.ID, ns
}

// group maps the containers of containerd namespace ns to workloads keyed
// by ID. Only workloads with a running task are kept. A pod's labels are
// its sandbox's non-reserved labels, or without a sandbox the union of its
// containers';
// its images are its non-sandbox containers'; its network namespace is the
// sandbox task's, else the first running container's; its cgroup is the
// deepest cgroup holding every running task.
func group(ns string, cs []container) map[string]candidate {
	cs = slices.Clone(cs)
	// Sandboxes last so their labels win; then by ID for a stable result.
	slices.SortFunc(cs, func(a, b container) int {
		as, bs := a.Labels[LabelKind] == "sandbox", b.Labels[LabelKind] == "sandbox"
		if as != bs {
			if as {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.ID, b.ID)
	})
	type acc struct {
		cand     candidate
		sandbox  bool
		cgroups  []string
		nonEmpty bool
	}
	pods := map[string]*acc{}
	for _, c := range cs {
		name, namespace := workloadOf(ns, c)
		w := workload.Workload{Name: name, Namespace: namespace}
		p := pods[w.ID()]
		if p == nil {
			p = &acc{cand: candidate{Endpoint: workload.Endpoint{Workload: w}}}
			pods[w.ID()] = p
		}
		sandbox := c.Labels[LabelKind] == "sandbox"
		if sandbox {
			// The sandbox carries the pod's labels; the app containers'
			// may hold their images' labels too.
			p.cand.Endpoint.Labels = podLabels(c.Labels)
		} else if l := podLabels(c.Labels); len(l) > 0 {
			if p.cand.Endpoint.Labels == nil {
				p.cand.Endpoint.Labels = map[string]string{}
			}
			maps.Copy(p.cand.Endpoint.Labels, l)
		}
		if !sandbox && c.Image != "" {
			cname := cmp.Or(c.Labels[LabelContainerName], c.ID)
			p.cand.Endpoint.Images = append(p.cand.Endpoint.Images, workload.Image{Container: cname, Name: c.Image, Digest: c.Digest})
		}
		if c.Pid == 0 {
			continue
		}
		if p.cand.Pid == 0 || (sandbox && !p.sandbox) {
			p.cand.Pid, p.sandbox = c.Pid, sandbox
		}
		if c.Cgroup != "" {
			p.cgroups = append(p.cgroups, c.Cgroup)
		} else {
			p.nonEmpty = true // a running task of unknown cgroup
		}
	}
	out := map[string]candidate{}
	for id, p := range pods {
		if p.cand.Pid == 0 {
			continue
		}
		if !p.nonEmpty {
			p.cand.Endpoint.Cgroup = commonCgroup(p.cgroups)
		}
		slices.SortFunc(p.cand.Endpoint.Images, func(a, b workload.Image) int {
			return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Name, b.Name))
		})
		out[id] = p.cand
	}
	return out
}

// commonCgroup is the deepest cgroup that holds every path of ps; "" for
// none.
func commonCgroup(ps []string) string {
	if len(ps) == 0 {
		return ""
	}
	common := strings.Split(ps[0], "/")
	for _, p := range ps[1:] {
		parts := strings.Split(p, "/")
		n := 0
		for n < len(common) && n < len(parts) && common[n] == parts[n] {
			n++
		}
		common = common[:n]
	}
	if s := strings.Join(common, "/"); s != "" {
		return s
	}
	return "/"
}

// ParseProcCgroup returns the cgroup v2 path of a /proc/PID/cgroup file
// (its "0::PATH" line; other lines are cgroup v1 hierarchies). It fails
// when the file has no valid v2 entry.
func ParseProcCgroup(data []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "0::")
		if !ok {
			continue
		}
		// A deleted cgroup is reported with a " (deleted)" suffix.
		rest = strings.TrimSuffix(rest, " (deleted)")
		if err := workload.ValidateCgroup(rest); err != nil || rest == "" {
			return "", fmt.Errorf("%w: v2 entry %q", ErrBadCgroupFile, rest)
		}
		return rest, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadCgroupFile, err)
	}
	return "", fmt.Errorf("%w: no cgroup v2 entry", ErrBadCgroupFile)
}

// specCgroup returns linux.cgroupsPath of an OCI runtime spec when it is
// a plain absolute path (the systemd driver's "slice:prefix:name" is not).
func specCgroup(spec []byte) string {
	var s struct {
		Linux *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if len(spec) == 0 || json.Unmarshal(spec, &s) != nil || s.Linux == nil {
		return ""
	}
	if workload.ValidateCgroup(s.Linux.CgroupsPath) != nil {
		return ""
	}
	return s.Linux.CgroupsPath
}

// relevant says whether an event of namespace ns and topic calls for a
// new listing of namespace want.
func relevant(want, ns, topic string) bool {
	if ns != want {
		return false
	}
	switch topic {
	case "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete", "/tasks/oom",
		"/containers/create", "/containers/update", "/containers/delete", "/images/update":
		return true
	}
	return false
}

// imageList formats images as "container=name@digest" joined by commas.
func imageList(images []workload.Image) string {
	var b strings.Builder
	for i, im := range images {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(im.Container + "=" + im.Name)
		if im.Digest != "" {
			b.WriteString("@" + im.Digest)
		}
	}
	return b.String()
}
