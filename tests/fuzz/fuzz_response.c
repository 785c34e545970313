/* fuzz_response.c — upstream response heads and chunked bodies, the bytes
 * a broken or hostile model server controls (upstream/h1.c's input). */
#include <stdint.h>
#include <string.h>

#include "http/http_parse.h"

static bool count_line(void *ctx, const char *line, size_t len)
{
	size_t *total = ctx;
	UMB_BUG_ON(len == 0 || line[len - 1] != '\n');
	*total += len;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	const char *e = size >= 4 ? memmem(p, size, "\r\n\r\n", 4) : NULL;
	if (!e)
		return 0;
	size_t head = (size_t)(e - p) + 4;
	struct http_response_head h;
	size_t total = 0;
	if (http_parse_response(p, head, &h, count_line, &total))
		return 0;
	UMB_BUG_ON(total != head);            /* every byte belongs to a line */
	UMB_BUG_ON(h.status < 100 || h.status > 999);
	if (!h.chunked)
		return 0;
	/* decode the rest whole and split in two: same payload */
	struct http_chunked c1, c2;
	struct buf o1, o2;
	buf_init(&o1, 1 << 20);
	buf_init(&o2, 1 << 20);
	http_chunked_init(&c1);
	http_chunked_init(&c2);
	size_t used = 0, rest = size - head;
	int r1 = http_chunked_decode(&c1, p + head, rest, &used, &o1);
	UMB_BUG_ON(used > rest);
	size_t cut = rest ? (size_t)data[0] % (rest + 1) : 0, u1 = 0, u2 = 0;
	int r2 = http_chunked_decode(&c2, p + head, cut, &u1, &o2);
	if (r2 == 0)
		r2 = http_chunked_decode(&c2, p + head + u1, rest - u1, &u2, &o2);
	if (r1 == 1 && r2 == 1)
		UMB_BUG_ON(o1.n != o2.n || (o1.n && memcmp(o1.p, o2.p, o1.n)));
	buf_clear(&o1);
	buf_clear(&o2);
	return 0;
}
