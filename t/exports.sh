#!/bin/sh
# t/exports.sh: libkalloc.so exports exactly lib/kalloc.sym, no internal symbol.
lib=${KALLOC_LIB:-$(pwd)/lib/.libs/libkalloc.so}
sym=${srcdir:-.}/lib/kalloc.sym
if [ ! -f "$lib" ] || ! command -v nm >/dev/null; then
	echo "1..0 # SKIP no $lib or no nm"
	exit 0
fi
echo "1..3"
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
# The Debian symbols file lists the same names (dpkg-gensymbols holds the
# package to it); debian/ is not in the distribution tarball.
debsym=${srcdir:-.}/debian/libkalloc0.symbols
if [ ! -f "$debsym" ]; then
	echo "ok 3 # SKIP no debian/libkalloc0.symbols"
elif awk 'NR > 1 {sub(/@.*/, "", $1); print $1}' "$debsym" | sort -u | cmp -s - exports.expected; then
	echo "ok 3 - debian/libkalloc0.symbols lists exactly lib/kalloc.sym"
else
	echo "not ok 3 - debian/libkalloc0.symbols and lib/kalloc.sym differ"
	awk 'NR > 1 {sub(/@.*/, "", $1); print $1}' "$debsym" | sort -u | diff exports.expected - | sed 's/^/# /'
fi
rm -f exports.actual exports.expected
