// shim.cc: registers every case of micro.h with Google Benchmark. The
// case body gets the whole iteration count in one call (KeepRunningBatch
// with max_iterations), so the timed loop is the C loop alone; items
// processed are the case's operations, so the figure is time per operation.
// Threaded cases run at 1, 2 and 4 threads (4 > the machine's 2 cores).
#include <benchmark/benchmark.h>

#include "micro.h"

static void run_case(benchmark::State &st, const micro_case *c)
{
	long n = (long)st.max_iterations;
	while (st.KeepRunningBatch(n))
		c->run(n, c->arg, st.thread_index(), st.threads());
	st.SetItemsProcessed(st.iterations());
}

int main(int argc, char **argv)
{
	for (int i = 0; i < micro_ncases; i++) {
		const micro_case *c = &micro_cases[i];
		auto *b = benchmark::RegisterBenchmark(c->name, run_case, c);
		if (c->threaded)
			b->Threads(1)->Threads(2)->Threads(4)->UseRealTime();
	}
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}
