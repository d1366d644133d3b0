// The only code in firecracker-uffd that makes raw syscalls. Thin by rule: every function
// checks its arguments (throwing a TypeError with a usage message when they are wrong), makes
// one syscall or a short fixed sequence of them, and returns a number: >= 0 on success, -errno
// on failure. Policy (what EEXIST or EAGAIN mean, when to give up) lives in TypeScript
// (src/kernel/), which is also the only importer of this addon. Functions only tests need (map
// guest memory, read it, register a uffd, send a handshake) are in the test-only addon
// (tools/test-addon/), never here.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <node_api.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "napi-args.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

// Largest number of fds one recvmsg accepts; Firecracker sends exactly one. Extra fds are
// closed here (never leaked) and counted so the caller can reject the handshake.
#define MAX_RECV_FDS 8

// A read-only file mapping handed to JS as a type-tagged external: JS can pass it to copy() as
// a source but cannot read it. That matters: a user-space read of a mapping whose file was
// truncated raises SIGBUS and kills the whole process (every VM it serves), while the kernel's
// own copy in UFFDIO_COPY fails that one ioctl with EFAULT.
typedef struct {
  uint8_t *base;
  size_t len;
} mapping_t;

static const napi_type_tag MAPPING_TAG = {0x6663756666646d61ULL, 0x7070696e67763031ULL};

static mapping_t *arg_mapping(napi_env env, napi_value *argv, size_t argc, size_t i) {
  napi_valuetype t;
  bool tagged;
  void *p;
  if (i >= argc || napi_typeof(env, argv[i], &t) != napi_ok || t != napi_external) return NULL;
  if (napi_check_object_type_tag(env, argv[i], &MAPPING_TAG, &tagged) != napi_ok || !tagged) return NULL;
  if (napi_get_value_external(env, argv[i], &p) != napi_ok) return NULL;
  return p;
}

// ---- unix sockets and the handshake ----------------------------------------------------------

// Reads argument i, a socket path, into addr: 1 when it fits, 0 when it is not a string, -1 when it
// is empty or too long for sun_path.
static int arg_unix_addr(napi_env env, napi_value *argv, size_t argc, size_t i, struct sockaddr_un *addr) {
  size_t len;
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (i >= argc || napi_get_value_string_utf8(env, argv[i], addr->sun_path, sizeof addr->sun_path, &len) != napi_ok)
    return 0;
  return len > 0 && len < sizeof addr->sun_path - 1 ? 1 : -1;
}

// listenUnix(path, mode, backlog) -> fd | -errno. The socket file gets `mode` right after bind;
// callers that need no window at all put it in a directory only they can enter.
static napi_value listen_unix(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct sockaddr_un addr;
  int64_t mode, backlog;
  int ok = arg_unix_addr(env, argv, argc, 0, &addr);
  if (ok == 0 || !arg_i64(env, argv, argc, 1, &mode) || !arg_i64(env, argv, argc, 2, &backlog))
    return usage(env, "listenUnix(path: string, mode: number, backlog: number)");
  if (ok < 0) return num(env, -ENAMETOOLONG);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return neg_errno(env);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || chmod(addr.sun_path, (mode_t)mode) < 0 ||
      listen(fd, (int)backlog) < 0) {
    int e = errno;
    close(fd);
    return num(env, -e);
  }
  return num(env, fd);
}

// accept(listenFd) -> fd | -errno (-EAGAIN when nobody is waiting). The new fd is CLOEXEC and
// non-blocking.
static napi_value accept_conn(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t fd;
  if (!arg_i64(env, argv, argc, 0, &fd)) return usage(env, "accept(listenFd: number)");
  int c = accept4((int)fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  return c < 0 ? neg_errno(env) : num(env, c);
}

// connectUnix(path) -> fd | -errno (blocking connect; for tests and tools).
static napi_value connect_unix(napi_env env, napi_callback_info info) {
  ARGS(1);
  struct sockaddr_un addr;
  int ok = arg_unix_addr(env, argv, argc, 0, &addr);
  if (ok == 0) return usage(env, "connectUnix(path: string)");
  if (ok < 0) return num(env, -ENAMETOOLONG);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return neg_errno(env);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno;
    close(fd);
    return num(env, -e);
  }
  return num(env, fd);
}

// peerCred(fd, out: Int32Array[3]) -> 0 | -errno; out = [pid, uid, gid] from SO_PEERCRED.
static napi_value peer_cred(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t fd;
  int32_t *out;
  size_t n;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i32_array(env, argv, argc, 1, &out, &n) || n < 3)
    return usage(env, "peerCred(fd: number, out: Int32Array(3))");
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return neg_errno(env);
  out[0] = cred.pid;
  out[1] = (int32_t)cred.uid;
  out[2] = (int32_t)cred.gid;
  return num(env, 0);
}

// recvWithFds(fd, buf, info: Int32Array) -> bytes | -errno. One recvmsg (MSG_DONTWAIT,
// MSG_CMSG_CLOEXEC). info[0] = msg_flags (MSG_TRUNC / MSG_CTRUNC tell the payload or the control
// data did not fit), info[1] = number of fds received, info[2..] = the fds, as many as fit;
// fds that do not fit in info are closed but still counted in info[1].
static napi_value recv_with_fds(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t fd;
  uint8_t *buf;
  size_t buf_len, info_n;
  int32_t *out;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_bytes(env, argv, argc, 1, &buf, &buf_len) ||
      !arg_i32_array(env, argv, argc, 2, &out, &info_n) || info_n < 2)
    return usage(env, "recvWithFds(fd: number, buf: Buffer, info: Int32Array(>= 2))");
  union {
    char buf[CMSG_SPACE(MAX_RECV_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = buf, .iov_len = buf_len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  ssize_t got = recvmsg((int)fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (got < 0) return neg_errno(env);
  int32_t nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *fds = (int *)CMSG_DATA(c);
    for (size_t k = 0; k < count; k++) {
      if ((size_t)nfds + 2 < info_n) {
        out[2 + nfds] = fds[k];
      } else {
        close(fds[k]);
      }
      nfds++;
    }
  }
  out[0] = msg.msg_flags;
  out[1] = nfds;
  return num(env, (double)got);
}

// ---- fds, waiting, processes ------------------------------------------------------------------

static napi_value close_fd(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t fd;
  if (!arg_i64(env, argv, argc, 0, &fd)) return usage(env, "close(fd: number)");
  return close((int)fd) < 0 ? neg_errno(env) : num(env, 0);
}

// fdFlags(fd) -> file status flags (fcntl F_GETFL) | -errno.
static napi_value fd_flags(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t fd;
  if (!arg_i64(env, argv, argc, 0, &fd)) return usage(env, "fdFlags(fd: number)");
  int flags = fcntl((int)fd, F_GETFL);
  return flags < 0 ? neg_errno(env) : num(env, flags);
}

// eventfdCreate() -> fd | -errno: a non-blocking eventfd another thread can signal to interrupt
// a blocking wait.
static napi_value eventfd_create(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd < 0 ? neg_errno(env) : num(env, fd);
}

static napi_value eventfd_signal(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t fd;
  if (!arg_i64(env, argv, argc, 0, &fd)) return usage(env, "eventfdSignal(fd: number)");
  uint64_t one = 1;
  return write((int)fd, &one, sizeof one) < 0 ? neg_errno(env) : num(env, 0);
}

// eventfdDrain(fd) -> count since the last drain | -errno (-EAGAIN when not signalled).
static napi_value eventfd_drain(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t fd;
  if (!arg_i64(env, argv, argc, 0, &fd)) return usage(env, "eventfdDrain(fd: number)");
  uint64_t v;
  return read((int)fd, &v, sizeof v) < 0 ? neg_errno(env) : num(env, (double)v);
}

// pidfdOpen(pid) -> fd | -errno. A pidfd names one process for good: signalling it cannot hit a
// recycled pid, and it polls readable when the process exits.
static napi_value pidfd_open(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t pid;
  if (!arg_i64(env, argv, argc, 0, &pid) || pid <= 0) return usage(env, "pidfdOpen(pid: number > 0)");
  long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
  return fd < 0 ? neg_errno(env) : num(env, (double)fd);
}

static napi_value pidfd_send_signal(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t fd, sig;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &sig))
    return usage(env, "pidfdSendSignal(pidfd: number, signal: number)");
  return syscall(SYS_pidfd_send_signal, (int)fd, (int)sig, NULL, 0) < 0 ? neg_errno(env) : num(env, 0);
}

// poll(fds: Int32Array, revents: Int32Array, timeoutUs) -> ready count | -errno. Blocks in ppoll
// for POLLIN on up to 8 fds for at most timeoutUs (< 0: forever); revents[i] receives fds[i]'s
// revents. Negative fds are ignored, as ppoll does.
static napi_value poll_fds(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t timeout_us;
  int32_t *fds, *revents;
  size_t n_fds, n_revents;
  if (!arg_i32_array(env, argv, argc, 0, &fds, &n_fds) || n_fds > 8 ||
      !arg_i32_array(env, argv, argc, 1, &revents, &n_revents) || n_revents < n_fds ||
      !arg_i64(env, argv, argc, 2, &timeout_us))
    return usage(env, "poll(fds: Int32Array(<= 8), revents: Int32Array, timeoutUs: number)");
  struct pollfd pfd[8];
  for (size_t i = 0; i < n_fds; i++) {
    pfd[i].fd = fds[i];
    pfd[i].events = POLLIN;
  }
  struct timespec ts, *tsp = NULL;
  if (timeout_us >= 0) {
    ts.tv_sec = timeout_us / 1000000;
    ts.tv_nsec = (timeout_us % 1000000) * 1000;
    tsp = &ts;
  }
  int ready = ppoll(pfd, n_fds, tsp, NULL);
  if (ready < 0) return neg_errno(env);
  for (size_t i = 0; i < n_fds; i++) revents[i] = pfd[i].revents;
  return num(env, ready);
}

static void mapping_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  mapping_t *m = data;
  if (m->base != NULL) munmap(m->base, m->len);
  free(m);
}

// mapFile(fd, len) -> Mapping | -errno: mmap(PROT_READ, MAP_PRIVATE) of [0, len) of the file, the
// zero-copy source for UFFDIO_COPY. Unmapped by unmapFile() or when garbage collected.
static napi_value map_file(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t fd, len;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &len) || len <= 0)
    return usage(env, "mapFile(fd: number, len: number > 0)");
  void *p = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, (int)fd, 0);
  if (p == MAP_FAILED) return neg_errno(env);
  mapping_t *m = malloc(sizeof *m);
  if (m == NULL) {
    munmap(p, (size_t)len);
    return num(env, -ENOMEM);
  }
  m->base = p;
  m->len = (size_t)len;
  napi_value ext;
  CHECK(napi_create_external(env, m, mapping_finalize, NULL, &ext));
  CHECK(napi_type_tag_object(env, ext, &MAPPING_TAG));
  return ext;
}

static napi_value unmap_file(napi_env env, napi_callback_info info) {
  ARGS(1);
  mapping_t *m = arg_mapping(env, argv, argc, 0);
  if (m == NULL) return usage(env, "unmapFile(mapping: Mapping)");
  int rc = 0;
  if (m->base != NULL) rc = munmap(m->base, m->len);
  m->base = NULL;
  m->len = 0;
  return rc < 0 ? neg_errno(env) : num(env, 0);
}

// epollCreate() -> epfd | -errno. A fault-loop thread waits on every fd of every VM it serves
// through one epoll set; each fd is registered with a caller-chosen 32-bit tag.
static napi_value epoll_create_fd(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = epoll_create1(EPOLL_CLOEXEC);
  return fd < 0 ? neg_errno(env) : num(env, fd);
}

// epollAdd(epfd, fd, tag) -> 0 | -errno: level-triggered EPOLLIN (hang-ups are always reported).
static napi_value epoll_add(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t epfd, fd, tag;
  if (!arg_i64(env, argv, argc, 0, &epfd) || !arg_i64(env, argv, argc, 1, &fd) || !arg_i64(env, argv, argc, 2, &tag) ||
      tag < 0 || tag > INT32_MAX)
    return usage(env, "epollAdd(epfd: number, fd: number, tag: 0..2^31-1)");
  struct epoll_event ev = {.events = EPOLLIN, .data = {.u64 = (uint64_t)tag}};
  return epoll_ctl((int)epfd, EPOLL_CTL_ADD, (int)fd, &ev) < 0 ? neg_errno(env) : num(env, 0);
}

static napi_value epoll_del(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t epfd, fd;
  if (!arg_i64(env, argv, argc, 0, &epfd) || !arg_i64(env, argv, argc, 1, &fd))
    return usage(env, "epollDel(epfd: number, fd: number)");
  return epoll_ctl((int)epfd, EPOLL_CTL_DEL, (int)fd, NULL) < 0 ? neg_errno(env) : num(env, 0);
}

// epollWait(epfd, out: Int32Array, timeoutUs) -> n | -errno. Blocks up to timeoutUs (< 0:
// forever; microsecond resolution through epoll_pwait2); out[2i] = tag, out[2i+1] = events, for
// at most out.length / 2 ready fds.
static napi_value epoll_wait_fds(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t epfd, timeout_us;
  int32_t *out;
  size_t n;
  if (!arg_i64(env, argv, argc, 0, &epfd) || !arg_i32_array(env, argv, argc, 1, &out, &n) || n < 2 || n > 2048 ||
      !arg_i64(env, argv, argc, 2, &timeout_us))
    return usage(env, "epollWait(epfd: number, out: Int32Array(2..2048), timeoutUs: number)");
  struct epoll_event evs[1024];
  int max = (int)(n / 2);
  struct timespec ts, *tsp = NULL;
  if (timeout_us >= 0) {
    ts.tv_sec = timeout_us / 1000000;
    ts.tv_nsec = (timeout_us % 1000000) * 1000;
    tsp = &ts;
  }
  int ready = (int)syscall(SYS_epoll_pwait2, (int)epfd, evs, max, tsp, NULL, 0);
  if (ready < 0 && errno == ENOSYS)  // before Linux 5.11: millisecond resolution, rounded up
    ready = epoll_wait((int)epfd, evs, max, timeout_us < 0 ? -1 : (int)((timeout_us + 999) / 1000));
  if (ready < 0) return neg_errno(env);
  for (int i = 0; i < ready; i++) {
    out[2 * i] = (int32_t)evs[i].data.u64;
    out[2 * i + 1] = (int32_t)evs[i].events;
  }
  return num(env, ready);
}

// readEvents(uffd, buf) -> bytes | -errno (-EAGAIN when none was pending): whole uffd_msg
// records, one read(). The uffd is always non-blocking: the handshake refuses a uffd without
// O_NONBLOCK (HANDSHAKE_UFFD_BLOCKING), because a blocking read() would stall every VM of the
// thread once another reader took the pending records.
static napi_value read_events(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t uffd;
  uint8_t *buf;
  size_t buf_len;
  if (!arg_i64(env, argv, argc, 0, &uffd) || !arg_bytes(env, argv, argc, 1, &buf, &buf_len) ||
      buf_len < sizeof(struct uffd_msg))
    return usage(env, "readEvents(uffd: number, buf: Buffer(>= 32))");
  // EINTR and EAGAIN are the caller's (src/kernel/policy.ts syscallNow), as for every syscall here.
  ssize_t r = read((int)uffd, buf, buf_len - buf_len % sizeof(struct uffd_msg));
  return r < 0 ? neg_errno(env) : num(env, (double)r);
}

// fadvise(fd, offset, len, advice) -> 0 | -errno. POSIX_FADV_WILLNEED starts reading a range into
// the page cache without waiting for it: a cold snapshot file is read ahead of the faults.
static napi_value fadvise_range(napi_env env, napi_callback_info info) {
  ARGS(4);
  int64_t fd, off, len, advice;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &off) || !arg_i64(env, argv, argc, 2, &len) ||
      !arg_i64(env, argv, argc, 3, &advice))
    return usage(env, "fadvise(fd: number, offset: number, len: number, advice: number)");
  int rc = posix_fadvise((int)fd, (off_t)off, (off_t)len, (int)advice);
  return num(env, -(double)rc);
}

// lseek(fd, offset, whence) -> offset | -errno; used with SEEK_DATA / SEEK_HOLE to find holes.
static napi_value lseek_fd(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t fd, off, whence;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &off) || !arg_i64(env, argv, argc, 2, &whence))
    return usage(env, "lseek(fd: number, offset: number, whence: number)");
  off_t r = lseek((int)fd, (off_t)off, (int)whence);
  return r < 0 ? neg_errno(env) : num(env, (double)r);
}

// copyBytes(dst, dstOffset, src) -> bytes copied: src into dst at dstOffset with memcpy. For
// store bodies arriving into shared memory: V8 copies into a SharedArrayBuffer with relaxed atomic
// accesses, a byte at a time when source and destination are not equally aligned, which an HTTP
// body piece after its headers never is (measured: 28 ms against 5 ms per 36 MiB). Concurrent
// readers of the same buffer read only the bytes published to them after the copy.
static napi_value copy_bytes(napi_env env, napi_callback_info info) {
  ARGS(3);
  uint8_t *dst = NULL, *src = NULL;
  size_t dst_len = 0, src_len = 0;
  int64_t off;
  if (!arg_bytes(env, argv, argc, 0, &dst, &dst_len) || !arg_i64(env, argv, argc, 1, &off) ||
      !arg_bytes(env, argv, argc, 2, &src, &src_len))
    return usage(env, "copyBytes(dst: Uint8Array, dstOffset: number, src: Uint8Array)");
  if (off < 0 || (uint64_t)off + src_len > dst_len)
    return usage(env, "copyBytes: [dstOffset, dstOffset + src.length) must lie inside dst");
  if (src_len > 0) memcpy(dst + off, src, src_len);
  return num(env, (double)src_len);
}

// ---- userfaultfd ioctls -----------------------------------------------------------------------

static napi_value uffd_unregister(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t fd, start, len;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &start) || !arg_i64(env, argv, argc, 2, &len))
    return usage(env, "unregister(uffd: number, start: number, len: number)");
  struct uffdio_range range = {.start = (uint64_t)start, .len = (uint64_t)len};
  return ioctl((int)fd, UFFDIO_UNREGISTER, &range) < 0 ? neg_errno(env) : num(env, 0);
}

static napi_value uffd_wake(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t fd, start, len;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &start) || !arg_i64(env, argv, argc, 2, &len))
    return usage(env, "wake(uffd: number, start: number, len: number)");
  struct uffdio_range range = {.start = (uint64_t)start, .len = (uint64_t)len};
  return ioctl((int)fd, UFFDIO_WAKE, &range) < 0 ? neg_errno(env) : num(env, 0);
}

// Both COPY and ZEROPAGE report progress in a signed field that the kernel fills even when the
// ioctl fails: bytes done, or -errno, or 0. The ABI here: a positive count of bytes done (which can
// be less than asked: the caller resumes after it), else -errno.
static napi_value progress(napi_env env, int rc, int64_t done) {
  if (rc == 0) return num(env, (double)done);
  if (done > 0) return num(env, (double)done);
  return num(env, -(double)errno);
}

// copy(uffd, dst, src, srcOffset, len, dontWake) -> bytes copied | -errno. src is a Mapping or
// any Buffer, TypedArray or ArrayBuffer; [srcOffset, srcOffset + len) must lie
// inside it.
static napi_value uffd_copy(napi_env env, napi_callback_info info) {
  ARGS(6);
  int64_t fd, dst, src_off, len;
  uint8_t *src = NULL;
  size_t src_len = 0;
  bool dont_wake;
  mapping_t *m = arg_mapping(env, argv, argc, 2);
  if (m != NULL) {
    src = m->base;
    src_len = m->len;
  }
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &dst) ||
      (m == NULL && !arg_bytes(env, argv, argc, 2, &src, &src_len)) || src == NULL || !arg_i64(env, argv, argc, 3, &src_off) ||
      !arg_i64(env, argv, argc, 4, &len) || argc < 6 || napi_get_value_bool(env, argv[5], &dont_wake) != napi_ok)
    return usage(env, "copy(uffd: number, dst: number, src: Mapping | Buffer, srcOffset: number, len: number, dontWake: boolean)");
  if (src_off < 0 || len <= 0 || (uint64_t)src_off + (uint64_t)len > src_len)
    return usage(env, "copy: [srcOffset, srcOffset + len) must lie inside src and len must be > 0");
  struct uffdio_copy c = {.dst = (uint64_t)dst, .src = (uint64_t)(uintptr_t)(src + src_off), .len = (uint64_t)len,
                          .mode = dont_wake ? UFFDIO_COPY_MODE_DONTWAKE : 0};
  int rc = ioctl((int)fd, UFFDIO_COPY, &c);
  return progress(env, rc, c.copy);
}

// zeropage(uffd, dst, len, dontWake) -> bytes zeroed | -errno. Maps the shared zero page: no
// memory is used until the guest writes. Not available on hugetlbfs (-EINVAL there).
static napi_value uffd_zeropage(napi_env env, napi_callback_info info) {
  ARGS(4);
  int64_t fd, dst, len;
  bool dont_wake;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &dst) || !arg_i64(env, argv, argc, 2, &len) ||
      argc < 4 || napi_get_value_bool(env, argv[3], &dont_wake) != napi_ok)
    return usage(env, "zeropage(uffd: number, dst: number, len: number, dontWake: boolean)");
  struct uffdio_zeropage z = {.range = {.start = (uint64_t)dst, .len = (uint64_t)len},
                              .mode = dont_wake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0};
  int rc = ioctl((int)fd, UFFDIO_ZEROPAGE, &z);
  return progress(env, rc, z.zeropage);
}

// ---- constants from the kernel's headers -------------------------------------------------------

static int set_const(napi_env env, napi_value obj, const char *name, double v) {
  napi_value val;
  return napi_create_double(env, v, &val) == napi_ok && napi_set_named_property(env, obj, name, val) == napi_ok;
}

static napi_value make_constants(napi_env env) {
  napi_value c;
  if (napi_create_object(env, &c) != napi_ok) return NULL;
  struct {
    const char *name;
    double value;
  } table[] = {
      {"UFFD_API", UFFD_API},
      {"UFFDIO_API", UFFDIO_API},
      {"UFFDIO_REGISTER", UFFDIO_REGISTER},
      {"UFFDIO_UNREGISTER", UFFDIO_UNREGISTER},
      {"UFFDIO_WAKE", UFFDIO_WAKE},
      {"UFFDIO_COPY", UFFDIO_COPY},
      {"UFFDIO_ZEROPAGE", UFFDIO_ZEROPAGE},
      {"USERFAULTFD_IOC_NEW", USERFAULTFD_IOC_NEW},
      {"UFFD_EVENT_PAGEFAULT", UFFD_EVENT_PAGEFAULT},
      {"UFFD_EVENT_FORK", UFFD_EVENT_FORK},
      {"UFFD_EVENT_REMAP", UFFD_EVENT_REMAP},
      {"UFFD_EVENT_REMOVE", UFFD_EVENT_REMOVE},
      {"UFFD_EVENT_UNMAP", UFFD_EVENT_UNMAP},
      {"UFFD_PAGEFAULT_FLAG_WRITE", UFFD_PAGEFAULT_FLAG_WRITE},
      {"UFFD_PAGEFAULT_FLAG_WP", UFFD_PAGEFAULT_FLAG_WP},
      {"UFFD_PAGEFAULT_FLAG_MINOR", UFFD_PAGEFAULT_FLAG_MINOR},
      {"UFFD_FEATURE_EVENT_REMOVE", UFFD_FEATURE_EVENT_REMOVE},
      {"UFFD_FEATURE_MISSING_HUGETLBFS", UFFD_FEATURE_MISSING_HUGETLBFS},
      {"UFFD_USER_MODE_ONLY", UFFD_USER_MODE_ONLY},
      {"UFFDIO_REGISTER_MODE_MISSING", UFFDIO_REGISTER_MODE_MISSING},
      {"UFFDIO_COPY_MODE_DONTWAKE", UFFDIO_COPY_MODE_DONTWAKE},
      {"UFFDIO_ZEROPAGE_MODE_DONTWAKE", UFFDIO_ZEROPAGE_MODE_DONTWAKE},
      {"UFFD_MSG_SIZE", sizeof(struct uffd_msg)},
      {"UFFD_MSG_OFFSET_EVENT", offsetof(struct uffd_msg, event)},
      {"UFFD_MSG_OFFSET_PAGEFAULT_FLAGS", offsetof(struct uffd_msg, arg.pagefault.flags)},
      {"UFFD_MSG_OFFSET_PAGEFAULT_ADDRESS", offsetof(struct uffd_msg, arg.pagefault.address)},
      {"UFFD_MSG_OFFSET_REMOVE_START", offsetof(struct uffd_msg, arg.remove.start)},
      {"UFFD_MSG_OFFSET_REMOVE_END", offsetof(struct uffd_msg, arg.remove.end)},
      {"O_CLOEXEC", O_CLOEXEC},
      {"O_NONBLOCK", O_NONBLOCK},
      {"MSG_TRUNC", MSG_TRUNC},
      {"MSG_CTRUNC", MSG_CTRUNC},
      {"POLLIN", POLLIN},
      {"POLLHUP", POLLHUP},
      {"POLLERR", POLLERR},
      {"POLLRDHUP", POLLRDHUP},
      {"EPOLLIN", EPOLLIN},
      {"EPOLLERR", EPOLLERR},
      {"EPOLLHUP", EPOLLHUP},
      {"SEEK_DATA", SEEK_DATA},
      {"SEEK_HOLE", SEEK_HOLE},
      {"POSIX_FADV_WILLNEED", POSIX_FADV_WILLNEED},
      {"MADV_DONTNEED", MADV_DONTNEED},
      {"MADV_REMOVE", MADV_REMOVE},
      {"SIGKILL", SIGKILL},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!set_const(env, c, table[i].name, table[i].value)) return NULL;
  return c;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor fns[] = {
      {"listenUnix", NULL, listen_unix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"accept", NULL, accept_conn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectUnix", NULL, connect_unix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvWithFds", NULL, recv_with_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdFlags", NULL, fd_flags, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdCreate", NULL, eventfd_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdSignal", NULL, eventfd_signal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdDrain", NULL, eventfd_drain, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pidfdOpen", NULL, pidfd_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pidfdSendSignal", NULL, pidfd_send_signal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"poll", NULL, poll_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapFile", NULL, map_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unmapFile", NULL, unmap_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"epollCreate", NULL, epoll_create_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"epollAdd", NULL, epoll_add, NULL, NULL, NULL, napi_enumerable, NULL},
      {"epollDel", NULL, epoll_del, NULL, NULL, NULL, napi_enumerable, NULL},
      {"epollWait", NULL, epoll_wait_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readEvents", NULL, read_events, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyBytes", NULL, copy_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fadvise", NULL, fadvise_range, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lseek", NULL, lseek_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unregister", NULL, uffd_unregister, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wake", NULL, uffd_wake, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copy", NULL, uffd_copy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"zeropage", NULL, uffd_zeropage, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) != napi_ok) return NULL;
  napi_value constants = make_constants(env);
  if (constants == NULL || napi_set_named_property(env, exports, "constants", constants) != napi_ok) return NULL;
  return exports;
}
