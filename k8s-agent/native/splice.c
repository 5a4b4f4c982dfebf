// hopway-splice: the byte path of a relay's plain socket-to-socket tunnels, off the event loop.
//
// Once a tunnel's two TCP sockets are spliced, all that is left is moving bytes both ways,
// forwarding each FIN, and telling the relay when the tunnel ends. In JavaScript every read
// costs a call into V8 from the event loop; on request/response traffic that is most of what
// a relay spends per message (docs/benchmarks/README.md, "Listeners"). Here one thread per
// process waits on its own epoll set and does what a C proxy does per message: one read(2)
// into a shared buffer and one write(2) of it to the other socket.
//
// Ownership: the descriptors stay Node's. The relay stops Node's reads of the sockets in the
// same synchronous turn as it attaches them (Node reads only from its own event loop), never
// writes to them again, and closes them only after this thread let go: either its report arrived
// (the tunnel ended or failed here) or `cancel` took the tunnel back synchronously. So a
// descriptor number is never read or written here after Node closed it.
//
// Reports reach JavaScript through one thread-safe function, batched: [id, up, down, code,
// errno] per tunnel, five numbers each. Code 0: both directions ended (each FIN forwarded
// after everything before it). Code 1: a read or write failed (errno says why); the relay
// resets both sockets, as it does for a broken tunnel on its own path.
//
// Locks, so that JavaScript never waits for the thread's I/O:
//  - mu: a tunnel's I/O state. The thread holds it for one event at a time; JavaScript only to
//    take a tunnel back (cancel) and to read an ended tunnel's bytes from its queued report.
//  - qmu: tunnels attached and not yet in the epoll set. `attach` queues them and wakes the
//    thread, which adds them: the event loop makes no epoll_ctl and waits on no I/O.
//  - smu: ids to tunnels. Lookups (moved, bytes) and the thread's freeing of a tunnel.
//  - rmu: reports waiting for JavaScript.
// Order where two are held: mu, then smu or rmu.
//
// Memory: one 256 KiB read buffer per process. A write the kernel does not take whole keeps
// only its rest, in a buffer of that size, and the direction stops reading until it is out:
// at most one read's worth waits per direction.
#define _GNU_SOURCE
#include <node_api.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"

#define READ_BYTES (256 * 1024)
#define MAX_EVENTS 128
#define SLOT_BITS 24
#define SLOT_LIMIT (1u << SLOT_BITS)
#define LANES 2

typedef struct tunnel tunnel_t;
typedef struct end {
  tunnel_t *t;
  int side;
} end_t;

struct tunnel {
  end_t ends[2];
  int fd[2];
  uint32_t events[2];  // what epoll watches on fd[i] now (0: not in the set)
  char *pend[2];       // bytes still to be written to fd[i]
  size_t poff[2], plen[2];
  uint8_t eof[2];      // fd[i] read its peer's FIN
  uint8_t shut[2];     // our FIN went out on fd[i]
  atomic_uchar dead;
  uint8_t queued;  // still in the attach queue (mu once the thread took it)
  uint8_t lane;
  atomic_uchar moved;
  _Atomic uint64_t bytes[2];  // read from fd[i] and forwarded to the other side
  uint32_t slot;
  void *owner;     // a native listener's connection (listen.c) that handed it over, or NULL
  tunnel_t *next;  // in the attach queue, then in the grave
};

typedef struct report {
  double id;
  double up, down;
  int code, err;
  void *owner;
} report_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t smu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t rmu = PTHREAD_MUTEX_INITIALIZER;
static tunnel_t *queued;  // attached, not yet in the epoll set (qmu)
static int ep = -1;
static int wake = -1;
static end_t wake_end;  // its address marks the eventfd's events
static pthread_t thread;
static napi_threadsafe_function tsfn;
static char *readbuf;

// Slots: a tunnel's id is gen * 2^24 + slot, so an id never names a later tunnel in the same slot.
static tunnel_t **slots;
static uint32_t *gens;
static uint32_t nslots, capslots;
static uint32_t *free_slots;
static uint32_t nfree;

static tunnel_t *grave;  // dead tunnels, freed by the thread after the batch that may still name them (mu)
static report_t *reports;
static size_t nreports, capreports;
// A call to JavaScript is queued for the reports (rmu). Cleared when JavaScript takes them, and
// when queueing the call failed, so that the next report, or the thread's next pass, asks again:
// one failed call must not strand every later report (and its sockets) in the queue.
static bool signalled;
static atomic_uint_fast64_t lane_bytes[LANES][2];
static uint32_t live;  // attached and not yet reported or cancelled; JS thread only
static atomic_uint_fast64_t attached_total;

static double id_of(tunnel_t *t) { return (double)gens[t->slot] * (double)SLOT_LIMIT + (double)t->slot; }

// 0, or the errno of an epoll_ctl that failed; then `events` still says what the set holds, and
// the caller fails the tunnel (a descriptor left unwatched would never end). Leaving the set
// cannot fail in a way that matters: the descriptor is closed or goes back to JavaScript.
static int set_events(tunnel_t *t, int i, uint32_t want) {
  if (want == t->events[i]) return 0;
  struct epoll_event ev = {.events = want, .data.ptr = &t->ends[i]};
  if (want == 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, t->fd[i], NULL);
  } else if (epoll_ctl(ep, t->events[i] == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, t->fd[i], &ev) != 0) {
    return errno;
  }
  t->events[i] = want;
  return 0;
}

// fd[i] is read while it has not ended and the other side has nothing waiting; it is watched
// for room while something waits to be written to it. A descriptor with neither leaves the
// set: a hang-up on it would otherwise wake the thread again and again, and the next write to
// it meets any error anyway.
static int update(tunnel_t *t, int i) {
  uint32_t want = 0;
  if (!t->eof[i] && t->plen[1 - i] == 0) want |= EPOLLIN;
  if (t->plen[i] > 0) want |= EPOLLOUT;
  return set_events(t, i, want);
}

// Both sides' interest brought up to date; 0 or an errno (see set_events).
static int update_both(tunnel_t *t, int first) {
  int err = update(t, first);
  return err != 0 ? err : update(t, 1 - first);
}

// With mu held. A tunnel still in the attach queue has no events yet; the thread buries it when it
// takes it from the queue.
static void bury(tunnel_t *t) {
  if (t->queued) {
    t->dead = 1;
    return;
  }
  set_events(t, 0, 0);
  set_events(t, 1, 0);
  t->dead = 1;
  t->next = grave;
  grave = t;
}

static double id_locked(tunnel_t *t) {
  pthread_mutex_lock(&smu);
  double id = id_of(t);
  pthread_mutex_unlock(&smu);
  return id;
}

// Queues a call to JavaScript for the waiting reports unless one is queued already.
static void signal_js(void) {
  pthread_mutex_lock(&rmu);
  bool call = nreports > 0 && !signalled;
  if (call) signalled = true;
  pthread_mutex_unlock(&rmu);
  if (!call) return;
  if (napi_call_threadsafe_function(tsfn, NULL, napi_tsfn_nonblocking) != napi_ok) {
    pthread_mutex_lock(&rmu);
    signalled = false;
    pthread_mutex_unlock(&rmu);
  }
}

// With mu held.
static void report(tunnel_t *t, int code, int err) {
  report_t r = {id_locked(t), (double)atomic_load(&t->bytes[0]), (double)atomic_load(&t->bytes[1]), code, err, t->owner};
  bury(t);
  pthread_mutex_lock(&rmu);
  if (nreports == capreports) {
    size_t cap = capreports ? capreports * 2 : 64;
    report_t *grown = realloc(reports, cap * sizeof *grown);
    if (grown == NULL) abort();
    reports = grown;
    capreports = cap;
  }
  reports[nreports++] = r;
  pthread_mutex_unlock(&rmu);
  signal_js();
}

static void fail(tunnel_t *t, int err) { report(t, 1, err); }

static void send_fin(tunnel_t *t, int o) {
  t->shut[o] = 1;
  // ENOTCONN: the peer is gone already; the other direction's next write says so if it matters.
  shutdown(t->fd[o], SHUT_WR);
  if (t->shut[0] && t->shut[1]) report(t, 0, 0);
}

// Writes buf to fd[o] now; keeps what the kernel did not take. 0 on success, else errno.
static int put(tunnel_t *t, int o, const char *buf, size_t n) {
  ssize_t w = send(t->fd[o], buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return errno;
    w = 0;
  }
  if ((size_t)w < n) {
    size_t rest = n - (size_t)w;
    char *p = malloc(rest);
    if (p == NULL) return ENOMEM;
    memcpy(p, buf + w, rest);
    t->pend[o] = p;
    t->poff[o] = 0;
    t->plen[o] = rest;
  }
  return 0;
}

static void readable(tunnel_t *t, int i) {
  int o = 1 - i;
  ssize_t n = recv(t->fd[i], readbuf, READ_BYTES, MSG_DONTWAIT);
  if (n > 0) {
    atomic_fetch_add_explicit(&t->bytes[i], (uint64_t)n, memory_order_relaxed);
    atomic_fetch_add_explicit(&lane_bytes[t->lane][i], (uint64_t)n, memory_order_relaxed);
    atomic_store_explicit(&t->moved, 1, memory_order_relaxed);
    int err = put(t, o, readbuf, (size_t)n);
    if (err != 0) return fail(t, err);
    if (t->plen[o] > 0 && (err = update_both(t, i)) != 0) fail(t, err);
    return;
  }
  if (n == 0) {
    t->eof[i] = 1;
    int err = update(t, i);
    if (err != 0) return fail(t, err);
    if (t->plen[o] == 0) send_fin(t, o);
    return;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
  fail(t, errno);
}

static void writable(tunnel_t *t, int o) {
  int i = 1 - o;
  ssize_t w = send(t->fd[o], t->pend[o] + t->poff[o], t->plen[o] - t->poff[o], MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    return fail(t, errno);
  }
  t->poff[o] += (size_t)w;
  if (t->poff[o] < t->plen[o]) return;
  free(t->pend[o]);
  t->pend[o] = NULL;
  t->plen[o] = t->poff[o] = 0;
  int err = update_both(t, o);
  if (err != 0) return fail(t, err);
  if (t->eof[i]) send_fin(t, o);
}

static void release(tunnel_t *t) {
  free(t->pend[0]);
  free(t->pend[1]);
  pthread_mutex_lock(&smu);
  slots[t->slot] = NULL;
  gens[t->slot] = (gens[t->slot] + 1) & ((1u << 28) - 1);
  free_slots[nfree++] = t->slot;
  pthread_mutex_unlock(&smu);
  free(t);
}

// Adds the attached tunnels to the epoll set (on the thread, with mu held).
static void take_queued(void) {
  pthread_mutex_lock(&qmu);
  tunnel_t *list = queued;
  queued = NULL;
  pthread_mutex_unlock(&qmu);
  while (list != NULL) {
    tunnel_t *t = list;
    list = t->next;
    t->next = NULL;
    t->queued = 0;
    if (t->dead) {
      // Taken back before it started.
      t->next = grave;
      grave = t;
      continue;
    }
    int err = update_both(t, 0);
    if (err != 0) fail(t, err);
  }
}

static void *run(void *arg) {
  (void)arg;
  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    // The lock is taken per event, not per batch: JavaScript's attach, cancel and counters wait
    // for one tunnel's read and write at most, never for a whole batch of them.
    for (int k = 0; k < n; k++) {
      end_t *e = evs[k].data.ptr;
      if (e == &wake_end) {
        uint64_t v;
        ssize_t r = read(wake, &v, sizeof v);
        (void)r;
        pthread_mutex_lock(&mu);
        take_queued();
        pthread_mutex_unlock(&mu);
        continue;
      }
      tunnel_t *t = e->t;
      int i = e->side;
      uint32_t ev = evs[k].events;
      pthread_mutex_lock(&mu);
      // A tunnel buried since epoll_wait returned is skipped; its memory lasts until the batch ends.
      if (!t->dead) {
        // An error or hang-up is met by the read or the write this descriptor is watched for.
        if ((t->events[i] & EPOLLIN) && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) readable(t, i);
        if (!t->dead && (t->events[i] & EPOLLOUT) && (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))) writable(t, i);
      }
      pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    while (grave != NULL) {
      tunnel_t *t = grave;
      grave = t->next;
      release(t);
    }
    pthread_mutex_unlock(&mu);
    // Reports whose call could not be queued (signal_js) are asked for again after every batch.
    signal_js();
  }
  return NULL;
}

// ---- JavaScript side ----

// A JavaScript array of n numbers.
napi_value numbers(napi_env env, const double *vals, uint32_t n) {
  napi_value arr;
  napi_create_array_with_length(env, n, &arr);
  for (uint32_t j = 0; j < n; j++) {
    napi_value v;
    napi_create_double(env, vals[j], &v);
    napi_set_element(env, arr, j, v);
  }
  return arr;
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  (void)data;
  if (env == NULL) return;
  // The queue is taken whole (the thread starts a new one), so no allocation can lose a report.
  pthread_mutex_lock(&rmu);
  size_t n = nreports;
  report_t *copy = reports;
  reports = NULL;
  nreports = capreports = 0;
  signalled = false;
  pthread_mutex_unlock(&rmu);
  if (n == 0) {
    free(copy);
    return;
  }
  double *vals = malloc(n * 5 * sizeof *vals);
  if (vals == NULL) abort();
  size_t m = 0;
  live -= (uint32_t)n;
  if (live == 0) napi_unref_threadsafe_function(env, tsfn);
  for (size_t k = 0; k < n; k++) {
    // A native listener's connection: listen.c closes it and tells JavaScript itself.
    if (copy[k].owner != NULL) {
      listen_thread_ended(copy[k].owner, copy[k].up, copy[k].down, copy[k].code, copy[k].err);
      continue;
    }
    double *v = vals + m * 5;
    v[0] = copy[k].id;
    v[1] = copy[k].up;
    v[2] = copy[k].down;
    v[3] = (double)copy[k].code;
    v[4] = (double)copy[k].err;
    m++;
  }
  free(copy);
  if (m > 0) {
    napi_value arr = numbers(env, vals, (uint32_t)(m * 5));
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, cb, 1, &arr, NULL);
  }
  free(vals);
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "HOPWAY_SPLICE_E%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

// start(onReports): once per process.
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (ep >= 0) {
    napi_throw_error(env, "HOPWAY_SPLICE_STARTED", "the splice thread is already running");
    return NULL;
  }
  napi_valuetype type;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, "HOPWAY_SPLICE_ARG", "start(onReports): onReports must be a function");
    return NULL;
  }
  readbuf = malloc(READ_BYTES);
  if (readbuf == NULL) return throw_errno(env, "splice buffer", ENOMEM);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return throw_errno(env, "epoll_create1", errno);
  wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) return throw_errno(env, "eventfd", errno);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &wake_end};
  epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
  napi_value name;
  napi_create_string_utf8(env, "hopway-splice", NAPI_AUTO_LENGTH, &name);
  napi_status s = napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &tsfn);
  if (s != napi_ok) {
    napi_throw_error(env, "HOPWAY_SPLICE_TSFN", "could not make the thread-safe function");
    return NULL;
  }
  // Only attached tunnels keep the process alive, as open sockets would.
  napi_unref_threadsafe_function(env, tsfn);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int err = pthread_create(&thread, &attr, run, NULL);
  pthread_attr_destroy(&attr);
  if (err != 0) return throw_errno(env, "pthread_create", err);
  return NULL;
}

static int get_int(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_number) return 0;
  return napi_get_value_int32(env, v, out) == napi_ok;
}

// Queues a tunnel for the thread; 0 and its id, or an errno. `owner`: listen.c's connection, whose
// report goes back to listen.c rather than to JavaScript.
static int attach_fds(napi_env env, int a, int b, int lane, void *owner, double *id_out) {
  // Every recv and send here is MSG_DONTWAIT: a descriptor without O_NONBLOCK cannot block the thread.
  tunnel_t *t = calloc(1, sizeof *t);
  if (t == NULL) return ENOMEM;
  pthread_mutex_lock(&smu);
  if (nfree == 0) {
    if (nslots == SLOT_LIMIT) {
      pthread_mutex_unlock(&smu);
      free(t);
      return EMFILE;
    }
    if (nslots == capslots) {
      uint32_t cap = capslots ? capslots * 2 : 1024;
      if (cap > SLOT_LIMIT) cap = SLOT_LIMIT;
      tunnel_t **s = realloc(slots, cap * sizeof *s);
      uint32_t *g = s ? realloc(gens, cap * sizeof *g) : NULL;
      uint32_t *f = g ? realloc(free_slots, cap * sizeof *f) : NULL;
      if (s) slots = s;
      if (g) gens = g;
      if (f) free_slots = f;
      if (!s || !g || !f) {
        pthread_mutex_unlock(&smu);
        free(t);
        return ENOMEM;
      }
      for (uint32_t k = capslots; k < cap; k++) gens[k] = 0;
      capslots = cap;
    }
    free_slots[nfree++] = nslots++;
  }
  t->slot = free_slots[--nfree];
  slots[t->slot] = t;
  double id = id_of(t);
  pthread_mutex_unlock(&smu);
  t->ends[0] = (end_t){t, 0};
  t->ends[1] = (end_t){t, 1};
  t->fd[0] = a;
  t->fd[1] = b;
  t->lane = (uint8_t)lane;
  t->owner = owner;
  t->queued = 1;
  // The thread adds it to its epoll set when it wakes; one wake covers everything queued since.
  pthread_mutex_lock(&qmu);
  bool first = queued == NULL;
  t->next = queued;
  queued = t;
  pthread_mutex_unlock(&qmu);
  if (first) {
    uint64_t one = 1;
    ssize_t r = write(wake, &one, sizeof one);
    (void)r;
  }
  if (live++ == 0) napi_ref_threadsafe_function(env, tsfn);
  atomic_fetch_add(&attached_total, 1);
  *id_out = id;
  return 0;
}

int splice_attach(napi_env env, int fd_up, int fd_down, void *owner, double *id) {
  if (ep < 0) return ENOTCONN;
  return attach_fds(env, fd_up, fd_down, 0, owner, id);
}

// attach(fdUp, fdDown, lane) → id. fdUp is the side that connected (its reads count as `up`).
static napi_value attach(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t a, b, lane;
  if (argc < 3 || !get_int(env, argv[0], &a) || !get_int(env, argv[1], &b) || !get_int(env, argv[2], &lane) || a < 0 ||
      b < 0 || a == b || lane < 0 || lane >= LANES) {
    napi_throw_type_error(env, "HOPWAY_SPLICE_ARG", "attach(fdUp, fdDown, lane): two distinct descriptors and a lane");
    return NULL;
  }
  if (ep < 0) {
    napi_throw_error(env, "HOPWAY_SPLICE_NOT_STARTED", "start() first");
    return NULL;
  }
  double id;
  int err = attach_fds(env, a, b, lane, NULL, &id);
  if (err != 0) return throw_errno(env, "attach", err);
  napi_value out;
  napi_create_double(env, id, &out);
  return out;
}

// Looks a live tunnel up by id, with smu held; NULL when it ended (its report is on the way) or is unknown.
static tunnel_t *find_id(double id) {
  // An id is an integer below 2^53 (id_of); anything else (Infinity, 1.5) names no tunnel rather
  // than one of the same integer part, and never reaches an undefined conversion.
  if (!(id >= 0) || id > 9007199254740991.0 || id != (double)(uint64_t)id) return NULL;
  uint32_t slot = (uint32_t)((uint64_t)id & (SLOT_LIMIT - 1));
  uint32_t gen = (uint32_t)((uint64_t)id >> SLOT_BITS);
  if (slot >= nslots || gens[slot] != gen) return NULL;
  tunnel_t *t = slots[slot];
  return t == NULL || t->dead ? NULL : t;
}

int splice_take_back(napi_env env, double id, double bytes[2]) {
  int took = 0;
  pthread_mutex_lock(&mu);
  pthread_mutex_lock(&smu);
  tunnel_t *t = find_id(id);
  pthread_mutex_unlock(&smu);
  if (t != NULL) {
    bytes[0] = (double)atomic_load(&t->bytes[0]);
    bytes[1] = (double)atomic_load(&t->bytes[1]);
    bury(t);
    took = 1;
  }
  pthread_mutex_unlock(&mu);
  if (!took) return 0;
  uint64_t one = 1;
  ssize_t r = write(wake, &one, sizeof one);  // let the thread free it
  (void)r;
  if (--live == 0) napi_unref_threadsafe_function(env, tsfn);
  return 1;
}

int splice_counts(double id, double bytes[2], int *moved_out) {
  pthread_mutex_lock(&smu);
  tunnel_t *t = find_id(id);
  if (t != NULL) {
    bytes[0] = (double)atomic_load(&t->bytes[0]);
    bytes[1] = (double)atomic_load(&t->bytes[1]);
    if (moved_out != NULL) *moved_out = atomic_exchange_explicit(&t->moved, 0, memory_order_relaxed) != 0;
  }
  pthread_mutex_unlock(&smu);
  if (t != NULL) return 1;
  // Ended on the thread, its report not yet taken by JavaScript: the report holds its bytes. Read
  // there, a byte counter summed at scrape time never goes back in that window. With mu, the
  // thread is not between burying a tunnel and queueing its report.
  int found = 0;
  pthread_mutex_lock(&mu);
  pthread_mutex_lock(&rmu);
  for (size_t k = 0; k < nreports && !found; k++) {
    if (reports[k].id != id) continue;
    bytes[0] = reports[k].up;
    bytes[1] = reports[k].down;
    found = 1;
  }
  pthread_mutex_unlock(&rmu);
  pthread_mutex_unlock(&mu);
  return found;
}

// The tunnel id a JavaScript call passed first; -1, which names no tunnel, when there is none.
static double id_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double id = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_double(env, argv[0], &id) != napi_ok) {
    return -1;
  }
  return id;
}

napi_value undefined_value(napi_env env) {
  napi_value out;
  napi_get_undefined(env, &out);
  return out;
}

napi_value boolean_value(napi_env env, int b) {
  napi_value out;
  napi_get_boolean(env, b != 0, &out);
  return out;
}

// cancel(id) → [up, down], the tunnel's bytes, when it was taken back: the thread no longer
// touches its descriptors and no report will come. Undefined when it already ended: its report will.
static napi_value cancel(napi_env env, napi_callback_info info) {
  double b[2] = {0, 0};
  if (!splice_take_back(env, id_arg(env, info), b)) return undefined_value(env);
  return numbers(env, b, 2);
}

// moved(id) → whether bytes moved since the last call (the relay's idle sweep).
static napi_value moved(napi_env env, napi_callback_info info) {
  double b[2];
  int m = 0;
  splice_counts(id_arg(env, info), b, &m);
  return boolean_value(env, m);
}

// bytes(id) → [read from the side that connected, read from the other] while the tunnel is live or
// its end is not yet reported to JavaScript, else undefined.
static napi_value bytes(napi_env env, napi_callback_info info) {
  double b[2];
  if (!splice_counts(id_arg(env, info), b, NULL)) return undefined_value(env);
  return numbers(env, b, 2);
}

// stats() → [live tunnels, attached ever, bytes up lane 0, down lane 0, up lane 1, down lane 1, bytes waiting]
static napi_value stats(napi_env env, napi_callback_info info) {
  (void)info;
  double waiting = 0;
  pthread_mutex_lock(&mu);
  pthread_mutex_lock(&smu);
  for (uint32_t k = 0; k < nslots; k++) {
    tunnel_t *t = slots[k];
    if (t != NULL && !t->dead) waiting += (double)(t->plen[0] - t->poff[0] + t->plen[1] - t->poff[1]);
  }
  pthread_mutex_unlock(&smu);
  pthread_mutex_unlock(&mu);
  double vals[7] = {
      (double)live,
      (double)atomic_load(&attached_total),
      (double)atomic_load(&lane_bytes[0][0]),
      (double)atomic_load(&lane_bytes[0][1]),
      (double)atomic_load(&lane_bytes[1][0]),
      (double)atomic_load(&lane_bytes[1][1]),
      waiting,
  };
  return numbers(env, vals, 7);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", NULL, start, NULL, NULL, NULL, napi_default, NULL},
      {"attach", NULL, attach, NULL, NULL, NULL, napi_default, NULL},
      {"cancel", NULL, cancel, NULL, NULL, NULL, napi_default, NULL},
      {"moved", NULL, moved, NULL, NULL, NULL, napi_default, NULL},
      {"bytes", NULL, bytes, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  listen_define(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
