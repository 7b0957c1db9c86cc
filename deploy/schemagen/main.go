// Command schemagen writes the JSON schemas kubeconform validates
// Kubernetes manifests with, offline: one strict, standalone schema per kind
// and version of a real kube-apiserver's OpenAPI v2 document (GET
// /openapi/v2), and one per version of each CustomResourceDefinition in a
// folder of CRD manifests.
//
// The layout is the one openapi2jsonschema makes and kubeconform expects:
//
//	OUT/vX.Y.Z-standalone-strict/KIND-GROUP-VERSION.json  (kubeconform:
//	    -kubernetes-version X.Y.Z -schema-location
//	    'OUT/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json')
//	OUT/GROUP/KIND_VERSION.json                           (CRDs:
//	    -schema-location 'OUT/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json')
//
// KIND is lower case; GROUP in the first name is the group's first DNS
// label ("apps", "admissionregistration"), or nothing for the core group
// (pod-v1.json). "Standalone" means each file carries the definitions it
// refers to; "strict" means every object schema with properties rejects
// properties it does not list, as the API server does with
// fieldValidation=Strict.
//
// Usage:
//
//	schemagen [--openapi openapi-v2.json] [--crds DIR] [--kube-version vX.Y.Z] --out DIR
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
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("schemagen", flag.ContinueOnError)
	openapi := fs.String("openapi", "", "a kube-apiserver's OpenAPI v2 document (kubectl get --raw /openapi/v2)")
	crds := fs.String("crds", "", "a folder of CustomResourceDefinition manifests (*.yaml, *.yml, *.json)")
	kubeVersion := fs.String("kube-version", "", "the Kubernetes version in the folder name (default: the document's info.version)")
	out := fs.String("out", "", "the schema folder to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		return fmt.Errorf("--out: required")
	}
	if *openapi == "" && *crds == "" {
		return fmt.Errorf("nothing to do: give --openapi, --crds or both")
	}
	var files map[string][]byte
	if *openapi != "" {
		b, err := os.ReadFile(*openapi)
		if err != nil {
			return fmt.Errorf("read OpenAPI document: %w", err)
		}
		if files, err = FromOpenAPIV2(b, *kubeVersion); err != nil {
			return fmt.Errorf("%s: %w", *openapi, err)
		}
		fmt.Fprintf(stdout, "schemagen: %d built-in schemas from %s\n", len(files), *openapi)
	}
	if *crds != "" {
		crdFiles, err := FromCRDDir(*crds)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schemagen: %d custom resource schemas from %s\n", len(crdFiles), *crds)
		if files == nil {
			files = map[string][]byte{}
		}
		for k, v := range crdFiles {
			files[k] = v
		}
	}
	return Write(*out, files)
}
