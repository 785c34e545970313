/* pki_int.h — shared inside src/identity/ only. */
#ifndef UMB_PKI_INT_H
#define UMB_PKI_INT_H

/** Format an error into err[PKI_ERR_LEN] (err may be NULL). */
void pki__err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
