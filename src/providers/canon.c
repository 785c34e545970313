/* canon.c — helpers every translator shares (canon.h). */
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "providers/canon.h"

struct str canon_decode(struct arena *a, const void *json_val)
{
	const struct json_val *v = json_val;
	if (!v || v->type != JSON_STRING)
		return str_make("", 0);
	struct str raw = str_make(v->raw.p + 1, v->raw.n - 2);
	if (!memchr(raw.p, '\\', raw.n))
		return raw; /* no escapes: the body's own bytes */
	struct buf b;
	buf_init(&b, 0);
	json_str_decode(*v, &b);
	struct str out = str_make(arena_strndup(a, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return out;
}

/* A tool call seen in the conversation: its id, name and turn. */
struct call_ref {
	struct str id, name;
	size_t msg;
};

static int call_ref_cmp(const void *a, const void *b)
{
	const struct call_ref *x = a, *y = b;
	size_t n = UMB_MIN(x->id.n, y->id.n);
	int c = n ? memcmp(x->id.p, y->id.p, n) : 0;
	if (c)
		return c;
	if (x->id.n != y->id.n)
		return x->id.n < y->id.n ? -1 : 1;
	return x->msg < y->msg ? -1 : x->msg > y->msg; /* stable by turn */
}

/* Sorted by (id, turn), so a result's name is a binary search away:
 * linear scans were quadratic on hostile bodies (80k calls and 80k
 * results took 30 s of a worker). */
void canon_fill_result_names(struct canon_req *req)
{
	size_t n = 0, k = 0;
	bool want = false;
	for (size_t i = 0; i < req->n_msgs; i++)
		for (size_t j = 0; j < req->msgs[i].n_parts; j++) {
			const struct canon_part *p = &req->msgs[i].parts[j];
			n += p->type == CANON_TOOL_CALL;
			want |= p->type == CANON_TOOL_RESULT && !p->name.n;
		}
	if (!n || !want)
		return;
	struct call_ref *refs = umb_calloc(n, sizeof *refs);
	for (size_t i = 0; i < req->n_msgs; i++)
		for (size_t j = 0; j < req->msgs[i].n_parts; j++) {
			const struct canon_part *p = &req->msgs[i].parts[j];
			if (p->type == CANON_TOOL_CALL)
				refs[k++] = (struct call_ref){ p->id, p->name, i };
		}
	qsort(refs, n, sizeof *refs, call_ref_cmp);
	for (size_t i = 0; i < req->n_msgs; i++) {
		for (size_t j = 0; j < req->msgs[i].n_parts; j++) {
			struct canon_part *p = &req->msgs[i].parts[j];
			if (p->type != CANON_TOOL_RESULT || p->name.n)
				continue;
			/* the last call with this id in an earlier turn */
			struct call_ref key = { p->id, STR_NULL, i };
			size_t lo = 0, hi = n; /* first ref >= (id, turn i) */
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (call_ref_cmp(&refs[mid], &key) < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo > 0 && str_eq(refs[lo - 1].id, p->id))
				p->name = refs[lo - 1].name;
		}
	}
	free(refs);
}

const char *canon_finish_openai(enum canon_finish f)
{
	switch (f) {
	case CANON_FIN_LENGTH: return "length";
	case CANON_FIN_TOOL_CALLS: return "tool_calls";
	case CANON_FIN_CONTENT_FILTER: return "content_filter";
	default: return "stop";
	}
}

const char *canon_finish_anthropic(enum canon_finish f)
{
	switch (f) {
	case CANON_FIN_LENGTH: return "max_tokens";
	case CANON_FIN_TOOL_CALLS: return "tool_use";
	case CANON_FIN_STOP_SEQUENCE: return "stop_sequence";
	case CANON_FIN_CONTENT_FILTER: return "refusal";
	default: return "end_turn";
	}
}

enum canon_finish canon_finish_from_openai(struct str s)
{
	if (str_eq(s, STR("length")))
		return CANON_FIN_LENGTH;
	if (str_eq(s, STR("tool_calls")) || str_eq(s, STR("function_call")))
		return CANON_FIN_TOOL_CALLS;
	if (str_eq(s, STR("content_filter")))
		return CANON_FIN_CONTENT_FILTER;
	return CANON_FIN_STOP;
}

enum canon_finish canon_finish_from_anthropic(struct str s)
{
	if (str_eq(s, STR("max_tokens")) || str_eq(s, STR("model_context_window_exceeded")))
		return CANON_FIN_LENGTH;
	if (str_eq(s, STR("tool_use")))
		return CANON_FIN_TOOL_CALLS;
	if (str_eq(s, STR("stop_sequence")))
		return CANON_FIN_STOP_SEQUENCE;
	if (str_eq(s, STR("refusal")))
		return CANON_FIN_CONTENT_FILTER;
	return CANON_FIN_STOP;
}

int canon_write_double(struct buf *b, double v)
{
	char tmp[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	return buf_append_cstr(b, tmp);
}
