/* canon.h — the canonical chat request, response and stream events that
 * every client dialect and upstream wire format translates through
 * (DESIGN.md "parse once into the canonical request").
 *
 * The shape follows the Anthropic Messages model, the richest of the
 * formats: a system text apart from the turns, turns that alternate user /
 * assistant, and content as typed parts. Tool results are parts of a user
 * turn (Anthropic tool_result, Bedrock toolResult, Gemini functionResponse);
 * the OpenAI side turns them into `role: tool` messages and back. A tool
 * result is never flattened into user text: agents loop forever on that.
 *
 * Same dialect on both sides (OpenAI client → openai upstream, Anthropic
 * client → anthropic upstream) never builds a canonical form: the body
 * passes through with surgical edits. Everything else goes
 *   client body → canon_req → upstream wire body,
 *   upstream answer → canon_resp or canon_ev stream → client dialect.
 *
 * Strings are views: into the client's body, or decoded copies in the
 * request arena. `text` fields hold decoded UTF-8; `args` and `schema`
 * hold JSON texts (never a quoted string). */
#ifndef UMB_CANON_H
#define UMB_CANON_H

#include "core/core.h"

/** The client's API dialect (which ingress it came through). */
enum api_dialect { DIALECT_OPENAI, DIALECT_ANTHROPIC };

enum canon_role { CANON_USER, CANON_ASSISTANT };

enum canon_part_type {
	CANON_TEXT,        /* text */
	CANON_IMAGE,       /* media_type + data (base64), or url */
	CANON_TOOL_CALL,   /* assistant: id, name, args (JSON text) */
	CANON_TOOL_RESULT, /* user: id (the call it answers), name (when known), text, is_error */
};

struct canon_part {
	enum canon_part_type type;
	struct str text;       /* TEXT, TOOL_RESULT: decoded UTF-8 */
	struct str media_type; /* IMAGE: "image/png", ... */
	struct str data;       /* IMAGE: base64 payload, without a data: prefix */
	struct str url;        /* IMAGE: an http(s) URL when not inline */
	struct str id;         /* TOOL_CALL: call id; TOOL_RESULT: the call's id */
	struct str name;       /* TOOL_CALL: function name; TOOL_RESULT: the called
	                        * function's name (filled from the earlier call
	                        * when the dialect does not carry it) */
	struct str args;       /* TOOL_CALL: arguments as a JSON text, e.g. {"a":1} */
	bool is_error;         /* TOOL_RESULT */
};

struct canon_msg {
	enum canon_role role;
	struct canon_part *parts;
	size_t n_parts;
};

struct canon_tool {
	struct str name, description; /* decoded */
	struct str schema;            /* JSON Schema object as JSON text ("{}" if none) */
};

enum canon_tool_choice {
	CANON_TC_UNSET, /* not given: the upstream's default (auto when tools exist) */
	CANON_TC_AUTO,
	CANON_TC_NONE,
	CANON_TC_ANY,   /* OpenAI "required", Anthropic "any", Gemini ANY */
	CANON_TC_TOOL,  /* this one tool: tool_choice_name */
};

#define CANON_MAX_STOP 8

struct canon_req {
	struct str model;   /* as the client sent it (decoded) */
	struct str system;  /* system / developer text joined by "\n\n"; empty: none */
	struct canon_msg *msgs;
	size_t n_msgs;
	struct canon_tool *tools;
	size_t n_tools;
	enum canon_tool_choice tool_choice;
	struct str tool_choice_name;
	bool no_parallel_tools;   /* parallel_tool_calls: false / disable_parallel_tool_use */
	int64_t max_tokens;       /* 0: not given */
	bool has_temperature, has_top_p, has_top_k;
	double temperature, top_p;
	int64_t top_k;
	struct str stop[CANON_MAX_STOP]; /* decoded stop sequences */
	size_t n_stop;
	bool stream;
	bool include_usage;       /* OpenAI stream_options.include_usage */
	struct str user;          /* end-user id (OpenAI user, Anthropic metadata.user_id) */
};

enum canon_finish {
	CANON_FIN_NONE,          /* not (yet) known */
	CANON_FIN_STOP,          /* OpenAI stop, Anthropic end_turn */
	CANON_FIN_LENGTH,        /* max_tokens */
	CANON_FIN_TOOL_CALLS,    /* tool_use */
	CANON_FIN_STOP_SEQUENCE, /* OpenAI says stop; Anthropic stop_sequence */
	CANON_FIN_CONTENT_FILTER,/* refusal / safety */
};

/** Token counts as the upstream reported them. prompt_tokens is every
 * input token, cached ones included (Anthropic's input_tokens +
 * cache_read_input_tokens + cache_creation_input_tokens). */
struct canon_usage {
	bool seen;
	uint64_t prompt_tokens, completion_tokens;
	uint64_t cached_prompt_tokens;  /* read from a prompt cache: part of prompt_tokens */
	uint64_t cache_write_tokens;    /* written to a prompt cache: part of prompt_tokens */
};

/** A complete (non-stream) answer. parts holds CANON_TEXT and
 * CANON_TOOL_CALL in the order the model produced them. */
struct canon_resp {
	struct str id, model;
	struct canon_part *parts;
	size_t n_parts;
	enum canon_finish finish;
	struct str stop_sequence; /* which one matched, when known */
	struct canon_usage usage;
};

/** One stream event. Encoders may rely on this order:
 *   START, then any of TEXT / TOOL_START / TOOL_ARGS, then FINISH,
 *   USAGE at any point after START (cumulative: the last one counts),
 *   END last (the upstream finished the stream properly).
 * A tool call's TOOL_ARGS follow its TOOL_START; calls may interleave by
 * index (OpenAI parallel calls). */
enum canon_ev_type {
	CEV_START,      /* id, model */
	CEV_TEXT,       /* text: a delta */
	CEV_TOOL_START, /* index (0, 1, ... per response), id, name */
	CEV_TOOL_ARGS,  /* index, text: a fragment of the arguments' JSON text */
	CEV_FINISH,     /* finish, stop_sequence */
	CEV_USAGE,      /* usage (cumulative) */
	CEV_END,
};

struct canon_ev {
	enum canon_ev_type type;
	struct str id, model, name, text, stop_sequence;
	int index;
	enum canon_finish finish;
	struct canon_usage usage;
};

/** Where a stream decoder delivers events; views in an event live only
 * during the call. A nonzero return stops the decoder (it returns it). */
struct canon_sink {
	int (*emit)(void *ctx, const struct canon_ev *ev);
	void *ctx;
};

/** Emit a built event; returns the sink's answer. */
static inline int canon_emit(const struct canon_sink *s, const struct canon_ev *ev)
{
	return s->emit(s->ctx, ev);
}

/* ---- helpers shared by the translators (providers/canon.c) ---- */

/** A JSON string's decoded text: a view into the JSON text itself when
 * it has no escapes, else a decoded copy in the arena. Either way it lives
 * as long as both; a caller that reuses the JSON's buffer must copy first.
 * NULL-safe: a non-string gives an empty str. */
struct str canon_decode(struct arena *a, const void *json_val /* struct json_val * */);
/** Fill each TOOL_RESULT part's empty name from the TOOL_CALL with the
 * same id earlier in the conversation (Gemini needs names, not ids). */
void canon_fill_result_names(struct canon_req *req);
/** Append a double as the shortest text that reads back the same
 * (0.9, not 0.90000000000000002). */
int canon_write_double(struct buf *b, double v);
/** OpenAI finish_reason / Anthropic stop_reason names and back. Unknown
 * names map to CANON_FIN_STOP. */
const char *canon_finish_openai(enum canon_finish f);
const char *canon_finish_anthropic(enum canon_finish f);
enum canon_finish canon_finish_from_openai(struct str s);
enum canon_finish canon_finish_from_anthropic(struct str s);

#endif
