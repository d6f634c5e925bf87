/* .npy reader and writer. The format: "\x93NUMPY", a major and minor version byte,
 * the header length (2 bytes LE in v1, 4 bytes LE in v2/v3), a Python dict literal
 * {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded with spaces and a
 * newline, then the raw data. Assumes a little-endian host. */
#define _POSIX_C_SOURCE 200809L

#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "\x93NUMPY"
#define MAGIC_LEN 6
#define ALIGN 64
/* numpy leaves room for the first dimension to grow to this many digits. */
#define GROWTH_DIGITS 21

typedef struct dtype_info {
    const char *code; /* descr without its byte-order character */
    npy_dtype type;
    size_t size;
} dtype_info;

static const dtype_info dtypes[] = {
    {"f4", NPY_F32, 4}, {"f8", NPY_F64, 8}, {"b1", NPY_BOOL, 1},
    {"u1", NPY_U8, 1},  {"i4", NPY_I32, 4}, {"i8", NPY_I64, 8},
};

const char *npy_dtype_name(npy_dtype t)
{
    static const char *const names[] = {"<f4", "<f8", "|b1", "|u1", "<i4", "<i8"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ------------------------------------------------------------- errors */

typedef struct reporter {
    const char *path;
    char *err;
    size_t err_len;
} reporter;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(const reporter *r, const char *fmt, ...)
{
    if (r->err && r->err_len) {
        int n = snprintf(r->err, r->err_len, "%s: ", r->path);
        if (n >= 0 && (size_t)n < r->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + n, r->err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

/* ------------------------------------------------------ header parsing */

typedef struct header {
    const dtype_info *dtype;
    int fortran_order;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
} header;

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes; 0 on success. */
static int read_string(cursor *c, char *buf, size_t len)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return -1;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (n + 1 >= len || *c->p == '\0')
            return -1;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return -1;
    c->p++;
    buf[n] = '\0';
    return 0;
}

static int read_word(cursor *c, const char *word)
{
    size_t n = strlen(word);
    skip_space(c);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

/* A non-negative decimal integer; Python 2 era files may append 'L'. */
static int read_int(cursor *c, int64_t *v)
{
    skip_space(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return -1;
    int64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int d = *c->p++ - '0';
        if (x > (INT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *v = x;
    return 0;
}

static int parse_shape(const reporter *r, cursor *c, header *h)
{
    if (!accept(c, '('))
        return fail(r, "malformed header: 'shape' is not a tuple");
    h->ndim = 0;
    while (!accept(c, ')')) {
        if (h->ndim == NPY_MAX_DIMS)
            return fail(r, "more than %d dimensions are not supported", NPY_MAX_DIMS);
        if (read_int(c, &h->shape[h->ndim]))
            return fail(r, "malformed header: bad dimension in 'shape'");
        h->ndim++;
        if (!accept(c, ',')) {
            if (!accept(c, ')'))
                return fail(r, "malformed header: 'shape' tuple not closed");
            break;
        }
    }
    return 0;
}

static int parse_descr(const reporter *r, cursor *c, header *h)
{
    char descr[16];
    if (read_string(c, descr, sizeof descr))
        return fail(r, "unsupported dtype: 'descr' is not a simple type string "
                       "(structured arrays are not supported)");
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        const dtype_info *d = &dtypes[i];
        int order_ok = descr[0] == '<' || (d->size == 1 && descr[0] && strchr("|=>", descr[0]));
        if (order_ok && strcmp(descr + 1, d->code) == 0) {
            h->dtype = d;
            return 0;
        }
    }
    if (descr[0] == '>')
        return fail(r, "big-endian data ('%s') is not supported; save it as little-endian", descr);
    return fail(r, "unsupported dtype '%s' (supported: <f4 <f8 |b1 |u1 <i4 <i8)", descr);
}

static int parse_fortran(const reporter *r, cursor *c, header *h)
{
    if (read_word(c, "False"))
        h->fortran_order = 0;
    else if (read_word(c, "True"))
        return fail(r, "Fortran-order arrays are not supported; save np.ascontiguousarray(a)");
    else
        return fail(r, "malformed header: 'fortran_order' is not True or False");
    return 0;
}

/* One "key: value" entry; *seen collects which keys were found. */
static int parse_entry(const reporter *r, cursor *c, header *h, unsigned *seen)
{
    static const char *const keys[] = {"descr", "fortran_order", "shape"};
    char key[32];
    if (read_string(c, key, sizeof key) || !accept(c, ':'))
        return fail(r, "malformed header: expected 'key': value");
    for (unsigned i = 0; i < 3; i++) {
        if (strcmp(key, keys[i]) != 0)
            continue;
        if (*seen & (1u << i))
            return fail(r, "malformed header: '%s' given twice", key);
        *seen |= 1u << i;
        return i == 0   ? parse_descr(r, c, h)
               : i == 1 ? parse_fortran(r, c, h)
                        : parse_shape(r, c, h);
    }
    return fail(r, "malformed header: unexpected key '%s'", key);
}

static int parse_header(const reporter *r, const char *text, size_t len, header *h)
{
    cursor c = {text, text + len};
    unsigned seen = 0;
    if (!accept(&c, '{'))
        return fail(r, "malformed header: no dictionary");
    while (!accept(&c, '}')) {
        if (parse_entry(r, &c, h, &seen))
            return -1;
        if (!accept(&c, ',')) {
            if (!accept(&c, '}'))
                return fail(r, "malformed header: expected ',' or '}'");
            break;
        }
    }
    skip_space(&c);
    if (c.p != c.end)
        return fail(r, "malformed header: unexpected text after the dictionary");
    if (seen != 7u)
        return fail(r, "malformed header: 'descr', 'fortran_order' or 'shape' missing");
    return 0;
}

/* ------------------------------------------------------------ loading */

static uint32_t le_u32(const unsigned char *b, int n)
{
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* Reads the preamble; sets the header length and the offset of the header text. */
static int read_preamble(const reporter *r, FILE *f, uint64_t file_size, uint64_t *hlen,
                         uint64_t *hstart)
{
    unsigned char pre[MAGIC_LEN + 6];
    if (file_size < MAGIC_LEN + 4 || fread(pre, 1, MAGIC_LEN + 4, f) != MAGIC_LEN + 4 ||
        memcmp(pre, MAGIC, MAGIC_LEN) != 0)
        return fail(r, "not a .npy file (no \\x93NUMPY magic)");
    int major = pre[MAGIC_LEN], minor = pre[MAGIC_LEN + 1];
    if (major < 1 || major > 3 || minor != 0)
        return fail(r, "unsupported .npy format version %d.%d", major, minor);
    if (major == 1) {
        *hlen = le_u32(pre + MAGIC_LEN + 2, 2);
        *hstart = MAGIC_LEN + 4;
        return 0;
    }
    if (file_size < MAGIC_LEN + 6 || fread(pre + MAGIC_LEN + 4, 1, 2, f) != 2)
        return fail(r, "truncated .npy preamble");
    *hlen = le_u32(pre + MAGIC_LEN + 2, 4);
    *hstart = MAGIC_LEN + 6;
    return 0;
}

static int read_header(const reporter *r, FILE *f, uint64_t file_size, header *h,
                       uint64_t *data_start)
{
    uint64_t hlen = 0, hstart = 0;
    if (read_preamble(r, f, file_size, &hlen, &hstart))
        return -1;
    if (hlen > file_size - hstart)
        return fail(r, "truncated: the header says it is %llu bytes, the file has %llu after "
                       "the preamble", (unsigned long long)hlen,
                    (unsigned long long)(file_size - hstart));
    char *text = malloc(hlen ? hlen : 1);
    if (!text)
        return fail(r, "out of memory reading the header");
    int rc = fread(text, 1, hlen, f) == hlen ? parse_header(r, text, hlen, h)
                                              : fail(r, "read error in the header");
    free(text);
    *data_start = hstart + hlen;
    return rc;
}

/* Element count of the header's shape; -1 (reported) when the data bytes overflow. */
static int shape_count(const reporter *r, const header *h, size_t *count)
{
    uint64_t n = 1;
    for (int i = 0; i < h->ndim; i++) {
        uint64_t d = (uint64_t)h->shape[i];
        if (d && n > UINT64_MAX / d)
            return fail(r, "absurd shape: the element count overflows");
        n *= d;
    }
    if (n > SIZE_MAX / h->dtype->size)
        return fail(r, "absurd shape: the data would not fit in memory");
    *count = (size_t)n;
    return 0;
}

static int load_file(const reporter *r, FILE *f, npy_array *out)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        return fail(r, "not a regular file");
    uint64_t file_size = (uint64_t)st.st_size, data_start = 0;
    header h = {NULL, 0, 0, {0}};
    size_t count = 0;
    if (read_header(r, f, file_size, &h, &data_start) || shape_count(r, &h, &count))
        return -1;
    uint64_t need = (uint64_t)count * h.dtype->size, have = file_size - data_start;
    if (need != have)
        return fail(r, "%s: the header's shape needs %llu bytes of data, the file has %llu",
                    need > have ? "truncated" : "size mismatch", (unsigned long long)need,
                    (unsigned long long)have);
    void *data = malloc(need ? need : 1);
    if (!data)
        return fail(r, "out of memory (%llu bytes)", (unsigned long long)need);
    if (fread(data, 1, need, f) != need) {
        free(data);
        return fail(r, "read error in the data");
    }
    out->dtype = h.dtype->type;
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof h.shape[0] * (size_t)h.ndim);
    out->count = count;
    out->data = data;
    return 0;
}

int npy_load(const char *path, npy_array *out, char *err, size_t err_len)
{
    reporter r = {path, err, err_len};
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(&r, "cannot open: %s", strerror(errno));
    int rc = load_file(&r, f, out);
    fclose(f);
    return rc;
}

void npy_free(npy_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------- saving */

/* The v1.0 header exactly as numpy writes it: keys sorted, growth room after the
 * dict, spaces up to a multiple of 64 bytes (a whole 64 when already aligned), '\n'. */
static size_t format_header(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, len, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    n += (size_t)snprintf(buf + n, len - n, "%s), }", ndim == 1 ? "," : "");
    if (ndim > 0) {
        int digits = snprintf(NULL, 0, "%lld", (long long)shape[0]);
        for (int i = digits; i < GROWTH_DIGITS; i++)
            buf[n++] = ' ';
    }
    size_t pad = ALIGN - (MAGIC_LEN + 4 + n + 1) % ALIGN;
    memset(buf + n, ' ', pad);
    n += pad;
    buf[n++] = '\n';
    return n;
}

static int write_file(const reporter *r, FILE *f, const float *data, size_t count, int ndim,
                      const int64_t *shape)
{
    char text[512];
    size_t hlen = format_header(text, sizeof text, ndim, shape);
    unsigned char pre[MAGIC_LEN + 4] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                        (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    if (fwrite(pre, 1, sizeof pre, f) != sizeof pre || fwrite(text, 1, hlen, f) != hlen ||
        fwrite(data, sizeof *data, count, f) != count)
        return fail(r, "write error: %s", strerror(errno));
    return 0;
}

/* A new file "<dir>/.<name>.<pid>.<n>.tmp" beside path, opened for writing with the
 * mode a plain fopen would give (0666 less the umask); its name goes to tmp. Renaming
 * it over path afterwards replaces path in one step: path is never half written, and
 * a failure leaves the old file as it was. The name does not end in ".npy". */
static FILE *create_beside(const char *path, char *tmp, size_t len)
{
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    const char *name = slash ? slash + 1 : path;
    for (int n = 0; n < 100; n++) {
        int w = snprintf(tmp, len, "%.*s.%s.%ld.%d.tmp", dir_len, path, name, (long)getpid(), n);
        if (w < 0 || (size_t)w >= len) {
            errno = ENAMETOOLONG;
            return NULL;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0) {
            FILE *f = fdopen(fd, "wb");
            if (!f) {
                close(fd);
                remove(tmp);
            }
            return f;
        }
        if (errno != EEXIST)
            return NULL;
    }
    return NULL;
}

int npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape, char *err,
                 size_t err_len)
{
    reporter r = {path, err, err_len};
    if (ndim < 0 || ndim > NPY_MAX_DIMS || (ndim > 0 && !shape))
        return fail(&r, "cannot save an array of %d dimensions", ndim);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && count > SIZE_MAX / sizeof(float) / (uint64_t)shape[i]))
            return fail(&r, "cannot save: bad or overflowing shape");
        count *= (size_t)shape[i];
    }
    if (count && !data)
        return fail(&r, "cannot save: no data");
    /* Renaming over a device or a pipe would replace it: write regular files only. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return fail(&r, "not a regular file; give a file path");
    char tmp[PATH_MAX];
    FILE *f = create_beside(path, tmp, sizeof tmp);
    if (!f)
        return fail(&r, "cannot create a temporary file beside it: %s", strerror(errno));
    int rc = write_file(&r, f, data, count, ndim, shape);
    if (fclose(f) != 0 && rc == 0)
        rc = fail(&r, "write error: %s", strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = fail(&r, "cannot rename %s to it: %s", tmp, strerror(errno));
    if (rc)
        remove(tmp);
    return rc;
}
