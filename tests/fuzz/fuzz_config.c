/* fuzz_config.c — libFuzzer target for the config loaders: YAML, ${ENV}
 * expansion, URL/listen parsing, fallbacks, the tunnel and services and the
 * check table. Each input is loaded both as a gateway config and as a
 * connector config (umbra connect), one target for the shared machinery.
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

/* Load the input as a connector config and check what the connector
 * relies on. */
static void fuzz_connector(const uint8_t *data, size_t size)
{
	struct config_err err;
	struct connector_config *cc = connector_config_load_string(
		(const char *)data, size, "fuzz.yaml", "/tmp", &err);
	if (!cc) {
		if (strncmp(err.msg, "fuzz.yaml:", 10) != 0)
			abort();
		return;
	}
	if (!cc->cert || !cc->key || !cc->ca || cc->n_gateways < 1 ||
	    cc->n_gateways > 64 || cc->n_services < 1 ||
	    cc->reconnect_max_ms < cc->reconnect_base_ms)
		abort();
	for (size_t i = 0; i < cc->n_services; i++) {
		const struct conn_service *sv = &cc->services[i];
		if (!sv->name || !sv->origin ||
		    (sv->scheme != SCHEME_HTTP && sv->scheme != SCHEME_UNIX) ||
		    (sv->scheme == SCHEME_UNIX) != (sv->unix_path != NULL))
			abort();
	}
	connector_config_free(cc);
}

/** One input: load it as both kinds of config; on success walk the
 * result like the server (or the connector) would. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_err err;
	fuzz_connector(data, size);
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
	/* a service endpoint names a configured service; services need the
	 * tunnel, and the tunnel has a certificate and a CA */
	for (size_t i = 0; i < cfg->n_providers; i++)
		for (size_t j = 0; j < cfg->providers[i].n_endpoints; j++) {
			const struct cfg_endpoint *e = &cfg->providers[i].endpoints[j];
			if ((e->scheme == SCHEME_SERVICE) != (e->service != NULL) ||
			    (e->service && (e->url || e->unix_path ||
					    !config_find_service(cfg, str_cstr(e->service)))))
				abort();
		}
	if (cfg->n_services && !cfg->tunnel.enabled)
		abort();
	if (cfg->tunnel.enabled && (!cfg->tunnel.cert || !cfg->tunnel.key ||
				    !cfg->tunnel.ca || !cfg->tunnel.listen_host))
		abort();
	config_free(cfg);
	return 0;
}
