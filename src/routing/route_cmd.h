/* route_cmd.h — `umbra route -c FILE --explain` (route_cmd.c). */
#ifndef UMB_ROUTE_CMD_H
#define UMB_ROUTE_CMD_H

int route_cmd_main(int argc, char **argv);

#endif
