/* Shared by the event-loop micro-benchmark responders: the canned response
 * (a 700-byte chat.completion, keep-alive) and a request counter that finds
 * complete request heads (wrk sends GETs without a body). */
#ifndef LOOP_COMMON_H
#define LOOP_COMMON_H
#include <stdio.h>
#include <string.h>

static const char BODY[] =
    "{\"id\":\"chatcmpl-bench0001\",\"object\":\"chat.completion\",\"created\":1700000000,"
    "\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"The gateway forwards each request to the model server, keeps the connection alive "
    "and returns the answer with token usage so spend is known. The gateway forwards each request to "
    "the model server, keeps the connection alive and returns the answer with token usage.\"},"
    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":250,"
    "\"completion_tokens\":48,\"total_tokens\":298}}";

static char RESP[2048];
static size_t RESP_LEN;

static void resp_init(void) {
    RESP_LEN = (size_t)snprintf(RESP, sizeof RESP,
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                                sizeof BODY - 1, BODY);
}

/* Consumes complete request heads from buf[0..*len); returns how many. */
static int take_requests(char *buf, size_t *len) {
    int n = 0;
    size_t off = 0;
    for (;;) {
        char *e = memmem(buf + off, *len - off, "\r\n\r\n", 4);
        if (!e) break;
        off = (size_t)(e - buf) + 4;
        n++;
    }
    if (off) {
        memmove(buf, buf + off, *len - off);
        *len -= off;
    }
    return n;
}
#endif
