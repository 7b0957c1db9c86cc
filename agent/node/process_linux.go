//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/procguard"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// ProcessConfig configures process control: the sched_process_exec
// observer that learns (Discover) and reports (Monitor) what workloads run,
// and the fanotify guard that denies a forbidden exec before it runs
// (Protect). Workloads are found by their cgroup; a workload without one is
// not under process control. The same guard enforces file rules: it
// watches the places the workloads' file rules cover from the first sync
// that has any (whatever the mode), denies opens under blocking rules in
// Protect and reports opens and changes under the rules. While the guard
// does not run (the agent starting, stopped or dead), the exec fallback
// pinned in the kernel kills forbidden execs of workloads in Protect; the
// agent reports them when it is back.
type ProcessConfig struct {
	// Disabled turns process control off.
	Disabled bool
	// CgroupRoot is the mount point of the cgroup v2 hierarchy; workload
	// cgroup paths are relative to it.
	CgroupRoot string
	// Marks are what the guard watches for executions once a workload on
	// the node is in Protect. The default, the filesystem holding "/",
	// covers every executable of host-network-namespace workloads.
	Marks []procguard.Mark
	// Resync is how often cgroups are looked up again, for workloads whose
	// cgroup appears after the workload.
	Resync time.Duration
	// MaxPending bounds the learned executables and events kept while the
	// controller is away.
	MaxPending int
	// NoFallback leaves out the kernel exec fallback (procguard.Fallback),
	// which kills a forbidden exec in a protected workload, and records
	// execs outside the profile of a monitored one, while the agent's guard
	// is not running (the agent restarting, stopped or dead).
	NoFallback bool
	// FallbackPinDir is the bpffs directory of the fallback's pins; empty
	// is "execguard" under the datapath's PinDir.
	FallbackPinDir string
	// FallbackStale is how long after the agent's last heartbeat the
	// fallback takes over when the agent dies; a clean exit hands over at
	// once.
	FallbackStale time.Duration
}

// DefaultProcessConfig turns process control on with the cgroup root of
// this project's nodes.
func DefaultProcessConfig() ProcessConfig {
	return ProcessConfig{
		CgroupRoot:    procguard.DefaultGuardConfig().CgroupRoot,
		Marks:         []procguard.Mark{{Path: "/", Scope: procguard.ScopeFilesystem}},
		Resync:        2 * time.Second,
		MaxPending:    4096,
		FallbackStale: procguard.DefaultFallbackConfig().Stale,
	}
}

// Validate reports the first problem of the configuration.
func (c ProcessConfig) Validate() error {
	if c.Disabled {
		return nil
	}
	gc := procguard.GuardConfig{CgroupRoot: c.CgroupRoot, Marks: c.Marks}
	if err := gc.Validate(); err != nil {
		return fmt.Errorf("node: config: processes: %w", err)
	}
	if c.Resync <= 0 || c.MaxPending <= 0 {
		return fmt.Errorf("node: config: processes: Resync %s and MaxPending %d must be positive", c.Resync, c.MaxPending)
	}
	if !c.NoFallback {
		fc := procguard.DefaultFallbackConfig()
		fc.Stale = c.FallbackStale
		if c.FallbackPinDir != "" {
			fc.PinDir = c.FallbackPinDir
		}
		if err := fc.Validate(); err != nil {
			return fmt.Errorf("node: config: processes: %w", err)
		}
	}
	return nil
}

// procControl keeps the process policy of the node's workloads in step
// with the table and the workloads, and gathers what it learns and sees.
type procControl struct {
	policy *procguard.Policy
	poked  chan struct{}
	// peer is the protocol version of the controller of the current
	// session; Processes go only to version 2 and later.
	peer atomic.Int64

	mu       sync.Mutex
	groups   map[uint64]procguard.Group // by cgroup id, as last set
	cgroups  map[uint64]string          // cgroup paths of groups, by id
	reported map[string]bool            // workload \x00 path sent as learned
	learned  []agentproto.Process
	lost     uint64
}

func newProcControl() *procControl {
	return &procControl{policy: procguard.NewPolicy(), poked: make(chan struct{}, 1),
		groups: map[uint64]procguard.Group{}, cgroups: map[uint64]string{}, reported: map[string]bool{}}
}

// poke asks for the process policy to be brought up to date.
func (p *procControl) poke() {
	select {
	case p.poked <- struct{}{}:
	default:
	}
}

// runProcesses runs the observer and the guard until ctx ends. Process
// control that cannot start (no tracefs, no fanotify) is logged and left
// off; network enforcement goes on.
func (a *Agent) runProcesses(ctx context.Context) {
	cfg := a.cfg.Processes
	if cfg.Disabled {
		a.removeFallback()
		return
	}
	if err := checkCgroupRoot(cfg.CgroupRoot); err != nil {
		a.log.Warn("process control off", "err", err)
		return
	}
	obs, err := procguard.NewObserver(a.log)
	if err != nil {
		a.log.Warn("process control off: exec observer", "err", err)
		return
	}
	defer obs.Close()
	guard, err := procguard.NewGuard(procguard.GuardConfig{CgroupRoot: cfg.CgroupRoot}, a.procs.policy, a.log)
	if err != nil {
		a.log.Warn("process guard off: execs are reported, not denied", "err", err)
		guard = nil
	} else {
		defer guard.Close()
	}
	// The fallback's defer runs before guard.Close: the kernel takes over
	// as the guard lets go.
	fb := a.openFallback()
	if fb != nil {
		defer func() {
			if err := fb.ClearBeat(); err != nil {
				a.log.Warn("exec fallback", "err", err)
			}
			fb.Close()
		}()
	}
	var guardLive, beating atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := obs.Watch(ctx, a.procs.policy, a.onExec); err != nil && ctx.Err() == nil {
			a.log.Error("exec observer stopped", "err", err)
		}
	}()
	if guard != nil {
		guardLive.Store(true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer guardLive.Store(false)
			if err := guard.Run(ctx, a.onDecision); err != nil && ctx.Err() == nil {
				a.log.Error("process guard stopped", "err", err)
			}
		}()
	}
	if fb != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			beatLoop(ctx, fb, func() bool { return beating.Load() && guardLive.Load() }, a.log)
		}()
	}
	a.log.Info("process control ready", "guard", guard != nil, "fallback", fb != nil)
	fbs := fallbackState{grace: fallbackGrace, absent: map[uint64]time.Time{}}
	armed := false
	roots := map[uint64]bool{} // devices of workload roots: marked, or not (false)
	fileMarked := map[procguard.Mark]bool{}
	tick := time.NewTicker(cfg.Resync)
	defer tick.Stop()
	for {
		protected := a.syncProcesses()
		if len(protected) > 0 && !armed && guard != nil {
			armed = true
			for _, m := range cfg.Marks {
				if err := guard.AddMark(m); err != nil {
					a.log.Warn("process guard mark", "path", m.Path, "err", err)
					armed = false
				}
				var st unix.Stat_t
				if m.Scope == procguard.ScopeFilesystem && unix.Stat(m.Path, &st) == nil {
					roots[st.Dev] = true
				}
			}
			if armed {
				a.log.Info("process guard armed", "marks", len(cfg.Marks))
			}
		}
		if armed {
			a.markWorkloadRoots(guard, protected, roots)
		}
		if guard != nil {
			a.syncFileMarks(guard, fileMarked)
		}
		if fb != nil {
			a.syncFallback(fb, &fbs, func(dev uint64) bool { return armed && roots[dev] })
			// The agent's guard decides while it runs and covers every
			// protected workload; the fallback stays idle meanwhile.
			beat := guardLive.Load() && (armed || len(protected) == 0)
			if beat != beating.Load() {
				beating.Store(beat)
				var err error
				if beat {
					err = fb.Beat()
				} else {
					err = fb.ClearBeat()
				}
				if err != nil {
					a.log.Warn("exec fallback", "err", err)
				}
				a.log.Info("exec fallback", "idle", beat)
			}
			a.drainFallback(fb, &fbs)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.procs.poked:
		case <-tick.C:
		}
	}
}

// markWorkloadRoots marks the filesystem of the root of each protected
// workload (a container's root filesystem is not the host's), found
// through a process of its cgroup, once per filesystem. done holds, by
// device, true for a filesystem marked and false for one that could not
// be.
func (a *Agent) markWorkloadRoots(guard *procguard.Guard, cgroups []string, done map[uint64]bool) {
	for _, cg := range cgroups {
		root, ok := a.procRoot(cg)
		if !ok {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(root, &st) != nil {
			continue
		}
		marked, tried := done[st.Dev]
		if marked {
			continue
		}
		if err := guard.AddMark(procguard.Mark{Path: root, Scope: procguard.ScopeFilesystem}); err != nil {
			if err := guard.AddMark(procguard.Mark{Path: root, Scope: procguard.ScopeMount}); err != nil {
				// Tried again at every sync; the exec fallback guards
				// the workload meanwhile (syncFallback).
				if !tried {
					a.log.Warn("process guard mark of a workload root", "cgroup", cg, "err", err)
				}
				done[st.Dev] = false
				continue
			}
		}
		done[st.Dev] = true
		a.log.Info("process guard marked a workload root", "cgroup", cg, "dev", st.Dev)
	}
}

// syncProcesses sets the process policy of every workload with a cgroup
// from its identity's profile and forgets the others. It returns the
// cgroups of the workloads in Protect.
func (a *Agent) syncProcesses() (protected []string) {
	a.mu.Lock()
	t := a.table
	eps := make(map[string]string, len(a.endpoints))
	for id, ep := range a.endpoints {
		if ep.Cgroup != "" {
			eps[id] = ep.Cgroup
		}
	}
	a.mu.Unlock()
	want := map[uint64]procguard.Group{}
	cgroups := map[uint64]string{}
	if t != nil {
		for wid, cg := range eps {
			g, ok := processGroup(t, wid)
			if !ok {
				continue
			}
			id, err := cgroupID(a.cfg.Processes.CgroupRoot, cg)
			if err != nil {
				a.log.Debug("workload cgroup", "workload", wid, "cgroup", cg, "err", err)
				continue
			}
			g.CgroupID = id
			want[id] = g
			cgroups[id] = cg
		}
	}
	p := a.procs
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, old := range p.groups {
		if _, ok := want[id]; !ok {
			p.policy.Remove(id)
			delete(p.groups, id)
			delete(p.cgroups, id)
			a.log.Info("workload process control off", "workload", old.Name)
		}
	}
	for id, g := range want {
		if g.Mode == procguard.ModeProtect {
			protected = append(protected, cgroups[id])
		}
		old, ok := p.groups[id]
		if ok && reflect.DeepEqual(old, g) {
			continue
		}
		set := g
		if cur, found := p.policy.Group(id); found && ok && old.Mode == procguard.ModeDiscover && g.Mode == procguard.ModeDiscover && old.Name == g.Name {
			// Keep what this group learned that the controller has not
			// compiled yet.
			set.Allowed = cur.Allowed
		}
		if err := p.policy.Set(set); err != nil {
			a.log.Warn("workload process policy", "workload", g.Name, "err", err)
			continue
		}
		p.groups[id] = g
		p.cgroups[id] = cgroups[id]
		a.log.Info("workload process policy", "workload", g.Name, "mode", g.Mode.String(), "rules", len(g.Rules), "files", len(g.Files))
	}
	slices.Sort(protected)
	return protected
}

// processGroup builds a workload's process policy from the profile of its
// identity in t.
func processGroup(t *compile.Table, workload string) (procguard.Group, bool) {
	id, ok := t.IdentityOf(workload)
	if !ok {
		return procguard.Group{}, false
	}
	i, ok := slices.BinarySearchFunc(t.Profiles, id, func(p compile.Profile, id uint32) int {
		switch {
		case p.ID < id:
			return -1
		case p.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return procguard.Group{}, false
	}
	prof := t.Profiles[i]
	g := procguard.Group{Name: workload, Mode: processMode(prof.ProcessMode), Files: fileRules(prof.Files)}
	for _, e := range prof.Processes {
		r := procguard.Rule{Process: e.Process, Path: e.Path, Deny: e.Action == policy.ActionDeny}
		if r.Validate() == nil {
			g.Rules = append(g.Rules, r)
		}
	}
	return g, true
}

func processMode(m policy.Mode) procguard.Mode {
	switch m {
	case policy.ModeProtect:
		return procguard.ModeProtect
	case policy.ModeMonitor:
		return procguard.ModeMonitor
	}
	return procguard.ModeDiscover
}

func modeName(m procguard.Mode) string {
	switch m {
	case procguard.ModeProtect:
		return string(policy.ModeProtect)
	case procguard.ModeMonitor:
		return string(policy.ModeMonitor)
	}
	return string(policy.ModeDiscover)
}

// cgroupID returns the id (directory inode) of a cgroup v2 path relative
// to root.
func cgroupID(root, rel string) (uint64, error) {
	var st unix.Stat_t
	p := filepath.Join(root, rel)
	if err := unix.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("stat cgroup %s: %w", p, err)
	}
	return st.Ino, nil
}

// workloadOf returns the workload set on a cgroup.
func (p *procControl) workloadOf(cg uint64) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.groups[cg]
	return g.Name, ok
}

// onExec handles what the observer reports: an executable learned in
// Discover, or one outside the profile in Monitor (or in Protect, one the
// guard's marks do not cover).
func (a *Agent) onExec(e procguard.ExecEvent, v procguard.Verdict, mode procguard.Mode) {
	wid, ok := a.procs.workloadOf(e.CgroupID)
	if !ok {
		return
	}
	path := e.Path
	if path == "" {
		path = e.Filename
	}
	now := time.Now().UTC()
	switch v {
	case procguard.Learned:
		if !strings.HasPrefix(path, "/") || len(path) > agentproto.MaxPathLen {
			return
		}
		p := a.procs
		p.mu.Lock()
		k := wid + "\x00" + path
		switch {
		case p.reported[k]:
		case len(p.learned) >= a.cfg.Processes.MaxPending:
			p.lost++
		default:
			if len(p.reported) >= 1<<16 {
				p.reported = map[string]bool{}
			}
			p.reported[k] = true
			p.learned = append(p.learned, agentproto.Process{Workload: wid, Path: path, Name: filepath.Base(path), Time: now})
		}
		p.mu.Unlock()
		a.log.Debug("process learned", "workload", wid, "path", path)
	case procguard.Violation:
		a.processEvent(agentproto.Event{Time: now, Kind: agentproto.EventExecProfile, Action: "alert", Mode: modeName(mode),
			Workload: wid, Path: path, Message: fmt.Sprintf("%s: pid %d (%s) ran %s outside the process profile", wid, e.Pid, e.Comm, path)})
	}
}

// onDecision handles what the guard reports: a denied exec, and opens and
// changes under file rules.
func (a *Agent) onDecision(d procguard.Decision) {
	wid, ok := a.procs.workloadOf(d.CgroupID)
	if !ok {
		return
	}
	if e, ok := fileEvent(d, wid, time.Now().UTC()); ok {
		if d.Denied {
			a.log.Info("file open denied", "workload", wid, "path", d.Path, "pid", d.Pid, "rule", d.Rule.ID)
		}
		a.processEvent(e)
		return
	}
	if d.Kind != procguard.EventExec || !d.Denied {
		return
	}
	a.log.Info("exec denied", "workload", wid, "path", d.Path, "pid", d.Pid)
	a.processEvent(agentproto.Event{Time: time.Now().UTC(), Kind: agentproto.EventExecDenied, Action: "deny", Mode: modeName(d.Mode),
		Workload: wid, Path: d.Path, Message: fmt.Sprintf("%s: exec of %s by pid %d denied before it ran", wid, d.Path, d.Pid)})
}

// processEvent queues a process event with the network events.
func (a *Agent) processEvent(e agentproto.Event) {
	a.mu.Lock()
	a.agg.addEvent(e)
	a.mu.Unlock()
}

// drainProcesses returns the learned executables to send, if the
// controller takes them.
func (p *procControl) drainProcesses() []agentproto.Process {
	if p.peer.Load() < agentproto.ProcessesVersion {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.learned
	p.learned = nil
	return out
}

// requeue puts back learned executables a failed send did not deliver.
func (p *procControl) requeue(ps []agentproto.Process) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.learned = append(ps, p.learned...)
}

// sendProcesses sends what process control learned since the last report.
func (a *Agent) sendProcesses(c *conn) error {
	ps := a.procs.drainProcesses()
	if len(ps) == 0 {
		return nil
	}
	if err := c.enc.Encode(&agentproto.Processes{Processes: ps}); err != nil {
		a.procs.requeue(ps)
		return err
	}
	return nil
}

// errNoCgroup2 says the cgroup root holds no cgroup v2 hierarchy.
var errNoCgroup2 = errors.New("node: no cgroup v2 hierarchy at the cgroup root")

// checkCgroupRoot reports whether root is a cgroup v2 mount.
func checkCgroupRoot(root string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", root, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%w: %s", errNoCgroup2, root)
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		return fmt.Errorf("%w: %s: %v", errNoCgroup2, root, err)
	}
	return nil
}

// fallbackGrace is how long a cgroup the fallback guards stays guarded
// while the agent does not know it (at start, before the workloads are
// found), and how long a record of an unknown cgroup is kept.
const fallbackGrace = 30 * time.Second

// openFallback opens the kernel exec fallback, or logs why it is off.
func (a *Agent) openFallback() *procguard.Fallback {
	cfg := a.cfg.Processes
	if cfg.NoFallback {
		a.log.Info("exec fallback off by configuration: forbidden execs are denied only while the agent runs")
		a.removeFallback()
		return nil
	}
	fb, err := procguard.OpenFallback(procguard.FallbackConfig{PinDir: a.fallbackPinDir(), Stale: cfg.FallbackStale}, a.log)
	if err != nil {
		a.log.Warn("exec fallback off: forbidden execs are denied only while the agent runs", "err", err)
		return nil
	}
	// A beat an agent that just died left is not this agent's: the
	// fallback acts until this agent's guard is armed.
	if err := fb.ClearBeat(); err != nil {
		a.log.Warn("exec fallback", "err", err)
	}
	return fb
}

// fallbackPinDir is where the exec fallback is pinned.
func (a *Agent) fallbackPinDir() string {
	if d := a.cfg.Processes.FallbackPinDir; d != "" {
		return d
	}
	return filepath.Join(a.cfg.Datapath.PinDir, "execguard")
}

// removeFallback detaches an exec fallback an earlier agent left pinned,
// which would otherwise go on enforcing the policy it was last given.
func (a *Agent) removeFallback() {
	dir := a.fallbackPinDir()
	if _, err := os.Stat(dir); err != nil {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		a.log.Warn("remove the pinned exec fallback", "dir", dir, "err", err)
		return
	}
	a.log.Info("pinned exec fallback removed", "dir", dir)
}

// beatLoop keeps the fallback's heartbeat fresh while on says so.
func beatLoop(ctx context.Context, fb *procguard.Fallback, on func() bool, log *slog.Logger) {
	tick := time.NewTicker(fb.BeatEvery())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !on() {
			continue
		}
		if err := fb.Beat(); err != nil {
			log.Warn("exec fallback heartbeat", "err", err)
		}
	}
}

// fallbackState is what runProcesses keeps between fallback syncs.
type fallbackState struct {
	// grace is how long a guarded cgroup the agent does not know stays
	// guarded, and how long a record of such a cgroup is kept.
	grace time.Duration
	// absent holds when a guarded cgroup the agent does not know was
	// first seen so.
	absent map[uint64]time.Time
	// pending are records of cgroups not attributed to a workload yet.
	pending []pendingRecord
}

type pendingRecord struct {
	rec  procguard.FallbackRecord
	seen time.Time
}

// syncFallback brings the fallback's groups in step with the process
// policy: workloads in Monitor and Protect with the executables their
// profiles allow (looked up in their root), no others. A guarded cgroup
// the agent does not know is let go after st.grace.
func (a *Agent) syncFallback(fb *procguard.Fallback, st *fallbackState, covered func(dev uint64) bool) {
	a.mu.Lock()
	haveTable := a.table != nil
	a.mu.Unlock()
	p := a.procs
	p.mu.Lock()
	groups := make(map[uint64]procguard.Mode, len(p.groups))
	paths := make(map[uint64]string, len(p.cgroups))
	for id, g := range p.groups {
		groups[id], paths[id] = g.Mode, p.cgroups[id]
	}
	p.mu.Unlock()
	pinned := fb.Groups()
	now := time.Now()
	for id, mode := range groups {
		delete(st.absent, id)
		_, was := pinned[id]
		if mode == procguard.ModeDiscover {
			if was {
				if err := fb.Remove(id); err != nil {
					a.log.Warn("exec fallback", "err", err)
				}
			}
			continue
		}
		g, ok := p.policy.Group(id)
		if !ok {
			continue
		}
		root := a.workloadRoot(paths[id])
		allowed := procguard.FallbackExecutables(g, root)
		if len(allowed.Missing) > 0 {
			a.log.Debug("exec fallback: allowed executables not found", "workload", g.Name, "paths", allowed.Missing)
		}
		if allowed.Any {
			// A rule lets the workload run anything: nothing to guard.
			if was {
				if err := fb.Remove(id); err != nil {
					a.log.Warn("exec fallback", "err", err)
				}
			}
			continue
		}
		fg := procguard.FallbackGroup{CgroupID: id, Mode: mode, Exes: allowed.Exes, Names: allowed.Names}
		var rootSt unix.Stat_t
		if unix.Stat(root, &rootSt) == nil {
			if root != "/" {
				// A workload with its own root: the guard marks that
				// filesystem, so the fallback guards the executables
				// on it.
				fg.Roots = []uint64{rootSt.Dev}
			}
			// A root the guard could not mark: the fallback acts
			// while the agent runs too.
			fg.Uncovered = mode == procguard.ModeProtect && !covered(rootSt.Dev)
		}
		if err := fb.Set(fg); err != nil {
			a.log.Warn("exec fallback", "workload", g.Name, "err", err)
			continue
		}
		if !was || pinned[id] != mode {
			a.log.Info("exec fallback guards workload", "workload", g.Name, "mode", mode.String(), "executables", len(allowed.Exes), "names", len(allowed.Names))
		}
	}
	if !haveTable {
		return
	}
	for id := range pinned {
		if _, ok := groups[id]; ok {
			continue
		}
		since, ok := st.absent[id]
		if !ok {
			st.absent[id] = now
			continue
		}
		if now.Sub(since) < st.grace {
			continue
		}
		delete(st.absent, id)
		if err := fb.Remove(id); err != nil {
			a.log.Warn("exec fallback", "err", err)
			continue
		}
		a.log.Info("exec fallback lets go of a cgroup no workload has", "cgroup", id)
	}
}

// workloadRoot returns the root directory of a workload as the agent can
// open it: that of a process of its cgroup, or the host's.
func (a *Agent) workloadRoot(cg string) string {
	if cg == "" {
		return "/"
	}
	if root, ok := a.procRoot(cg); ok {
		return root
	}
	return "/"
}

// procRoot returns the root directory, /proc/PID/root, of a process of
// cgroup cg (a path under the cgroup root), if it has one: one with a root
// of its own (workloadRoots) when there is, past a runtime's start-up
// process still on the node's root, else its first process.
func (a *Agent) procRoot(cg string) (string, bool) {
	if roots := workloadRoots(filepath.Join(a.cfg.Processes.CgroupRoot, cg), false); len(roots) > 0 {
		return roots[0], true
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.Processes.CgroupRoot, cg, "cgroup.procs"))
	if err != nil {
		return "", false
	}
	pid, _, _ := strings.Cut(string(b), "\n")
	if pid == "" {
		return "", false
	}
	return "/proc/" + pid + "/root", true
}

// drainFallback reports what the fallback did: a killed exec as a denial,
// an exec outside a monitored profile as a violation.
func (a *Agent) drainFallback(fb *procguard.Fallback, st *fallbackState) {
	now := time.Now()
	err := fb.Drain(func(r procguard.FallbackRecord) {
		if len(st.pending) < a.cfg.Processes.MaxPending {
			st.pending = append(st.pending, pendingRecord{rec: r, seen: now})
		}
	})
	if err != nil {
		a.log.Warn("exec fallback records", "err", err)
	}
	keep := st.pending[:0]
	for _, pr := range st.pending {
		wid, ok := a.procs.workloadOf(pr.rec.CgroupID)
		switch {
		case ok:
			a.fallbackEvent(wid, pr.rec)
		case now.Sub(pr.seen) < st.grace:
			keep = append(keep, pr)
		default:
			a.log.Warn("exec fallback record of no workload", "cgroup", pr.rec.CgroupID, "path", pr.rec.Filename, "pid", pr.rec.Pid, "killed", pr.rec.Killed)
		}
	}
	clear(st.pending[len(keep):])
	st.pending = keep
}

// fallbackEvent queues the event of one fallback record. The path is the
// name given to execve, symbolic links resolved in the workload's root
// when it is absolute.
func (a *Agent) fallbackEvent(wid string, r procguard.FallbackRecord) {
	path := r.Filename
	if filepath.IsAbs(path) {
		a.procs.mu.Lock()
		cg := a.procs.cgroups[r.CgroupID]
		a.procs.mu.Unlock()
		if real, err := resolveIn(a.workloadRoot(cg), path); err == nil {
			path = real
		}
	}
	if len(path) > agentproto.MaxPathLen {
		path = path[:agentproto.MaxPathLen]
	}
	why := "while the agent's guard was not running"
	if r.Uncovered {
		why = "as the agent's guard does not cover this workload (its root filesystem could not be marked)"
	}
	if r.Killed {
		a.log.Info("exec killed by the exec fallback", "workload", wid, "path", path, "pid", r.Pid, "uncovered", r.Uncovered)
		a.processEvent(agentproto.Event{Time: r.Time.UTC(), Kind: agentproto.EventExecDenied, Action: "deny", Mode: modeName(r.Mode),
			Workload: wid, Path: path, Message: fmt.Sprintf("%s: exec of %s by pid %d killed before it ran, %s", wid, path, r.Pid, why)})
		return
	}
	a.log.Info("exec outside the profile seen by the exec fallback", "workload", wid, "path", path, "pid", r.Pid, "uncovered", r.Uncovered)
	a.processEvent(agentproto.Event{Time: r.Time.UTC(), Kind: agentproto.EventExecProfile, Action: "alert", Mode: modeName(r.Mode),
		Workload: wid, Path: path, Message: fmt.Sprintf("%s: pid %d (%s) ran %s outside the process profile, %s", wid, r.Pid, r.Comm, path, why)})
}

// maxLinks bounds the symbolic links resolveIn follows.
const maxLinks = 40

// errLinkLoop says a path has too many symbolic links.
var errLinkLoop = errors.New("node: too many symbolic links")

// resolveIn resolves the symbolic links of an absolute path as a process
// whose root directory is root sees it, and returns it in that view.
func resolveIn(root, path string) (string, error) {
	if root == "/" {
		return filepath.EvalSymlinks(path)
	}
	rest := strings.Split(filepath.Clean(path), "/")
	cur := "/"
	for links := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%w: %s", errLinkLoop, path)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, nil
}
