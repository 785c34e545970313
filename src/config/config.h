/* config.h — the loaded, validated configuration (DESIGN.md "Configuration").
 *
 * A struct config is immutable once loaded and owns all its memory (one
 * arena). Reload builds a new one and swaps it; runtime state that must
 * survive reloads (endpoint health) lives elsewhere. */
#ifndef UMB_CONFIG_H
#define UMB_CONFIG_H

#include <stdio.h>

#include "core/core.h"

enum provider_type {
	PROVIDER_OPENAI,
	PROVIDER_ANTHROPIC,
	PROVIDER_AZURE,
	PROVIDER_BEDROCK,
	PROVIDER_VERTEX,
	PROVIDER_OLLAMA,
};

enum locality { LOCALITY_UNSET, LOCALITY_ONPREM, LOCALITY_CLOUD };
enum client_auth { CLIENT_AUTH_NONE, CLIENT_AUTH_OPTIONAL, CLIENT_AUTH_REQUIRE };
enum auth_mode { AUTH_NONE, AUTH_KEYS, AUTH_CERTS, AUTH_KEYS_CERTS };

/** One "Name: value" header added to upstream requests. */
struct cfg_header {
	char *name;
	char *value;
};

/** Where an endpoint lives once its URL is parsed. */
enum endpoint_scheme { SCHEME_HTTP, SCHEME_HTTPS, SCHEME_UNIX, SCHEME_SERVICE };

struct cfg_endpoint {
	char *name;          /* endpoints[].name, or the provider name for `url:` */
	char *url;           /* as written (after ${ENV}); NULL for service */
	char *service;       /* dark service name: reached through the tunnel;
	                      * then scheme is SCHEME_SERVICE, origin is
	                      * "http://<service>" and unix_path NULL */
	enum endpoint_scheme scheme;
	char *origin;        /* "http://host:port" + optional path prefix, no
	                      * trailing '/'; for unix: "http://localhost" */
	char *unix_path;     /* socket path for unix:// URLs, else NULL */
	int weight;          /* >= 1, default 1 */
	bool backup;         /* used only when no primary endpoint is healthy */
	int line;
};

struct cfg_timeouts {
	int connect_ms;    /* default 5000 */
	int first_byte_ms; /* default 120000 */
	int idle_ms;       /* default 60000: max gap between body bytes */
};

struct cfg_health {
	bool enabled;        /* true when the provider has health_check: */
	char *path;          /* default per type: /v1/models (openai), /api/tags (ollama) */
	int interval_s;      /* default 30 */
	int timeout_s;       /* default 5 */
	int unhealthy_after; /* consecutive failures, default 2 */
	int healthy_after;   /* consecutive successes, default 1 */
};

/** Passive failure handling: an endpoint failing `consecutive_failures`
 * times in a row is ejected for base_ms, doubling up to max_ms. */
struct cfg_ejection {
	int consecutive_failures; /* default 3 */
	int base_ms;              /* default 1000 */
	int max_ms;               /* default 60000 */
};

struct cfg_provider {
	char *name;
	enum provider_type type;
	char *api_key;              /* NULL when absent */
	struct cfg_header *headers; /* extra upstream headers */
	size_t n_headers;
	struct cfg_endpoint *endpoints;
	size_t n_endpoints;
	struct cfg_health health;
	struct cfg_timeouts timeouts;
	struct cfg_ejection ejection;
	int max_attempts; /* endpoints tried per request before fallbacks, default 3 */
	int keepalive;    /* idle upstream connections kept per endpoint and
	                   * worker (nginx's `keepalive`), default 256 */
	char *ca_file;    /* PEM trust anchors for https endpoints (absolute path;
	                   * NULL = the system store) */
	/* type-specific settings, kept as written (used by later providers) */
	char *api_version, *deployment, *region, *profile, *access_key_id,
		*secret_access_key, *session_token, *project, *location,
		*credentials_file, *access_token;
	int line;
};

struct cfg_price {
	bool set;
	double input_per_mtok, output_per_mtok, cached_input_per_mtok;
};

struct cfg_model {
	char *name;           /* what clients ask for; may be a glob ("*", "llama-*") */
	bool is_glob;         /* name contains '*' or '?' */
	char *provider_name;
	struct cfg_provider *provider; /* resolved */
	char *upstream_model; /* NULL: send the requested name unchanged */
	char *api_key;        /* overrides the provider's */
	struct cfg_header *headers;
	size_t n_headers;
	enum locality locality;
	struct cfg_price price;
	int max_output_tokens; /* 0 = unset */
	char **fallbacks;      /* model names, each resolved at load */
	struct cfg_model **fallback_models;
	size_t n_fallbacks;
	int line;
};

struct cfg_tls {
	bool enabled; /* cert and key given */
	char *cert, *key, *client_ca; /* absolute paths */
	enum client_auth client_auth;
};

struct cfg_limits {
	uint64_t max_body_bytes;   /* default 8 MiB → 413 */
	uint64_t max_header_bytes; /* default 64 KiB → 431 */
	uint64_t max_response_bytes; /* non-stream upstream body cap, default 64 MiB → 502 */
	int header_timeout_ms;     /* whole request head must arrive, default 10000 */
	int body_timeout_ms;       /* max gap between body reads, default 30000 */
	int keepalive_timeout_ms;  /* idle keep-alive connection, default 75000 */
	int write_timeout_ms;      /* client not reading, default 60000 */
	int drain_timeout_ms;      /* SIGTERM grace for in-flight requests, default 30000 */
	int max_connections;       /* per gateway, default 10000 */
};

/** tunnel: where connectors dial in (docs/tunnel.md). */
struct cfg_tunnel {
	bool enabled;        /* tunnel: present */
	char *listen_host;   /* from listen: "host:port" */
	int listen_port;
	char *cert, *key;    /* absolute; default tls.cert / tls.key */
	char *ca;            /* verifies connectors; default tls.client_ca */
	int ping_interval_ms;   /* HTTP/2 PING period, default 10000 */
	int ping_timeout_ms;    /* no PING ACK within this: drop, default 10000 */
	int max_streams;        /* concurrent streams per connector connection,
	                         * default 1000 */
};

/** services[]: a dark service, who may host it and who may use it. */
struct cfg_service {
	char *name;
	char **hosts;   /* connector identity names (bind policy) */
	size_t n_hosts;
	char **users;   /* team or identity names, or "*" for anyone (dial policy) */
	size_t n_users;
	int line;
};

enum budget_period { PERIOD_MONTHLY = 0, PERIOD_WEEKLY, PERIOD_DAILY };

/** budget: a hard cap on spend per UTC calendar period (docs/spend.md). */
struct cfg_budget {
	bool set;
	double usd;
	enum budget_period period; /* default monthly */
	double alert_at;           /* fraction of usd that logs a warning, default 0.8; 0 = off */
};

/** rate_limit: requests and tokens per minute (0 = no limit). */
struct cfg_rate_limit {
	bool set;
	int rpm, tpm;
};

/** teams[]: who may use which models (DESIGN.md "teams"). */
struct cfg_team {
	char *name;
	char **models;   /* globs over configured model names; none = no model */
	size_t n_models;
	char **routes;   /* route names (enforced once routing exists) */
	size_t n_routes;
	struct cfg_budget budget;
	struct cfg_rate_limit rate_limit;
	int line;
};

/** identities[]: a name and its team, overriding the store and the
 * certificate's OU. */
struct cfg_identity {
	char *name;
	char *team; /* names a team in teams[] */
	struct cfg_budget budget;
	struct cfg_rate_limit rate_limit;
	int line;
};

/* ---- routing: (docs/routing.md) ---- */

/** routing.detectors[]: a named custom detector, one PCRE2 pattern. */
struct cfg_detector {
	char *name;   /* not one of the built-in names; unique */
	char *regex;  /* PCRE2 syntax, checked (compiled) at load */
	int line;
};

/** Tri-state for boolean conditions a rule may leave unset. */
enum cfg_tristate { TRI_UNSET = 0, TRI_FALSE, TRI_TRUE };

/** Where keywords, exclude and regex look. */
enum rule_scope { SCOPE_CONVERSATION = 0, SCOPE_LAST_USER };

/** routing.heuristics.rules[]: every condition that is set must hold
 * (AND); within one list, any element matching is enough (OR), except
 * `exclude`, where any element matching fails the rule. First matching
 * rule wins. */
struct cfg_rule {
	char *name;                  /* optional; default "rule-N" (1-based) */
	char **keywords;  size_t n_keywords;   /* case-insensitive, whole words */
	char **exclude;   size_t n_exclude;    /* same matching as keywords */
	char **regex;     size_t n_regex;      /* PCRE2, case-sensitive unless (?i) */
	char **system_prompt_contains; size_t n_system_prompt_contains;
	                                       /* case-insensitive substrings of the system prompt */
	enum cfg_tristate has_tools;           /* request carries a non-empty tools array */
	int max_tokens_lt;                     /* 0 = unset; max_tokens (or
	                                        * max_completion_tokens) present and < N */
	int message_length_lt;                 /* 0 = unset; last user message
	                                        * shorter than N characters */
	char **detectors; size_t n_detectors;  /* built-in or custom names; any hit */
	enum rule_scope scope;                 /* text for keywords/exclude/regex */
	char *route;                           /* names a routes[] entry */
	int line;
};

enum sem_comparison { SEM_CENTROID = 0, SEM_MAX, SEM_AVERAGE };

/* Threshold defaults for the builtin embedder, whose cosines run lower than
 * a neural embedder's (measured: docs/routing.md, "Thresholds"). */
#define SEM_BUILTIN_THRESHOLD 0.25
#define SEM_BUILTIN_AMBIGUOUS 0.1

/** routing.semantic: embedding similarity to each route's examples. */
struct cfg_semantic {
	bool enabled;              /* section present and enabled != false */
	char *embedder;            /* "builtin" or NULL when provider is set */
	char *provider;            /* provider name for a remote embedder */
	char *model;               /* its model */
	enum sem_comparison comparison; /* default centroid */
	double threshold;          /* >= : confident (default 0.75; builtin 0.25) */
	double ambiguous_threshold;/* >= and < threshold: ask the classifier
	                            * (default 0.5; builtin 0.1); below:
	                            * default route */
	int timeout_ms;            /* remote embedder, default 2000 */
	int cache_size;            /* entries, default 10000; 0 = off */
	int cache_ttl_s;           /* default 3600 */
};

/** routing.classifier: a chat model asked to name the route. */
struct cfg_classifier {
	bool enabled;
	char *model;               /* a models[] name */
	int timeout_ms;            /* default 2000 */
	double confidence_threshold; /* default 0.6 */
	int cache_size, cache_ttl_s; /* as for semantic */
};

enum sensitive_action { SENSITIVE_REROUTE = 0, SENSITIVE_BLOCK };

/** routing.sensitive: the guard every chat request passes. */
struct cfg_sensitive {
	bool enabled;
	char **detectors; size_t n_detectors; /* built-in or custom names */
	enum sensitive_action action;
	char *route;               /* reroute target; its model is onprem */
	int line;
};

struct cfg_route {
	char *name;
	char *model;               /* a models[] name (not a glob) */
	const struct cfg_model *model_ref; /* resolved */
	char *description;
	char **examples; size_t n_examples;
	int line;
};

struct cfg_routing {
	bool enabled;              /* routing: present */
	char *default_route;       /* required when enabled */
	bool heuristics_enabled;   /* heuristics.enabled, default true */
	struct cfg_rule *rules; size_t n_rules;
	struct cfg_semantic semantic;
	struct cfg_classifier classifier;
	struct cfg_sensitive sensitive;
	struct cfg_detector *detectors; size_t n_detectors;
	struct cfg_route *routes; size_t n_routes;
};

enum audit_fsync_policy { AUDIT_SYNC_INTERVAL = 0, AUDIT_SYNC_ALWAYS, AUDIT_SYNC_NEVER };

/** audit: the tamper-evident request log (docs/audit.md). */
struct cfg_audit {
	bool enabled;              /* audit: present */
	char *path;                /* absolute */
	char *key;                 /* Ed25519 PEM that signs checkpoints; NULL: unsigned */
	int checkpoint_every;      /* lines; default 1000; 0 = off */
	int checkpoint_interval_s; /* default 60; 0 = off */
	uint64_t max_bytes;        /* rotate past this; default 100 MiB; 0 = never */
	int keep;                  /* rotated files kept, default 10 */
	enum audit_fsync_policy fsync; /* default interval */
	int fsync_interval_ms;     /* default 1000 */
	bool payload_hash;         /* SHA-256 of each request body in its record */
};

struct config {
	struct arena *arena; /* owns everything below */
	char *path;          /* file path, or "<embedded>" */
	char *dir;           /* directory relative paths resolve against */
	char *listen_host;   /* from listen: "host:port" ("[::1]:8080" ok) */
	int listen_port;
	int workers;         /* 0 = number of CPUs */
	struct cfg_tls tls;
	struct cfg_limits limits;
	enum auth_mode auth_mode;
	char *store_url;              /* store: sqlite://PATH */
	enum log_level log_level;
	bool log_requests;            /* one JSON line per request, default true */
	bool metrics_public;          /* metrics: { public: true }; added by the
	                               * config module: /metrics without admin
	                               * credentials when auth is on (default false) */
	struct cfg_provider *providers;
	size_t n_providers;
	struct cfg_model *models;
	size_t n_models;
	bool teams_set;               /* teams: present: model policy is on */
	struct cfg_team *teams;
	size_t n_teams;
	struct cfg_identity *identities;
	size_t n_identities;
	struct cfg_tunnel tunnel;
	struct cfg_service *services;
	size_t n_services;
	struct cfg_routing routing;
	struct cfg_audit audit;
	int default_max_tokens;    /* budgets.default_max_tokens: worst-case output
	                            * when neither request nor model says (4096) */
};

/** Config errors carry file:line and what was expected. */
struct config_err {
	char msg[512];
};

/** Load and validate a YAML file. Returns NULL and fills err on any error. */
struct config *config_load_file(const char *path, struct config_err *err);
/** Load from a string (name is used in error messages; dir for paths). */
struct config *config_load_string(const char *yaml, size_t len,
				  const char *name, const char *dir,
				  struct config_err *err);
/** The embedded default config (README documents it). */
struct config *config_load_default(struct config_err *err);
extern const char config_default_yaml[];
void config_free(struct config *cfg);

/** Exact match first, then globs in config order; NULL if none. */
const struct cfg_model *config_find_model(const struct config *cfg,
					  struct str name);
/** The service entry by exact name; NULL if none. */
const struct cfg_service *config_find_service(const struct config *cfg,
					      struct str name);
/** The team or identity entry by exact name; NULL if none. */
const struct cfg_team *config_find_team(const struct config *cfg,
					struct str name);
const struct cfg_identity *config_find_identity(const struct config *cfg,
						struct str name);
/** True if the team's models globs admit the configured model name. */
bool config_team_allows(const struct cfg_team *t, struct str model);
const struct cfg_provider *config_find_provider(const struct config *cfg,
						const char *name);
/** Print the model → provider → endpoints table (`umbra check`). */
void config_print_table(const struct config *cfg, FILE *out);

const char *provider_type_name(enum provider_type t);

/* ---- the connector's own config (umbra connect -c FILE) ---- */

/** A service the connector hosts and the local server behind it. */
struct conn_service {
	char *name;
	char *upstream;   /* as written: http://127.0.0.1:8000[/prefix] or unix:///path */
	enum endpoint_scheme scheme; /* SCHEME_HTTP or SCHEME_UNIX only */
	char *origin;     /* "http://host:port[/prefix]"; unix: "http://localhost" */
	char *unix_path;  /* unix:// socket path, else NULL */
	int line;
};

struct connector_config {
	struct arena *arena;
	char *path, *dir;
	char *cert, *key, *ca;   /* identity: { cert, key, ca }, absolute */
	char **gateways;         /* "host:port" (IPv6 as "[::1]:8443") */
	size_t n_gateways;
	struct conn_service *services;
	size_t n_services;
	int ping_interval_ms;    /* default 10000 */
	int ping_timeout_ms;     /* default 10000 */
	int reconnect_base_ms;   /* first backoff, default 250 */
	int reconnect_max_ms;    /* backoff cap, default 30000 */
	int drain_timeout_ms;    /* SIGTERM grace for in-flight streams, default 30000 */
	int connect_timeout_ms;  /* to a gateway or a local upstream, default 5000 */
	enum log_level log_level;
};

/** Load and validate a connector config; NULL with err (file:line). */
struct connector_config *connector_config_load_file(const char *path,
						    struct config_err *err);
struct connector_config *connector_config_load_string(const char *yaml, size_t len,
						      const char *name, const char *dir,
						      struct config_err *err);
void connector_config_free(struct connector_config *cc);

#endif
