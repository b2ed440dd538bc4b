/*
 * punktfunk.fec._gf8 -- native multiply-accumulate kernel for Reed-Solomon over GF(2^8).
 *
 * One operation does all the bulk work of encoding and recovery:
 *
 *     out[r] = XOR over c of  m[r][c] * in[c]        (GF(2^8), polynomial 0x11D)
 *
 * for equal-length byte shards. A product by a constant m is linear over GF(2), so it splits
 * into the two nibbles of each byte: m*x = LO_m[x & 15] ^ HI_m[x >> 4] with two 16-entry tables.
 * PSHUFB looks up 16 (SSSE3) or 32 (AVX2) such entries per instruction, which is what makes the
 * kernel fast ("split-nibble" technique).
 *
 * Why the loop order: each block of up to four parity rows keeps its 32- or 64-byte accumulators
 * in registers while it walks every data shard, so a data chunk is loaded and nibble-split once
 * per row block instead of once per row, and accumulators never round-trip through memory.
 *
 * The instruction set is picked at run time (__builtin_cpu_supports), so one build with plain -O3
 * runs on any x86-64 and uses AVX2 where the CPU has it; the intrinsics are compiled only on x86,
 * other targets get the portable scalar path. The GIL is released while the kernel runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GF8_X86 1
#include <immintrin.h>
#endif

/* Per coefficient: LO table (m * x for x = 0..15) then HI table (m * (x << 4)). */
#define TABLE_BYTES 32
/* Far above any Reed-Solomon block over GF(2^8) (<= 255 shards); keeps sizes within 32 bits. */
#define MAX_DIM 4096

enum isa { ISA_SCALAR = 0, ISA_SSSE3 = 1, ISA_AVX2 = 2 };
static const char *const ISA_NAMES[] = {"scalar", "ssse3", "avx2"};
static enum isa best_isa = ISA_SCALAR;

typedef void (*kernel_fn)(const uint8_t *tab, size_t rows, size_t cols,
                          const uint8_t *const *in, uint8_t *const *out, size_t n);

/* ---------------------------------------------------------------- tables */

static uint8_t gf_double(uint8_t a)
{
    return (uint8_t)((a << 1) ^ ((a & 0x80) ? 0x1D : 0x00));
}

/* Nibble tables of every coefficient, built once at import (8 KiB): expand() is then a copy. */
static uint8_t all_tables[256][TABLE_BYTES];

/* Build the LO/HI tables of one coefficient from the products m*2^k (linearity). */
static void expand_one(uint8_t m, uint8_t *dst)
{
    uint8_t basis[8];
    basis[0] = m;
    for (int k = 1; k < 8; k++)
        basis[k] = gf_double(basis[k - 1]);
    dst[0] = 0;
    dst[16] = 0;
    for (int x = 1; x < 16; x++) {
        int low = 0;
        while (!((x >> low) & 1))
            low++;
        int rest = x & (x - 1);
        dst[x] = dst[rest] ^ basis[low];
        dst[16 + x] = dst[16 + rest] ^ basis[4 + low];
    }
}

/* ---------------------------------------------------------------- scalar path */

static void gemm_scalar(const uint8_t *tab, size_t rows, size_t cols,
                        const uint8_t *const *in, uint8_t *const *out, size_t n)
{
    for (size_t r = 0; r < rows; r++) {
        uint8_t *restrict o = out[r];
        memset(o, 0, n);
        for (size_t c = 0; c < cols; c++) {
            const uint8_t *restrict t = tab + (r * cols + c) * TABLE_BYTES;
            const uint8_t *restrict s = in[c];
            for (size_t i = 0; i < n; i++)
                o[i] ^= t[s[i] & 15] ^ t[16 + (s[i] >> 4)];
        }
    }
}

#ifdef GF8_X86
/* ---------------------------------------------------------------- SSSE3 path (16 B) */

#define SSSE3_FN __attribute__((target("ssse3")))
#define AVX2_FN __attribute__((target("avx2")))
#define INLINE_FN static inline __attribute__((always_inline))

/* R rows (<= 4) x V vectors (<= 2) of accumulators; R and V are literals at every call site,
 * so the compiler unrolls both loops and keeps acc[][] in registers. */
INLINE_FN SSSE3_FN void ssse3_block(const uint8_t *tab, size_t cols, const uint8_t *const *in,
                                    uint8_t *const *out, size_t off, const int R, const int V)
{
    const __m128i mask = _mm_set1_epi8(0x0f);
    const size_t row_stride = cols * TABLE_BYTES;
    __m128i acc[4][2];
    for (int k = 0; k < R; k++)
        for (int v = 0; v < V; v++)
            acc[k][v] = _mm_setzero_si128();
    for (size_t c = 0; c < cols; c++) {
        __m128i lo[2], hi[2];
        for (int v = 0; v < V; v++) {
            __m128i x = _mm_loadu_si128((const __m128i *)(in[c] + off + 16 * v));
            lo[v] = _mm_and_si128(x, mask);
            hi[v] = _mm_and_si128(_mm_srli_epi16(x, 4), mask);
        }
        const uint8_t *t = tab + c * TABLE_BYTES;
        for (int k = 0; k < R; k++) {
            __m128i tl = _mm_loadu_si128((const __m128i *)(t + k * row_stride));
            __m128i th = _mm_loadu_si128((const __m128i *)(t + k * row_stride + 16));
            for (int v = 0; v < V; v++)
                acc[k][v] = _mm_xor_si128(acc[k][v],
                                          _mm_xor_si128(_mm_shuffle_epi8(tl, lo[v]),
                                                        _mm_shuffle_epi8(th, hi[v])));
        }
    }
    for (int k = 0; k < R; k++)
        for (int v = 0; v < V; v++)
            _mm_storeu_si128((__m128i *)(out[k] + off + 16 * v), acc[k][v]);
}

#define SSSE3_ROWS(R)                                                       \
    for (; off + 32 <= n; off += 32)                                        \
        ssse3_block(t, cols, in, o, off, R, 2);                             \
    if (off < n)                                                            \
        ssse3_block(t, cols, in, o, off, R, 1);

/* n must be a multiple of 16. */
SSSE3_FN static void gemm_ssse3(const uint8_t *tab, size_t rows, size_t cols,
                                const uint8_t *const *in, uint8_t *const *out, size_t n)
{
    for (size_t r0 = 0; r0 < rows; r0 += 4) {
        const uint8_t *t = tab + r0 * cols * TABLE_BYTES;
        uint8_t *const *o = out + r0;
        size_t off = 0;
        switch (rows - r0 < 4 ? rows - r0 : 4) {
        case 4: SSSE3_ROWS(4) break;
        case 3: SSSE3_ROWS(3) break;
        case 2: SSSE3_ROWS(2) break;
        default: SSSE3_ROWS(1) break;
        }
    }
}

/* ---------------------------------------------------------------- AVX2 path (32 B) */

INLINE_FN AVX2_FN void avx2_block(const uint8_t *tab, size_t cols, const uint8_t *const *in,
                                  uint8_t *const *out, size_t off, const int R, const int V)
{
    const __m256i mask = _mm256_set1_epi8(0x0f);
    const size_t row_stride = cols * TABLE_BYTES;
    __m256i acc[4][2];
    for (int k = 0; k < R; k++)
        for (int v = 0; v < V; v++)
            acc[k][v] = _mm256_setzero_si256();
    for (size_t c = 0; c < cols; c++) {
        __m256i lo[2], hi[2];
        for (int v = 0; v < V; v++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(in[c] + off + 32 * v));
            lo[v] = _mm256_and_si256(x, mask);
            hi[v] = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
        }
        const uint8_t *t = tab + c * TABLE_BYTES;
        for (int k = 0; k < R; k++) {
            __m256i tl = _mm256_broadcastsi128_si256(
                _mm_loadu_si128((const __m128i *)(t + k * row_stride)));
            __m256i th = _mm256_broadcastsi128_si256(
                _mm_loadu_si128((const __m128i *)(t + k * row_stride + 16)));
            for (int v = 0; v < V; v++)
                acc[k][v] = _mm256_xor_si256(acc[k][v],
                                             _mm256_xor_si256(_mm256_shuffle_epi8(tl, lo[v]),
                                                              _mm256_shuffle_epi8(th, hi[v])));
        }
    }
    for (int k = 0; k < R; k++)
        for (int v = 0; v < V; v++)
            _mm256_storeu_si256((__m256i *)(out[k] + off + 32 * v), acc[k][v]);
}

#define AVX2_ROWS(R)                                                        \
    for (; off + 64 <= n; off += 64)                                        \
        avx2_block(t, cols, in, o, off, R, 2);                              \
    if (off < n)                                                            \
        avx2_block(t, cols, in, o, off, R, 1);

/* n must be a multiple of 32. */
AVX2_FN static void gemm_avx2(const uint8_t *tab, size_t rows, size_t cols,
                              const uint8_t *const *in, uint8_t *const *out, size_t n)
{
    for (size_t r0 = 0; r0 < rows; r0 += 4) {
        const uint8_t *t = tab + r0 * cols * TABLE_BYTES;
        uint8_t *const *o = out + r0;
        size_t off = 0;
        switch (rows - r0 < 4 ? rows - r0 : 4) {
        case 4: AVX2_ROWS(4) break;
        case 3: AVX2_ROWS(3) break;
        case 2: AVX2_ROWS(2) break;
        default: AVX2_ROWS(1) break;
        }
    }
}
#endif /* GF8_X86 */

/* ---------------------------------------------------------------- driver */

static const struct {
    kernel_fn fn;
    size_t block; /* the kernel handles lengths that are multiples of this */
} KERNELS[] = {
    {gemm_scalar, 1},
#ifdef GF8_X86
    {gemm_ssse3, 16},
    {gemm_avx2, 32},
#endif
};

/*
 * Run a kernel over any length: the block-aligned prefix in place, then the ragged tail through
 * zero-padded staging copies, so the SIMD loops never read or write past a caller's buffer.
 * `stage` holds (rows + cols) * block bytes plus room for the two pointer arrays.
 */
static void run_kernel(enum isa isa, const uint8_t *tab, size_t rows, size_t cols,
                       const uint8_t *const *in, uint8_t *const *out, size_t n, uint8_t *stage)
{
    kernel_fn fn = KERNELS[isa].fn;
    size_t block = KERNELS[isa].block;
    size_t main_len = n - n % block;
    size_t rest = n - main_len;
    if (main_len)
        fn(tab, rows, cols, in, out, main_len);
    if (!rest)
        return;
    const uint8_t **stage_in = (const uint8_t **)stage;
    uint8_t **stage_out = (uint8_t **)(stage + cols * sizeof(uint8_t *));
    uint8_t *bytes = stage + (cols + rows) * sizeof(uint8_t *);
    for (size_t c = 0; c < cols; c++) {
        uint8_t *s = bytes + c * block;
        memset(s, 0, block);
        memcpy(s, in[c] + main_len, rest);
        stage_in[c] = s;
    }
    for (size_t r = 0; r < rows; r++)
        stage_out[r] = bytes + (cols + r) * block;
    fn(tab, rows, cols, stage_in, stage_out, block);
    for (size_t r = 0; r < rows; r++)
        memcpy(out[r] + main_len, stage_out[r], rest);
}

/* ---------------------------------------------------------------- Python glue */

static int parse_isa(PyObject *arg, enum isa *isa)
{
    if (arg == NULL || arg == Py_None) {
        *isa = best_isa;
        return 0;
    }
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (name == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "isa must be a str or None");
        return -1;
    }
    for (int i = 0; i <= (int)best_isa; i++) {
        if (strcmp(name, ISA_NAMES[i]) == 0) {
            *isa = (enum isa)i;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "isa %R is not available on this CPU (best: %s)", arg,
                 ISA_NAMES[best_isa]);
    return -1;
}

/* Everything one gemm call holds: buffers stay acquired (pinned) while the GIL is released. */
typedef struct {
    Py_buffer tables;
    Py_buffer *views; /* cols inputs, then rows outputs (outputs only for gemm_into) */
    Py_ssize_t acquired;
    const uint8_t **in;
    uint8_t **out;
    uint8_t *stage;
} call_state;

static void release_state(call_state *st)
{
    for (Py_ssize_t i = 0; i < st->acquired; i++)
        PyBuffer_Release(&st->views[i]);
    if (st->tables.obj != NULL)
        PyBuffer_Release(&st->tables);
    PyMem_Free(st->views);
    PyMem_Free(st->in);
    PyMem_Free(st->out);
    PyMem_Free(st->stage);
}

/*
 * Acquire the tables and the input shards, check their shapes, allocate pointer arrays and the
 * tail staging area. Returns the shard length, or -1 with an exception set.
 */
static Py_ssize_t prepare_call(call_state *st, PyObject *tables, PyObject *inputs_fast,
                               Py_ssize_t rows, Py_ssize_t n_outputs)
{
    Py_ssize_t cols = PySequence_Fast_GET_SIZE(inputs_fast);
    if (rows < 1 || cols < 1 || rows > MAX_DIM || cols > MAX_DIM) {
        PyErr_Format(PyExc_ValueError,
                     "need 1..%d input and output shards, got %zd inputs and %zd outputs",
                     MAX_DIM, cols, rows);
        return -1;
    }
    if (PyObject_GetBuffer(tables, &st->tables, PyBUF_SIMPLE) < 0)
        return -1;
    if (st->tables.len != rows * cols * TABLE_BYTES) {
        PyErr_Format(PyExc_ValueError,
                     "tables hold %zd bytes; a %zd x %zd matrix needs %zd (got %zd input shards)",
                     st->tables.len, rows, cols, rows * cols * TABLE_BYTES, cols);
        return -1;
    }
    st->views = PyMem_Calloc((size_t)(cols + n_outputs), sizeof(Py_buffer));
    st->in = PyMem_Calloc((size_t)cols, sizeof(uint8_t *));
    st->out = PyMem_Calloc((size_t)rows, sizeof(uint8_t *));
    st->stage = PyMem_Malloc((size_t)(rows + cols) * (sizeof(uint8_t *) + 32));
    if (!st->views || !st->in || !st->out || !st->stage) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(inputs_fast);
    Py_ssize_t n = -1;
    for (Py_ssize_t c = 0; c < cols; c++) {
        if (PyObject_GetBuffer(items[c], &st->views[c], PyBUF_SIMPLE) < 0)
            return -1;
        st->acquired++;
        if (n < 0)
            n = st->views[c].len;
        else if (st->views[c].len != n) {
            PyErr_Format(PyExc_ValueError,
                         "shard %zd is %zd bytes but shard 0 is %zd; "
                         "all shards of a block must have the same length",
                         c, st->views[c].len, n);
            return -1;
        }
        st->in[c] = (const uint8_t *)st->views[c].buf;
    }
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "shards must not be empty");
        return -1;
    }
    return n;
}

static void run_unlocked(call_state *st, enum isa isa, size_t rows, size_t cols, size_t n)
{
    Py_BEGIN_ALLOW_THREADS
    run_kernel(isa, (const uint8_t *)st->tables.buf, rows, cols, st->in, st->out, n, st->stage);
    Py_END_ALLOW_THREADS
}

PyDoc_STRVAR(gemm_into_doc,
"gemm_into(tables, inputs, outputs, isa=None) -> None\n\n"
"Write outputs[r] = XOR_c m[r][c] * inputs[c] over GF(2^8) into caller-provided writable\n"
"buffers. `tables` comes from expand() of the len(outputs) x len(inputs) matrix. Every shard\n"
"(input and output) must be a contiguous buffer of the same length; outputs must not overlap\n"
"inputs. `isa` forces 'scalar', 'ssse3' or 'avx2' (tests), default: the best this CPU has.");

static PyObject *gf8_gemm_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "gemm_into(tables, inputs, outputs, isa=None)");
        return NULL;
    }
    enum isa isa;
    if (parse_isa(nargs == 4 ? args[3] : NULL, &isa) < 0)
        return NULL;
    PyObject *in_fast = PySequence_Fast(args[1], "inputs must be a sequence of buffers");
    if (in_fast == NULL)
        return NULL;
    PyObject *out_fast = PySequence_Fast(args[2], "outputs must be a sequence of buffers");
    if (out_fast == NULL) {
        Py_DECREF(in_fast);
        return NULL;
    }
    call_state st = {0};
    PyObject *result = NULL;
    Py_ssize_t rows = PySequence_Fast_GET_SIZE(out_fast);
    Py_ssize_t cols = PySequence_Fast_GET_SIZE(in_fast);
    Py_ssize_t n = prepare_call(&st, args[0], in_fast, rows, rows);
    if (n < 0)
        goto done;
    PyObject **items = PySequence_Fast_ITEMS(out_fast);
    for (Py_ssize_t r = 0; r < rows; r++) {
        Py_buffer *view = &st.views[cols + r];
        if (PyObject_GetBuffer(items[r], view, PyBUF_WRITABLE) < 0)
            goto done;
        st.acquired++;
        if (view->len != n) {
            PyErr_Format(PyExc_ValueError,
                         "output %zd is %zd bytes but the shards are %zd", r, view->len, n);
            goto done;
        }
        st.out[r] = (uint8_t *)view->buf;
    }
    run_unlocked(&st, isa, (size_t)rows, (size_t)cols, (size_t)n);
    result = Py_NewRef(Py_None);
done:
    release_state(&st);
    Py_DECREF(in_fast);
    Py_DECREF(out_fast);
    return result;
}

PyDoc_STRVAR(gemm_doc,
"gemm(tables, inputs, rows, isa=None) -> list[bytes]\n\n"
"Like gemm_into() but returns `rows` new bytes objects, written in place (no extra copy).");

static PyObject *gf8_gemm(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "gemm(tables, inputs, rows, isa=None)");
        return NULL;
    }
    enum isa isa;
    if (parse_isa(nargs == 4 ? args[3] : NULL, &isa) < 0)
        return NULL;
    Py_ssize_t rows = PyLong_AsSsize_t(args[2]);
    if (rows == -1 && PyErr_Occurred())
        return NULL;
    PyObject *in_fast = PySequence_Fast(args[1], "inputs must be a sequence of buffers");
    if (in_fast == NULL)
        return NULL;
    call_state st = {0};
    PyObject *list = NULL;
    Py_ssize_t cols = PySequence_Fast_GET_SIZE(in_fast);
    Py_ssize_t n = prepare_call(&st, args[0], in_fast, rows, 0);
    if (n < 0)
        goto done;
    list = PyList_New(rows);
    if (list == NULL)
        goto done;
    for (Py_ssize_t r = 0; r < rows; r++) {
        /* A fresh bytes object is private until returned, so filling it in place is safe. */
        PyObject *b = PyBytes_FromStringAndSize(NULL, n);
        if (b == NULL) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, r, b);
        st.out[r] = (uint8_t *)PyBytes_AS_STRING(b);
    }
    run_unlocked(&st, isa, (size_t)rows, (size_t)cols, (size_t)n);
done:
    release_state(&st);
    Py_DECREF(in_fast);
    return list;
}

PyDoc_STRVAR(expand_doc,
"expand(matrix) -> bytes\n\n"
"Split-nibble tables for a row-major coefficient matrix (one byte per coefficient): 32 bytes\n"
"per coefficient, the products with 0..15 then with 0x00, 0x10, ..., 0xF0. Computed once per\n"
"matrix so gemm() does no per-call table work.");

static PyObject *gf8_expand(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer m;
    if (PyObject_GetBuffer(arg, &m, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, m.len * TABLE_BYTES);
    if (out != NULL) {
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
        const uint8_t *src = (const uint8_t *)m.buf;
        for (Py_ssize_t i = 0; i < m.len; i++)
            memcpy(dst + i * TABLE_BYTES, all_tables[src[i]], TABLE_BYTES);
    }
    PyBuffer_Release(&m);
    return out;
}

static PyMethodDef gf8_methods[] = {
    {"gemm", (PyCFunction)(void (*)(void))gf8_gemm, METH_FASTCALL, gemm_doc},
    {"gemm_into", (PyCFunction)(void (*)(void))gf8_gemm_into, METH_FASTCALL, gemm_into_doc},
    {"expand", gf8_expand, METH_O, expand_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef gf8_module = {
    PyModuleDef_HEAD_INIT,
    "punktfunk.fec._gf8",
    "Native GF(2^8) multiply-accumulate kernel (split-nibble tables, SSSE3/AVX2 at run time).",
    -1,
    gf8_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__gf8(void)
{
    for (int m = 0; m < 256; m++)
        expand_one((uint8_t)m, all_tables[m]);
#ifdef GF8_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        best_isa = ISA_AVX2;
    else if (__builtin_cpu_supports("ssse3"))
        best_isa = ISA_SSSE3;
#endif
    PyObject *mod = PyModule_Create(&gf8_module);
    if (mod == NULL)
        return NULL;
#ifdef Py_GIL_DISABLED
    /* Free-threaded CPython: nothing here is shared and mutable after init (the tables
     * are filled above, once), so the module needs no GIL. */
    PyUnstable_Module_SetGIL(mod, Py_MOD_GIL_NOT_USED);
#endif
    PyObject *isas = PyTuple_New((Py_ssize_t)best_isa + 1);
    if (isas == NULL)
        goto fail;
    for (int i = 0; i <= (int)best_isa; i++) {
        PyObject *name = PyUnicode_FromString(ISA_NAMES[i]);
        if (name == NULL) {
            Py_DECREF(isas);
            goto fail;
        }
        PyTuple_SET_ITEM(isas, i, name);
    }
    if (PyModule_AddObject(mod, "ISAS", isas) < 0) {
        Py_DECREF(isas);
        goto fail;
    }
    if (PyModule_AddStringConstant(mod, "ISA", ISA_NAMES[best_isa]) < 0 ||
        PyModule_AddIntConstant(mod, "TABLE_BYTES", TABLE_BYTES) < 0)
        goto fail;
    return mod;
fail:
    Py_DECREF(mod);
    return NULL;
}
