#!/bin/sh
# t/preload-start.sh: process life under LD_PRELOAD (see t/early.c).
lib=${KALLOC_LIB:-$(pwd)/lib/.libs/libkalloc.so}
if [ ! -f "$lib" ] || [ ! -x t/early ]; then
	echo "1..0 # SKIP no $lib or t/early"
	exit 0
fi
out=$(LD_PRELOAD="$lib" ./t/early 2>&1)
st=$?
echo "1..7"
check() {
	n=$1; shift
	if echo "$out" | grep -qx "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; echo "$out" | sed 's/^/# /'; fi
}
check 1 "kalloc loaded: yes" "the program runs under kalloc"
check 2 "dlopen/dlclose while threads allocate: ok" "dlopen/dlclose of libraries while threads allocate"
check 3 "short threads: 10000" "10k short threads"
check 4 "forked children ok: 20" "fork from a threaded program, children allocate"
check 5 "aligned: ok" "posix_memalign under preload"
check 6 "early threads ran: yes" "threads started before main allocate"
[ "$st" -eq 0 ] && echo "ok 7 - exit() while threads still allocate: exit 0" || echo "not ok 7 - exit status $st"
