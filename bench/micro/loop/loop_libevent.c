/* Minimal keep-alive HTTP responder on libevent 2.1: event_new on raw fds,
 * no bufferevent. Single thread. usage: loop_libevent PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common.h"

typedef struct {
    int fd;
    struct event *rev, *wev;
    char in[16384];
    size_t in_len;
    char *out;         /* pending output when a write was short */
    size_t out_len, out_off, out_cap;
} conn_t;

static struct event_base *base;

static void conn_free(conn_t *c) {
    event_free(c->rev);
    event_free(c->wev);
    close(c->fd);
    free(c->out);
    free(c);
}

static int flush(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) { c->out_off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) { event_add(c->wev, NULL); return 0; }
        return -1;
    }
    c->out_len = c->out_off = 0;
    return 0;
}

static void queue(conn_t *c, const char *p, size_t n) {
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void on_write(evutil_socket_t fd, short ev, void *arg) {
    (void)fd; (void)ev;
    conn_t *c = arg;
    if (flush(c) < 0) conn_free(c);
}

static void on_read(evutil_socket_t fd, short ev, void *arg) {
    (void)ev;
    conn_t *c = arg;
    ssize_t n = read(fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_free(c);
        return;
    }
    c->in_len += (size_t)n;
    int k = take_requests(c->in, &c->in_len);
    if (c->in_len == sizeof c->in) { conn_free(c); return; }
    if (k == 0) return;
    if (c->out_len == 0 && k == 1) { /* fast path: write straight from the canned response */
        ssize_t w = write(fd, RESP, RESP_LEN);
        if (w == (ssize_t)RESP_LEN) return;
        if (w < 0 && errno != EAGAIN) { conn_free(c); return; }
        queue(c, RESP + (w > 0 ? w : 0), RESP_LEN - (size_t)(w > 0 ? w : 0));
        event_add(c->wev, NULL);
        return;
    }
    while (k--) queue(c, RESP, RESP_LEN);
    if (flush(c) < 0) conn_free(c);
}

static void on_accept(evutil_socket_t ls, short ev, void *arg) {
    (void)ev; (void)arg;
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        c->fd = fd;
        c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
        c->wev = event_new(base, fd, EV_WRITE, on_write, c);
        event_add(c->rev, NULL);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 18300;
    signal(SIGPIPE, SIG_IGN);
    resp_init();
    base = event_base_new();
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1024) < 0) { perror("bind"); return 1; }
    struct event *lev = event_new(base, ls, EV_READ | EV_PERSIST, on_accept, NULL);
    event_add(lev, NULL);
    fprintf(stderr, "libevent %s (%s) on %d\n", event_get_version(), event_base_get_method(base), port);
    event_base_dispatch(base);
    return 0;
}
