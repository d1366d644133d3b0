/*
 * The verifying workload: vCPU threads touch guest pages (each first touch is a uffd fault) and compare
 * every page with its expected state; kernel-mode accesses; the balloon thread; --removed-out.
 */
#include "fc-emu.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_mutex_t mismatch_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t rng_next(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

void activity_set(struct activity_now *a, enum activity what, uint64_t page, uint64_t npages)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	atomic_store(&a->page, page);
	atomic_store(&a->npages, npages);
	atomic_store(&a->since_ns, (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec);
	atomic_store(&a->what, what);
}

static unsigned region_of(uint64_t page)
{
	return E.nregions > 1 && page * E.ps >= E.regions[1].offset;
}

uint8_t *page_addr(uint64_t page)
{
	const struct region *r = &E.regions[region_of(page)];
	return r->host + (page * E.ps - r->offset);
}

uint64_t page_gpa(uint64_t page)
{
	const struct region *r = &E.regions[region_of(page)];
	return r->gpa + (page * E.ps - r->offset);
}

/* The snapshot's content of a page: holes and anything beyond EOF read as zeros. */
void read_snapshot(uint8_t *dst, uint64_t page)
{
	uint64_t off = page * E.ps;
	size_t done = 0;
	while (done < E.ps && off + done < E.file_size) {
		ssize_t n = pread(E.mem_fd, dst + done, E.ps - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_error("pread %s at %llu: %s", E.o.mem_path, (unsigned long long)(off + done), strerror(errno));
			break;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	memset(dst + done, 0, E.ps - done);
}

/* ---- per-page locks: readers share, writers and the balloon are exclusive ---- */

static void backoff(unsigned spins)
{
	if (spins < 64)
		__builtin_ia32_pause();
	else
		sched_yield();
}

static void lock_shared(struct page_state *s)
{
	for (unsigned spins = 0;; spins++) {
		int32_t v = atomic_load_explicit(&s->lock, memory_order_relaxed);
		if (v >= 0 && atomic_compare_exchange_weak_explicit(&s->lock, &v, v + 1, memory_order_acquire,
								    memory_order_relaxed))
			return;
		backoff(spins);
	}
}

static void unlock_shared(struct page_state *s)
{
	atomic_fetch_sub_explicit(&s->lock, 1, memory_order_release);
}

static bool trylock_excl(struct page_state *s)
{
	int32_t v = 0;
	return atomic_compare_exchange_strong_explicit(&s->lock, &v, -1, memory_order_acquire, memory_order_relaxed);
}

static void lock_excl(struct page_state *s)
{
	for (unsigned spins = 0; !trylock_excl(s); spins++)
		backoff(spins);
}

static void unlock_excl(struct page_state *s)
{
	atomic_store_explicit(&s->lock, 0, memory_order_release);
}

/* ---- verification ---- */

static void record_mismatch(uint64_t page, const uint8_t *got, const uint8_t *want, size_t from, const char *ctx,
			    bool zero_base, bool stamped)
{
	size_t i = from, ndiff = 0;
	while (got[i] == want[i])
		i++;
	for (size_t k = i; k < E.ps; k++)
		ndiff += got[k] != want[k];
	size_t w = i & ~(size_t)7;
	struct mismatch m = {.page_offset = page * E.ps, .byte_offset = w, .context = ctx, .zero_base = zero_base,
			     .stamped = stamped};
	memcpy(&m.expected, want + w, 8);
	memcpy(&m.got, got + w, 8);
	uint64_t n = atomic_fetch_add(&E.mismatches, 1);
	pthread_mutex_lock(&mismatch_lock);
	if (E.nfirst < MAX_REPORTED_MISMATCHES)
		E.first[E.nfirst++] = m;
	pthread_mutex_unlock(&mismatch_lock);
	if (n < MAX_REPORTED_MISMATCHES)
		fprintf(stderr,
			"fc-emu: MISMATCH (%s) page at file offset %llu, expected %s%s: byte %zu: expected 0x%016llx "
			"got 0x%016llx (little-endian words at byte %zu; %zu of %llu bytes differ)\n",
			ctx, (unsigned long long)m.page_offset, zero_base ? "zeros (removed by the balloon)" : "snapshot",
			stamped ? " + stamp" : "", i, (unsigned long long)m.expected, (unsigned long long)m.got, w, ndiff,
			(unsigned long long)E.ps);
}

/* Compares got[from..ps) with the page's expected content; the caller holds the page lock. */
bool check_page(struct vcpu *v, uint64_t page, const uint8_t *got, size_t from, const char *ctx)
{
	struct page_state *s = &E.pages[page];
	uint32_t f = atomic_load(&s->flags);
	uint64_t stamp = atomic_load(&s->stamp);
	if (f & PS_ZERO)
		memset(v->buf, 0, E.ps);
	else
		read_snapshot(v->buf, page);
	if (stamp)
		memcpy(v->buf, &stamp, sizeof(stamp));
	v->verified++;
	if (f & PS_ZERO) {
		v->rezero++;
		/* Only a removed page whose snapshot bytes are not zero proves zeros were served on purpose. */
		read_snapshot(v->sbuf, page);
		for (size_t k = 0; k < E.ps; k++)
			if (v->sbuf[k]) {
				v->rezero_nonzero++;
				break;
			}
	}
	if (!memcmp(got + from, v->buf + from, E.ps - from))
		return true;
	record_mismatch(page, got, v->buf, from, ctx, f & PS_ZERO, stamp != 0);
	return false;
}

/* Marks a page accessed; returns true if this is its first access since mapped or removed (a fault). */
static bool mark_touched(struct page_state *s)
{
	uint32_t old = atomic_fetch_or(&s->flags, PS_TOUCHED);
	if (old & PS_REMOVED)
		atomic_fetch_and(&s->flags, ~PS_REMOVED);
	return !(old & PS_TOUCHED);
}

/*
 * Brackets one access that may fault. Only readers overlap (writers and the balloon are exclusive); two
 * overlapping accesses of a page not yet mapped are two fault messages for one page (see PS_DUP_FAULT).
 * An access sets PS_MAPPED before it leaves, so a later one seeing PS_MAPPED cannot have faulted.
 */
static void access_begin(struct page_state *s)
{
	if (atomic_fetch_add(&s->accessing, 1) && !(atomic_load(&s->flags) & PS_MAPPED))
		atomic_fetch_or(&s->flags, PS_DUP_FAULT);
}

static void access_end(struct page_state *s)
{
	atomic_fetch_or(&s->flags, PS_MAPPED);
	atomic_fetch_sub(&s->accessing, 1);
}

static void record_latency(struct vcpu *v, double us)
{
	if (v->nlat == v->caplat) {
		size_t cap = v->caplat ? v->caplat * 2 : 4096;
		float *p = realloc(v->lat, cap * sizeof(float));
		if (!p)
			return;
		v->lat = p;
		v->caplat = cap;
	}
	v->lat[v->nlat++] = (float)us;
}

/* Unique stamp: tag, vCPU, page, sequence. Never 0. */
static uint64_t make_stamp(struct vcpu *v, uint64_t page)
{
	return 0xA5ull << 56 | (uint64_t)v->id << 48 | (page & 0xFFFFFF) << 24 | (++v->seq & 0xFFFFFF);
}

static void touch(struct vcpu *v, uint64_t page, bool write)
{
	struct page_state *s = &E.pages[page];
	uint8_t *p = page_addr(page);
	activity_set(&v->act, ACT_LOCK, page, 1);
	if (write) {
		uint64_t stamp = make_stamp(v, page);
		lock_excl(s);
		access_begin(s);
		if (mark_touched(s)) {
			/* The stamp store is the first access: the fault carries UFFD_PAGEFAULT_FLAG_WRITE. */
			activity_set(&v->act, ACT_ACCESS, page, 1);
			double t0 = now_us();
			*(volatile uint64_t *)p = stamp;
			record_latency(v, now_us() - t0);
			activity_set(&v->act, ACT_VERIFY, page, 1);
			check_page(v, page, p, 8, "write, first touch");
		} else {
			activity_set(&v->act, ACT_VERIFY, page, 1);
			check_page(v, page, p, 0, "before write");
			*(volatile uint64_t *)p = stamp;
		}
		access_end(s);
		atomic_store(&s->stamp, stamp);
		unlock_excl(s);
		v->writes++;
	} else {
		lock_shared(s);
		access_begin(s);
		if (mark_touched(s)) {
			activity_set(&v->act, ACT_ACCESS, page, 1);
			double t0 = now_us();
			(void)*(volatile uint8_t *)p;
			record_latency(v, now_us() - t0);
		}
		activity_set(&v->act, ACT_VERIFY, page, 1);
		check_page(v, page, p, 0, "read");
		access_end(s);
		unlock_shared(s);
	}
	v->touches++;
}

/* Verifies a page that a KVM guest touched, once per page. */
void verify_after_guest(struct vcpu *v, uint64_t page)
{
	struct page_state *s = &E.pages[page];
	if (!mark_touched(s))
		return;
	lock_shared(s);
	check_page(v, page, page_addr(page), 0, "after KVM guest");
	unlock_shared(s);
}

/* ---- kernel-mode accesses: the kernel itself faults on guest memory (copy_from_user / copy_to_user) ---- */

static uint64_t random_pool_page(struct vcpu *v)
{
	return v->pool_lo + rng_next(&v->rng) % v->pool_n;
}

/* pread() from the snapshot file into a page still holding snapshot content; false if none found. */
static bool kernel_write_guest(struct vcpu *v)
{
	for (int tries = 0; tries < 16; tries++) {
		uint64_t page = random_pool_page(v);
		struct page_state *s = &E.pages[page];
		uint8_t *p = page_addr(page);
		lock_excl(s);
		if ((atomic_load(&s->flags) & PS_ZERO) || atomic_load(&s->stamp)) {
			unlock_excl(s);
			continue;
		}
		mark_touched(s);
		access_begin(s);
		uint64_t off = page * E.ps;
		if (off < E.file_size) {
			size_t len = E.file_size - off < E.ps ? (size_t)(E.file_size - off) : (size_t)E.ps;
			ssize_t n = pread(E.mem_fd, p, len, (off_t)off);
			if (n < 0)
				set_error("pread into guest page at file offset %llu: %s", (unsigned long long)off,
					  strerror(errno));
		} else {
			(void)*(volatile uint8_t *)p;
		}
		access_end(s);
		check_page(v, page, p, 0, "kernel pread() into guest page");
		unlock_excl(s);
		return true;
	}
	return false;
}

/* write() a guest page to a memfd, read it back and verify it. */
static void kernel_read_guest(struct vcpu *v)
{
	uint64_t page = random_pool_page(v);
	struct page_state *s = &E.pages[page];
	lock_shared(s);
	mark_touched(s);
	access_begin(s);
	ssize_t n = pwrite(v->kfd, page_addr(page), E.ps, 0);
	access_end(s);
	if (n != (ssize_t)E.ps) {
		set_error("write() of guest page at file offset %llu to a memfd: %s", (unsigned long long)(page * E.ps),
			  n < 0 ? strerror(errno) : "short write");
	} else if (pread(v->kfd, v->kbuf, E.ps, 0) != (ssize_t)E.ps) {
		set_error("read back from memfd: %s", strerror(errno));
	} else {
		check_page(v, page, v->kbuf, 0, "kernel write() of guest page");
	}
	unlock_shared(s);
}

static void kernel_access(struct vcpu *v)
{
	if (!v->pool_n)
		return;
	if (!(v->kaccesses & 1) || !kernel_write_guest(v))
		kernel_read_guest(v);
	v->kaccesses++;
}

/* Spreads --kernel-access evenly over a pass of n touches: the ones due after touch i (0-based). */
void kernel_accesses(struct vcpu *v, uint64_t i, uint64_t n)
{
	uint64_t k = E.o.kernel_access;
	uint64_t due = n ? ((i + 1) * k) / n - (i * k) / n : k;
	while (due--)
		kernel_access(v);
}

void *vcpu_host_main(void *arg)
{
	struct vcpu *v = arg;
	if (!v->n)
		kernel_accesses(v, 0, 0);
	for (uint64_t pass = 0;; pass++) {
		for (size_t i = 0; i < v->n; i++) {
			touch(v, TOUCH_PAGE(v->list[i]), TOUCH_WRITE(v->list[i]));
			if (pass == 0 && E.o.kernel_access)
				kernel_accesses(v, i, v->n);
		}
		/* With a balloon, keep re-touching so removed pages fault again (removed → written → removed). */
		if (!E.o.balloon_cycles || atomic_load(&E.balloon_done) || !v->n)
			break;
	}
	activity_set(&v->act, ACT_DONE, 0, 0);
	worker_finished();
	return NULL;
}

/* ---- balloon ---- */

void *balloon_main(void *arg)
{
	(void)arg;
	uint64_t rng = E.o.seed ^ 0xBA11007ull;
	while (E.balloon_cycles_done < E.o.balloon_cycles) {
		uint64_t first = rng_next(&rng) % E.npages;
		uint64_t n = 1 + rng_next(&rng) % E.o.balloon_max_pages;
		const struct region *r = &E.regions[region_of(first)];
		uint64_t region_end = (r->offset + r->size) / E.ps;
		if (n > region_end - first)
			n = region_end - first;
		/* Inflate only pages no vCPU is using: the guest promises not to touch ballooned pages. */
		uint64_t locked = 0;
		while (locked < n && trylock_excl(&E.pages[first + locked]))
			locked++;
		if (locked < n) {
			while (locked)
				unlock_excl(&E.pages[first + --locked]);
			activity_set(&E.balloon_act, ACT_YIELD, first, n);
			sched_yield();
			continue;
		}
		activity_set(&E.balloon_act, ACT_MADVISE, first, n);
		if (madvise(page_addr(first), n * E.ps, MADV_DONTNEED) < 0) {
			set_error("madvise(MADV_DONTNEED) of %llu pages at file offset %llu: %s", (unsigned long long)n,
				  (unsigned long long)(first * E.ps), strerror(errno));
			for (uint64_t i = 0; i < n; i++)
				unlock_excl(&E.pages[first + i]);
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			struct page_state *s = &E.pages[first + i];
			uint32_t old = atomic_load(&s->flags);
			/* Racy: a duplicate fault since the last removal, or still racy from it and untouched since. */
			bool racy = (old & PS_DUP_FAULT) || (old & (PS_REMOVED | PS_RACY)) == (PS_REMOVED | PS_RACY);
			E.balloon_racy_removals += racy;
			atomic_store(&s->stamp, 0);
			atomic_store(&s->flags, PS_ZERO | PS_REMOVED | (racy ? PS_RACY : 0));
			unlock_excl(s); /* deflate: the guest may use the page again */
		}
		E.balloon_pages_removed += n;
		E.balloon_cycles_done++;
		activity_set(&E.balloon_act, ACT_YIELD, first, n);
		sched_yield();
	}
	activity_set(&E.balloon_act, ACT_DONE, 0, 0);
	atomic_store(&E.balloon_done, true);
	worker_finished();
	return NULL;
}

/* JSON array: file offsets of the pages removed and untouched at the end whose last removal was racy. */
void write_racy_removed_json(FILE *f)
{
	const char *sep = "";
	fputc('[', f);
	for (uint64_t p = 0; p < E.npages; p++)
		if ((atomic_load(&E.pages[p].flags) & (PS_REMOVED | PS_RACY)) == (PS_REMOVED | PS_RACY)) {
			fprintf(f, "%s%llu", sep, (unsigned long long)(p * E.ps));
			sep = ",";
		}
	fputc(']', f);
}

int write_removed_out(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	for (uint64_t p = 0; p < E.npages;) {
		if (!(atomic_load(&E.pages[p].flags) & PS_REMOVED)) {
			p++;
			continue;
		}
		uint64_t q = p;
		while (q < E.npages && (atomic_load(&E.pages[q].flags) & PS_REMOVED))
			q++;
		fprintf(f, "%llu %llu\n", (unsigned long long)(p * E.ps), (unsigned long long)(q * E.ps));
		p = q;
	}
	return fclose(f) ? -1 : 0;
}

/* ---- touch lists ---- */

static void usage_exit(const char *fmt, const char *a, unsigned long long b)
{
	fprintf(stderr, "fc-emu: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	exit(EXIT_USAGE);
}

static uint64_t *xmalloc_u64(size_t n)
{
	uint64_t *p = malloc((n ? n : 1) * sizeof(uint64_t));
	if (!p)
		fail_setup("malloc: %s", strerror(errno));
	return p;
}

/* Trace lines: "<ms> <file offset> <r|w>"; blank lines and # comments are ignored. */
static uint64_t *load_trace(size_t *count)
{
	FILE *f = fopen(E.o.trace_path, "r");
	if (!f) {
		fprintf(stderr, "fc-emu: trace %s: %s\n", E.o.trace_path, strerror(errno));
		exit(EXIT_USAGE);
	}
	size_t n = 0, cap = 1024;
	uint64_t *t = xmalloc_u64(cap);
	char *line = NULL;
	size_t linecap = 0;
	unsigned long long lineno = 0;
	while (getline(&line, &linecap, f) > 0) {
		lineno++;
		char *s = line + strspn(line, " \t\r\n");
		if (!*s || *s == '#')
			continue;
		double ms;
		unsigned long long off;
		char rw;
		if (sscanf(s, "%lf %llu %c", &ms, &off, &rw) != 3 || (rw != 'r' && rw != 'w'))
			usage_exit("trace %s: line %llu is not '<ms> <file offset> <r|w>'", E.o.trace_path, lineno);
		if (off >= E.mem_size)
			usage_exit("trace %s: line %llu: offset beyond guest memory", E.o.trace_path, lineno);
		if (n == cap) {
			cap *= 2;
			uint64_t *p = realloc(t, cap * sizeof(uint64_t));
			if (!p)
				fail_setup("realloc: %s", strerror(errno));
			t = p;
		}
		t[n++] = TOUCH(off / E.ps, rw == 'w');
	}
	free(line);
	fclose(f);
	*count = n;
	return t;
}

void build_touch_lists(void)
{
	unsigned nv = E.o.vcpus;
	size_t ntrace = 0;
	uint64_t *trace = E.o.pattern == PAT_TRACE ? load_trace(&ntrace) : NULL;
	for (unsigned i = 0; i < nv; i++) {
		struct vcpu *v = &E.vcpus[i];
		v->id = i;
		v->rng = E.o.seed * 0x9E3779B97F4A7C15ull + i;
		rng_next(&v->rng);
		v->kfd = -1;
		if (E.o.share_same) {
			v->pool_lo = 0;
			v->pool_n = E.npages;
		} else {
			v->pool_lo = E.npages * i / nv;
			v->pool_n = E.npages * (i + 1) / nv - v->pool_lo;
		}
		size_t n = 0;
		uint64_t *list = NULL;
		switch (E.o.pattern) {
		case PAT_SEQ:
			n = E.o.touch_pages ? E.o.touch_pages : v->pool_n;
			if (!v->pool_n)
				n = 0;
			list = xmalloc_u64(n);
			for (size_t k = 0; k < n; k++)
				list[k] = TOUCH(v->pool_lo + k % v->pool_n,
						rng_next(&v->rng) % 100 < E.o.write_percent);
			break;
		case PAT_RANDOM: {
			n = E.o.touch_pages ? E.o.touch_pages : (v->pool_n + 3) / 4;
			if (!v->pool_n)
				n = 0;
			list = xmalloc_u64(n);
			/* Successive random permutations of the pool: distinct pages until the pool is used up. */
			uint64_t *perm = xmalloc_u64(v->pool_n);
			for (uint64_t k = 0; k < v->pool_n; k++)
				perm[k] = v->pool_lo + k;
			for (size_t k = 0; k < n; k++) {
				uint64_t j = k % v->pool_n;
				uint64_t r = j + rng_next(&v->rng) % (v->pool_n - j);
				uint64_t tmp = perm[j];
				perm[j] = perm[r];
				perm[r] = tmp;
				list[k] = TOUCH(perm[j], rng_next(&v->rng) % 100 < E.o.write_percent);
			}
			free(perm);
			break;
		}
		case PAT_TRACE:
			list = xmalloc_u64(ntrace);
			for (size_t k = E.o.share_same ? 0 : i; k < ntrace; k += E.o.share_same ? 1 : nv)
				list[n++] = trace[k];
			if (E.o.touch_pages && E.o.touch_pages < n)
				n = E.o.touch_pages;
			break;
		case PAT_NONE:
			break;
		}
		v->list = list;
		v->n = n;
		v->buf = aligned_alloc(4096, E.ps);
		v->kbuf = aligned_alloc(4096, E.ps);
		v->sbuf = aligned_alloc(4096, E.ps);
		if (!v->buf || !v->kbuf || !v->sbuf)
			fail_setup("aligned_alloc: %s", strerror(errno));
		if (E.o.kernel_access && (v->kfd = memfd_create("fc-emu-kernel-access", MFD_CLOEXEC)) < 0)
			fail_setup("memfd_create: %s", strerror(errno));
	}
	free(trace);
}
