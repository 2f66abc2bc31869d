/* proc.h: what the benchmarks read about other processes (the servers they drive), from /proc. */
#ifndef TALLY_BENCH_PROC_H
#define TALLY_BENCH_PROC_H

#include <stdint.h>

/* CPU time (user + system, in clock ticks) process `pid` has used so far, from /proc/PID/stat;
 * 0 if it cannot be read. tally-bench and tally-bench-pg report the servers' CPU per posting
 * with it, so that a figure taken on a loaded machine can still be read. */
uint64_t bench_process_cpu_ticks(int pid);

#endif
