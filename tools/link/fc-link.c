// fc-link: a network link for the remote-store benchmark, in one epoll thread. It forwards TCP
// between its clients and one server and adds what a link of a given round-trip time and bandwidth
// adds: each response byte leaves after it was serialized onto the link's wire and then after the
// RTT. Requests go through undelayed, so a request and its answer see exactly one RTT.
// The wire is one per direction, shared by every connection, as a host's link to its store is: N
// bodies at once take N times as long. It is shared fairly, as a router's per-flow queueing (and
// TCP flows sharing a bottleneck) would: connections with bytes waiting take turns, a read's worth
// (at most 64 KiB) each, so a small answer is not queued behind a large one. Turns are given out at
// most WIRE_AHEAD_NS ahead of the clock, the longest a new answer's first byte waits behind others.
//
// Why not tools/fault-proxy.ts (which the failure tests use): a Node proxy spends a few ms of CPU
// per MiB forwarded (measured 150-250 ms per benchmark restore), on the same 2 CPUs as the handler
// it measures, and queues a fault's frame behind bulk bodies in its own event loop. A real link costs
// the host nothing; this one costs read/write syscalls. The kernel cannot do it here: this kernel
// has no netem (and no fq for timestamp pacing).
//
//   fc-link TARGET_HOST TARGET_PORT RTT_MS BYTES_PER_SECOND   (TARGET_HOST: a name or IPv4 address)
// Listens on 127.0.0.1 (a free port), prints the port and a newline, and runs until stdin closes
// (its parent ended) or a signal.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

// One socket read; what Node reads per read too, so the forwarded pieces are the same size.
#define READ_BYTES (64 * 1024)
// Bytes a direction holds before it stops reading its source (TCP then slows the sender): more than
// a 100 MB/s link carries in a 20 ms RTT.
#define MAX_QUEUED_BYTES (8u << 20)
#define WIRE_AHEAD_NS 1000000u

struct segment {
  struct segment *next;
  uint64_t due_ns;  // set when the segment is given its turn on the wire
  size_t length, sent;
  char data[];
};

// One direction of the link, shared by its connections.
struct wire {
  uint64_t free_ns;  // when everything given a turn so far is serialized
  uint64_t turns;    // turns given so far (orders the connections' last turns)
};

// One direction of a connection: bytes read from `from`, written to `to` when due.
struct half {
  int from, to;
  uint64_t delay_ns;
  struct wire *wire;
  uint64_t last_turn;       // the wire's turn count when this half last had a turn
  struct segment *waiting;  // the first segment not yet given a turn (it and all after it)
  struct segment *head, *tail;
  size_t queued;
  int eof;       // `from` ended: shut `to` down for writing once the queue is empty
  int shut;      // done so
  int blocked;   // a write to `to` would block: wait for EPOLLOUT
};

struct conn;
// What an epoll event points at: one socket of a connection.
struct endpoint {
  struct conn *conn;
  int fd;
  uint32_t events;  // registered with epoll
  int gone;         // removed from epoll (hung up)
};

struct conn {
  struct endpoint client, server;
  struct half request, response;  // client -> server, server -> client
  struct conn *prev, *next;
};

static int epfd, timer_fd, listen_fd;
static struct wire upstream, downstream;  // requests, responses
static struct conn *conns;
static double ns_per_byte;
static uint64_t rtt_ns;
static struct sockaddr_in target;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "fc-link: %s: %s\n", what, strerror(errno));
  exit(1);
}

static struct endpoint *endpoint_of(struct conn *c, int fd) {
  return fd == c->client.fd ? &c->client : &c->server;
}

// Registers what `e` waits for now: input unless its reading direction is full or ended, output
// while a write to it is blocked.
static void update_events(struct conn *c, struct endpoint *e) {
  struct half *reading = e == &c->client ? &c->request : &c->response;
  struct half *writing = e == &c->client ? &c->response : &c->request;
  uint32_t want = 0;
  if (!reading->eof && reading->queued < MAX_QUEUED_BYTES) want |= EPOLLIN;
  if (writing->blocked) want |= EPOLLOUT;
  if (e->gone || want == e->events) return;
  struct epoll_event ev = {.events = want, .data.ptr = e};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, e->fd, &ev) < 0) die("epoll_ctl");
  e->events = want;
}

static void free_half(struct half *h) {
  while (h->head) {
    struct segment *s = h->head;
    h->head = s->next;
    free(s);
  }
}

static void close_conn(struct conn *c) {
  close(c->client.fd);
  close(c->server.fd);
  free_half(&c->request);
  free_half(&c->response);
  if (c->prev) c->prev->next = c->next;
  else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c);
}

// Writes every due segment of `h`; returns -1 when the connection failed.
static int flush_half(struct conn *c, struct half *h, uint64_t now) {
  while (h->head && h->head != h->waiting && h->head->due_ns <= now) {
    struct segment *s = h->head;
    ssize_t n = write(h->to, s->data + s->sent, s->length - s->sent);
    if (n < 0) {
      if (errno == EAGAIN) {
        h->blocked = 1;
        update_events(c, endpoint_of(c, h->to));
        return 0;
      }
      if (errno == EINTR) continue;
      return -1;
    }
    s->sent += (size_t)n;
    if (s->sent < s->length) continue;
    h->queued -= s->length;
    h->head = s->next;
    if (!h->head) h->tail = NULL;
    free(s);
  }
  if (h->blocked) {
    h->blocked = 0;
    update_events(c, endpoint_of(c, h->to));
  }
  update_events(c, endpoint_of(c, h->from));
  if (!h->head && h->eof && !h->shut) {
    shutdown(h->to, SHUT_WR);
    h->shut = 1;
  }
  return 0;
}

// Reads what `h->from` has (one read): queued with its due time. Returns -1 when the connection failed.
static int read_half(struct conn *c, struct half *h) {
  struct segment *s = malloc(sizeof *s + READ_BYTES);
  if (!s) die("malloc");
  ssize_t n = read(h->from, s->data, READ_BYTES);
  if (n <= 0) {
    free(s);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n < 0) return -1;
    h->eof = 1;
    update_events(c, endpoint_of(c, h->from));
    return 0;
  }
  s->due_ns = 0;
  s->length = (size_t)n;
  s->sent = 0;
  s->next = NULL;
  if (h->tail) h->tail->next = s;
  else h->head = s;
  h->tail = s;
  if (!h->waiting) h->waiting = s;
  h->queued += (size_t)n;
  update_events(c, endpoint_of(c, h->from));
  return 0;
}

// The half of `w` with a segment waiting whose last turn is the oldest (round robin), or NULL.
static struct half *next_turn(struct wire *w) {
  struct half *best = NULL;
  for (struct conn *c = conns; c; c = c->next) {
    struct half *h = w == &upstream ? &c->request : &c->response;
    // A connection whose reader is not reading (its socket full) takes no turns, as a TCP flow
    // whose receive window is full sends nothing.
    if (h->waiting && !h->blocked && (!best || h->last_turn < best->last_turn)) best = h;
  }
  return best;
}

// Gives segments their turns on `w` while it is committed less than WIRE_AHEAD_NS ahead: each is
// serialized at the link's rate after those before it on the wire, then delayed by the RTT (a
// transfer of B bytes alone takes B / rate + delay, however it is split into reads).
static void serialize(struct wire *w, uint64_t now) {
  for (;;) {
    if (w->free_ns < now) w->free_ns = now;
    if (w->free_ns > now + WIRE_AHEAD_NS) return;
    struct half *h = next_turn(w);
    if (!h) return;
    struct segment *s = h->waiting;
    w->free_ns += (uint64_t)((double)s->length * ns_per_byte);
    s->due_ns = w->free_ns + h->delay_ns;
    h->waiting = s->next;
    h->last_turn = ++w->turns;
  }
}

static void add_fd(struct endpoint *e) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &ev) < 0) die("epoll_ctl");
  e->events = EPOLLIN;
}

static void set_nodelay(int fd) {
  // Nagle would hold a body's last small write until the peer's delayed ACK; the clients and
  // servers set TCP_NODELAY, so the link adds only the delays it is asked for.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_one(void) {
  int cfd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (cfd < 0) return;
  // A blocking connect: the server is on this host, it completes in microseconds.
  int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sfd < 0 || connect(sfd, (struct sockaddr *)&target, sizeof target) < 0) {
    if (sfd >= 0) close(sfd);
    close(cfd);  // the client sees the connection end, as it would if the server refused it
    return;
  }
  if (fcntl(sfd, F_SETFL, fcntl(sfd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
  struct conn *c = calloc(1, sizeof *c);
  if (!c) die("calloc");
  c->client = (struct endpoint){.conn = c, .fd = cfd};
  c->server = (struct endpoint){.conn = c, .fd = sfd};
  // A new connection's first turn comes before those of connections that had one.
  c->request = (struct half){.from = cfd, .to = sfd, .delay_ns = 0, .wire = &upstream};
  c->response = (struct half){.from = sfd, .to = cfd, .delay_ns = rtt_ns, .wire = &downstream};
  set_nodelay(cfd);
  set_nodelay(sfd);
  c->next = conns;
  if (conns) conns->prev = c;
  conns = c;
  add_fd(&c->client);
  add_fd(&c->server);
}

// The earliest time `h` needs a wake: its first segment's due time, or if it has a segment waiting
// for its turn, when the wire has room for another (whichever is sooner).
static uint64_t next_wake(const struct half *h) {
  if (h->blocked) return UINT64_MAX;
  uint64_t wake = h->head && h->head != h->waiting ? h->head->due_ns : UINT64_MAX;
  if (h->waiting) {
    uint64_t room = h->wire->free_ns > WIRE_AHEAD_NS ? h->wire->free_ns - WIRE_AHEAD_NS : 0;
    if (room < wake) wake = room;
  }
  return wake;
}

// Arms the timer for the earliest wake any half needs (of a direction not waiting for EPOLLOUT).
static void arm_timer(void) {
  uint64_t next = UINT64_MAX;
  for (struct conn *c = conns; c; c = c->next) {
    uint64_t r = next_wake(&c->request), s = next_wake(&c->response);
    if (r < next) next = r;
    if (s < next) next = s;
  }
  struct itimerspec its = {0};
  if (next != UINT64_MAX) {
    its.it_value.tv_sec = (time_t)(next / 1000000000u);
    its.it_value.tv_nsec = (long)(next % 1000000000u);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;  // 0 would disarm
  }
  if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
}

// Flushes both directions; closes the connection when it failed or both directions are done.
static void service(struct conn *c, uint64_t now) {
  if (flush_half(c, &c->request, now) < 0 || flush_half(c, &c->response, now) < 0 || (c->request.shut && c->response.shut))
    close_conn(c);
}

static int parse_number(const char *s, double *out) {
  char *end;
  errno = 0;
  *out = strtod(s, &end);
  return errno == 0 && end != s && *end == '\0' && *out >= 0;
}

int main(int argc, char **argv) {
  double port, rtt_ms, bytes_per_second;
  if (argc != 5 || !parse_number(argv[2], &port) || port < 1 || port > 65535 || !parse_number(argv[3], &rtt_ms) ||
      !parse_number(argv[4], &bytes_per_second)) {
    fprintf(stderr, "usage: fc-link TARGET_HOST TARGET_PORT RTT_MS BYTES_PER_SECOND (0: no cap)\n");
    return 2;
  }
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *found;
  int gai = getaddrinfo(argv[1], NULL, &hints, &found);
  if (gai != 0) {
    fprintf(stderr, "fc-link: cannot resolve %s to an IPv4 address: %s\n", argv[1], gai_strerror(gai));
    return 2;
  }
  target = *(struct sockaddr_in *)found->ai_addr;
  target.sin_port = htons((uint16_t)port);
  freeaddrinfo(found);
  rtt_ns = (uint64_t)(rtt_ms * 1e6);
  ns_per_byte = bytes_per_second > 0 ? 1e9 / bytes_per_second : 0;
  signal(SIGPIPE, SIG_IGN);

  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listen_fd, 128) < 0 ||
      getsockname(listen_fd, (struct sockaddr *)&addr, &len) < 0)
    die("listen");
  epfd = epoll_create1(EPOLL_CLOEXEC);
  timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (epfd < 0 || timer_fd < 0) die("epoll/timerfd");
  // The listener, the timer and stdin are told apart from connections by these sentinels.
  static struct endpoint listener, timer, parent;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) die("epoll_ctl");
  ev.data.ptr = &timer;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, timer_fd, &ev) < 0) die("epoll_ctl");
  ev.data.ptr = &parent;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin (run it with stdin a pipe)");
  printf("%u\n", ntohs(addr.sin_port));
  fflush(stdout);

  struct epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epfd, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      struct endpoint *e = events[i].data.ptr;
      if (e == &listener) {
        accept_one();
      } else if (e == &timer) {
        uint64_t expirations;
        if (read(timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) die("timerfd read");
      } else if (e == &parent) {
        char byte;
        if (read(0, &byte, 1) <= 0) return 0;
      } else {
        struct conn *c = e->conn;
        struct half *reading = e == &c->client ? &c->request : &c->response;
        uint32_t got = events[i].events;
        if ((got & EPOLLERR) || ((got & (EPOLLIN | EPOLLHUP)) && !reading->eof && read_half(c, reading) < 0)) {
          struct endpoint *client = &c->client, *server = &c->server;
          close_conn(c);
          // The connection's other endpoint may have an event later in this batch.
          for (int j = i + 1; j < n; j++)
            if (events[j].data.ptr == client || events[j].data.ptr == server) events[j].data.ptr = &timer;
        } else if ((got & EPOLLHUP) && reading->eof) {
          // Both ways shut: nothing more to read or write here, and a hang-up cannot be masked,
          // so the socket leaves epoll (the other direction may still deliver what it holds).
          epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
          e->gone = 1;
        }
      }
    }
    // Every connection is serviced after each wake: a read may have queued a segment already due
    // (no delay, no cap), and the timer's wake says only that something is due.
    uint64_t now = now_ns();
    serialize(&upstream, now);
    serialize(&downstream, now);
    for (struct conn *c = conns, *next; c; c = next) {
      next = c->next;
      service(c, now);
    }
    arm_timer();
  }
}
