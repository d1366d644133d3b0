// The test-only addon: what tests and tools need to play Firecracker's side in-process (create and
// register a uffd, map guest memory, send the handshake, read guest memory like a vCPU). Never built
// by `npm install` of the package and never loaded by src/: the product addon (native/addon.c) must
// not offer a function that reads arbitrary memory. Built by `npm run build:tools`.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../native/napi-args.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

// As many fds as the product addon's recvWithFds accepts in one message.
#define MAX_SEND_FDS 8

// sendWithFds(fd, buf, fds: Int32Array) -> bytes | -errno. One sendmsg; for tests and tools that
// speak Firecracker's side of the handshake.
static napi_value send_with_fds(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t fd;
  uint8_t *buf;
  size_t buf_len, nfds;
  int32_t *fds;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_bytes(env, argv, argc, 1, &buf, &buf_len) ||
      !arg_i32_array(env, argv, argc, 2, &fds, &nfds) || nfds > MAX_SEND_FDS)
    return usage(env, "sendWithFds(fd: number, buf: Buffer, fds: Int32Array(<= 8))");
  union {
    char buf[CMSG_SPACE(MAX_SEND_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct iovec iov = {.iov_base = buf, .iov_len = buf_len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t sent = sendmsg((int)fd, &msg, MSG_NOSIGNAL);
  return sent < 0 ? neg_errno(env) : num(env, (double)sent);
}

// uffdCreate(flags, useDevice) -> fd | -errno: as Firecracker does, /dev/userfaultfd's
// USERFAULTFD_IOC_NEW, or the userfaultfd(2) syscall. For the tests and tools that play the VMM.
static napi_value uffd_create(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t flags;
  bool use_device;
  if (!arg_i64(env, argv, argc, 0, &flags) || argc < 2 || napi_get_value_bool(env, argv[1], &use_device) != napi_ok)
    return usage(env, "uffdCreate(flags: number, useDevice: boolean)");
  if (use_device) {
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0) return neg_errno(env);
    int fd = ioctl(dev, USERFAULTFD_IOC_NEW, (int)flags);
    int e = errno;
    close(dev);
    return fd < 0 ? num(env, -e) : num(env, fd);
  }
  long fd = syscall(SYS_userfaultfd, (int)flags);
  return fd < 0 ? neg_errno(env) : num(env, (double)fd);
}

// uffdApi(uffd, features, out: Int32Array[4]) -> 0 | -errno; out = [features lo, hi, ioctls lo, hi].
static napi_value uffd_api(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t fd, features;
  int32_t *out;
  size_t n;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &features) ||
      !arg_i32_array(env, argv, argc, 2, &out, &n) || n < 4)
    return usage(env, "uffdApi(uffd: number, features: number, out: Int32Array(4))");
  struct uffdio_api api = {.api = UFFD_API, .features = (uint64_t)features};
  if (ioctl((int)fd, UFFDIO_API, &api) < 0) return neg_errno(env);
  out[0] = (int32_t)(api.features & 0xffffffffu);
  out[1] = (int32_t)(api.features >> 32);
  out[2] = (int32_t)(api.ioctls & 0xffffffffu);
  out[3] = (int32_t)(api.ioctls >> 32);
  return num(env, 0);
}

static napi_value uffd_register(napi_env env, napi_callback_info info) {
  ARGS(4);
  int64_t fd, start, len, mode;
  if (!arg_i64(env, argv, argc, 0, &fd) || !arg_i64(env, argv, argc, 1, &start) ||
      !arg_i64(env, argv, argc, 2, &len) || !arg_i64(env, argv, argc, 3, &mode))
    return usage(env, "register(uffd: number, start: number, len: number, mode: number)");
  struct uffdio_register reg = {.range = {.start = (uint64_t)start, .len = (uint64_t)len}, .mode = (uint64_t)mode};
  return ioctl((int)fd, UFFDIO_REGISTER, &reg) < 0 ? neg_errno(env) : num(env, 0);
}

// ---- raw memory, for tests that play the VMM in-process ---------------------------------------

// mapAnonymous(len, hugetlb2m) -> address | -errno: Firecracker's guest memory mapping.
static napi_value map_anonymous(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t len;
  bool huge;
  if (!arg_i64(env, argv, argc, 0, &len) || len <= 0 || argc < 2 || napi_get_value_bool(env, argv[1], &huge) != napi_ok)
    return usage(env, "mapAnonymous(len: number > 0, hugetlb2m: boolean)");
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (huge) flags |= MAP_HUGETLB | (21 << MAP_HUGE_SHIFT);
  void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, flags, -1, 0);
  return p == MAP_FAILED ? neg_errno(env) : num(env, (double)(uintptr_t)p);
}

static napi_value unmap(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t addr, len;
  if (!arg_i64(env, argv, argc, 0, &addr) || !arg_i64(env, argv, argc, 1, &len))
    return usage(env, "unmap(addr: number, len: number)");
  return munmap((void *)(uintptr_t)addr, (size_t)len) < 0 ? neg_errno(env) : num(env, 0);
}

static napi_value madvise_range(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t addr, len, advice;
  if (!arg_i64(env, argv, argc, 0, &addr) || !arg_i64(env, argv, argc, 1, &len) || !arg_i64(env, argv, argc, 2, &advice))
    return usage(env, "madvise(addr: number, len: number, advice: number)");
  return madvise((void *)(uintptr_t)addr, (size_t)len, (int)advice) < 0 ? neg_errno(env) : num(env, 0);
}

// readMemory(addr, dst) -> 0: copies dst.length bytes from raw memory at addr, faulting like a
// vCPU would. Blocks while a uffd handler serves the faults: call it from a thread other than
// the handler's. Test-only; the handler never reads guest memory.
static napi_value read_memory(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t addr;
  uint8_t *dst;
  size_t len;
  if (!arg_i64(env, argv, argc, 0, &addr) || addr == 0 || !arg_bytes(env, argv, argc, 1, &dst, &len))
    return usage(env, "readMemory(addr: number, dst: Buffer)");
  memcpy(dst, (const void *)(uintptr_t)addr, len);
  return num(env, 0);
}

NAPI_MODULE_INIT() {
  napi_property_descriptor fns[] = {
      {"sendWithFds", NULL, send_with_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"uffdCreate", NULL, uffd_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"uffdApi", NULL, uffd_api, NULL, NULL, NULL, napi_enumerable, NULL},
      {"register", NULL, uffd_register, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapAnonymous", NULL, map_anonymous, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unmap", NULL, unmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"madvise", NULL, madvise_range, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readMemory", NULL, read_memory, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) != napi_ok) return NULL;
  return exports;
}
