#!/bin/sh
# t/exports.sh: libkalloc.so exports exactly lib/kalloc.sym, no internal symbol.
lib=${KALLOC_LIB:-$(pwd)/lib/.libs/libkalloc.so}
sym=${srcdir:-.}/lib/kalloc.sym
if [ ! -f "$lib" ] || ! command -v nm >/dev/null; then
	echo "1..0 # SKIP no $lib or no nm"
	exit 0
fi
echo "1..2"
nm -D --defined-only "$lib" | awk '$2 ~ /[TWiV]/ {print $3}' | sed 's/@.*//' | sort -u >exports.actual
sort -u "$sym" >exports.expected
if cmp -s exports.actual exports.expected; then
	echo "ok 1 - exported names are exactly lib/kalloc.sym ($(wc -l <exports.expected))"
else
	echo "not ok 1 - exported names differ from lib/kalloc.sym"
	diff exports.expected exports.actual | sed 's/^/# /'
fi
if nm -D --defined-only "$lib" | grep -qE ' ka_'; then
	echo "not ok 2 - an internal ka_ symbol is exported"
else
	echo "ok 2 - no internal ka_ symbol exported"
fi
rm -f exports.actual exports.expected
