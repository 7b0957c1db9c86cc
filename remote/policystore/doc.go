// Package policystore keeps a controller cluster's security policy in the
// replicated store and builds the cluster's effective policy.Set from it:
// policy-as-code documents applied locally, read-only federated documents
// pushed by the primary, learned groups and rules, and mode settings.
//
// # Keys
//
//	policy/objects/<Kind>/<name>         a local palisade.dev/v1 document (JSON of
//	                                     the policy/code kind); a namespaced
//	                                     SecurityRule is <namespace>.<name>
//	federated/objects/<Kind>/<name>      a federated document, same form and
//	                                     naming; written by federation only
//	policy/learned/groups/<name>         a learned group (JSON of policy.Group)
//	policy/learned/rules/<name>          a learned rule (JSON of policy.NetworkRule)
//	policy/learned/processes/<name>      a learned process rule (JSON of
//	                                     policy.ProcessRule)
//	policy/modes/<group>                 a group's mode setting (JSON of Override);
//	                                     it wins over the mode a document gives
//	policy/defaults                      the default modes (JSON of policy.Defaults)
//	policy/revision                      bumped by every write of this package;
//	                                     writes are conditional on its ModRevision,
//	                                     so two writers cannot interleave
//
// [DocKey] computes the <Kind>/<name> part for a document. A namespace must
// be a DNS label (no dots), so the names cannot collide.
//
// # Sources and precedence
//
// Federated documents convert with source federated; each object carries the
// revision in the document's palisade.dev/revision annotation, or else the
// store revision that last wrote the document. Local documents convert with
// source code, learned objects keep source learned. The effective set takes
// federated objects first, then local, then learned: an object whose kind and
// name an earlier layer already has is shadowed (left out and listed in
// View.Shadowed), so federated objects always win and are never changed
// locally. Apply and SetMode refuse any write that would create, change or
// delete an object colliding with a federated one ([ReadOnlyError]).
//
// A built View is kept and handed out again while the keys it was built
// from are unchanged, so reads cost a listing, not a rebuild.
package policystore
