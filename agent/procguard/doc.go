// Package procguard watches and guards process execution in workloads.
//
// Observer attaches to the sched_process_exec tracepoint and reports every
// exec with the cgroup it ran in, which feeds a group's process profile in
// Discover and violation reports in Monitor. Guard holds fanotify
// FAN_OPEN_EXEC_PERM marks and answers each exec before the kernel runs it:
// in Protect a binary outside the group's profile is denied with EPERM
// before its first instruction. With Mark.Files the guard also answers
// opens and sees closes after writing under file rules: in Protect an open
// under a blocking rule is denied with EPERM, and opens (Discover, Monitor)
// and changes under the rules are reported. Policy decides, per cgroup,
// what may run and which files its processes may open.
//
// The Guard's fanotify group ends with the agent. Fallback is the kernel's
// stand-in meanwhile: a sched_process_exec program whose link and maps stay
// pinned in bpffs. While the agent beats, it does nothing; once the beat is
// cleared (a clean exit) or stale (a crash), an exec in a protected cgroup
// of an executable outside the group's allowed set (matched by device and
// inode; for a script, its interpreter) is killed before its first
// instruction, and recorded for the agent to report when it is back.
package procguard
