/* audit_cmd.h — `umbra audit verify|keygen` (audit_cmd.c). */
#ifndef UMB_AUDIT_CMD_H
#define UMB_AUDIT_CMD_H

/** argv[0] is "audit"; returns the process exit code (0 intact/OK, 1
 * tampered, 2 usage or I/O error). */
int audit_cmd_main(int argc, char **argv);

#endif
