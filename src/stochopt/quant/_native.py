"""Native CPU kernels for block-wise dynamic quantization, built with the system C compiler
the first time they are needed, and the custom ops that put them in compiled graphs.

The built library is kept in the user's cache directory (:func:`cache_directory`), named by
a hash of the C source, the compiler flags and the CPU (the code is built for this CPU's
instruction set), and written atomically; later processes load it without running the
compiler. A cached library that does not load or fails the self-check is rebuilt (with a
warning naming the file).

Why native code: on the CPU, ``torch.compile`` emits every table look-up (``code[codes]``, the
boundary next to a value) as a scalar loop inside the vector loop and every float/int bit
reinterpretation as another one, and an exact nearest-code search needs both (measurements in
docs/performance.md, issue #5). The kernels below are C that the compiler vectorizes: with
AVX-512 intrinsics where the CPU has them, as plain loops elsewhere. They give bit for bit the
codes and scales of :func:`stochopt.quant.quantize_blockwise` (the tests check every decision
boundary and its float neighbours, every float32 value at a stride, and in the slow suite
every float32 value), run on ``torch.get_num_threads()`` OpenMP threads, and :func:`kernels`
returns ``None`` wherever they cannot be built (no compiler, another platform, a failed
self-check), in which case callers keep the pure-torch path.

The quantizer finds a value's code without a search. The boundaries between the map's seven
decades (and those next to 0 and 1) split [0, 1] into regions; which region holds the value
comes from comparing it with them (plain loops), or from two table look-ups by its binade,
which holds at most one of them (AVX-512). Inside a decade the boundaries are evenly spaced
up to float rounding, so an affine function of the value fitted to them gives the nearest one,
``k``; one comparison with boundary ``k`` (bit patterns compared as integers, which orders
non-negative floats) settles the code.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading

import torch
from torch import Tensor

__all__ = [
    "NativeMap",
    "cache_directory",
    "dequantize_blockwise",
    "dequantize_into",
    "kernels",
    "library_path",
    "native_map",
    "quantize_blockwise_",
    "quantize_into",
    "run_dequantize",
    "run_quantize",
    "run_quantize_many",
    "threads_for",
    "usable",
]

_log = logging.getLogger(__name__)

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint32_t t[8];         /* B_0, the six boundaries between decades, B_{K-1} (bit patterns) */
  float r[7], c[7];      /* nearest boundary inside decade d: (int)(a * r[d] + c[d]) */
  int32_t top, zero, u;  /* K, index of 0 in the map, 1 for the unsigned map */
  uint32_t bounds[256];  /* the K boundaries between neighbouring magnitudes (bit patterns),
                            then 0x7FFFFFFF */
  /* the same by table look-ups (AVX-512): region = below[E] + (x > at[E]) of binade E - 96
     (0: under B_0, d + 1: decade d, 8: over B_{K-1}); then r, c and the boundaries lo..hi
     that k is clamped to (regions 0 and 8 make the rank 0 and K) */
  int32_t below[32], at[32];
  float region_r[16], region_c[16];
  int32_t region_lo[16], region_hi[16];
} qmap;

static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* largest finite magnitude of a block (non-finite values count as 0), as bits */
__attribute__((noinline)) static uint32_t block_absmax(const float* restrict x, int n) {
  uint32_t m = 0;
  for (int i = 0; i < n; i++) {
    uint32_t v = bits_of(x[i]) & 0x7FFFFFFFu;
    v &= 0u - (uint32_t)(v < 0x7F800000u);
    m = v > m ? v : m;
  }
  return m;
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define HAVE_AVX512 1

/* codes_signed / codes_unsigned for 16 values at a time: binade tables instead of comparing
   with every decade boundary, and a hardware gather of the one boundary compared with */
static void codes_avx512(const float* x, uint8_t* out, int n, float inv, const qmap* q) {
  const __m512i below0 = _mm512_loadu_si512(q->below), below1 = _mm512_loadu_si512(q->below + 16);
  const __m512i at0 = _mm512_loadu_si512(q->at), at1 = _mm512_loadu_si512(q->at + 16);
  const __m512 rt = _mm512_loadu_ps(q->region_r), ct = _mm512_loadu_ps(q->region_c);
  const __m512i lot = _mm512_loadu_si512(q->region_lo), hit = _mm512_loadu_si512(q->region_hi);
  const __m512i absmask = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
  const __m512i zero = _mm512_set1_epi32(q->zero), one = _mm512_set1_epi32(1);
  const __m512i e0 = _mm512_set1_epi32(96);
  const __m512 lower = _mm512_set1_ps(q->u ? 0.0f : -1.0f);
  const __m512 vinv = _mm512_set1_ps(inv), fzero = _mm512_setzero_ps();
  const int sgn = !q->u;
  for (int i = 0; i < n; i += 16) {
    const __mmask16 lane = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512i v = _mm512_castps_si512(_mm512_maskz_loadu_ps(lane, x + i));
    const __mmask16 finite = _mm512_cmplt_epi32_mask(_mm512_and_si512(v, absmask), inf);
    __m512 s = _mm512_maskz_mul_ps(finite, _mm512_castsi512_ps(v), vinv);  /* NaN, inf -> 0 */
    s = _mm512_max_ps(s, lower);  /* above 1 by rounding: region 8, the top code, as if 1 */
    const __m512i mb = _mm512_and_si512(_mm512_castps_si512(s), absmask);
    const __mmask16 neg = sgn ? _mm512_cmp_ps_mask(s, fzero, _CMP_LT_OQ) : 0;  /* not -0 */
    const __m512i xm = _mm512_mask_add_epi32(mb, neg, mb, one);
    /* binade - 96, saturated at 0 (16-bit lanes: the upper half of each is 0 anyway) */
    const __m512i e = _mm512_subs_epu16(_mm512_srli_epi32(xm, 23), e0);
    __m512i region = _mm512_permutex2var_epi32(below0, e, below1);
    const __m512i at = _mm512_permutex2var_epi32(at0, e, at1);
    region = _mm512_mask_add_epi32(region, _mm512_cmpgt_epi32_mask(xm, at), region, one);
    const __m512 r = _mm512_permutexvar_ps(region, rt), c = _mm512_permutexvar_ps(region, ct);
    const __m512i lo = _mm512_permutexvar_epi32(region, lot);
    const __m512i hi = _mm512_permutexvar_epi32(region, hit);
    __m512i k = _mm512_cvttps_epi32(_mm512_fmadd_ps(_mm512_castsi512_ps(xm), r, c));
    k = _mm512_max_epi32(_mm512_min_epi32(k, hi), lo);
    const __m512i b = _mm512_i32gather_epi32(k, (const void*)q->bounds, 4);
    const __m512i rank = _mm512_mask_add_epi32(k, _mm512_cmpgt_epi32_mask(xm, b), k, one);
    const __m512i code = _mm512_mask_sub_epi32(_mm512_add_epi32(zero, rank), neg, zero,
                                               _mm512_min_epi32(rank, zero));
    _mm512_mask_cvtepi32_storeu_epi8(out + i, lane, code);
  }
}

static void dequantize_avx512(const uint8_t* c, const float* table, float a, float* o, int n) {
  const __m512 va = _mm512_set1_ps(a);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 lane = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512i index = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lane, c + i));
    const __m512 values = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lane, index, table, 4);
    _mm512_mask_storeu_ps(o + i, lane, _mm512_mul_ps(values, va));
  }
}
#endif

#ifndef HAVE_AVX512
/* The map's constants as locals, so that the loops below keep them in registers. */
#define MAP_CONSTANTS                                                                      \
  const uint32_t t0 = q->t[0], t1 = q->t[1], t2 = q->t[2], t3 = q->t[3], t4 = q->t[4],    \
                 t5 = q->t[5], t6 = q->t[6], t7 = q->t[7];                                 \
  const float r0 = q->r[0], r1 = q->r[1], r2 = q->r[2], r3 = q->r[3], r4 = q->r[4],       \
              r5 = q->r[5], r6 = q->r[6];                                                   \
  const float c0 = q->c[0], c1 = q->c[1], c2 = q->c[2], c3 = q->c[3], c4 = q->c[4],       \
              c5 = q->c[5], c6 = q->c[6];                                                   \
  const int32_t top = q->top, zero = q->zero, u = q->u;                                    \
  const uint32_t* restrict b = q->bounds;

/* RANK: the rank of magnitude bits x (ties already folded into x) among the boundaries */
#define RANK(x, rank)                                                                      \
  {                                                                                        \
    int32_t m1 = x > t1, m2 = x > t2, m3 = x > t3, m4 = x > t4, m5 = x > t5, m6 = x > t6;  \
    float r = m1 ? r1 : r0, c = m1 ? c1 : c0;                                              \
    r = m2 ? r2 : r; c = m2 ? c2 : c;                                                      \
    r = m3 ? r3 : r; c = m3 ? c3 : c;                                                      \
    r = m4 ? r4 : r; c = m4 ? c4 : c;                                                      \
    r = m5 ? r5 : r; c = m5 ? c5 : c;                                                      \
    r = m6 ? r6 : r; c = m6 ? c6 : c;                                                      \
    int32_t e = m1 + m2 + m3 + m4 + m5 + m6 + u;                                           \
    int32_t lo = (1 << e) - u, hi = (2 << e) - 2 - u; /* the decade's inner boundaries */  \
    int32_t k = (int32_t)(from_bits(x) * r + c);                                           \
    k = k > hi ? hi : k;                                                                   \
    k = k < lo ? lo : k;                                                                   \
    rank = k + (int32_t)(x > b[k]);                                                        \
    rank = rank > hi + 1 ? hi + 1 : rank;                                                  \
    rank = x > t0 ? rank : 0;                                                              \
    rank = x > t7 ? top : rank;                                                            \
  }

/* x * inv clamped to [lower, 1], non-finite x counting as 0 */
static inline float scaled(float x, float inv, float lower) {
  uint32_t v = bits_of(x);
  v &= 0u - (uint32_t)((v & 0x7FFFFFFFu) < 0x7F800000u);
  float s = from_bits(v) * inv;
  s = s < lower ? lower : s;
  return s > 1.0f ? 1.0f : s;
}

static void codes_signed(const float* restrict x, uint8_t* restrict out, int n, float inv,
                         const qmap* restrict q) {
  MAP_CONSTANTS
  (void)u;
  for (int i = 0; i < n; i++) {
    uint32_t sb = bits_of(scaled(x[i], inv, -1.0f)), mb = sb & 0x7FFFFFFFu;
    uint32_t neg = (sb >> 31) & (uint32_t)(mb != 0);
    /* ties go to the lower map entry: for a negative value, the larger magnitude */
    uint32_t xm = mb + neg;
    int32_t rank;
    RANK(xm, rank)
    int32_t capped = rank > zero ? zero : rank;  /* the map has no -1.0 */
    out[i] = (uint8_t)(neg ? zero - capped : zero + rank);
  }
}

static void codes_unsigned(const float* restrict x, uint8_t* restrict out, int n, float inv,
                           const qmap* restrict q) {
  MAP_CONSTANTS
  (void)zero;
  for (int i = 0; i < n; i++) {
    uint32_t xm = bits_of(scaled(x[i], inv, 0.0f)) & 0x7FFFFFFFu;
    int32_t rank;
    RANK(xm, rank)
    out[i] = (uint8_t)rank;
  }
}
#endif

/* one block: its absmax, then its codes */
static void quantize_block(const float* x, uint8_t* codes, float* absmax, int len,
                           const qmap* q) {
  const float m = from_bits(block_absmax(x, len));
  *absmax = m;
  const float inv = 1.0f / (m > 1e-38f ? m : 1e-38f);
#ifdef HAVE_AVX512
  codes_avx512(x, codes, len, inv, q);
#else
  if (q->u) codes_unsigned(x, codes, len, inv, q);
  else codes_signed(x, codes, len, inv, q);
#endif
}

static void dequantize_block(const uint8_t* codes, float a, const float* table, float* out,
                             int len) {
#ifdef HAVE_AVX512
  dequantize_avx512(codes, table, a, out, len);
#else
  for (int i = 0; i < len; i++) out[i] = table[(int32_t)codes[i]] * a;
#endif
}

/* Work items of `pieces` pieces of n[p] values, each piece with `states` arrays (array
   p * states + s): piece by piece, block-major within a piece. first[p]: items before piece
   p (first[pieces]: all). The caller frees the result; NULL if out of memory. */
static int64_t* item_offsets(const int64_t* n, int pieces, int states, int64_t block) {
  int64_t* first = (int64_t*)malloc(sizeof(int64_t) * (size_t)(pieces + 1));
  if (!first) return NULL;
  first[0] = 0;
  for (int p = 0; p < pieces; p++) first[p + 1] = first[p] + (n[p] + block - 1) / block * states;
  return first;
}

/* the array and block of work item w */
static inline void locate(int64_t w, const int64_t* first, int pieces, int states,
                          int64_t* array, int64_t* j) {
  int lo = 0, hi = pieces - 1;  /* the last piece that starts at or before w */
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first[mid] <= w) lo = mid; else hi = mid - 1;
  }
  *array = (int64_t)lo * states + (w - first[lo]) % states;
  *j = (w - first[lo]) / states;
}

/* fn(args, a, j, start, len) for every block j of every array a, in one parallel region
   (each fork and join of the threads costs tens of microseconds when they sleep between
   regions). Under a static schedule the block-major order gives each thread of a one-piece
   call the same contiguous share of the values as inductor's statically scheduled loops,
   whose results it then finds in its own caches. Returns 0, or -1 if out of memory. */
typedef void (*block_fn)(const void* args, int64_t a, int64_t j, int64_t start, int len);

static int for_each_block(int pieces, int states, const int64_t* n, int64_t block,
                          int threads, block_fn fn, const void* args) {
  int64_t* first = item_offsets(n, pieces, states, block);
  if (!first) return -1;
  #pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t w = 0; w < first[pieces]; w++) {
    int64_t a, j;
    locate(w, first, pieces, states, &a, &j);
    const int64_t size = n[a / states], start = j * block;
    fn(args, a, j, start, (int)(size - start < block ? size - start : block));
  }
  free(first);
  return 0;
}

typedef struct {
  float* const* x;
  uint8_t* const* codes;
  float* const* absmax;
  const qmap* const* q;
} quantize_args;

static void quantize_item(const void* args, int64_t a, int64_t j, int64_t start, int len) {
  const quantize_args* g = (const quantize_args*)args;
  quantize_block(g->x[a] + start, g->codes[a] + start, g->absmax[a] + j, len, g->q[a]);
}

int quantize_many(int pieces, int states, float* const* x, uint8_t* const* codes,
                  float* const* absmax, const qmap* const* q, const int64_t* n, int64_t block,
                  int threads) {
  const quantize_args args = {x, codes, absmax, q};
  return for_each_block(pieces, states, n, block, threads, quantize_item, &args);
}

typedef struct {
  uint8_t* const* codes;
  float* const* absmax;
  float* const* tables;
  float* const* out;
} dequantize_args;

static void dequantize_item(const void* args, int64_t a, int64_t j, int64_t start, int len) {
  const dequantize_args* g = (const dequantize_args*)args;
  dequantize_block(g->codes[a] + start, g->absmax[a][j], g->tables[a], g->out[a] + start, len);
}

int dequantize_many(int pieces, int states, uint8_t* const* codes, float* const* absmax,
                    float* const* tables, float* const* out, const int64_t* n, int64_t block,
                    int threads) {
  const dequantize_args args = {codes, absmax, tables, out};
  return for_each_block(pieces, states, n, block, threads, dequantize_item, &args);
}
"""


class NativeMap(ctypes.Structure):
    """The quantizer's constants for one dynamic map (mirrors ``qmap`` in the C source)."""

    _fields_ = [("t", ctypes.c_uint32 * 8), ("r", ctypes.c_float * 7), ("c", ctypes.c_float * 7),
                ("top", ctypes.c_int32), ("zero", ctypes.c_int32), ("u", ctypes.c_int32),
                ("bounds", ctypes.c_uint32 * 256), ("below", ctypes.c_int32 * 32),
                ("at", ctypes.c_int32 * 32), ("region_r", ctypes.c_float * 16),
                ("region_c", ctypes.c_float * 16), ("region_lo", ctypes.c_int32 * 16),
                ("region_hi", ctypes.c_int32 * 16)]


def _bits(values: Tensor) -> list[int]:
    return values.to(torch.float32).contiguous().view(torch.int32).tolist()


@functools.cache
def native_map(signed: bool) -> NativeMap:
    """The C quantizer's constants for ``dynamic_map(signed)``.

    Decade ``d`` (0 to 6) holds ``2**(d + u)`` map values (``u`` is 1 for the unsigned map), so
    its inner boundaries have indices ``2**(d+u) - u`` to ``2**(d+u+1) - 2 - u``; within a decade
    they are evenly spaced up to float rounding, and the affine estimate ``a * r + c`` of the
    nearest one is fitted to the decade's first and last inner boundary.

    Raises:
        ValueError: if the map does not have this layout or a fitted estimate is off by a
            quarter of a boundary anywhere (the C code's one comparison would then not suffice).
    """
    from stochopt.quant.maps import dynamic_map

    code = dynamic_map(signed)
    mags = code[code >= 0] if signed else code
    bounds = ((mags[:-1] + mags[1:]) / 2).double()  # (K,)
    top, u = bounds.numel(), 0 if signed else 1
    q = NativeMap()
    q.top, q.zero, q.u = top, int((code < 0).sum()), u
    q.bounds[:top] = _bits(bounds)
    first = [2 ** (d + u) - u for d in range(7)]
    last = [2 ** (d + u + 1) - 2 - u for d in range(7)]
    if last[-1] != top - 2:
        raise ValueError(f"unexpected map layout: {top} boundaries")
    q.t[:] = _bits(bounds[[0, *(f - 1 for f in first[1:]), top - 1]])
    for d in range(7):
        if last[d] > first[d]:
            r = (last[d] - first[d]) / float(bounds[last[d]] - bounds[first[d]])
            c = first[d] - r * float(bounds[first[d]])
            inner = torch.arange(first[d], last[d] + 1)
            if float((bounds[inner] * r + c - inner).abs().max()) > 0.25:
                raise ValueError(f"decade {d}: its boundaries are not evenly spaced")
        else:  # at most one inner boundary: every value of the decade is next to it
            r, c = 0.0, float(first[d])
        q.r[d], q.c[d] = r, c + 0.5  # + 0.5: the C code's truncation then rounds
    _binade_tables(q, first, last)
    return q


_LOW_BINADE = 96  # the look-up tables cover binades 96 to 127 (magnitudes 2**-31 to 1)


def _binade_tables(q: NativeMap, first: list[int], last: list[int]) -> None:
    """Fill the AVX-512 kernel's tables: each region threshold in its own binade."""
    binades = [t >> 23 for t in q.t]
    if len(set(binades)) != len(binades) or min(binades) < _LOW_BINADE:
        raise ValueError("two region thresholds share a binade")
    for j in range(32):
        binade = _LOW_BINADE + j
        q.below[j] = sum(b < binade for b in binades)
        q.at[j] = next((int(t) for t, b in zip(q.t, binades) if b == binade), 0x7FFFFFFF)
    for region in range(16):
        d = min(max(region - 1, 0), 6)
        q.region_r[region], q.region_c[region] = q.r[d], q.c[d]
        q.region_lo[region], q.region_hi[region] = first[d], last[d]
        if region == 0:  # under B_0: boundary 0 with no inner boundary above, so rank 0
            q.region_lo[region], q.region_hi[region] = 0, -1
        elif region >= 8:  # over B_{K-1}: boundary K - 1 and rank K
            q.region_lo[region] = q.region_hi[region] = q.top - 1
    q.bounds[q.top:] = [0x7FFFFFFF] * (256 - q.top)


_FLAGS = (  # tried in turn: the first that builds wins
    ("-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp"),
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-fopenmp"),
    ("-O3",),
)


def cache_directory() -> str:
    """Where built kernels are kept: ``$STOCHOPT_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/stochopt``, else ``~/.cache/stochopt``."""
    if os.environ.get("STOCHOPT_CACHE_DIR"):
        return os.environ["STOCHOPT_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stochopt")


def _cpu() -> str:
    """What ``-march=native`` code depends on: the CPU's model and instruction-set flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def library_path(flag_sets: tuple[tuple[str, ...], ...] = _FLAGS,
                 directory: str | None = None) -> str:
    """The cached library's file for these flags on this machine."""
    key = repr((_SOURCE, flag_sets, sys.platform, platform.machine(), _cpu()))
    name = f"quant-{hashlib.sha256(key.encode()).hexdigest()[:20]}.so"
    return os.path.join(directory or cache_directory(), name)


def _cached_build(flag_sets: tuple[tuple[str, ...], ...] = _FLAGS,
                  directory: str | None = None) -> ctypes.CDLL | None:
    """The cached library for ``flag_sets`` (no compiler runs), else :func:`_build` it and
    keep it in the cache; a cached library that does not load or fails the self-check is
    rebuilt in its place. Without a usable cache directory, builds as :func:`_build`."""
    if sys.platform not in ("linux", "darwin"):
        return None
    path = library_path(flag_sets, directory)
    if os.path.exists(path):
        try:
            lib = _declared(ctypes.CDLL(path))
            _self_check(lib)
            return lib
        except (OSError, ValueError, AttributeError) as error:
            _log.warning("the cached quantization kernels %s are damaged (%s): rebuilding "
                         "them", path, error)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as error:
        _log.info("cannot keep the quantization kernels in %s (%s)", os.path.dirname(path),
                  error)
        return _build(flag_sets)
    return _build(flag_sets, keep=path)


def _keep(library: str, path: str) -> None:
    """Copy the built ``library`` to ``path`` atomically (a temporary file in the same
    directory, then renamed): readers see the old file or the whole new one."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".quant-",
                                         suffix=".so.tmp")
    try:
        with os.fdopen(handle, "wb") as out, open(library, "rb") as built:
            shutil.copyfileobj(built, out)
        os.replace(temporary, path)
    except OSError as error:
        _log.info("could not keep the quantization kernels in %s: %s", path, error)
        if os.path.exists(temporary):
            os.unlink(temporary)


def _build(flag_sets: tuple[tuple[str, ...], ...] = _FLAGS,
           keep: str | None = None) -> ctypes.CDLL | None:
    """Compile the C source into a temporary directory and load it, with the first of
    ``flag_sets`` that works; None if none does. ``keep``: also copy the built library
    there (atomically), once it has loaded."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None or sys.platform not in ("linux", "darwin"):
        return None
    with tempfile.TemporaryDirectory(prefix="stochopt-quant-") as directory:
        source = os.path.join(directory, "quant.c")
        with open(source, "w") as f:
            f.write(_SOURCE)
        library = os.path.join(directory, "quant.so")
        for flags in flag_sets:
            command = [compiler, *flags, "-std=c99", "-shared", "-fPIC", source, "-o", library]
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as error:
                _log.debug("building the quantization kernels with %s failed: %s", flags, error)
                continue
            try:
                lib = ctypes.CDLL(library)  # stays mapped after the directory is removed
            except OSError as error:  # e.g. a temporary directory mounted noexec
                _log.debug("loading the quantization kernels failed: %s", error)
                return None
            if keep is not None:
                _keep(library, keep)
            break
        else:
            return None
    return _declared(lib)


def _declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    """``lib`` with its functions' argument and result types declared."""
    pointers, sizes = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64)
    i64, i32 = ctypes.c_int64, ctypes.c_int
    lib.quantize_many.argtypes = [i32, i32, pointers, pointers, pointers, pointers, sizes, i64,
                                  i32]
    lib.dequantize_many.argtypes = [i32, i32, pointers, pointers, pointers, pointers, sizes,
                                    i64, i32]
    lib.quantize_many.restype = lib.dequantize_many.restype = ctypes.c_int
    return lib


_LIBRARY: ctypes.CDLL | None = None  # set by kernels(); read by usable() (also when compiling)
_TRIED = False
_LOCK = threading.Lock()


def kernels() -> ctypes.CDLL | None:
    """The loaded kernels, built on the first call; None where they cannot be built or fail
    their self-check (set ``STOCHOPT_NATIVE=0`` to never use them)."""
    global _LIBRARY, _TRIED
    with _LOCK:
        if not _TRIED:
            _TRIED = True
            if os.environ.get("STOCHOPT_NATIVE", "1") != "0":
                _LIBRARY = _checked(_cached_build())
    return _LIBRARY


def _checked(lib: ctypes.CDLL | None) -> ctypes.CDLL | None:
    if lib is None:
        _log.info("no native quantization kernels (no C compiler?): using the torch path")
        return None
    try:
        _self_check(lib)
    except ValueError as error:
        _log.warning("native quantization kernels disabled: %s", error)
        return None
    return lib


def _self_check(lib: ctypes.CDLL) -> None:
    """Quantize every decision boundary and its float neighbours (blocks [1, value], so the
    scale is exactly 1) and dequantize every code; compare with the searched codes."""
    from stochopt.quant.maps import dynamic_map

    for signed in (True, False):
        code = dynamic_map(signed)
        edges = ((code[:-1] + code[1:]) / 2).view(torch.int32)
        near = (edges[:, None] + torch.arange(-3, 4, dtype=torch.int32)).view(torch.float32)
        values = torch.cat([near.reshape(-1).clamp(-1, 1), code, torch.tensor([0.0, -0.0])])
        pairs = torch.stack([torch.ones_like(values), values], 1)  # (m, 2)
        codes = torch.empty(pairs.shape, dtype=torch.uint8)
        absmax = torch.empty(pairs.shape[0], dtype=torch.float32)
        run_quantize(lib, pairs, codes, absmax, signed, 2, threads=1)
        if not torch.equal(codes[:, 1].long(), torch.bucketize(values, (code[:-1] + code[1:]) / 2)):
            raise ValueError("its codes differ from the searched ones")
        every = torch.arange(256, dtype=torch.uint8)
        one, out = torch.ones(1, dtype=torch.float32), torch.empty(256, dtype=torch.float32)
        run_dequantize(lib, [every], [one], [out], [signed], 256, threads=1)
        if not torch.equal(out, code):
            raise ValueError("its dequantized values differ from the map")


@functools.cache
def _table(signed: bool) -> Tensor:
    from stochopt.quant.maps import dynamic_map

    return dynamic_map(signed)


def usable(t: Tensor, block_size: int) -> bool:
    """Whether the native kernels serve tensor ``t`` in blocks of ``block_size``: it is on the
    CPU and :func:`kernels` has built them (this never builds, so that it can be traced by
    ``torch.compile``)."""
    return t.device.type == "cpu" and block_size < 2**31 and _LIBRARY is not None


def _library() -> ctypes.CDLL:
    if _LIBRARY is None:
        raise RuntimeError("the native quantization kernels are not built (see usable())")
    return _LIBRARY


def _addresses(values: list) -> ctypes.Array:
    """A C array of pointers: tensors' data or ctypes objects' addresses."""
    return (ctypes.c_void_p * len(values))(*(
        v.data_ptr() if isinstance(v, Tensor) else ctypes.addressof(v) for v in values))


def threads_for(values: int) -> int:
    """OpenMP threads for a call on ``values`` values in all: one below 2**16, where waking
    the other threads (tens of microseconds when they sleep) costs more than it saves."""
    return 1 if values < 1 << 16 else torch.get_num_threads()


def _pieces(arrays: list[Tensor], states: int) -> ctypes.Array:
    """The number of values of each piece (``states`` consecutive arrays of equal size)."""
    if not arrays or len(arrays) % states:
        raise ValueError(f"{len(arrays)} arrays do not form pieces of {states} states")
    sizes = [t.numel() for t in arrays]
    if any(sizes[i] != sizes[i - i % states] for i in range(len(sizes))):
        raise ValueError(f"the states of a piece must have equal sizes, got {sizes}")
    return (ctypes.c_int64 * (len(sizes) // states))(*sizes[::states])


def _check_layout(sizes: list[int], codes: list[Tensor], absmax: list[Tensor],
                  block_size: int) -> None:
    for n, c, a in zip(sizes, codes, absmax, strict=True):
        if not (c.is_contiguous() and a.is_contiguous()):
            raise ValueError("codes and absmax must be contiguous")
        if c.numel() != n or a.numel() != -(-n // block_size):
            raise ValueError(f"codes ({c.numel()}) and absmax ({a.numel()}) do not fit {n} "
                             f"values in blocks of {block_size}")


def run_quantize_many(lib: ctypes.CDLL, xs: list[Tensor], codes: list[Tensor],
                      absmax: list[Tensor], signed: list[bool], block_size: int,
                      threads: int, states: int = 1) -> None:
    """Call ``lib``'s quantizer once for many arrays: each of ``xs`` (any float dtype,
    flattened) into its contiguous ``codes`` and ``absmax``. Consecutive runs of ``states``
    arrays of equal size form a piece, whose blocks are split among threads together."""
    pieces = _pieces(xs, states)
    _check_layout([x.numel() for x in xs], codes, absmax, block_size)
    xs = [x.detach().reshape(-1).to(torch.float32).contiguous() for x in xs]
    if lib.quantize_many(len(pieces), states, _addresses(xs), _addresses(codes),
                         _addresses(absmax), _addresses([native_map(s) for s in signed]),
                         pieces, block_size, threads):
        raise MemoryError("the native quantizer could not allocate its work list")


def run_quantize(lib: ctypes.CDLL, x: Tensor, codes: Tensor, absmax: Tensor, signed: bool,
                 block_size: int, threads: int) -> None:
    """:func:`run_quantize_many` for one tensor."""
    run_quantize_many(lib, [x], [codes], [absmax], [signed], block_size, threads)


def run_dequantize(lib: ctypes.CDLL, codes: list[Tensor], absmax: list[Tensor],
                   out: list[Tensor], signed: list[bool], block_size: int, threads: int,
                   states: int = 1) -> None:
    """Call ``lib``'s dequantizer once for many arrays: ``dynamic_map(signed)[codes] *
    absmax`` per block into each contiguous float32 ``out``; pieces as in
    :func:`run_quantize_many`."""
    pieces = _pieces(codes, states)
    _check_layout([c.numel() for c in codes], codes, absmax, block_size)
    if any(o.numel() != c.numel() or o.dtype != torch.float32 or not o.is_contiguous()
           for o, c in zip(out, codes, strict=True)):
        raise ValueError("every out must be contiguous float32 with its codes' size")
    if lib.dequantize_many(len(pieces), states, _addresses(codes), _addresses(absmax),
                           _addresses([_table(s) for s in signed]), _addresses(out), pieces,
                           block_size, threads):
        raise MemoryError("the native dequantizer could not allocate its work list")


def quantize_into(xs: list[Tensor], codes: list[Tensor], absmax: list[Tensor],
                  signed: list[bool], block_size: int, states: int = 1) -> None:
    """Quantize many arrays (as :func:`quantize_blockwise_`) in one call; pieces as in
    :func:`run_quantize_many`."""
    run_quantize_many(_library(), xs, codes, absmax, signed, block_size,
                      threads_for(sum(x.numel() for x in xs)), states)


def dequantize_into(codes: list[Tensor], absmax: list[Tensor], out: list[Tensor],
                    signed: list[bool], block_size: int, states: int = 1) -> None:
    """Dequantize many arrays into the float32 buffers ``out`` in one call: for eager
    callers that reuse buffers (a fresh one per call costs more in page faults than the
    kernel itself); pieces as in :func:`run_quantize_many`."""
    run_dequantize(_library(), codes, absmax, out, signed, block_size,
                   threads_for(sum(c.numel() for c in codes)), states)


@torch.library.custom_op("stochopt::quantize_blockwise_", mutates_args=("codes", "absmax"))
def quantize_blockwise_(x: Tensor, codes: Tensor, absmax: Tensor, signed: bool,
                        block_size: int) -> None:
    """Write the codes and block scales of ``x`` (as :func:`stochopt.quant.quantize_blockwise`
    with ``dynamic_map(signed)``) into the contiguous ``codes`` (uint8, ``x.numel()`` values)
    and ``absmax`` (float32, one per block)."""
    run_quantize(_library(), x, codes, absmax, signed, block_size, threads_for(x.numel()))


@quantize_blockwise_.register_fake
def _(x: Tensor, codes: Tensor, absmax: Tensor, signed: bool, block_size: int) -> None:
    return None


@torch.library.custom_op("stochopt::dequantize_blockwise", mutates_args=())
def dequantize_blockwise(codes: Tensor, absmax: Tensor, signed: bool, block_size: int) -> Tensor:
    """``dynamic_map(signed)[codes] * absmax`` per block (float32, ``codes``' shape)."""
    out = torch.empty(codes.shape, dtype=torch.float32)
    run_dequantize(_library(), [codes.contiguous().view(-1)], [absmax.contiguous()],
                   [out.view(-1)], [signed], block_size, threads_for(codes.numel()))
    return out


@dequantize_blockwise.register_fake
def _(codes: Tensor, absmax: Tensor, signed: bool, block_size: int) -> Tensor:
    return torch.empty(codes.shape, dtype=torch.float32, device=codes.device)
