package scanning

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// Errors of the remote-worker protocol.
var (
	// ErrNotScheduling: this replica does not run the scheduler (it is not
	// the leader, or is just becoming it).
	ErrNotScheduling = errors.New("scanning: this replica is not scheduling scans")
	// ErrUnknownJob: the job is not (or no longer) held by the worker: it
	// was handed out by a previous leader, or counted as lost.
	ErrUnknownJob = errors.New("scanning: unknown job")
)

// remoteSlot is the state of a remote worker while it is connected to
// this leader; guarded by scheduler.wmu.
type remoteSlot struct {
	id          string // enrolment ID
	polling     int    // polls in flight
	lastContact time.Time
	jobs        map[string]*task
}

// WorkerInfo is one worker in GET /v1/scanners.
type WorkerInfo struct {
	// Name is the worker's name; in-process workers are local-N.
	Name string `json:"name"`
	// ID is a remote worker's enrolment ID.
	ID string `json:"id,omitempty"`
	// Remote is false for the leader's in-process workers.
	Remote bool `json:"remote"`
	// Connected says whether a remote worker polls this leader.
	Connected bool `json:"connected"`
	// Slots is how many jobs it runs at once; Load how many it holds
	// (queued and running).
	Slots int `json:"slots"`
	Load  int `json:"load"`
	// LastContact is a remote worker's latest poll or answer.
	LastContact time.Time `json:"lastContact,omitzero"`
	// Enrolled is when a remote worker enrolled.
	Enrolled time.Time `json:"enrolled,omitzero"`
}

// WorkerList is the body of GET /v1/scanners (answered by the leader).
type WorkerList = httpapi.List[WorkerInfo]

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// current returns the scheduler while this replica leads.
func (m *Module) current() (*scheduler, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.scheduler == nil {
		return nil, ErrNotScheduling
	}
	return m.scheduler, nil
}

// remoteLocked returns the remote worker name, creating it.
func (s *scheduler) remoteLocked(id, name string, slots int, now time.Time) *slot {
	w, ok := s.remotes[name]
	if !ok {
		w = &slot{name: name, slots: slots, q: newQueue(), remote: &remoteSlot{id: id, jobs: map[string]*task{}}}
		s.remotes[name] = w
		s.workers = append(s.workers, w)
		// Tasks waiting for any worker go to the new one, and from the
		// busiest to the new one as balance wants.
		pending := s.pending
		s.pending = nil
		for _, t := range pending {
			s.dispatchLocked(t)
		}
		s.m.log.Info("scanner worker connected", logWorker, name, logfields.Count, slots)
	}
	w.slots = max(1, slots)
	w.remote.id, w.remote.lastContact = id, now
	return w
}

// poll serves a remote worker's poll: it notes the worker's contact and
// capacity, counts the jobs it no longer lists as lost, and waits up to
// PollWait for up to req.Free jobs (with no free slot it returns at once:
// a heartbeat).
func (s *scheduler) poll(ctx context.Context, id, name string, req PollRequest) ([]Job, error) {
	now := time.Now()
	s.wmu.Lock()
	w := s.remoteLocked(id, name, req.Slots, now)
	w.remote.polling++
	var lost []*task
	for jid, t := range w.remote.jobs {
		if !slices.Contains(req.Running, jid) {
			delete(w.remote.jobs, jid)
			lost = append(lost, t)
		}
	}
	s.wmu.Unlock()
	defer func() {
		s.wmu.Lock()
		w.remote.polling--
		w.remote.lastContact = time.Now()
		s.wmu.Unlock()
	}()
	for _, t := range lost {
		err := fmt.Errorf("scanner worker %s no longer holds the job (restarted)", name)
		s.m.log.Warn("job lost by scanner worker", logWorker, name, logRef, t.ref, logAttempt, t.attempt, logfields.Error, err)
		s.report(ctx, s.failed(ctx, t, "", err), t)
	}
	wctx, cancel := context.WithTimeout(ctx, s.m.cfg.PollWait)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-stop:
		}
	}()
	if req.Free <= 0 {
		return nil, nil // a heartbeat
	}
	var out []*task
	if t, ok := w.q.pop(wctx); ok {
		out = append(out, t)
		for len(out) < req.Free {
			t, ok := w.q.tryPop()
			if !ok {
				break
			}
			out = append(out, t)
		}
	}
	jobs := make([]Job, 0, len(out))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, t := range out {
		s.jobSeq++
		t.job = fmt.Sprintf("%s-%d", s.term, s.jobSeq)
		w.remote.jobs[t.job] = t
		p := t.pass
		j := Job{ID: t.job, Registry: p.reg.Name, Host: p.host, Insecure: p.insecure, Attempt: t.attempt, Credentials: p.creds}
		switch t.kind {
		case taskList:
			j.Kind, j.Filter = JobList, p.reg.Filter
		case taskImage:
			j.Kind, j.Ref = JobImage, t.ref
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// report hands a task's result to the scheduler.
func (s *scheduler) report(ctx context.Context, r taskResult, t *task) {
	r.t = t
	select {
	case s.done <- r:
	case <-ctx.Done():
	case <-s.quit:
	}
}

// job returns the task a remote worker holds as jobID; take removes it.
func (s *scheduler) job(name, jobID string, take bool) (*task, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	w, ok := s.remotes[name]
	if !ok {
		return nil, fmt.Errorf("%w %s: worker %s is not connected to this leader", ErrUnknownJob, jobID, name)
	}
	w.remote.lastContact = time.Now()
	t, ok := w.remote.jobs[jobID]
	if !ok {
		return nil, fmt.Errorf("%w %s for worker %s", ErrUnknownJob, jobID, name)
	}
	if take {
		delete(w.remote.jobs, jobID)
	}
	return t, nil
}

// resolve answers whether the digest of a remote image job already has a
// result; if so the job is done.
func (s *scheduler) resolve(ctx context.Context, name, jobID, digest string) (bool, error) {
	t, err := s.job(name, jobID, false)
	if err != nil {
		return false, err
	}
	if t.kind != taskImage {
		return false, fmt.Errorf("scanning: job %s is not an image job", jobID)
	}
	if _, ok := t.pass.known[digest]; !ok || digest == "" {
		return false, nil
	}
	if _, err := s.job(name, jobID, true); err != nil {
		return false, err
	}
	r, _ := s.skipKnown(ctx, t, digest)
	s.report(ctx, r, t)
	return true, nil
}

// complete takes a remote worker's result of a job.
func (s *scheduler) complete(ctx context.Context, name, jobID string, res JobResult) error {
	t, err := s.job(name, jobID, true)
	if err != nil {
		return err
	}
	var r taskResult
	switch {
	case res.Error != "":
		err := fmt.Errorf("scanner worker %s: %s", name, res.Error)
		if t.kind == taskImage {
			r = s.failed(ctx, t, res.Digest, err)
		} else {
			r = taskResult{err: err}
		}
	case t.kind == taskList:
		refs := make([]string, 0, len(res.Refs))
		for _, ref := range res.Refs {
			n, err := NormalizeRef(ref)
			if err != nil {
				continue
			}
			refs = append(refs, n)
		}
		t.pass.known = s.known(t.pass)
		r = taskResult{refs: refs}
	default:
		r = s.storeRemote(ctx, t, res)
	}
	s.report(ctx, r, t)
	return nil
}

// storeRemote matches a remote worker's inventories against this
// cluster's feed, keeps the full reports in the leader's cache (so they
// are re-matched on feed updates and served by /v1/scan/reports), and
// stores the verdicts.
func (s *scheduler) storeRemote(ctx context.Context, t *task, res JobResult) taskResult {
	if len(res.Reports) == 0 {
		return s.failed(ctx, t, res.Digest, fmt.Errorf("scanner worker returned no report for %s", t.ref))
	}
	db := s.m.DB()
	now := time.Now().UTC()
	for _, r := range res.Reports {
		if r == nil || !verdict.ValidDigest(r.Digest) {
			return s.failed(ctx, t, res.Digest, fmt.Errorf("scanner worker returned a report without a valid digest for %s", t.ref))
		}
		r.Ref, r.MatchedAt = t.ref, now
		if db != nil {
			r.Vulnerabilities, r.FeedDigest = db.MatchPackages(r.OS, r.Packages), db.Digest()
		} else {
			r.Vulnerabilities, r.FeedDigest = nil, ""
		}
		if err := s.m.cache.PutReport(ctx, r); err != nil {
			return s.failed(ctx, t, res.Digest, fmt.Errorf("cache report: %w", err))
		}
	}
	return s.store(ctx, t, res.Digest, res.Reports)
}

// reap forgets remote workers that stopped polling: their queued tasks go
// to other workers, the jobs they held are failed attempts (retried with
// backoff elsewhere).
func (s *scheduler) reap(ctx context.Context, now time.Time) {
	var requeue, lost []*task
	var gone []string
	s.wmu.Lock()
	kept := s.workers[:0]
	for _, w := range s.workers {
		if w.remote == nil || w.remote.polling > 0 || now.Sub(w.remote.lastContact) < s.m.cfg.WorkerTimeout {
			kept = append(kept, w)
			continue
		}
		delete(s.remotes, w.name)
		gone = append(gone, w.name)
		requeue = append(requeue, w.q.drain()...)
		for _, t := range w.remote.jobs {
			lost = append(lost, t)
		}
	}
	clear(s.workers[len(kept):])
	s.workers = kept
	for _, t := range requeue {
		t.worker = nil
		s.dispatchLocked(t)
	}
	s.wmu.Unlock()
	for _, n := range gone {
		s.m.log.Warn("scanner worker lost", logWorker, n)
	}
	for _, t := range lost {
		err := fmt.Errorf("scanner worker %s stopped responding", t.worker.name)
		s.m.log.Warn("job lost by scanner worker", logWorker, t.worker.name, logRef, t.ref, logAttempt, t.attempt, logfields.Error, err)
		r := s.failed(ctx, t, "", err)
		r.t = t
		s.finished(ctx, r, now)
	}
}

// workers lists the in-process and connected remote workers.
func (s *scheduler) workerInfos() map[string]WorkerInfo {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	out := map[string]WorkerInfo{}
	for _, w := range s.workers {
		wi := WorkerInfo{Name: w.name, Slots: w.slots, Load: w.load, Connected: true}
		if w.remote != nil {
			wi.Remote, wi.ID, wi.LastContact = true, w.remote.id, w.remote.lastContact.UTC()
		}
		out[w.name] = wi
	}
	return out
}

// collect withdraws, now and then and whenever a registry goes away,
// what deleted registries left behind: federated results no existing
// federated registry owns (the remotes drop them with the stream), and
// the credentials of registries that no longer exist.
func (s *scheduler) collect(ctx context.Context, now time.Time) {
	if !s.gcDue && now.Sub(s.lastGC) < s.m.cfg.GCInterval {
		return
	}
	if err := collectGarbage(ctx, s.m.st); err != nil {
		s.m.log.Warn("withdraw results of deleted registries", logfields.Error, err)
		return
	}
	s.gcDue, s.lastGC = false, now
}

// collectGarbage is one pass of collect.
func collectGarbage(ctx context.Context, st *store.Store) error {
	fed := map[string]bool{}
	exists := map[string]bool{}
	kvs, _ := st.List(PrefixRegistries)
	for _, kv := range kvs {
		var reg Registry
		if json.Unmarshal(kv.Value, &reg) == nil {
			exists[reg.Name] = true
			fed[reg.Name] = reg.Federated
		}
	}
	// A digest an existing federated registry's ref index entry points
	// at is kept even if a concurrent write lost that owner.
	live := map[string]bool{}
	refs, _ := st.List(PrefixRefs)
	for _, kv := range refs {
		var e RefEntry
		if json.Unmarshal(kv.Value, &e) == nil && e.Federated && fed[e.Registry] {
			live[e.Digest] = true
		}
	}
	var ops []store.Op
	owners, _ := st.List(PrefixFedOwners)
	for _, kv := range owners {
		digest := kv.Key[len(PrefixFedOwners):]
		var o Owners
		if json.Unmarshal(kv.Value, &o) != nil {
			continue
		}
		keep := slices.DeleteFunc(slices.Clone(o.Registries), func(n string) bool { return !fed[n] })
		switch {
		case len(keep) == len(o.Registries):
		case len(keep) == 0 && live[digest]:
		case len(keep) == 0:
			ops = append(ops,
				store.Op{Type: store.OpDelete, Key: PrefixFedStream + digest},
				store.Op{Type: store.OpDelete, Key: PrefixFedOwners + digest})
		default:
			sort.Strings(keep)
			b, _ := json.Marshal(Owners{Registries: keep})
			ops = append(ops, store.Op{Type: store.OpPut, Key: kv.Key, Value: b})
		}
	}
	// The ref index entries of deleted federated registries go too.
	for _, kv := range refs {
		var e RefEntry
		if json.Unmarshal(kv.Value, &e) == nil && e.Registry != "" && !exists[e.Registry] && e.Federated {
			ops = append(ops, store.Op{Type: store.OpDelete, Key: kv.Key})
		}
	}
	creds, _ := st.List(PrefixCredentials)
	for _, kv := range creds {
		if !exists[kv.Key[len(PrefixCredentials):]] {
			ops = append(ops, store.Op{Type: store.OpDelete, Key: kv.Key})
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 1000)
		if _, err := st.Txn(ctx, store.Txn{Ops: ops[:n]}); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}
