// Command imagebuild makes the Palisade container image from a static
// palisade binary with go-containerregistry: an empty base plus one layer
// holding the binary, the CA certificates for registry scanning, a passwd
// entry for the non-root user and writable /tmp and /data directories.
//
// The image is reproducible: every timestamp is fixed (the Unix epoch, or
// SOURCE_DATE_EPOCH), file owners and modes are fixed, and the layer is
// written in a fixed order, so the same binary always gives the same digest.
// Its tag is the binary's version (the -X main.version it was linked with),
// and its labels are the org.opencontainers.image.* annotations.
//
// It writes an OCI image layout (a directory) and a tarball that "docker
// load" and "crane push" read, and pushes to a registry with --push.
//
// Usage:
//
//	go run ./deploy/imagebuild --binary bin/image/palisade --layout bin/palisade-image \
//	    --tarball bin/palisade-image.tar [--push REGISTRY/REPO[:TAG]] [--insecure]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

// run parses the command line, builds the image and writes or pushes it.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.StringVar(&cfg.Binary, "binary", cfg.Binary, "the static palisade binary (CGO_ENABLED=0)")
	fs.StringVar(&cfg.Repository, "repository", cfg.Repository, "the image repository the tag is made of")
	fs.StringVar(&cfg.Tag, "tag", cfg.Tag, "the image tag (default: the binary's version)")
	fs.StringVar(&cfg.Revision, "revision", cfg.Revision, "the source revision for the org.opencontainers.image.revision label")
	fs.StringVar(&cfg.Source, "source", cfg.Source, "the source URL for the org.opencontainers.image.source label")
	fs.StringVar(&cfg.CABundle, "ca-bundle", cfg.CABundle, "PEM CA certificates copied into the image (empty: none)")
	fs.Int64Var(&cfg.Epoch, "epoch", cfg.Epoch, "the fixed timestamp of every file and of the image, in Unix seconds")
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		if _, err := fmt.Sscan(v, &cfg.Epoch); err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: not a number of seconds", v)
		}
	}
	layoutDir := fs.String("layout", "", "write an OCI image layout to this directory (replaced)")
	tarPath := fs.String("tarball", "", "write an image tarball (docker load, crane push) to this file")
	push := fs.String("push", "", "push the image to this reference (REGISTRY/REPO[:TAG]; default tag: the image's)")
	insecure := fs.Bool("insecure", false, "push over plain HTTP (loopback registries always may)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *layoutDir == "" && *tarPath == "" && *push == "" {
		return fmt.Errorf("nothing to do: give --layout, --tarball or --push")
	}
	if _, err := os.Stat(cfg.CABundle); cfg.CABundle == caPath && err != nil {
		fmt.Fprintf(stdout, "no CA certificates at %s: the image cannot verify registries' TLS certificates\n", caPath)
		cfg.CABundle = ""
	}
	img, err := Build(cfg)
	if err != nil {
		return err
	}
	digest, err := img.Image.Digest()
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	if *layoutDir != "" {
		if err := WriteLayout(*layoutDir, img); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote OCI layout %s\n", *layoutDir)
	}
	if *tarPath != "" {
		if err := WriteTarball(*tarPath, img); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote image tarball %s\n", *tarPath)
	}
	if *push != "" {
		ref, err := Push(ctx, *push, img, *insecure)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", ref, digest)
	}
	fmt.Fprintf(stdout, "%s@%s\n", img.Ref, digest)
	return nil
}
