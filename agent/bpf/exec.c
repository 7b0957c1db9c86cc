//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Palisade process observer: one ring buffer event per successful exec, with
 * the cgroup (v2) of the process, so user space can attribute it to a
 * workload, learn its process profile and report violations.
 */
#include "common.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define FILENAME_MAX 256
#define COMM_LEN 16

/* Layout of /sys/kernel/tracing/events/sched/sched_process_exec/format. */
struct sched_process_exec_args {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__u32 data_loc_filename;
	__s32 pid;
	__s32 old_pid;
};

struct exec_event {
	__u64 ts_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 filename_len;
	char comm[COMM_LEN];
	char filename[FILENAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} exec_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} exec_lost SEC(".maps");

const struct exec_event *unused_exec_event __attribute__((unused));

SEC("tracepoint/sched/sched_process_exec")
int palisade_exec(struct sched_process_exec_args *ctx)
{
	struct exec_event *ev;
	__u32 off = ctx->data_loc_filename & 0xffff;
	long n;

	ev = bpf_ringbuf_reserve(&exec_events, sizeof(*ev), 0);
	if (!ev) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&exec_lost, &zero);

		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	ev->ts_ns = bpf_ktime_get_ns();
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->ppid = 0;
	ev->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	n = bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), (void *)ctx + off);
	ev->filename_len = n > 0 ? n - 1 : 0;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}
