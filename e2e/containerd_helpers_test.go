package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/palisade-sec/palisade/e2e/harness"
)

// ctrNamespace is the containerd namespace of the test's containers, the
// one containerd's CRI plugin uses.
const ctrNamespace = "k8s.io"

// privateContainerd is a containerd of its own for one test: root, state
// and socket under the test's directory, no CRI plugin.
type privateContainerd struct {
	t    *testing.T
	dir  string
	Sock string
	proc *harness.Proc
}

// startContainerd starts a private containerd and registers its cleanup:
// containers are removed first (by the cleanups of run), then containerd
// is killed, leftover shims of this containerd are killed and mounts under
// dir are detached.
func startContainerd(t *testing.T, dir string) *privateContainerd {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := &privateContainerd{t: t, dir: dir, Sock: filepath.Join(dir, "containerd.sock")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Sock, c.Sock+".ttrpc")
	cfgFile := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killShims(c.Sock)
		detachMounts(dir)
	})
	c.proc = harness.Start(t, bin, dir, "containerd", "--config", cfgFile)
	harness.Eventually(t, 20*time.Second, "containerd serves", func() error {
		_, err := c.ctrOut("version")
		return err
	})
	return c
}

func (c *privateContainerd) ctrOut(args ...string) (string, error) {
	all := append([]string{"-a", c.Sock, "-n", ctrNamespace}, args...)
	out, err := exec.Command("ctr", all...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *privateContainerd) ctr(args ...string) string {
	c.t.Helper()
	out, err := c.ctrOut(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// importImage imports an OCI archive.
func (c *privateContainerd) importImage(archive string) {
	c.t.Helper()
	c.ctr("images", "import", "--snapshotter", "overlayfs", archive)
}

// run starts container id from image in the named network namespace with
// labels, and registers its removal.
func (c *privateContainerd) run(id, image, netns string, labels map[string]string) {
	c.t.Helper()
	args := []string{"run", "-d", "--snapshotter", "overlayfs", "--with-ns", "network:/var/run/netns/" + netns}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		args = append(args, "--label", k+"="+labels[k])
	}
	c.t.Cleanup(func() { c.remove(id) })
	c.ctr(append(args, image, id)...)
}

// stop kills container id's task and deletes the task, keeping the
// container.
func (c *privateContainerd) stop(id string) {
	c.t.Helper()
	c.ctrOut("task", "kill", "-s", "SIGKILL", id)
	harness.Eventually(c.t, 20*time.Second, "task "+id+" deleted", func() error {
		_, err := c.ctrOut("task", "delete", id)
		if err != nil && strings.Contains(err.Error(), "not found") {
			return nil
		}
		return err
	})
}

// remove kills and deletes container id, ignoring what is already gone.
func (c *privateContainerd) remove(id string) {
	c.ctrOut("task", "kill", "-s", "SIGKILL", id)
	for range 50 {
		if out, err := c.ctrOut("task", "delete", id); err == nil || strings.Contains(out, "not found") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.ctrOut("container", "delete", id)
}

// killShims kills the runc shims started for containerd socket sock (their
// command line names it); they outlive a killed containerd.
func killShims(sock string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && slices.Contains(args, sock) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// detachMounts lazily unmounts everything mounted under dir, deepest first.
func detachMounts(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mps = append(mps, f[4])
		}
	}
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mps {
		syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

// buildCtrServer builds the test images' static HTTP server.
func buildCtrServer(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "ctrserver")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, "./e2e/testdata/ctrserver")
	cmd.Dir = ".." // the repository, from the package folder
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ctrserver: %v\n%s", err, b)
	}
	return out
}

// serverImage builds an image running server as /server with NAME=name,
// with server also as /tool and the files of extra (by path in the image,
// with their directories), writes it as an OCI archive named ref, and
// returns the archive and the manifest digest.
func serverImage(t *testing.T, dir, server, ref, name string, extra map[string]string) (string, string) {
	t.Helper()
	bin, err := os.ReadFile(server)
	if err != nil {
		t.Fatal(err)
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	put := func(name string, mode int64, data []byte) {
		typ := byte(tar.TypeReg)
		if data == nil {
			typ = tar.TypeDir
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: typ, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	put("server", 0o755, bin)
	put("tool", 0o755, bin)
	dirs := map[string]bool{}
	for _, p := range slices.Sorted(maps.Keys(extra)) {
		rel := strings.TrimPrefix(filepath.Clean(p), "/")
		var parents []string
		for d := filepath.Dir(rel); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for _, d := range slices.Backward(parents) {
			put(d+"/", 0o755, nil)
		}
		put(rel, 0o644, []byte(extra[p]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layerBytes := layerTar.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/server"}
	cf.Config.Env = []string{"NAME=" + name}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(dir, name+"-layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"io.containerd.image.name": ref}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, name+".oci.tar")
	if err := tarDir(lay, archive); err != nil {
		t.Fatal(err)
	}
	return archive, digest.String()
}

// tarDir writes the regular files and directories under dir into a tar.
func tarDir(dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
