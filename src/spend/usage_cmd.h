/* usage_cmd.h — `umbra usage` and the writer GET /admin/usage shares. */
#ifndef UMB_USAGE_CMD_H
#define UMB_USAGE_CMD_H

#include "store/store.h"

int usage_cmd_main(int argc, char **argv);
/** The rows of q as a table (fmt 0), a JSON array (1) or CSV (2). */
int usage_write(struct store *st, const struct store_usage_query *q, int fmt, struct buf *out);
/** "model" | "day" | "identity" | "team"; UMB_ERR otherwise. */
int usage_by_parse(const char *s, enum store_usage_by *out);
/** YYYY-MM-DD with a plausible month and day. */
bool usage_day_valid(const char *s);

#endif
