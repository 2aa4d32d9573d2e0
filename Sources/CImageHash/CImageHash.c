#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "CImageHash.h"

#include <openssl/sha.h>
#include <stdlib.h>

// The low-level SHA256_* functions are deprecated in OpenSSL 3 in favour of EVP,
// but they are still provided, need no provider loading (which matters in the
// static agent) and have no per-call fetch cost for millions of small chunks.

void CImageHash_sha256(const void *data, size_t len, uint8_t *out) {
    SHA256((const unsigned char *)data, len, out);
}

struct CImageHash_ctx {
    SHA256_CTX sha;
};

CImageHash_ctx *CImageHash_new(void) {
    CImageHash_ctx *ctx = malloc(sizeof *ctx);
    if (ctx != NULL) SHA256_Init(&ctx->sha);
    return ctx;
}

void CImageHash_update(CImageHash_ctx *ctx, const void *data, size_t len) { SHA256_Update(&ctx->sha, data, len); }

void CImageHash_final(CImageHash_ctx *ctx, uint8_t *out) {
    SHA256_Final(out, &ctx->sha);
    SHA256_Init(&ctx->sha);
}

void CImageHash_free(CImageHash_ctx *ctx) { free(ctx); }
