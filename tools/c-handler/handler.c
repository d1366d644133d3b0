/*
 * c-handler: the cost floor of a Firecracker uffd page-fault handler, in plain C, single-threaded.
 *
 *   c-handler --socket PATH --mem FILE [--fault-around-bytes N] [--populate-all] [--busy-poll]
 *
 * Listens on PATH, accepts one connection, receives the handshake JSON and the uffd, serves page faults from a
 * read-only MAP_PRIVATE mapping of FILE, and on exit prints one JSON line of statistics on stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_REGIONS 64
#define MAX_FDS 8
#define EVENT_BATCH 64

struct region {
	uint64_t base, size, offset;
};

static struct region regions[MAX_REGIONS];
static unsigned nregions;
static uint64_t ps = 4096;
static int uffd = -1;
static const uint8_t *file_map; /* the memory file, readable up to map_len */
static uint64_t map_len;
static uint8_t *bounce, *zeros; /* one page each */
static uint8_t *removed;        /* bitmap over file pages: removed by the balloon, serve zeros */
static uint64_t fault_around;

static struct {
	uint64_t faults, write_faults, copies, bytes, removes, eexist, eagain;
} st;

/* Faults that got EAGAIN (a REMOVE is in flight): retried after reading more events. */
static uint64_t *pending;
static size_t npending, cappending;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("c-handler: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void print_stats(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"faults\":%llu,\"writeFaults\":%llu,\"copies\":%llu,\"bytes\":%llu,\"removes\":%llu,\"eexist\":%llu,\"eagain\":%llu,"
	       "\"cpuUserUs\":%lld,\"cpuSysUs\":%lld,\"maxRssKiB\":%ld}\n",
	       (unsigned long long)st.faults, (unsigned long long)st.write_faults, (unsigned long long)st.copies, (unsigned long long)st.bytes,
	       (unsigned long long)st.removes, (unsigned long long)st.eexist, (unsigned long long)st.eagain,
	       (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
	       (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec, ru.ru_maxrss);
	fflush(stdout);
}

/* ---- handshake ---- */

/* Reads the number after "key": inside [obj, end); false if the key is absent. */
static bool json_u64(const char *obj, const char *end, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);
	for (const char *p = obj; p + klen + 2 < end; p++) {
		if (*p != '"' || strncmp(p + 1, key, klen) || p[klen + 1] != '"')
			continue;
		p += klen + 2;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			p++;
		if (p >= end || *p != ':')
			return false;
		p++;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return false;
		uint64_t v = 0;
		for (; p < end && *p >= '0' && *p <= '9'; p++) {
			if (v > (UINT64_MAX - 9) / 10)
				return false;
			v = v * 10 + (uint64_t)(*p - '0');
		}
		*out = v;
		return true;
	}
	return false;
}

static void parse_handshake(const char *json, size_t len)
{
	const char *p = json, *end = json + len;
	bool have_ps = false;
	while ((p = memchr(p, '{', (size_t)(end - p)))) {
		const char *close = memchr(p, '}', (size_t)(end - p));
		if (!close)
			die("handshake: unterminated object");
		if (nregions == MAX_REGIONS)
			die("handshake: more than %d regions", MAX_REGIONS);
		struct region *r = &regions[nregions++];
		if (!json_u64(p, close, "base_host_virt_addr", &r->base) || !json_u64(p, close, "size", &r->size) ||
		    !json_u64(p, close, "offset", &r->offset))
			die("handshake: region %u lacks base_host_virt_addr/size/offset", nregions - 1);
		uint64_t v;
		/* page_size (v1.12+) or page_size_kib (v1.7+, holds bytes despite its name); else the base page */
		if (json_u64(p, close, "page_size", &v) || json_u64(p, close, "page_size_kib", &v)) {
			if (have_ps && v != ps)
				die("handshake: regions disagree on the page size");
			ps = v;
			have_ps = true;
		}
		p = close + 1;
	}
	if (!nregions)
		die("handshake: no regions in '%.*s'", (int)(len > 200 ? 200 : len), json);
	if (ps != 4096 && ps != 2 << 20)
		die("handshake: unsupported page size %llu", (unsigned long long)ps);
	for (unsigned i = 0; i < nregions; i++)
		if (!regions[i].size || regions[i].base % ps || regions[i].size % ps || regions[i].offset % ps)
			die("handshake: region %u is not page-aligned or empty", i);
}

/* ---- installing pages ---- */

static uint64_t total_pages(void)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < nregions; i++)
		if ((regions[i].offset + regions[i].size) / ps > n)
			n = (regions[i].offset + regions[i].size) / ps;
	return n;
}

static bool is_removed(uint64_t file_off)
{
	uint64_t i = file_off / ps;
	return removed[i / 8] & (1u << (i % 8));
}

static void set_removed(uint64_t file_off)
{
	uint64_t i = file_off / ps;
	removed[i / 8] |= (uint8_t)(1u << (i % 8));
}

static bool peer_gone(int err)
{
	/* ESRCH: the VMM's mm is gone; ENOENT: the range is no longer mapped (VMM exiting). */
	return err == ESRCH || err == ENOENT;
}

/*
 * Installs [dst, dst + len) from src (NULL: zeros). UFFDIO_COPY/ZEROPAGE report partial progress in
 * copy/zeropage (and then fail with EAGAIN even if the cause was an existing page), so always continue from
 * where they stopped; a page that already exists (EEXIST) is skipped after waking its waiters. Returns 0 or
 * the errno that stopped it (EAGAIN: a REMOVE is in flight, retry after reading events).
 */
static int install(uint64_t dst, const uint8_t *src, uint64_t len)
{
	while (len) {
		int64_t done;
		int err = 0;
		if (!src && ps == 4096) {
			struct uffdio_zeropage z = {.range = {.start = dst, .len = len}};
			if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0)
				err = errno;
			done = err ? z.zeropage : (int64_t)len;
		} else {
			/* hugetlbfs has no UFFDIO_ZEROPAGE: copy zeros a page at a time */
			uint64_t n = src ? len : ps;
			struct uffdio_copy c = {.dst = dst, .src = (uintptr_t)(src ? src : zeros), .len = n};
			if (ioctl(uffd, UFFDIO_COPY, &c) < 0)
				err = errno;
			done = err ? c.copy : (int64_t)n;
		}
		if (done > 0) {
			st.copies++;
			st.bytes += (uint64_t)done;
			dst += (uint64_t)done;
			if (src)
				src += done;
			len -= (uint64_t)done;
			continue;
		}
		if (err == EEXIST) {
			st.eexist++;
			struct uffdio_range r = {.start = dst, .len = ps};
			if (ioctl(uffd, UFFDIO_WAKE, &r) < 0)
				return errno;
			dst += ps;
			if (src)
				src += ps;
			len -= ps;
			continue;
		}
		return err ? err : EIO;
	}
	return 0;
}

/* Installs file range [off, off + len) at dst: beyond the end of the file reads as zeros. */
static int install_file(uint64_t dst, uint64_t off, uint64_t len)
{
	if (off + len <= map_len)
		return install(dst, file_map + off, len);
	if (off >= map_len)
		return install(dst, NULL, len);
	uint64_t head = (map_len - off) / ps * ps;
	int err = head ? install(dst, file_map + off, head) : 0;
	if (err)
		return err;
	/* the page holding the end of the file: bounce */
	memcpy(bounce, file_map + off + head, map_len - off - head);
	memset(bounce + (map_len - off - head), 0, ps - (map_len - off - head));
	if ((err = install(dst + head, bounce, ps)))
		return err;
	return len > head + ps ? install(dst + head + ps, NULL, len - head - ps) : 0;
}

static const struct region *region_of(uint64_t addr)
{
	for (unsigned i = 0; i < nregions; i++)
		if (addr - regions[i].base < regions[i].size)
			return &regions[i];
	return NULL;
}

static int serve_fault(uint64_t addr)
{
	const struct region *r = region_of(addr);
	if (!r)
		die("fault at 0x%llx outside every region", (unsigned long long)addr);
	uint64_t page = (addr - r->base) / ps * ps; /* offset in the region */
	if (is_removed(r->offset + page))
		return install(r->base + page, NULL, ps);
	uint64_t lo = page, hi = page + ps;
	if (fault_around > ps) {
		/* the aligned block around the fault, clipped to the region, stopping at removed pages */
		uint64_t blo = page / fault_around * fault_around, bhi = blo + fault_around;
		if (bhi > r->size)
			bhi = r->size;
		while (lo > blo && !is_removed(r->offset + lo - ps))
			lo -= ps;
		while (hi < bhi && !is_removed(r->offset + hi))
			hi += ps;
	}
	return install_file(r->base + lo, r->offset + lo, hi - lo);
}

static void on_remove(uint64_t start, uint64_t end)
{
	st.removes++;
	for (uint64_t a = start & ~(ps - 1); a < end; a += ps) {
		const struct region *r = region_of(a);
		if (r)
			set_removed(r->offset + (a - r->base));
	}
}

/* Reads every pending event: REMOVEs are applied at once, faults queued (a fault may be read before the
 * REMOVE that logically precedes it, so all REMOVEs of a batch are applied before any fault is served). */
static bool read_events(void)
{
	struct uffd_msg msgs[EVENT_BATCH];
	for (;;) {
		ssize_t n = read(uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN)
				return true;
			if (errno == EINTR)
				continue;
			die("read uffd: %s", strerror(errno));
		}
		if (n == 0 || n % (ssize_t)sizeof(struct uffd_msg))
			die("read uffd: %zd bytes is not whole messages", n);
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(struct uffd_msg); i++) {
			const struct uffd_msg *m = &msgs[i];
			if (m->event == UFFD_EVENT_PAGEFAULT) {
				st.faults++;
				if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE)
					st.write_faults++;
				if (npending == cappending) {
					cappending = cappending ? cappending * 2 : 256;
					pending = realloc(pending, cappending * sizeof(*pending));
					if (!pending)
						die("realloc: %s", strerror(errno));
				}
				pending[npending++] = m->arg.pagefault.address;
			} else if (m->event == UFFD_EVENT_REMOVE) {
				on_remove(m->arg.remove.start, m->arg.remove.end);
			} else {
				die("unexpected uffd event 0x%x", m->event);
			}
		}
	}
}

/* Serves queued faults; those failing EAGAIN stay queued. Returns false when the VMM is gone. */
static bool serve_pending(void)
{
	size_t keep = 0;
	for (size_t i = 0; i < npending; i++) {
		int err = serve_fault(pending[i]);
		if (!err)
			continue;
		if (err == EAGAIN) {
			st.eagain++;
			pending[keep++] = pending[i];
			continue;
		}
		if (peer_gone(err))
			return false;
		die("serving fault at 0x%llx: %s", (unsigned long long)pending[i], strerror(err));
	}
	npending = keep;
	return true;
}

/* Copies every region whole, 2 MiB at a time, skipping removed pages and serving faults in between. */
static bool populate_all(void)
{
	const uint64_t step = 2 << 20;
	for (unsigned i = 0; i < nregions; i++) {
		const struct region *r = &regions[i];
		for (uint64_t o = 0; o < r->size;) {
			uint64_t end = o + step < r->size ? o + step : r->size;
			read_events();
			if (!serve_pending())
				return false;
			while (o < end && is_removed(r->offset + o))
				o += ps;
			uint64_t run = o;
			while (run < end && !is_removed(r->offset + run))
				run += ps;
			if (run == o)
				continue;
			int err = install_file(r->base + o, r->offset + o, run - o);
			if (err == EAGAIN) {
				st.eagain++;
				sched_yield();
				continue; /* re-read events: the REMOVE may cover part of this run */
			}
			if (err && peer_gone(err))
				return false;
			if (err)
				die("populating region %u at offset %llu: %s", i, (unsigned long long)o, strerror(err));
			o = run;
		}
	}
	return true;
}

/* ---- connection ---- */

static int receive_handshake(int conn, char *buf, size_t cap, size_t *len)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
	ssize_t n;
	do
		n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		die("recvmsg: %s", strerror(errno));
	if (n == 0)
		die("handshake: the peer closed the connection without sending anything");
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		die("handshake: message or control data truncated");
	int fd = -1, nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = f;
			else
				close(f);
			nfds++;
		}
	}
	if (fd < 0)
		die("handshake: no file descriptor attached");
	if (nfds > 1)
		fprintf(stderr, "c-handler: warning: %d fds attached, using the first\n", nfds);
	buf[n] = 0;
	*len = (size_t)n;
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"socket", required_argument, 0, 's'},
		{"mem", required_argument, 0, 'm'},
		{"fault-around-bytes", required_argument, 0, 'f'},
		{"populate-all", no_argument, 0, 'p'},
		{"busy-poll", no_argument, 0, 'b'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *usage = "usage: c-handler --socket PATH --mem FILE [--fault-around-bytes N] [--populate-all] "
			    "[--busy-poll]\n";
	const char *sock_path = NULL, *mem_path = NULL;
	bool populate = false, busy = false;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's': sock_path = optarg; break;
		case 'm': mem_path = optarg; break;
		case 'f': {
			char *end;
			fault_around = strtoull(optarg, &end, 0);
			if (*end || end == optarg || (fault_around & (fault_around - 1)))
				die("--fault-around-bytes must be a power of two");
			break;
		}
		case 'p': populate = true; break;
		case 'b': busy = true; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (!sock_path || !mem_path || optind < argc) {
		fputs(usage, stderr);
		return 2;
	}

	int mfd = open(mem_path, O_RDONLY | O_CLOEXEC);
	if (mfd < 0)
		die("open %s: %s", mem_path, strerror(errno));
	struct stat sb;
	if (fstat(mfd, &sb) < 0)
		die("stat %s: %s", mem_path, strerror(errno));
	/* Readable up to the end of the page holding EOF; past that the mapping would SIGBUS. */
	map_len = ((uint64_t)sb.st_size + 4095) & ~4095ull;
	if (map_len) {
		file_map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, mfd, 0);
		if (file_map == MAP_FAILED)
			die("mmap %s: %s", mem_path, strerror(errno));
	}
	close(mfd);

	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (ls < 0)
		die("socket: %s", strerror(errno));
	if (strlen(sock_path) >= sizeof(addr.sun_path))
		die("socket path too long");
	strcpy(addr.sun_path, sock_path);
	unlink(sock_path);
	if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(ls, 1) < 0)
		die("bind/listen %s: %s", sock_path, strerror(errno));
	int conn;
	do
		conn = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	while (conn < 0 && errno == EINTR);
	if (conn < 0)
		die("accept: %s", strerror(errno));
	close(ls);
	unlink(sock_path);

	/* Firecracker sends no pid: take it from the socket. Its exit (pidfd readable) ends the handler for
	 * every version; a hang-up of the socket means the same only from v1.12 on (older ones close it at once). */
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
		die("SO_PEERCRED: %s", strerror(errno));
	int pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (pidfd < 0)
		die("pidfd_open(%d): %s", (int)cred.pid, strerror(errno));

	static char json[64 * 1024];
	size_t jlen;
	uffd = receive_handshake(conn, json, sizeof(json), &jlen);
	parse_handshake(json, jlen);
	bool socket_lifetime = strstr(json, "\"page_size\"") != NULL;

	bounce = malloc(ps);
	zeros = calloc(1, ps);
	removed = calloc(total_pages() / 8 + 1, 1);
	if (!bounce || !zeros || !removed)
		die("malloc: %s", strerror(errno));

	bool alive = !populate || populate_all();
	bool watch_conn = true;
	while (alive) {
		struct pollfd pfd[3] = {
			{.fd = uffd, .events = POLLIN},
			{.fd = pidfd, .events = POLLIN},
			{.fd = watch_conn ? conn : -1, .events = POLLIN | POLLRDHUP},
		};
		int timeout = busy || npending ? 0 : -1;
		if (poll(pfd, 3, timeout) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pfd[1].revents)
			break;
		if (pfd[2].revents) {
			char b[256];
			ssize_t n = recv(conn, b, sizeof(b), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
			    (pfd[2].revents & (POLLHUP | POLLRDHUP | POLLERR))) {
				if (socket_lifetime)
					break;
				watch_conn = false;
			}
		}
		read_events();
		alive = serve_pending();
		if (alive && npending)
			sched_yield(); /* let the thread in madvise() finish, then retry */
	}
	print_stats();
	return 0;
}
