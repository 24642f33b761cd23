#!/bin/sh
# t/cxx-lib.sh: libkalloc.so exports the C++ operators (lib/cxx.c) and, for
# them, depends on no C++ runtime: every preloaded C program loads it.
lib=${KALLOC_LIB:-$(pwd)/lib/.libs/libkalloc.so}
if [ ! -f "$lib" ] || ! command -v nm >/dev/null || ! command -v readelf >/dev/null; then
	echo "1..0 # SKIP no $lib, nm or readelf"
	exit 0
fi
echo "1..4"
ops=$(nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^_Z(nw|na|dl|da)/ {print $3}' | sort)
n=$(echo "$ops" | grep -c .)
for want in _Znwm _Znam _ZnwmRKSt9nothrow_t _ZnamSt11align_val_tRKSt9nothrow_t _ZdlPvm _ZdaPvm \
	_ZdlPvmSt11align_val_t _ZdaPvSt11align_val_tRKSt9nothrow_t; do
	echo "$ops" | grep -qx "$want" || missing="$missing $want"
done
if [ "$n" -eq 20 ] && [ -z "${missing:-}" ]; then
	echo "ok 1 - nm -D: the 20 replaceable operator new/delete forms are exported"
else
	echo "not ok 1 - nm -D: $n operators exported, missing:${missing:-}"
	echo "$ops" | sed 's/^/# /'
fi
needed=$(readelf -d "$lib" | awk '/NEEDED/ {print $NF}' | tr -d '[]' | tr '\n' ' ')
case $needed in
*libstdc++* | *libgcc_s* | *libc++*) echo "not ok 2 - readelf -d: depends on a C++ runtime: $needed" ;;
*) echo "ok 2 - readelf -d: no libstdc++ or libgcc_s (NEEDED: $needed)" ;;
esac
# The C++ runtime is reached through weak references only.
strong=$(nm -D --undefined-only "$lib" | awk '$1 == "U" && $2 ~ /^(_ZSt15get_new_handlerv|__cxa_|_ZTISt9bad_alloc|_ZTVSt9bad_alloc|_ZNSt9bad_alloc)/ {print $2}')
weak=$(nm -D --undefined-only "$lib" | awk '$1 == "w" && $2 ~ /^(_ZSt15get_new_handlerv|__cxa_throw|__cxa_allocate_exception|_ZTISt9bad_alloc|_ZTVSt9bad_alloc|_ZNSt9bad_allocD1Ev)$/' | wc -l)
if [ -z "$strong" ] && [ "$weak" -eq 6 ]; then
	echo "ok 3 - std::get_new_handler and the bad_alloc throw are weak references"
else
	echo "not ok 3 - C++ runtime references: strong: $strong; weak: $weak of 6"
fi

# A real C++ program under kalloc: the compiler (cc1plus is C++), and what it built.
cxx=${CXX:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/p.cc" <<'PROG'
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>
int main()
{
	std::map<std::string, std::vector<std::unique_ptr<int>>> m;
	for (int i = 0; i < 50000; i++)
		m[std::to_string(i % 997)].push_back(std::make_unique<int>(i));
	size_t n = 0;
	for (auto &kv : m)
		n += kv.second.size();
	std::cout << n << "\n";
}
PROG
if ! command -v "$cxx" >/dev/null; then
	echo "ok 4 # SKIP no $cxx"
elif LD_PRELOAD="$lib" "$cxx" -std=c++17 -O2 -o "$tmp/p" "$tmp/p.cc" 2>"$tmp/err" &&
	[ "$(LD_PRELOAD="$lib" "$tmp/p")" = 50000 ]; then
	echo "ok 4 - $cxx runs under kalloc, and so does the C++ program it built"
else
	echo "not ok 4 - $cxx or its program under kalloc"
	head -5 "$tmp/err" | sed 's/^/# /'
fi
