/*
 * punktfunk.fec._gf16 -- native butterflies for GF(2^16) Leopard-RS (scheme 1).
 *
 * The numpy code in _leopard.py builds the field tables (exp/log in the Cantor basis, skew)
 * and hands them to init(); this module then runs the loops that dominate a decode: the
 * additive FFT and IFFT (one butterfly a ^= b * w, b ^= a per symbol pair), the formal
 * derivative, the erasure locator (two Walsh transforms) and row scaling. Work arrays are
 * C-contiguous uint16 (rows x width): one row per shard, one column per 16-bit symbol.
 *
 * Scalar products are exp[log[x] + log_w] with log[0] placed past a zero-filled tail of the
 * extended exp table, so the loop has no branch. With AVX2 (picked at run time, like _gf8) a
 * product by a fixed twiddle w is linear over GF(2), so it splits into the four nibbles of
 * each 16-bit symbol: w*x = T0[x & 15] ^ T1[x >> 4 & 15] ^ T2[x >> 8 & 15] ^ T3[x >> 12], each
 * table 16 entries of two bytes; PSHUFB looks up 32 bytes at once (low and high product bytes
 * from separate tables), 16 symbols per step. The GIL is released around every loop. Every
 * path (AVX2, scalar, numpy) is tested against the same golden parity.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GF16_X86 1
#include <immintrin.h>
#endif

enum isa { ISA_SCALAR = 0, ISA_AVX2 = 1 };
static const char *const ISA_NAMES[] = {"scalar", "avx2"};
static enum isa best_isa = ISA_SCALAR;

#define ORDER 65536
#define MODULUS 65535

static int32_t *log_tab;   /* [ORDER], log[0] = 2 * MODULUS (lands in the zero tail) */
static uint16_t *exp_tab;  /* [exp_len], exp[i] for i < 2 * MODULUS, zero past it */
static Py_ssize_t exp_len;
static int32_t *skew_tab;  /* [MODULUS], MODULUS marks a zero twiddle */
static int64_t *walsh_tab; /* [ORDER], the Walsh transform of the log table (log[0] = 0) */

static int ready(void)
{
    if (log_tab == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "punktfunk.fec._gf16.init() was not called");
        return 0;
    }
    return 1;
}

static int take_table(PyObject *obj, void **dst, Py_ssize_t itemsize, Py_ssize_t min_items,
                      Py_ssize_t *items)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS) < 0)
        return 0;
    if (view.len % itemsize || view.len / itemsize < min_items) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "table too short");
        return 0;
    }
    void *copy = PyMem_RawMalloc((size_t)view.len);
    if (copy == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return 0;
    }
    memcpy(copy, view.buf, (size_t)view.len);
    if (items)
        *items = view.len / itemsize;
    PyBuffer_Release(&view);
    PyMem_RawFree(*dst);
    *dst = copy;
    return 1;
}

static PyObject *gf16_init(PyObject *self, PyObject *args)
{
    PyObject *log_obj, *exp_obj, *skew_obj, *walsh_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &log_obj, &exp_obj, &skew_obj, &walsh_obj))
        return NULL;
    /* The tables never change, and another thread may be inside a transform without the GIL:
     * the first init wins and later ones keep its tables. */
    if (log_tab != NULL)
        Py_RETURN_NONE;
    int32_t *log_new = NULL;
    if (!take_table(exp_obj, (void **)&exp_tab, 2, 4 * MODULUS + 1, &exp_len) ||
        !take_table(skew_obj, (void **)&skew_tab, 4, MODULUS, NULL) ||
        !take_table(walsh_obj, (void **)&walsh_tab, 8, ORDER, NULL) ||
        !take_table(log_obj, (void **)&log_new, 4, ORDER, NULL))
        return NULL;
    for (Py_ssize_t i = 0; i < ORDER; i++)
        if (log_new[i] < 0 || log_new[i] > 2 * MODULUS || walsh_tab[i] < 0 ||
            walsh_tab[i] >= MODULUS || (i < MODULUS && (skew_tab[i] < 0 || skew_tab[i] > MODULUS))) {
            PyMem_RawFree(log_new);
            PyErr_SetString(PyExc_ValueError, "table value out of range");
            return NULL;
        }
    log_tab = log_new; /* last: ready() reads it as "every table is in place" */
    Py_RETURN_NONE;
}

/* A writable uint16 work array and the shape checks every transform shares. */
static int get_work(PyObject *obj, Py_buffer *view, Py_ssize_t width, Py_ssize_t *rows)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return 0;
    if (width <= 0 || view->len % (2 * width)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "work buffer is not rows x width uint16");
        return 0;
    }
    *rows = view->len / (2 * width);
    return 1;
}

static inline void mul_add_scalar(uint16_t *restrict a, const uint16_t *restrict b, int32_t lw,
                                  Py_ssize_t n)
{
    for (Py_ssize_t s = 0; s < n; s++)
        a[s] ^= exp_tab[log_tab[b[s]] + lw];
}

#ifdef GF16_X86
#define AVX2_FN __attribute__((target("avx2")))

/* Nibble tables of one twiddle: for nibble p, 16 low product bytes then 16 high ones. */
static void nibble_tables(int32_t lw, uint8_t tab[4][2][16])
{
    for (int p = 0; p < 4; p++)
        for (int x = 0; x < 16; x++) {
            uint16_t prod = exp_tab[log_tab[x << (4 * p)] + lw];
            tab[p][0][x] = (uint8_t)prod;
            tab[p][1][x] = (uint8_t)(prod >> 8);
        }
}

/* a[s] ^= w * b[s] (accumulate) or a[s] = w * a[s] (b == a, scale in place). */
static AVX2_FN void mul_avx2(uint16_t *a, const uint16_t *b, int32_t lw, Py_ssize_t n,
                             int accumulate)
{
    uint8_t tab[4][2][16];
    nibble_tables(lw, tab);
    __m256i lo[4], hi[4];
    for (int p = 0; p < 4; p++) {
        lo[p] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)tab[p][0]));
        hi[p] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)tab[p][1]));
    }
    /* Each nibble index sits in the low byte of its 16-bit lane; the high byte is 0, which
     * every table maps to 0, so a lookup yields the product byte in the low byte only. */
    const __m256i mask = _mm256_set1_epi16(0x000f);
    Py_ssize_t s = 0;
    for (; s + 16 <= n; s += 16) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(b + s));
        __m256i n0 = _mm256_and_si256(x, mask);
        __m256i n1 = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
        __m256i n2 = _mm256_and_si256(_mm256_srli_epi16(x, 8), mask);
        __m256i n3 = _mm256_srli_epi16(x, 12);
        __m256i pl = _mm256_xor_si256(
            _mm256_xor_si256(_mm256_shuffle_epi8(lo[0], n0), _mm256_shuffle_epi8(lo[1], n1)),
            _mm256_xor_si256(_mm256_shuffle_epi8(lo[2], n2), _mm256_shuffle_epi8(lo[3], n3)));
        __m256i ph = _mm256_xor_si256(
            _mm256_xor_si256(_mm256_shuffle_epi8(hi[0], n0), _mm256_shuffle_epi8(hi[1], n1)),
            _mm256_xor_si256(_mm256_shuffle_epi8(hi[2], n2), _mm256_shuffle_epi8(hi[3], n3)));
        __m256i prod = _mm256_or_si256(pl, _mm256_slli_epi16(ph, 8));
        if (accumulate)
            prod = _mm256_xor_si256(prod, _mm256_loadu_si256((const __m256i *)(a + s)));
        _mm256_storeu_si256((__m256i *)(a + s), prod);
    }
    for (; s < n; s++)
        a[s] = (accumulate ? a[s] : 0) ^ exp_tab[log_tab[b[s]] + lw];
}
#endif

static inline void mul_add(enum isa isa, uint16_t *restrict a, const uint16_t *restrict b,
                           int32_t lw, Py_ssize_t n)
{
#ifdef GF16_X86
    if (isa == ISA_AVX2) {
        mul_avx2(a, b, lw, n, 1);
        return;
    }
#endif
    mul_add_scalar(a, b, lw, n);
}

static void scale_row(enum isa isa, uint16_t *row, int32_t lw, Py_ssize_t n)
{
#ifdef GF16_X86
    if (isa == ISA_AVX2) {
        mul_avx2(row, row, lw, n, 0);
        return;
    }
#endif
    for (Py_ssize_t s = 0; s < n; s++)
        row[s] = exp_tab[log_tab[row[s]] + lw];
}

/* The optional last argument of the transforms: an ISA name, default the CPU's best. */
static int parse_isa(const char *name, enum isa *isa)
{
    if (name == NULL) {
        *isa = best_isa;
        return 1;
    }
    for (int i = 0; i <= (int)best_isa; i++)
        if (strcmp(name, ISA_NAMES[i]) == 0) {
            *isa = (enum isa)i;
            return 1;
        }
    PyErr_Format(PyExc_ValueError, "isa %s not available on this CPU", name);
    return 0;
}

static inline void xor_into(uint16_t *restrict b, const uint16_t *restrict a, Py_ssize_t n)
{
    for (Py_ssize_t s = 0; s < n; s++)
        b[s] ^= a[s];
}

static PyObject *transform(PyObject *args, int inverse)
{
    PyObject *obj;
    Py_ssize_t width, pos, size, truncated, skew_delta, rows;
    const char *isa_name = NULL;
    enum isa isa;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "Onnnnn|z", &obj, &width, &pos, &size, &truncated, &skew_delta,
                          &isa_name))
        return NULL;
    if (!parse_isa(isa_name, &isa) || !ready() || !get_work(obj, &view, width, &rows))
        return NULL;
    if (size <= 0 || (size & (size - 1)) || truncated < 0 || truncated > size || pos < 0 ||
        pos + size > rows || skew_delta < 0 || size + skew_delta > ORDER) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad FFT range");
        return NULL;
    }
    uint16_t *work = (uint16_t *)view.buf + pos * width;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t dist = inverse ? 1 : size / 2; inverse ? dist < size : dist > 0;
         dist = inverse ? dist * 2 : dist / 2) {
        for (Py_ssize_t r = 0; r < truncated; r += 2 * dist) {
            int32_t lw = skew_tab[r + dist + skew_delta - 1];
            for (Py_ssize_t i = r; i < r + dist; i++) {
                uint16_t *a = work + i * width, *b = work + (i + dist) * width;
                if (inverse) {
                    xor_into(b, a, width);
                    if (lw != MODULUS)
                        mul_add(isa, a, b, lw, width);
                } else {
                    if (lw != MODULUS)
                        mul_add(isa, a, b, lw, width);
                    xor_into(b, a, width);
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *gf16_fft(PyObject *self, PyObject *args) { return transform(args, 0); }
static PyObject *gf16_ifft(PyObject *self, PyObject *args) { return transform(args, 1); }

static PyObject *gf16_formal_derivative(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t width, rows;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "On", &obj, &width) || !get_work(obj, &view, width, &rows))
        return NULL;
    if (rows & (rows - 1)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "rows must be a power of two");
        return NULL;
    }
    uint16_t *work = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 1; i < rows; i++) {
        Py_ssize_t w = i & -i;
        xor_into(work + (i - w) * width, work + i * width, w * width);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* Walsh-Hadamard transform mod 2^16 - 1; blocks starting at or past `truncated` are all zero
 * and stay zero, so they are skipped (fwht.rs does the same). */
static void fwht(int64_t *d, Py_ssize_t truncated)
{
    for (Py_ssize_t dist = 1; dist < ORDER; dist *= 2)
        for (Py_ssize_t r = 0; r < truncated; r += 2 * dist)
            for (Py_ssize_t i = r; i < r + dist; i++) {
                int64_t a = d[i], b = d[i + dist];
                int64_t sum = a + b, dif = a - b;
                d[i] = sum >= MODULUS ? sum - MODULUS : sum;
                d[i + dist] = dif < 0 ? dif + MODULUS : dif;
            }
}

/* In place: 65536 int64 erasure flags (0/1, zero from `truncated` on) -> the log of the erasure
 * locator's derivative at every point (utils.rs eval_poly). */
static PyObject *gf16_erasure_logs(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t truncated;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "On", &obj, &truncated))
        return NULL;
    if (!ready() || PyObject_GetBuffer(obj, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (view.len != ORDER * 8 || truncated < 0 || truncated > ORDER) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "erasure_logs needs 65536 int64 flags");
        return NULL;
    }
    int64_t *d = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < ORDER; i++)
        d[i] = d[i] ? 1 : 0;
    fwht(d, truncated);
    for (Py_ssize_t i = 0; i < ORDER; i++) {
        uint32_t prod = (uint32_t)d[i] * (uint32_t)walsh_tab[i]; /* both < 2^16 */
        uint32_t folded = (prod & 0xffff) + (prod >> 16);         /* 2^16 = 1 mod 2^16-1 */
        folded = (folded & 0xffff) + (folded >> 16);
        d[i] = folded == MODULUS ? 0 : folded;
    }
    fwht(d, ORDER);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* Row rows[j] of work times exp(logs[j]) for every j (logs in [0, MODULUS]). */
static PyObject *gf16_scale(PyObject *self, PyObject *args)
{
    PyObject *obj, *rows_obj, *logs_obj;
    Py_ssize_t width, nrows;
    const char *isa_name = NULL;
    enum isa isa;
    Py_buffer view, rv, lv;
    if (!PyArg_ParseTuple(args, "OnOO|z", &obj, &width, &rows_obj, &logs_obj, &isa_name))
        return NULL;
    if (!parse_isa(isa_name, &isa) || !ready() || !get_work(obj, &view, width, &nrows))
        return NULL;
    if (PyObject_GetBuffer(rows_obj, &rv, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (PyObject_GetBuffer(logs_obj, &lv, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&view);
        PyBuffer_Release(&rv);
        return NULL;
    }
    const int64_t *rows = rv.buf, *logs = lv.buf;
    Py_ssize_t n = rv.len / 8;
    int bad = rv.len % 8 || lv.len != rv.len;
    for (Py_ssize_t j = 0; !bad && j < n; j++)
        bad = rows[j] < 0 || rows[j] >= nrows || logs[j] < 0 || logs[j] > MODULUS;
    if (!bad) {
        uint16_t *work = view.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t j = 0; j < n; j++)
            scale_row(isa, work + rows[j] * width, (int32_t)(logs[j] % MODULUS), width);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    PyBuffer_Release(&rv);
    PyBuffer_Release(&lv);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "scale: rows and logs must be equal-length int64 in range");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef gf16_methods[] = {
    {"init", gf16_init, METH_VARARGS, "init(log32, exp_ext, skew32, log_walsh64): take the field tables."},
    {"fft", gf16_fft, METH_VARARGS,
     "fft(work, width, pos, size, truncated, skew_delta, isa=None): in-place additive FFT."},
    {"ifft", gf16_ifft, METH_VARARGS,
     "ifft(work, width, pos, size, truncated, skew_delta, isa=None): in-place inverse FFT."},
    {"formal_derivative", gf16_formal_derivative, METH_VARARGS,
     "formal_derivative(work, width): in place, rows a power of two."},
    {"erasure_logs", gf16_erasure_logs, METH_VARARGS,
     "erasure_logs(flags, truncated): in place, 65536 int64 erasure flags -> locator logs."},
    {"scale", gf16_scale, METH_VARARGS,
     "scale(work, width, rows, logs, isa=None): rows[j] *= exp(logs[j]) (int64 arrays)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef gf16_module = {
    PyModuleDef_HEAD_INIT,
    "punktfunk.fec._gf16",
    "Native GF(2^16) Leopard-RS butterflies (FFT, IFFT, formal derivative, Walsh transform).",
    -1,
    gf16_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__gf16(void)
{
#ifdef GF16_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        best_isa = ISA_AVX2;
#endif
    PyObject *mod = PyModule_Create(&gf16_module);
    if (mod == NULL)
        return NULL;
#ifdef Py_GIL_DISABLED
    /* Free-threaded CPython: nothing here is shared and mutable after init (the tables
     * are filled above, once), so the module needs no GIL. */
    PyUnstable_Module_SetGIL(mod, Py_MOD_GIL_NOT_USED);
#endif
    PyObject *isas = PyTuple_New((Py_ssize_t)best_isa + 1);
    if (isas == NULL) {
        Py_DECREF(mod);
        return NULL;
    }
    for (int i = 0; i <= (int)best_isa; i++) {
        PyObject *name = PyUnicode_FromString(ISA_NAMES[i]);
        if (name == NULL) {
            Py_DECREF(isas);
            Py_DECREF(mod);
            return NULL;
        }
        PyTuple_SET_ITEM(isas, i, name);
    }
    if (PyModule_AddObject(mod, "ISAS", isas) < 0) {
        Py_DECREF(isas);
        Py_DECREF(mod);
        return NULL;
    }
    if (PyModule_AddStringConstant(mod, "ISA", ISA_NAMES[best_isa]) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
