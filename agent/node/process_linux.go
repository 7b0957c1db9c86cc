//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
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
// Protect and reports opens and changes under the rules.
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
}

// DefaultProcessConfig turns process control on with the cgroup root of
// this project's nodes.
func DefaultProcessConfig() ProcessConfig {
	return ProcessConfig{
		CgroupRoot: procguard.DefaultGuardConfig().CgroupRoot,
		Marks:      []procguard.Mark{{Path: "/", Scope: procguard.ScopeFilesystem}},
		Resync:     2 * time.Second,
		MaxPending: 4096,
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
	reported map[string]bool            // workload \x00 path sent as learned
	learned  []agentproto.Process
	lost     uint64
}

func newProcControl() *procControl {
	return &procControl{policy: procguard.NewPolicy(), poked: make(chan struct{}, 1),
		groups: map[uint64]procguard.Group{}, reported: map[string]bool{}}
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := guard.Run(ctx, a.onDecision); err != nil && ctx.Err() == nil {
				a.log.Error("process guard stopped", "err", err)
			}
		}()
	}
	a.log.Info("process control ready", "guard", guard != nil)
	armed := false
	roots := map[uint64]bool{} // devices of workload roots marked
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
// through a process of its cgroup, once per filesystem.
func (a *Agent) markWorkloadRoots(guard *procguard.Guard, cgroups []string, done map[uint64]bool) {
	for _, cg := range cgroups {
		b, err := os.ReadFile(filepath.Join(a.cfg.Processes.CgroupRoot, cg, "cgroup.procs"))
		if err != nil {
			continue
		}
		pid, _, _ := strings.Cut(string(b), "\n")
		if pid == "" {
			continue
		}
		root := "/proc/" + pid + "/root"
		var st unix.Stat_t
		if unix.Stat(root, &st) != nil || done[st.Dev] {
			continue
		}
		done[st.Dev] = true
		if err := guard.AddMark(procguard.Mark{Path: root, Scope: procguard.ScopeFilesystem}); err != nil {
			if err := guard.AddMark(procguard.Mark{Path: root, Scope: procguard.ScopeMount}); err != nil {
				a.log.Warn("process guard mark of a workload root", "cgroup", cg, "err", err)
				continue
			}
		}
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
