/* policy.c — the dial policy of dark services: which callers may use a
 * service. Kept apart from the tunnel thread (gateway.c) so the API layer
 * and its tests link it without the server. */
#include <string.h>

#include "identity/auth.h"
#include "tunnel/tunnel.h"

bool tunnel_service_allows(const struct cfg_service *s, const struct auth_who *who)
{
	for (size_t i = 0; i < s->n_users; i++) {
		const char *u = s->users[i];
		if (!strcmp(u, "*"))
			return true;
		if (who->authenticated && (!strcmp(u, who->name) || (who->team[0] && !strcmp(u, who->team))))
			return true;
	}
	return false;
}

bool tunnel_provider_allows(const struct config *cfg, const struct cfg_provider *p,
			    const struct auth_who *who, const char **denied)
{
	for (size_t i = 0; i < p->n_endpoints; i++) {
		const struct cfg_endpoint *ep = &p->endpoints[i];
		if (ep->scheme != SCHEME_SERVICE)
			continue;
		const struct cfg_service *s = config_find_service(cfg, str_cstr(ep->service));
		if (!s || !tunnel_service_allows(s, who)) {
			*denied = ep->service;
			return false;
		}
	}
	return true;
}
