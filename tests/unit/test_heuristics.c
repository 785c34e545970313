/* test_heuristics.c — unit tests for routing/heuristics.c: every rule
 * condition alone and combined, first match wins, keyword word boundaries
 * (punctuation keywords, whitespace runs, text edges, non-ASCII and
 * malformed neighbours), case folding, exclude, scope, regex errors and
 * limits, custom detectors (distinct counts, slots, masks), invalid UTF-8,
 * the explain line, and the keyword automaton against a naive matcher on
 * random texts long enough for the interleaved scan. Rules are built by
 * hand as struct cfg_rule values (the YAML loader is tested apart). Runs
 * under ASan+UBSan too (make BUILD=build-asan SANITIZE=1 unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>

#include <cmocka.h>

#include "routing/heuristics.h"

#define LIST(...) ((char *[]){ __VA_ARGS__ })
#define NLIST(...) (sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *))
#define KW(...) .keywords = LIST(__VA_ARGS__), .n_keywords = NLIST(__VA_ARGS__)
#define EX(...) .exclude = LIST(__VA_ARGS__), .n_exclude = NLIST(__VA_ARGS__)
#define RE(...) .regex = LIST(__VA_ARGS__), .n_regex = NLIST(__VA_ARGS__)
#define SYS(...) .system_prompt_contains = LIST(__VA_ARGS__), \
		 .n_system_prompt_contains = NLIST(__VA_ARGS__)
#define DETS(...) .detectors = LIST(__VA_ARGS__), .n_detectors = NLIST(__VA_ARGS__)

static char err[512];

/* Compile rules (and optional custom detectors); must succeed. */
static struct heuristics *build(struct cfg_rule *rules, size_t n,
				struct cfg_detector *dets, size_t nd)
{
	struct cfg_routing rt = { .enabled = true, .rules = rules, .n_rules = n,
				  .detectors = dets, .n_detectors = nd };
	struct heuristics *h = heur_compile(&rt, err, sizeof(err));

	if (!h)
		fprintf(stderr, "compile: %s\n", err);
	assert_non_null(h);
	return h;
}

/* Compile rules that must fail; returns the message. */
static const char *build_err(struct cfg_rule *rules, size_t n,
			     struct cfg_detector *dets, size_t nd)
{
	struct cfg_routing rt = { .enabled = true, .rules = rules, .n_rules = n,
				  .detectors = dets, .n_detectors = nd };
	struct heuristics *h = heur_compile(&rt, err, sizeof(err));

	assert_null(h);
	return err;
}

/* A request whose only message is the user's text. */
static struct route_text user(const char *text)
{
	struct route_text t = { 0 };

	t.conversation = t.last_user = str_cstr(text);
	t.last_user_chars = strlen(text);
	t.max_tokens = -1;
	return t;
}

/* Does the one rule hold on text? */
static bool one(struct cfg_rule r, const char *text)
{
	struct heuristics *h = build(&r, 1, NULL, 0);
	struct route_text t = user(text);
	int m = heur_match(h, &t, NULL);

	heur_free(h);
	return m == 0;
}

/* Does keyword kw match text? */
static bool kw(const char *k, const char *text)
{
	return one((struct cfg_rule){ KW((char *)k) }, text);
}

/* ---- keywords ---- */

/* Whole words, case folding both ways, text edges, several keywords. */
static void test_keyword_basic(void **state)
{
	(void)state;
	assert_true(kw("sql", "write sql please"));
	assert_true(kw("sql", "sql"));                 /* whole text */
	assert_true(kw("sql", "sql at the start"));
	assert_true(kw("sql", "at the end: sql"));
	assert_true(kw("sql", "(sql)."));
	assert_true(kw("SQL", "Write Sql"));           /* case folding both ways */
	assert_true(kw("sql", "WRITE SQL"));
	assert_false(kw("sql", "nosql"));
	assert_false(kw("sql", "mysql"));
	assert_false(kw("sql", "sqlite"));
	assert_false(kw("sql", "sql_query"));          /* '_' is a word char */
	assert_false(kw("sql", "sql2"));
	assert_false(kw("sql", ""));
	assert_false(kw("sql", "sq l"));
	assert_true(kw("a", "a"));
	assert_false(kw("a", "b"));
	/* several keywords: any is enough; a later one after an earlier near miss */
	assert_true(one((struct cfg_rule){ KW("python", "rust", "go") }, "golang or rust"));
	assert_false(one((struct cfg_rule){ KW("python", "rust", "go") }, "golang, rusty"));
	/* one keyword inside another */
	assert_true(one((struct cfg_rule){ KW("data", "database") }, "the database"));
	assert_true(one((struct cfg_rule){ KW("database", "base") }, "base camp"));
	assert_true(one((struct cfg_rule){ KW("database", "base") }, "databases or base"));
}

/* Keywords that begin or end with punctuation: only word-character
 * sides are checked (the decision documented in heuristics.h). */
static void test_keyword_punctuation(void **state)
{
	(void)state;
	/* c++: left boundary checked (starts with 'c'), right side is '+' */
	assert_true(kw("c++", "write c++ code"));
	assert_true(kw("c++", "C++17 features"));
	assert_true(kw("c++", "in c++"));
	assert_true(kw("c++", "c++"));
	assert_false(kw("c++", "abc++"));
	assert_false(kw("c++", "c+"));
	/* c#: same */
	assert_true(kw("c#", "port it to C#."));
	assert_true(kw("c#", "c# 12"));
	assert_false(kw("c#", "abc# x"));
	/* .net: right boundary only */
	assert_true(kw(".net", "an ASP.NET core app"));
	assert_true(kw(".net", ".NET 8"));
	assert_true(kw(".net", "on .net"));
	assert_false(kw(".net", "a .network"));
	assert_false(kw(".net", "net"));
	/* "c" is a whole word only */
	assert_false(kw("c", "cat"));
	assert_false(kw("c", "abc"));
	assert_false(kw("c", "arc"));
	assert_true(kw("c", "in C, please"));
	assert_true(kw("c", "c"));
	assert_true(kw("c", "c++")); /* documented: '+' is not a word character */
	/* keyword of punctuation only: no boundary at all */
	assert_true(kw("=>", "a=>b"));
	assert_true(kw("?!", "what?!"));
}

/* A keyword's space matches any run of ASCII whitespace. */
static void test_keyword_whitespace(void **state)
{
	(void)state;
	assert_true(kw("customer record", "the customer record"));
	assert_true(kw("customer record", "the Customer\nRecord"));
	assert_true(kw("customer record", "customer \r\n\t  record"));
	assert_true(kw("customer record", "CUSTOMER\n\nRECORD"));
	assert_true(kw("  customer \t  record ", "customer record")); /* normalised */
	assert_true(kw("customer record", "x\ncustomer record\n"));
	assert_false(kw("customer record", "customer records"));
	assert_false(kw("customer record", "customerrecord"));
	assert_false(kw("customer record", "customer - record"));
	assert_false(kw("customer record", "acustomer record"));
	assert_false(kw("customer record", "customer"));
	/* three words, runs in both gaps, after a near miss */
	assert_true(kw("know your customer", "know your\tknow  your \n customer"));
	/* a whitespace run at the start of the text or before a keyword */
	assert_true(kw("sql", "   \n\nsql"));
}

/* Non-ASCII neighbours: letters join words, punctuation and malformed
 * bytes separate; only ASCII case folds. */
static void test_keyword_non_ascii(void **state)
{
	(void)state;
	assert_false(kw("caf", "un café"));            /* é is a letter */
	assert_false(kw("na", "naïve"));
	assert_false(kw("ber", "über"));
	assert_true(kw("café", "un café."));
	assert_false(kw("café", "cafés"));
	assert_false(kw("CAFÉ", "café"));              /* no Unicode folding */
	assert_true(kw("CAFÉ", "CAFÉ"));
	assert_true(kw("caFÉ", "CAFÉ"));               /* ASCII part folds */
	assert_true(kw("sql", "—sql—"));               /* em dash separates */
	assert_true(kw("sql", "«sql»"));
	assert_true(kw("sql", "\xc2\xa0sql\xc2\xa0")); /* NBSP separates */
	assert_false(kw("sql", "数据sql"));            /* CJK letters do not */
	assert_true(kw("sql", "数据、sql。"));         /* CJK punctuation does */
	assert_true(kw("sql", "\xffsql\xfe"));         /* malformed bytes separate */
	assert_true(kw("sql", "\xc3sql"));             /* truncated sequence */
	assert_false(kw("sql", "sqlé"));
	/* overlong forms, surrogates, past U+10FFFF: malformed, so separators */
	assert_true(kw("c", "c\xe0\x80\xb8"));          /* overlong '8' */
	assert_true(kw("c", "c\xe0\x9f\xbf"));          /* overlong U+07FF */
	assert_true(kw("c", "\xf0\x8f\xbf\xbf" "c"));    /* overlong U+FFFF */
	assert_true(kw("sql", "\xed\xa0\x80sql"));      /* surrogate */
	assert_true(kw("sql", "\xf4\x90\x80\x80sql"));  /* U+110000 */
	assert_false(kw("sql", "\xf0\x9f\x98\x80sql")); /* U+1F600: not punctuation */
	assert_true(kw("données", "des DONNéES"));
}

/* exclude: same matching as keywords; any hit fails the rule. */
static void test_exclude(void **state)
{
	(void)state;
	struct cfg_rule r = { KW("sql"), EX("draft", "lorem ipsum") };

	assert_true(one(r, "write sql"));
	assert_false(one(r, "write sql, draft only"));
	assert_false(one(r, "Lorem\nIpsum sql"));
	assert_true(one(r, "write sql for drafts"));   /* whole words too */
	/* exclude alone: holds unless an exclude word is there */
	assert_true(one((struct cfg_rule){ EX("secret") }, "hello"));
	assert_false(one((struct cfg_rule){ EX("secret") }, "top SECRET"));
	/* the same word as keyword and exclude: exclude wins */
	assert_false(one((struct cfg_rule){ KW("x"), EX("x") }, "x"));
}

/* ---- other conditions ---- */

/* regex: PCRE2 in UTF mode, case-sensitive unless (?i), any is enough. */
static void test_regex(void **state)
{
	(void)state;
	assert_true(one((struct cfg_rule){ RE("\\bSELECT\\b.*\\bFROM\\b") }, "SELECT a FROM t"));
	assert_false(one((struct cfg_rule){ RE("\\bSELECT\\b") }, "select a"));  /* case-sensitive */
	assert_true(one((struct cfg_rule){ RE("(?i)\\bselect\\b") }, "SeLeCt a"));
	assert_true(one((struct cfg_rule){ RE("^nope$", "\\d{3}") }, "call 123")); /* any */
	assert_false(one((struct cfg_rule){ RE("^nope$", "\\d{3}") }, "call 12"));
	assert_true(one((struct cfg_rule){ RE("é+") }, "caféé"));               /* UTF mode */
	assert_true(one((struct cfg_rule){ RE("^.{4}$") }, "café"));            /* chars */
	assert_true(one((struct cfg_rule){ RE("") }, ""));
	/* AND with keywords */
	assert_true(one((struct cfg_rule){ KW("ticket"), RE("[A-Z]+-\\d+") }, "ticket ABC-12"));
	assert_false(one((struct cfg_rule){ KW("ticket"), RE("[A-Z]+-\\d+") }, "ticket abc"));
	assert_false(one((struct cfg_rule){ KW("ticket"), RE("[A-Z]+-\\d+") }, "see ABC-12"));
}

/* Compile errors name the rule or detector, its line, the pattern,
 * PCRE2's message and the offset. */
static void test_regex_errors(void **state)
{
	(void)state;
	struct cfg_rule rules[] = {
		{ KW("ok"), .line = 3 },
		{ RE("fine", "(a"), .line = 7 },
	};
	struct cfg_rule bad_utf[] = { { RE("\xff"), .line = 2 } };
	struct cfg_detector dets[] = { { .name = "emp", .regex = "[", .line = 9 } };
	const char *e;

	e = build_err(rules, 2, NULL, 0);
	assert_non_null(strstr(e, "rule 2 (line 7): regex \"(a\": "));
	assert_non_null(strstr(e, "missing closing parenthesis at offset 2"));
	e = build_err(bad_utf, 1, NULL, 0);
	assert_non_null(strstr(e, "rule 1 (line 2): regex"));
	assert_non_null(strstr(e, "UTF-8"));
	e = build_err(NULL, 0, dets, 1);
	assert_non_null(strstr(e, "detector emp (line 9): regex \"[\": "));
	assert_non_null(strstr(e, "at offset 1"));
}

/* Catastrophic patterns stop at the match limit and read as no match. */
static void test_regex_limits(void **state)
{
	(void)state;
	char text[64];
	uint64_t t0 = clock_mono_ns();

	memset(text, 'a', 40);
	strcpy(text + 40, "!");
	/* catastrophic backtracking hits the match limit: no match, fast */
	assert_false(one((struct cfg_rule){ RE("^(a+)+$") }, text));
	assert_false(one((struct cfg_rule){ RE("(?:a|a)*(?:b|b)*$x") }, text));
	assert_true(clock_mono_ns() - t0 < 2000000000ull);
	/* a limit on one regex does not hide a later one */
	assert_true(one((struct cfg_rule){ RE("^(a+)+$", "a!") }, text));
}

/* system_prompt_contains: case-insensitive substrings, any is enough. */
static void test_system_prompt(void **state)
{
	(void)state;
	struct cfg_rule r = { SYS("You are a Compliance", "auditor") };
	struct heuristics *h = build(&r, 1, NULL, 0);
	struct route_text t = user("hello");

	assert_int_equal(heur_match(h, &t, NULL), -1);        /* no system */
	t.system = STR("SYSTEM: you are a compliance officer");
	assert_int_equal(heur_match(h, &t, NULL), 0);         /* case-insensitive */
	t.system = STR("You are an AUDITOR.");
	assert_int_equal(heur_match(h, &t, NULL), 0);         /* any */
	t.system = STR("You are a compliant bot");
	assert_int_equal(heur_match(h, &t, NULL), -1);
	t.system = STR("aaaaaaaaaaaaaaaaaaaaaaaaaaaAAAAAAAAAUDITOr");   /* both cases of a */
	assert_int_equal(heur_match(h, &t, NULL), 0);
	t.system = STR("you are a");                         /* shorter than needle */
	assert_int_equal(heur_match(h, &t, NULL), -1);
	/* the system prompt is not searched by keywords' scope rules */
	heur_free(h);
}

/* has_tools, max_tokens_lt (absent fails), message_length_lt, and a
 * rule with no condition. */
static void test_facts(void **state)
{
	(void)state;
	struct cfg_rule tools = { .has_tools = TRI_TRUE };
	struct cfg_rule notools = { .has_tools = TRI_FALSE };
	struct cfg_rule mt = { .max_tokens_lt = 100 };
	struct cfg_rule len = { .message_length_lt = 5 };
	struct heuristics *h;
	struct route_text t = user("hello");

	h = build(&tools, 1, NULL, 0);
	assert_int_equal(heur_match(h, &t, NULL), -1);
	t.has_tools = true;
	assert_int_equal(heur_match(h, &t, NULL), 0);
	heur_free(h);
	h = build(&notools, 1, NULL, 0);
	assert_int_equal(heur_match(h, &t, NULL), -1);
	t.has_tools = false;
	assert_int_equal(heur_match(h, &t, NULL), 0);
	heur_free(h);

	h = build(&mt, 1, NULL, 0);
	t.max_tokens = -1;                                   /* absent */
	assert_int_equal(heur_match(h, &t, NULL), -1);
	t.max_tokens = 99;
	assert_int_equal(heur_match(h, &t, NULL), 0);
	t.max_tokens = 0;
	assert_int_equal(heur_match(h, &t, NULL), 0);
	t.max_tokens = 100;
	assert_int_equal(heur_match(h, &t, NULL), -1);
	heur_free(h);

	h = build(&len, 1, NULL, 0);
	t.last_user_chars = 5;
	assert_int_equal(heur_match(h, &t, NULL), -1);
	t.last_user_chars = 4;
	assert_int_equal(heur_match(h, &t, NULL), 0);
	t.last_user_chars = 0;
	assert_int_equal(heur_match(h, &t, NULL), 0);
	heur_free(h);

	/* a rule with nothing set matches everything */
	assert_true(one((struct cfg_rule){ .route = "default" }, ""));
}

/* detectors: any named slot with a count > 0. */
static void test_detectors_condition(void **state)
{
	(void)state;
	struct cfg_detector dets[] = { { .name = "employee_id", .regex = "\\bEMP-\\d{4}\\b" } };
	struct cfg_rule r = { DETS("iban", "employee_id") };
	struct heuristics *h = build(&r, 1, dets, 1);
	struct route_text t = user("n/a");
	struct det_counts dc = { 0 };

	assert_int_equal(heur_detectors_needed(h),
			 (1ull << PII_IBAN) | (1ull << PII_KINDS));
	assert_int_equal(heur_match(h, &t, NULL), -1);       /* NULL counts: zero */
	assert_int_equal(heur_match(h, &t, &dc), -1);
	dc.n[PII_EMAIL] = 3;                                  /* not named */
	assert_int_equal(heur_match(h, &t, &dc), -1);
	dc.n[PII_IBAN] = 1;
	assert_int_equal(heur_match(h, &t, &dc), 0);
	dc.n[PII_IBAN] = 0;
	dc.n[PII_KINDS] = 2;
	assert_int_equal(heur_match(h, &t, &dc), 0);

	/* end to end: detect, then match */
	t = user("badge EMP-1234 and EMP-1234 again");
	heur_detect(h, t.conversation, heur_detectors_needed(h), &dc);
	assert_int_equal(dc.n[PII_KINDS], 1);
	assert_int_equal(dc.n[PII_EMAIL], 0);
	assert_int_equal(heur_match(h, &t, &dc), 0);
	heur_free(h);

	/* unknown names */
	{
		struct cfg_rule bad = { DETS("email", "passport"), .line = 4 };
		const char *e = build_err(&bad, 1, NULL, 0);

		assert_string_equal(e, "rule 1 (line 4): unknown detector passport");
	}
}

/* Conditions AND; the first rule that holds wins. */
static void test_combined_and_order(void **state)
{
	(void)state;
	struct cfg_rule rules[] = {
		{ .name = "pii", DETS("email") },
		{ .name = "agent", KW("deploy"), .has_tools = TRI_TRUE },
		{ .name = "code", KW("python", "sql"), EX("homework"), .max_tokens_lt = 4000 },
		{ .name = "fast", .message_length_lt = 40 },
		{ .name = "code-too", KW("python") },
	};
	struct heuristics *h = build(rules, UMB_ARRAY_LEN(rules), NULL, 0);
	struct det_counts dc;
	struct route_text t;

	assert_int_equal(heur_rule_count(h), 5);
	t = user("python script that mails bob@example.com the report");
	heur_detect(h, t.conversation, heur_detectors_needed(h), &dc);
	assert_int_equal(heur_match(h, &t, &dc), 0);          /* first wins */

	t = user("deploy the python service to production, with the tools");
	heur_detect(h, t.conversation, heur_detectors_needed(h), &dc);
	assert_int_equal(heur_match(h, &t, &dc), 4);          /* no tools, no max_tokens */
	t.has_tools = true;
	assert_int_equal(heur_match(h, &t, &dc), 1);
	t.has_tools = false;
	t.max_tokens = 1000;
	assert_int_equal(heur_match(h, &t, &dc), 2);
	t.max_tokens = 4000;
	assert_int_equal(heur_match(h, &t, &dc), 4);

	t = user("python homework, a long question about loops and lists");
	t.max_tokens = 10;
	heur_detect(h, t.conversation, heur_detectors_needed(h), &dc);
	assert_int_equal(heur_match(h, &t, &dc), 4);          /* excluded from 2 */
	t = user("python homework");
	assert_int_equal(heur_match(h, &t, &dc), 3);          /* short: fast */
	t = user("a question about gardening that is long enough to pass");
	assert_int_equal(heur_match(h, &t, &dc), -1);
	heur_free(h);

	/* no rules at all */
	h = build(NULL, 0, NULL, 0);
	t = user("x");
	assert_int_equal(heur_match(h, &t, NULL), -1);
	assert_int_equal(heur_detectors_needed(h), 0);
	heur_free(h);
	heur_free(NULL);
}

/* scope: keywords and regex look at the conversation or the last user
 * message only. */
static void test_scope(void **state)
{
	(void)state;
	struct cfg_rule rules[] = {
		{ KW("invoice"), .scope = SCOPE_LAST_USER },
		{ RE("ACC-\\d+"), .scope = SCOPE_LAST_USER },
		{ KW("ledger"), .scope = SCOPE_CONVERSATION },
	};
	struct heuristics *h = build(rules, 3, NULL, 0);
	struct route_text t = { 0 };

	t.max_tokens = -1;
	t.conversation = STR("system: about invoices and ACC-1\nuser: an invoice\nassistant: ok\nuser: thanks");
	t.last_user = STR("thanks");
	assert_int_equal(heur_match(h, &t, NULL), -1);
	t.conversation = STR("an invoice in the ledger\nthanks");
	assert_int_equal(heur_match(h, &t, NULL), 2);
	t.last_user = STR("the Invoice please");
	assert_int_equal(heur_match(h, &t, NULL), 0);
	t.last_user = STR("see ACC-9");
	assert_int_equal(heur_match(h, &t, NULL), 1);
	heur_free(h);
}

/* ---- custom detectors ---- */

/* Custom detectors count distinct non-empty matched strings. */
static void test_custom_detect(void **state)
{
	(void)state;
	struct cfg_detector dets[] = {
		{ .name = "employee_id", .regex = "EMP-\\d{4}" },
		{ .name = "xs", .regex = "x*" },              /* matches empty too */
		{ .name = "word", .regex = "(?i)\\bsecret\\b" },
	};
	struct heuristics *h = build(NULL, 0, dets, 3);
	struct det_counts dc;
	uint64_t all = (1ull << DET_MAX) - 1;

	heur_detect(h, STR("EMP-1234 EMP-1234, EMP-5678;EMP-12345"), all, &dc);
	assert_int_equal(dc.n[PII_KINDS + 0], 2);   /* EMP-1234 (3 times, once inside EMP-12345), EMP-5678 */
	heur_detect(h, STR("xx a x xx ééx"), all, &dc);
	assert_int_equal(dc.n[PII_KINDS + 1], 2);   /* "xx" and "x"; empty ones do not count */
	heur_detect(h, STR("Secret, SECRET, secret!"), all, &dc);
	assert_int_equal(dc.n[PII_KINDS + 2], 3);   /* distinct strings, case matters */
	/* mask: only what is asked is counted, the rest reads 0 */
	heur_detect(h, STR("EMP-1111 a@b.org xx"), 1ull << (PII_KINDS + 1), &dc);
	assert_int_equal(dc.n[PII_KINDS + 0], 0);
	assert_int_equal(dc.n[PII_KINDS + 1], 1);
	assert_int_equal(dc.n[PII_EMAIL], 0);
	heur_detect(h, STR("EMP-1111 a@example.com b@example.com"), PII_ALL, &dc);
	assert_int_equal(dc.n[PII_EMAIL], 2);
	assert_int_equal(dc.n[PII_KINDS + 0], 0);
	/* empty and NULL text */
	heur_detect(h, STR_NULL, all, &dc);
	for (int s = 0; s < DET_MAX; s++)
		assert_int_equal(dc.n[s], 0);
	heur_free(h);
}

/* The distinct set grows past its inline capacity. */
static void test_custom_many_distinct(void **state)
{
	(void)state;
	struct cfg_detector dets[] = { { .name = "num", .regex = "\\d+" } };
	struct heuristics *h = build(NULL, 0, dets, 1);
	struct det_counts dc;
	char *t = malloc(20000), *p = t;

	/* 1000 distinct numbers, each twice: the set spills to the heap */
	for (int r = 0; r < 2; r++)
		for (int i = 0; i < 1000; i++)
			p += sprintf(p, "%d ", i);
	heur_detect(h, str_make(t, (size_t)(p - t)), 1ull << PII_KINDS, &dc);
	assert_int_equal(dc.n[PII_KINDS], 1000);
	free(t);
	heur_free(h);
}

/* Slots and names of built-in and custom detectors, the guard's mask,
 * and name errors. */
static void test_slots(void **state)
{
	(void)state;
	struct cfg_detector dets[] = {
		{ .name = "employee_id", .regex = "EMP" },
		{ .name = "project", .regex = "PRJ" },
	};
	struct cfg_detector clash[] = { { .name = "email", .regex = "x", .line = 5 } };
	struct cfg_detector dup[] = { { .name = "a", .regex = "x" }, { .name = "a", .regex = "y", .line = 6 } };
	char *sens[] = { "ssn", "project" };
	struct cfg_routing rt = { .detectors = dets, .n_detectors = 2,
				  .sensitive = { .enabled = true, .detectors = sens, .n_detectors = 2 } };
	struct heuristics *h = heur_compile(&rt, err, sizeof(err));

	assert_non_null(h);
	assert_int_equal(heur_detector_slot(h, "email"), PII_EMAIL);
	assert_int_equal(heur_detector_slot(h, "phone"), PII_PHONE);
	assert_int_equal(heur_detector_slot(h, "employee_id"), PII_KINDS);
	assert_int_equal(heur_detector_slot(h, "project"), PII_KINDS + 1);
	assert_int_equal(heur_detector_slot(h, "Email"), -1);
	assert_int_equal(heur_detector_slot(h, "nope"), -1);
	assert_int_equal(heur_detector_slot(h, NULL), -1);
	assert_string_equal(heur_detector_name(h, PII_IBAN), "iban");
	assert_string_equal(heur_detector_name(h, PII_KINDS + 1), "project");
	assert_string_equal(heur_detector_name(h, PII_KINDS + 2), "?");
	assert_string_equal(heur_detector_name(h, -1), "?");
	assert_int_equal(heur_sensitive_mask(h), (1ull << PII_SSN) | (1ull << (PII_KINDS + 1)));
	heur_free(h);

	rt.sensitive.enabled = false;                 /* guard off: no mask */
	h = heur_compile(&rt, err, sizeof(err));
	assert_int_equal(heur_sensitive_mask(h), 0);
	heur_free(h);
	sens[1] = "passport";
	rt.sensitive.enabled = true;
	rt.sensitive.line = 12;
	assert_null(heur_compile(&rt, err, sizeof(err)));
	assert_string_equal(err, "sensitive (line 12): unknown detector passport");

	assert_string_equal(build_err(NULL, 0, clash, 1), "detector email (line 5): name already used");
	assert_string_equal(build_err(NULL, 0, dup, 2), "detector a (line 6): name already used");
	{
		struct cfg_rule r[] = { { KW("ok") }, { KW("fine", " \n "), .line = 8 } };

		assert_string_equal(build_err(r, 2, NULL, 0), "rule 2 (line 8): empty keyword");
	}
}

/* ---- hostile text ---- */

/* Hostile bytes: no error, no crash, sane counts. */
static void test_invalid_utf8(void **state)
{
	(void)state;
	static const char text[] = "\xff\xfe\xc3 select \xe2\x82 SQL \xf4\x90\x80\x80 ACC-7 \xc0\xaf";
	struct cfg_detector dets[] = {
		{ .name = "anything", .regex = "." },
		{ .name = "empty", .regex = "(?=a)|\\b" },
		{ .name = "acc", .regex = "ACC-\\d" },
	};
	struct cfg_rule rules[] = {
		{ RE("(?i)selectz") },
		{ KW("sql"), RE("ACC-\\d", "\\w+") },
	};
	struct heuristics *h = build(rules, 2, dets, 3);
	struct route_text t = { 0 };
	struct det_counts dc;
	char buf[256];

	t.conversation = t.last_user = str_make(text, sizeof(text) - 1);
	t.max_tokens = -1;
	heur_detect(h, t.conversation, (1ull << DET_MAX) - 1, &dc);
	assert_true(dc.n[PII_KINDS] > 0);
	assert_int_equal(dc.n[PII_KINDS + 1], 0);
	assert_int_equal(dc.n[PII_KINDS + 2], 1);
	assert_int_equal(heur_match(h, &t, &dc), 1);
	assert_int_equal(heur_explain(h, 1, &t, &dc, buf, sizeof(buf)), 1);
	/* every byte value, alone and in runs */
	for (int c = 0; c < 256; c++) {
		char one_b[8] = { (char)c, (char)c, 's', 'q', 'l', (char)c };

		t.conversation = t.last_user = str_make(one_b, 6);
		heur_detect(h, t.conversation, (1ull << DET_MAX) - 1, &dc);
		(void)heur_match(h, &t, &dc);
	}
	heur_free(h);
}

/* ---- the automaton against a naive matcher ---- */

static bool naive_ws(int c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}
static bool naive_word(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_';
}

/* ASCII-only reference: does normalised keyword k occur as whole words? */
static bool naive_find(const char *k, const char *t, size_t n)
{
	size_t kn = strlen(k);
	bool lb = naive_word((unsigned char)k[0]), rb = naive_word((unsigned char)k[kn - 1]);

	for (size_t s = 0; s < n; s++) {
		size_t i = s, j = 0;

		while (j < kn && i < n) {
			if (k[j] == ' ') {
				if (!naive_ws((unsigned char)t[i]))
					break;
				while (i < n && naive_ws((unsigned char)t[i]))
					i++;
				j++;
				continue;
			}
			if ((t[i] | ((t[i] >= 'A' && t[i] <= 'Z') ? 0x20 : 0)) != k[j])
				break;
			i++, j++;
		}
		if (j < kn)
			continue;
		if (lb && s > 0 && naive_word((unsigned char)t[s - 1]))
			continue;
		if (rb && i < n && naive_word((unsigned char)t[i]))
			continue;
		return true;
	}
	return false;
}

/* The automaton (one lane and interleaved slices) agrees with a naive
 * matcher on random ASCII texts. */
static void test_automaton_random(void **state)
{
	(void)state;
	static char *kws[] = { "ab", "a b", "ba", "b a b", "c+", "+c", "abc", "b",
			       "a.b", "cab", "aaa", "c  c" };
	static const char alpha[] = "abcABC +.\n\t_";
	struct cfg_rule rules[UMB_ARRAY_LEN(kws)];
	struct heuristics *h;
	size_t nk = UMB_ARRAY_LEN(kws);
	char *t = malloc(9000);
	unsigned seed = 12345, agree = 0;

	memset(rules, 0, sizeof(rules));
	for (size_t i = 0; i < nk; i++) {
		rules[i].keywords = &kws[i];
		rules[i].n_keywords = 1;
	}
	h = build(rules, nk, NULL, 0);
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = iter < 1000 ? (size_t)(rand_r(&seed) % 40) :
			   iter < 1500 ? (size_t)(rand_r(&seed) % 1200) :
			   600 + (size_t)(rand_r(&seed) % 8000);
		struct route_text rtx;
		int want = -1, got;
		size_t first = 0;

		for (size_t i = 0; i < n; i++)
			t[i] = alpha[rand_r(&seed) % (sizeof(alpha) - 1)];
		if (iter >= 1500) {
			/* sparse text with one planted keyword near a slice edge */
			for (size_t i = 0; i < n; i++)
				if (t[i] != ' ' && t[i] != '\n' && rand_r(&seed) % 8)
					t[i] = 'x';
			first = (size_t)rand_r(&seed) % nk;
			size_t at = (n / 4) * (1 + (size_t)rand_r(&seed) % 3) - 4 + (size_t)rand_r(&seed) % 8;
			size_t kl = strlen(kws[first]);
			if (at + kl + 2 < n) {
				t[at - 1] = ' ';
				memcpy(t + at, kws[first], kl);
				t[at + kl] = '\n';
			}
		}
		rtx = (struct route_text){ .conversation = str_make(t, n),
					   .last_user = str_make(t, n), .max_tokens = -1 };
		for (size_t i = 0; i < nk && want < 0; i++) {
			/* the reference works on the normalised keyword */
			char norm[16];
			size_t o = 0;

			for (const char *p = kws[i]; *p; p++)
				if (!(*p == ' ' && (o == 0 || norm[o - 1] == ' ')))
					norm[o++] = *p;
			norm[o] = 0;
			if (naive_find(norm, t, n))
				want = (int)i;
		}
		got = heur_match(h, &rtx, NULL);
		if (got != want)
			fprintf(stderr, "iter %d n %zu: got %d want %d\n", iter, n, got, want);
		assert_int_equal(got, want);
		agree += got >= 0;
	}
	assert_true(agree > 1000); /* the texts do exercise hits */
	free(t);
	heur_free(h);
}

/* A keyword split by a long whitespace run right across a slice edge. */
static void test_automaton_long_runs(void **state)
{
	(void)state;
	struct cfg_rule r = { KW("customer record", "zz") };
	struct heuristics *h = build(&r, 1, NULL, 0);
	size_t n = 40000;
	char *t = malloc(n);

	for (size_t edge = 1; edge <= 3; edge++) {
		for (int d = -20; d <= 20; d += 3) {
			size_t b = n / 4 * edge + (size_t)(long)d;
			struct route_text rtx;

			memset(t, 'q', n);
			memcpy(t + b - 9000, " customer", 9);
			memset(t + b - 9000 + 9, '\n', 9000 - 9);
			memcpy(t + b, "record ", 7);
			rtx = (struct route_text){ .conversation = str_make(t, n),
						   .max_tokens = -1 };
			assert_int_equal(heur_match(h, &rtx, NULL), 0);
			t[b - 9000] = 'a'; /* "acustomer": no longer a whole word */
			assert_int_equal(heur_match(h, &rtx, NULL), -1);
		}
	}
	free(t);
	heur_free(h);
}

/* More keywords than the on-stack hit set holds; a custom detector that
 * matches everywhere stays bounded. */
static void test_many_keywords(void **state)
{
	(void)state;
	enum { N = 1500 };
	char **k = malloc(N * sizeof(*k)), *text = malloc(200000);
	struct cfg_rule r[2] = { { 0 } };
	struct cfg_detector dets[] = { { .name = "any", .regex = "." } };
	struct heuristics *h;
	struct route_text t;
	struct det_counts dc;
	uint64_t t0;

	for (int i = 0; i < N; i++) {
		k[i] = malloc(16);
		snprintf(k[i], 16, "kw %d", i);
	}
	r[0].keywords = k;
	r[0].n_keywords = N - 1;
	r[1].keywords = &k[N - 1];
	r[1].n_keywords = 1;
	h = build(r, 2, dets, 1);
	t = user("a KW\n1499 b");
	assert_int_equal(heur_match(h, &t, NULL), 1);
	t = user("kw 14990 kw  7");
	assert_int_equal(heur_match(h, &t, NULL), 0);
	t = user("kw 15000");
	assert_int_equal(heur_match(h, &t, NULL), -1);

	for (int i = 0; i < 200000; i++)
		text[i] = (char)('a' + i % 26);
	t0 = clock_mono_ns();
	heur_detect(h, str_make(text, 200000), 1ull << PII_KINDS, &dc);
	assert_int_equal(dc.n[PII_KINDS], 26);
	assert_true(clock_mono_ns() - t0 < 1000000000ull);
	for (int i = 0; i < N; i++)
		free(k[i]);
	free(k);
	free(text);
	heur_free(h);
}

/* ---- explain and threads ---- */

static void test_explain(void **state)
{
	(void)state;
	struct cfg_rule rules[] = {
		{ KW("sql", "python"), EX("homework") },
		{ .has_tools = TRI_TRUE },
		{ .max_tokens_lt = 10 },
		{ DETS("email") },
		{ RE("x\\d") },
		{ 0 },
	};
	struct heuristics *h = build(rules, UMB_ARRAY_LEN(rules), NULL, 0);
	struct route_text t = user("Python homework x1");
	struct det_counts dc = { 0 };
	char buf[128];

	assert_int_equal(heur_explain(h, 0, &t, &dc, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "failed: exclude \"homework\" in conversation");
	t = user("python x1");
	assert_int_equal(heur_explain(h, 0, &t, &dc, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "matched: keyword \"python\" in conversation; no exclude word");
	assert_int_equal(heur_explain(h, 1, &t, &dc, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "failed: has_tools is false");
	assert_int_equal(heur_explain(h, 2, &t, &dc, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "failed: max_tokens absent");
	assert_int_equal(heur_explain(h, 3, &t, &dc, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "failed: no detector hit");
	dc.n[PII_EMAIL] = 2;
	assert_int_equal(heur_explain(h, 3, &t, &dc, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "matched: detector email (2)");
	assert_int_equal(heur_explain(h, 4, &t, &dc, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "matched: regex 1 in conversation");
	assert_int_equal(heur_explain(h, 5, &t, &dc, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "matched: no condition set");
	assert_int_equal(heur_explain(h, 6, &t, &dc, buf, sizeof(buf)), UMB_ERR);
	/* a tiny buffer is cut, never overrun */
	assert_int_equal(heur_explain(h, 0, &t, &dc, buf, 8), 1);
	assert_string_equal(buf, "matched");
	heur_free(h);
}

struct worker {
	const struct heuristics *h;
	int bad;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct route_text a = user("select the sql rows, please"), b = user("hello there");

	for (int i = 0; i < 2000; i++) {
		struct det_counts dc;

		heur_detect(w->h, a.conversation, heur_detectors_needed(w->h), &dc);
		if (heur_match(w->h, &a, &dc) != 0 || heur_match(w->h, &b, &dc) != -1)
			w->bad++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct cfg_detector dets[] = { { .name = "rows", .regex = "\\brows?\\b" } };
	struct cfg_rule r = { KW("sql"), RE("(?i)select"), DETS("rows") };
	struct heuristics *h = build(&r, 1, dets, 1);
	struct worker w[4];
	pthread_t th[4];

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ h, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	heur_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyword_basic),
		cmocka_unit_test(test_keyword_punctuation),
		cmocka_unit_test(test_keyword_whitespace),
		cmocka_unit_test(test_keyword_non_ascii),
		cmocka_unit_test(test_exclude),
		cmocka_unit_test(test_regex),
		cmocka_unit_test(test_regex_errors),
		cmocka_unit_test(test_regex_limits),
		cmocka_unit_test(test_system_prompt),
		cmocka_unit_test(test_facts),
		cmocka_unit_test(test_detectors_condition),
		cmocka_unit_test(test_combined_and_order),
		cmocka_unit_test(test_scope),
		cmocka_unit_test(test_custom_detect),
		cmocka_unit_test(test_custom_many_distinct),
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_automaton_random),
		cmocka_unit_test(test_automaton_long_runs),
		cmocka_unit_test(test_many_keywords),
		cmocka_unit_test(test_explain),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
