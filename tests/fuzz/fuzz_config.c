/* fuzz_config.c — libFuzzer target for the config loader: YAML, ${ENV}
 * expansion, URL/listen parsing, fallbacks and the check table.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *     tests/fuzz/fuzz_config.c src/config/config.c src/config/default.c \
 *     src/core/core.c -lyaml -lm -o fuzz_config
 *   ./fuzz_config -dict=tests/fuzz/config.dict tests/fuzz/corpus/config */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"

static FILE *devnull;

/** Set a few variables the inputs can reference (set, empty, long). */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char big[4096];
	(void)argc;
	(void)argv;
	memset(big, 'x', sizeof(big) - 1);
	setenv("UMB_FUZZ_A", "127.0.0.1:8080", 1);
	setenv("UMB_FUZZ_B", "http://127.0.0.1:8000", 1);
	setenv("UMB_FUZZ_EMPTY", "", 1);
	setenv("UMB_FUZZ_BIG", big, 1);
	setenv("UMB_FUZZ_CRLF", "a\r\nb", 1);
	setenv("UMB_FUZZ_DOLLAR", "${UMB_FUZZ_A}", 1);
	unsetenv("UMB_FUZZ_UNSET");
	devnull = fopen("/dev/null", "w");
	return 0;
}

/** One input: load it; on success walk the result like the server would. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_err err;
	struct config *cfg = config_load_string((const char *)data, size,
						"fuzz.yaml", "/tmp", &err);
	if (!cfg) {
		/* every error names the file and a line */
		if (strncmp(err.msg, "fuzz.yaml:", 10) != 0)
			abort();
		return 0;
	}
	config_print_table(cfg, devnull);
	config_find_model(cfg, STR("gpt-4o"));
	config_find_model(cfg, str_make((const char *)data, size < 64 ? size : 64));
	for (size_t i = 0; i < cfg->n_models; i++) {
		const struct cfg_model *m = &cfg->models[i];
		if (!m->provider || config_find_provider(cfg, m->provider->name) != m->provider)
			abort();
		for (size_t f = 0; f < m->n_fallbacks; f++)
			if (!m->fallback_models[f] || m->fallback_models[f]->is_glob)
				abort();
	}
	config_free(cfg);
	return 0;
}
