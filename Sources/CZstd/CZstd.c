#define ZSTD_STATIC_LINKING_ONLY 1
#include "CZstd.h"

#include <zstd.h>
#include <zstd_errors.h>

int CZstd_is_error(size_t result) { return ZSTD_isError(result); }
const char *CZstd_error_name(size_t result) { return ZSTD_getErrorName(result); }
size_t CZstd_compress_bound(size_t size) { return ZSTD_compressBound(size); }

size_t CZstd_compress(void *dst, size_t cap, const void *src, size_t size, int level) {
    return ZSTD_compress(dst, cap, src, size, level);
}

uint64_t CZstd_frame_content_size(const void *src, size_t size) {
    unsigned long long n = ZSTD_getFrameContentSize(src, size);
    if (n == ZSTD_CONTENTSIZE_UNKNOWN || n == ZSTD_CONTENTSIZE_ERROR) return UINT64_MAX;
    return (uint64_t)n;
}

struct CZstd_dctx;

CZstd_dctx *CZstd_dctx_new(void) { return (CZstd_dctx *)ZSTD_createDCtx(); }
void CZstd_dctx_free(CZstd_dctx *dctx) { ZSTD_freeDCtx((ZSTD_DCtx *)dctx); }

size_t CZstd_decompress(CZstd_dctx *dctx, void *dst, size_t cap, const void *src, size_t size) {
    return ZSTD_decompressDCtx((ZSTD_DCtx *)dctx, dst, cap, src, size);
}

// Windows up to 1 GiB so that a manifest delta can reach back over the whole old manifest.
#define CZSTD_PREFIX_WINDOW_LOG 30

size_t CZstd_compress_with_prefix(void *dst, size_t cap, const void *src, size_t size, const void *prefix,
                                  size_t prefix_size, int level) {
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (cctx == NULL) return (size_t)-ZSTD_error_memory_allocation;
    size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, CZSTD_PREFIX_WINDOW_LOG);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_refPrefix(cctx, prefix, prefix_size);
    if (!ZSTD_isError(r)) r = ZSTD_compress2(cctx, dst, cap, src, size);
    ZSTD_freeCCtx(cctx);
    return r;
}

size_t CZstd_decompress_with_prefix(void *dst, size_t cap, const void *src, size_t size, const void *prefix,
                                    size_t prefix_size) {
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (dctx == NULL) return (size_t)-ZSTD_error_memory_allocation;
    size_t r = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, CZSTD_PREFIX_WINDOW_LOG);
    if (!ZSTD_isError(r)) r = ZSTD_DCtx_refPrefix(dctx, prefix, prefix_size);
    if (!ZSTD_isError(r)) r = ZSTD_decompressDCtx(dctx, dst, cap, src, size);
    ZSTD_freeDCtx(dctx);
    return r;
}
