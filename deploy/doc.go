// Package deploy holds what installs Palisade on Kubernetes: the Helm chart
// in helm/palisade, the plain manifests rendered from it in manifests/ (for
// clusters without Helm), and the CustomResourceDefinitions generated from
// the policy-as-code types by crdgen. Its tests check that the generated
// CRDs and rendered manifests are current, lint and render the chart in its
// small and HA modes, and validate the output offline.
//
// Regenerate the CRDs with "go generate ./deploy" and the manifests with
// "scripts/chart-check.sh --update".
package deploy

//go:generate go run gen.go
