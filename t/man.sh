#!/bin/sh
# t/man.sh: kalloc(3) documents exactly the KALLOC_CONF keys the library
# knows (its own table, printed by KALLOC_CONF=help), and the man pages
# are well formed.
lib=${KALLOC_LIB:-$(pwd)/lib/.libs/libkalloc.so}
page=${srcdir:-.}/man/kalloc.3
if [ ! -f "$lib" ] || [ ! -f "$page" ]; then
	echo "1..0 # SKIP no $lib or no $page"
	exit 0
fi
echo "1..3"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
env KALLOC_CONF=help LD_PRELOAD="$lib" /bin/true 2>&1 | awk 'NF {print $1}' | sort >"$tmp/known"
# In the CONFIGURATION section, every key is a ".TP" tag ".B key:value".
awk '/^\.SH/ {in_conf = ($2 == "CONFIGURATION")}
	in_conf && tag && /^\.B / {split($2, kv, ":"); print kv[1]}
	{tag = ($0 == ".TP")}' "$page" | sort >"$tmp/documented"
if [ -s "$tmp/known" ] && cmp -s "$tmp/known" "$tmp/documented"; then
	echo "ok 1 - kalloc(3) documents the $(wc -l <"$tmp/known") KALLOC_CONF keys of lib/options.c"
else
	echo "not ok 1 - KALLOC_CONF keys: library (<) and kalloc(3) (>) differ"
	diff "$tmp/known" "$tmp/documented" | grep '^[<>]' | sed 's/^/# /'
fi
dups=$(uniq -d "$tmp/documented")
if [ -z "$dups" ]; then
	echo "ok 2 - each key documented once"
else
	echo "not ok 2 - documented twice: $dups"
fi
if ! command -v man >/dev/null; then
	echo "ok 3 # SKIP no man"
	exit 0
fi
warn=""
for p in kalloc.3 kalloc-run.1 kalloc-top.1 kalloc-prof.1; do
	out=$(MANWIDTH=80 man --warnings -l "${srcdir:-.}/man/$p" 2>&1 >/dev/null)
	[ -z "$out" ] || warn="$warn $p: $out"
done
if [ -z "$warn" ]; then
	echo "ok 3 - man pages format without warnings"
else
	echo "not ok 3 - man warnings:$warn"
fi
