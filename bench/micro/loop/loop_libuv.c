/* Minimal keep-alive HTTP responder on libuv: uv_tcp_t, uv_read_start,
 * uv_try_write with a uv_write fallback. Single thread. usage: loop_libuv PORT */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <uv.h>
#include "common.h"

typedef struct {
    uv_tcp_t h;
    char in[16384];
    size_t in_len;
} conn_t;

static uv_loop_t *loop;

static void on_close(uv_handle_t *h) { free(h); }

static void alloc_cb(uv_handle_t *h, size_t sug, uv_buf_t *b) {
    (void)sug;
    conn_t *c = (conn_t *)h;
    *b = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof c->in - c->in_len));
}

static void write_done(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

static void send_resp(conn_t *c, int k) {
    while (k--) {
        uv_buf_t b = uv_buf_init((char *)RESP, (unsigned)RESP_LEN);
        int n = uv_try_write((uv_stream_t *)&c->h, &b, 1);
        if (n == (int)RESP_LEN) continue;
        if (n < 0 && n != UV_EAGAIN) { uv_close((uv_handle_t *)&c->h, on_close); return; }
        if (n < 0) n = 0;
        uv_write_t *w = malloc(sizeof *w);
        b = uv_buf_init((char *)RESP + n, (unsigned)(RESP_LEN - (size_t)n));
        uv_write(w, (uv_stream_t *)&c->h, &b, 1, write_done);
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    (void)b;
    conn_t *c = (conn_t *)s;
    if (n < 0) { uv_close((uv_handle_t *)s, on_close); return; }
    if (n == 0) return;
    c->in_len += (size_t)n;
    int k = take_requests(c->in, &c->in_len);
    if (c->in_len == sizeof c->in) { uv_close((uv_handle_t *)s, on_close); return; }
    if (k) send_resp(c, k);
}

static void on_conn(uv_stream_t *srv, int status) {
    if (status < 0) return;
    conn_t *c = calloc(1, sizeof *c);
    uv_tcp_init(loop, &c->h);
    if (uv_accept(srv, (uv_stream_t *)&c->h) == 0) {
        uv_tcp_nodelay(&c->h, 1);
        uv_read_start((uv_stream_t *)&c->h, alloc_cb, on_read);
    } else {
        uv_close((uv_handle_t *)&c->h, on_close);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 18301;
    signal(SIGPIPE, SIG_IGN);
    resp_init();
    loop = uv_default_loop();
    uv_tcp_t srv;
    uv_tcp_init(loop, &srv);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    if (uv_tcp_bind(&srv, (const struct sockaddr *)&sa, 0) || uv_listen((uv_stream_t *)&srv, 1024, on_conn)) {
        fprintf(stderr, "bind/listen failed\n");
        return 1;
    }
    fprintf(stderr, "libuv %s on %d\n", uv_version_string(), port);
    return uv_run(loop, UV_RUN_DEFAULT);
}
