//go:build linux

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/procguard"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// File rules are enforced by the process guard: a profile's file rules
// join its workload's procguard.Group, and the guard watches, besides
// executions, the opens and writes under each rule (Mark.Files). Rule
// paths are the paths as the workload sees them: the marks of a container
// sit in its own root filesystem, reached through /proc/PID/root of one of
// its processes, and those of a workload sharing the node's root (the
// netns source) in the node's. The guard names a file in a container by
// its path in the container; the devices the marks sit on
// (procguard.Policy.SetFileDevices) keep a rule of one root off the same
// path in another. A rule path that leads through symbolic links is also
// marked and matched where they lead in each root (resolvedRules,
// procguard.Policy.SetResolvedFiles), as the guard names a file by where
// it is.

// fileRules converts a profile's compiled file rules; entries the guard
// cannot take are left out.
func fileRules(entries []compile.FileEntry) []procguard.FileRule {
	var out []procguard.FileRule
	for _, e := range entries {
		r := procguard.FileRule{Path: e.Filter, Recursive: e.Recursive, Block: e.Behavior == policy.FileBlockAccess,
			Apps: slices.Clone(e.Applications), ID: e.RuleID}
		if r.Validate() == nil {
			out = append(out, r)
		}
	}
	return out
}

// fileMark is one place a workload's file rules need watched, by its path
// as the workload sees it.
type fileMark struct {
	Path  string
	Scope procguard.Scope
}

// fileMarks returns the marks that make the guard see what rules cover,
// with paths resolved in the root directory open as root (symbolic links
// stay inside it): a directory mark on a directory rule's directory or on
// the directory holding a file (or the names a wildcard matches), and a
// mount mark for a recursive rule, at its directory or the closest
// existing one above it. A file that is a mount point of its own (a
// container's /etc/hosts) is marked itself too, as opens of it are not
// seen through its directory. A non-recursive rule whose directory does
// not exist yet gets no mark.
func fileMarks(root *os.File, rules []procguard.FileRule) []fileMark {
	seen := map[fileMark]bool{}
	var out []fileMark
	add := func(m fileMark) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, r := range rules {
		dir := r.Path
		if r.Glob() {
			dir = filepath.Dir(r.Path)
		} else if st, err := statIn(root, r.Path); err != nil || !isDir(st) {
			if !r.Recursive || err == nil {
				dir = filepath.Dir(r.Path)
			}
			if err == nil && !r.Recursive && ownMount(root, r.Path) {
				add(fileMark{Path: r.Path, Scope: procguard.ScopeDirectory})
			}
		}
		m := fileMark{Path: dir, Scope: procguard.ScopeDirectory}
		if r.Recursive {
			for {
				if st, err := statIn(root, dir); (err == nil && isDir(st)) || dir == "/" {
					break
				}
				dir = filepath.Dir(dir)
			}
			m = fileMark{Path: dir, Scope: procguard.ScopeMount}
		} else if st, err := statIn(root, dir); err != nil || !isDir(st) {
			continue
		}
		add(m)
	}
	slices.SortFunc(out, func(a, b fileMark) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return int(a.Scope) - int(b.Scope)
	})
	return out
}

// resolvedRules returns, for each rule whose path leads through symbolic
// links in root, the same rule on the path they lead to (for a wildcard
// rule, on its directory's): the kernel names an opened file by where it
// is, and a directory mark sees only the files directly in the directory
// it is on, so the rule is marked and matched there too. A Kubernetes
// service account token, /var/run/secrets/.../token, is such a path:
// /var/run links to /run in many images, and the token to ..data/token,
// ..data to a dated directory. A path that does not exist yet is resolved
// as far as it does.
func resolvedRules(root string, rules []procguard.FileRule) []procguard.FileRule {
	var out []procguard.FileRule
	for _, r := range rules {
		p, base := r.Path, ""
		if r.Glob() {
			p, base = filepath.Dir(r.Path), filepath.Base(r.Path)
		}
		real, ok := resolveExisting(root, p)
		if !ok {
			continue
		}
		if base != "" {
			real = filepath.Join(real, base)
		}
		if real == filepath.Clean(r.Path) {
			continue
		}
		alias := r
		alias.Path = real
		if alias.Validate() == nil {
			out = append(out, alias)
		}
	}
	return out
}

// resolveExisting resolves path in root as far as it exists (resolveIn)
// and keeps the rest as it is.
func resolveExisting(root, path string) (string, bool) {
	var rest []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if real, err := resolveIn(root, p); err == nil {
			slices.Reverse(rest)
			return filepath.Join(append([]string{real}, rest...)...), true
		}
		if p == "/" {
			return "", false
		}
		rest = append(rest, filepath.Base(p))
	}
}

func isDir(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// openIn opens path (absolute, as a process whose root is root sees it)
// as an O_PATH descriptor; absolute symbolic links and ".." resolve
// inside root.
func openIn(root *os.File, path string) (*os.File, error) {
	fd, err := unix.Openat2(int(root.Fd()), path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, fmt.Errorf("open %s in its root: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// statIn stats path inside root (see openIn).
func statIn(root *os.File, path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	f, err := openIn(root, path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	err = unix.Fstat(int(f.Fd()), &st)
	return st, err
}

// mountID returns the id of the mount f is on.
func mountID(f *os.File) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil {
		return 0, fmt.Errorf("statx %s: %w", f.Name(), err)
	}
	if stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 && stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, fmt.Errorf("statx %s: no mount id", f.Name())
	}
	return stx.Mnt_id, nil
}

// ownMount reports whether path inside root is on another mount than its
// directory.
func ownMount(root *os.File, path string) bool {
	ids := [2]uint64{}
	for i, p := range []string{path, filepath.Dir(path)} {
		f, err := openIn(root, p)
		if err != nil {
			return false
		}
		ids[i], err = mountID(f)
		f.Close()
		if err != nil {
			return false
		}
	}
	return ids[0] != ids[1]
}

// markKey is what a mark is placed on: an inode (directory scope) or a
// mount (mount scope; ino holds the mount id).
type markKey struct {
	scope    procguard.Scope
	dev, ino uint64
}

// guardMark is the guard's mark on the place open as f.
func guardMark(f *os.File, scope procguard.Scope) procguard.Mark {
	return procguard.Mark{Path: "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), Scope: scope, Files: true}
}

// identify returns what a mark of scope on f is placed on, and the device
// of the files it sees.
func identify(f *os.File, scope procguard.Scope) (markKey, uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return markKey{}, 0, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	k := markKey{scope: scope, dev: st.Dev, ino: st.Ino}
	if scope == procguard.ScopeMount {
		id, err := mountID(f)
		if err != nil {
			return markKey{}, 0, err
		}
		k.dev, k.ino = 0, id
	}
	return k, st.Dev, nil
}

// rootPath names the place path in root: root and path joined, the name
// a placed mark is known by (placedPath reads it back).
func rootPath(root, path string) string {
	if root == "/" {
		return path
	}
	return root + path
}

// placedPath splits the name of a placed mark into a root ("/" or
// /proc/PID/root) and the path in it.
func placedPath(name string) (root, path string) {
	parts := strings.SplitN(name, "/", 5) // "", "proc", PID, "root", rest
	if len(parts) < 4 || parts[1] != "proc" || parts[3] != "root" {
		return "/", name
	}
	if _, err := strconv.Atoi(parts[2]); err != nil {
		return "/", name
	}
	root = "/proc/" + parts[2] + "/root"
	if len(parts) == 4 {
		return root, "/"
	}
	return root, "/" + parts[4]
}

// openPlaced opens the place a placed mark was put on, if its root is
// still there.
func openPlaced(m procguard.Mark) (*os.File, error) {
	root, path := placedPath(m.Path)
	rf, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	return openIn(rf, path)
}

// marker places and removes guard marks.
type marker interface {
	AddMark(procguard.Mark) error
	RemoveMark(procguard.Mark) error
}

// fileWorkload is a workload with file rules and the roots its processes
// see.
type fileWorkload struct {
	name     string
	cgroupID uint64
	rules    []procguard.FileRule
	roots    []string
}

// syncFileMarks brings the guard's file marks in step with the file rules
// of the workloads under process control and their roots, and holds each
// workload's rules to the devices of its marks. placed holds the marks in
// place, each named by its root and path (/proc/PID/root/etc for a
// container's /etc), and is updated. A place is marked once, whatever
// process it was found through; a placed mark whose root is gone (the
// process exited) is forgotten, as its place went with the workload's
// root filesystem or is found again through another process. A mark that
// cannot be placed is tried again at the next sync.
func (a *Agent) syncFileMarks(g marker, placed map[procguard.Mark]bool) {
	have := map[markKey]procguard.Mark{}
	open := map[procguard.Mark]*os.File{}
	defer func() {
		for _, f := range open {
			f.Close()
		}
	}()
	for m := range placed {
		f, err := openPlaced(m)
		if err == nil {
			var k markKey
			if k, _, err = identify(f, m.Scope); err == nil && have[k] == (procguard.Mark{}) {
				have[k], open[m] = m, f
				continue
			}
			f.Close()
		}
		delete(placed, m)
		a.log.Info("file guard mark gone with its root", "path", m.Path, "scope", int(m.Scope))
	}
	want := map[procguard.Mark]bool{}
	for _, w := range a.fileWorkloads() {
		var devs []uint64
		var resolved []procguard.FileRule
		for _, root := range w.roots {
			devs, resolved = a.markRoot(g, w, root, placed, have, want, devs, resolved)
		}
		slices.Sort(devs)
		a.procs.policy.SetFileDevices(w.cgroupID, slices.Compact(devs))
		a.procs.policy.SetResolvedFiles(w.cgroupID, resolved)
	}
	for m := range placed {
		if want[m] {
			continue
		}
		if f := open[m]; f != nil {
			if err := g.RemoveMark(guardMark(f, m.Scope)); err != nil {
				a.log.Debug("file guard unmark", "path", m.Path, "err", err)
			}
		}
		delete(placed, m)
		a.log.Info("file guard unmarked", "path", m.Path, "scope", int(m.Scope))
	}
}

// markRoot places the marks workload w's rules need in root, with have
// (the places of the marks in place) and want (the marks to keep), and
// returns devs with the devices of the marks and resolved with the rules
// on the paths their links lead to in root (resolvedRules).
func (a *Agent) markRoot(g marker, w fileWorkload, root string, placed map[procguard.Mark]bool, have map[markKey]procguard.Mark,
	want map[procguard.Mark]bool, devs []uint64, resolved []procguard.FileRule) ([]uint64, []procguard.FileRule) {
	rf, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		a.log.Debug("file guard: workload root", "workload", w.name, "root", root, "err", err)
		return devs, resolved
	}
	defer rf.Close()
	res := resolvedRules(root, w.rules)
	for _, r := range res {
		if !slices.ContainsFunc(resolved, func(o procguard.FileRule) bool { return o.Path == r.Path && o.ID == r.ID }) {
			resolved = append(resolved, r)
		}
	}
	for _, fm := range fileMarks(rf, append(slices.Clip(w.rules), res...)) {
		f, err := openIn(rf, fm.Path)
		if err != nil {
			continue
		}
		k, dev, err := identify(f, fm.Scope)
		if err != nil {
			f.Close()
			continue
		}
		devs = append(devs, dev)
		if m, ok := have[k]; ok {
			f.Close()
			want[m] = true
			continue
		}
		err = g.AddMark(guardMark(f, fm.Scope))
		f.Close()
		if err != nil {
			a.log.Warn("file guard mark", "workload", w.name, "path", fm.Path, "root", root, "err", err)
			continue
		}
		m := procguard.Mark{Path: rootPath(root, fm.Path), Scope: fm.Scope, Files: true}
		placed[m], have[k], want[m] = true, m, true
		a.log.Info("file guard marked", "workload", w.name, "path", fm.Path, "root", root, "scope", int(fm.Scope), "dev", dev)
	}
	return devs, resolved
}

// fileWorkloads returns the workloads under process control that have
// file rules, with their roots (workloadRoots).
func (a *Agent) fileWorkloads() []fileWorkload {
	p := a.procs
	p.mu.Lock()
	byID := map[uint64]fileWorkload{}
	for id, g := range p.groups {
		if len(g.Files) > 0 {
			byID[id] = fileWorkload{name: g.Name, cgroupID: id, rules: g.Files}
		}
	}
	p.mu.Unlock()
	if len(byID) == 0 {
		return nil
	}
	type ep struct {
		cgroup    string
		container bool
	}
	a.mu.Lock()
	eps := make([]ep, 0, len(a.endpoints))
	for _, e := range a.endpoints {
		if e.Cgroup != "" {
			eps = append(eps, ep{e.Cgroup, len(e.Images) > 0})
		}
	}
	a.mu.Unlock()
	cgRoot := a.cfg.Processes.CgroupRoot
	var out []fileWorkload
	for _, e := range eps {
		id, err := cgroupID(cgRoot, e.cgroup)
		if err != nil {
			continue
		}
		w, ok := byID[id]
		if !ok {
			continue
		}
		delete(byID, id)
		w.roots = workloadRoots(filepath.Join(cgRoot, e.cgroup), !e.container)
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b fileWorkload) int { return strings.Compare(a.name, b.name) })
	return out
}

// maxRoots bounds the roots looked up for one workload, and maxPids the
// processes of one cgroup whose root is looked at.
const maxRoots, maxPids = 16, 8

// workloadRoots returns the root directories the processes of the cgroup
// at dir and of its child cgroups see, one process per cgroup: "/" for
// the node's own root, else /proc/PID/root (a container's root
// filesystem). The node's root counts only if hostRoot (a workload of the
// netns source); a container's process still on the node's root (runc
// joining it) is passed over. A cgroup without processes has the node's
// root if hostRoot, else none.
func workloadRoots(dir string, hostRoot bool) []string {
	var self unix.Stat_t
	if unix.Stat("/", &self) != nil {
		return nil
	}
	dirs := []string{dir}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(dir, e.Name()))
			}
		}
	}
	seen := map[[2]uint64]bool{}
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil || len(seen) >= maxRoots {
			continue
		}
		pids := strings.Fields(string(b))
		for _, pid := range pids[:min(len(pids), maxPids)] {
			root := "/proc/" + pid + "/root"
			var st unix.Stat_t
			if unix.Stat(root, &st) != nil {
				continue
			}
			if st.Dev == self.Dev && st.Ino == self.Ino {
				if !hostRoot {
					continue
				}
				root = "/"
			}
			if k := [2]uint64{st.Dev, st.Ino}; !seen[k] {
				seen[k] = true
				out = append(out, root)
			}
			break
		}
	}
	if len(out) == 0 && hostRoot {
		out = []string{"/"}
	}
	return out
}

// fileEvent turns what the guard reports of an open or a change under a
// file rule into a security event.
func fileEvent(d procguard.Decision, workload string, now time.Time) (agentproto.Event, bool) {
	e := agentproto.Event{Time: now, Mode: modeName(d.Mode), Workload: workload, Path: d.Path, Rule: d.Rule.ID, Action: "alert"}
	switch {
	case d.Kind == procguard.EventFileOpen && d.Denied:
		e.Kind, e.Action = agentproto.EventFileDenied, "deny"
		e.Message = fmt.Sprintf("%s: open of %s by pid %d denied under the file rule on %s", workload, d.Path, d.Pid, d.Rule.Path)
	case d.Kind == procguard.EventFileOpen:
		e.Kind = agentproto.EventFileViolation
		e.Message = fmt.Sprintf("%s: pid %d opened %s under the blocking file rule on %s", workload, d.Pid, d.Path, d.Rule.Path)
	case d.Kind == procguard.EventFileChange:
		e.Kind = agentproto.EventFileChange
		e.Message = fmt.Sprintf("%s: %s changed (pid %d) under the file rule on %s", workload, d.Path, d.Pid, d.Rule.Path)
	default:
		return agentproto.Event{}, false
	}
	return e, true
}
