#ifndef CZSTD_H
#define CZSTD_H

// zstd for image objects, manifests and manifest deltas. Prefixed wrappers only,
// so Swift never sees zstd's macros or its experimental API.

#include <stddef.h>
#include <stdint.h>

/// Returns non-zero if a result of the functions below is an error code.
int CZstd_is_error(size_t result);
/// zstd's text for an error code.
const char *CZstd_error_name(size_t result);

size_t CZstd_compress_bound(size_t size);
/// Compresses src into dst (capacity cap) at `level`; result is the size or an error code.
size_t CZstd_compress(void *dst, size_t cap, const void *src, size_t size, int level);

/// The decompressed size recorded in a frame header, or UINT64_MAX if unknown or invalid.
uint64_t CZstd_frame_content_size(const void *src, size_t size);

/// A reusable decompression context (one per thread).
typedef struct CZstd_dctx CZstd_dctx;
CZstd_dctx *CZstd_dctx_new(void);
void CZstd_dctx_free(CZstd_dctx *dctx);
/// Decompresses one whole frame into dst (capacity cap); result is the size or an error code.
/// Output larger than cap is an error, never an overflow.
size_t CZstd_decompress(CZstd_dctx *dctx, void *dst, size_t cap, const void *src, size_t size);

/// Compresses `src` with `prefix` (an older version of the same data) as reference:
/// unchanged regions become references to the prefix (zstd's "patch-from").
size_t CZstd_compress_with_prefix(void *dst, size_t cap, const void *src, size_t size, const void *prefix,
                                  size_t prefix_size, int level);
/// The reverse: the same prefix must be given.
size_t CZstd_decompress_with_prefix(void *dst, size_t cap, const void *src, size_t size, const void *prefix,
                                    size_t prefix_size);

#endif
