/* default.c — the configuration `umbra serve` uses when no -c is given.
 *
 * Kept as YAML text (not a struct) so it goes through exactly the same
 * loader and validation as a user's file, and `umbra check` can print it. */
#include "config/config.h"

/** The embedded default configuration, parsed by config_load_default(). */
const char config_default_yaml[] =
	"# umbra embedded default configuration (used when no -c is given).\n"
	"#\n"
	"# Zero-config local mode: the gateway listens on loopback only and\n"
	"# forwards every model name unchanged to whichever local OpenAI-compatible\n"
	"# server is up. vLLM (or SGLang, TGI, llama-server) on port 8000 is the\n"
	"# primary; Ollama's OpenAI-compatible API on port 11434 is the backup,\n"
	"# used only while the primary fails its health check. Nothing leaves the\n"
	"# machine, so the single catch-all model is marked onprem.\n"
	"# Copy etc/umbra.example.yaml to start a real configuration.\n"
	"listen: \"127.0.0.1:8080\"\n"
	"\n"
	"providers:\n"
	"  - name: local\n"
	"    type: openai\n"
	"    endpoints:\n"
	"      - { name: vllm, url: \"http://127.0.0.1:8000\" }\n"
	"      - { name: ollama, url: \"http://127.0.0.1:11434\", backup: true }\n"
	"    # probe GET /v1/models every 5 s so a stopped server is skipped fast\n"
	"    health_check: { interval_s: 5, timeout_s: 2 }\n"
	"\n"
	"models:\n"
	"  # \"*\" matches any requested name; without upstream_model the name is\n"
	"  # passed through as the client sent it.\n"
	"  - name: \"*\"\n"
	"    provider: local\n"
	"    locality: onprem\n";
