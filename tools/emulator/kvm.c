/*
 * --kvm: the touches run inside a KVM guest, so faults arrive the way they do from a Firecracker guest:
 * KVM resolves the EPT/NPT violation with get_user_pages() on the uffd-registered host mapping, and each first
 * touch of a page raises one uffd fault in kernel mode.
 *
 * Guest physical layout: region 0 at 0, region 1 at 4 GiB (as Firecracker), plus a small slot of ordinary
 * memory at CODE_GPA (inside the MMIO gap of every version) holding the code, identity page tables (2 MiB
 * pages) and one touch list per vCPU. The vCPU starts directly in 64-bit mode.
 */
#include "fc-emu.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CODE_GPA 0xE0000000ull
#define CODE_GPA_END 0xFE000000ull
#define RESULT_PORT 0x3f0
#define KVM_STAMP_TAG 0x504D4154534D564Bull /* "KVMSTAMP" */
/* Bytes between checksummed dwords: 8 per 4 KiB page. The host re-verifies every byte after the run, and on
 * machines where the guest is emulated (nested without hardware support) each guest instruction is costly. */
#define CHECKSUM_STRIDE 512

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define PTE_P 1ull
#define PTE_RW 2ull
#define PTE_PS 0x80ull

/*
 * In: rsi = touch list (u64 entries: guest phys addr of a page | 1 if write), rcx = entries,
 *     r8 = dwords to sum per page, r9 = stride between them in bytes (CHECKSUM_STRIDE), r10 = stamp tag.
 * For each entry: if write, store (addr ^ tag) in the page's first 8 bytes; then checksum dwords of the rest of
 * the page from byte 8 on (ebx += dword; rol ebx, 1). The checksum leaves out the stamp so that it does not
 * depend on how vCPUs writing the same page interleave. Finally: out 0x3f0, eax = checksum; hlt.
 */
static const uint8_t guest_code[] = {
	0x31, 0xdb,                   /* 00: xor ebx, ebx */
	0x48, 0x85, 0xc9,             /* 02: next: test rcx, rcx */
	0x74, 0x2f,                   /* 05: jz done */
	0x48, 0x8b, 0x06,             /* 07: mov rax, [rsi] */
	0x48, 0x83, 0xc6, 0x08,       /* 0a: add rsi, 8 */
	0x48, 0x0f, 0xba, 0xf0, 0x00, /* 0e: btr rax, 0 */
	0x73, 0x09,                   /* 13: jnc read */
	0x48, 0x89, 0xc2,             /* 15: mov rdx, rax */
	0x4c, 0x31, 0xd2,             /* 18: xor rdx, r10 */
	0x48, 0x89, 0x10,             /* 1b: mov [rax], rdx */
	0x48, 0x8d, 0x78, 0x08,       /* 1e: read: lea rdi, [rax+8] */
	0x4c, 0x89, 0xc2,             /* 22: mov rdx, r8 */
	0x03, 0x1f,                   /* 25: sum: add ebx, [rdi] */
	0xd1, 0xc3,                   /* 27: rol ebx, 1 */
	0x4c, 0x01, 0xcf,             /* 29: add rdi, r9 */
	0x48, 0xff, 0xca,             /* 2c: dec rdx */
	0x75, 0xf4,                   /* 2f: jnz sum */
	0x48, 0xff, 0xc9,             /* 31: dec rcx */
	0xeb, 0xcc,                   /* 34: jmp next */
	0x89, 0xd8,                   /* 36: done: mov eax, ebx */
	0x66, 0xba, 0xf0, 0x03,       /* 38: mov dx, 0x3f0 */
	0xef,                         /* 3c: out dx, eax */
	0xf4,                         /* 3d: hlt */
};

static int kvm_fd = -1, vm_fd = -1;
static size_t run_size;
static pthread_barrier_t guests_done;

static void no_kvm(const char *what, int err) __attribute__((noreturn));
static void no_kvm(const char *what, int err)
{
	fprintf(stderr, "fc-emu: KVM unavailable: %s: %s\n", what, err ? strerror(err) : "unsupported");
	exit(EXIT_NO_KVM);
}

void kvm_open_or_exit(void)
{
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		no_kvm("open /dev/kvm", errno);
	int v = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION)
		no_kvm("KVM_GET_API_VERSION", v < 0 ? errno : 0);
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0)
		no_kvm("KVM_CAP_USER_MEMORY", 0);
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0)
		no_kvm("KVM_CREATE_VM", errno);
	int n = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (n <= 0)
		no_kvm("KVM_GET_VCPU_MMAP_SIZE", errno);
	run_size = (size_t)n;
}

static void set_slot(uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region m = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)host,
	};
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &m) < 0)
		fail_setup("KVM_SET_USER_MEMORY_REGION slot %u (guest 0x%llx, %llu bytes): %s", slot,
			   (unsigned long long)gpa, (unsigned long long)size, strerror(errno));
}

static struct kvm_cpuid2 *supported_cpuid(void)
{
	for (unsigned nent = 64;; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			fail_setup("calloc: %s", strerror(errno));
		c->nent = nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		int err = errno;
		free(c);
		if (err != E2BIG || nent > 4096)
			fail_setup("KVM_GET_SUPPORTED_CPUID: %s", strerror(err));
	}
}

static void setup_vcpu(struct vcpu *v, struct kvm_cpuid2 *cpuid, uint64_t pml4_gpa)
{
	v->kvm_fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)v->id);
	if (v->kvm_fd < 0)
		fail_setup("KVM_CREATE_VCPU %u: %s", v->id, strerror(errno));
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->kvm_fd, 0);
	if (v->run == MAP_FAILED)
		fail_setup("mmap kvm_run: %s", strerror(errno));
	/* Gives the guest a sane MAXPHYADDR (the default is 36 bits) and long mode. */
	if (ioctl(v->kvm_fd, KVM_SET_CPUID2, cpuid) < 0)
		fail_setup("KVM_SET_CPUID2: %s", strerror(errno));

	struct kvm_sregs sregs;
	if (ioctl(v->kvm_fd, KVM_GET_SREGS, &sregs) < 0)
		fail_setup("KVM_GET_SREGS: %s", strerror(errno));
	struct kvm_segment seg = {
		.base = 0, .limit = 0xffffffff, .selector = 1 << 3, .present = 1, .type = 11, /* code, exec/read, accessed */
		.dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	sregs.cs = seg;
	seg.type = 3; /* data, read/write, accessed */
	seg.selector = 2 << 3;
	seg.l = 0;
	seg.db = 1;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
	sregs.cr3 = pml4_gpa;
	sregs.cr4 = CR4_PAE;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(v->kvm_fd, KVM_SET_SREGS, &sregs) < 0)
		fail_setup("KVM_SET_SREGS: %s", strerror(errno));

	struct kvm_regs regs = {
		.rip = CODE_GPA,
		.rflags = 2,
		.rsi = v->list_gpa,
		.rcx = v->n,
		.r8 = (E.ps - 8 + CHECKSUM_STRIDE - 1) / CHECKSUM_STRIDE,
		.r9 = CHECKSUM_STRIDE,
		.r10 = KVM_STAMP_TAG,
	};
	if (ioctl(v->kvm_fd, KVM_SET_REGS, &regs) < 0)
		fail_setup("KVM_SET_REGS: %s", strerror(errno));
}

void kvm_setup(void)
{
	const struct region *last = &E.regions[E.nregions - 1];
	uint64_t top = last->gpa + last->size;
	if (top < CODE_GPA_END)
		top = CODE_GPA_END;
	uint64_t npd = (top + (1ull << 30) - 1) >> 30;
	if (npd > 512)
		fail_setup("--kvm: guest memory above 512 GiB is not supported");

	/* code page, PML4, PDPT, page directories, then the touch lists */
	uint64_t size = 0x3000 + npd * 0x1000;
	for (unsigned i = 0; i < E.o.vcpus; i++) {
		E.vcpus[i].list_gpa = CODE_GPA + size;
		size += (E.vcpus[i].n * 8 + 0xfff) & ~0xfffull;
	}
	size = (size + (2 << 20) - 1) & ~((2ull << 20) - 1);
	if (CODE_GPA + size > CODE_GPA_END)
		fail_setup("--kvm: touch lists too long for the code slot (%llu bytes)", (unsigned long long)size);
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		fail_setup("mmap code slot: %s", strerror(errno));

	memcpy(mem, guest_code, sizeof(guest_code));
	uint64_t *pml4 = (uint64_t *)(mem + 0x1000), *pdpt = (uint64_t *)(mem + 0x2000);
	pml4[0] = (CODE_GPA + 0x2000) | PTE_P | PTE_RW;
	for (uint64_t i = 0; i < npd; i++) {
		uint64_t *pd = (uint64_t *)(mem + 0x3000 + i * 0x1000);
		pdpt[i] = (CODE_GPA + 0x3000 + i * 0x1000) | PTE_P | PTE_RW;
		for (uint64_t j = 0; j < 512; j++)
			pd[j] = ((i << 30) + (j << 21)) | PTE_P | PTE_RW | PTE_PS;
	}
	for (unsigned i = 0; i < E.o.vcpus; i++) {
		struct vcpu *v = &E.vcpus[i];
		uint64_t *list = (uint64_t *)(mem + (v->list_gpa - CODE_GPA));
		for (size_t k = 0; k < v->n; k++) {
			uint64_t page = TOUCH_PAGE(v->list[k]);
			list[k] = page_gpa(page) | TOUCH_WRITE(v->list[k]);
			/* The stamp depends on the page only, so the expected state does not depend on vCPU order. */
			if (TOUCH_WRITE(v->list[k]))
				atomic_store(&E.pages[page].stamp, page_gpa(page) ^ KVM_STAMP_TAG);
		}
	}

	for (unsigned i = 0; i < E.nregions; i++)
		set_slot(i, E.regions[i].gpa, E.regions[i].size, E.regions[i].host);
	set_slot(E.nregions, CODE_GPA, size, mem);

	struct kvm_cpuid2 *cpuid = supported_cpuid();
	for (unsigned i = 0; i < E.o.vcpus; i++)
		setup_vcpu(&E.vcpus[i], cpuid, CODE_GPA + 0x1000);
	free(cpuid);
	pthread_barrier_init(&guests_done, NULL, E.o.vcpus);
}

static void run_guest(struct vcpu *v)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (ioctl(v->kvm_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			set_error("KVM_RUN on vCPU %u: %s", v->id, strerror(errno));
			break;
		}
		struct kvm_run *r = v->run;
		if (r->exit_reason == KVM_EXIT_IO && r->io.direction == KVM_EXIT_IO_OUT && r->io.port == RESULT_PORT &&
		    r->io.size == 4) {
			memcpy(&v->checksum_got, (uint8_t *)r + r->io.data_offset, 4);
			v->checksum_seen = true;
			continue;
		}
		if (r->exit_reason == KVM_EXIT_HLT)
			break;
		if (r->exit_reason == KVM_EXIT_FAIL_ENTRY)
			set_error("KVM guest of vCPU %u failed to enter: hardware reason 0x%llx", v->id,
				  (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
		else if (r->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			set_error("KVM guest of vCPU %u: internal error, suberror %u", v->id, r->internal.suberror);
		else if (r->exit_reason == KVM_EXIT_MMIO)
			set_error("KVM guest of vCPU %u: MMIO exit at guest phys 0x%llx (memory slot missing?)", v->id,
				  (unsigned long long)r->mmio.phys_addr);
		else
			set_error("KVM guest of vCPU %u stopped with exit reason %u", v->id, r->exit_reason);
		break;
	}
	v->guest_ms = ms_since(&t0);
}

static uint32_t expected_checksum(struct vcpu *v)
{
	uint32_t sum = 0;
	for (size_t k = 0; k < v->n; k++) {
		read_snapshot(v->buf, TOUCH_PAGE(v->list[k]));
		for (size_t b = 8; b < E.ps; b += CHECKSUM_STRIDE) {
			uint32_t w;
			memcpy(&w, v->buf + b, 4);
			sum += w;
			sum = sum << 1 | sum >> 31;
		}
	}
	return sum;
}

void *vcpu_kvm_main(void *arg)
{
	struct vcpu *v = arg;
	run_guest(v);
	/* Verify only once every guest is done: then no guest writes race the host's reads. */
	pthread_barrier_wait(&guests_done);
	v->checksum_want = expected_checksum(v);
	if (!v->checksum_seen || v->checksum_got != v->checksum_want) {
		atomic_fetch_add(&E.mismatches, 1);
		fprintf(stderr, "fc-emu: MISMATCH KVM guest checksum on vCPU %u: expected 0x%08x, got %s0x%08x\n", v->id,
			v->checksum_want, v->checksum_seen ? "" : "nothing, ", v->checksum_got);
	}
	for (size_t k = 0; k < v->n; k++) {
		v->touches++;
		v->writes += TOUCH_WRITE(v->list[k]);
		verify_after_guest(v, TOUCH_PAGE(v->list[k]));
	}
	kernel_accesses(v, 0, 0);
	activity_set(&v->act, ACT_DONE, 0, 0);
	worker_finished();
	return NULL;
}
