/* Sinusoidal positional encoding (Vaswani et al. 2017), computed in double. */
#include <math.h>

#include "internal.h"

static double angle(int64_t pos, int64_t col, int64_t dim)
{
    /* Columns 2i and 2i+1 share the frequency 1 / 10000^(2i/dim). */
    double two_i = (double)(col - (col & 1));
    return (double)pos * exp(-log(10000.0) * two_i / (double)dim);
}

static float value_at(int64_t pos, int64_t col, int64_t dim)
{
    double a = angle(pos, col, dim);
    return (float)((col & 1) ? cos(a) : sin(a));
}

static mha_status check(int64_t batch, int64_t len, int64_t dim)
{
    int64_t n;
    if (batch <= 0 || len <= 0 || dim <= 0)
        return MHA_ERR_BAD_SIZE;
    if (!mha_mul3(batch, len, dim, &n) || n > MHA_MAX_ELEMS)
        return MHA_ERR_OVERFLOW;
    return MHA_OK;
}

mha_status mha_positional_encoding(int64_t len, int64_t dim, float *table)
{
    if (!table)
        return MHA_ERR_NULL_POINTER;
    mha_status st = check(1, len, dim);
    if (st != MHA_OK)
        return st;
    for (int64_t p = 0; p < len; p++)
        for (int64_t c = 0; c < dim; c++)
            table[p * dim + c] = value_at(p, c, dim);
    return MHA_OK;
}

mha_status mha_add_positional_encoding(float *x, int64_t batch, int64_t len, int64_t dim)
{
    if (!x)
        return MHA_ERR_NULL_POINTER;
    mha_status st = check(batch, len, dim);
    if (st != MHA_OK)
        return st;
    for (int64_t p = 0; p < len; p++)
        for (int64_t c = 0; c < dim; c++) {
            float e = value_at(p, c, dim);
            for (int64_t b = 0; b < batch; b++)
                x[(b * len + p) * dim + c] += e;
        }
    return MHA_OK;
}
