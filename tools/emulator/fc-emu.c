/*
 * fc-emu: sets up guest memory and the userfaultfd exactly as Firecracker does for a Uffd snapshot restore,
 * hands the uffd to a page-fault handler over a unix socket, then runs a verifying workload.
 * See fc-emu.h and --help.
 */
#include "fc-emu.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

struct emu E;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond;
static unsigned workers_done;

static const char usage_text[] =
	"usage: fc-emu --socket PATH --mem FILE [options]\n"
	"       fc-emu --backend file --mem FILE [options]\n"
	"  --backend uffd|file        uffd: hand a uffd to the handler on --socket (default); file: map FILE\n"
	"                             MAP_PRIVATE per region (Firecracker's File backend), no handler\n"
	"  --drop-file-cache          evict FILE from the page cache (fdatasync + POSIX_FADV_DONTNEED) first\n"
	"  --mem-size BYTES           guest memory size (default: size of FILE)\n"
	"  --page-size 4k|2m          2m = MAP_HUGETLB|MAP_HUGE_2MB mapping (default 4k)\n"
	"  --fc-version 1.6|1.11|1.14 handshake fields, MMIO gap, socket lifetime (default 1.14)\n"
	"  --uffd-create dev|syscall  /dev/userfaultfd + USERFAULTFD_IOC_NEW (default) or userfaultfd(2)\n"
	"  --connect-timeout-ms N     retry connect() this long (default 5000)\n"
	"  --vcpus N                  vCPU threads (default 1)\n"
	"  --pattern P                seq | random | trace:FILE | none (default seq); trace lines are\n"
	"                             '<ms> <file offset> <r|w>', replayed as fast as possible\n"
	"  --touch-pages N            page touches per vCPU and pass\n"
	"  --share same|split         vCPUs walk the same pages or split them (default split)\n"
	"  --write-percent P          percent of touches that write a stamp (default 0)\n"
	"  --kernel-access N          kernel-mode accesses per vCPU (write()/pread() of guest pages)\n"
	"  --kvm                      run the touches inside a KVM guest\n"
	"  --balloon-cycles N         inflate/deflate cycles of a concurrent balloon thread (default 0)\n"
	"  --balloon-max-pages N      max pages per inflate (default 64)\n"
	"  --removed-out FILE         write the removed, untouched ranges (file offsets) at the end\n"
	"  --seed N                   RNG seed (default 1)\n"
	"  --hold-ms N                stay alive (socket open) N ms after the workload\n"
	"  --handshake-json STR       send STR instead of the generated JSON\n"
	"  --handshake-extra STR      append STR (e.g. '\"future_field\":1') to every region object\n"
	"  --fds 0|1|2                fds sent with SCM_RIGHTS: none, the uffd (default), uffd + a dup\n"
	"  --close-before-send        connect, then close without sending\n"
	"  --send-empty               send a 0-byte message, then close\n"
	"  --no-workload              handshake only, then hold and exit 0\n"
	"  --deadline-ms N            vCPUs must finish within N ms of the handshake (default 60000)\n"
	"  --json                     print the result as one JSON line\n"
	"exit: 0 ok, 1 verification failure or deadline, 2 usage, 3 KVM unavailable, 4 setup failure\n";

static void usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("fc-emu: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(see fc-emu --help)\n", stderr);
	exit(EXIT_USAGE);
}

void fail_setup(const char *fmt, ...)
{
	va_list ap;
	fputs("fc-emu: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_SETUP);
}

void set_error(const char *fmt, ...)
{
	static _Atomic bool taken;
	va_list ap;
	va_start(ap, fmt);
	fputs("fc-emu: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (atomic_exchange(&taken, true))
		return;
	va_start(ap, fmt);
	vsnprintf(E.error_buf, sizeof(E.error_buf), fmt, ap);
	va_end(ap);
	atomic_store(&E.error, E.error_buf);
}

double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

void worker_finished(void)
{
	pthread_mutex_lock(&done_lock);
	workers_done++;
	pthread_cond_signal(&done_cond);
	pthread_mutex_unlock(&done_lock);
}

static uint64_t parse_u64(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	if (*s == '-')
		usage_error("%s: not a non-negative integer: '%s'", opt, s);
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		usage_error("%s: not a non-negative integer: '%s'", opt, s);
	return v;
}

static void parse_args(int argc, char **argv)
{
	enum {
		O_SOCKET = 256, O_MEM, O_MEM_SIZE, O_PAGE_SIZE, O_FC_VERSION, O_UFFD_CREATE, O_CONNECT_TIMEOUT,
		O_VCPUS, O_PATTERN, O_TOUCH_PAGES, O_SHARE, O_WRITE_PERCENT, O_KERNEL_ACCESS, O_KVM,
		O_BALLOON_CYCLES, O_BALLOON_MAX, O_REMOVED_OUT, O_SEED, O_HOLD, O_HANDSHAKE_JSON, O_HANDSHAKE_EXTRA, O_FDS,
		O_CLOSE_BEFORE_SEND, O_SEND_EMPTY, O_NO_WORKLOAD, O_DEADLINE, O_JSON, O_HELP, O_BACKEND,
		O_DROP_FILE_CACHE,
	};
	static const struct option longopts[] = {
		{"socket", required_argument, 0, O_SOCKET},
		{"mem", required_argument, 0, O_MEM},
		{"mem-size", required_argument, 0, O_MEM_SIZE},
		{"page-size", required_argument, 0, O_PAGE_SIZE},
		{"fc-version", required_argument, 0, O_FC_VERSION},
		{"uffd-create", required_argument, 0, O_UFFD_CREATE},
		{"connect-timeout-ms", required_argument, 0, O_CONNECT_TIMEOUT},
		{"vcpus", required_argument, 0, O_VCPUS},
		{"pattern", required_argument, 0, O_PATTERN},
		{"touch-pages", required_argument, 0, O_TOUCH_PAGES},
		{"share", required_argument, 0, O_SHARE},
		{"write-percent", required_argument, 0, O_WRITE_PERCENT},
		{"kernel-access", required_argument, 0, O_KERNEL_ACCESS},
		{"kvm", no_argument, 0, O_KVM},
		{"balloon-cycles", required_argument, 0, O_BALLOON_CYCLES},
		{"balloon-max-pages", required_argument, 0, O_BALLOON_MAX},
		{"removed-out", required_argument, 0, O_REMOVED_OUT},
		{"seed", required_argument, 0, O_SEED},
		{"hold-ms", required_argument, 0, O_HOLD},
		{"handshake-json", required_argument, 0, O_HANDSHAKE_JSON},
		{"handshake-extra", required_argument, 0, O_HANDSHAKE_EXTRA},
		{"fds", required_argument, 0, O_FDS},
		{"close-before-send", no_argument, 0, O_CLOSE_BEFORE_SEND},
		{"send-empty", no_argument, 0, O_SEND_EMPTY},
		{"no-workload", no_argument, 0, O_NO_WORKLOAD},
		{"deadline-ms", required_argument, 0, O_DEADLINE},
		{"json", no_argument, 0, O_JSON},
		{"help", no_argument, 0, O_HELP},
		{"backend", required_argument, 0, O_BACKEND},
		{"drop-file-cache", no_argument, 0, O_DROP_FILE_CACHE},
		{0, 0, 0, 0},
	};
	struct opts *o = &E.o;
	*o = (struct opts){
		.fc_version = "1.14",
		.page_size = 4096,
		.connect_timeout_ms = 5000,
		.vcpus = 1,
		.pattern = PAT_SEQ,
		.balloon_max_pages = 64,
		.seed = 1,
		.deadline_ms = 60000,
		.nfds = 1,
	};
	int c, li;
	char name[40];
	opterr = 0;
	while ((li = -1, c = getopt_long(argc, argv, ":", longopts, &li)) != -1) {
		snprintf(name, sizeof(name), "--%s", li >= 0 ? longopts[li].name : "option");
		switch (c) {
		case O_SOCKET: o->socket_path = optarg; break;
		case O_MEM: o->mem_path = optarg; break;
		case O_MEM_SIZE: o->mem_size = parse_u64(name, optarg); break;
		case O_PAGE_SIZE:
			if (!strcmp(optarg, "4k"))
				o->page_size = 4096;
			else if (!strcmp(optarg, "2m"))
				o->page_size = 2 << 20;
			else
				usage_error("--page-size must be 4k or 2m, not '%s'", optarg);
			break;
		case O_FC_VERSION:
			if (strcmp(optarg, "1.6") && strcmp(optarg, "1.11") && strcmp(optarg, "1.14"))
				usage_error("--fc-version must be 1.6, 1.11 or 1.14, not '%s'", optarg);
			o->fc_version = optarg;
			break;
		case O_UFFD_CREATE:
			if (!strcmp(optarg, "dev"))
				o->uffd_syscall = false;
			else if (!strcmp(optarg, "syscall"))
				o->uffd_syscall = true;
			else
				usage_error("--uffd-create must be dev or syscall, not '%s'", optarg);
			break;
		case O_CONNECT_TIMEOUT: o->connect_timeout_ms = (long)parse_u64(name, optarg); break;
		case O_VCPUS: {
			uint64_t v = parse_u64(name, optarg);
			if (v < 1 || v > MAX_VCPUS)
				usage_error("--vcpus must be 1..%d", MAX_VCPUS);
			o->vcpus = (unsigned)v;
			break;
		}
		case O_PATTERN:
			if (!strcmp(optarg, "seq"))
				o->pattern = PAT_SEQ;
			else if (!strcmp(optarg, "random"))
				o->pattern = PAT_RANDOM;
			else if (!strcmp(optarg, "none"))
				o->pattern = PAT_NONE;
			else if (!strncmp(optarg, "trace:", 6) && optarg[6]) {
				o->pattern = PAT_TRACE;
				o->trace_path = optarg + 6;
			} else
				usage_error("--pattern must be seq, random, trace:FILE or none, not '%s'", optarg);
			break;
		case O_TOUCH_PAGES: o->touch_pages = parse_u64(name, optarg); break;
		case O_SHARE:
			if (!strcmp(optarg, "same"))
				o->share_same = true;
			else if (!strcmp(optarg, "split"))
				o->share_same = false;
			else
				usage_error("--share must be same or split, not '%s'", optarg);
			break;
		case O_WRITE_PERCENT: {
			uint64_t v = parse_u64(name, optarg);
			if (v > 100)
				usage_error("--write-percent must be 0..100");
			o->write_percent = (unsigned)v;
			break;
		}
		case O_KERNEL_ACCESS: o->kernel_access = parse_u64(name, optarg); break;
		case O_KVM: o->kvm = true; break;
		case O_BALLOON_CYCLES: o->balloon_cycles = parse_u64(name, optarg); break;
		case O_BALLOON_MAX:
			o->balloon_max_pages = parse_u64(name, optarg);
			if (!o->balloon_max_pages)
				usage_error("--balloon-max-pages must be at least 1");
			break;
		case O_REMOVED_OUT: o->removed_out = optarg; break;
		case O_SEED: o->seed = parse_u64(name, optarg); break;
		case O_HOLD: o->hold_ms = (long)parse_u64(name, optarg); break;
		case O_HANDSHAKE_JSON: o->handshake_json = optarg; break;
		case O_HANDSHAKE_EXTRA: o->handshake_extra = optarg; break;
		case O_FDS: {
			uint64_t v = parse_u64(name, optarg);
			if (v > 2)
				usage_error("--fds must be 0, 1 or 2");
			o->nfds = (int)v;
			break;
		}
		case O_CLOSE_BEFORE_SEND: o->close_before_send = true; break;
		case O_SEND_EMPTY: o->send_empty = true; break;
		case O_NO_WORKLOAD: o->no_workload = true; break;
		case O_DEADLINE: o->deadline_ms = (long)parse_u64(name, optarg); break;
		case O_JSON: o->json = true; break;
		case O_HELP: fputs(usage_text, stdout); exit(0);
		case O_BACKEND:
			if (!strcmp(optarg, "uffd"))
				o->backend_file = false;
			else if (!strcmp(optarg, "file"))
				o->backend_file = true;
			else
				usage_error("--backend must be uffd or file, not '%s'", optarg);
			break;
		case O_DROP_FILE_CACHE: o->drop_file_cache = true; break;
		case ':': usage_error("%s needs a value", argv[optind - 1]);
		default: usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (o->backend_file) {
		/* Firecracker's File backend: no uffd, no handler, no balloon REMOVE events, no hugetlbfs. */
		if (!o->mem_path)
			usage_error("--mem is required");
		if (o->page_size != 4096)
			usage_error("--backend file maps a regular file: --page-size must be 4k");
		if (o->balloon_cycles || o->removed_out)
			usage_error("--backend file has no uffd: --balloon-cycles and --removed-out need --backend uffd");
		if (o->handshake_json || o->handshake_extra || o->nfds != 1 || o->close_before_send || o->send_empty || o->no_workload)
			usage_error("--backend file sends no handshake");
		return;
	}
	if (!o->socket_path || !o->mem_path)
		usage_error("--socket and --mem are required");
	if (strlen(o->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		usage_error("--socket path too long");
	if (o->kvm && o->balloon_cycles)
		usage_error("--kvm cannot be combined with --balloon-cycles (the guest cannot take page locks)");
	if (o->close_before_send && o->send_empty)
		usage_error("--close-before-send and --send-empty exclude each other");
}

/* Guest layout on x86_64: region 0 below the MMIO gap, the rest from 4 GiB. */
static void layout_regions(void)
{
	uint64_t gap = !strcmp(E.o.fc_version, "1.14") ? 0xC0000000ull : 0xD0000000ull;
	uint64_t first = E.mem_size < gap ? E.mem_size : gap;
	E.regions[0] = (struct region){.size = first, .offset = 0, .gpa = 0};
	E.nregions = 1;
	if (E.mem_size > gap) {
		E.regions[1] = (struct region){.size = E.mem_size - first, .offset = first, .gpa = 1ull << 32};
		E.nregions = 2;
	}
}

static void warn_hugepages(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long free_pages = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %lu", &free_pages) == 1)
			break;
	fclose(f);
	/* MAP_NORESERVE reserves nothing: without enough free huge pages the handler's UFFDIO_COPY fails ENOMEM
	 * (or a COW of a zero huge page SIGBUSes the vCPU). */
	if (free_pages < E.npages)
		fprintf(stderr, "fc-emu: warning: %lu free 2 MiB huge pages, guest memory needs %lu "
				"(echo N > /proc/sys/vm/nr_hugepages)\n", free_pages, (unsigned long)E.npages);
}

static void map_memory(void)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	if (E.ps == 2 << 20)
		flags |= MAP_HUGETLB | MAP_HUGE_2MB;
	for (unsigned i = 0; i < E.nregions; i++) {
		void *p = mmap(NULL, E.regions[i].size, PROT_READ | PROT_WRITE, flags, -1, 0);
		if (p == MAP_FAILED)
			fail_setup("mmap of region %u (%llu bytes): %s", i, (unsigned long long)E.regions[i].size,
				   strerror(errno));
		E.regions[i].host = p;
	}
}

/* Firecracker's File backend: each region maps the memory file privately at its offset; the page cache serves
 * reads, a write copies the page. A separate open, as Firecracker's, so the verifying reads' fadvise does not
 * change how the mapping reads ahead. */
static void map_memory_file(void)
{
	if (E.mem_size > E.file_size)
		fail_setup("--backend file: guest memory (%llu bytes) is larger than %s (%llu bytes)",
			   (unsigned long long)E.mem_size, E.o.mem_path, (unsigned long long)E.file_size);
	int fd = open(E.o.mem_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_setup("open %s: %s", E.o.mem_path, strerror(errno));
	for (unsigned i = 0; i < E.nregions; i++) {
		void *p = mmap(NULL, E.regions[i].size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
			       (off_t)E.regions[i].offset);
		if (p == MAP_FAILED)
			fail_setup("mmap of %s for region %u (%llu bytes): %s", E.o.mem_path, i,
				   (unsigned long long)E.regions[i].size, strerror(errno));
		E.regions[i].host = p;
	}
	close(fd);
}

/* Evicts the memory file from the page cache (clean pages only, hence the fdatasync) and counts what stayed.
 * The verifying reads then go without readahead, so they do not warm pages the workload has not touched. */
static void drop_file_cache(void)
{
	if (fdatasync(E.mem_fd) < 0)
		fail_setup("fdatasync %s: %s", E.o.mem_path, strerror(errno));
	int err = posix_fadvise(E.mem_fd, 0, 0, POSIX_FADV_DONTNEED);
	if (!err)
		err = posix_fadvise(E.mem_fd, 0, 0, POSIX_FADV_RANDOM);
	if (err)
		fail_setup("posix_fadvise %s: %s", E.o.mem_path, strerror(err));
	if (!E.file_size)
		return;
	void *m = mmap(NULL, E.file_size, PROT_READ, MAP_SHARED, E.mem_fd, 0);
	uint64_t n = (E.file_size + 4095) / 4096;
	unsigned char *vec = malloc(n);
	if (m == MAP_FAILED || !vec || mincore(m, E.file_size, vec) < 0)
		fail_setup("mincore %s: %s", E.o.mem_path, strerror(errno));
	for (uint64_t i = 0; i < n; i++)
		E.cached_pages_after_drop += vec[i] & 1;
	free(vec);
	munmap(m, E.file_size);
}

static void create_uffd(void)
{
	int fd = -1;
	if (!E.o.uffd_syscall) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			if (fd < 0)
				fail_setup("USERFAULTFD_IOC_NEW: %s", strerror(errno));
			close(dev);
		} else if (errno != ENOENT) {
			fail_setup("open /dev/userfaultfd: %s", strerror(errno));
		}
	}
	if (fd < 0) {
		/* No UFFD_USER_MODE_ONLY: kernel-mode faults (KVM, syscalls) must reach the handler too. */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			fail_setup("userfaultfd(2): %s", strerror(errno));
	}
	/* Firecracker asks for REMOVE events always since v1.12, before only when a balloon device exists. */
	struct uffdio_api api = {.api = UFFD_API};
	if (!strcmp(E.o.fc_version, "1.14") || E.o.balloon_cycles)
		api.features = UFFD_FEATURE_EVENT_REMOVE;
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		fail_setup("UFFDIO_API: %s", strerror(errno));
	for (unsigned i = 0; i < E.nregions; i++) {
		struct uffdio_register reg = {
			.range = {.start = (uintptr_t)E.regions[i].host, .len = E.regions[i].size},
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
			fail_setup("UFFDIO_REGISTER region %u: %s", i, strerror(errno));
	}
	E.uffd = fd;
}

static int connect_socket(void)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct timespec t0;
	strcpy(addr.sun_path, E.o.socket_path);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			fail_setup("socket: %s", strerror(errno));
		if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return s;
		int err = errno;
		close(s);
		if ((err != ENOENT && err != ECONNREFUSED) || ms_since(&t0) >= (double)E.o.connect_timeout_ms)
			fail_setup("connect %s: %s", E.o.socket_path, strerror(err));
		usleep(10000);
	}
}

static char *handshake_json(void)
{
	size_t extra = E.o.handshake_extra ? strlen(E.o.handshake_extra) + 1 : 0;
	size_t cap = (256 + extra) * E.nregions + 8, len = 0;
	char *s = malloc(cap);
	if (!s)
		fail_setup("malloc: %s", strerror(errno));
	len += (size_t)snprintf(s + len, cap - len, "[");
	for (unsigned i = 0; i < E.nregions; i++) {
		const struct region *r = &E.regions[i];
		len += (size_t)snprintf(s + len, cap - len, "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu",
					i ? "," : "", (unsigned long long)(uintptr_t)r->host,
					(unsigned long long)r->size, (unsigned long long)r->offset);
		if (!strcmp(E.o.fc_version, "1.11"))
			len += (size_t)snprintf(s + len, cap - len, ",\"page_size_kib\":%llu",
						(unsigned long long)E.ps);
		else if (!strcmp(E.o.fc_version, "1.14"))
			len += (size_t)snprintf(s + len, cap - len, ",\"page_size\":%llu,\"page_size_kib\":%llu",
						(unsigned long long)E.ps, (unsigned long long)E.ps);
		if (E.o.handshake_extra)
			len += (size_t)snprintf(s + len, cap - len, ",%s", E.o.handshake_extra);
		len += (size_t)snprintf(s + len, cap - len, "}");
	}
	snprintf(s + len, cap - len, "]");
	return s;
}

/* One sendmsg: the JSON and one SCM_RIGHTS message with the fd(s), as Firecracker does. */
static void send_handshake(int sock)
{
	const char *json = E.o.handshake_json ? E.o.handshake_json : handshake_json();
	int fds[2] = {E.uffd, -1};
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)json, .iov_len = strlen(json)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (E.o.nfds == 2 && (fds[1] = dup(E.uffd)) < 0)
		fail_setup("dup: %s", strerror(errno));
	if (E.o.nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)E.o.nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)E.o.nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)E.o.nfds);
	}
	ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	if (n < 0)
		fail_setup("sendmsg: %s", strerror(errno));
	if ((size_t)n != iov.iov_len)
		fail_setup("sendmsg: short send (%zd of %zu bytes)", n, iov.iov_len);
	if (fds[1] >= 0)
		close(fds[1]);
}

static void sigbus_handler(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	char msg[160];
	int n = snprintf(msg, sizeof(msg),
			 "fc-emu: SIGBUS at %p (huge page pool exhausted, or memory beyond a mapping)\n", si->si_addr);
	if (write(2, msg, (size_t)n) < 0) {
		/* nothing left to report to */
	}
	_exit(EXIT_VERIFY);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

struct latency {
	size_t count;
	double p50, p99, max;
	double sum_ms; /* the vCPUs' time in first touches, all of them: what the restore waited for its handler */
};

static struct latency latency_stats(void)
{
	struct latency l = {0};
	for (unsigned i = 0; i < E.o.vcpus; i++)
		l.count += E.vcpus[i].nlat;
	if (!l.count)
		return l;
	float *all = malloc(l.count * sizeof(float));
	if (!all)
		return (struct latency){0};
	size_t k = 0;
	for (unsigned i = 0; i < E.o.vcpus; i++) {
		memcpy(all + k, E.vcpus[i].lat, E.vcpus[i].nlat * sizeof(float));
		k += E.vcpus[i].nlat;
	}
	for (size_t j = 0; j < l.count; j++)
		l.sum_ms += all[j] / 1e3;
	qsort(all, l.count, sizeof(float), cmp_float);
	/* nearest-rank percentiles */
	l.p50 = all[(l.count * 50 + 99) / 100 - 1];
	l.p99 = all[(l.count * 99 + 99) / 100 - 1];
	l.max = all[l.count - 1];
	free(all);
	return l;
}

/* The deadline's diagnosis: per unfinished worker, what it does, on which page, since when, and whether that
 * page is mapped now (mincore). JSON array text for the report; each also goes to stderr as a line. */
static char unfinished_json[4096];

static const char *activity_name(int what)
{
	static const char *const names[] = {"starting", "waiting for the page lock", "first access (fault)",
					    "verifying", "madvise(MADV_DONTNEED)", "between cycles", "done"};
	return what >= ACT_START && what <= ACT_DONE ? names[what] : "?";
}

static void describe_unfinished(const char *worker, const struct activity_now *a, size_t *used)
{
	int what = atomic_load(&a->what);
	if (what == ACT_DONE)
		return;
	uint64_t page = atomic_load(&a->page), npages = atomic_load(&a->npages);
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	double for_ms = ((double)t.tv_sec * 1e9 + (double)t.tv_nsec - (double)atomic_load(&a->since_ns)) / 1e6;
	const char *mapped = "unknown";
	uint8_t *addr = NULL;
	if (what != ACT_START && page < E.npages) {
		addr = page_addr(page);
		unsigned char vec[1];
		/* mincore reports page-table presence for anonymous and hugetlb mappings: what a fault waits for.
		 * One base page: vec holds a byte per base page, also for a huge page. */
		if (mincore(addr, (size_t)sysconf(_SC_PAGESIZE), vec) == 0)
			mapped = vec[0] & 1 ? "yes" : "no";
	}
	fprintf(stderr, "fc-emu: unfinished %s: %s, page at file offset %llu (host %p, %llu page(s)) for %.0f ms; mapped now: %s\n",
		worker, activity_name(what), (unsigned long long)(page * E.ps), (void *)addr, (unsigned long long)npages,
		for_ms, mapped);
	if (*used < sizeof(unfinished_json))
		*used += (size_t)snprintf(unfinished_json + *used, sizeof(unfinished_json) - *used,
					  "%s{\"worker\":\"%s\",\"activity\":\"%s\",\"pageOffset\":%llu,\"hostAddr\":%llu,"
					  "\"pages\":%llu,\"forMs\":%.0f,\"mappedNow\":\"%s\"}",
					  *used > 1 ? "," : "", worker, activity_name(what), (unsigned long long)(page * E.ps),
					  (unsigned long long)(uintptr_t)addr, (unsigned long long)npages, for_ms, mapped);
}

static void report_unfinished(void)
{
	size_t used = (size_t)snprintf(unfinished_json, sizeof(unfinished_json), "[");
	char name[32];
	for (unsigned i = 0; i < E.o.vcpus; i++) {
		snprintf(name, sizeof(name), "vCPU %u", i);
		describe_unfinished(name, &E.vcpus[i].act, &used);
	}
	if (E.o.balloon_cycles) {
		fprintf(stderr, "fc-emu: balloon: %llu of %llu cycles done\n", (unsigned long long)E.balloon_cycles_done,
			(unsigned long long)E.o.balloon_cycles);
		describe_unfinished("balloon", &E.balloon_act, &used);
	}
	if (used < sizeof(unfinished_json) - 1)
		strcat(unfinished_json, "]");
	else
		snprintf(unfinished_json, sizeof(unfinished_json), "null");
}

static void print_result(double done_ms, const char *error)
{
	uint64_t touches = 0, verified = 0, writes = 0, kacc = 0, rezero = 0, rezero_nonzero = 0, kvm_pages = 0;
	double guest_ms = 0;
	bool checksum_ok = true;
	for (unsigned i = 0; i < E.o.vcpus; i++) {
		const struct vcpu *v = &E.vcpus[i];
		touches += v->touches;
		verified += v->verified;
		writes += v->writes;
		kacc += v->kaccesses;
		rezero += v->rezero;
		rezero_nonzero += v->rezero_nonzero;
		if (E.o.kvm) {
			kvm_pages += v->n;
			guest_ms += v->guest_ms;
			checksum_ok = checksum_ok && v->checksum_seen && v->checksum_got == v->checksum_want;
		}
	}
	uint64_t mism = atomic_load(&E.mismatches);
	bool ok = !error && !mism;
	struct latency lat = latency_stats();
	FILE *f = stdout;
	if (E.o.json) {
		fprintf(f, "{\"ok\":%s,\"error\":", ok ? "true" : "false");
		if (error)
			json_string(f, error);
		else
			fputs("null", f);
		fprintf(f, ",\"fcVersion\":\"%s\",\"backend\":\"%s\",\"fileCachedPagesAfterDrop\":",
			E.o.fc_version, E.o.backend_file ? "file" : "uffd");
		if (E.o.drop_file_cache)
			fprintf(f, "%llu", (unsigned long long)E.cached_pages_after_drop);
		else
			fputs("null", f);
		fprintf(f, ",\"pageSizeBytes\":%llu,\"memSizeBytes\":%llu,\"regions\":[",
			(unsigned long long)E.ps, (unsigned long long)E.mem_size);
		for (unsigned i = 0; i < E.nregions; i++)
			fprintf(f, "%s{\"hostAddr\":%llu,\"sizeBytes\":%llu,\"offset\":%llu,\"guestPhysAddr\":%llu}",
				i ? "," : "", (unsigned long long)(uintptr_t)E.regions[i].host,
				(unsigned long long)E.regions[i].size, (unsigned long long)E.regions[i].offset,
				(unsigned long long)E.regions[i].gpa);
		fprintf(f, "],\"vcpus\":%u,\"touches\":%llu,\"pagesVerified\":%llu,\"writes\":%llu,"
			"\"kernelAccesses\":%llu,\"mismatches\":%llu,\"firstMismatch\":",
			E.o.vcpus, (unsigned long long)touches, (unsigned long long)verified,
			(unsigned long long)writes, (unsigned long long)kacc, (unsigned long long)mism);
		if (E.nfirst)
			fprintf(f, "{\"pageOffset\":%llu,\"byteOffset\":%llu,\"expected\":\"0x%016llx\","
				"\"got\":\"0x%016llx\",\"expectedBase\":\"%s\",\"stamped\":%s,\"context\":\"%s\"}",
				(unsigned long long)E.first[0].page_offset, (unsigned long long)E.first[0].byte_offset,
				(unsigned long long)E.first[0].expected, (unsigned long long)E.first[0].got,
				E.first[0].zero_base ? "zero" : "snapshot", E.first[0].stamped ? "true" : "false",
				E.first[0].context);
		else
			fputs("null", f);
		fprintf(f, ",\"handshakeToDoneMs\":%.3f,\"touchLatencyUs\":{\"count\":%zu,\"p50\":%.2f,\"p99\":%.2f,"
			"\"max\":%.2f},\"touchWaitMs\":%.3f,\"kvm\":", done_ms, lat.count, lat.p50, lat.p99, lat.max, lat.sum_ms);
		if (E.o.kvm)
			fprintf(f, "{\"vcpus\":%u,\"pagesTouched\":%llu,\"checksumOk\":%s,\"guestUsPerTouch\":%.2f}",
				E.o.vcpus, (unsigned long long)kvm_pages, checksum_ok ? "true" : "false",
				kvm_pages ? guest_ms * 1e3 / (double)kvm_pages : 0.0);
		else
			fputs("null", f);
		fputs(",\"balloon\":", f);
		if (E.o.balloon_cycles)
		{
			fprintf(f, "{\"cycles\":%llu,\"pagesRemoved\":%llu,\"rezeroVerified\":%llu,\"rezeroNonzeroVerified\":%llu,"
				"\"racyRemovals\":%llu,\"racyRemovedOffsets\":",
				(unsigned long long)E.balloon_cycles_done, (unsigned long long)E.balloon_pages_removed,
				(unsigned long long)rezero, (unsigned long long)rezero_nonzero,
				(unsigned long long)E.balloon_racy_removals);
			write_racy_removed_json(f);
			fputc('}', f);
		} else
			fputs("null", f);
		fprintf(f, ",\"unfinished\":%s}\n", unfinished_json[0] ? unfinished_json : "null");
	} else {
		fprintf(f, "fc-emu: %s%s%s\n", ok ? "OK" : "FAILED", error ? ": " : "", error ? error : "");
		if (E.o.backend_file)
			fprintf(f, "  backend file (MAP_PRIVATE of the memory file, no uffd)\n");
		if (E.o.drop_file_cache)
			fprintf(f, "  page cache dropped: %llu file pages still resident\n",
				(unsigned long long)E.cached_pages_after_drop);
		fprintf(f, "  firecracker %s, page size %llu, guest memory %llu bytes, %u region(s)\n", E.o.fc_version,
			(unsigned long long)E.ps, (unsigned long long)E.mem_size, E.nregions);
		for (unsigned i = 0; i < E.nregions; i++)
			fprintf(f, "  region %u: host %p, %llu bytes, file offset %llu, guest phys 0x%llx\n", i,
				(void *)E.regions[i].host, (unsigned long long)E.regions[i].size,
				(unsigned long long)E.regions[i].offset, (unsigned long long)E.regions[i].gpa);
		fprintf(f, "  vcpus %u, touches %llu, pages verified %llu, writes %llu, kernel accesses %llu\n",
			E.o.vcpus, (unsigned long long)touches, (unsigned long long)verified,
			(unsigned long long)writes, (unsigned long long)kacc);
		fprintf(f, "  mismatches %llu\n", (unsigned long long)mism);
		for (unsigned i = 0; i < E.nfirst; i++)
			fprintf(f, "    page at file offset %llu, byte %llu: expected 0x%016llx got 0x%016llx (%s; expected %s%s)\n",
				(unsigned long long)E.first[i].page_offset, (unsigned long long)E.first[i].byte_offset,
				(unsigned long long)E.first[i].expected, (unsigned long long)E.first[i].got,
				E.first[i].context, E.first[i].zero_base ? "zeros" : "snapshot",
				E.first[i].stamped ? " + stamp" : "");
		fprintf(f, "  handshake to done: %.3f ms\n", done_ms);
		fprintf(f, "  first-touch latency: %zu touches, p50 %.2f us, p99 %.2f us, max %.2f us\n", lat.count,
			lat.p50, lat.p99, lat.max);
		if (E.o.kvm)
			fprintf(f, "  kvm: %u vcpus, %llu guest page touches, checksum %s, %.2f us per guest touch\n",
				E.o.vcpus, (unsigned long long)kvm_pages, checksum_ok ? "ok" : "WRONG",
				kvm_pages ? guest_ms * 1e3 / (double)kvm_pages : 0.0);
		if (E.o.balloon_cycles)
			fprintf(f, "  balloon: %llu cycles, %llu pages removed, %llu re-zeroed pages verified (%llu with non-zero snapshot bytes)\n",
				(unsigned long long)E.balloon_cycles_done, (unsigned long long)E.balloon_pages_removed,
				(unsigned long long)rezero, (unsigned long long)rezero_nonzero);
	}
	fflush(f);
}

static void hold(void)
{
	if (E.o.hold_ms > 0)
		usleep((useconds_t)E.o.hold_ms * 1000);
}

/* Waits for all workers; on deadline expiry reports and _exit()s without joining threads stuck in faults. */
static void wait_workers(unsigned n)
{
	struct timespec dl = E.t_handshake;
	dl.tv_sec += E.o.deadline_ms / 1000;
	dl.tv_nsec += (E.o.deadline_ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&done_lock);
	while (workers_done < n) {
		if (pthread_cond_timedwait(&done_cond, &done_lock, &dl) == ETIMEDOUT && workers_done < n) {
			char msg[160];
			snprintf(msg, sizeof(msg), "deadline: %u of %u workers (vCPUs%s) unfinished after %ld ms",
				 n - workers_done, n, E.o.balloon_cycles ? ", balloon" : "", E.o.deadline_ms);
			fprintf(stderr, "fc-emu: %s\n", msg);
			report_unfinished();
			print_result(ms_since(&E.t_handshake), msg);
			_exit(EXIT_VERIFY);
		}
	}
	pthread_mutex_unlock(&done_lock);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	E.ps = E.o.page_size;

	E.mem_fd = open(E.o.mem_path, O_RDONLY | O_CLOEXEC);
	if (E.mem_fd < 0)
		fail_setup("open %s: %s", E.o.mem_path, strerror(errno));
	struct stat st;
	if (fstat(E.mem_fd, &st) < 0)
		fail_setup("stat %s: %s", E.o.mem_path, strerror(errno));
	E.file_size = (uint64_t)st.st_size;
	E.mem_size = E.o.mem_size ? E.o.mem_size : E.file_size;
	if (!E.mem_size || E.mem_size % E.ps)
		usage_error("guest memory size %llu is not a positive multiple of the page size %llu",
			    (unsigned long long)E.mem_size, (unsigned long long)E.ps);
	E.npages = E.mem_size / E.ps;
	layout_regions();

	if (E.o.kvm)
		kvm_open_or_exit();
	E.pages = calloc(E.npages, sizeof(*E.pages));
	if (!E.pages)
		fail_setup("calloc page states: %s", strerror(errno));
	bool workload = !E.o.no_workload && !E.o.close_before_send && !E.o.send_empty;
	if (workload)
		build_touch_lists();

	if (E.o.drop_file_cache)
		drop_file_cache();
	if (E.o.backend_file) {
		map_memory_file();
	} else {
		if (E.ps == 2 << 20)
			warn_hugepages();
		map_memory();
		create_uffd();
	}
	if (E.o.kvm && workload)
		kvm_setup();

	struct sigaction sa = {.sa_sigaction = sigbus_handler, .sa_flags = SA_SIGINFO};
	sigaction(SIGBUS, &sa, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&done_cond, &ca);

	if (E.o.backend_file) {
		/* The restore is done once the mappings exist: the workload time starts here. */
		clock_gettime(CLOCK_MONOTONIC, &E.t_handshake);
		goto run;
	}
	int sock = connect_socket();
	if (!workload) {
		if (E.o.send_empty && send(sock, "", 0, MSG_NOSIGNAL) < 0)
			fail_setup("send: %s", strerror(errno));
		if (!E.o.close_before_send && !E.o.send_empty)
			send_handshake(sock);
		clock_gettime(CLOCK_MONOTONIC, &E.t_handshake);
		if (E.o.close_before_send || E.o.send_empty || strcmp(E.o.fc_version, "1.14"))
			close(sock);
		hold();
		print_result(0, NULL);
		return 0;
	}
	send_handshake(sock);
	clock_gettime(CLOCK_MONOTONIC, &E.t_handshake);
	/* Up to v1.11 Firecracker closed the socket right after sending; since v1.12 it stays open until exit. */
	if (strcmp(E.o.fc_version, "1.14"))
		close(sock);

run:;
	pthread_t th;
	int rc;
	unsigned nworkers = E.o.vcpus;
	if (E.o.balloon_cycles) {
		nworkers++;
		if ((rc = pthread_create(&th, NULL, balloon_main, NULL)))
			fail_setup("pthread_create: %s", strerror(rc));
	}
	for (unsigned i = 0; i < E.o.vcpus; i++)
		if ((rc = pthread_create(&th, NULL, E.o.kvm ? vcpu_kvm_main : vcpu_host_main, &E.vcpus[i])))
			fail_setup("pthread_create: %s", strerror(rc));
	wait_workers(nworkers);
	double done_ms = ms_since(&E.t_handshake);

	if (E.o.removed_out && write_removed_out(E.o.removed_out) < 0)
		set_error("write %s: %s", E.o.removed_out, strerror(errno));
	const char *err = atomic_load(&E.error);
	print_result(done_ms, err);
	hold();
	return err || atomic_load(&E.mismatches) ? EXIT_VERIFY : 0;
}
