/*
 * CPU detection and the one-time ISA choice. The detected features, the best ISA
 * and the active one are computed once (pthread_once) and read-only afterwards:
 * this is the only global mutable state of the library.
 *
 * x86-64: raw cpuid + xgetbv. A feature counts only if the OS saves its register
 * state (XCR0: SSE+YMM for AVX2, plus opmask+ZMM_Hi256+Hi16_ZMM for AVX-512).
 * aarch64: getauxval(AT_HWCAP / AT_HWCAP2).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#define MHA_CPU_X86 1
#include <cpuid.h>
#elif defined(__aarch64__)
#define MHA_CPU_ARM 1
#include <sys/auxv.h>
#endif

/* Feature bits, recorded for the choice and for mha_get_runtime_info. */
enum {
    F_AVX2 = 1u << 0,
    F_FMA = 1u << 1,
    F_AVX512F = 1u << 2,
    F_AVX512BW = 1u << 3,
    F_AVX512VL = 1u << 4,
    F_AVX512DQ = 1u << 5,
    F_AVX512BF16 = 1u << 6,
    F_AVX512FP16 = 1u << 7,
    F_AVX_VNNI = 1u << 8,
    F_ASIMD = 1u << 9,
    F_ASIMDHP = 1u << 10,
    F_BF16 = 1u << 11,
    F_SVE = 1u << 12,
    F_SVE2 = 1u << 13,
};

static const struct {
    unsigned bit;
    const char *name;
} feature_names[] = {
    {F_AVX2, "avx2"},         {F_FMA, "fma"},
    {F_AVX512F, "avx512f"},   {F_AVX512BW, "avx512bw"},
    {F_AVX512VL, "avx512vl"}, {F_AVX512DQ, "avx512dq"},
    {F_AVX512BF16, "avx512bf16"}, {F_AVX512FP16, "avx512fp16"},
    {F_AVX_VNNI, "avx_vnni"}, {F_ASIMD, "asimd"},
    {F_ASIMDHP, "asimdhp"},   {F_BF16, "bf16"},
    {F_SVE, "sve"},           {F_SVE2, "sve2"},
};

#define AVX2_LEVEL (F_AVX2 | F_FMA)
#define AVX512_LEVEL (F_AVX512F | F_AVX512BW | F_AVX512VL | F_AVX512DQ)

static struct {
    pthread_once_t once;
    unsigned features;
    const char *os_note; /* why CPU features were dropped, or NULL */
    mha_isa best, active;
    int forced;
    char cpu_name[64];
    size_t l1d_bytes, l2_bytes;
    bool intel; /* cpuid vendor GenuineIntel */
    char features_text[128];
    char choice[160];
} g = {.once = PTHREAD_ONCE_INIT};

/* ------------------------------------------------------------ detection */

#if defined(MHA_CPU_X86)
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect(void)
{
    unsigned a, b, c, d, max_leaf = __get_cpuid_max(0, NULL);
    unsigned f = 0;
    int avx_os = 0, avx512_os = 0;

    __cpuid(0, a, b, c, d);
    g.intel = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu; /* "Genu" "ineI" "ntel" */
    if (max_leaf >= 1) {
        __cpuid(1, a, b, c, d);
        if (c & (1u << 12))
            f |= F_FMA;
        /* OSXSAVE (bit 27) and AVX (bit 28): only then is xgetbv allowed. */
        if ((c & (1u << 27)) && (c & (1u << 28))) {
            uint64_t xcr0 = xgetbv0();
            avx_os = (xcr0 & 0x6) == 0x6;                 /* XMM + YMM state */
            avx512_os = avx_os && (xcr0 & 0xe0) == 0xe0;  /* opmask + ZMM_Hi256 + Hi16_ZMM */
        }
    }
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (b & (1u << 5))
            f |= F_AVX2;
        if (b & (1u << 16))
            f |= F_AVX512F;
        if (b & (1u << 17))
            f |= F_AVX512DQ;
        if (b & (1u << 30))
            f |= F_AVX512BW;
        if (b & (1u << 31))
            f |= F_AVX512VL;
        if (d & (1u << 23))
            f |= F_AVX512FP16;
        unsigned sub_max = a;
        if (sub_max >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            if (a & (1u << 4))
                f |= F_AVX_VNNI;
            if (a & (1u << 5))
                f |= F_AVX512BF16;
        }
    }
    const unsigned avx512_all = AVX512_LEVEL | F_AVX512BF16 | F_AVX512FP16;
    if (!avx_os && (f & (F_AVX2 | F_FMA | F_AVX_VNNI | avx512_all))) {
        f &= ~(F_AVX2 | F_FMA | F_AVX_VNNI | avx512_all);
        g.os_note = "the OS has not enabled the AVX (YMM) register state";
    } else if (!avx512_os && (f & avx512_all)) {
        f &= ~avx512_all;
        g.os_note = "the OS has not enabled the AVX-512 (opmask/ZMM) register state";
    }
    g.features = f;

    /* Brand string: 48 bytes from leaves 0x80000002..4, leading spaces trimmed. */
    strcpy(g.cpu_name, "unknown");
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        unsigned r[12];
        char brand[49];
        for (unsigned i = 0; i < 3; i++)
            __cpuid(0x80000002u + i, r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
        memcpy(brand, r, 48);
        brand[48] = '\0';
        const char *s = brand;
        while (*s == ' ')
            s++;
        size_t len = strlen(s);
        while (len > 0 && s[len - 1] == ' ')
            len--;
        if (len > 0) {
            if (len >= sizeof g.cpu_name)
                len = sizeof g.cpu_name - 1;
            memcpy(g.cpu_name, s, len);
            g.cpu_name[len] = '\0';
        }
    }
}
#elif defined(MHA_CPU_ARM)
/* Bit values from the Linux uapi <asm/hwcap.h>, repeated so older headers work. */
#define HWCAP_ASIMD_BIT (1ul << 1)
#define HWCAP_ASIMDHP_BIT (1ul << 10)
#define HWCAP_SVE_BIT (1ul << 22)
#define HWCAP2_SVE2_BIT (1ul << 1)
#define HWCAP2_BF16_BIT (1ul << 14)

static void detect(void)
{
    unsigned long h1 = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    unsigned f = 0;
    if (h1 & HWCAP_ASIMD_BIT)
        f |= F_ASIMD;
    if (h1 & HWCAP_ASIMDHP_BIT)
        f |= F_ASIMDHP;
    if (h1 & HWCAP_SVE_BIT)
        f |= F_SVE;
    if (h2 & HWCAP2_SVE2_BIT)
        f |= F_SVE2;
    if (h2 & HWCAP2_BF16_BIT)
        f |= F_BF16;
    g.features = f;

    /* The kernel exposes MIDR_EL1 in sysfs; absent under qemu-user and in some containers. */
    strcpy(g.cpu_name, "aarch64");
    FILE *fp = fopen("/sys/devices/system/cpu/cpu0/regs/identification/midr_el1", "r");
    if (fp) {
        unsigned long long midr;
        if (fscanf(fp, "%llx", &midr) == 1)
            snprintf(g.cpu_name, sizeof g.cpu_name, "aarch64 (MIDR_EL1 0x%08llx)", midr);
        fclose(fp);
    }
}
#else
static void detect(void)
{
    g.features = 0;
    strcpy(g.cpu_name, "unknown");
}
#endif

/* ----------------------------------------------------------------- choice */

/* Whether this build has the ISA's kernels and this CPU can run them. */
static int isa_built(mha_isa isa)
{
    switch (isa) {
    case MHA_ISA_SCALAR:
        return 1;
#if defined(MHA_HAVE_AVX2)
    case MHA_ISA_AVX2:
        return 1;
#endif
#if defined(MHA_HAVE_AVX512)
    case MHA_ISA_AVX512:
        return 1;
#endif
#if defined(MHA_HAVE_NEON)
    case MHA_ISA_NEON:
        return 1;
#endif
    default:
        return 0;
    }
}

static int isa_cpu_ok(mha_isa isa, unsigned f)
{
    switch (isa) {
    case MHA_ISA_SCALAR:
        return 1;
    case MHA_ISA_AVX2:
        return (f & AVX2_LEVEL) == AVX2_LEVEL;
    case MHA_ISA_AVX512:
        /* The AVX-512 unit is also built with -mfma. */
        return (f & AVX512_LEVEL) == AVX512_LEVEL && (f & F_FMA);
    case MHA_ISA_NEON:
        return (f & F_ASIMD) != 0;
    default:
        return 0;
    }
}

static const char *isa_requirement(mha_isa isa)
{
    switch (isa) {
    case MHA_ISA_AVX2:
        return "avx2 and fma";
    case MHA_ISA_AVX512:
        return "avx512f, avx512bw, avx512vl, avx512dq and fma";
    case MHA_ISA_NEON:
        return "asimd";
    default:
        return "nothing";
    }
}

static void append(char *buf, size_t cap, const char *word)
{
    size_t len = strlen(buf);
    if (len + (len > 0) + strlen(word) + 1 > cap)
        return;
    if (len > 0)
        buf[len++] = ' ';
    strcpy(buf + len, word);
}

/* Cache sizes for tiling, from the C library (cpuid / sysfs), with defaults
 * typical of current cores when it cannot tell. */
static void detect_caches(void)
{
    long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    g.l1d_bytes = l1 >= 4096 ? (size_t)l1 : 32768;
    g.l2_bytes = l2 >= 65536 ? (size_t)l2 : 524288;
}

/* ASCII case-insensitive equality (strcasecmp is POSIX, not C11; locale-free). */
static int same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static void choose(void)
{
    detect();
    detect_caches();

    g.features_text[0] = '\0';
    for (size_t i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++)
        if (g.features & feature_names[i].bit)
            append(g.features_text, sizeof g.features_text, feature_names[i].name);
    if (!g.features_text[0])
        strcpy(g.features_text, "none");

    /* Best first: AVX-512 > AVX2 > NEON > scalar. */
    static const mha_isa order[] = {MHA_ISA_AVX512, MHA_ISA_AVX2, MHA_ISA_NEON, MHA_ISA_SCALAR};
    g.best = MHA_ISA_SCALAR;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (isa_built(order[i]) && isa_cpu_ok(order[i], g.features)) {
            g.best = order[i];
            break;
        }
    g.active = g.best;
    g.forced = 0;

    const char *req = getenv("MHA_ISA");
    if (!req || !*req) {
        snprintf(g.choice, sizeof g.choice, "best available on this CPU (MHA_ISA not set)");
        return;
    }
    mha_isa want = MHA_ISA_SCALAR;
    int known = 0;
    for (int i = MHA_ISA_SCALAR; i <= MHA_ISA_NEON; i++)
        if (same_name(req, mha_isa_name((mha_isa)i))) {
            want = (mha_isa)i;
            known = 1;
        }
    const char *best = mha_isa_name(g.best);
    /* Keep the echoed value short so the sentence fits. */
    char shown[24];
    snprintf(shown, sizeof shown, "%s", req);

    if (!known) {
        snprintf(g.choice, sizeof g.choice,
                 "MHA_ISA=%s ignored: unknown value (expected scalar, avx2, avx512 or neon); "
                 "using the best available, %s",
                 shown, best);
    } else if (!isa_built(want)) {
        snprintf(g.choice, sizeof g.choice,
                 "MHA_ISA=%s ignored: this build has no %s kernels; using the best available, %s",
                 shown, shown, best);
    } else if (!isa_cpu_ok(want, g.features)) {
        if (g.os_note)
            snprintf(g.choice, sizeof g.choice,
                     "MHA_ISA=%s ignored: %s; using the best available, %s", shown, g.os_note,
                     best);
        else
            snprintf(g.choice, sizeof g.choice,
                     "MHA_ISA=%s ignored: this CPU lacks %s; using the best available, %s",
                     shown, isa_requirement(want), best);
    } else {
        g.active = want;
        g.forced = 1;
        snprintf(g.choice, sizeof g.choice, "forced by MHA_ISA=%s", shown);
    }
}

static void ensure_chosen(void)
{
    pthread_once(&g.once, choose);
}

/* ------------------------------------------------------------- interface */

const mha_kernels *mha_kernels_for(mha_isa isa)
{
    ensure_chosen();
    if (!isa_built(isa) || !isa_cpu_ok(isa, g.features))
        return NULL;
    switch (isa) {
#if defined(MHA_HAVE_AVX2)
    case MHA_ISA_AVX2:
        return &mha_kernels_avx2;
#endif
#if defined(MHA_HAVE_AVX512)
    case MHA_ISA_AVX512:
        return &mha_kernels_avx512;
#endif
#if defined(MHA_HAVE_NEON)
    case MHA_ISA_NEON:
        return &mha_kernels_neon;
#endif
    case MHA_ISA_SCALAR:
        return &mha_kernels_scalar;
    default:
        return NULL;
    }
}

size_t mha_cache_l2_bytes(void)
{
    ensure_chosen();
    return g.l2_bytes;
}

size_t mha_cache_l1d_bytes(void)
{
    ensure_chosen();
    return g.l1d_bytes;
}

bool mha_cpu_intel(void)
{
    ensure_chosen();
    return g.intel;
}

const mha_kernels *mha_kernels_active(void)
{
    ensure_chosen();
    return mha_kernels_for(g.active);
}

MHA_API mha_isa mha_active_isa(void)
{
    ensure_chosen();
    return g.active;
}

MHA_API const char *mha_isa_name(mha_isa isa)
{
    switch (isa) {
    case MHA_ISA_SCALAR:
        return "scalar";
    case MHA_ISA_AVX2:
        return "avx2";
    case MHA_ISA_AVX512:
        return "avx512";
    case MHA_ISA_NEON:
        return "neon";
    default:
        return "unknown";
    }
}

MHA_API void mha_get_runtime_info(mha_runtime_info *info)
{
    if (!info)
        return;
    ensure_chosen();
    memset(info, 0, sizeof *info);
    snprintf(info->cpu_name, sizeof info->cpu_name, "%s", g.cpu_name);
    snprintf(info->features, sizeof info->features, "%s", g.features_text);
    info->best_isa = g.best;
    info->active_isa = g.active;
    info->forced = g.forced;
    snprintf(info->choice, sizeof info->choice, "%s", g.choice);
    info->l1d_bytes = g.l1d_bytes;
    info->l2_bytes = g.l2_bytes;
}
