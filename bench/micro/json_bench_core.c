/* json_bench_core.c — the core/json side of json_bench.c, in its own
 * translation unit because jansson.h and core/json.h share names. */
#include "core/json.h"

int bench_core_parse_top(const char *p, size_t n);
int bench_core_parse(const char *p, size_t n);

/* The hot path: validate and record the top-level members in one pass. */
int bench_core_parse_top(const char *p, size_t n)
{
	struct json_member m[32];
	struct json_val root;
	size_t nm;

	return json_parse_top(p, n, m, UMB_ARRAY_LEN(m), &nm, &root, NULL);
}

int bench_core_parse(const char *p, size_t n)
{
	struct json_val root;

	return json_parse(p, n, &root, NULL);
}
