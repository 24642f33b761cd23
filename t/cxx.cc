// t/cxx.cc: the C++ front door (lib/cxx.c). The program re-executes itself
// under LD_PRELOAD=$KALLOC_LIB, so every new and delete below, and those of
// the standard library, are kalloc's operators; misuse cases run in
// children (t/preload.h) whose message is checked.
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>

#include <exception>
#include <map>
#include <new>
#include <string>

#include "preload.h"

static const char *const operators[] = {
	"_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
	"_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
	"_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
	"_ZdlPv", "_ZdaPv", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t", "_ZdlPvm", "_ZdaPvm",
	"_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t", "_ZdlPvSt11align_val_tRKSt9nothrow_t",
	"_ZdaPvSt11align_val_tRKSt9nothrow_t", "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
};

// Larger than PTRDIFF_MAX: no allocator can serve it, and no memory is touched.
static const size_t impossible = (size_t)PTRDIFF_MAX + 1;

static void fill(void *p, size_t n, int c) { memset(p, c, n); }

static bool filled(const void *p, size_t n, int c)
{
	const unsigned char *b = (const unsigned char *)p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != (unsigned char)c)
			return false;
	return true;
}

static int dtors;
struct counted {
	long v[3];
	counted() : v{1, 2, 3} {}
	~counted() { dtors++; }
};

static int handler_calls, handler_returns;
// Returns (so new retries) handler_returns times, then uninstalls itself.
static void handler()
{
	if (++handler_calls > handler_returns)
		std::set_new_handler(nullptr);
}

static int thrower_calls;
// A handler that gives up the way the standard allows: it throws bad_alloc.
static void thrower()
{
	thrower_calls++;
	throw std::bad_alloc();
}

static void *freer(void *arg)
{
	::operator delete(arg, 200);
	return nullptr;
}

static void wrong_small_size()
{
	void *p = ::operator new(64);
	::operator delete(p, 2000);
}

static void wrong_large_size()
{
	void *p = ::operator new(100000);
	::operator delete(p, 300000);
}

static void small_size_on_large()
{
	void *p = ::operator new(100000);
	::operator delete(p, 16);
}

static const struct {
	const char *name;
	void (*fn)();
} misuse[] = {
	{"wrong_small_size", wrong_small_size},
	{"wrong_large_size", wrong_large_size},
	{"small_size_on_large", small_size_on_large},
};

// True if case `name` died of SIGABRT reporting a sized delete's mismatch.
static bool mismatch_reported(const char *name)
{
	char out[4096];
	int st = run_case(NULL, name, out, sizeof out);
	bool said = strstr(out, "kalloc: operator delete(): size does not match the block") != nullptr;
	if (!said)
		diag("child said: %s", out);
	return aborted(st) && said;
}

int main(int argc, char **argv)
{
	const char *lib = kalloc_lib();
	if (argc == 3 && strcmp(argv[1], "child") == 0) {
		for (auto &m : misuse)
			if (strcmp(argv[2], m.name) == 0)
				m.fn();
		_exit(0);
	}
	if (!getenv("KALLOC_T_CXX")) {
		setenv("KALLOC_T_CXX", "1", 1);
		setenv("LD_PRELOAD", lib, 1);
		unsetenv("KALLOC_CONF");
		execv("/proc/self/exe", argv);
		plan_skip_all("cannot re-execute under LD_PRELOAD");
	}

	// Every replaceable operator is kalloc's, not libstdc++'s.
	int ours = 0;
	for (const char *name : operators) {
		Dl_info info;
		void *f = dlsym(RTLD_DEFAULT, name);
		if (f && dladdr(f, &info) && info.dli_fname && strstr(info.dli_fname, "libkalloc"))
			ours++;
		else
			diag("%s is not kalloc's (%s)", name, f && dladdr(f, &info) ? info.dli_fname : "?");
	}
	ok(ours == (int)(sizeof operators / sizeof *operators), "all %d operators resolve into libkalloc", ours);

	// Every small size class, through new, new[] and sized delete.
	bool good = true;
	for (size_t n = 0; n <= 8192; n += n < 256 ? 1 : 7) {
		char *p = (char *)::operator new(n);
		char *a = new char[n];
		fill(p, n, 0x11);
		fill(a, n, 0x22);
		good = good && malloc_usable_size(p) >= n && malloc_usable_size(a) >= n &&
		       filled(p, n, 0x11) && filled(a, n, 0x22) && (n < 16 || (uintptr_t)p % 16 == 0);
		::operator delete(p, n);
		::operator delete[](a, n);
		void *q = ::operator new(n);
		::operator delete(q);
	}
	ok(good, "new/new[] of 0..8192 bytes: usable, distinct, 16-aligned from 16, sized delete");

	// Large blocks: buddy pages and dedicated mappings.
	static const size_t large[] = {8193, 65536, 200000, 1 << 20, (1 << 20) + 1, 8 << 20, 64 << 20};
	good = true;
	for (size_t n : large) {
		char *p = (char *)::operator new(n);
		fill(p, n, 0x33);
		good = good && malloc_usable_size(p) >= n && filled(p, n, 0x33);
		::operator delete(p, n);
		p = new char[n];
		p[0] = p[n - 1] = 1;
		delete[] p;
	}
	ok(good, "large new of 8 KiB + 1 to 64 MiB, sized delete");

	// Arrays with destructors: the cookie, and the sized delete[] of it.
	dtors = 0;
	for (int n : {1, 7, 100, 1000, 5000}) {
		counted *c = new counted[n];
		good = c[n - 1].v[2] == 3;
		delete[] c;
	}
	ok(good && dtors == 1 + 7 + 100 + 1000 + 5000, "arrays with destructors: %d destroyed", dtors);

	// Aligned new, 64 B to 64 KiB alignment (and beyond), small and large sizes.
	good = true;
	for (size_t align = 64; align <= (2 << 20); align *= 2)
		for (size_t n : {(size_t)1, (size_t)100, align, 3 * align + 5}) {
			void *p = ::operator new(n, std::align_val_t(align));
			void *q = ::operator new[](n, std::align_val_t(align), std::nothrow);
			good = good && p && q && (uintptr_t)p % align == 0 && (uintptr_t)q % align == 0;
			fill(p, n, 0x44);
			fill(q, n, 0x55);
			good = good && filled(p, n, 0x44);
			::operator delete(p, n, std::align_val_t(align));
			::operator delete[](q, std::align_val_t(align), std::nothrow);
		}
	struct alignas(4096) page {
		char b[100];
	};
	page *pg = new page;
	good = good && (uintptr_t)pg % 4096 == 0;
	delete pg;
	ok(good, "aligned new of 64 B to 2 MiB alignment, sized and nothrow aligned delete");

	// The new_handler runs before bad_alloc, and new retries while it returns.
	handler_calls = 0;
	handler_returns = 2;
	std::set_new_handler(handler);
	bool threw = false;
	try {
		void *volatile p = ::operator new(impossible);
		(void)p;
	} catch (const std::bad_alloc &e) {
		threw = strstr(e.what(), "bad_alloc") != nullptr;
	}
	ok(threw && handler_calls == 3, "new: handler called 3 times (returned twice), then std::bad_alloc");

	handler_calls = 0;
	handler_returns = 0;
	std::set_new_handler(handler);
	threw = false;
	try {
		void *volatile p = ::operator new[](impossible, std::align_val_t(128));
		(void)p;
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	ok(threw && handler_calls == 1, "aligned new[]: handler, then std::bad_alloc");

	// Nothrow forms run the handler too, then return nullptr.
	handler_calls = 0;
	std::set_new_handler(handler);
	void *p = ::operator new(impossible, std::nothrow);
	ok(p == nullptr && handler_calls == 1, "nothrow new: handler called, then nullptr");
	ok(::operator new(impossible, std::nothrow) == nullptr &&
		   ::operator new[](impossible, std::nothrow) == nullptr &&
		   ::operator new(impossible, std::align_val_t(64), std::nothrow) == nullptr &&
		   handler_calls == 1,
	   "nothrow new of an impossible size without handler: nullptr");
	// A handler that throws: the nothrow forms catch it and return nullptr.
	std::set_new_handler(thrower);
	thrower_calls = 0;
	bool escaped = false;
	try {
		p = ::operator new(impossible, std::nothrow);
		void *q = ::operator new[](impossible, std::align_val_t(256), std::nothrow);
		ok(p == nullptr && q == nullptr && thrower_calls == 2 && std::uncaught_exceptions() == 0,
		   "nothrow new: a handler's bad_alloc is caught, nullptr returned (%d calls)", thrower_calls);
	} catch (...) {
		escaped = true;
		ok(0, "nothrow new: a handler's exception escaped");
	}
	threw = false;
	try {
		void *volatile q = ::operator new(impossible);
		(void)q;
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	ok(!escaped && threw && thrower_calls == 3, "new: a handler's bad_alloc reaches the caller");
	std::set_new_handler(nullptr);

	p = ::operator new(100, std::nothrow);
	ok(p != nullptr, "nothrow new of a possible size");
	::operator delete(p, std::nothrow);

	// A sized delete from another thread (not the slab's owner) is checked and taken.
	p = ::operator new(200);
	pthread_t t;
	pthread_create(&t, nullptr, freer, p);
	pthread_join(t, nullptr);
	ok(malloc_usable_size(p = ::operator new(200)) >= 200, "sized delete from another thread");
	::operator delete(p, 200);

	// A size that cannot be the block's is reported, not trusted.
	ok(mismatch_reported("wrong_small_size"), "sized delete of a 64-byte block with size 2000 is reported");
	ok(mismatch_reported("wrong_large_size"),
	   "sized delete of a 100000-byte block with size 300000 is reported");
	ok(mismatch_reported("small_size_on_large"), "sized delete of a large block with a small size is reported");

	// The standard library's containers on top.
	std::map<std::string, std::string> m;
	for (int i = 0; i < 20000; i++)
		m[std::to_string(i * 7919 % 5000) + std::string(i % 50, 'x')] = std::string(i % 300, 'y');
	size_t bytes = 0;
	for (auto &kv : m)
		bytes += kv.first.size() + kv.second.size();
	m.clear();
	ok(bytes > 0, "std::map<std::string, std::string> churn (%zu bytes)", bytes);
	return done_testing();
}
