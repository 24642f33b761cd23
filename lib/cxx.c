/*
 * cxx.c: the C++ front door. libkalloc.so exports the standard's replaceable
 * operator new and delete (plain, array, nothrow, aligned, sized, and their
 * combinations), as jemalloc and tcmalloc do, so that a C++ program's new
 * reaches the thread cache directly instead of going through libstdc++'s
 * operator new and then malloc.
 *
 * Included by preload.c after api.c (it shares api.c's static helpers and
 * fast paths); the core build, which the unit tests link, has none of it.
 * The operators are C functions under their Itanium-ABI mangled names
 * (x86-64: size_t is "m", std::align_val_t "St11align_val_t",
 * const std::nothrow_t& "RKSt9nothrow_t"), so libkalloc.so does not link
 * libstdc++ or libgcc_s: every preloaded C program (ls, sort) would load
 * them otherwise. This file is built with -fexceptions, so that the
 * unwinder may pass a std::bad_alloc, or whatever a new_handler throws,
 * through these frames to the program's catch.
 *
 * Invariants:
 *  - The C++ runtime (std::get_new_handler, __cxa_allocate_exception,
 *    __cxa_throw, std::bad_alloc's typeinfo, vtable and destructor) is
 *    reached only through weak references. They are resolved when the
 *    library is loaded (-z now): all present exactly when the program
 *    links a C++ runtime (libstdc++, or libc++ with libc++abi), all NULL in
 *    a C program, which cannot install a new_handler or catch anything.
 *  - Throwing and nothrow forms run the same loop: allocate; on failure
 *    call the installed new_handler and retry; with no handler, the
 *    throwing forms throw std::bad_alloc and the nothrow forms return NULL.
 *    In a nothrow form, a handler that throws ends the loop with NULL, as
 *    the standard's try { return operator new(n); } catch (...) would.
 *  - Sized delete trusts nothing: the fast path takes the object only when
 *    its slab's class is the class new would have chosen for that size;
 *    anything else goes to the slow path, which reports a size that cannot
 *    be the block's (ka_fatal) before freeing.
 *  - Aligned forms take any power of two (api.c's alloc_aligned); any other
 *    alignment is misuse and reported.
 */
#include <stdbool.h>

/* ------------------------------------------------------------ the C++ runtime */

typedef void (*ka_new_handler)(void);
/* std::get_new_handler() */
extern ka_new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void *__cxa_allocate_exception(size_t size) __attribute__((weak));
extern void __cxa_throw(void *obj, void *tinfo, void (*dtor)(void *))
	__attribute__((weak, noreturn));
/* typeinfo, vtable and destructor of std::bad_alloc */
extern char _ZTISt9bad_alloc __attribute__((weak));
extern void *_ZTVSt9bad_alloc[] __attribute__((weak));
extern void _ZNSt9bad_allocD1Ev(void *obj) __attribute__((weak));

/*
 * Throw std::bad_alloc as `throw std::bad_alloc()` would: the object is
 * only a vtable pointer (std::exception has no data members in libstdc++
 * or libc++), pointing at the vtable's address point, past its
 * offset-to-top and typeinfo words.
 */
static KA_NOINLINE KA_COLD void throw_bad_alloc(void)
{
	if (__cxa_allocate_exception && __cxa_throw && &_ZTISt9bad_alloc && _ZTVSt9bad_alloc &&
	    _ZNSt9bad_allocD1Ev) {
		void **obj = __cxa_allocate_exception(sizeof(void *));
		*obj = &_ZTVSt9bad_alloc[2];
		__cxa_throw(obj, &_ZTISt9bad_alloc, _ZNSt9bad_allocD1Ev);
	}
	ka_fatal("operator new", "out of memory, and no C++ runtime to throw std::bad_alloc", NULL,
		 NULL);
}

/*
 * A nothrow form must return NULL where the new_handler throws, and C has
 * no catch: handler_catching calls the handler from a frame of its own
 * whose unwind entry names a personality routine (catching_personality)
 * that catches everything but a forced unwind (thread cancellation), as
 * catch (...) does. The unwinder lands in that frame with the exception in
 * %rax; caught() ends the catch, which destroys the exception. The
 * unwinder's own calls (_Unwind_*) are weak as well: whoever threw loaded
 * them.
 */
struct ka_unwind_context;
extern void _Unwind_SetGR(struct ka_unwind_context *ctx, int reg, uintptr_t v) __attribute__((weak));
extern void _Unwind_SetIP(struct ka_unwind_context *ctx, uintptr_t ip) __attribute__((weak));
extern void _Unwind_DeleteException(void *exc) __attribute__((weak));
extern void *__cxa_begin_catch(void *exc) __attribute__((weak));
extern void __cxa_end_catch(void) __attribute__((weak));

/* The Itanium C++ ABI's unwinding interface, level I. */
enum { KA_UA_SEARCH_PHASE = 1, KA_UA_HANDLER_FRAME = 4, KA_UA_FORCE_UNWIND = 8 };
enum { KA_URC_FATAL_PHASE1_ERROR = 3, KA_URC_HANDLER_FOUND = 6, KA_URC_INSTALL_CONTEXT = 7,
       KA_URC_CONTINUE_UNWIND = 8 };

#if defined(__x86_64__)
/* true if h returned, false if it threw (and the exception is gone) */
bool ka_cxx_handler_catching(ka_new_handler h) __attribute__((visibility("hidden")));
int ka_cxx_catching_personality(int version, int actions, uint64_t exc_class, void *exc,
				struct ka_unwind_context *ctx) __attribute__((visibility("hidden")));
void ka_cxx_caught(void *exc) __attribute__((visibility("hidden")));
extern char ka_cxx_landing[] __attribute__((visibility("hidden")));

__asm__(".text\n"
	".globl ka_cxx_handler_catching\n"
	".hidden ka_cxx_handler_catching\n"
	".hidden ka_cxx_landing\n"
	".type ka_cxx_handler_catching, @function\n"
	"ka_cxx_handler_catching:\n"
	"	.cfi_startproc\n"
	"	.cfi_personality 0x1b, ka_cxx_catching_personality\n"
	"	subq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	call *%rdi\n"
	"	movl $1, %eax\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	ret\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"ka_cxx_landing:\n"
	"	movq %rax, %rdi\n"
	"	call ka_cxx_caught\n"
	"	xorl %eax, %eax\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size ka_cxx_handler_catching, .-ka_cxx_handler_catching\n");

/* Only ka_cxx_handler_catching's frame has this personality: the one call in it threw. */
int ka_cxx_catching_personality(int version, int actions, uint64_t exc_class, void *exc,
				struct ka_unwind_context *ctx)
{
	if (version != 1 || !_Unwind_SetGR || !_Unwind_SetIP)
		return KA_URC_FATAL_PHASE1_ERROR;
	if (actions & KA_UA_FORCE_UNWIND)
		return KA_URC_CONTINUE_UNWIND;
	if (actions & KA_UA_SEARCH_PHASE)
		return KA_URC_HANDLER_FOUND;
	if (actions & KA_UA_HANDLER_FRAME) {
		_Unwind_SetGR(ctx, __builtin_eh_return_data_regno(0), (uintptr_t)exc);
		_Unwind_SetIP(ctx, (uintptr_t)ka_cxx_landing);
		return KA_URC_INSTALL_CONTEXT;
	}
	return KA_URC_CONTINUE_UNWIND;
}

void ka_cxx_caught(void *exc)
{
	if (__cxa_begin_catch && __cxa_end_catch) {
		__cxa_begin_catch(exc);
		__cxa_end_catch();
	} else if (_Unwind_DeleteException) {
		_Unwind_DeleteException(exc);
	}
}

static bool call_handler(ka_new_handler h, bool nothrow)
{
	if (!nothrow) {
		h();
		return true;
	}
	return ka_cxx_handler_catching(h);
}
#else
/* Elsewhere a handler's exception passes through a nothrow form. */
static bool call_handler(ka_new_handler h, bool nothrow)
{
	h();
	return true;
}
#endif

/* align 0: new's own alignment (malloc's). */
static KA_NOINLINE void *new_slow(size_t n, size_t align, bool nothrow)
{
	if (align & (align - 1))
		ka_fatal("operator new", "alignment is not a power of two:", (void *)align, NULL);
	for (;;) {
		void *p = align ? alloc_aligned(align, n, KA_SITE()) : malloc_slow(n, NULL);
		if (p)
			return p;
		ka_new_handler h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
		if (!h || !call_handler(h, nothrow))
			break;
	}
	if (nothrow)
		return NULL;
	throw_bad_alloc();
	return NULL;
}

KA_INLINE void *new_fast(size_t n, bool nothrow)
{
	void *p = ka_tcache_malloc(n);
	if (KA_LIKELY(p != NULL))
		return p;
	return new_slow(n, 0, nothrow);
}

/* The class new(n, align) takes a block from (api.c's alloc_aligned); 0: a large block. */
static unsigned request_class(size_t n, size_t align)
{
	if (malloc_aligns(align, n))
		return n <= KA_SMALL_MAX ? ka_size_class[(n + 7) >> 3] : 0;
	return ka_class_for_align(n ? n : 1, align);
}

/*
 * Fatal unless p, live, could be the block of new(n, align). Under a debug
 * mode blocks are placed differently: n must fit, and be exact under the
 * red zone (which knows the size asked for).
 */
static KA_NOINLINE void delete_sized_slow(void *p, size_t n, size_t align)
{
	static const char func[] = "operator delete()";
	if (!p)
		return;
	struct ka_slab *slab;
	size_t u = usable_of(p, func, &slab);
	bool ok;
	if (ka_debug_on) {
		ok = ka_opt.redzone ? n == u : n <= u;
	} else {
		unsigned cls = request_class(n, align);
		/* A sampled small block is a page block of its own (prof.c). */
		ok = slab ? cls && slab->cache == &ka_kmalloc[cls]
		       : (!cls || (ka_prof_on && ka_prof_sampled(p))) && n <= u;
	}
	if (!ok)
		ka_fatal(func, "size does not match the block", p, NULL);
	free_slow(p, func);
}

KA_INLINE void delete_fast(void *p)
{
	if (KA_LIKELY(ka_tcache_free(p)))
		return;
	free_slow(p, "operator delete()");
}

KA_INLINE void delete_sized_fast(void *p, size_t n)
{
	/* Class 0 never tags a slab: a large size goes to the slow path. */
	uint32_t want = n <= KA_SMALL_MAX ? ka_size_class[(n + 7) >> 3] : 0;
	if (KA_LIKELY(ka_tcache_free_class(p, want)))
		return;
	delete_sized_slow(p, n, 0);
}

/* ------------------------------------------------------------ the operators */

void *_Znwm(size_t n);
void *_Znam(size_t n);
void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt);
void *_ZnamRKSt9nothrow_t(size_t n, const void *nt);
void *_ZnwmSt11align_val_t(size_t n, size_t align);
void *_ZnamSt11align_val_t(size_t n, size_t align);
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *nt);
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *nt);
void _ZdlPv(void *p);
void _ZdaPv(void *p);
void _ZdlPvRKSt9nothrow_t(void *p, const void *nt);
void _ZdaPvRKSt9nothrow_t(void *p, const void *nt);
void _ZdlPvm(void *p, size_t n);
void _ZdaPvm(void *p, size_t n);
void _ZdlPvSt11align_val_t(void *p, size_t align);
void _ZdaPvSt11align_val_t(void *p, size_t align);
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const void *nt);
void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const void *nt);
void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t align);
void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t align);

/* operator new(size_t), new[](size_t), and their nothrow forms */
KA_EXPORT void *_Znwm(size_t n) { return new_fast(n, false); }
KA_EXPORT void *_Znam(size_t n) { return new_fast(n, false); }
KA_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt) { return new_fast(n, true); }
KA_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *nt) { return new_fast(n, true); }

/* operator new(size_t, align_val_t), new[], and their nothrow forms */
KA_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t align) { return new_slow(n, align, false); }
KA_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t align) { return new_slow(n, align, false); }
KA_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *nt)
{
	return new_slow(n, align, true);
}
KA_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t align, const void *nt)
{
	return new_slow(n, align, true);
}

/* operator delete(void *), delete[], and their nothrow forms */
KA_EXPORT void _ZdlPv(void *p) { delete_fast(p); }
KA_EXPORT void _ZdaPv(void *p) { delete_fast(p); }
KA_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *nt) { delete_fast(p); }
KA_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *nt) { delete_fast(p); }

/* operator delete(void *, size_t), delete[] */
KA_EXPORT void _ZdlPvm(void *p, size_t n) { delete_sized_fast(p, n); }
KA_EXPORT void _ZdaPvm(void *p, size_t n) { delete_sized_fast(p, n); }

/* operator delete(void *, align_val_t), delete[], nothrow, and sized */
KA_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t align) { delete_fast(p); }
KA_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t align) { delete_fast(p); }
KA_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const void *nt)
{
	delete_fast(p);
}
KA_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const void *nt)
{
	delete_fast(p);
}
KA_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t align)
{
	delete_sized_slow(p, n, align);
}
KA_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t align)
{
	delete_sized_slow(p, n, align);
}
