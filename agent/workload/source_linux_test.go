//go:build linux

package workload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func TestPrivilegedSourceFollowsWorkloads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	p := fmt.Sprintf("plw%d", os.Getpid()%100000)
	host, web := p+"h", p+"w"
	for _, ns := range []string{host, web} {
		ip(t, "netns", "add", ns)
		name := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	}
	ip(t, "-n", host, "link", "add", "vweb", "type", "veth", "peer", "name", "eth0", "netns", web)
	ip(t, "-n", web, "addr", "add", "10.199.3.2/24", "dev", "eth0")
	ip(t, "-n", web, "addr", "add", "fd99:3::2/64", "dev", "eth0", "nodad")
	ip(t, "-n", web, "link", "set", "eth0", "up")
	ip(t, "-n", host, "link", "set", "vweb", "up")

	file := filepath.Join(t.TempDir(), "workloads.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatalf("write workloads: %v", err)
		}
	}
	write("- {name: web, namespace: shop, netns: " + web + ", labels: {app: web}}\n")

	cfg := DefaultConfig()
	cfg.File = file
	cfg.HostNetns = "/var/run/netns/" + host
	cfg.Interval = 50 * time.Millisecond
	src, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("new source: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Change, 64)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(c Change) { changes <- c }) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func(want ChangeKind) Change {
		t.Helper()
		select {
		case c := <-changes:
			if c.Kind != want {
				t.Fatalf("change %v %+v, want %v", c.Kind, c.Endpoint, want)
			}
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v change", want)
		}
		return Change{}
	}

	c := next(Added)
	if len(c.Endpoint.Interfaces) != 1 {
		t.Fatalf("interfaces %+v, want eth0 only", c.Endpoint.Interfaces)
	}
	ifc := c.Endpoint.Interfaces[0]
	out, err := exec.Command("ip", "-n", host, "-o", "link", "show", "vweb").Output()
	if err != nil {
		t.Fatalf("show vweb: %v", err)
	}
	var hostIdx int
	fmt.Sscanf(string(out), "%d:", &hostIdx)
	if ifc.Name != "eth0" || ifc.Kind != "veth" || ifc.HostIf != hostIdx || ifc.HostIfN != "vweb" {
		t.Errorf("interface %+v: want eth0 veth with host peer vweb (%d)", ifc, hostIdx)
	}
	// The addresses of both ends of the veth, as ip reports them.
	mac := func(ns, dev string) string {
		t.Helper()
		out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", dev).Output()
		if err != nil {
			t.Fatalf("show %s: %v", dev, err)
		}
		f := strings.Fields(string(out))
		for i := range f[:len(f)-1] {
			if f[i] == "link/ether" {
				return f[i+1]
			}
		}
		t.Fatalf("no link/ether address for %s: %s", dev, out)
		return ""
	}
	if got, want := ifc.MAC.String(), mac(web, "eth0"); got != want {
		t.Errorf("interface MAC %s, want %s", got, want)
	}
	if got, want := ifc.HostMAC.String(), mac(host, "vweb"); got != want {
		t.Errorf("host-side MAC %s, want %s", got, want)
	}
	wantAddrs := []netip.Prefix{netip.MustParsePrefix("10.199.3.2/24"), netip.MustParsePrefix("fd99:3::2/64")}
	if got := c.Endpoint.Addrs(); fmt.Sprint(got) != fmt.Sprint(wantAddrs) {
		t.Errorf("addresses %v, want %v", got, wantAddrs)
	}

	ip(t, "-n", web, "addr", "add", "10.199.3.3/24", "dev", "eth0")
	if c := next(Updated); len(c.Endpoint.Addrs()) != 3 {
		t.Errorf("after adding an address: %v", c.Endpoint.Addrs())
	}

	write("- {name: web, namespace: shop, netns: " + web + ", labels: {app: web, tier: front}}\n")
	if c := next(Updated); c.Endpoint.Labels["tier"] != "front" {
		t.Errorf("labels %v after edit", c.Endpoint.Labels)
	}

	// A bad file is rejected and the previous list stays.
	write("- {name: web, namespace: shop, netns: ../escape}\n")
	select {
	case c := <-changes:
		t.Fatalf("bad file caused change %v %+v", c.Kind, c.Endpoint)
	case <-time.After(300 * time.Millisecond): // several polls
	}
	write("[]\n")
	if c := next(Removed); c.Endpoint.Name != "web" {
		t.Errorf("removed %+v", c.Endpoint)
	}
}
