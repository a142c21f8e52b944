/* CPU time one sleep/wake cycle costs on this machine: nanosleep(50 us) in
 * a loop, CPU from getrusage. Explains toasty-loadgen's open-loop cost (see
 * loadgen/README.md, "CPU per request").
 *   cc -O2 -o /tmp/wake-cost loadgen/scripts/wake-cost.c && /tmp/wake-cost */
#include <stdio.h>
#include <time.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
    struct timespec d = {0, 50000};  /* 50 us */
    struct rusage a, b;
    int n = 40000;
    getrusage(RUSAGE_SELF, &a);
    for (int i = 0; i < n; i++) nanosleep(&d, NULL);
    getrusage(RUSAGE_SELF, &b);
    double us = (b.ru_utime.tv_sec - a.ru_utime.tv_sec) * 1e6 + (b.ru_utime.tv_usec - a.ru_utime.tv_usec)
              + (b.ru_stime.tv_sec - a.ru_stime.tv_sec) * 1e6 + (b.ru_stime.tv_usec - a.ru_stime.tv_usec);
    printf("nanosleep(50us) x %d: %.2f us CPU per sleep/wake\n", n, us / n);
    return 0;
}
