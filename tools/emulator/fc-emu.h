/*
 * fc-emu: a stand-in for Firecracker restoring a snapshot with the Uffd memory backend, followed by a
 * workload that verifies every byte the guest sees against the snapshot file.
 */
#ifndef FC_EMU_H
#define FC_EMU_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define MAX_REGIONS 2
#define MAX_VCPUS 64
#define MAX_REPORTED_MISMATCHES 5

/* Exit codes. */
#define EXIT_VERIFY 1
#define EXIT_USAGE 2
#define EXIT_NO_KVM 3
#define EXIT_SETUP 4

enum pattern { PAT_SEQ, PAT_RANDOM, PAT_TRACE, PAT_NONE };

struct opts {
	const char *socket_path, *mem_path, *trace_path, *removed_out, *handshake_json, *handshake_extra;
	const char *fc_version; /* "1.6", "1.11" or "1.14" */
	uint64_t mem_size;      /* 0: size of the file */
	uint64_t page_size;
	bool uffd_syscall;
	long connect_timeout_ms;
	unsigned vcpus;
	enum pattern pattern;
	uint64_t touch_pages; /* 0: pattern default */
	bool share_same;
	unsigned write_percent;
	uint64_t kernel_access;
	bool kvm;
	uint64_t balloon_cycles, balloon_max_pages;
	uint64_t seed;
	long hold_ms, deadline_ms;
	int nfds;
	bool close_before_send, send_empty, no_workload, json;
	bool backend_file;    /* map the memory file MAP_PRIVATE per region (Firecracker's File backend): no uffd */
	bool drop_file_cache; /* evict the memory file from the page cache before the restore */
};

struct region {
	uint8_t *host;   /* this region's own mapping */
	uint64_t size;
	uint64_t offset; /* offset in the memory file */
	uint64_t gpa;    /* guest physical address */
};

/*
 * Expected state of one guest page. Content = base (snapshot, or zeros after a balloon removal) with the
 * first 8 bytes replaced by `stamp` when a vCPU wrote it. State changes only under the exclusive lock.
 */
#define PS_ZERO 1u    /* base is zeros: removed by the balloon */
#define PS_TOUCHED 2u /* accessed since mapped or since last removal: the next access does not fault */
#define PS_REMOVED 4u /* removed by the balloon and not accessed since */
#define PS_MAPPED 8u  /* an access completed since mapped or since last removal: the page is present */
/*
 * Two accesses faulted on the page at once, since mapped or since last removal. Each sent a fault message;
 * the first install wakes both, so the handler may still hold the second (already read) message and serve
 * it late: when its UFFDIO_COPY meets EAGAIN (any REMOVE in flight), it is retried after the next read,
 * which can carry a REMOVE of this very page. The handler then installs the removed page for a guest that
 * no longer waits, and the page leaves its removed-ranges export although the guest never touched it.
 */
#define PS_DUP_FAULT 16u
/* The last removal ended an epoch with a duplicate fault (PS_DUP_FAULT): the handler may install it late. */
#define PS_RACY 32u

struct page_state {
	_Atomic int32_t lock; /* >0: that many readers, -1: exclusive */
	_Atomic uint32_t flags;
	_Atomic uint32_t accessing; /* accesses in progress (readers can overlap) */
	_Atomic uint64_t stamp;     /* 0: not stamped */
};

struct mismatch {
	uint64_t page_offset; /* file offset of the page */
	uint64_t byte_offset; /* within the page, 8-byte aligned */
	uint64_t expected, got;
	const char *context;
	bool zero_base; /* expected zeros (removed by the balloon) rather than snapshot content */
	bool stamped;   /* expected a vCPU's 8-byte stamp at the start */
};

/* A touch-list entry: page index << 1 | write. */
#define TOUCH(page, write) (((uint64_t)(page) << 1) | (uint64_t)!!(write))
#define TOUCH_PAGE(t) ((t) >> 1)
#define TOUCH_WRITE(t) ((t) & 1)

/*
 * What a worker is doing now, for the deadline report: a worker that never finishes says which page it
 * waits on and in what step, so a hang can be told apart as a lost wake (stuck in the first access of a
 * page that is mapped by now), an unserved fault (page still missing) or a slow/starved emulator.
 */
enum activity { ACT_START, ACT_LOCK, ACT_ACCESS, ACT_VERIFY, ACT_MADVISE, ACT_YIELD, ACT_DONE };

struct activity_now {
	_Atomic int what;          /* enum activity */
	_Atomic uint64_t page;     /* page index the step is about (ACT_MADVISE: the first) */
	_Atomic uint64_t npages;   /* ACT_MADVISE: pages removed */
	_Atomic uint64_t since_ns; /* CLOCK_MONOTONIC when the step began */
};

void activity_set(struct activity_now *a, enum activity what, uint64_t page, uint64_t npages);

struct vcpu {
	unsigned id;
	struct activity_now act;
	uint64_t *list; /* touches of one pass */
	size_t n;
	uint64_t pool_lo, pool_n; /* pages [pool_lo, pool_lo + pool_n) are this vCPU's (kernel accesses) */
	uint64_t rng, seq;
	uint8_t *buf;  /* expected content of one page */
	uint8_t *kbuf; /* page read back from kfd */
	uint8_t *sbuf; /* snapshot bytes of a removed page (to count re-zeroed non-zero pages) */
	int kfd;       /* memfd for kernel-mode reads of guest memory */
	float *lat;    /* first-touch latencies, µs */
	size_t nlat, caplat;
	uint64_t touches, verified, writes, kaccesses, rezero, rezero_nonzero;
	/* KVM */
	int kvm_fd;
	struct kvm_run *run;
	uint64_t list_gpa;
	uint32_t checksum_got, checksum_want;
	bool checksum_seen;
	double guest_ms;
};

struct emu {
	struct opts o;
	int mem_fd;
	uint64_t file_size, mem_size, ps, npages;
	unsigned nregions;
	struct region regions[MAX_REGIONS];
	struct page_state *pages;
	int uffd;
	struct vcpu vcpus[MAX_VCPUS];
	struct timespec t_handshake; /* the File backend: when the mappings are made */
	uint64_t cached_pages_after_drop; /* --drop-file-cache: file pages still resident (mincore) */

	_Atomic uint64_t mismatches;
	struct mismatch first[MAX_REPORTED_MISMATCHES];
	unsigned nfirst;

	_Atomic bool balloon_done;
	uint64_t balloon_cycles_done, balloon_pages_removed;
	struct activity_now balloon_act;
	uint64_t balloon_racy_removals; /* removals of a page with a duplicate fault since its last removal */

	/* Set once by a worker that hit a non-verification failure (e.g. an ioctl); reported as "error". */
	_Atomic(const char *) error;
	char error_buf[256];
};

extern struct emu E;

/* fc-emu.c */
void fail_setup(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double ms_since(const struct timespec *t0);
void worker_finished(void);

/* workload.c */
void build_touch_lists(void);
void *vcpu_host_main(void *arg);
void *balloon_main(void *arg);
void kernel_accesses(struct vcpu *v, uint64_t i, uint64_t n);
void verify_after_guest(struct vcpu *v, uint64_t page);
bool check_page(struct vcpu *v, uint64_t page, const uint8_t *got, size_t from, const char *ctx);
void read_snapshot(uint8_t *dst, uint64_t page);
uint8_t *page_addr(uint64_t page);
uint64_t page_gpa(uint64_t page);
int write_removed_out(const char *path);
void write_racy_removed_json(FILE *f);

/* kvm.c */
void kvm_open_or_exit(void);
void kvm_setup(void);
void *vcpu_kvm_main(void *arg);

#endif
