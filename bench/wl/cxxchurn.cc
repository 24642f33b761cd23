// cxxchurn: what C++ programs do to an allocator through operator new and
// delete: a std::map<std::string, std::string> (tree nodes of 96 bytes,
// keys and values past the 15-byte small-string buffer) churned by random
// insert, update and erase around a steady size, plus short-lived
// std::vector<std::string> batches that grow by doubling. Each thread has
// its own map. Nothing but the standard library allocates.
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "wl.h"

static void churn(uint64_t seed, long rounds, uint64_t *ops, uint64_t *check)
{
	uint64_t s = seed, n = 0, c = 0;
	std::map<std::string, std::string> m;
	const size_t steady = 20000;
	for (long r = 0; r < rounds; r++) {
		std::string key = "k" + std::to_string(wl_rand(&s) % (steady * 2));
		key.append(wl_rand(&s) % 40, 'x');
		uint64_t op = wl_rand(&s) % 8;
		if (op < 5) {
			m[key].assign(wl_size(&s, 0, 200), (char)('a' + op));
		} else if (op < 7) {
			m.erase(key);
		} else {
			std::vector<std::string> batch;
			size_t k = wl_size(&s, 1, 64);
			for (size_t i = 0; i < k; i++)
				batch.emplace_back(wl_size(&s, 1, 120), 'v');
			c += batch[k / 2].size();
			n += k;
		}
		n++;
		if (m.size() > steady * 3 / 2)
			m.erase(m.begin());
	}
	for (auto &kv : m)
		c += kv.first.size() + kv.second.size();
	*ops = n;
	*check = c;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	long rounds = a.quick ? 200000 : 2000000;
	std::vector<uint64_t> ops(a.threads), check(a.threads);
	std::vector<std::thread> t;
	for (int i = 0; i < a.threads; i++)
		t.emplace_back(churn, 1234567 + i, rounds / a.threads, &ops[i], &check[i]);
	uint64_t n = 0, c = 0;
	for (int i = 0; i < a.threads; i++) {
		t[i].join();
		n += ops[i];
		c += check[i];
	}
	wl_done("cxxchurn", n, c);
	return 0;
}
