// Package scanning is a controller's registry scanning module: the
// registries to scan, kept in the cluster's replicated store; a scheduler
// that runs on the Raft leader only and scans each registry at its interval
// across in-process workers (least-loaded first), retrying failed images
// with exponential backoff; the results, stored by image digest in the
// compact verdict format admission reads (remote/admission/verdict); and
// the API routes to configure registries and query results.
//
// Keyspace (in the cluster's store):
//
//	scan/registries/NAME     a configured registry (Registry)
//	scan/status/NAME         the outcome of its last scan (Status)
//	scan/requests/NAME       a request to scan NAME now
//	scan/results/DIGEST      this cluster's result (verdict.Verdict JSON)
//	scan/refs/REF            the digest REF (repository:tag) was last scanned at (RefEntry)
//	scan/failures/REF        the last failure to scan REF (Failure)
//	fed/stream/scan/DIGEST   on a primary, a federated registry's result,
//	                         which every remote receives as federated/scan/DIGEST
//
// A federated registry (Registry.Federated, primary clusters only) is
// scanned by the primary once; its results are written under
// fed/stream/scan/ and reach every remote through the federation stream.
// A remote's scheduler never scans a digest it holds under federated/scan/.
//
// Layer inventories and full reports are cached in a directory
// (scan.DirCache), so a digest is never pulled twice, even across restarts.
package scanning
