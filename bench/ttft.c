/*
 * ttft — time-to-first-token client for the umbra benchmark.
 *
 * Opens K keep-alive connections to URL, then for each round sends one
 * streaming POST per connection (starts spread evenly over RAMP ms), and for
 * every stream measures the time from the request being written to the first
 * byte of the response body (the first SSE data byte), checks that the stream
 * completes with "data: [DONE]" and a 200 status, and records the largest gap
 * between two reads. Rounds before the last are warm-up (pools filled).
 *
 *   ttft -c K [-R rounds] [-r ramp_ms] [-t timeout_s] -b body.json [-H "k: v"]... URL
 *
 * Prints a human line and one machine line:
 *   TTFT {"streams":K,"ok":n,"stalls":s,"errors":e,"p50_us":..,"p90_us":..,"p99_us":..,"max_us":..,"max_gap_ms":..}
 * A stall is a stream that did not complete within timeout_s of its start.
 *
 * Build: cc -O2 -o ttft ttft.c
 */
#define _GNU_SOURCE
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
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { S_IDLE, S_CONNECTING, S_READY, S_SENDING, S_HEAD, S_BODY, S_DONE, S_FAILED };
enum { B_CL, B_CHUNK_SIZE, B_CHUNK_DATA, B_CHUNK_CRLF, B_CHUNK_TRAILER, B_CLOSE };

typedef struct {
    int fd, state, bstate, status;
    size_t sent;
    size_t need;
    uint64_t t_start, t_sent, t_first, t_last_read, max_gap, t_end;
    int got_first, saw_done, ok;
    char *in;
    size_t in_len, in_cap;
    char tail[32];
    size_t tail_len;
} conn_t;

static char *g_req;
static size_t g_req_len;
static int g_ep;
static struct sockaddr_in g_addr;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void in_reserve(conn_t *c, size_t extra) {
    if (c->in_len + extra <= c->in_cap) return;
    size_t nc = c->in_cap ? c->in_cap : 16384;
    while (nc < c->in_len + extra) nc *= 2;
    c->in = realloc(c->in, nc);
    c->in_cap = nc;
}

static int do_connect(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { perror("socket"); return -1; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(c->fd, (struct sockaddr *)&g_addr, sizeof g_addr);
    if (r < 0 && errno != EINPROGRESS) { perror("connect"); close(c->fd); c->fd = -1; return -1; }
    c->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static void set_events(conn_t *c, uint32_t e) {
    struct epoll_event ev = {.events = e, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void finish(conn_t *c, int ok) {
    c->t_end = now_ns();
    c->ok = ok && c->status == 200 && c->saw_done;
    c->state = ok ? S_DONE : S_FAILED;
    if (!ok) {
        epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

static void body_bytes(conn_t *c, const char *p, size_t n, uint64_t t) {
    if (n == 0) return;
    if (!c->got_first) { c->got_first = 1; c->t_first = t; }
    /* search "data: [DONE]" across read boundaries */
    static const char pat[] = "data: [DONE]";
    const size_t pl = sizeof pat - 1;
    if (c->saw_done) return;
    char tmp[64];
    size_t head = n < pl ? n : pl;
    memcpy(tmp, c->tail, c->tail_len);
    memcpy(tmp + c->tail_len, p, head);
    if (memmem(tmp, c->tail_len + head, pat, pl) || memmem(p, n, pat, pl)) c->saw_done = 1;
    /* keep last pl-1 bytes */
    if (n >= pl - 1) {
        memcpy(c->tail, p + n - (pl - 1), pl - 1);
        c->tail_len = pl - 1;
    } else {
        size_t keep = c->tail_len + n;
        char t2[64];
        memcpy(t2, c->tail, c->tail_len);
        memcpy(t2 + c->tail_len, p, n);
        if (keep > pl - 1) { memmove(t2, t2 + keep - (pl - 1), pl - 1); keep = pl - 1; }
        memcpy(c->tail, t2, keep);
        c->tail_len = keep;
    }
}

/* parse what we have; returns 1 when the response is complete */
static int parse(conn_t *c, uint64_t t) {
    size_t off = 0;
    for (;;) {
        char *s = c->in + off;
        size_t avail = c->in_len - off;
        if (c->state == S_HEAD) {
            char *e = memmem(s, avail, "\r\n\r\n", 4);
            if (!e) break;
            c->status = atoi(s + 9);
            long cl = -1;
            int chunked = 0;
            for (char *p = memchr(s, '\n', (size_t)(e - s)); p && p < e; p = memchr(p, '\n', (size_t)(e + 2 - p))) {
                p++;
                if (strncasecmp(p, "content-length:", 15) == 0) cl = atol(p + 15);
                else if (strncasecmp(p, "transfer-encoding:", 18) == 0) {
                    char *le = memchr(p, '\r', (size_t)(e + 2 - p));
                    if (le && memmem(p, (size_t)(le - p), "chunked", 7)) chunked = 1;
                }
            }
            off += (size_t)(e - s) + 4;
            c->state = S_BODY;
            if (chunked) c->bstate = B_CHUNK_SIZE;
            else if (cl >= 0) { c->bstate = B_CL; c->need = (size_t)cl; if (cl == 0) { off = c->in_len; goto complete; } }
            else c->bstate = B_CLOSE;
            continue;
        }
        if (c->state != S_BODY) break;
        switch (c->bstate) {
        case B_CLOSE:
            body_bytes(c, s, avail, t);
            off += avail;
            goto out;
        case B_CL: {
            size_t take = avail < c->need ? avail : c->need;
            body_bytes(c, s, take, t);
            off += take;
            c->need -= take;
            if (c->need == 0) goto complete;
            goto out;
        }
        case B_CHUNK_SIZE: {
            char *le = memmem(s, avail, "\r\n", 2);
            if (!le) goto out;
            size_t sz = strtoul(s, NULL, 16);
            off += (size_t)(le - s) + 2;
            if (sz == 0) c->bstate = B_CHUNK_TRAILER;
            else { c->need = sz; c->bstate = B_CHUNK_DATA; }
            break;
        }
        case B_CHUNK_DATA: {
            if (avail == 0) goto out;
            size_t take = avail < c->need ? avail : c->need;
            body_bytes(c, s, take, t);
            off += take;
            c->need -= take;
            if (c->need == 0) c->bstate = B_CHUNK_CRLF;
            break;
        }
        case B_CHUNK_CRLF:
            if (avail < 2) goto out;
            off += 2;
            c->bstate = B_CHUNK_SIZE;
            break;
        case B_CHUNK_TRAILER: {
            char *le = memmem(s, avail, "\r\n", 2);
            if (!le) goto out;
            off += (size_t)(le - s) + 2;
            if (le == s) goto complete;
            break;
        }
        }
    }
out:
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
complete:
    c->in_len = 0;
    return 1;
}

static void start_request(conn_t *c, uint64_t t) {
    c->state = S_SENDING;
    c->sent = 0;
    c->status = 0;
    c->got_first = c->saw_done = c->ok = 0;
    c->tail_len = 0;
    c->in_len = 0;
    c->max_gap = 0;
    c->t_sent = t;
    c->t_last_read = t;
    set_events(c, EPOLLIN | EPOLLOUT);
}
static void on_event(conn_t *c, uint32_t ev, int *remaining);

static void on_event(conn_t *c, uint32_t ev, int *remaining) {
    uint64_t t = now_ns();
    if (c->state == S_SENDING && c->sent == 0) c->t_sent = c->t_last_read = t;
    if (c->state == S_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) { fprintf(stderr, "ttft: connect failed\n"); c->state = S_FAILED; (*remaining)--; return; }
        if (ev & EPOLLOUT) { c->state = S_READY; set_events(c, EPOLLIN); (*remaining)--; }
        return;
    }
    if (c->state == S_SENDING && (ev & EPOLLOUT)) {
        while (c->sent < g_req_len) {
            ssize_t n = write(c->fd, g_req + c->sent, g_req_len - c->sent);
            if (n > 0) { c->sent += (size_t)n; continue; }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return;
            finish(c, 0);
            (*remaining)--;
            return;
        }
        c->state = S_HEAD;
        set_events(c, EPOLLIN);
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->state == S_READY || c->state == S_DONE) { /* unexpected data / close on idle conn */
            char b[256];
            ssize_t n = read(c->fd, b, sizeof b);
            if (n <= 0) { epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); c->fd = -1; c->state = S_IDLE; }
            return;
        }
        for (;;) {
            in_reserve(c, 65536);
            ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
            if (n > 0) {
                uint64_t gap = t - c->t_last_read;
                if (c->got_first && gap > c->max_gap) c->max_gap = gap;
                c->t_last_read = t;
                c->in_len += (size_t)n;
                if (c->state == S_HEAD || c->state == S_BODY) {
                    if (parse(c, t)) { finish(c, 1); (*remaining)--; return; }
                }
                continue;
            }
            if (n == 0) {
                int ok = (c->state == S_BODY && c->bstate == B_CLOSE);
                if (ok) c->state = S_DONE;
                c->t_end = t;
                c->ok = ok && c->status == 200 && c->saw_done;
                epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                if (!ok) c->state = S_FAILED;
                (*remaining)--;
                return;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            finish(c, 0);
            (*remaining)--;
            return;
        }
    }
}

int main(int argc, char **argv) {
    int K = 64, rounds = 2, ramp_ms = 0, timeout_s = 30, opt;
    const char *bodyfile = NULL;
    char *hdrs = calloc(1, 1);
    size_t hlen = 0;
    while ((opt = getopt(argc, argv, "c:R:r:t:b:H:")) != -1) {
        switch (opt) {
        case 'c': K = atoi(optarg); break;
        case 'R': rounds = atoi(optarg); break;
        case 'r': ramp_ms = atoi(optarg); break;
        case 't': timeout_s = atoi(optarg); break;
        case 'b': bodyfile = optarg; break;
        case 'H': {
            size_t l = strlen(optarg);
            hdrs = realloc(hdrs, hlen + l + 3);
            memcpy(hdrs + hlen, optarg, l);
            memcpy(hdrs + hlen + l, "\r\n", 3);
            hlen += l + 2;
            break;
        }
        default: goto usage;
        }
    }
    if (optind >= argc || !bodyfile || K < 1 || rounds < 1) {
    usage:
        fprintf(stderr, "usage: ttft -c K [-R rounds] [-r ramp_ms] [-t timeout_s] -b body.json [-H 'k: v']... http://127.0.0.1:PORT/path\n");
        return 2;
    }
    const char *url = argv[optind];
    char host[256] = {0}, path[1024] = "/";
    int port = 80;
    if (sscanf(url, "http://%255[^:/]:%d%1023s", host, &port, path) < 2) { fprintf(stderr, "bad url\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);

    FILE *f = fopen(bodyfile, "rb");
    if (!f) { perror(bodyfile); return 2; }
    fseek(f, 0, SEEK_END);
    long blen = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *body = malloc((size_t)blen);
    if (fread(body, 1, (size_t)blen, f) != (size_t)blen) { perror("read"); return 2; }
    fclose(f);
    g_req = malloc((size_t)blen + hlen + 1024);
    int n = sprintf(g_req,
                    "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
                    "Content-Length: %ld\r\n%s\r\n",
                    path, host, port, blen, hdrs);
    memcpy(g_req + n, body, (size_t)blen);
    g_req_len = (size_t)n + (size_t)blen;

    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) {
        struct hostent *he = gethostbyname(host);
        if (!he) { fprintf(stderr, "cannot resolve %s\n", host); return 2; }
        memcpy(&g_addr.sin_addr, he->h_addr_list[0], 4);
    }
    g_ep = epoll_create1(0);
    conn_t *cs = calloc((size_t)K, sizeof *cs);
    int remaining = K;
    for (int i = 0; i < K; i++) if (do_connect(&cs[i]) < 0) return 1;
    struct epoll_event evs[1024];
    uint64_t dl = now_ns() + 10ull * 1000000000ull;
    while (remaining > 0 && now_ns() < dl) {
        int m = epoll_wait(g_ep, evs, 1024, 100);
        for (int i = 0; i < m; i++) on_event(evs[i].data.ptr, evs[i].events, &remaining);
    }
    int connected = 0;
    for (int i = 0; i < K; i++) connected += cs[i].state == S_READY;
    if (connected < K) fprintf(stderr, "ttft: only %d/%d connections established\n", connected, K);

    uint64_t *tt = malloc((size_t)K * sizeof *tt);
    int ok = 0, stalls = 0, errors = 0, nt = 0;
    uint64_t max_gap = 0;
    for (int r = 0; r < rounds; r++) {
        int active = 0;
        for (int i = 0; i < K; i++) {
            if (cs[i].state == S_IDLE || cs[i].state == S_FAILED) {
                if (cs[i].fd >= 0 && cs[i].state == S_FAILED) { close(cs[i].fd); }
                cs[i].fd = -1;
                /* reconnect synchronously-ish: will be counted as connecting, then started */
                if (do_connect(&cs[i]) < 0) return 1;
                int rem = 1;
                uint64_t d2 = now_ns() + 5000000000ull;
                while (rem > 0 && now_ns() < d2) {
                    int m = epoll_wait(g_ep, evs, 1, 100);
                    for (int j = 0; j < m; j++) {
                        conn_t *cc = evs[j].data.ptr;
                        if (cc == &cs[i]) on_event(cc, evs[j].events, &rem);
                    }
                }
            }
            if (cs[i].state == S_READY || cs[i].state == S_DONE) active++;
        }
        uint64_t t0 = now_ns();
        for (int i = 0; i < K; i++) {
            cs[i].t_start = t0 + (uint64_t)ramp_ms * 1000000ull * (uint64_t)i / (uint64_t)K;
            if (cs[i].state == S_DONE) cs[i].state = S_READY;
        }
        int next = 0, pending = active;
        uint64_t round_dl = t0 + (uint64_t)ramp_ms * 1000000ull + (uint64_t)timeout_s * 1000000000ull;
        while ((pending > 0 || next < K) && now_ns() < round_dl) {
            uint64_t t = now_ns();
            while (next < K && cs[next].t_start <= t) {
                if (cs[next].state == S_READY) {
                    start_request(&cs[next], t);
                    on_event(&cs[next], EPOLLOUT, &pending); /* write at once */
                }
                next++;
            }
            int wait_ms = 50;
            if (next < K) {
                int64_t d = (int64_t)(cs[next].t_start - t) / 1000000;
                wait_ms = d < 0 ? 0 : (int)d;
                if (wait_ms > 50) wait_ms = 50;
            }
            int m = epoll_wait(g_ep, evs, 1024, wait_ms);
            for (int i = 0; i < m; i++) on_event(evs[i].data.ptr, evs[i].events, &pending);
        }
        if (r == rounds - 1) {
            for (int i = 0; i < K; i++) {
                conn_t *c = &cs[i];
                if (c->state == S_DONE || (c->state == S_FAILED && c->t_end)) {
                    if (c->ok) {
                        ok++;
                        tt[nt++] = c->t_first - c->t_sent;
                        if (c->max_gap > max_gap) max_gap = c->max_gap;
                    } else errors++;
                } else stalls++;
            }
        } else {
            /* warm-up round: anything unfinished is closed */
            for (int i = 0; i < K; i++)
                if (cs[i].state != S_DONE && cs[i].state != S_READY && cs[i].fd >= 0) {
                    epoll_ctl(g_ep, EPOLL_CTL_DEL, cs[i].fd, NULL);
                    close(cs[i].fd);
                    cs[i].fd = -1;
                    cs[i].state = S_IDLE;
                }
        }
        for (int i = 0; i < K; i++) cs[i].t_end = 0;
    }
    qsort(tt, (size_t)nt, sizeof *tt, cmp_u64);
#define PCT(p) (nt ? (double)tt[(size_t)((p) / 100.0 * (nt - 1) + 0.5)] / 1000.0 : 0.0)
    printf("streams=%d ok=%d stalls=%d errors=%d ttft_us p50=%.0f p90=%.0f p99=%.0f max=%.0f max_gap_ms=%.1f\n", K, ok,
           stalls, errors, PCT(50), PCT(90), PCT(99), nt ? tt[nt - 1] / 1000.0 : 0.0, max_gap / 1e6);
    printf("TTFT {\"streams\":%d,\"ok\":%d,\"stalls\":%d,\"errors\":%d,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
           "\"max_us\":%.1f,\"max_gap_ms\":%.2f}\n",
           K, ok, stalls, errors, PCT(50), PCT(90), PCT(99), nt ? tt[nt - 1] / 1000.0 : 0.0, max_gap / 1e6);
    return (stalls || errors) ? 1 : 0;
}
