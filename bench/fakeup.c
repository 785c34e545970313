/*
 * fakeup — a fast fake OpenAI-compatible upstream for the umbra benchmark.
 *
 * Single process, single thread, epoll (level-triggered), HTTP/1.1 keep-alive.
 * Reads request bodies of any size (Content-Length or chunked), answers:
 *   POST /v1/chat/completions   chat.completion JSON (with usage), or when the
 *                               body has "stream": true, an SSE stream of N
 *                               chunks + a usage chunk + [DONE], sent with
 *                               Transfer-Encoding: chunked
 *   POST /v1/messages           an Anthropic Messages answer (non-streaming)
 *   POST /model/ID/converse     a Bedrock Converse answer (non-streaming; the
 *                               SigV4 signature is not checked)
 *   POST /v1/embeddings         a small embedding list
 *   GET  /v1/models             the model list
 *   GET  /health                {"status":"ok"}
 * Options:
 *   -p PORT      listen port on 127.0.0.1 (default 18000)
 *   -n N         content chunks per stream (default 16)
 *   -d USEC      delay before the first stream chunk (default 0)
 *   -i USEC      delay between stream chunks (default 0)
 *   -w WORDS     words in the non-streaming answer (default 48)
 *   -a ADDR      bind address (default 127.0.0.1)
 * Headers are sent at once; with -d/-i the chunks are paced by a timerfd.
 * "Expect: 100-continue" is answered with "100 Continue".
 *
 * Build: cc -O2 -o fakeup fakeup.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)

typedef struct {
    char *p;
    size_t len, cap, off; /* off: consumed prefix (read) / written prefix (write) */
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    if (b->off > 0 && b->off >= b->len / 2) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + extra) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) { perror("realloc"); exit(1); }
    b->p = np;
    b->cap = nc;
}
static void buf_add(buf_t *b, const void *d, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        buf_reserve(b, (size_t)n + 1);
    }
}

enum { ST_HEAD, ST_BODY_CL, ST_CH_SIZE, ST_CH_DATA, ST_CH_DATA_CRLF, ST_CH_TRAILER };

typedef struct conn {
    int fd;
    uint32_t gen;
    int state;
    int keepalive;
    int want_out;          /* EPOLLOUT registered */
    int closing;           /* close after output drained */
    int streaming;         /* a paced stream is in progress */
    int chunk_i;           /* next content chunk to send */
    int prompt_tokens;
    char method[8];
    char path[128];
    size_t body_need;      /* remaining Content-Length / chunk bytes */
    buf_t in;              /* raw input */
    buf_t body;            /* decoded body */
    buf_t out;
} conn_t;

static int g_ep, g_tfd, g_nchunks = 16, g_words = 48;
static long g_first_us, g_inter_us;
static conn_t **g_conns;
static int g_nconns_cap;
static char *g_nonstream_msg;   /* the assistant answer, JSON-escaped already */
static char **g_chunk_events;   /* prebuilt SSE "data: ...\n\n" events */
static size_t *g_chunk_lens;

/* ---------- timers: two FIFOs (first-chunk and inter-chunk delays are constant, so each is sorted) */
typedef struct { int fd; uint32_t gen; uint64_t due; } tentry_t;
typedef struct { tentry_t *v; size_t head, tail, cap; } tq_t;
static tq_t g_tq_first, g_tq_inter;
static uint64_t g_armed; /* currently armed deadline (0 = none) */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static void tq_push(tq_t *q, int fd, uint32_t gen, uint64_t due) {
    if (q->tail - q->head == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 1024;
        tentry_t *nv = malloc(nc * sizeof *nv);
        for (size_t i = 0; i < q->tail - q->head; i++) nv[i] = q->v[(q->head + i) % q->cap];
        q->tail -= q->head;
        q->head = 0;
        free(q->v);
        q->v = nv;
        q->cap = nc;
    }
    q->v[q->tail % q->cap] = (tentry_t){fd, gen, due};
    q->tail++;
}
static tentry_t *tq_front(tq_t *q) { return q->head == q->tail ? NULL : &q->v[q->head % q->cap]; }
static void tq_pop(tq_t *q) { q->head++; }

static void arm_timer(void) {
    tentry_t *a = tq_front(&g_tq_first), *b = tq_front(&g_tq_inter);
    uint64_t due = 0;
    if (a) due = a->due;
    if (b && (!due || b->due < due)) due = b->due;
    if (due == g_armed) return;
    struct itimerspec its = {0};
    if (due) {
        its.it_value.tv_sec = (time_t)(due / 1000000000ull);
        its.it_value.tv_nsec = (long)(due % 1000000000ull);
    }
    timerfd_settime(g_tfd, TFD_TIMER_ABSTIME, &its, NULL);
    g_armed = due;
}

/* ---------- connection helpers */
static void conn_close(conn_t *c) {
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->gen++;
    c->in.len = c->in.off = 0;
    c->body.len = c->body.off = 0;
    c->out.len = c->out.off = 0;
    c->streaming = 0;
    /* shrink big buffers so a 200 KB burst does not pin memory per slot */
    if (c->in.cap > (1 << 20)) { free(c->in.p); c->in = (buf_t){0}; }
    if (c->body.cap > (1 << 20)) { free(c->body.p); c->body = (buf_t){0}; }
    if (c->out.cap > (1 << 20)) { free(c->out.p); c->out = (buf_t){0}; }
}

static void set_out_interest(conn_t *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

/* returns -1 if the connection was closed */
static int conn_flush(conn_t *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n > 0) { c->out.off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { set_out_interest(c, 1); return 0; }
        conn_close(c);
        return -1;
    }
    c->out.off = c->out.len = 0;
    set_out_interest(c, 0);
    if (c->closing && !c->streaming) { conn_close(c); return -1; }
    return 0;
}

/* ---------- responses */
static const char *status_text(int st) {
    switch (st) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    default: return "Error";
    }
}
static void respond(conn_t *c, int st, const char *ctype, const char *body, size_t blen) {
    buf_printf(&c->out,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
               st, status_text(st), ctype, blen, c->keepalive ? "" : "Connection: close\r\n");
    buf_add(&c->out, body, blen);
}

static int body_has_true(const buf_t *b, const char *key) {
    /* finds "key" : true  (key given with quotes), ignoring escaped occurrences */
    const char *p = b->p, *end = b->p + b->len;
    size_t kl = strlen(key);
    while (p < end) {
        const char *m = memmem(p, (size_t)(end - p), key, kl);
        if (!m) return 0;
        p = m + kl;
        if (m > b->p && m[-1] == '\\') continue;
        const char *q = p;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
        if (q >= end || *q != ':') continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
        if (end - q >= 4 && memcmp(q, "true", 4) == 0) return 1;
    }
    return 0;
}

static const int COMPLETION_STREAM_TOKENS_PER_CHUNK = 1;

static void add_chunk(buf_t *o, const char *ev, size_t n) {
    buf_printf(o, "%zx\r\n", n);
    buf_add(o, ev, n);
    buf_add(o, "\r\n", 2);
}

static void stream_tail(conn_t *c) {
    char ev[512];
    int n = snprintf(ev, sizeof ev,
                     "data: {\"id\":\"chatcmpl-bench0001\",\"object\":\"chat.completion.chunk\","
                     "\"created\":1700000000,\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\","
                     "\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,"
                     "\"total_tokens\":%d}}\n\n",
                     c->prompt_tokens, g_nchunks * COMPLETION_STREAM_TOKENS_PER_CHUNK,
                     c->prompt_tokens + g_nchunks * COMPLETION_STREAM_TOKENS_PER_CHUNK);
    add_chunk(&c->out, ev, (size_t)n);
    static const char done[] = "data: [DONE]\n\n";
    add_chunk(&c->out, done, sizeof done - 1);
    buf_add(&c->out, "0\r\n\r\n", 5);
    c->streaming = 0;
}

/* sends content chunk i (0..n) ; chunk n is the finish_reason chunk */
static void stream_send_chunk(conn_t *c, int i) { add_chunk(&c->out, g_chunk_events[i], g_chunk_lens[i]); }

static void handle_chat(conn_t *c) {
    c->prompt_tokens = (int)(c->body.len / 4) + 1;
    if (body_has_true(&c->body, "\"stream\"")) {
        buf_printf(&c->out,
                   "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                   "Transfer-Encoding: chunked\r\n%s\r\n",
                   c->keepalive ? "" : "Connection: close\r\n");
        if (g_first_us == 0 && g_inter_us == 0) {
            for (int i = 0; i <= g_nchunks; i++) stream_send_chunk(c, i);
            stream_tail(c);
            return;
        }
        c->streaming = 1;
        c->chunk_i = 0;
        uint64_t t = now_ns();
        if (g_first_us == 0) {
            stream_send_chunk(c, 0);
            c->chunk_i = 1;
            tq_push(&g_tq_inter, c->fd, c->gen, t + (uint64_t)g_inter_us * 1000);
        } else {
            tq_push(&g_tq_first, c->fd, c->gen, t + (uint64_t)g_first_us * 1000);
        }
        return;
    }
    char head[1024];
    int ct = g_words;
    int n = snprintf(head, sizeof head,
                     "{\"id\":\"chatcmpl-bench0001\",\"object\":\"chat.completion\",\"created\":1700000000,"
                     "\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{\"index\":0,"
                     "\"message\":{\"role\":\"assistant\",\"content\":\"");
    char tail[512];
    int m = snprintf(tail, sizeof tail,
                     "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                     "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":"
                     "{\"reasoning_tokens\":0}}}",
                     c->prompt_tokens, ct, c->prompt_tokens + ct);
    size_t ml = strlen(g_nonstream_msg);
    size_t blen = (size_t)n + ml + (size_t)m;
    buf_printf(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
               blen, c->keepalive ? "" : "Connection: close\r\n");
    buf_add(&c->out, head, (size_t)n);
    buf_add(&c->out, g_nonstream_msg, ml);
    buf_add(&c->out, tail, (size_t)m);
}

/* The same answer in another wire format: head, the words, tail. */
static void respond_words(conn_t *c, const char *head, const char *tail) {
    size_t hl = strlen(head), ml = strlen(g_nonstream_msg), tl = strlen(tail);
    buf_printf(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
               hl + ml + tl, c->keepalive ? "" : "Connection: close\r\n");
    buf_add(&c->out, head, hl);
    buf_add(&c->out, g_nonstream_msg, ml);
    buf_add(&c->out, tail, tl);
}

static void handle_messages(conn_t *c) {
    char tail[256];
    snprintf(tail, sizeof tail,
             "\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":%d,"
             "\"output_tokens\":%d,\"cache_read_input_tokens\":0,\"cache_creation_input_tokens\":0}}",
             (int)(c->body.len / 4) + 1, g_words);
    respond_words(c, "{\"id\":\"msg_bench0001\",\"type\":\"message\",\"role\":\"assistant\","
                     "\"model\":\"bench-model\",\"content\":[{\"type\":\"text\",\"text\":\"", tail);
}

static void handle_converse(conn_t *c) {
    char tail[256];
    int in = (int)(c->body.len / 4) + 1;
    snprintf(tail, sizeof tail,
             "\"}]}},\"stopReason\":\"end_turn\",\"usage\":{\"inputTokens\":%d,\"outputTokens\":%d,"
             "\"totalTokens\":%d},\"metrics\":{\"latencyMs\":1}}", in, g_words, in + g_words);
    respond_words(c, "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"", tail);
}

static int path_is_converse(const char *p) {
    size_t n = strlen(p);
    return strncmp(p, "/model/", 7) == 0 && n > 16 && strcmp(p + n - 9, "/converse") == 0;
}

static void handle_request(conn_t *c) {
    if (strcmp(c->method, "POST") == 0 && strcmp(c->path, "/v1/chat/completions") == 0) {
        handle_chat(c);
    } else if (strcmp(c->method, "POST") == 0 && strcmp(c->path, "/v1/messages") == 0) {
        handle_messages(c);
    } else if (strcmp(c->method, "POST") == 0 && path_is_converse(c->path)) {
        handle_converse(c);
    } else if (strcmp(c->method, "POST") == 0 && strcmp(c->path, "/v1/embeddings") == 0) {
        static const char e[] =
            "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":"
            "[0.0023,-0.0093,0.0158,-0.0076,0.0119,0.0021,-0.0187,0.0045]}],\"model\":\"bench-embed\","
            "\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}";
        respond(c, 200, "application/json", e, sizeof e - 1);
    } else if (strcmp(c->method, "GET") == 0 && strcmp(c->path, "/v1/models") == 0) {
        static const char e[] =
            "{\"object\":\"list\",\"data\":[{\"id\":\"bench-model\",\"object\":\"model\",\"created\":1700000000,"
            "\"owned_by\":\"bench\"},{\"id\":\"bench-embed\",\"object\":\"model\",\"created\":1700000000,"
            "\"owned_by\":\"bench\"}]}";
        respond(c, 200, "application/json", e, sizeof e - 1);
    } else if (strcmp(c->method, "GET") == 0 && strcmp(c->path, "/health") == 0) {
        static const char e[] = "{\"status\":\"ok\"}";
        respond(c, 200, "application/json", e, sizeof e - 1);
    } else {
        static const char e[] =
            "{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\",\"code\":null}}";
        respond(c, 404, "application/json", e, sizeof e - 1);
    }
}

/* parse request head at c->in (off..len). returns 1 parsed, 0 need more, -1 bad */
static int parse_head(conn_t *c) {
    char *s = c->in.p + c->in.off;
    size_t avail = c->in.len - c->in.off;
    char *e = memmem(s, avail, "\r\n\r\n", 4);
    if (!e) return avail > MAX_HEAD ? -1 : 0;
    size_t hlen = (size_t)(e - s) + 4;
    char *line_end = memchr(s, '\r', hlen);
    char *sp1 = memchr(s, ' ', (size_t)(line_end - s));
    if (!sp1) return -1;
    char *sp2 = memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
    if (!sp2) return -1;
    size_t ml = (size_t)(sp1 - s), pl = (size_t)(sp2 - sp1 - 1);
    if (ml >= sizeof c->method) ml = sizeof c->method - 1;
    if (pl >= sizeof c->path) pl = sizeof c->path - 1;
    memcpy(c->method, s, ml);
    c->method[ml] = 0;
    memcpy(c->path, sp1 + 1, pl);
    c->path[pl] = 0;
    char *q = strchr(c->path, '?');
    if (q) *q = 0;
    int http10 = (line_end - sp2 - 1 == 8 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0);
    c->keepalive = !http10;
    long cl = 0;
    int chunked = 0, expect = 0;
    char *p = line_end + 2;
    while (p < e) {
        char *le = memmem(p, (size_t)(e + 2 - p), "\r\n", 2);
        char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            size_t nl = (size_t)(colon - p);
            char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t')) v++;
            size_t vl = (size_t)(le - v);
            if (nl == 14 && strncasecmp(p, "content-length", 14) == 0) cl = strtol(v, NULL, 10);
            else if (nl == 17 && strncasecmp(p, "transfer-encoding", 17) == 0)
                chunked = memmem(v, vl, "chunked", 7) != NULL;
            else if (nl == 10 && strncasecmp(p, "connection", 10) == 0) {
                if (vl >= 5 && strncasecmp(v, "close", 5) == 0) c->keepalive = 0;
                else if (vl >= 10 && strncasecmp(v, "keep-alive", 10) == 0) c->keepalive = 1;
            } else if (nl == 6 && strncasecmp(p, "expect", 6) == 0)
                expect = (vl >= 12 && strncasecmp(v, "100-continue", 12) == 0);
        }
        p = le + 2;
    }
    c->in.off += hlen;
    c->body.len = 0;
    if (expect) buf_add(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (chunked) c->state = ST_CH_SIZE;
    else if (cl > 0) { c->state = ST_BODY_CL; c->body_need = (size_t)cl; }
    else { c->state = ST_HEAD; handle_request(c); return 2; }
    return 1;
}

/* consume input; returns -1 if closed */
static int process_input(conn_t *c) {
    for (;;) {
        if (c->streaming) break; /* no pipelining past a paced stream */
        size_t avail = c->in.len - c->in.off;
        char *s = c->in.p + c->in.off;
        switch (c->state) {
        case ST_HEAD: {
            if (avail == 0) goto out;
            int r = parse_head(c);
            if (r < 0) { conn_close(c); return -1; }
            if (r == 0) goto out;
            if (r == 2 && !c->keepalive) c->closing = 1;
            break;
        }
        case ST_BODY_CL: {
            if (avail == 0) goto out;
            size_t take = avail < c->body_need ? avail : c->body_need;
            buf_add(&c->body, s, take);
            c->in.off += take;
            c->body_need -= take;
            if (c->body_need == 0) {
                c->state = ST_HEAD;
                handle_request(c);
                if (!c->keepalive) c->closing = 1;
            }
            break;
        }
        case ST_CH_SIZE: {
            char *le = memmem(s, avail, "\r\n", 2);
            if (!le) { if (avail > 1024) { conn_close(c); return -1; } goto out; }
            size_t sz = strtoul(s, NULL, 16);
            c->in.off += (size_t)(le - s) + 2;
            if (sz == 0) c->state = ST_CH_TRAILER;
            else { c->body_need = sz; c->state = ST_CH_DATA; }
            break;
        }
        case ST_CH_DATA: {
            if (avail == 0) goto out;
            size_t take = avail < c->body_need ? avail : c->body_need;
            buf_add(&c->body, s, take);
            c->in.off += take;
            c->body_need -= take;
            if (c->body_need == 0) c->state = ST_CH_DATA_CRLF;
            break;
        }
        case ST_CH_DATA_CRLF:
            if (avail < 2) goto out;
            c->in.off += 2;
            c->state = ST_CH_SIZE;
            break;
        case ST_CH_TRAILER: {
            char *le = memmem(s, avail, "\r\n", 2);
            if (!le) goto out;
            c->in.off += (size_t)(le - s) + 2;
            if (le == s) {
                c->state = ST_HEAD;
                handle_request(c);
                if (!c->keepalive) c->closing = 1;
            }
            break;
        }
        }
        if (c->closing) break;
    }
out:
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
    return conn_flush(c);
}

static void on_readable(conn_t *c) {
    for (int rounds = 0; rounds < 8; rounds++) {
        buf_reserve(&c->in, 65536);
        size_t want = c->in.cap - c->in.len;
        ssize_t n = read(c->fd, c->in.p + c->in.len, want);
        if (n > 0) {
            c->in.len += (size_t)n;
            if ((size_t)n < want) break;
            continue;
        }
        if (n == 0) { conn_close(c); return; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        conn_close(c);
        return;
    }
    process_input(c);
}

static void on_timer(void) {
    uint64_t exp;
    if (read(g_tfd, &exp, sizeof exp) < 0) { /* spurious */ }
    g_armed = 0;
    uint64_t t = now_ns();
    tq_t *qs[2] = {&g_tq_first, &g_tq_inter};
    for (int k = 0; k < 2; k++) {
        tentry_t *e;
        while ((e = tq_front(qs[k])) && e->due <= t) {
            int fd = e->fd;
            uint32_t gen = e->gen;
            tq_pop(qs[k]);
            if (fd < 0 || fd >= g_nconns_cap || !g_conns[fd]) continue;
            conn_t *c = g_conns[fd];
            if (c->fd != fd || c->gen != gen || !c->streaming) continue;
            stream_send_chunk(c, c->chunk_i);
            c->chunk_i++;
            if (c->chunk_i > g_nchunks) {
                stream_tail(c);
                if (!c->keepalive) c->closing = 1;
                if (conn_flush(c) == 0) process_input(c); /* pipelined request waiting? */
            } else {
                tq_push(&g_tq_inter, fd, gen, t + (uint64_t)g_inter_us * 1000);
                conn_flush(c);
            }
        }
    }
    arm_timer();
}

static conn_t *conn_get(int fd) {
    if (fd >= g_nconns_cap) {
        int nc = g_nconns_cap ? g_nconns_cap : 1024;
        while (nc <= fd) nc *= 2;
        g_conns = realloc(g_conns, (size_t)nc * sizeof *g_conns);
        memset(g_conns + g_nconns_cap, 0, (size_t)(nc - g_nconns_cap) * sizeof *g_conns);
        g_nconns_cap = nc;
    }
    if (!g_conns[fd]) g_conns[fd] = calloc(1, sizeof(conn_t));
    conn_t *c = g_conns[fd];
    c->fd = fd;
    c->state = ST_HEAD;
    c->keepalive = 1;
    c->want_out = c->closing = c->streaming = 0;
    return c;
}

static void build_payloads(void) {
    static const char *words[] = {"The", "gateway", "forwards", "each", "request", "to", "the", "model",
                                  "server,", "keeps", "the", "connection", "alive", "and", "returns",
                                  "the", "answer", "with", "token", "usage", "so", "spend", "is", "known."};
    size_t nw = sizeof words / sizeof *words;
    buf_t m = {0};
    for (int i = 0; i < g_words; i++) buf_printf(&m, "%s%s", i ? " " : "", words[(size_t)i % nw]);
    buf_add(&m, "", 1);
    g_nonstream_msg = m.p;
    g_chunk_events = calloc((size_t)g_nchunks + 1, sizeof *g_chunk_events);
    g_chunk_lens = calloc((size_t)g_nchunks + 1, sizeof *g_chunk_lens);
    for (int i = 0; i <= g_nchunks; i++) {
        buf_t b = {0};
        const char *pre = "data: {\"id\":\"chatcmpl-bench0001\",\"object\":\"chat.completion.chunk\","
                          "\"created\":1700000000,\"model\":\"bench-model\",\"system_fingerprint\":\"fp_bench\","
                          "\"choices\":[{\"index\":0,\"delta\":";
        if (i == g_nchunks)
            buf_printf(&b, "%s{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n", pre);
        else if (i == 0)
            buf_printf(&b, "%s{\"role\":\"assistant\",\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                       pre, words[0]);
        else
            buf_printf(&b, "%s{\"content\":\" %s\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n", pre,
                       words[(size_t)i % nw]);
        g_chunk_events[i] = b.p;
        g_chunk_lens[i] = b.len;
    }
}

int main(int argc, char **argv) {
    int port = 18000, opt;
    const char *addr = "127.0.0.1";
    while ((opt = getopt(argc, argv, "p:n:d:i:w:a:h")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'n': g_nchunks = atoi(optarg); break;
        case 'd': g_first_us = atol(optarg); break;
        case 'i': g_inter_us = atol(optarg); break;
        case 'w': g_words = atoi(optarg); break;
        case 'a': addr = optarg; break;
        default:
            fprintf(stderr, "usage: %s [-p port] [-n chunks] [-d first_delay_us] [-i inter_delay_us] [-w words] [-a addr]\n",
                    argv[0]);
            return 2;
        }
    }
    if (g_nchunks < 1) g_nchunks = 1;
    signal(SIGPIPE, SIG_IGN);
    build_payloads();

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("bind/listen");
        return 1;
    }
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    g_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, ls, &ev);
    ev.data.fd = g_tfd;
    epoll_ctl(g_ep, EPOLL_CTL_ADD, g_tfd, &ev);
    fprintf(stderr, "fakeup: listening on %s:%d chunks=%d first_delay_us=%ld inter_delay_us=%ld\n", addr, port,
            g_nchunks, g_first_us, g_inter_us);

    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(g_ep, evs, 512, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_get(cfd);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(g_ep, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            if (fd == g_tfd) { on_timer(); continue; }
            if (fd >= g_nconns_cap || !g_conns[fd] || g_conns[fd]->fd != fd) continue;
            conn_t *c = g_conns[fd];
            uint32_t e = evs[i].events;
            if (e & EPOLLOUT) { if (conn_flush(c) < 0) continue; }
            if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
        arm_timer();
    }
}
