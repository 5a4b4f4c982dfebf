// hopway-splice, listeners: a listener's connections accepted, dialled and carried in C on
// Node's own event loop (docs/relay.md "Native listeners").
//
// What a short connection costs a relay is mostly Node's socket layer: a net.Socket, its
// stream state and its handle wrap at accept, the same again for the dial, and a call into V8
// for every read (docs/benchmarks/README.md, "Listeners"). Here a listener's connections are
// libuv TCP handles that JavaScript never wraps. JavaScript still decides every connection:
// on accept it is called with the peer's address and answers, now or later, with a dial of
// the address its route table chose, a refusal, or a release (the descriptor becomes a
// net.Socket and takes the relay's ordinary path, as a connection to a relay link must).
// Once the target answers, each read goes out in one write from a shared buffer, as in
// splice.c; half-close is forwarded each way, and a failed read or write resets both sides.
//
// Everything here runs on the event loop's thread: no locks, and the relay's own calls
// (dial, close, bytes) act at once. Each connection produces one `ended` event once both its
// handles are closed, unless it was released.
//
// A connection that keeps carrying moves to the splice thread (splice.c) as the relay's other
// socket-to-socket tunnels do: after HANDOVER_READS (pump.ts) reads in one direction that each went out
// whole, between two reads, with nothing waiting either way. Its handles stay open and
// unread here until the thread lets go (its report, or a take-back when the relay closes it);
// only then are they closed, so the thread never touches a descriptor that was closed.
//
// Memory: one read buffer per process. A write the kernel does not take whole keeps only its
// rest, and that direction stops reading until it is out: at most one read's worth waits per
// direction, as on the relay's other paths.
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"

#define L_READ_BYTES (256 * 1024)
#define L_SLOT_BITS 24
#define L_SLOT_LIMIT (1u << L_SLOT_BITS)
// A slot's generation wraps here, so that generation × L_SLOT_LIMIT + slot stays an integer a
// JavaScript number holds exactly (below 2^53) however often the slot is reused.
#define L_GEN_MASK ((1u << 28) - 1)

// PIPED: one side's bytes go to and come from JavaScript (a tunnel whose other end is a relay
// link's stream), the other side unused: the relay reads and writes it through pipe_* below.
enum { HELD, DIALING, OPEN, CLOSING, PIPED };
enum { EV_CONNECTED = 1, EV_DIAL_FAILED = 2, EV_ENDED = 3, EV_DATA = 4, EV_EOF = 5, EV_DRAIN = 6 };

typedef struct conn conn_t;
typedef struct side {
  uv_tcp_t tcp;
  conn_t *c;
  int i;
  uv_write_t w;
  uv_shutdown_t sh;
  char *pend;  // the unwritten rest of one read, to go out to this side
  size_t plen;
  uint8_t live;     // tcp is initialised and not yet closed
  uint8_t eof;      // read its peer's FIN
  uint8_t shut;     // our FIN to it is out
  uint8_t reading;  // uv_read_start is on
  uint8_t fin_asked;  // PIPED: JavaScript ended it; no write after
} side_t;

struct conn {
  side_t s[2];  // 0: the accepted client, 1: the target
  uv_connect_t creq;
  int state;
  uint8_t released, aborting, moved;
  uint8_t on_thread;    // the splice thread moves its bytes now
  uint8_t close_asked;  // closed while on the thread, with the thread's report on its way
  uint8_t reset_asked;
  uint8_t js;         // PIPED: the side JavaScript reads and writes
  uint8_t js_paused;  // PIPED: JavaScript does not want its reads now
  uint32_t whole[2];    // reads from side i written on whole in a row
  double tid;           // its id on the thread
  int handles;  // handles whose close callback is still to come
  int err;      // why it failed (a libuv error, negative), 0 when it ended cleanly
  int dial_err;
  uint64_t bytes[2];  // read from side i and forwarded to the other
  uint32_t slot;
  double listener;
};

typedef struct lsn {
  uv_tcp_t tcp;
  uint32_t id;
  struct lsn *next;
} lsn_t;

static napi_env lenv;
static uv_loop_t *loop;
static napi_ref on_accept_ref, on_event_ref, lbuf_ref;
static napi_async_context actx;
static napi_ref resource_ref;
// The read buffer is a JavaScript Buffer (listenStart's), so that a PIPED read reaches
// JavaScript as a view of it with no copy and no allocation.
static char *lbuf;
static uint8_t lbuf_busy;
// What a refused held client sent is read into here and dropped, never into lbuf: JavaScript may
// refuse one while it holds a view of lbuf (a PIPED read).
static char dropbuf[64 * 1024];

static conn_t **cslots;
static uint32_t *cgens;
static uint32_t ncslots, capcslots;
static uint32_t *cfree;
static uint32_t ncfree;
static uint32_t nconns;
static uint32_t next_listener = 1;
static uint64_t waiting;  // bytes read and not yet taken by the other side's kernel buffer
// Bytes JavaScript wrote to piped sides, and of those the ones the kernel did not take at once (copied).
static uint64_t piped_written, piped_copied;
// Whole reads in one direction before a connection moves to the splice thread: pump.ts's
// HANDOVER_READS, passed to listenStart, and for the same reason (a short connection never pays the move).
static uint32_t handover_reads;
static lsn_t *listeners;

// Close callback of a handle allocated by itself or as the first member of its struct (lsn_t).
static void free_on_close(uv_handle_t *h) { free(h); }

static double conn_id(conn_t *c) { return (double)cgens[c->slot] * (double)L_SLOT_LIMIT + (double)c->slot; }

// A slot's generation after `n` more reuses.
static uint32_t gen_after(uint32_t gen, uint64_t n) { return (uint32_t)((gen + n) & L_GEN_MASK); }

static conn_t *conn_by_id(double id) {
  if (!(id >= 0) || id > 9007199254740991.0 || id != (double)(uint64_t)id) return NULL;
  uint64_t n = (uint64_t)id;
  uint32_t slot = (uint32_t)(n % L_SLOT_LIMIT);
  uint64_t gen = n / L_SLOT_LIMIT;
  if (slot >= ncslots || cslots[slot] == NULL || cgens[slot] != gen) return NULL;
  return cslots[slot];
}

static conn_t *conn_new(void) {
  uint32_t slot;
  if (ncfree > 0) {
    slot = cfree[--ncfree];
  } else {
    if (ncslots >= L_SLOT_LIMIT) return NULL;
    if (ncslots == capcslots) {
      uint32_t cap = capcslots == 0 ? 1024 : capcslots * 2;
      conn_t **s = realloc(cslots, cap * sizeof *s);
      if (s == NULL) return NULL;
      cslots = s;
      uint32_t *g = realloc(cgens, cap * sizeof *g);
      if (g == NULL) return NULL;
      cgens = g;
      uint32_t *f = realloc(cfree, cap * sizeof *f);
      if (f == NULL) return NULL;
      cfree = f;
      capcslots = cap;
    }
    slot = ncslots++;
    cgens[slot] = 0;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    cfree[ncfree++] = slot;
    return NULL;
  }
  c->slot = slot;
  c->s[0].c = c;
  c->s[0].i = 0;
  c->s[1].c = c;
  c->s[1].i = 1;
  cslots[slot] = c;
  nconns++;
  return c;
}

static void conn_free(conn_t *c) {
  cslots[c->slot] = NULL;
  cgens[c->slot] = gen_after(cgens[c->slot], 1);
  cfree[ncfree++] = c->slot;
  waiting -= c->s[0].plen + c->s[1].plen;
  free(c->s[0].pend);
  free(c->s[1].pend);
  free(c);
  nconns--;
}

// Calls into JavaScript from a libuv callback: a callback scope runs the microtasks and ticks the
// call queued, as for any I/O callback of Node's own. An exception is the process's, uncaught.
static void call(napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_value fn, resource;
  napi_get_reference_value(lenv, fn_ref, &fn);
  napi_get_reference_value(lenv, resource_ref, &resource);
  napi_status s = napi_make_callback(lenv, actx, resource, fn, argc, argv, NULL);
  if (s == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(lenv, &err);
    napi_fatal_exception(lenv, err);
  }
}

static void emit(int kind, conn_t *c, double a, double b, const char *text) {
  napi_handle_scope scope;
  napi_open_handle_scope(lenv, &scope);
  napi_value argv[5];
  napi_create_int32(lenv, kind, &argv[0]);
  napi_create_double(lenv, conn_id(c), &argv[1]);
  napi_create_double(lenv, a, &argv[2]);
  napi_create_double(lenv, b, &argv[3]);
  if (text == NULL) {
    napi_get_undefined(lenv, &argv[4]);
  } else {
    napi_create_string_utf8(lenv, text, NAPI_AUTO_LENGTH, &argv[4]);
  }
  call(on_event_ref, 5, argv);
  napi_close_handle_scope(lenv, scope);
}

static void on_side_closed(uv_handle_t *h) {
  side_t *s = (side_t *)h->data;
  conn_t *c = s->c;
  if (--c->handles > 0) return;
  if (c->state == DIALING) {
    // Only the target's handle was closed: a dial that failed or was aborted; the client waits.
    c->state = HELD;
    emit(EV_DIAL_FAILED, c, 0, 0, uv_err_name(c->dial_err));
    return;
  }
  if (c->released) {
    conn_free(c);
    return;
  }
  emit(EV_ENDED, c, (double)c->bytes[0], (double)c->bytes[1], c->err == 0 ? NULL : uv_err_name(c->err));
  conn_free(c);
}

static void close_side(side_t *s, int reset) {
  if (!s->live) return;
  s->live = 0;
  s->reading = 0;
  s->c->handles++;
  s->tcp.data = s;
  if (reset) {
    if (uv_tcp_close_reset(&s->tcp, on_side_closed) == 0) return;
    // libuv refuses while a shutdown (our FIN) is still queued on the handle; a zero linger makes
    // the close below send the reset all the same, so a failure never reaches an application as
    // a clean end.
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) {
      struct linger lg = {1, 0};
      (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
  }
  uv_close((uv_handle_t *)&s->tcp, on_side_closed);
}

// Ends the connection: both handles closed, reset after a failure so that each application
// learns it as a reset, as on the relay's other paths.
static void finish(conn_t *c, int err) {
  if (c->state == CLOSING) return;
  c->state = CLOSING;
  if (err != 0 && c->err == 0) c->err = err;
  close_side(&c->s[0], err != 0);
  close_side(&c->s[1], err != 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  // One read at a time on this thread: each read is written on (or its rest copied) before the
  // next alloc. The flag guards that assumption rather than trusting it.
  if (lbuf_busy) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  lbuf_busy = 1;
  *buf = uv_buf_init(lbuf, L_READ_BYTES);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void want_read(side_t *s) {
  conn_t *c = s->c;
  int should = c->state == PIPED ? s->live && !s->eof && s->i == c->js && !c->js_paused
                                 : s->live && !s->eof && c->state == OPEN && c->s[1 - s->i].plen == 0;
  if (should && !s->reading) {
    if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) == 0) s->reading = 1;
  } else if (!should && s->reading) {
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = 0;
  }
}

static void maybe_done(conn_t *c) {
  if (c->state == PIPED) {
    if (c->s[c->js].eof && c->s[c->js].shut) finish(c, 0);
    return;
  }
  if (c->s[0].eof && c->s[1].eof && c->s[0].shut && c->s[1].shut) finish(c, 0);
}

// Moves an open connection's bytes to the splice thread; stays here when the thread cannot take it.
static void hand_over(conn_t *c) {
  uv_os_fd_t a, b;
  if (uv_fileno((uv_handle_t *)&c->s[0].tcp, &a) != 0 || uv_fileno((uv_handle_t *)&c->s[1].tcp, &b) != 0) return;
  double tid;
  if (splice_attach(lenv, a, b, c, &tid) != 0) return;
  // The thread may read at once: stop here in the same turn, and never read or write here again.
  for (int i = 0; i < 2; i++) {
    if (c->s[i].reading) uv_read_stop((uv_stream_t *)&c->s[i].tcp);
    c->s[i].reading = 0;
  }
  c->on_thread = 1;
  c->tid = tid;
}

void listen_thread_ended(void *owner, double up, double down, int code, int err) {
  conn_t *c = (conn_t *)owner;
  c->on_thread = 0;
  c->bytes[0] += (uint64_t)up;
  c->bytes[1] += (uint64_t)down;
  if (up + down > 0) c->moved = 1;
  if (c->close_asked) {
    // A failure the thread met before the close was asked still ends the connection as a failure
    // (the client sees a reset): a truncated stream must not look complete.
    finish(c, code != 0 ? uv_translate_sys_error(err) : c->reset_asked ? UV_ECONNRESET : 0);
    return;
  }
  // Code 0: both FINs went out after everything before them; else errno `err` (positive).
  finish(c, code == 0 ? 0 : uv_translate_sys_error(err));
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  side_t *s = (side_t *)req->data;
  conn_t *c = s->c;
  if (c->state != OPEN && c->state != PIPED) return;
  if (status != 0) {
    finish(c, status);
    return;
  }
  s->shut = 1;
  maybe_done(c);
}

// Side o's peer has nothing more to say: our FIN to o follows everything queued before it.
static void send_fin(side_t *o) {
  o->sh.data = o;
  if (uv_shutdown(&o->sh, (uv_stream_t *)&o->tcp, on_shutdown) != 0) finish(o->c, UV_ENOTCONN);
}

static void on_write(uv_write_t *req, int status) {
  side_t *o = (side_t *)req->data;
  conn_t *c = o->c;
  waiting -= o->plen;
  free(o->pend);
  o->pend = NULL;
  o->plen = 0;
  if (c->state != OPEN) return;
  if (status != 0) {
    finish(c, status);
    return;
  }
  want_read(&c->s[1 - o->i]);
}

static void piped_read(conn_t *c, side_t *s, ssize_t nread) {
  if (nread == UV_EOF) {
    s->eof = 1;
    want_read(s);
    emit(EV_EOF, c, 0, 0, NULL);
    if (c->state == PIPED) maybe_done(c);
    return;
  }
  if (nread < 0) {
    finish(c, (int)nread);
    return;
  }
  c->moved = 1;
  c->bytes[s->i] += (uint64_t)nread;
  // JavaScript takes the bytes as a view of lbuf and copies what it keeps before it returns.
  lbuf_busy = 1;
  emit(EV_DATA, c, (double)nread, 0, NULL);
  lbuf_busy = 0;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  side_t *s = (side_t *)stream->data;
  conn_t *c = s->c;
  if (buf->base == lbuf) lbuf_busy = 0;
  if (nread == 0) return;
  if (c->state == PIPED) {
    piped_read(c, s, nread);
    return;
  }
  if (c->state != OPEN) return;
  side_t *o = &c->s[1 - s->i];
  if (nread == UV_EOF) {
    s->eof = 1;
    want_read(s);
    // The other way is done (o's FIN read, ours to s out) and nothing waits to go to o: closing o
    // sends it our FIN as a shutdown would (everything of o's was read, so no reset), with one
    // system call and one turn of the loop fewer, as HAProxy closes rather than shuts down last.
    if (o->eof && s->shut && o->plen == 0 && o->tcp.write_queue_size == 0) {
      o->shut = 1;
      finish(c, 0);
      return;
    }
    send_fin(o);
    return;
  }
  if (nread < 0) {
    finish(c, (int)nread);
    return;
  }
  c->moved = 1;
  c->bytes[s->i] += (uint64_t)nread;
  uv_buf_t out = uv_buf_init(buf->base, (unsigned int)nread);
  int n = uv_try_write((uv_stream_t *)&o->tcp, &out, 1);
  if (n == nread) {
    if (++c->whole[s->i] >= handover_reads && c->s[0].plen == 0 && c->s[1].plen == 0 &&
        !c->s[0].eof && !c->s[1].eof) {
      hand_over(c);
    }
    return;
  }
  c->whole[s->i] = 0;
  if (n < 0 && n != UV_EAGAIN) {
    finish(c, n);
    return;
  }
  size_t done = n > 0 ? (size_t)n : 0;
  size_t rest = (size_t)nread - done;
  o->pend = malloc(rest);
  if (o->pend == NULL) {
    finish(c, UV_ENOMEM);
    return;
  }
  memcpy(o->pend, buf->base + done, rest);
  o->plen = rest;
  waiting += rest;
  o->w.data = o;
  uv_buf_t wb = uv_buf_init(o->pend, (unsigned int)rest);
  if (uv_write(&o->w, (uv_stream_t *)&o->tcp, &wb, 1, on_write) != 0) {
    waiting -= rest;
    free(o->pend);
    o->pend = NULL;
    o->plen = 0;
    finish(c, UV_EPIPE);
    return;
  }
  want_read(s);
}

// The handle's local (peer 0) or remote (peer 1) address into ip, and its port; "" and 0 when unknown.
static int name_of(uv_tcp_t *tcp, int peer, char *ip, size_t size) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int err = peer ? uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len)
                 : uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
  if (err != 0) return 0;
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, size);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  uv_ip4_name((struct sockaddr_in *)&ss, ip, size);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = (conn_t *)req->data;
  if (c->state != DIALING) return;  // closed meanwhile: the close callbacks tell the rest
  if (c->aborting || status != 0) {
    c->dial_err = c->aborting ? UV_ETIMEDOUT : status;
    close_side(&c->s[1], 0);
    return;
  }
  uv_tcp_nodelay(&c->s[1].tcp, 1);
  // A connection dialled for JavaScript alone (dialPiped) has no client side: its target side is piped.
  int piped = !c->s[0].live;
  c->state = piped ? PIPED : OPEN;
  if (piped) {
    c->js = 1;
    c->js_paused = 1;
  }
  char ip[64] = "";
  int port = name_of(&c->s[1].tcp, 0, ip, sizeof ip);
  emit(EV_CONNECTED, c, (double)port, 0, ip);
  // JavaScript may have closed it in the callback.
  if (c->state != OPEN) return;
  want_read(&c->s[0]);
  want_read(&c->s[1]);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status != 0) return;  // libuv already keeps the listener alive through EMFILE
  lsn_t *l = (lsn_t *)server->data;
  conn_t *c = conn_new();
  if (c == NULL) {
    // Out of memory or ids: take the connection and close it, as an over-full relay would. The
    // handle lives until its close callback.
    uv_tcp_t *scratch = malloc(sizeof *scratch);
    if (scratch == NULL) return;
    uv_tcp_init(loop, scratch);
    uv_accept(server, (uv_stream_t *)scratch);
    uv_close((uv_handle_t *)scratch, free_on_close);
    return;
  }
  side_t *s = &c->s[0];
  uv_tcp_init(loop, &s->tcp);
  s->tcp.data = s;
  s->live = 1;
  c->listener = l->id;
  if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0) {
    c->released = 1;
    close_side(s, 0);
    return;
  }
  uv_tcp_nodelay(&s->tcp, 1);
  char ip[64] = "";
  int port = name_of(&s->tcp, 1, ip, sizeof ip);
  napi_handle_scope scope;
  napi_open_handle_scope(lenv, &scope);
  napi_value argv[4];
  napi_create_double(lenv, (double)l->id, &argv[0]);
  napi_create_double(lenv, conn_id(c), &argv[1]);
  napi_create_string_utf8(lenv, ip, NAPI_AUTO_LENGTH, &argv[2]);
  napi_create_int32(lenv, port, &argv[3]);
  call(on_accept_ref, 4, argv);
  napi_close_handle_scope(lenv, scope);
}

// --- JavaScript API -------------------------------------------------------------------------

static void start_dial(conn_t *c, const struct sockaddr_storage *ss);

static int args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, "HOPWAY_LISTEN_ARG", "missing arguments");
    return 0;
  }
  return 1;
}

static conn_t *arg_conn(napi_env env, napi_value v) {
  double id;
  if (napi_get_value_double(env, v, &id) != napi_ok) return NULL;
  return conn_by_id(id);
}

static napi_value throw_uv(napi_env env, const char *what, int err) {
  char msg[200];
  snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(err));
  napi_throw_error(env, uv_err_name(err), msg);
  return NULL;
}

// listenStart(onAccept(listener, id, ip, port), onEvent(kind, id, a, b, text), handoverReads,
// readBuffer): once per process. readBuffer (L_READ_BYTES) is what every read goes into.
static napi_value listen_start(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv)) return NULL;
  if (loop != NULL) {
    napi_throw_error(env, "HOPWAY_LISTEN_STARTED", "native listeners already started");
    return NULL;
  }
  uint32_t reads;
  if (napi_get_value_uint32(env, argv[2], &reads) != napi_ok || reads == 0) {
    napi_throw_type_error(env, "HOPWAY_LISTEN_ARG", "listenStart: handoverReads must be a positive integer");
    return NULL;
  }
  handover_reads = reads;
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[3], &data, &len) != napi_ok || len != L_READ_BYTES) {
    napi_throw_type_error(env, "HOPWAY_LISTEN_ARG", "listenStart: readBuffer must be a Buffer of 256 KiB");
    return NULL;
  }
  lbuf = data;
  napi_create_reference(env, argv[3], 1, &lbuf_ref);
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    loop = NULL;
    napi_throw_error(env, "HOPWAY_LISTEN_LOOP", "no event loop");
    return NULL;
  }
  lenv = env;
  napi_create_reference(env, argv[0], 1, &on_accept_ref);
  napi_create_reference(env, argv[1], 1, &on_event_ref);
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &resource_ref);
  napi_create_string_utf8(env, "hopway-listener", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &actx);
  return undefined_value(env);
}

// Whether listenStart ran; throws when it did not.
static int started(napi_env env) {
  if (loop != NULL) return 1;
  napi_throw_error(env, "HOPWAY_LISTEN_NOT_STARTED", "listenStart first");
  return 0;
}

static int parse_addr(napi_env env, napi_value host_v, napi_value port_v, struct sockaddr_storage *ss) {
  char host[64];
  size_t hl;
  int32_t port;
  if (napi_get_value_string_utf8(env, host_v, host, sizeof host, &hl) != napi_ok ||
      napi_get_value_int32(env, port_v, &port) != napi_ok || port < 0 || port > 65535) {
    return UV_EINVAL;
  }
  memset(ss, 0, sizeof *ss);
  if (strchr(host, ':') != NULL) return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

// listen(ip, port, backlog) -> [id, port]; throws with the libuv error name as code.
static napi_value listen_on(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv) || !started(env)) return NULL;
  struct sockaddr_storage ss;
  int err = parse_addr(env, argv[0], argv[1], &ss);
  if (err != 0) return throw_uv(env, "listen address", err);
  int32_t backlog;
  if (napi_get_value_int32(env, argv[2], &backlog) != napi_ok) backlog = 511;
  lsn_t *l = calloc(1, sizeof *l);
  if (l == NULL) return throw_uv(env, "listener", UV_ENOMEM);
  uv_tcp_init(loop, &l->tcp);
  l->tcp.data = l;
  err = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
  if (err == 0) err = uv_listen((uv_stream_t *)&l->tcp, backlog, on_connection);
  if (err != 0) {
    uv_close((uv_handle_t *)&l->tcp, free_on_close);
    return throw_uv(env, "listen", err);
  }
  l->id = next_listener++;
  l->next = listeners;
  listeners = l;
  char ip[64] = "";
  double vals[2] = {(double)l->id, (double)name_of(&l->tcp, 0, ip, sizeof ip)};
  return numbers(env, vals, 2);
}

// unlisten(id): stops accepting; connections already accepted are not touched.
static napi_value unlisten(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  uint32_t id;
  if (napi_get_value_uint32(env, argv[0], &id) != napi_ok) return boolean_value(env, 0);
  for (lsn_t **p = &listeners; *p != NULL; p = &(*p)->next) {
    if ((*p)->id != id) continue;
    lsn_t *l = *p;
    *p = l->next;
    uv_close((uv_handle_t *)&l->tcp, free_on_close);
    return boolean_value(env, 1);
  }
  return boolean_value(env, 0);
}

// dial(id, ip, port): connects the held connection's target side. False when it is not held.
static napi_value dial(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  if (c == NULL || c->state != HELD || c->s[1].live) return boolean_value(env, 0);
  struct sockaddr_storage ss;
  int err = parse_addr(env, argv[1], argv[2], &ss);
  if (err != 0) return throw_uv(env, "dial address", err);
  start_dial(c, &ss);
  return boolean_value(env, 1);
}

// dialPiped(ip, port) -> id: a connection of its own to ip:port whose bytes JavaScript reads and
// writes once it is up (`connected`, then the pipe_* calls), as dial's are for a held client.
static napi_value dial_piped(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv) || !started(env)) return NULL;
  struct sockaddr_storage ss;
  int err = parse_addr(env, argv[0], argv[1], &ss);
  if (err != 0) return throw_uv(env, "dial address", err);
  conn_t *c = conn_new();
  if (c == NULL) return throw_uv(env, "dial", UV_ENOMEM);
  c->state = HELD;
  start_dial(c, &ss);
  napi_value v;
  napi_create_double(env, conn_id(c), &v);
  return v;
}

static void start_dial(conn_t *c, const struct sockaddr_storage *ss) {
  int err;
  side_t *s = &c->s[1];
  uv_tcp_init(loop, &s->tcp);
  s->tcp.data = s;
  s->live = 1;
  c->aborting = 0;
  c->state = DIALING;
  c->creq.data = c;
  err = uv_tcp_connect(&c->creq, &s->tcp, (const struct sockaddr *)ss, on_connect);
  if (err != 0) {
    // Reported like a failed connect, once the handle has closed.
    c->dial_err = err;
    close_side(s, 0);
  }
}

// abortDial(id): a dial past its deadline; reported as a failed dial (ETIMEDOUT).
static napi_value abort_dial(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  if (c == NULL || c->state != DIALING || c->aborting) return boolean_value(env, 0);
  c->aborting = 1;
  c->dial_err = UV_ETIMEDOUT;
  close_side(&c->s[1], 0);
  return boolean_value(env, 1);
}

// close(id, reset): ends the connection; `ended` follows (true), except for a dialPiped connection
// between dials (2: it is gone at once). A held client is refused: what it sent
// so far is read and dropped first, so that it sees a FIN rather than a reset.
static napi_value close_conn(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  bool reset = false;
  napi_get_value_bool(env, argv[1], &reset);
  if (c == NULL || c->state == CLOSING || c->close_asked) return boolean_value(env, 0);
  if (!c->s[0].live && !c->s[1].live && c->handles == 0) {
    // A dialPiped connection between dials: nothing to close, and no `ended` follows (2).
    conn_free(c);
    napi_value two;
    napi_create_int32(env, 2, &two);
    return two;
  }
  if (c->on_thread) {
    double b[2];
    if (!splice_take_back(env, c->tid, b)) {
      // Its end is reported already: closed when that report arrives (listen_thread_ended).
      c->close_asked = 1;
      c->reset_asked = reset;
      return boolean_value(env, 1);
    }
    c->on_thread = 0;
    c->bytes[0] += (uint64_t)b[0];
    c->bytes[1] += (uint64_t)b[1];
  }
  if (!reset && (c->state == HELD || c->state == DIALING) && c->s[0].live) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->s[0].tcp, &fd) == 0) {
      for (int k = 0; k < 256; k++) {
        if (recv(fd, dropbuf, sizeof dropbuf, MSG_DONTWAIT) <= 0) break;
      }
    }
  }
  finish(c, reset ? UV_ECONNRESET : 0);
  return boolean_value(env, 1);
}

// release(id) -> fd: a held connection leaves this module as a descriptor of its own (a dup) for
// a net.Socket; no event follows. Undefined when it is not held.
static napi_value release(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  if (c == NULL || c->state != HELD || !c->s[0].live) return undefined_value(env);
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->s[0].tcp, &fd) != 0) return undefined_value(env);
  int copy = dup(fd);
  if (copy < 0) return throw_uv(env, "dup", uv_translate_sys_error(errno));
  c->released = 1;
  c->state = CLOSING;
  close_side(&c->s[0], 0);
  napi_value v;
  napi_create_int32(env, copy, &v);
  return v;
}

// pipe(id): a held connection's client side is read and written by JavaScript from now on
// (EV_DATA, EV_EOF, EV_DRAIN; pipeWrite, pipeEnd, pipeRead), for a tunnel whose other end is a
// relay link's stream. Reading starts with pipeRead. False when it is not held.
static napi_value pipe_conn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  if (c == NULL || c->state != HELD || !c->s[0].live || c->s[1].live) return boolean_value(env, 0);
  c->state = PIPED;
  c->js = 0;
  c->js_paused = 1;
  return boolean_value(env, 1);
}

// pipeRead(id, on): whether JavaScript wants the piped side's reads now.
static napi_value pipe_read(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  bool on = false;
  napi_get_value_bool(env, argv[1], &on);
  if (c == NULL || c->state != PIPED) return boolean_value(env, 0);
  c->js_paused = !on;
  want_read(&c->s[c->js]);
  return boolean_value(env, 1);
}

typedef struct {
  uv_write_t req;  // first: the callback's pointer is the struct's
  conn_t *c;
  size_t len;
  char data[];
} pipe_write_t;

static void on_pipe_write(uv_write_t *req, int status) {
  pipe_write_t *w = (pipe_write_t *)req;
  conn_t *c = w->c;
  side_t *s = &c->s[c->js];
  s->plen -= w->len;
  waiting -= w->len;
  free(w);
  if (c->state != PIPED) return;
  if (status != 0) {
    finish(c, status);
    return;
  }
  if (s->plen == 0) emit(EV_DRAIN, c, 0, 0, NULL);
}

// pipeWrite(id, buffer) -> bytes still waiting to be written (0: the kernel took it all now), or
// -1 when the piped side takes no more (closed, or ended). What the kernel does not take at once
// is copied and written in order: the caller's buffer is free again when this returns, and
// EV_DRAIN tells when nothing waits.
static napi_value pipe_write(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  double out = -1;
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "HOPWAY_LISTEN_ARG", "pipeWrite: a Buffer");
    return NULL;
  }
  if (c == NULL || c->state != PIPED) goto done;
  side_t *s = &c->s[c->js];
  if (!s->live || s->fin_asked) goto done;
  c->moved = 1;
  c->bytes[1 - c->js] += len;
  piped_written += len;
  size_t at = 0;
  if (s->plen == 0 && len > 0) {
    uv_buf_t b = uv_buf_init(data, (unsigned int)len);
    int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
      finish(c, n);
      goto done;
    }
    if (n > 0) at = (size_t)n;
  }
  if (at < len) {
    size_t rest = len - at;
    pipe_write_t *w = malloc(sizeof *w + rest);
    if (w == NULL) {
      finish(c, UV_ENOMEM);
      goto done;
    }
    memcpy(w->data, (char *)data + at, rest);
    w->c = c;
    w->len = rest;
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)rest);
    if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_pipe_write) != 0) {
      free(w);
      finish(c, UV_EPIPE);
      goto done;
    }
    s->plen += rest;
    waiting += rest;
    piped_copied += rest;
  }
  out = (double)s->plen;
done:;
  napi_value v;
  napi_create_double(env, out, &v);
  return v;
}

// pipeEnd(id): our FIN to the piped side, once what was written before it is out.
static napi_value pipe_end(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  if (c == NULL || c->state != PIPED) return boolean_value(env, 0);
  side_t *s = &c->s[c->js];
  if (!s->live || s->fin_asked) return boolean_value(env, 0);
  s->fin_asked = 1;
  // Its FIN was read and everything written is in the kernel: a close sends our FIN at once
  // and ends the connection (as in read_cb). Otherwise libuv sends it after the queued writes.
  if (s->eof && s->plen == 0 && s->tcp.write_queue_size == 0) {
    s->shut = 1;
    finish(c, 0);
  } else {
    send_fin(s);
  }
  return boolean_value(env, 1);
}

// counts(id) -> [up, down, on the thread]: bytes each way so far, and whether the splice thread
// carries it now (1) or not (0); undefined once it ended.
static napi_value counts(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  if (c == NULL || c->released) return undefined_value(env);
  double b[2] = {0, 0};
  if (c->on_thread && !splice_counts(c->tid, b, NULL)) b[0] = b[1] = 0;
  double vals[3] = {(double)c->bytes[0] + b[0], (double)c->bytes[1] + b[1], c->on_thread};
  return numbers(env, vals, 3);
}

// movedSince(id): whether bytes moved since the last call, which clears it (the idle sweep).
static napi_value moved_since(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  conn_t *c = arg_conn(env, argv[0]);
  if (c == NULL) return boolean_value(env, 0);
  int m = c->moved;
  c->moved = 0;
  if (c->on_thread) {
    double b[2];
    int tm = 0;
    if (splice_counts(c->tid, b, &tm) && tm) m = 1;
  }
  return boolean_value(env, m);
}

// listenStats() -> [connections, listeners, bytes waiting to be written, bytes written to piped
// sides, of those copied because the kernel did not take them at once]
static napi_value listen_stats(napi_env env, napi_callback_info info) {
  (void)info;
  uint32_t nl = 0;
  for (lsn_t *l = listeners; l != NULL; l = l->next) nl++;
  double vals[5] = {nconns, nl, (double)waiting, (double)piped_written, (double)piped_copied};
  return numbers(env, vals, 5);
}

// handoverReadsForTest(n) -> the previous value: tests keep connections on the loop with a large n.
static napi_value handover_reads_for_test(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  uint32_t before = handover_reads, n;
  if (napi_get_value_uint32(env, argv[0], &n) == napi_ok && n > 0) handover_reads = n;
  napi_value v;
  napi_create_uint32(env, before, &v);
  return v;
}

// generationsForTest(n): every free slot as if reused n more times (tests drive the wrap of ids).
static napi_value generations_for_test(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  double n;
  if (napi_get_value_double(env, argv[0], &n) != napi_ok || !(n >= 0) || n > 9007199254740991.0) {
    napi_throw_type_error(env, "HOPWAY_LISTEN_ARG", "generationsForTest(n): a non-negative integer");
    return NULL;
  }
  for (uint32_t k = 0; k < ncfree; k++) cgens[cfree[k]] = gen_after(cgens[cfree[k]], (uint64_t)n);
  return undefined_value(env);
}

void listen_define(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenStart", NULL, listen_start, NULL, NULL, NULL, napi_default, NULL},
      {"listen", NULL, listen_on, NULL, NULL, NULL, napi_default, NULL},
      {"unlisten", NULL, unlisten, NULL, NULL, NULL, napi_default, NULL},
      {"dial", NULL, dial, NULL, NULL, NULL, napi_default, NULL},
      {"dialPiped", NULL, dial_piped, NULL, NULL, NULL, napi_default, NULL},
      {"pipe", NULL, pipe_conn, NULL, NULL, NULL, napi_default, NULL},
      {"pipeRead", NULL, pipe_read, NULL, NULL, NULL, napi_default, NULL},
      {"pipeWrite", NULL, pipe_write, NULL, NULL, NULL, napi_default, NULL},
      {"pipeEnd", NULL, pipe_end, NULL, NULL, NULL, napi_default, NULL},
      {"abortDial", NULL, abort_dial, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_conn, NULL, NULL, NULL, napi_default, NULL},
      {"release", NULL, release, NULL, NULL, NULL, napi_default, NULL},
      {"counts", NULL, counts, NULL, NULL, NULL, napi_default, NULL},
      {"movedSince", NULL, moved_since, NULL, NULL, NULL, napi_default, NULL},
      {"listenStats", NULL, listen_stats, NULL, NULL, NULL, napi_default, NULL},
      {"handoverReadsForTest", NULL, handover_reads_for_test, NULL, NULL, NULL, napi_default, NULL},
      {"generationsForTest", NULL, generations_for_test, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
