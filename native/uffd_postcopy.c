/*
 * Post-copy page serving (DESIGN.md, "A migration": post-copy; issue 4).
 *
 * The destination's memory is registered with userfaultfd in MISSING mode and
 * the pages still at the source are dropped; the guest runs at once. Two
 * native threads serve it, so no JavaScript thread is ever on the path of a
 * fault (a JS thread that touched missing memory while serving would wait on
 * itself):
 *
 *   - the fault thread reads fault events and asks the source for the chunk
 *     that holds the page (REQ), once per chunk;
 *   - the reader thread reads chunks from the source's socket, pushed in
 *     address order or sent on demand, and copies them in (UFFDIO_COPY),
 *     which wakes whoever waits on them;
 *   - on a sealed link, a receiver thread of that link's own reads each
 *     record and opens it, a few records ahead of the reader, so that
 *     receiving and decrypting one record overlap placing the one before;
 *     the reader sees a record only once its tag has been checked.
 *
 * The socket is handed over by JavaScript (a connection from the source,
 * authenticated before it got here) and owned here from then on. With keys
 * (a node with TLS) every frame in each direction travels in a sealed record
 * (page_seal.h): the reader opens each record and checks it before it acts
 * on any byte of it; a record that fails is a broken link. When it breaks, faulting threads
 * simply wait; a new socket can be attached at any time and the source is
 * told which chunks are already here (HELLO) and which are wanted (REQ).
 * When the source is gone for good, JavaScript fails the session: waiting
 * threads are woken with zero pages *after* the guest has been told to stop
 * (it may never act on them), and every later fault is answered the same way
 * until its worker is gone. The uffd is closed only when every chunk is here
 * or the session failed: closing it earlier would zero-fill silently.
 *
 * Wire format on the page channel (little-endian, 16-byte header
 * kind, a, b, c — docs/cluster.md):
 *   dest -> source  HELLO  a=chunk_bytes b=chunks c=bitmap bytes, then a bitmap (bit set: here)
 *                   REQ    a=chunk
 *                   DONE   every chunk is here: the source may drop its copy
 *                   ABORT  the process ended here: stop serving
 *   source -> dest  PAGES  a=first chunk b=count c=flags (1: on demand), then count chunks
 *                   ZERO   a=first chunk b=count (chunks that are all zero)
 * Sealed, frames travel inside records (u32 length, ciphertext, 16-byte tag:
 * page_seal.h); a frame never spans two records.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include "common.h"
#include "page_seal.h"
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { K_HELLO = 1, K_REQ = 2, K_DONE = 3, K_ABORT = 4, K_PAGES = 16, K_ZERO = 17 };
enum { MISSING = 0, REQUESTED = 1, PRESENT = 2 };
enum { EV_DOWN = 1, EV_COMPLETE = 2 };
#define HEAD_BYTES 16
/* Chunks in one PAGES frame at most (1 MiB of 64 KiB chunks). */
#define CHUNKS_PER_FRAME_MAX 16
#define FLAG_DEMAND 1u
/* Where a sealed record's plaintext starts in the read buffer: a PAGES frame's payload (after its 16-byte header) then starts on a page. */
#define RECORD_AT (PAGE_BYTES - HEAD_BYTES)

/*
 * Opened records a sealed link's receiver may hold ahead of the reader: one
 * being placed, one ready, one being received and opened. Each slot is a
 * record's worth of memory (about 1 MiB).
 */
#define RECORD_SLOTS 3

/* One record's buffer: plaintext at buf + RECORD_AT once opened, `len` bytes. */
typedef struct {
  uint8_t *buf;
  uint32_t len;
} slot_t;

/*
 * One connection to the source: its socket and, when sealed, its two
 * directions. Sealed, the link's receiver thread alone opens records
 * (`open`) into `slots`, handing them over in order under `rlock`; the
 * reader takes them (`rec_*`). Writers seal under `wlock` (`seal`, `wbuf`).
 * Freed by the reader, under `wlock`, once the connection is done and its
 * receiver joined.
 */
typedef struct {
  int fd;
  int sealed;
  sealer_t open;
  sealer_t seal;
  /* The record being read: plaintext in the slot of number `released`, `rec_pos` of `rec_len` bytes taken; rec_held: that slot is the reader's. */
  uint32_t rec_len, rec_pos;
  int rec_held;
  /* Records opened (`opened`) and given back by the reader (`released`), counted from 0; slot = count % RECORD_SLOTS. */
  slot_t slots[RECORD_SLOTS];
  uint64_t opened, released;
  /* rx_end: the receiver stopped (the link broke, or a record failed its check); rx_stop: the reader asks it to. */
  int rx_end, rx_stop, rx_started;
  pthread_mutex_t rlock;
  pthread_cond_t rready, rfree;
  pthread_t rx_thread;
  /* A frame being written: room for the record head, the largest frame (HELLO) and the tag. */
  uint8_t *wbuf;
  size_t wbuf_bytes;
  /* The demand channel (preempt): answers to faults only, read by a thread of its own into `rbuf` when plain. */
  int demand;
  uint8_t *rbuf;
} link_t;

typedef struct {
  int uffd;
  int stop;
  uint8_t *base;
  uint64_t registered_bytes;
  /* Memory below this comes from the source; above it (grown here) is zero. */
  uint64_t remote_bytes;
  uint32_t chunk_bytes;
  uint32_t chunks;
  /* State of each chunk, `present`, `link`, `gen` and the flags: under `lock`. */
  uint8_t *state;
  uint32_t present;
  link_t *link;
  /* The demand channel, if one is attached: REQs go there, and its answers never queue behind the push. */
  link_t *demand;
  pthread_t demand_thread;
  int demand_running;
  uint32_t gen;
  int failed;
  int complete;
  int closing;
  pthread_mutex_t lock;
  pthread_cond_t attached;
  /* Held while writing to the socket and while closing one (so a writer never sees a closed fd or a freed link). */
  pthread_mutex_t wlock;
  pthread_t fault_thread;
  pthread_t read_thread;
  int threads;
  /* The reader's buffer on a plain link: a PAGES frame's payload (`buf_bytes`). */
  uint8_t *buf;
  size_t buf_bytes;
  napi_threadsafe_function events;
  /* Dropped pages moved aside (move_aside), freed once the guest runs (postcopySettle) or at the end: under `lock`. */
  struct aside *asides;
  /* Statistics (under `lock`). */
  uint64_t faults, demand_chunks, pushed_chunks, demand_served, zero_chunks, bytes_in, attaches, preempt_chunks;
  uint64_t t_open_ns, t_complete_ns;
} postcopy_t;

static void free_asides(struct aside *a);

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void call_js(napi_env env, napi_value js_callback, void *context, void *data) {
  (void)context;
  if (env == NULL || js_callback == NULL) return;
  napi_value undefined, arg;
  napi_get_undefined(env, &undefined);
  napi_create_uint32(env, (uint32_t)(uintptr_t)data, &arg);
  napi_call_function(env, undefined, js_callback, 1, &arg, NULL);
}

static void emit(postcopy_t *m, int event) {
  if (m->events != NULL) napi_call_threadsafe_function(m->events, (void *)(uintptr_t)event, napi_tsfn_nonblocking);
}

static void wake_range(postcopy_t *m, uint64_t off, uint64_t len) {
  struct uffdio_range r = {.start = (uintptr_t)m->base + off, .len = len};
  ioctl(m->uffd, UFFDIO_WAKE, &r);
}

/*
 * Fills [off, off+len) with `src` (or zeros when src is NULL) and wakes its
 * waiters. Pages already there are kept. Returns 0, or -1 with errno.
 */
static int place(postcopy_t *m, uint64_t off, const uint8_t *src, uint64_t len) {
  uint64_t done = 0;
  while (done < len) {
    int64_t moved;
    int rc;
    if (src == NULL) {
      struct uffdio_zeropage z = {.range = {.start = (uintptr_t)m->base + off + done, .len = len - done}, .mode = 0};
      rc = ioctl(m->uffd, UFFDIO_ZEROPAGE, &z);
      moved = z.zeropage;
    } else {
      struct uffdio_copy c = {.dst = (uintptr_t)m->base + off + done, .src = (uintptr_t)src + done, .len = len - done, .mode = 0};
      rc = ioctl(m->uffd, UFFDIO_COPY, &c);
      moved = c.copy;
    }
    if (rc == 0) return 0;
    if (moved > 0) {
      done += (uint64_t)moved;
      continue;
    }
    if (errno == EEXIST) {
      wake_range(m, off + done, PAGE_BYTES);
      done += PAGE_BYTES;
      continue;
    }
    if (errno == EAGAIN) continue;
    return -1;
  }
  return 0;
}

static int write_all(int fd, const void *data, size_t len) {
  const uint8_t *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_all(int fd, void *data, size_t len) {
  uint8_t *p = data;
  while (len > 0) {
    ssize_t n = recv(fd, p, len, 0);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void head(uint8_t out[HEAD_BYTES], uint32_t kind, uint32_t a, uint32_t b, uint32_t c) {
  uint32_t words[4] = {htole32(kind), htole32(a), htole32(b), htole32(c)};
  memcpy(out, words, HEAD_BYTES);
}

/*
 * Writes one frame on `l` (none: dropped); holds `wlock`. Sealed, the frame
 * is one record. A failed write shuts the socket down: the reader then sees
 * it break.
 */
static void write_frame(link_t *l, uint32_t kind, uint32_t a, uint32_t b, const uint8_t *tail, size_t tail_len) {
  if (l == NULL) return;
  /* HELLO, the largest frame, was sized into wbuf when the link was made. */
  if (SEAL_HEAD_BYTES + HEAD_BYTES + tail_len + SEAL_TAG_BYTES > l->wbuf_bytes) {
    shutdown(l->fd, SHUT_RDWR);
    return;
  }
  uint8_t *frame = l->wbuf + SEAL_HEAD_BYTES;
  head(frame, kind, a, b, (uint32_t)tail_len);
  if (tail_len > 0) memcpy(frame + HEAD_BYTES, tail, tail_len);
  size_t len = HEAD_BYTES + tail_len;
  int rc;
  if (l->sealed) rc = seal_record(&l->seal, l->wbuf, (uint32_t)len) == 0 ? write_all(l->fd, l->wbuf, SEAL_HEAD_BYTES + len + SEAL_TAG_BYTES) : -1;
  else rc = write_all(l->fd, frame, len);
  if (rc != 0) shutdown(l->fd, SHUT_RDWR);
}

/* Sends one frame on the current link, if any. */
static void send_frame(postcopy_t *m, uint32_t kind, uint32_t a) {
  pthread_mutex_lock(&m->wlock);
  pthread_mutex_lock(&m->lock);
  link_t *l = m->link;
  pthread_mutex_unlock(&m->lock);
  write_frame(l, kind, a, 0, NULL, 0);
  pthread_mutex_unlock(&m->wlock);
}

/* Asks for chunk `c` on the demand channel if one is attached, else on the page channel. */
static void send_req(postcopy_t *m, uint32_t c) {
  pthread_mutex_lock(&m->wlock);
  pthread_mutex_lock(&m->lock);
  link_t *l = m->demand != NULL ? m->demand : m->link;
  pthread_mutex_unlock(&m->lock);
  write_frame(l, K_REQ, c, 0, NULL, 0);
  pthread_mutex_unlock(&m->wlock);
}

static void link_free(link_t *l) {
  if (l->fd >= 0) close(l->fd);
  sealer_free(&l->open);
  sealer_free(&l->seal);
  for (int i = 0; i < RECORD_SLOTS; i += 1) free(l->slots[i].buf);
  if (l->sealed) {
    pthread_mutex_destroy(&l->rlock);
    pthread_cond_destroy(&l->rready);
    pthread_cond_destroy(&l->rfree);
  }
  free(l->wbuf);
  free(l->rbuf);
  free(l);
}

/* Reads and opens the next sealed record into `slot`; -1 when the link broke or the record is not authentic. */
static int open_next(link_t *l, slot_t *slot) {
  uint8_t h[SEAL_HEAD_BYTES];
  if (read_all(l->fd, h, SEAL_HEAD_BYTES) != 0) return -1;
  uint32_t len;
  memcpy(&len, h, SEAL_HEAD_BYTES);
  len = le32toh(len);
  /* Checked from the head alone, before anything is read into the buffer. */
  if (len == 0 || len > SEAL_RECORD_BYTES_MAX) return -1;
  uint8_t *body = slot->buf + RECORD_AT;
  if (read_all(l->fd, body, (size_t)len + SEAL_TAG_BYTES) != 0 || open_record(&l->open, h, body, len) != 0) return -1;
  slot->len = len;
  return 0;
}

/* A sealed link's receiver: opens records into free slots, in order, until the link breaks, a record fails, or the reader stops it. */
static void *receive_loop(void *arg) {
  link_t *l = arg;
  for (;;) {
    pthread_mutex_lock(&l->rlock);
    while (l->opened - l->released == RECORD_SLOTS && !l->rx_stop) pthread_cond_wait(&l->rfree, &l->rlock);
    int stop = l->rx_stop;
    slot_t *slot = &l->slots[l->opened % RECORD_SLOTS];
    pthread_mutex_unlock(&l->rlock);
    /* The slot is this thread's alone until `opened` counts it. */
    if (stop || open_next(l, slot) != 0) break;
    pthread_mutex_lock(&l->rlock);
    l->opened += 1;
    pthread_cond_signal(&l->rready);
    pthread_mutex_unlock(&l->rlock);
  }
  pthread_mutex_lock(&l->rlock);
  l->rx_end = 1;
  pthread_cond_signal(&l->rready);
  pthread_mutex_unlock(&l->rlock);
  return NULL;
}

/* Stops a sealed link's receiver (the socket is shut down so a blocked read returns) and waits for it. */
static void receiver_stop(link_t *l) {
  if (!l->rx_started) return;
  pthread_mutex_lock(&l->rlock);
  l->rx_stop = 1;
  pthread_cond_signal(&l->rfree);
  pthread_mutex_unlock(&l->rlock);
  shutdown(l->fd, SHUT_RDWR);
  pthread_join(l->rx_thread, NULL);
  l->rx_started = 0;
}

/* Gives the record being read back to the receiver and waits for the next opened one; -1 once the receiver stopped with none left. */
static int next_record(link_t *l) {
  pthread_mutex_lock(&l->rlock);
  if (l->rec_held) {
    l->released += 1;
    l->rec_held = 0;
    pthread_cond_signal(&l->rfree);
  }
  while (l->opened == l->released && !l->rx_end) pthread_cond_wait(&l->rready, &l->rlock);
  int ok = l->opened > l->released;
  if (ok) {
    l->rec_held = 1;
    l->rec_len = l->slots[l->released % RECORD_SLOTS].len;
    l->rec_pos = 0;
  }
  pthread_mutex_unlock(&l->rlock);
  return ok ? 0 : -1;
}

/*
 * The link's next `len` bytes, contiguous, valid until the next call; NULL
 * when the link broke, a record was not authentic, or (sealed) a frame
 * does not end inside the record it starts in.
 */
static const uint8_t *take(postcopy_t *m, link_t *l, size_t len) {
  if (!l->sealed) {
    uint8_t *buf = l->rbuf != NULL ? l->rbuf : m->buf;
    if (len > m->buf_bytes || read_all(l->fd, buf, len) != 0) return NULL;
    return buf;
  }
  if ((!l->rec_held || l->rec_pos == l->rec_len) && next_record(l) != 0) return NULL;
  if (l->rec_len - l->rec_pos < len) return NULL;
  const uint8_t *p = l->slots[l->released % RECORD_SLOTS].buf + RECORD_AT + l->rec_pos;
  l->rec_pos += (uint32_t)len;
  return p;
}

/* Marks chunks [first, first+count) here; the last one in completes the session. Under `lock`. */
static int mark_present(postcopy_t *m, uint32_t first, uint32_t count) {
  for (uint32_t c = first; c < first + count; c += 1) {
    if (m->state[c] == PRESENT) continue;
    m->state[c] = PRESENT;
    m->present += 1;
  }
  if (m->present == m->chunks && !m->complete) {
    m->complete = 1;
    m->t_complete_ns = now_ns();
    return 1;
  }
  return 0;
}

static void *fault_loop(void *arg) {
  postcopy_t *m = arg;
  struct pollfd fds[2] = {{.fd = m->uffd, .events = POLLIN}, {.fd = m->stop, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    struct uffd_msg msg;
    ssize_t n = read(m->uffd, &msg, sizeof msg);
    if (n != (ssize_t)sizeof msg) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;
    }
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    uint64_t off = (msg.arg.pagefault.address - (uintptr_t)m->base) & ~((uint64_t)m->chunk_bytes - 1);
    pthread_mutex_lock(&m->lock);
    m->faults += 1;
    if (m->failed || off >= m->remote_bytes) {
      /* Grown here (zero by definition), or failed (the guest is being stopped and never acts on it). */
      pthread_mutex_unlock(&m->lock);
      place(m, off, NULL, m->chunk_bytes);
      continue;
    }
    uint32_t c = (uint32_t)(off / m->chunk_bytes);
    int ask = 0;
    if (m->state[c] == PRESENT) {
      pthread_mutex_unlock(&m->lock);
      wake_range(m, off, m->chunk_bytes);
      continue;
    }
    if (m->state[c] == MISSING) {
      m->state[c] = REQUESTED;
      m->demand_chunks += 1;
      ask = 1;
    }
    pthread_mutex_unlock(&m->lock);
    if (ask) send_req(m, c);
  }
  return NULL;
}

/* Reads and applies one frame; -1 when the link broke or the peer broke the protocol. */
static int read_frame(postcopy_t *m, link_t *l) {
  const uint8_t *h = take(m, l, HEAD_BYTES);
  if (h == NULL) return -1;
  uint32_t w[4];
  memcpy(w, h, HEAD_BYTES);
  uint32_t kind = le32toh(w[0]), first = le32toh(w[1]), count = le32toh(w[2]), flags = le32toh(w[3]);
  if ((kind != K_PAGES && kind != K_ZERO) || count == 0 || first >= m->chunks || count > m->chunks - first) return -1;
  if (kind == K_PAGES && count > CHUNKS_PER_FRAME_MAX) return -1;
  uint64_t bytes = (uint64_t)count * m->chunk_bytes;
  const uint8_t *data = NULL;
  if (kind == K_PAGES && (data = take(m, l, bytes)) == NULL) return -1;
  /* Place runs of chunks not yet here; a concurrent copy of the same chunk is harmless (EEXIST). */
  for (uint32_t i = 0; i < count;) {
    pthread_mutex_lock(&m->lock);
    if (m->failed) {
      pthread_mutex_unlock(&m->lock);
      return 0;
    }
    while (i < count && m->state[first + i] == PRESENT) i += 1;
    uint32_t j = i;
    while (j < count && m->state[first + j] != PRESENT) j += 1;
    pthread_mutex_unlock(&m->lock);
    if (i == count) break;
    if (place(m, (uint64_t)(first + i) * m->chunk_bytes, kind == K_PAGES ? data + (uint64_t)i * m->chunk_bytes : NULL, (uint64_t)(j - i) * m->chunk_bytes) != 0) return -1;
    pthread_mutex_lock(&m->lock);
    if (kind == K_ZERO) m->zero_chunks += j - i;
    else if (flags & FLAG_DEMAND) m->demand_served += j - i;
    else m->pushed_chunks += j - i;
    if (l->demand && kind == K_PAGES) m->preempt_chunks += j - i;
    int done = mark_present(m, first + i, j - i);
    pthread_mutex_unlock(&m->lock);
    if (done) {
      send_frame(m, K_DONE, 0);
      emit(m, EV_COMPLETE);
    }
    i = j;
  }
  pthread_mutex_lock(&m->lock);
  m->bytes_in += HEAD_BYTES + (kind == K_PAGES ? bytes : 0);
  pthread_mutex_unlock(&m->lock);
  return 0;
}

static void *read_loop(void *arg) {
  postcopy_t *m = arg;
  for (;;) {
    pthread_mutex_lock(&m->lock);
    while (m->link == NULL && !m->closing) pthread_cond_wait(&m->attached, &m->lock);
    if (m->closing) {
      pthread_mutex_unlock(&m->lock);
      return NULL;
    }
    link_t *l = m->link;
    uint32_t gen = m->gen;
    pthread_mutex_unlock(&m->lock);
    if (l->sealed && !l->rx_started) {
      if (pthread_create(&l->rx_thread, NULL, receive_loop, l) == 0) l->rx_started = 1;
      else shutdown(l->fd, SHUT_RDWR); /* as if the link broke: JavaScript gets EV_DOWN and the source reconnects */
    }
    if (!l->sealed || l->rx_started) while (read_frame(m, l) == 0) {}
    receiver_stop(l);
    pthread_mutex_lock(&m->lock);
    int down = 0;
    if (m->gen == gen) {
      m->link = NULL;
      down = !m->complete && !m->failed && !m->closing;
    }
    pthread_mutex_unlock(&m->lock);
    /* No writer holds it past here: they take the link under wlock, and it is no longer m->link. */
    pthread_mutex_lock(&m->wlock);
    link_free(l);
    pthread_mutex_unlock(&m->wlock);
    if (down) emit(m, EV_DOWN);
  }
}

/*
 * The demand channel's reader: places its answers until it breaks or is
 * replaced. Faults asked on it and not answered are then asked again on
 * the page channel (which answers every REQ), so a lost demand channel
 * costs time, never a page.
 */
static void *demand_loop(void *arg) {
  postcopy_t *m = arg;
  pthread_mutex_lock(&m->lock);
  link_t *l = m->demand;
  pthread_mutex_unlock(&m->lock);
  if (l == NULL) return NULL;
  if (l->sealed && !l->rx_started) {
    if (pthread_create(&l->rx_thread, NULL, receive_loop, l) == 0) l->rx_started = 1;
    else shutdown(l->fd, SHUT_RDWR);
  }
  if (!l->sealed || l->rx_started) while (read_frame(m, l) == 0) {}
  receiver_stop(l);
  pthread_mutex_lock(&m->wlock);
  pthread_mutex_lock(&m->lock);
  if (m->demand == l) m->demand = NULL;
  int again = !m->closing && !m->failed && !m->complete;
  link_t *main_link = m->link;
  uint32_t *wanted = again ? malloc(sizeof(uint32_t) * (m->chunks > 0 ? m->chunks : 1)) : NULL;
  uint32_t n = 0;
  for (uint32_t c = 0; wanted != NULL && c < m->chunks; c += 1)
    if (m->state[c] == REQUESTED) wanted[n++] = c;
  pthread_mutex_unlock(&m->lock);
  /* Under wlock: no writer holds it (they take it under wlock, and it is no longer m->demand). */
  link_free(l);
  for (uint32_t i = 0; i < n; i += 1) write_frame(main_link, K_REQ, wanted[i], 0, NULL, 0);
  pthread_mutex_unlock(&m->wlock);
  free(wanted);
  return NULL;
}

/* Stops the demand channel's reader, if any, and waits for it. */
static void demand_stop(postcopy_t *m) {
  pthread_mutex_lock(&m->lock);
  int running = m->demand_running;
  if (m->demand != NULL) shutdown(m->demand->fd, SHUT_RDWR);
  m->demand_running = 0;
  pthread_mutex_unlock(&m->lock);
  if (running) pthread_join(m->demand_thread, NULL);
}

static void stop_threads(postcopy_t *m) {
  pthread_mutex_lock(&m->lock);
  m->closing = 1;
  if (m->link != NULL) shutdown(m->link->fd, SHUT_RDWR);
  pthread_cond_broadcast(&m->attached);
  pthread_mutex_unlock(&m->lock);
  demand_stop(m);
  if (m->threads) {
    uint64_t one = 1;
    if (write(m->stop, &one, sizeof one) < 0) { /* the fault thread also stops when the uffd closes */ }
    pthread_join(m->fault_thread, NULL);
    pthread_join(m->read_thread, NULL);
    m->threads = 0;
  }
  free_asides(m->asides);
  m->asides = NULL;
  /* The reader has returned: a link still here was never taken up by it. */
  if (m->link != NULL) link_free(m->link);
  m->link = NULL;
  if (m->uffd >= 0) close(m->uffd);
  if (m->stop >= 0) close(m->stop);
  m->uffd = -1;
  m->stop = -1;
  if (m->events != NULL) {
    napi_release_threadsafe_function(m->events, napi_tsfn_release);
    m->events = NULL;
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  postcopy_t *m = data;
  if (m->uffd >= 0 || m->threads) stop_threads(m);
  pthread_mutex_destroy(&m->lock);
  pthread_mutex_destroy(&m->wlock);
  pthread_cond_destroy(&m->attached);
  free(m->state);
  free(m->buf);
  free(m);
}

static postcopy_t *handle_of(napi_env env, napi_value value) {
  postcopy_t *m = NULL;
  if (napi_get_value_external(env, value, (void **)&m) != napi_ok || m == NULL || m->uffd < 0) return NULL;
  return m;
}

/* The open session of a call whose one argument is its handle; NULL, with a TypeError thrown naming `usage`, otherwise. */
static postcopy_t *only_handle_arg(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  postcopy_t *m = argc >= 1 ? handle_of(env, argv[0]) : NULL;
  if (m == NULL) napi_throw_type_error(env, "ERR_UFFD_ARGS", usage);
  return m;
}

static bool number_arg(napi_env env, napi_value v, double *out) { return napi_get_value_double(env, v, out) == napi_ok; }

/* Reads up to `n` arguments into `argv` (those not given are undefined); the open session the first names, or NULL when fewer than `min` were given or it names none. */
static postcopy_t *session_args(napi_env env, napi_callback_info info, size_t n, size_t min, napi_value *argv) {
  size_t argc = n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return argc >= min ? handle_of(env, argv[0]) : NULL;
}

/*
 * postcopyOpen(view, registered_bytes, remote_bytes, chunk_bytes, onEvent(code)): handle.
 * Registers the memory in MISSING mode; every chunk below remote_bytes counts
 * as here until postcopyDrop says otherwise.
 */
napi_value postcopy_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t length = 0;
  double registered, remote, chunk;
  if (argc < 5 || !view_of(env, argv[0], &data, &length) || !number_arg(env, argv[1], &registered) || !number_arg(env, argv[2], &remote) ||
      !number_arg(env, argv[3], &chunk) || ((uintptr_t)data % PAGE_BYTES) != 0 || (uint64_t)registered % PAGE_BYTES != 0 || chunk < PAGE_BYTES ||
      ((uint64_t)chunk & ((uint64_t)chunk - 1)) != 0 || (uint64_t)remote % (uint64_t)chunk != 0 || remote > registered) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "postcopyOpen(view: page-aligned, registered_bytes, remote_bytes: whole chunks, chunk_bytes: power of two, onEvent)");
    return NULL;
  }
  postcopy_t *m = calloc(1, sizeof *m);
  m->uffd = -1;
  m->stop = -1;
  m->link = NULL;
  m->base = data;
  m->registered_bytes = (uint64_t)registered;
  m->remote_bytes = (uint64_t)remote;
  m->chunk_bytes = (uint32_t)chunk;
  m->chunks = (uint32_t)(m->remote_bytes / m->chunk_bytes);
  m->t_open_ns = now_ns();
  pthread_mutex_init(&m->lock, NULL);
  pthread_mutex_init(&m->wlock, NULL);
  pthread_cond_init(&m->attached, NULL);
  m->state = malloc(m->chunks > 0 ? m->chunks : 1);
  memset(m->state, PRESENT, m->chunks);
  m->present = m->chunks;
  m->complete = m->chunks == 0;
  /* Room for a plain PAGES frame's payload (a sealed link reads into its own slots). */
  m->buf_bytes = (size_t)CHUNKS_PER_FRAME_MAX * m->chunk_bytes;
  if (posix_memalign((void **)&m->buf, PAGE_BYTES, m->buf_bytes) != 0) m->buf = NULL;
  if (m->buf == NULL) {
    finalize(env, m, NULL);
    napi_throw_error(env, "ERR_UFFD_UNAVAILABLE", "out of memory");
    return NULL;
  }
  m->uffd = open_uffd();
  if (m->uffd < 0) {
    finalize(env, m, NULL);
    return fail_errno(env, "ERR_UFFD_UNAVAILABLE", "userfaultfd");
  }
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  struct uffdio_register reg = {.range = {.start = (uintptr_t)m->base, .len = m->registered_bytes}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  wait_for_closes(m->base, m->registered_bytes);
  if (ioctl(m->uffd, UFFDIO_API, &api) != 0 || ioctl(m->uffd, UFFDIO_REGISTER, &reg) != 0) {
    finalize(env, m, NULL);
    return fail_errno(env, "ERR_UFFD_UNAVAILABLE", "userfaultfd register (missing mode)");
  }
  m->stop = eventfd(0, EFD_CLOEXEC);
  napi_value name;
  napi_create_string_utf8(env, "ferry-postcopy", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[4], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &m->events) != napi_ok) {
    finalize(env, m, NULL);
    napi_throw_error(env, "ERR_UFFD_UNAVAILABLE", "cannot create the event callback");
    return NULL;
  }
  napi_unref_threadsafe_function(env, m->events);
  if (pthread_create(&m->fault_thread, NULL, fault_loop, m) != 0) {
    finalize(env, m, NULL);
    return fail_errno(env, "ERR_UFFD_UNAVAILABLE", "pthread_create");
  }
  if (pthread_create(&m->read_thread, NULL, read_loop, m) != 0) {
    uint64_t one = 1;
    if (write(m->stop, &one, sizeof one) < 0) { /* joined below either way */ }
    pthread_join(m->fault_thread, NULL);
    finalize(env, m, NULL);
    return fail_errno(env, "ERR_UFFD_UNAVAILABLE", "pthread_create");
  }
  m->threads = 1;
  napi_value handle;
  napi_create_external(env, m, finalize, NULL, &handle);
  return handle;
}

/*
 * Empties [off, off+len) of populated memory quickly, for the caller to
 * re-register. MADV_DONTNEED frees each page where it is (about 0.1 ms per
 * MiB here: 25 ms for 256 MiB, all of it downtime for a hybrid move of a
 * guest that rewrote its memory). Instead the pages are moved aside with
 * mremap, which moves whole page tables where it can, a fresh empty mapping
 * takes their place, and the old pages are freed by a thread of their own
 * once the guest runs again (postcopySettle), or when the session closes.
 */

/* Bytes a page table's entry in the level above pages maps (x86-64 and arm64 with 4 KiB pages). */
#define PMD_BYTES (2u * 1048576u)

/* A range of dropped pages moved aside, in a list. */
typedef struct aside {
  void *at;
  size_t len;
  struct aside *next;
} aside_t;

static void free_asides(struct aside *a) {
  while (a != NULL) {
    aside_t *next = a->next;
    munmap(a->at, a->len);
    free(a);
    a = next;
  }
}

static void *free_asides_thread(void *arg) {
  free_asides(arg);
  return NULL;
}

/*
 * Moves [at, at+len) aside onto a scratch mapping kept in `*list`; a fresh
 * empty mapping takes its place. Returns 0, or -1 with `*unmapped` 0
 * (nothing changed) or 1 (the range is left a hole: the session is broken).
 */
static int move_aside(uint8_t *at, size_t len, aside_t **list, int *unmapped) {
  *unmapped = 0;
  aside_t *a = malloc(sizeof *a);
  if (a == NULL) return -1;
  /*
   * At the same offset within 2 MiB as `at`: mremap then moves each huge
   * page as one entry (700 MiB of a standby backed with huge pages: 3 ms,
   * against 13 ms at another offset). Small pages of a range registered
   * with userfaultfd still move an entry at a time.
   */
  uint8_t *reserved = mmap(NULL, len + PMD_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) {
    free(a);
    return -1;
  }
  uint8_t *scratch = reserved + (((uintptr_t)at - (uintptr_t)reserved) & (PMD_BYTES - 1));
  if (scratch > reserved) munmap(reserved, (size_t)(scratch - reserved));
  if (scratch + len < reserved + len + PMD_BYTES) munmap(scratch + len, (size_t)(reserved + len + PMD_BYTES - (scratch + len)));
  if (mremap(at, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, scratch) == MAP_FAILED) {
    munmap(scratch, len);
    free(a);
    return -1;
  }
  /* Kept even if what follows fails: they are the old pages, freed later either way. */
  a->at = scratch;
  a->len = len;
  a->next = *list;
  *list = a;
  /* From here the range is a hole until the fresh mapping fills it: no thread touches it (the guest is not running, JavaScript never does). */
  if (mmap(at, len, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED) {
    *unmapped = 1;
    return -1;
  }
  return 0;
}

/* Whether any page of [at, at+len) is populated (mincore); 1 when it cannot tell. */
static int populated(uint8_t *at, size_t len) {
  size_t pages = len / PAGE_BYTES;
  unsigned char *vec = malloc(pages > 0 ? pages : 1);
  if (vec == NULL) return 1;
  int any = 1;
  if (mincore(at, len, vec) == 0) {
    any = 0;
    for (size_t i = 0; i < pages && !any; i += 1) any = vec[i] & 1;
  }
  free(vec);
  return any;
}

/* Below this a range is freed in place: moving it aside costs more than freeing it. */
#define MOVE_ASIDE_BYTES_MIN (2u * 1048576u)

/* postcopyDrop(handle, byte_offset, bytes): makes whole chunks missing (they will come from the source). */
napi_value postcopy_drop(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  postcopy_t *m = session_args(env, info, 3, 3, argv);
  double at, bytes;
  if (m == NULL || !number_arg(env, argv[1], &at) || !number_arg(env, argv[2], &bytes) || (uint64_t)at % m->chunk_bytes != 0 ||
      (uint64_t)bytes % m->chunk_bytes != 0 || (uint64_t)at + (uint64_t)bytes > m->remote_bytes) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "postcopyDrop(open handle, whole chunks below the remote size)");
    return NULL;
  }
  if (bytes == 0) return NULL;
  pthread_mutex_lock(&m->lock);
  uint32_t first = (uint32_t)((uint64_t)at / m->chunk_bytes), count = (uint32_t)((uint64_t)bytes / m->chunk_bytes);
  for (uint32_t c = first; c < first + count; c += 1) {
    if (m->state[c] == PRESENT) m->present -= 1;
    m->state[c] = MISSING;
  }
  m->complete = 0;
  uint8_t *range = m->base + (uint64_t)at;
  size_t len = (size_t)bytes;
  int rc = 0, unmapped = 0;
  if (len >= MOVE_ASIDE_BYTES_MIN && populated(range, len) && move_aside(range, len, &m->asides, &unmapped) == 0) {
    /* The fresh mapping is not registered yet: until it is, a touch would zero-fill silently (nothing touches it before this returns). */
    struct uffdio_register reg = {.range = {.start = (uintptr_t)range, .len = len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    rc = ioctl(m->uffd, UFFDIO_REGISTER, &reg);
  } else if (!unmapped) {
    rc = madvise(range, len, MADV_DONTNEED);
  } else {
    rc = -1;
  }
  pthread_mutex_unlock(&m->lock);
  if (rc != 0) return fail_errno(env, "ERR_UFFD", unmapped ? "mremap/mmap (moving dropped pages aside)" : "dropping pages (madvise or userfaultfd register)");
  return NULL;
}

/*
 * postcopyWrite(handle, memory, byte_offset, data): writes whole pages into
 * the registered memory while the guest is stopped (the pages post-copy
 * sends before its handover). `memory` is a view of the whole memory as it
 * is now: nothing is written past its end, where the reservation is not
 * accessible until the memory grows. A page not there yet is placed with
 * UFFDIO_COPY: written in place, its first touch would fault to this
 * session's thread, which maps a chunk of zero pages, and then copy each of
 * them on write (0.4-1.4 ms for 16 pages here, all of it downtime). A page
 * already there is written in place.
 */
napi_value postcopy_write(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  postcopy_t *m = session_args(env, info, 4, 4, argv);
  double at;
  void *memory = NULL, *data = NULL;
  size_t memory_bytes = 0, len = 0;
  if (m == NULL || !view_of(env, argv[1], &memory, &memory_bytes) || !number_arg(env, argv[2], &at) || !view_of(env, argv[3], &data, &len) ||
      memory != (void *)m->base || at < 0 || (uint64_t)at % PAGE_BYTES != 0 || len % PAGE_BYTES != 0 || (uint64_t)at + len > memory_bytes ||
      (uint64_t)at + len > m->registered_bytes) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "postcopyWrite(open handle, memory: the registered memory, byte_offset: page-aligned, data: whole pages inside it)");
    return NULL;
  }
  uint8_t *dst = m->base + (uint64_t)at;
  const uint8_t *src = data;
  size_t done = 0;
  while (done < len) {
    struct uffdio_copy c = {.dst = (uintptr_t)(dst + done), .src = (uintptr_t)(src + done), .len = len - done, .mode = 0};
    if (ioctl(m->uffd, UFFDIO_COPY, &c) == 0) break;
    if (c.copy > 0) {
      done += (size_t)c.copy;
      continue;
    }
    if (errno == EEXIST) {
      memcpy(dst + done, src + done, PAGE_BYTES);
      done += PAGE_BYTES;
      continue;
    }
    if (errno == EAGAIN || errno == EINTR) continue;
    return fail_errno(env, "ERR_UFFD", "UFFDIO_COPY (writing pages)");
  }
  return NULL;
}

/*
 * postcopySettle(handle): the guest runs; the pages its drops moved aside
 * are freed now, on a thread of their own (freeing them while it was
 * stopped was the cost move_aside avoids).
 */
napi_value postcopy_settle(napi_env env, napi_callback_info info) {
  postcopy_t *m = only_handle_arg(env, info, "postcopySettle(open handle)");
  if (m == NULL) return NULL;
  pthread_mutex_lock(&m->lock);
  aside_t *list = m->asides;
  m->asides = NULL;
  pthread_mutex_unlock(&m->lock);
  if (list == NULL) return NULL;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, free_asides_thread, list) != 0) free_asides(list);
  pthread_attr_destroy(&attr);
  return NULL;
}

/*
 * postcopyResize(handle, remote_bytes): sets how much of the memory comes
 * from the source, before the first page channel is attached: a session is
 * opened while the source still runs, before the size its memory will have
 * at the stop is known. Only grows; the new chunks count as here until
 * dropped.
 */
napi_value postcopy_resize(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  postcopy_t *m = session_args(env, info, 2, 2, argv);
  double remote;
  if (m == NULL || !number_arg(env, argv[1], &remote) || (uint64_t)remote % m->chunk_bytes != 0 || (uint64_t)remote < m->remote_bytes ||
      (uint64_t)remote > m->registered_bytes) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "postcopyResize(open handle, remote_bytes: whole chunks, not below the current size)");
    return NULL;
  }
  pthread_mutex_lock(&m->lock);
  if (m->attaches > 0) {
    pthread_mutex_unlock(&m->lock);
    napi_throw_error(env, "ERR_POSTCOPY_OPEN", "a session's size is fixed once a page channel attached");
    return NULL;
  }
  uint32_t chunks = (uint32_t)((uint64_t)remote / m->chunk_bytes);
  uint8_t *state = realloc(m->state, chunks > 0 ? chunks : 1);
  if (state == NULL) {
    pthread_mutex_unlock(&m->lock);
    napi_throw_error(env, "ERR_UFFD", "out of memory");
    return NULL;
  }
  memset(state + m->chunks, PRESENT, chunks - m->chunks);
  m->present += chunks - m->chunks;
  m->state = state;
  m->chunks = chunks;
  m->remote_bytes = (uint64_t)remote;
  pthread_mutex_unlock(&m->lock);
  return NULL;
}

/* A link over `fd` (owned from here on), sealed with `keys` (64 bytes: to-destination key, to-source key) unless NULL. */
static link_t *link_new(postcopy_t *m, int fd, const uint8_t *keys, int demand) {
  link_t *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  l->fd = fd;
  l->demand = demand;
  /* A plain demand channel reads into a buffer of its own (the page channel's reader uses the session's). */
  if (demand && keys == NULL && posix_memalign((void **)&l->rbuf, PAGE_BYTES, m->buf_bytes) != 0) {
    l->rbuf = NULL;
    l->fd = -1;
    link_free(l);
    return NULL;
  }
  l->wbuf_bytes = SEAL_HEAD_BYTES + HEAD_BYTES + (m->chunks + 7) / 8 + SEAL_TAG_BYTES;
  l->wbuf = malloc(l->wbuf_bytes);
  if (l->wbuf == NULL) {
    l->fd = -1;
    link_free(l);
    return NULL;
  }
  if (keys != NULL) {
    l->sealed = 1;
    pthread_mutex_init(&l->rlock, NULL);
    pthread_cond_init(&l->rready, NULL);
    pthread_cond_init(&l->rfree, NULL);
    int ok = sealer_init(&l->open, keys, SEAL_TO_DESTINATION, 0) == 0 && sealer_init(&l->seal, keys + SEAL_KEY_BYTES, SEAL_TO_SOURCE, 1) == 0;
    /* A PAGES frame's payload starts on a page in a slot, as UFFDIO_COPY copies whole pages best. */
    for (int i = 0; ok && i < RECORD_SLOTS; i += 1) ok = posix_memalign((void **)&l->slots[i].buf, PAGE_BYTES, RECORD_AT + SEAL_RECORD_BYTES_MAX + SEAL_TAG_BYTES) == 0;
    if (!ok) {
      l->fd = -1;
      link_free(l);
      return NULL;
    }
  }
  return l;
}

/* Makes `l` the demand channel, replacing (and waiting out) the one before. */
static napi_value attach_demand(napi_env env, postcopy_t *m, link_t *l) {
  demand_stop(m);
  uint32_t *wanted = malloc(sizeof(uint32_t) * (m->chunks > 0 ? m->chunks : 1));
  uint32_t n = 0;
  pthread_mutex_lock(&m->wlock);
  pthread_mutex_lock(&m->lock);
  if (m->closing || m->failed || wanted == NULL) {
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_unlock(&m->wlock);
    link_free(l);
    free(wanted);
    napi_throw_error(env, "ERR_POSTCOPY", "the session no longer takes a demand channel");
    return NULL;
  }
  m->demand = l;
  for (uint32_t c = 0; c < m->chunks; c += 1)
    if (m->state[c] == REQUESTED) wanted[n++] = c;
  int started = pthread_create(&m->demand_thread, NULL, demand_loop, m) == 0;
  m->demand_running = started;
  if (!started) m->demand = NULL;
  pthread_mutex_unlock(&m->lock);
  /* Asked again here too: they may be stuck behind the push on the page channel. */
  if (started) for (uint32_t i = 0; i < n; i += 1) write_frame(l, K_REQ, wanted[i], 0, NULL, 0);
  pthread_mutex_unlock(&m->wlock);
  free(wanted);
  if (!started) {
    link_free(l);
    return fail_errno(env, "ERR_UFFD", "pthread_create (demand channel)");
  }
  return NULL;
}

/*
 * postcopyAttach(handle, fd, keys?): takes a duplicate of a connected socket
 * to the source (the caller closes its own), says which chunks are here and
 * asks again for those faulted on. `keys` (64 bytes: the key of records to
 * the destination, then of records to the source; fresh for this
 * connection) seals every frame; without it frames travel in the clear.
 * With `demand` true it is the demand channel instead (preempt): no HELLO,
 * every REQ goes there from now on (those outstanding first), and its
 * answers are placed by a reader of its own, never behind the push.
 */
napi_value postcopy_attach(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  postcopy_t *m = argc >= 2 ? handle_of(env, argv[0]) : NULL;
  int32_t given;
  void *keys = NULL;
  size_t keys_bytes = 0;
  napi_valuetype keys_type = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &keys_type);
  bool keys_ok = keys_type == napi_undefined || keys_type == napi_null || (view_of(env, argv[2], &keys, &keys_bytes) && keys_bytes == 2 * SEAL_KEY_BYTES);
  bool demand = false;
  if (argc >= 4) napi_get_value_bool(env, argv[3], &demand);
  if (m == NULL || napi_get_value_int32(env, argv[1], &given) != napi_ok || given < 0 || !keys_ok) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "postcopyAttach(open handle, fd, keys?: 64 bytes, demand?: boolean)");
    return NULL;
  }
  int fd = fcntl(given, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return fail_errno(env, "ERR_UFFD", "dup(socket)");
  int flags = fcntl(fd, F_GETFL);
  int one = 1;
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    close(fd);
    return fail_errno(env, "ERR_UFFD", "fcntl(socket)");
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  link_t *l = link_new(m, fd, keys_type == napi_undefined || keys_type == napi_null ? NULL : keys, demand);
  if (l == NULL) {
    close(fd);
    napi_throw_error(env, "ERR_UFFD", "cannot set up the page channel (out of memory, or OpenSSL refused the keys)");
    return NULL;
  }
  if (demand) return attach_demand(env, m, l);
  size_t bitmap_bytes = (m->chunks + 7) / 8;
  uint8_t *bitmap = calloc(bitmap_bytes > 0 ? bitmap_bytes : 1, 1);
  uint32_t *wanted = malloc(sizeof(uint32_t) * (m->chunks > 0 ? m->chunks : 1));
  uint32_t n_wanted = 0;
  pthread_mutex_lock(&m->wlock);
  pthread_mutex_lock(&m->lock);
  if (m->link != NULL) shutdown(m->link->fd, SHUT_RDWR); /* the reader frees it */
  m->link = l;
  m->gen += 1;
  m->attaches += 1;
  for (uint32_t c = 0; c < m->chunks; c += 1) {
    if (m->state[c] == PRESENT) bitmap[c / 8] |= (uint8_t)(1u << (c % 8));
    else if (m->state[c] == REQUESTED) wanted[n_wanted++] = c;
  }
  pthread_cond_broadcast(&m->attached);
  pthread_mutex_unlock(&m->lock);
  /* Still holding wlock: HELLO goes first, before any new REQ (and the reader cannot free the link meanwhile). */
  write_frame(l, K_HELLO, m->chunk_bytes, m->chunks, bitmap, bitmap_bytes);
  for (uint32_t i = 0; i < n_wanted; i += 1) write_frame(l, K_REQ, wanted[i], 0, NULL, 0);
  pthread_mutex_unlock(&m->wlock);
  free(bitmap);
  free(wanted);
  return NULL;
}

/*
 * postcopyFail(handle): gives up on the source. Tells it (if connected) to
 * stop, wakes every waiting thread with zero pages and answers later faults
 * the same way. Call only once the guest has been told to stop. Returns the
 * chunks that never arrived, as [first, count] runs.
 */
napi_value postcopy_fail(napi_env env, napi_callback_info info) {
  postcopy_t *m = only_handle_arg(env, info, "postcopyFail(open handle)");
  if (m == NULL) return NULL;
  send_frame(m, K_ABORT, 0);
  napi_value runs;
  napi_create_array(env, &runs);
  uint32_t n = 0;
  pthread_mutex_lock(&m->lock);
  m->failed = 1;
  for (uint32_t c = 0; c < m->chunks;) {
    if (m->state[c] == PRESENT) {
      c += 1;
      continue;
    }
    uint32_t end = c;
    while (end < m->chunks && m->state[end] != PRESENT) {
      if (m->state[end] == REQUESTED) place(m, (uint64_t)end * m->chunk_bytes, NULL, m->chunk_bytes);
      end += 1;
    }
    napi_value pair, a, b;
    napi_create_array_with_length(env, 2, &pair);
    napi_create_uint32(env, c, &a);
    napi_create_uint32(env, end - c, &b);
    napi_set_element(env, pair, 0, a);
    napi_set_element(env, pair, 1, b);
    napi_set_element(env, runs, n++, pair);
    c = end;
  }
  if (m->link != NULL) shutdown(m->link->fd, SHUT_RDWR);
  if (m->demand != NULL) shutdown(m->demand->fd, SHUT_RDWR);
  pthread_mutex_unlock(&m->lock);
  return runs;
}

static void set_number(napi_env env, napi_value obj, const char *key, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, obj, key, v);
}

/* postcopyStats(handle): counters of the session so far. */
napi_value postcopy_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  postcopy_t *m = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&m) != napi_ok || m == NULL) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "postcopyStats(handle)");
    return NULL;
  }
  napi_value out;
  napi_create_object(env, &out);
  pthread_mutex_lock(&m->lock);
  set_number(env, out, "chunks", m->chunks);
  set_number(env, out, "present", m->present);
  set_number(env, out, "faults", (double)m->faults);
  set_number(env, out, "demand_chunks", (double)m->demand_chunks);
  set_number(env, out, "demand_served", (double)m->demand_served);
  set_number(env, out, "pushed_chunks", (double)m->pushed_chunks);
  set_number(env, out, "zero_chunks", (double)m->zero_chunks);
  set_number(env, out, "bytes_in", (double)m->bytes_in);
  set_number(env, out, "attaches", (double)m->attaches);
  set_number(env, out, "preempt_chunks", (double)m->preempt_chunks);
  set_number(env, out, "complete_ms", m->complete && m->t_complete_ns > 0 ? (double)(m->t_complete_ns - m->t_open_ns) / 1e6 : -1);
  pthread_mutex_unlock(&m->lock);
  return out;
}

/* postcopyClose(handle): stops serving and unregisters; refused unless every chunk is here or the session failed. */
napi_value postcopy_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  postcopy_t *m = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&m) != napi_ok || m == NULL) return NULL;
  if (m->uffd < 0) return NULL;
  pthread_mutex_lock(&m->lock);
  int safe = m->complete || m->failed;
  pthread_mutex_unlock(&m->lock);
  if (!safe) {
    napi_throw_error(env, "ERR_POSTCOPY_OPEN", "pages are still missing: fail the session before closing it (closing would zero-fill them)");
    return NULL;
  }
  stop_threads(m);
  return NULL;
}
