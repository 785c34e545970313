/* connector.h — `umbra connect`: the dark-service connector
 * (docs/tunnel.md). It dials out to every gateway over TLS 1.3, serves
 * HTTP/2 on those connections (the gateway is the HTTP/2 client) and
 * forwards each stream to a local model server over HTTP/1.1. It never
 * binds or listens on any socket. */
#ifndef UMB_TUNNEL_CONNECTOR_H
#define UMB_TUNNEL_CONNECTOR_H

/** `umbra connect -c FILE`: runs until SIGTERM/SIGINT and a drain;
 * 0 on a clean stop, 1 on a startup error, 2 on usage. */
int connector_main(int argc, char **argv);

#endif
