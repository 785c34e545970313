/* embed.h — the builtin embedder: a deterministic, in-process text
 * vectoriser for the semantic routing layer (routing.semantic.embedder:
 * builtin). No model server, no network and no data file: the stop words,
 * the stemmer and the concept lexicon are compiled in.
 *
 * A text becomes a bag of features — stemmed words, word bigrams,
 * character 3–5-grams inside words, word shapes (numbers, e-mail-like
 * tokens, code identifiers) and concept features from a hand-written
 * lexicon of general domain vocabulary — hashed with random signs into a
 * fixed number of floats, weighted by sublinear term frequency and an
 * optional IDF fitted on a corpus at build time, and L2-normalised. See
 * docs/embedder.md for the design and its measured quality.
 *
 * The model is immutable once built: embed_builtin_vec may run on many
 * threads at once. A call never allocates; it reads the text in one linear
 * pass with a few KB of stack, whatever the text (arbitrary bytes, any
 * length). */
#ifndef UMB_EMBED_H
#define UMB_EMBED_H

#include "core/core.h"

/** Output dimension of the builtin embedder. */
#define EMBED_BUILTIN_DIM 4096

struct embed_builtin;

/** Build the model. corpus[0..n) are texts (route descriptions and
 * examples) used to fit IDF weights; corpus may be NULL with n 0 for
 * uniform weights. The texts are read, not kept. Never returns NULL
 * (aborts on OOM like every long-lived allocation). */
struct embed_builtin *embed_builtin_new(const struct str *corpus, size_t n);

/** Free a model (NULL is fine). */
void embed_builtin_free(struct embed_builtin *e);

/** Number of floats embed_builtin_vec writes. */
size_t embed_builtin_dim(const struct embed_builtin *e);

/** Embed text into out[0..dim): L2-normalised, or all zero when the text
 * has no feature (empty, only spaces, punctuation or stop words).
 * Deterministic across runs and machines of the same float format. */
void embed_builtin_vec(const struct embed_builtin *e, struct str text, float *out);

#endif
