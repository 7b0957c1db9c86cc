// Package scanning is a controller's registry scanning module: the
// registries to scan, kept in the cluster's replicated store; a scheduler
// that runs on the Raft leader only and scans each registry at its interval
// across workers (least-loaded first, relative to each worker's slots),
// retrying failed images with exponential backoff; the results, stored by
// image digest in the compact verdict format admission reads
// (remote/admission/verdict); and the API routes to configure registries
// and query results.
//
// Workers are in process (Config.Workers, `palisade controller
// --scan-workers N`) or remote: `palisade scanner` processes (package
// worker) that enrol with a scanner token and long-poll the leader for
// jobs over the controller API (POST /v1/scanners/poll; followers proxy to
// the leader, so workers follow leader changes). A remote worker lists
// registries and pulls layers itself and returns inventories, which the
// leader matches against its feed, caches as full reports and stores; it
// never receives layer bytes. A worker that stops polling for
// WorkerTimeout, or restarts without the jobs it held, loses them: its
// queued tasks go to other workers and the jobs it held are failed
// attempts, retried with backoff elsewhere. Tasks dispatched while there
// is no worker at all wait for the first one to connect.
//
// Registries may need credentials (basic or bearer), set with PUT
// /v1/registries/NAME/credentials and kept sealed (AES-256-GCM under a key
// derived from the cluster CA; see credentials.go for the threat model).
// The API never returns them; a registry only says "auth": "basic". They
// are decrypted on the leader when a pass starts and handed to a remote
// worker only inside the jobs of that pass.
//
// Keyspace (in the cluster's store):
//
//	scan/registries/NAME     a configured registry (Registry)
//	scan/credentials/NAME    its sealed credentials
//	scan/status/NAME         the outcome of its last scan (Status)
//	scan/requests/NAME       a request to scan NAME now
//	scan/results/DIGEST      this cluster's result (verdict.Verdict JSON)
//	scan/refs/REF            the digest REF (repository:tag) was last scanned at (RefEntry)
//	scan/failures/REF        the last failure to scan REF (Failure)
//	scan/fedowners/DIGEST    the federated registries that put DIGEST in the stream (Owners)
//	scan/workertokens/ID     a scanner enrolment token (hash of its secret, expiry)
//	scan/workers/ID          an enrolled scanner worker (hash of its credential)
//	fed/stream/scan/DIGEST   on a primary, a federated registry's result,
//	                         which every remote receives as federated/scan/DIGEST
//
// A federated registry (Registry.Federated, primary clusters only) is
// scanned by the primary once; its results are written under
// fed/stream/scan/ and reach every remote through the federation stream.
// A remote's scheduler never scans a digest it holds under federated/scan/.
// When a federated registry is deleted, the leader withdraws from the
// stream every result no other federated registry owns (the remotes drop
// them with the stream's delete), and the ref index entries and
// credentials of deleted registries.
//
// Layer inventories and full reports are cached in a directory
// (scan.DirCache), so a digest is never pulled twice, even across restarts.
package scanning
