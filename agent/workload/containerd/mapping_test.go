package containerd

import (
	"errors"
	"fmt"
	"testing"

	"github.com/palisade-sec/palisade/agent/workload"
)

func TestGroup(t *testing.T) {
	pod := func(kind, cname string, extra map[string]string) map[string]string {
		l := map[string]string{LabelPodName: "orders-7f9", LabelPodNamespace: "shop", LabelKind: kind,
			"io.kubernetes.pod.uid": "u1"}
		if cname != "" {
			l[LabelContainerName] = cname
		}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	cs := []container{
		{ID: "sb1", Labels: pod("sandbox", "", map[string]string{"app": "orders", "tier": "front"}), Image: "registry.k8s.io/pause:3.9",
			Digest: "sha256:pause", Pid: 10, Cgroup: "/kubepods/podu1/sb1"},
		{ID: "c1", Labels: pod("container", "api", map[string]string{"app": "image-label", "maintainer": "image-label", "org.opencontainers.image.source": "x"}),
			Image: "shop/orders:1", Digest: "sha256:o1", Pid: 11, Cgroup: "/kubepods/podu1/c1"},
		{ID: "c2", Labels: pod("container", "log", nil), Image: "shop/log:2", Digest: "sha256:l2"}, // not running
		// A plain container without CRI labels.
		{ID: "web", Labels: map[string]string{"app": "web"}, Image: "web:1", Digest: "sha256:w", Pid: 20, Cgroup: "/default/web"},
		// Stopped: no workload.
		{ID: "gone", Image: "gone:1", Pid: 0},
		// A pod whose only running task is an app container.
		{ID: "c3", Labels: map[string]string{LabelPodName: "db", LabelPodNamespace: "shop", LabelContainerName: "pg", "app": "db"},
			Image: "postgres:16", Pid: 30},
		{ID: "c4", Labels: map[string]string{LabelPodName: "db", LabelPodNamespace: "shop", LabelContainerName: "exporter", "team": "data"},
			Image: "exporter:1", Pid: 31},
	}
	got := group("k8s.io", cs)
	want := map[string]struct {
		pid    uint32
		labels string
		images string
		cgroup string
	}{
		"shop/orders-7f9": {10, "map[app:orders tier:front]", "[{api shop/orders:1 sha256:o1} {log shop/log:2 sha256:l2}]", "/kubepods/podu1"},
		"k8s.io/web":      {20, "map[app:web]", "[{web web:1 sha256:w}]", "/default/web"},
		"shop/db":         {30, "map[app:db team:data]", "[{exporter exporter:1 } {pg postgres:16 }]", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d workloads %v, want %d", len(got), got, len(want))
	}
	for id, w := range want {
		c, ok := got[id]
		if !ok {
			t.Errorf("workload %s missing", id)
			continue
		}
		if c.Pid != w.pid || fmt.Sprint(c.Endpoint.Labels) != w.labels || fmt.Sprint(c.Endpoint.Images) != w.images ||
			c.Endpoint.Cgroup != w.cgroup {
			t.Errorf("%s: pid %d labels %v images %v cgroup %q, want %d %s %s %q", id, c.Pid, c.Endpoint.Labels,
				c.Endpoint.Images, c.Endpoint.Cgroup, w.pid, w.labels, w.images, w.cgroup)
		}
		if c.Endpoint.ID() != id {
			t.Errorf("%s: endpoint ID %s", id, c.Endpoint.ID())
		}
	}
}

func TestPodLabels(t *testing.T) {
	in := map[string]string{"app": "a", "io.kubernetes.pod.uid": "u", "io.cri-containerd.kind": "sandbox",
		"io.containerd.image.config.stop-signal": "SIGTERM", "org.opencontainers.image.title": "t", "": "empty", "team/x": "y"}
	got := podLabels(in)
	if fmt.Sprint(got) != "map[app:a team/x:y]" {
		t.Errorf("podLabels = %v", got)
	}
	if podLabels(map[string]string{LabelPodName: "p"}) != nil {
		t.Errorf("only reserved labels should give nil")
	}
}

func TestCommonCgroup(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"/a/b/c"}, "/a/b/c"},
		{[]string{"/a/b/c", "/a/b/d"}, "/a/b"},
		{[]string{"/a/bc", "/a/b"}, "/a"},
		{[]string{"/x", "/y"}, "/"},
	}
	for _, tc := range tests {
		if got := commonCgroup(tc.in); got != tc.want {
			t.Errorf("commonCgroup(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"0::/default/web\n", "/default/web", true},
		{"12:memory:/default/web\n1:name=systemd:/x\n0::/default/web\n", "/default/web", true},
		{"0::/\n", "/", true},
		{"0::/kubepods/gone (deleted)\n", "/kubepods/gone", true},
		{"12:memory:/default/web\n", "", false},
		{"0::relative\n", "", false},
		{"0::/a/../b\n", "", false},
		{"0::\n", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, err := ParseProcCgroup([]byte(tc.in))
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseProcCgroup(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, ErrBadCgroupFile) {
			t.Errorf("ParseProcCgroup(%q) = %q, %v; want ErrBadCgroupFile", tc.in, got, err)
		}
	}
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte("0::/default/web\n"))
	f.Add([]byte("12:memory:/a\n0::/a/b (deleted)\n"))
	f.Add([]byte("0::/../x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProcCgroup(data)
		if err != nil {
			return
		}
		if p == "" || workload.ValidateCgroup(p) != nil {
			t.Fatalf("accepted bad cgroup %q", p)
		}
	})
}

func TestSpecCgroup(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"linux":{"cgroupsPath":"/default/web"}}`, "/default/web"},
		{`{"linux":{"cgroupsPath":"kubepods.slice:cri-containerd:abc"}}`, ""},
		{`{"linux":{"cgroupsPath":"/a/../b"}}`, ""},
		{`{"process":{}}`, ""},
		{`not json`, ""},
		{``, ""},
	}
	for _, tc := range tests {
		if got := specCgroup([]byte(tc.in)); got != tc.want {
			t.Errorf("specCgroup(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRelevant(t *testing.T) {
	tests := []struct {
		ns, topic string
		want      bool
	}{
		{"k8s.io", "/tasks/start", true},
		{"k8s.io", "/tasks/exit", true},
		{"k8s.io", "/tasks/delete", true},
		{"k8s.io", "/containers/create", true},
		{"k8s.io", "/containers/delete", true},
		{"k8s.io", "/images/update", true},
		{"k8s.io", "/snapshot/prepare", false},
		{"k8s.io", "/content/delete", false},
		{"default", "/tasks/start", false},
	}
	for _, tc := range tests {
		if got := relevant("k8s.io", tc.ns, tc.topic); got != tc.want {
			t.Errorf("relevant(%s, %s) = %v, want %v", tc.ns, tc.topic, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := []func(*Config){
		func(c *Config) { c.Socket = "containerd.sock" },
		func(c *Config) { c.Namespace = "" },
		func(c *Config) { c.HostNetns = "node" },
		func(c *Config) { c.ProcRoot = "proc" },
		func(c *Config) { c.Resync = 0 },
		func(c *Config) { c.RetryInterval = -1 },
		func(c *Config) { c.CallTimeout = 0 },
	}
	for i, mut := range bad {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, c)
		}
	}
}

func TestImageList(t *testing.T) {
	got := imageList([]workload.Image{{Container: "api", Name: "shop/orders:1", Digest: "sha256:ab"}, {Container: "log", Name: "log:2"}})
	if want := "api=shop/orders:1@sha256:ab,log=log:2"; got != want {
		t.Errorf("imageList = %q, want %q", got, want)
	}
}
