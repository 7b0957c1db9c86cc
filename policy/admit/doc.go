// Package admit decides admission: given the admission rules, a pod's spec
// and the scan verdicts of its images, it says whether the pod may run,
// which rule decided, and why.
//
// Rules are evaluated in the order [policy.CompareAdmissionRules] gives
// (federated allow, federated deny, then policy as code and user rules the
// same way); the first rule whose criteria all hold decides. No match means
// allow. In monitor mode a matching deny rule is reported but the pod is
// allowed. The package is pure: the webhook maps AdmissionReview JSON to a
// [Request], and verdicts come from cached scan results.
package admit
