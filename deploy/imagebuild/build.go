package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and the user inside the image.
const (
	// BinaryPath is where the palisade binary lives in the image.
	BinaryPath = "/usr/local/bin/palisade"
	// NonRootUID is the image's default user and group (the controller and
	// the CLI run as it; the agent needs root and sets runAsUser: 0).
	NonRootUID = 65532
	caPath     = "/etc/ssl/certs/ca-certificates.crt"
)

// Config says what goes into the image.
type Config struct {
	// Binary is the static palisade binary (linked with CGO_ENABLED=0).
	Binary string
	// Repository is the image's repository; the image is tagged
	// Repository:Tag.
	Repository string
	// Tag is the image's tag; empty takes the binary's version.
	Tag string
	// Revision is the source revision recorded in the
	// org.opencontainers.image.revision label (empty: no label).
	Revision string
	// Source is the source repository URL recorded in the
	// org.opencontainers.image.source label.
	Source string
	// CABundle is a PEM file of CA certificates copied to
	// /etc/ssl/certs/ca-certificates.crt, so that registry scanning can
	// verify registries' certificates (empty: none).
	CABundle string
	// Epoch is the timestamp of every file and of the image itself, in Unix
	// seconds; a fixed value makes the image reproducible.
	Epoch int64
}

// DefaultConfig returns the configuration of `make image`.
func DefaultConfig() Config {
	return Config{
		Binary:     "bin/image/palisade",
		Repository: "ghcr.io/palisade-sec/palisade",
		Source:     "https://github.com/palisade-sec/palisade",
		CABundle:   caPath,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Binary == "" {
		return errors.New("binary: empty")
	}
	if _, err := name.NewRepository(c.Repository); err != nil {
		return fmt.Errorf("repository %q: %w", c.Repository, err)
	}
	if c.Tag != "" {
		if _, err := name.NewTag(c.Repository + ":" + c.Tag); err != nil {
			return fmt.Errorf("tag %q: %w", c.Tag, err)
		}
	}
	if c.Epoch < 0 {
		return fmt.Errorf("epoch %d: negative", c.Epoch)
	}
	return nil
}

// Image is a built image and what it is tagged.
type Image struct {
	// Ref is Repository:Tag.
	Ref name.Tag
	// Version is the binary's version.
	Version string
	// Image is the image itself.
	Image v1.Image
}

// BinaryInfo is what the image takes from the binary's build information.
type BinaryInfo struct {
	// Version is the -X main.version the binary was linked with ("dev"
	// without one, like the binary itself).
	Version string
	// OS and Arch are the binary's GOOS and GOARCH.
	OS, Arch string
}

var ldflagsVersion = regexp.MustCompile(`-X[= ]['"]?main\.version=([^\s'"]+)`)

// versionFromLDFlags returns the value of -X main.version in a binary's
// -ldflags build setting, or "" without one.
func versionFromLDFlags(ldflags string) string {
	m := ldflagsVersion.FindStringSubmatch(ldflags)
	if m == nil {
		return ""
	}
	return m[1]
}

// ReadBinaryInfo reads path's Go build information. It fails for a binary
// that is not static (built with cgo), which an empty base cannot run.
func ReadBinaryInfo(path string) (BinaryInfo, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return BinaryInfo{}, fmt.Errorf("read build info of %s: %w", path, err)
	}
	var info BinaryInfo
	cgo := ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "-ldflags":
			info.Version = versionFromLDFlags(s.Value)
			if info.Version == "" {
				info.Version = "dev"
			}
		case "GOOS":
			info.OS = s.Value
		case "GOARCH":
			info.Arch = s.Value
		case "CGO_ENABLED":
			cgo = s.Value
		}
	}
	if cgo != "0" {
		return BinaryInfo{}, fmt.Errorf("%s is not a static binary (CGO_ENABLED=%q): build it with CGO_ENABLED=0", path, cgo)
	}
	if info.OS == "" || info.Arch == "" {
		return BinaryInfo{}, fmt.Errorf("%s: build info has no GOOS or GOARCH", path)
	}
	if info.Version == "" {
		// -trimpath leaves -ldflags out of the build info: ask the binary.
		if info.OS != runtime.GOOS || info.Arch != runtime.GOARCH {
			return BinaryInfo{}, fmt.Errorf("%s: a %s/%s binary built with -trimpath: its version cannot be read here; give a tag", path, info.OS, info.Arch)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, "version").Output()
		if err != nil {
			return BinaryInfo{}, fmt.Errorf("%s version: %w", path, err)
		}
		v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "palisade ")
		if !ok || v == "" || strings.ContainsAny(v, " \n") {
			return BinaryInfo{}, fmt.Errorf("%s version: unexpected output %q", path, out)
		}
		info.Version = v
	}
	return info, nil
}

// Build makes the image from cfg. The same configuration and binary always
// give the same digest.
func Build(cfg Config) (*Image, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	info, err := ReadBinaryInfo(cfg.Binary)
	if err != nil {
		return nil, err
	}
	tag := cfg.Tag
	if tag == "" {
		tag = info.Version
	}
	ref, err := name.NewTag(cfg.Repository + ":" + tag)
	if err != nil {
		return nil, fmt.Errorf("image tag from version %q: %w", tag, err)
	}
	bin, err := os.ReadFile(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	var ca []byte
	if cfg.CABundle != "" {
		if ca, err = os.ReadFile(cfg.CABundle); err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
	}
	when := time.Unix(cfg.Epoch, 0).UTC()
	layerTar, err := rootfs(bin, ca, when)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: when},
			CreatedBy: "imagebuild: palisade " + info.Version,
			Comment:   "the palisade binary, CA certificates, /etc/passwd, /tmp and /data",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = info.OS, info.Arch
	cf.Created = v1.Time{Time: when}
	labels := map[string]string{
		"org.opencontainers.image.title":       "palisade",
		"org.opencontainers.image.description": "Palisade: cluster controller, federation primary, node agent and CLI in one binary",
		"org.opencontainers.image.version":     info.Version,
		"org.opencontainers.image.source":      cfg.Source,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     when.Format(time.RFC3339),
	}
	if cfg.Revision != "" {
		labels["org.opencontainers.image.revision"] = cfg.Revision
	}
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"help"},
		Env:        []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + caPath},
		User:       fmt.Sprintf("%d:%d", NonRootUID, NonRootUID),
		WorkingDir: "/",
		Labels:     labels,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	annotated, ok := mutate.Annotations(img, labels).(v1.Image)
	if !ok {
		return nil, errors.New("imagebuild: annotated image is not an image")
	}
	return &Image{Ref: ref, Version: info.Version, Image: annotated}, nil
}

// rootfs returns the image's one layer as an uncompressed tar, every entry
// with the same time, fixed owners and modes, in a fixed order.
func rootfs(bin, ca []byte, when time.Time) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRootUID, NonRootUID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRootUID)
	type entry struct {
		path     string
		mode     int64
		uid      int
		contents []byte
		dir      bool
	}
	entries := []entry{
		{path: "data/", mode: 0o755, uid: NonRootUID, dir: true},
		{path: "etc/", mode: 0o755, dir: true},
		{path: "etc/group", mode: 0o644, contents: []byte(group)},
		{path: "etc/passwd", mode: 0o644, contents: []byte(passwd)},
	}
	if ca != nil {
		entries = append(entries,
			entry{path: "etc/ssl/", mode: 0o755, dir: true},
			entry{path: "etc/ssl/certs/", mode: 0o755, dir: true},
			entry{path: strings.TrimPrefix(caPath, "/"), mode: 0o644, contents: ca})
	}
	entries = append(entries,
		entry{path: "home/", mode: 0o755, dir: true},
		entry{path: "home/nonroot/", mode: 0o700, uid: NonRootUID, dir: true},
		entry{path: "tmp/", mode: 0o1777, dir: true},
		entry{path: "usr/", mode: 0o755, dir: true},
		entry{path: "usr/local/", mode: 0o755, dir: true},
		entry{path: "usr/local/bin/", mode: 0o755, dir: true},
		entry{path: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, contents: bin},
	)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:     e.path,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.uid,
			ModTime:  when,
			Format:   tar.FormatPAX,
			Typeflag: tar.TypeReg,
			Size:     int64(len(e.contents)),
		}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.path, err)
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteLayout writes img as the only image of a new OCI image layout in
// dir, replacing what was there.
func WriteLayout(dir string, img *Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("replace layout %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	err = p.AppendImage(img.Image, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": img.Ref.TagStr(),
		"io.containerd.image.name":          img.Ref.Name(),
	}))
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes img as an image tarball (the format of docker save,
// read by docker load and crane push).
func WriteTarball(path string, img *Image) error {
	if err := tarball.WriteToFile(path, img.Ref, img.Image); err != nil {
		return fmt.Errorf("tarball %s: %w", path, err)
	}
	return nil
}

// Push writes img to the registry named by ref (REGISTRY/REPO[:TAG]; without
// a tag, the image's own). Loopback registries are spoken to over HTTP;
// insecure allows it for any registry. Credentials come from the Docker
// config (docker login, crane auth login).
func Push(ctx context.Context, ref string, img *Image, insecure bool) (name.Tag, error) {
	tag, err := pushRef(ref, img.Ref.TagStr(), insecure)
	if err != nil {
		return name.Tag{}, err
	}
	if err := remote.Write(tag, img.Image, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return name.Tag{}, fmt.Errorf("push %s: %w", tag, err)
	}
	return tag, nil
}

// pushRef parses a push reference, REGISTRY/REPO[:TAG], giving it
// defaultTag when it has none.
func pushRef(ref, defaultTag string, insecure bool) (name.Tag, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if strings.Contains(ref, "@") {
		return name.Tag{}, fmt.Errorf("push reference %q: a digest cannot be pushed to; give REGISTRY/REPO[:TAG]", ref)
	}
	if i := strings.LastIndex(ref, ":"); i <= strings.LastIndex(ref, "/") {
		ref += ":" + defaultTag
	}
	tag, err := name.NewTag(ref, append(opts, name.StrictValidation)...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("push reference %q: %w", ref, err)
	}
	return tag, nil
}
