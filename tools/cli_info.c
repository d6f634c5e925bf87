/* `mha info`: what the library detected and what it runs on. */
#include <omp.h>
#include <string.h>

#include "cli.h"

int cli_info(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_usage(stdout);
            return CLI_OK;
        }
        return cli_bad_arg("info", argv[i]);
    }
    mha_runtime_info info;
    mha_get_runtime_info(&info);
    printf("version: %s\n", mha_version());
    printf("cpu: %s\n", info.cpu_name);
    printf("features: %s\n", info.features);
    printf("best isa: %s\n", mha_isa_name(info.best_isa));
    printf("isa: %s, %s\n", mha_isa_name(info.active_isa), info.choice);
    printf("openmp max threads: %d\n", omp_get_max_threads());
    printf("caches used for tiling: L1d %zu KiB, L2 %zu KiB per core\n", info.l1d_bytes / 1024,
           info.l2_bytes / 1024);
    return CLI_OK;
}
