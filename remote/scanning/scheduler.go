package scanning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// errNeedsPrimary is the status of a federated registry on a cluster that
// is not a primary.
var errNeedsPrimary = errors.New("scanning: a federated registry is scanned only on a primary cluster")

type taskKind int

const (
	taskList taskKind = iota
	taskImage
)

// task is one unit of work for a worker: listing a registry, or scanning
// one image of it.
type task struct {
	kind    taskKind
	pass    *pass
	ref     string // normalized repository:tag (taskImage)
	attempt int    // 1 for the first try
	due     time.Time
	worker  *slot
	// job is the task's job ID while a remote worker holds it.
	job string
}

type outcome int

const (
	outScanned outcome = iota
	outSkipped
	outFailed
)

type taskResult struct {
	t    *task
	refs []string // taskList
	out  outcome
	err  error
}

// pass is one scan of one registry.
type pass struct {
	reg         Registry
	host        string
	insecure    bool
	creds       *Credentials
	status      Status
	outstanding int
	// known maps digests (and index digests) that already have a result
	// to the image digest of that result; filled when the list task
	// completes, read by image tasks.
	known map[string]string
}

type regState struct {
	reg    Registry
	rev    uint64
	next   time.Time
	reqRev uint64
	pass   *pass
	// listAttempts counts consecutive failures to list the registry.
	listAttempts int
}

// slot is one worker as the scheduler sees it: an in-process worker (one
// task at a time) or a remote scanner worker with its slots.
type slot struct {
	name  string
	slots int
	q     *queue
	// load counts the tasks queued for and running on the worker.
	load   int
	remote *remoteSlot // nil for an in-process worker
}

// scheduler runs on the leader for one term of leadership; one goroutine
// (run) owns the registries and passes, workers report back on done. The
// worker set, loads, pending tasks and remote jobs are under wmu, since
// remote workers reach them from API handlers.
type scheduler struct {
	m       *Module
	regs    map[string]*regState
	retries []*task
	done    chan taskResult
	writes  chan write
	term    string
	quit    chan struct{} // closed when run returns
	lastGC  time.Time
	gcDue   bool

	wmu     sync.Mutex
	workers []*slot
	pending []*task // dispatched while no worker was there
	remotes map[string]*slot
	jobSeq  uint64
}

func newScheduler(m *Module) *scheduler {
	s := &scheduler{m: m, regs: map[string]*regState{}, done: make(chan taskResult), writes: make(chan write),
		remotes: map[string]*slot{}, term: randomID(4), quit: make(chan struct{}), gcDue: true}
	for i := range m.cfg.Workers {
		s.workers = append(s.workers, &slot{name: fmt.Sprintf("local-%d", i), slots: 1, q: newQueue()})
	}
	return s
}

func (s *scheduler) run(ctx context.Context) {
	var wg sync.WaitGroup
	wctx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeResults(wctx)
	}()
	// The writer stops after the workers, so that what they handed it is
	// still written.
	defer func() { <-writerDone }()
	defer stopWriter()
	// The in-process workers: remote workers' polls may already be
	// adding their slots, which their polls drain.
	s.wmu.Lock()
	var local []*slot
	for _, w := range s.workers {
		if w.remote == nil {
			local = append(local, w)
		}
	}
	s.wmu.Unlock()
	for _, w := range local {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx, w.q)
		}()
	}
	defer wg.Wait()
	t := time.NewTicker(s.m.cfg.Tick)
	defer t.Stop()
	// Remote workers' polls end first.
	defer close(s.quit)
	s.reconcile(ctx, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.done:
			s.finished(ctx, r, time.Now())
		case now := <-t.C:
			s.reconcile(ctx, now)
			s.reap(ctx, now)
			s.collect(ctx, now)
		}
	}
}

// lessLoaded reports whether a is less loaded than b, relative to their
// slots.
func lessLoaded(a, b *slot) bool { return a.load*b.slots < b.load*a.slots }

// dispatch gives t to the least-loaded worker (queued plus running,
// relative to its slots; ties go to the first), or keeps it pending
// while there is no worker.
func (s *scheduler) dispatch(t *task) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.dispatchLocked(t)
}

func (s *scheduler) dispatchLocked(t *task) {
	var best *slot
	for _, w := range s.workers {
		if best == nil || lessLoaded(w, best) {
			best = w
		}
	}
	if best == nil {
		s.pending = append(s.pending, t)
		return
	}
	t.worker = best
	best.load++
	best.q.push(t)
}

// reconcile reads the registries and requests, starts the passes that are
// due and re-dispatches the retries that are due.
func (s *scheduler) reconcile(ctx context.Context, now time.Time) {
	kvs, _ := s.m.st.List(PrefixRegistries)
	seen := map[string]bool{}
	for _, kv := range kvs {
		var reg Registry
		if err := json.Unmarshal(kv.Value, &reg); err != nil {
			continue
		}
		seen[reg.Name] = true
		rs, ok := s.regs[reg.Name]
		if !ok {
			rs = &regState{next: now}
			// A new leader resumes the schedule of the previous one; a
			// pass it did not finish is run again at once.
			if sk, ok, _ := s.m.st.Get(PrefixStatus + reg.Name); ok && kv.ModRevision < sk.ModRevision {
				var st Status
				if json.Unmarshal(sk.Value, &st) == nil && !st.Started.IsZero() && !st.Finished.IsZero() {
					rs.next = st.Started.Add(time.Duration(reg.Interval))
				}
			}
			if rk, ok, _ := s.m.st.Get(PrefixRequests + reg.Name); ok && rk.ModRevision < kv.ModRevision {
				rs.reqRev = rk.ModRevision
			}
			s.regs[reg.Name] = rs
		} else if rs.rev != kv.ModRevision {
			// An edited registry is scanned again at once.
			rs.next = now
			s.gcDue = true
		}
		rs.reg, rs.rev = reg, kv.ModRevision
	}
	for n := range s.regs {
		if !seen[n] {
			delete(s.regs, n)
			s.gcDue = true
		}
	}
	reqs, _ := s.m.st.List(PrefixRequests)
	for _, kv := range reqs {
		if rs, ok := s.regs[kv.Key[len(PrefixRequests):]]; ok && kv.ModRevision > rs.reqRev {
			rs.reqRev = kv.ModRevision
			rs.next = now
		}
	}
	names := make([]string, 0, len(s.regs))
	for n := range s.regs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rs := s.regs[n]
		if rs.pass == nil && !now.Before(rs.next) {
			if rs.reg.Auth != "" {
				// Not scanned until its credentials are set.
				if _, ok, _ := s.m.st.Get(PrefixCredentials + n); !ok {
					continue
				}
			}
			s.startPass(ctx, rs, now)
		}
	}
	kept := s.retries[:0]
	for _, t := range s.retries {
		if now.Before(t.due) {
			kept = append(kept, t)
			continue
		}
		s.dispatch(t)
	}
	s.retries = kept
}

func (s *scheduler) startPass(ctx context.Context, rs *regState, now time.Time) {
	rs.next = now.Add(time.Duration(rs.reg.Interval))
	p := &pass{reg: rs.reg, status: Status{Started: now.UTC(), Replica: s.m.st.Name()}}
	host, plain, err := rs.reg.Host()
	if err == nil && rs.reg.Federated && clusterinfo.Get(s.m.st).Role != clusterinfo.Primary {
		err = errNeedsPrimary
	}
	if err == nil && rs.reg.Auth != "" {
		p.creds, err = s.m.credentials(rs.reg.Name)
		if err == nil && p.creds == nil {
			err = fmt.Errorf("scanning: registry %s needs %s credentials", rs.reg.Name, rs.reg.Auth)
		}
	}
	if err != nil {
		p.status.Error, p.status.Finished = err.Error(), now.UTC()
		s.writeStatus(ctx, rs.reg.Name, p.status)
		return
	}
	p.host, p.insecure = host, plain || rs.reg.Insecure
	rs.pass = p
	p.outstanding = 1
	// The pass is recorded as running, and the request that asked for it
	// answered, before any worker starts.
	b, _ := json.Marshal(p.status)
	ops := []store.Op{{Type: store.OpPut, Key: PrefixStatus + rs.reg.Name, Value: b}}
	if _, ok, _ := s.m.st.Get(PrefixRequests + rs.reg.Name); ok {
		ops = append(ops, store.Op{Type: store.OpDelete, Key: PrefixRequests + rs.reg.Name})
	}
	select {
	case s.writes <- write{ops: ops}:
	case <-ctx.Done():
	}
	s.dispatch(&task{kind: taskList, pass: p, attempt: 1})
}

// finished accounts for a task's result.
func (s *scheduler) finished(ctx context.Context, r taskResult, now time.Time) {
	t, p := r.t, r.t.pass
	s.wmu.Lock()
	if t.worker != nil {
		t.worker.load--
	}
	t.worker, t.job = nil, ""
	s.wmu.Unlock()
	rs := s.regs[p.reg.Name]
	if r.err != nil && t.attempt < s.m.cfg.MaxAttempts && ctx.Err() == nil {
		retry := *t
		retry.attempt++
		retry.due = now.Add(s.m.cfg.backoff(t.attempt))
		s.retries = append(s.retries, &retry)
		return
	}
	p.outstanding--
	switch t.kind {
	case taskList:
		if r.err != nil {
			p.status.Error = r.err.Error()
			if rs != nil {
				rs.listAttempts++
			}
			break
		}
		if rs != nil {
			rs.listAttempts = 0
		}
		p.status.Images = len(r.refs)
		for _, ref := range r.refs {
			p.outstanding++
			s.dispatch(&task{kind: taskImage, pass: p, ref: ref, attempt: 1})
		}
	case taskImage:
		switch {
		case r.err != nil:
			p.status.Failed++
		case r.out == outSkipped:
			p.status.Skipped++
		default:
			p.status.Scanned++
		}
	}
	if p.outstanding == 0 {
		p.status.Finished = now.UTC()
		// A registry deleted while it was scanned keeps no status, and
		// what its pass still wrote is collected.
		if rs != nil && rs.pass == p {
			s.writeStatus(ctx, p.reg.Name, p.status)
			rs.pass = nil
		} else {
			s.gcDue = true
		}
		s.m.log.Info("registry scanned", logRegistry, p.reg.Name, "images", p.status.Images, "scanned", p.status.Scanned,
			"skipped", p.status.Skipped, "failed", p.status.Failed, logfields.Duration, p.status.Finished.Sub(p.status.Started))
	}
}

// writeStatus records a registry's status through the result writer, so
// that it is stored with or after every result handed over before it.
func (s *scheduler) writeStatus(ctx context.Context, name string, st Status) {
	b, _ := json.Marshal(st)
	select {
	case s.writes <- write{ops: []store.Op{{Type: store.OpPut, Key: PrefixStatus + name, Value: b}}}:
	case <-ctx.Done():
	}
}

// work runs an in-process worker's tasks.
func (s *scheduler) work(ctx context.Context, q *queue) {
	for {
		t, ok := q.pop(ctx)
		if !ok {
			return
		}
		var r taskResult
		switch t.kind {
		case taskList:
			r = s.list(ctx, t)
		case taskImage:
			r = s.image(ctx, t)
		}
		r.t = t
		select {
		case s.done <- r:
		case <-ctx.Done():
			return
		}
	}
}

func (s *scheduler) remoteOpts(ctx context.Context, p *pass) []remote.Option {
	return RemoteOptions(ctx, s.m.cfg.Scan, p.creds)
}

// list lists the registry's matching images and gathers the digests that
// already have a result.
func (s *scheduler) list(ctx context.Context, t *task) taskResult {
	p := t.pass
	lctx, cancel := context.WithTimeout(ctx, s.m.cfg.Scan.ImageTimeout)
	defer cancel()
	refs, err := ListRefs(lctx, p.reg.Name, p.host, p.insecure, p.reg.Filter, s.remoteOpts(lctx, p))
	if err != nil {
		return taskResult{err: ExplainAuth(err, p.reg.Name, p.creds != nil)}
	}
	p.known = s.known(p)
	return taskResult{refs: refs}
}

// known returns the digests a pass need not scan again: for a federated
// registry those already streamed; otherwise this cluster's and the
// primary's.
func (s *scheduler) known(p *pass) map[string]string {
	prefixes := []string{PrefixResults, PrefixFederated}
	if p.reg.Federated {
		prefixes = []string{PrefixFedStream}
	}
	known := map[string]string{}
	for _, pre := range prefixes {
		kvs, _ := s.m.st.List(pre)
		for _, kv := range kvs {
			d := kv.Key[len(pre):]
			known[d] = d
			var idx struct {
				IndexDigest string `json:"indexDigest"`
			}
			if json.Unmarshal(kv.Value, &idx) == nil && idx.IndexDigest != "" {
				known[idx.IndexDigest] = d
			}
		}
	}
	return known
}

// image scans one image unless its digest already has a result, and
// records the result or the failure.
func (s *scheduler) image(ctx context.Context, t *task) taskResult {
	p := t.pass
	log := s.m.log.With(logRegistry, p.reg.Name, logRef, t.ref)
	if _, err := name.ParseReference(t.ref, nameOpts(p.insecure)...); err != nil {
		return s.failed(ctx, t, "", err)
	}
	hctx, cancel := context.WithTimeout(ctx, s.m.cfg.Scan.ImageTimeout)
	digest := HeadDigest(t.ref, p.insecure, s.remoteOpts(hctx, p))
	cancel()
	if r, ok := s.skipKnown(ctx, t, digest); ok {
		return r
	}
	reps, err := s.m.scanner(p.insecure).ScanImageAuth(ctx, t.ref, p.creds.Authenticator())
	if err != nil {
		err = ExplainAuth(err, p.reg.Name, p.creds != nil)
		log.Warn("scan image", logAttempt, t.attempt, logfields.Error, err)
		return s.failed(ctx, t, digest, err)
	}
	return s.store(ctx, t, digest, reps)
}

// skipKnown indexes t's reference when digest already has a result.
func (s *scheduler) skipKnown(ctx context.Context, t *task, digest string) (taskResult, bool) {
	d, ok := t.pass.known[digest]
	if !ok || digest == "" {
		return taskResult{}, false
	}
	if err := s.index(ctx, t.pass, t.ref, d); err != nil {
		return s.failed(ctx, t, digest, err), true
	}
	return taskResult{out: outSkipped}, true
}

// store hands an image's results to the result writer: the verdicts, the
// ref index entry, for a federated registry the streamed copy and its
// owners, and the end of the image's recorded failure.
func (s *scheduler) store(ctx context.Context, t *task, digest string, reps []*report.Report) taskResult {
	p := t.pass
	ops := make([]store.Op, 0, 4*len(reps)+1)
	ops = append(ops, store.Op{Type: store.OpDelete, Key: PrefixFailures + t.ref})
	for i, r := range reps {
		b, err := json.Marshal(verdict.FromReport(r))
		if err != nil {
			return s.failed(ctx, t, digest, err)
		}
		ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixResults + r.Digest, Value: b})
		if p.reg.Federated {
			ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixFedStream + r.Digest, Value: b})
			ops = append(ops, s.ownerOp(r.Digest, p.reg.Name)...)
		}
		if i == 0 {
			e, _ := json.Marshal(RefEntry{Digest: r.Digest, Registry: p.reg.Name, Federated: p.reg.Federated})
			ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixRefs + t.ref, Value: e})
		}
	}
	select {
	case s.writes <- write{ops: ops, failure: s.failure(t, digest, nil)}:
	case <-ctx.Done():
		return taskResult{out: outFailed, err: ctx.Err()}
	}
	for _, r := range reps {
		s.m.log.Info("image scanned", logRegistry, p.reg.Name, logRef, t.ref, logDigest, r.Digest, "vulnerabilities", len(r.Vulnerabilities))
	}
	return taskResult{out: outScanned}
}

// ownerOp adds registry to digest's owners, unless it is there.
func (s *scheduler) ownerOp(digest, registry string) []store.Op {
	var o Owners
	if kv, ok, _ := s.m.st.Get(PrefixFedOwners + digest); ok {
		_ = json.Unmarshal(kv.Value, &o)
	}
	if slices.Contains(o.Registries, registry) {
		return nil
	}
	o.Registries = append(o.Registries, registry)
	sort.Strings(o.Registries)
	b, _ := json.Marshal(o)
	return []store.Op{{Type: store.OpPut, Key: PrefixFedOwners + digest, Value: b}}
}

// index points ref at digest in the ref index, if it does not already.
func (s *scheduler) index(ctx context.Context, p *pass, ref, digest string) error {
	want := RefEntry{Digest: digest, Registry: p.reg.Name, Federated: p.reg.Federated}
	var ops []store.Op
	if p.reg.Federated {
		ops = s.ownerOp(digest, p.reg.Name)
	}
	if kv, ok, _ := s.m.st.Get(PrefixRefs + ref); ok {
		var got RefEntry
		if json.Unmarshal(kv.Value, &got) == nil && got == want && len(ops) == 0 {
			return nil
		}
	}
	b, _ := json.Marshal(want)
	ops = append(ops,
		store.Op{Type: store.OpPut, Key: PrefixRefs + ref, Value: b},
		store.Op{Type: store.OpDelete, Key: PrefixFailures + ref})
	_, err := s.m.st.Txn(ctx, store.Txn{Ops: ops})
	return err
}

func (s *scheduler) failure(t *task, digest string, err error) Failure {
	f := Failure{Registry: t.pass.reg.Name, Ref: t.ref, Digest: digest, Attempts: t.attempt, At: time.Now().UTC()}
	if err != nil {
		f.Error = err.Error()
		if t.attempt < s.m.cfg.MaxAttempts {
			f.RetryAt = f.At.Add(s.m.cfg.backoff(t.attempt))
		}
	}
	return f
}

// failed records the failure of t and returns it as the task's result.
func (s *scheduler) failed(ctx context.Context, t *task, digest string, err error) taskResult {
	f := s.failure(t, digest, err)
	if ctx.Err() == nil && t.ref != "" {
		b, _ := json.Marshal(f)
		if _, perr := s.m.st.Put(ctx, PrefixFailures+t.ref, b); perr != nil {
			s.m.log.Warn("record scan failure", logRef, t.ref, logfields.Error, perr)
		}
	}
	return taskResult{out: outFailed, err: err}
}

// write is one image's result, handed to the result writer.
type write struct {
	ops []store.Op
	// failure is recorded (with the store's error) if the write fails.
	failure Failure
}

// writeResults writes the results workers hand it in batches: up to
// ResultBatch operations per transaction, waiting at most ResultFlush for
// a batch to fill. It returns when ctx ends, after writing what it holds.
func (s *scheduler) writeResults(ctx context.Context) {
	var (
		batch []write
		n     int
		timer *time.Timer
		fire  <-chan time.Time
	)
	flush := func() {
		if timer != nil {
			timer.Stop()
			timer, fire = nil, nil
		}
		if len(batch) == 0 {
			return
		}
		ops := make([]store.Op, 0, n)
		for _, w := range batch {
			ops = append(ops, w.ops...)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if ctx.Err() != nil {
			wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		}
		defer cancel()
		if _, err := s.m.st.Txn(wctx, store.Txn{Ops: ops}); err != nil {
			s.m.log.Warn("store scan results", logfields.Count, len(batch), logfields.Error, err)
			var fops []store.Op
			for _, w := range batch {
				if w.failure.Ref == "" {
					continue // a status
				}
				f := w.failure
				f.Error = fmt.Sprintf("store result: %v", err)
				b, _ := json.Marshal(f)
				fops = append(fops, store.Op{Type: store.OpPut, Key: PrefixFailures + f.Ref, Value: b})
			}
			if len(fops) > 0 {
				s.m.st.Txn(wctx, store.Txn{Ops: fops})
			}
		}
		batch, n = batch[:0], 0
	}
	defer flush()
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-s.writes:
			if n+len(w.ops) > s.m.cfg.ResultBatch {
				flush()
			}
			batch, n = append(batch, w), n+len(w.ops)
			if timer == nil {
				timer = time.NewTimer(s.m.cfg.ResultFlush)
				fire = timer.C
			}
		case <-fire:
			timer, fire = nil, nil
			flush()
		}
	}
}

// queue is one worker's unbounded task queue.
type queue struct {
	mu     sync.Mutex
	items  []*task
	signal chan struct{}
}

func newQueue() *queue { return &queue{signal: make(chan struct{}, 1)} }

func (q *queue) push(t *task) {
	q.mu.Lock()
	q.items = append(q.items, t)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *queue) pop(ctx context.Context) (*task, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			t := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return t, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.signal:
		}
	}
}

// tryPop returns the first queued task without waiting.
func (q *queue) tryPop() (*task, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil, false
	}
	t := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return t, true
}

// drain removes and returns every queued task.
func (q *queue) drain() []*task {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.items = nil
	return out
}
