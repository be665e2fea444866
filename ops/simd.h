/* CIN_KERNEL marks the hot loops of operators: on x86-64 they are compiled twice, for the
 * baseline and for AVX2/FMA (x86-64-v3), and the loader picks the one the CPU runs. The
 * binaries stay portable across x86-64 machines. ThreadSanitizer builds take the baseline only:
 * the loader runs the clones' resolvers before TSan's runtime is up, and they crash. */
#ifndef CIN_SIMD_H
#define CIN_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(__SANITIZE_THREAD__)
#define CIN_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CIN_KERNEL
#endif

#endif
