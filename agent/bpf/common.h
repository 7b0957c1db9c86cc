/* Shared definitions for Palisade's eBPF programs. */
#ifndef PALISADE_COMMON_H
#define PALISADE_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef LIBBPF_PIN_BY_NAME
#define LIBBPF_PIN_BY_NAME 1
#endif

#endif
