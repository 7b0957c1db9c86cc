// Package deploy holds what installs Palisade on Kubernetes: the Helm chart
// in helm/palisade, the plain manifests rendered from it in manifests/ (for
// clusters without Helm), and the CustomResourceDefinitions generated from
// the policy-as-code types by crdgen. imagebuild makes the container image
// the chart runs (make image); schemagen makes the JSON schemas kubeconform
// validates the chart with (scripts/chart-check.sh). Its tests check that
// the generated CRDs and rendered manifests are current, that the chart's
// default image is the one make image tags, lint and render the chart in
// its modes and validate the output offline, and run the documented backup
// and restore of a controller's data directory.
//
// Regenerate the CRDs with "go generate ./deploy" and the manifests with
// "scripts/chart-check.sh --update".
package deploy

//go:generate go run gen.go
