//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Palisade exec fallback guard. While the agent's fanotify guard is not
 * running (no heartbeat, or one older than the bound the agent set), an exec
 * in a protected cgroup of an executable outside the cgroup's allowed set
 * gets SIGKILL, delivered before its first user-space instruction, and is
 * recorded for the agent to report when it is back. In Monitor the exec is
 * only recorded. The program, its link and its maps are pinned, so they
 * outlive the agent.
 *
 * An executable is known by what the kernel holds without a path: the
 * device and inode of the new mm's exe_file. For a script that is its
 * interpreter. A group's rules that allow a process name anywhere are
 * matched on the new comm (the base name given to execve, cut to 15
 * characters).
 */
#include "common.h"
#include <bpf/bpf_core_read.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define FILENAME_MAX 256
#define COMM_LEN 16
#define SIGKILL 9

/* Just the kernel fields read, relocated against the running kernel. */
struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

/* Layout of /sys/kernel/tracing/events/sched/sched_process_exec/format. */
struct eg_exec_args {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__u32 data_loc_filename;
	__s32 pid;
	__s32 old_pid;
};

/* Group modes; a cgroup missing from eg_groups is not guarded. EG_SCOPED
 * is a flag beside the mode: only executables on the workload's own root
 * filesystems are guarded, each marked in eg_allowed by a key with ino 0
 * and its device, as the agent's guard marks those filesystems alone (a
 * runtime's helper run from the node, such as runc init, is not the
 * workload's). */
enum eg_mode {
	EG_MONITOR = 1,
	EG_PROTECT = 2,
	EG_MODE_MASK = 0x7f,
	/* In a record's mode: the agent's guard was running, and the group
	 * was one it does not cover. */
	EG_REC_UNCOVERED = 0x80,
	EG_SCOPED = 0x100,
	/* The agent's guard does not cover this group (its root could not be
	 * marked): the fallback acts even while the agent beats. */
	EG_UNCOVERED = 0x200,
};

struct eg_exe_key {
	__u64 cgroup_id;
	__u64 ino;
	__u32 dev; /* kernel encoding: major << 20 | minor */
	__u32 pad;
};

struct eg_comm_key {
	__u64 cgroup_id;
	char comm[COMM_LEN];
};

/* The agent's heartbeat: bpf_ktime_get_ns() of its last beat, 0 when it
 * left cleanly; the fallback acts once the beat is older than stale_ns, or
 * at once when the process tgid (the agent, in the node's PID namespace)
 * exits, a crash included. */
struct eg_beat {
	__u64 beat_ns;
	__u64 stale_ns;
	__u32 tgid;
	__u32 pad;
};

struct eg_record {
	__u64 ts_ns;
	__u64 cgroup_id;
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__u32 uid;
	__u8 mode;
	__u8 killed;
	__u16 filename_len;
	char comm[COMM_LEN];
	char filename[FILENAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct eg_exe_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_allowed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, struct eg_comm_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct eg_beat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_heartbeat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_records SEC(".maps");

/* Records the ring buffer could not hold. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} eg_lost SEC(".maps");

const struct eg_record *unused_eg_record __attribute__((unused));
const struct eg_exe_key *unused_eg_exe_key __attribute__((unused));
const struct eg_comm_key *unused_eg_comm_key __attribute__((unused));
const struct eg_beat *unused_eg_beat __attribute__((unused));
const enum eg_mode *unused_eg_mode __attribute__((unused));

SEC("tracepoint/sched/sched_process_exec")
int palisade_execguard(struct eg_exec_args *ctx)
{
	struct eg_exe_key key = {};
	struct eg_comm_key ck = {};
	struct eg_record *rec;
	struct eg_beat *beat;
	struct task_struct *task;
	struct inode *inode;
	__u32 zero = 0, *mode;
	int guard_running;
	__u64 now;
	__u32 off;
	long n;

	key.cgroup_id = bpf_get_current_cgroup_id();
	mode = bpf_map_lookup_elem(&eg_groups, &key.cgroup_id);
	if (!mode)
		return 0;
	now = bpf_ktime_get_ns();
	beat = bpf_map_lookup_elem(&eg_heartbeat, &zero);
	guard_running = beat && beat->beat_ns && (beat->beat_ns >= now || now - beat->beat_ns <= beat->stale_ns);
	if (guard_running && !(*mode & EG_UNCOVERED))
		return 0; /* the agent's guard decides */

	task = (struct task_struct *)bpf_get_current_task();
	inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	if (!inode)
		return 0;
	key.ino = BPF_CORE_READ(inode, i_ino);
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	if (*mode & EG_SCOPED) {
		struct eg_exe_key root = {.cgroup_id = key.cgroup_id, .dev = key.dev};

		if (!bpf_map_lookup_elem(&eg_allowed, &root))
			return 0;
	}
	if (bpf_map_lookup_elem(&eg_allowed, &key))
		return 0;
	ck.cgroup_id = key.cgroup_id;
	bpf_get_current_comm(ck.comm, sizeof(ck.comm));
	if (bpf_map_lookup_elem(&eg_comms, &ck))
		return 0;

	rec = bpf_ringbuf_reserve(&eg_records, sizeof(*rec), 0);
	if ((*mode & EG_MODE_MASK) == EG_PROTECT) {
		long err = bpf_send_signal(SIGKILL);

		if (rec)
			rec->killed = err == 0;
	} else if (rec) {
		rec->killed = 0;
	}
	if (!rec) {
		__u64 *lost = bpf_map_lookup_elem(&eg_lost, &zero);

		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	rec->ts_ns = now;
	rec->cgroup_id = key.cgroup_id;
	rec->ino = key.ino;
	rec->dev = key.dev;
	rec->pid = bpf_get_current_pid_tgid() >> 32;
	rec->uid = (__u32)bpf_get_current_uid_gid();
	rec->mode = (*mode & EG_MODE_MASK) | (guard_running ? EG_REC_UNCOVERED : 0);
	bpf_get_current_comm(rec->comm, sizeof(rec->comm));
	off = ctx->data_loc_filename & 0xffff;
	n = bpf_probe_read_kernel_str(rec->filename, sizeof(rec->filename), (void *)ctx + off);
	rec->filename_len = n > 0 ? n - 1 : 0;
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

/* The end of the agent hands execs to the fallback at once: the heartbeat
 * is cleared when the main thread of the process that beat exits, however
 * it ends (SIGKILL, a panic, the OOM killer). */
SEC("tracepoint/sched/sched_process_exit")
int palisade_execguard_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0, tgid = id >> 32;
	struct eg_beat *beat;

	if ((__u32)id != tgid)
		return 0; /* not the main thread */
	beat = bpf_map_lookup_elem(&eg_heartbeat, &zero);
	if (beat && beat->tgid == tgid && tgid != 0)
		beat->beat_ns = 0;
	return 0;
}
