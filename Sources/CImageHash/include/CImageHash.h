#ifndef CIMAGEHASH_H
#define CIMAGEHASH_H

// SHA-256 from libcrypto (OpenSSL), the one hash of image objects and manifests.
// libcrypto picks the SHA-NI / AVX2 code path at run time. Only these prefixed
// functions are visible to Swift; the OpenSSL headers stay inside the .c file.

#include <stddef.h>
#include <stdint.h>

/// One-shot SHA-256 of `len` bytes into `out` (32 bytes).
void CImageHash_sha256(const void *data, size_t len, uint8_t *out);

/// An incremental SHA-256 (for hashing a file chunk by chunk).
typedef struct CImageHash_ctx CImageHash_ctx;
CImageHash_ctx *CImageHash_new(void);
void CImageHash_update(CImageHash_ctx *ctx, const void *data, size_t len);
/// Writes the digest (32 bytes) and resets the context for reuse.
void CImageHash_final(CImageHash_ctx *ctx, uint8_t *out);
void CImageHash_free(CImageHash_ctx *ctx);

#endif
