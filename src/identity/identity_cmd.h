/* identity_cmd.h — `umbra pki ...` and `umbra key ...` entry points. */
#ifndef UMB_IDENTITY_CMD_H
#define UMB_IDENTITY_CMD_H

/** argv[0] is "pki" or "key"; returns the process exit code. */
int identity_cmd_main(int argc, char **argv);

#endif
