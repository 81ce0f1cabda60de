// A CPUID shim for benchmarks and tests: preloaded (LD_PRELOAD), it makes CPUID report an AVX2-only
// x86 CPU (no AVX-512, no VNNI, no AMX), so that onnxruntime (MLAS), XNNPACK, oneDNN and numpy pick
// their AVX2 kernels and run them natively. Those kernels' arithmetic (VPMADDUBSW's saturating 16-bit
// sums) is then real; their speed is this machine's core running AVX2 code, not an AVX2 machine's.
// Linux x86-64 only, on CPUs with CPUID faulting (/proc/cpuinfo: cpuid_fault): CPUID then traps
// (SIGSEGV), and the handler answers with the masked leaves.
// Build: cc -O2 -shared -fPIC -o cpuid_avx2.so benchmarks/cpuid_avx2.c
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cpuid.h>

#define ARCH_SET_CPUID 0x1012

static void set_cpuid(int enabled) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void mask(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    if (leaf == 7 && sub == 0) {
        *b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        *c &= ~((1u << 1) | (1u << 6) | (1u << 8) | (1u << 9) | (1u << 10) | (1u << 11) | (1u << 12) | (1u << 14));
        *d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        *a &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23));
        *d &= ~((1u << 4) | (1u << 5) | (1u << 10) | (1u << 19));
    } else if (leaf == 0xD && sub == 0) {
        *a &= ~((1u << 5) | (1u << 6) | (1u << 7) | (1u << 17) | (1u << 18));  // no AVX-512 / AMX state
    } else if (leaf == 0x1D || leaf == 0x1E) {
        *a = *b = *c = *d = 0;
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *r = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (ip[0] != 0x0F || ip[1] != 0xA2) {
        signal(SIGSEGV, SIG_DFL);  // a real fault: let it crash as it would have
        return;
    }
    uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX], a, b, c, d;
    set_cpuid(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_cpuid(0);
    mask(leaf, sub, &a, &b, &c, &d);
    r[REG_RAX] = a; r[REG_RBX] = b; r[REG_RCX] = c; r[REG_RDX] = d;
    r[REG_RIP] += 2;
    (void)sig; (void)info;
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        static const char message[] = "cpuid_avx2: this CPU or kernel has no CPUID faulting; CPUID cannot be masked\n";
        (void)!write(2, message, sizeof message - 1);
        _exit(97);  // never run unmasked while the caller believes it is masked
    }
}
