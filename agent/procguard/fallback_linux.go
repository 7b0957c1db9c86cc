//go:build linux

package procguard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// FallbackConfig configures a Fallback.
type FallbackConfig struct {
	// PinDir is the bpffs directory holding the fallback's maps and its
	// link to the sched_process_exec tracepoint. bpffs must be mounted
	// above it; two agents must not share it.
	PinDir string
	// Stale is how old the heartbeat may grow before the fallback takes
	// over from the agent's guard. Beats come every Stale/4.
	Stale time.Duration
}

// DefaultFallbackConfig returns the configuration of a production node.
func DefaultFallbackConfig() FallbackConfig {
	return FallbackConfig{PinDir: "/sys/fs/bpf/palisade/execguard", Stale: 2 * time.Second}
}

// Validate reports the first problem of the configuration.
func (c FallbackConfig) Validate() error {
	if !filepath.IsAbs(c.PinDir) {
		return fmt.Errorf("procguard fallback config: PinDir %q is not absolute", c.PinDir)
	}
	if c.Stale < 100*time.Millisecond {
		return fmt.Errorf("procguard fallback config: Stale %s is below 100ms", c.Stale)
	}
	return nil
}

// FileID names an executable as the kernel holds it: the device (as stat
// reports it) and inode of the file.
type FileID struct {
	Dev uint64
	Ino uint64
}

// kernelDev is the encoding of a device number inside the kernel
// (super_block.s_dev), which the program reads.
func (id FileID) kernelDev() uint32 {
	return unix.Major(id.Dev)<<20 | unix.Minor(id.Dev)&(1<<20-1)
}

// kernelFileID is the FileID of a device in the kernel's encoding
// (kernelDev) and an inode.
func kernelFileID(dev uint32, ino uint64) FileID {
	return FileID{Dev: unix.Mkdev(dev>>20, dev&(1<<20-1)), Ino: ino}
}

// FallbackGroup is what the fallback knows of one guarded cgroup.
type FallbackGroup struct {
	CgroupID uint64
	// Mode is ModeMonitor (execs outside Exes are recorded) or
	// ModeProtect (they are also killed).
	Mode Mode
	// Exes are the executables the group may run.
	Exes []FileID
	// Names are process names the group may run from anywhere, matched
	// on the comm the exec gives the process (the base name given to
	// execve), of which the kernel keeps 15 characters.
	Names []string
	// Roots, when set, are the devices (as stat gives them) of the
	// workload's own root filesystems: only executables on them are
	// guarded, as the guard marks those filesystems alone. An exec from
	// elsewhere (a container runtime's helper run from the node, such as
	// runc init joining the workload's cgroup) is left alone. Without
	// Roots every exec in the cgroup is guarded.
	Roots []uint64
	// Uncovered says the agent's guard does not cover the workload (its
	// root filesystem could not be marked): the program then acts even
	// while the agent beats.
	Uncovered bool
}

// FallbackRecord is one exec the fallback acted on.
type FallbackRecord struct {
	// KernelTimeNs is CLOCK_MONOTONIC at the exec; Time is the same
	// instant on the wall clock, as well as it can be told.
	KernelTimeNs uint64
	Time         time.Time
	CgroupID     uint64
	Pid          uint32
	UID          uint32
	Exe          FileID
	Mode         Mode
	// Killed says the process got SIGKILL before its first instruction.
	Killed bool
	// Uncovered says the agent's guard was running but does not cover
	// the group (FallbackGroup.Uncovered).
	Uncovered bool
	Comm      string
	// Filename is the name given to execve (it may be relative).
	Filename string
}

// Fallback is the kernel's guard of execs while the agent's fanotify Guard
// is not running: a sched_process_exec program whose link and maps stay
// pinned when the agent exits or dies. While the agent beats (Beat) it does
// nothing; once the heartbeat is cleared (ClearBeat, or by a
// sched_process_exit program when the process that beat ends, a crash
// included) or older than Stale (an agent that hangs),
// an exec in a protected cgroup of an executable outside the group's Exes
// gets SIGKILL before it runs, and every exec outside Exes in a monitored
// or protected cgroup is recorded for Drain.
//
// Executables are matched by device and inode, which is what the kernel
// can read of the new process's executable without a path. For a script
// that is its interpreter: a group that may run a script may run its
// interpreter (see FallbackExecutables). A process name a rule allows
// anywhere (Names) is matched on the comm the exec gives the process. Exes
// should be refreshed on every policy sync, as a replaced file gets a new
// inode.
type Fallback struct {
	cfg  FallbackConfig
	log  *slog.Logger
	objs bpf.ExecguardObjects
	rd   *ringbuf.Reader

	mu    sync.Mutex
	exes  map[uint64]map[FileID]bool // what the pinned allowed map holds, by cgroup
	names map[uint64]map[string]bool // what the pinned comms map holds, by cgroup
	modes map[uint64]Mode            // what the pinned groups map holds
	flags map[uint64]uint32          // the EG_SCOPED and EG_UNCOVERED bits of each pinned mode
	// tgid is the process whose exit clears the heartbeat: this one, as
	// the node's PID namespace numbers it (the agent runs in it).
	tgid uint32
}

// ErrFallbackMode says a group's mode is not one the fallback guards.
var ErrFallbackMode = errors.New("procguard: fallback guards only Monitor and Protect")

// OpenFallback loads the program, creates or reuses the pinned maps under
// cfg.PinDir and attaches the program, replacing a link pinned by an
// earlier agent only once the new one is in place, so execs stay guarded
// throughout. What the pinned maps hold stays in force until changed.
func OpenFallback(cfg FallbackConfig, log *slog.Logger) (*Fallback, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if err := os.MkdirAll(cfg.PinDir, 0o700); err != nil {
		return nil, fmt.Errorf("create fallback pin dir: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cfg.PinDir, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", cfg.PinDir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return nil, fmt.Errorf("procguard: fallback pin dir %s is not on bpffs", cfg.PinDir)
	}
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	f := &Fallback{cfg: cfg, log: log, exes: map[uint64]map[FileID]bool{}, names: map[uint64]map[string]bool{}, modes: map[uint64]Mode{},
		flags: map[uint64]uint32{}, tgid: uint32(os.Getpid())}
	if err := f.load(); err != nil {
		return nil, err
	}
	if err := f.readPinned(); err != nil {
		f.objs.Close()
		return nil, err
	}
	if err := f.attach(); err != nil {
		f.objs.Close()
		return nil, err
	}
	rd, err := ringbuf.NewReader(f.objs.EgRecords)
	if err != nil {
		f.objs.Close()
		return nil, fmt.Errorf("open fallback records: %w", err)
	}
	f.rd = rd
	n := 0
	for _, m := range f.exes {
		n += len(m)
	}
	log.Info("exec fallback open", "pin_dir", cfg.PinDir, "groups", len(f.modes), "executables", n)
	return f, nil
}

// load loads the objects on the pinned maps. Maps pinned with another
// layout (from another release) are removed and created afresh: what they
// held is lost, and the old program keeps its own copies until its link is
// replaced.
func (f *Fallback) load() error {
	spec, err := bpf.LoadExecguard()
	if err != nil {
		return fmt.Errorf("load exec fallback spec: %w", err)
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: f.cfg.PinDir}}
	err = spec.LoadAndAssign(&f.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		for name, m := range spec.Maps {
			if m.Pinning != ebpf.PinByName {
				continue
			}
			if pm, perr := ebpf.LoadPinnedMap(filepath.Join(f.cfg.PinDir, name), nil); perr == nil {
				compatible := m.Compatible(pm) == nil
				pm.Close()
				if !compatible {
					f.log.Warn("exec fallback: pinned map of another layout removed", "map", name)
					os.Remove(filepath.Join(f.cfg.PinDir, name))
				}
			}
		}
		err = spec.LoadAndAssign(&f.objs, opts)
	}
	if err != nil {
		// A *ebpf.VerifierError in the chain carries the verifier log.
		return fmt.Errorf("load exec fallback: %w", err)
	}
	return nil
}

// readPinned reads what the pinned maps hold.
func (f *Fallback) readPinned() error {
	var (
		id   uint64
		mode uint32
	)
	it := f.objs.EgGroups.Iterate()
	for it.Next(&id, &mode) {
		f.modes[id] = fallbackMode(mode)
		f.flags[id] = mode & groupFlags
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read fallback groups: %w", err)
	}
	var (
		k bpf.ExecguardEgExeKey
		v uint8
	)
	it = f.objs.EgAllowed.Iterate()
	for it.Next(&k, &v) {
		m := f.exes[k.CgroupId]
		if m == nil {
			m = map[FileID]bool{}
			f.exes[k.CgroupId] = m
		}
		m[kernelFileID(k.Dev, k.Ino)] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read fallback executables: %w", err)
	}
	var ck bpf.ExecguardEgCommKey
	it = f.objs.EgComms.Iterate()
	for it.Next(&ck, &v) {
		m := f.names[ck.CgroupId]
		if m == nil {
			m = map[string]bool{}
			f.names[ck.CgroupId] = m
		}
		m[cstring(ck.Comm[:])] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read fallback process names: %w", err)
	}
	return nil
}

// attach attaches the programs and pins each link in place of the one
// pinned before, which is detached once the new one runs.
func (f *Fallback) attach() error {
	if err := f.attachPinned("sched_process_exec", f.objs.PalisadeExecguard, "link"); err != nil {
		return err
	}
	return f.attachPinned("sched_process_exit", f.objs.PalisadeExecguardExit, "exit_link")
}

func (f *Fallback) attachPinned(event string, prog *ebpf.Program, name string) error {
	l, err := link.Tracepoint("sched", event, prog, nil)
	if err != nil {
		return fmt.Errorf("attach exec fallback to %s: %w", event, err)
	}
	defer l.Close()
	final := filepath.Join(f.cfg.PinDir, name)
	next := final + "_next" // bpffs names take no dots
	os.Remove(next)
	if err := l.Pin(next); err != nil {
		return fmt.Errorf("pin exec fallback %s link: %w", event, err)
	}
	if err := os.Rename(next, final); err != nil {
		// No rename on this bpffs: a short gap while the old link goes.
		os.Remove(final)
		if err := os.Rename(next, final); err != nil {
			os.Remove(next)
			return fmt.Errorf("pin exec fallback %s link: %w", event, err)
		}
	}
	return nil
}

// Close releases this process's handles. The link and the maps stay
// pinned: the fallback acts once the heartbeat is stale or cleared.
func (f *Fallback) Close() error {
	return errors.Join(f.rd.Close(), f.objs.Close())
}

// Destroy detaches the program and removes the pinned maps.
func (f *Fallback) Destroy() error {
	return errors.Join(f.Close(), os.RemoveAll(f.cfg.PinDir))
}

// monotonicNow returns CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// Beat tells the program the agent's guard runs now.
func (f *Fallback) Beat() error {
	v := bpf.ExecguardEgBeat{BeatNs: monotonicNow(), StaleNs: uint64(f.cfg.Stale), Tgid: f.tgid}
	if err := f.objs.EgHeartbeat.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write fallback heartbeat: %w", err)
	}
	return nil
}

// ClearBeat hands execs to the program at once (the agent's guard stops).
func (f *Fallback) ClearBeat() error {
	if err := f.objs.EgHeartbeat.Put(uint32(0), bpf.ExecguardEgBeat{StaleNs: uint64(f.cfg.Stale)}); err != nil {
		return fmt.Errorf("clear fallback heartbeat: %w", err)
	}
	return nil
}

// BeatEvery is how often Beat must be called to keep the program idle.
func (f *Fallback) BeatEvery() time.Duration { return f.cfg.Stale / 4 }

// Groups returns the cgroups the pinned maps guard, with their modes.
func (f *Fallback) Groups() map[uint64]Mode {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[uint64]Mode, len(f.modes))
	for id, m := range f.modes {
		out[id] = m
	}
	return out
}

// Set guards a group: its executables are added before the group's mode
// is written, and the executables it no longer has removed after, so an
// exec allowed before and after is never killed in between.
func (f *Fallback) Set(g FallbackGroup) error {
	if g.Mode != ModeMonitor && g.Mode != ModeProtect {
		return fmt.Errorf("%w: cgroup %d: mode %s", ErrFallbackMode, g.CgroupID, g.Mode)
	}
	if g.CgroupID == 0 {
		return errors.New("procguard: fallback group with cgroup id 0")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	have := f.exes[g.CgroupID]
	if have == nil {
		have = map[FileID]bool{}
		f.exes[g.CgroupID] = have
	}
	want := make(map[FileID]bool, len(g.Exes)+len(g.Roots))
	exes := slices.Clip(g.Exes) // the caller's slice is not written
	for _, dev := range g.Roots {
		exes = append(exes, FileID{Dev: dev}) // ino 0: a root filesystem's mark
	}
	for _, id := range exes {
		want[id] = true
		if have[id] {
			continue
		}
		if err := f.objs.EgAllowed.Put(exeKey(g.CgroupID, id), uint8(1)); err != nil {
			return fmt.Errorf("allow executable %d:%d in cgroup %d: %w", id.Dev, id.Ino, g.CgroupID, err)
		}
		have[id] = true
	}
	haveNames := f.names[g.CgroupID]
	if haveNames == nil {
		haveNames = map[string]bool{}
		f.names[g.CgroupID] = haveNames
	}
	wantNames := make(map[string]bool, len(g.Names))
	for _, n := range g.Names {
		n = commOf(n)
		wantNames[n] = true
		if haveNames[n] {
			continue
		}
		if err := f.objs.EgComms.Put(commKey(g.CgroupID, n), uint8(1)); err != nil {
			return fmt.Errorf("allow process name %q in cgroup %d: %w", n, g.CgroupID, err)
		}
		haveNames[n] = true
	}
	var flags uint32
	if len(g.Roots) > 0 {
		flags |= uint32(bpf.ExecguardEgModeEG_SCOPED)
	}
	if g.Uncovered {
		flags |= uint32(bpf.ExecguardEgModeEG_UNCOVERED)
	}
	if m, ok := f.modes[g.CgroupID]; !ok || m != g.Mode || f.flags[g.CgroupID] != flags {
		if err := f.objs.EgGroups.Put(g.CgroupID, kernelMode(g.Mode)|flags); err != nil {
			return fmt.Errorf("guard cgroup %d: %w", g.CgroupID, err)
		}
		f.modes[g.CgroupID] = g.Mode
		f.flags[g.CgroupID] = flags
	}
	for id := range have {
		if want[id] {
			continue
		}
		if err := f.objs.EgAllowed.Delete(exeKey(g.CgroupID, id)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget executable %d:%d in cgroup %d: %w", id.Dev, id.Ino, g.CgroupID, err)
		}
		delete(have, id)
	}
	for n := range haveNames {
		if wantNames[n] {
			continue
		}
		if err := f.objs.EgComms.Delete(commKey(g.CgroupID, n)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget process name %q in cgroup %d: %w", n, g.CgroupID, err)
		}
		delete(haveNames, n)
	}
	return nil
}

// Remove stops guarding a cgroup and forgets its executables.
func (f *Fallback) Remove(cgroupID uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.objs.EgGroups.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unguard cgroup %d: %w", cgroupID, err)
	}
	delete(f.modes, cgroupID)
	delete(f.flags, cgroupID)
	for id := range f.exes[cgroupID] {
		if err := f.objs.EgAllowed.Delete(exeKey(cgroupID, id)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget executable %d:%d in cgroup %d: %w", id.Dev, id.Ino, cgroupID, err)
		}
		delete(f.exes[cgroupID], id)
	}
	delete(f.exes, cgroupID)
	for n := range f.names[cgroupID] {
		if err := f.objs.EgComms.Delete(commKey(cgroupID, n)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget process name %q in cgroup %d: %w", n, cgroupID, err)
		}
		delete(f.names[cgroupID], n)
	}
	delete(f.names, cgroupID)
	return nil
}

// commLen is the size of a task's comm, its terminating NUL included.
const commLen = 16

// commOf returns the comm an exec of a file named name gives a process.
func commOf(name string) string {
	if len(name) >= commLen {
		return name[:commLen-1]
	}
	return name
}

func commKey(cgroupID uint64, comm string) bpf.ExecguardEgCommKey {
	k := bpf.ExecguardEgCommKey{CgroupId: cgroupID}
	for i := 0; i < len(comm) && i < commLen-1; i++ {
		k.Comm[i] = int8(comm[i])
	}
	return k
}

// cstring returns the NUL-terminated string at the start of b.
func cstring(in []int8) string {
	b := make([]byte, len(in))
	for i, c := range in {
		b[i] = byte(c)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func exeKey(cgroupID uint64, id FileID) bpf.ExecguardEgExeKey {
	return bpf.ExecguardEgExeKey{CgroupId: cgroupID, Ino: id.Ino, Dev: id.kernelDev()}
}

// groupFlags are the bits of a pinned mode beside the mode itself.
const groupFlags = uint32(bpf.ExecguardEgModeEG_SCOPED | bpf.ExecguardEgModeEG_UNCOVERED)

func kernelMode(m Mode) uint32 {
	if m == ModeProtect {
		return uint32(bpf.ExecguardEgModeEG_PROTECT)
	}
	return uint32(bpf.ExecguardEgModeEG_MONITOR)
}

func fallbackMode(m uint32) Mode {
	if m&uint32(bpf.ExecguardEgModeEG_MODE_MASK) == uint32(bpf.ExecguardEgModeEG_PROTECT) {
		return ModeProtect
	}
	return ModeMonitor
}

// Lost returns how many records the ring buffer could not hold.
func (f *Fallback) Lost() (uint64, error) {
	var n uint64
	if err := f.objs.EgLost.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read lost fallback records: %w", err)
	}
	return n, nil
}

// Drain calls fn for every record queued, oldest first, without waiting
// for more. Records written while no agent ran are queued too.
func (f *Fallback) Drain(fn func(FallbackRecord)) error {
	f.rd.SetDeadline(time.Now())
	mono, wall := monotonicNow(), time.Now()
	var rec ringbuf.Record
	for {
		if err := f.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("read fallback record: %w", err)
		}
		r, err := DecodeFallbackRecord(rec.RawSample)
		if err != nil {
			f.log.Warn("bad exec fallback record", "err", err)
			continue
		}
		if r.KernelTimeNs <= mono {
			r.Time = wall.Add(-time.Duration(mono - r.KernelTimeNs))
		} else {
			r.Time = wall
		}
		fn(r)
	}
}

// DecodeFallbackRecord decodes one raw ring buffer record.
func DecodeFallbackRecord(raw []byte) (FallbackRecord, error) {
	var e bpf.ExecguardEgRecord
	if _, err := binary.Decode(raw, binary.LittleEndian, &e); err != nil {
		return FallbackRecord{}, fmt.Errorf("decode fallback record of %d bytes: %w", len(raw), err)
	}
	return FallbackRecord{
		KernelTimeNs: e.TsNs,
		CgroupID:     e.CgroupId,
		Pid:          e.Pid,
		UID:          e.Uid,
		Exe:          kernelFileID(e.Dev, e.Ino),
		Mode:         fallbackMode(uint32(e.Mode)),
		Killed:       e.Killed != 0,
		Uncovered:    uint32(e.Mode)&uint32(bpf.ExecguardEgModeEG_REC_UNCOVERED) != 0,
		Comm:         cstring(e.Comm[:]),
		Filename:     cstring(e.Filename[:]),
	}, nil
}

// maxInterpreterDepth is how many #! interpreters the kernel follows.
const maxInterpreterDepth = 4

// FallbackAllowed is what a group may run, told apart as the Fallback can.
type FallbackAllowed struct {
	// Exes are the allowed executables.
	Exes []FileID
	// Names are process names a rule allows anywhere (path "*", a name
	// without wildcards, no denying rule before it).
	Names []string
	// Any says a rule allows every executable before any rule denies one:
	// the group has nothing for the fallback to guard.
	Any bool
	// Missing lists the allowed paths found nowhere.
	Missing []string
}

// FallbackExecutables returns what a group may run as the Fallback knows
// executables: every path the group allows (its profile, and the exact
// paths of its allowing rules, less what a denying rule matches) looked up
// inside root (a workload's root directory, such as /proc/PID/root, "/"
// for the host's), then on the host if missing there. A script adds its #!
// interpreter (and that one's, if it is a script too), which is the
// executable the kernel reports for it; an ELF program's loader is not
// added, as it is not the executable of the process. A rule allowing a
// name anywhere adds the name; one with wildcards in the name, or with a
// denying rule before it (which the kernel could not tell apart), adds
// nothing, so the fallback errs towards killing.
func FallbackExecutables(g Group, root string) FallbackAllowed {
	var out FallbackAllowed
	if g.CgroupID == 0 {
		g.CgroupID = 1
	}
	p := NewPolicy()
	if err := p.Set(g); err != nil {
		return out
	}
	paths := append([]string(nil), g.Allowed...)
	denied := false
	names := map[string]bool{}
	for _, r := range g.Rules {
		switch {
		case r.Deny:
			denied = true
		case r.Path != "*":
			if !strings.ContainsAny(r.Path, "*?[") {
				paths = append(paths, r.Path)
			}
		case denied:
		case r.Process == "*":
			out.Any = true
			return out
		case !strings.ContainsAny(r.Process, "*?[") && !names[r.Process]:
			names[r.Process] = true
			out.Names = append(out.Names, r.Process)
		}
	}
	seen := map[FileID]bool{}
	done := map[string]bool{}
	for _, path := range paths {
		if done[path] {
			continue
		}
		done[path] = true
		if v, _, _ := p.Decide(g.CgroupID, path); v != Allowed {
			continue
		}
		next := path
		for depth := 0; next != "" && depth <= maxInterpreterDepth; depth++ {
			id, interp, err := statExecutable(root, next)
			if err != nil {
				if depth == 0 {
					out.Missing = append(out.Missing, path)
				}
				break
			}
			if !seen[id] {
				seen[id] = true
				out.Exes = append(out.Exes, id)
			}
			next = interp
		}
	}
	return out
}

// statExecutable returns the file at path inside root (then on the host)
// and, for a script, its #! interpreter.
func statExecutable(root, path string) (FileID, string, error) {
	f, err := openInRoot(root, path)
	if err != nil && root != "/" {
		f, err = os.Open(path)
	}
	if err != nil {
		return FileID{}, "", err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return FileID{}, "", fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return FileID{}, "", fmt.Errorf("procguard: %s is not a regular file", path)
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, scriptInterpreter(f), nil
}

// openInRoot opens path with root as "/", symbolic links included.
func openInRoot(root, path string) (*os.File, error) {
	if root == "/" || root == "" {
		return os.Open(path)
	}
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, path, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", path, root, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// scriptInterpreter returns the #! interpreter of a script, "" for any
// other file.
func scriptInterpreter(f *os.File) string {
	head := make([]byte, 256)
	n, _ := f.ReadAt(head, 0)
	line, ok := bytes.CutPrefix(head[:n], []byte("#!"))
	if !ok {
		return ""
	}
	line, _, _ = bytes.Cut(line, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) == 0 || !filepath.IsAbs(fields[0]) {
		return ""
	}
	return fields[0]
}
