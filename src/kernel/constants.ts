// The userfaultfd ABI as the TypeScript side uses it. Values are x86_64 Linux's; a test checks each
// against the addon's values compiled from <linux/userfaultfd.h> so the two cannot drift.

export const UFFD_API = 0xaa;
export const UFFD_MSG_SIZE = 32;

export const UFFD_EVENT_PAGEFAULT = 0x12;
export const UFFD_EVENT_FORK = 0x13;
export const UFFD_EVENT_REMAP = 0x14;
export const UFFD_EVENT_REMOVE = 0x15;
export const UFFD_EVENT_UNMAP = 0x16;

export const UFFD_PAGEFAULT_FLAG_WRITE = 1;
export const UFFD_PAGEFAULT_FLAG_WP = 2;
export const UFFD_PAGEFAULT_FLAG_MINOR = 4;

export const UFFD_FEATURE_EVENT_REMOVE = 1 << 3;
export const UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4;
export const UFFD_USER_MODE_ONLY = 1;
export const UFFDIO_REGISTER_MODE_MISSING = 1;

/** Byte offsets inside struct uffd_msg. */
export const MSG_OFFSET = {
  event: 0,
  pagefaultFlags: 8,
  pagefaultAddress: 16,
  removeStart: 8,
  removeEnd: 16,
} as const;

export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;
export const MSG_TRUNC = 0x20;
export const MSG_CTRUNC = 0x08;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const EPOLLIN = 0x1;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const POSIX_FADV_WILLNEED = 3;
export const MADV_DONTNEED = 4;
export const SIGKILL = 9;

/** Page sizes Firecracker can hand us: the host base page and 2 MiB hugetlbfs pages. */
export const PAGE_SIZE_4K = 4096;
export const PAGE_SIZE_2M = 2 * 1024 * 1024;
