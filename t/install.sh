#!/bin/sh
# t/install.sh: kalloc installs like any library. A clean copy of the
# distribution (make distdir) is configured with --prefix in a temporary
# directory and installed; a program built with the installed kalloc.pc
# gets its malloc from libkalloc.so.0; the installed kalloc-run preloads the
# installed library into a real program; make install DESTDIR=... installs
# exactly the expected files; make uninstall leaves no file in the prefix.
MAKE=${MAKE:-make}
top=$(pwd)
if ! command -v pkg-config >/dev/null || ! command -v readelf >/dev/null; then
	echo "1..0 # SKIP no pkg-config or readelf"
	exit 0
fi
echo "1..8"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
# The make running this test must not steer the inner build.
unset MAKEFLAGS MFLAGS MAKELEVEL srcdir KALLOC_LIB KALLOC_CONF LD_PRELOAD

if $MAKE -C "$top" distdir distdir="$tmp/src" >"$tmp/log" 2>&1 &&
	mkdir "$tmp/build" && cd "$tmp/build" &&
	"$tmp/src/configure" --prefix="$prefix" --disable-dependency-tracking >>"$tmp/log" 2>&1 &&
	$MAKE -j2 >>"$tmp/log" 2>&1 && $MAKE install >>"$tmp/log" 2>&1; then
	echo "ok 1 - configure --prefix=\$tmp/prefix, make, make install"
else
	echo "not ok 1 - configure --prefix, make, make install"
	tail -30 "$tmp/log" | sed 's/^/# /'
	exit 1
fi

# A program linked through the installed kalloc.pc.
cat >"$tmp/app.c" <<'APP'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <kalloc.h>
int main(void)
{
	Dl_info info;
	void *p = malloc(100);
	struct kmem_cache *c = kmem_cache_create("app", 48, 0, 0, NULL);
	void *o = kmem_cache_alloc(c, KALLOC_ZERO);
	if (!p || !o || !dladdr((void *)&malloc, &info))
		return 1;
	kmem_cache_free(c, o);
	free(p);
	printf("%s\n", info.dli_fname);
	return kmem_cache_destroy(c);
}
APP
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
if cc -o "$tmp/app" "$tmp/app.c" $(pkg-config --cflags --libs kalloc) -ldl 2>"$tmp/cc.log" &&
	readelf -d "$tmp/app" | grep -q 'NEEDED.*\[libkalloc\.so\.0\]'; then
	echo "ok 2 - cc app.c \$(pkg-config --cflags --libs kalloc) links libkalloc.so.0"
else
	echo "not ok 2 - building with the installed kalloc.pc"
	sed 's/^/# /' "$tmp/cc.log"
fi
got=$(LD_LIBRARY_PATH="$prefix/lib" "$tmp/app" 2>&1)
if [ "$got" = "$prefix/lib/libkalloc.so.0" ]; then
	echo "ok 3 - the program's malloc resolves into \$prefix/lib/libkalloc.so.0"
else
	echo "not ok 3 - the program's malloc is in: $got"
fi

# The installed kalloc-run preloads the installed library into a real program.
pre=$("$prefix/bin/kalloc-run" sh -c 'echo "$LD_PRELOAD"' 2>&1)
# (perl: sort and other coreutils close stderr before kalloc's report at exit.)
out=$("$prefix/bin/kalloc-run" --stats perl -e 'my %h; $h{$_} = "x" x ($_ % 300) for 1..20000;
	print scalar(keys %h), "\n"' 2>"$tmp/err")
st=$?
if [ "$pre" = "$prefix/lib/libkalloc.so.0" ] && [ $st -eq 0 ] && [ "$out" = 20000 ] &&
	grep -q '^kmalloc-' "$tmp/err"; then
	echo "ok 4 - installed kalloc-run runs perl under \$prefix/lib/libkalloc.so.0 (its stats at exit)"
else
	echo "not ok 4 - installed kalloc-run: LD_PRELOAD=$pre, perl exit $st, printed $out"
	head -5 "$tmp/err" | sed 's/^/# /'
fi
if "$prefix/bin/kalloc-top" -h 2>&1 | grep -q '^usage: kalloc-top' &&
	"$prefix/bin/kalloc-prof" -h 2>&1 | grep -q '^usage: kalloc-prof'; then
	echo "ok 5 - installed kalloc-top and kalloc-prof run"
else
	echo "not ok 5 - installed kalloc-top or kalloc-prof"
fi

# DESTDIR: the list of installed files, and kalloc-run names the prefix, not DESTDIR.
$MAKE install DESTDIR="$tmp/dest" >"$tmp/log" 2>&1
(cd "$tmp/dest$prefix" && find . ! -type d | sort) >"$tmp/files"
cat >"$tmp/expected" <<'LIST'
./bin/kalloc-prof
./bin/kalloc-run
./bin/kalloc-top
./include/kalloc.h
./lib/libkalloc.la
./lib/libkalloc.so
./lib/libkalloc.so.0
./lib/libkalloc.so.0.0.0
./lib/pkgconfig/kalloc.pc
./share/man/man1/kalloc-prof.1
./share/man/man1/kalloc-run.1
./share/man/man1/kalloc-top.1
./share/man/man3/kalloc.3
LIST
if cmp -s "$tmp/expected" "$tmp/files" && [ -L "$tmp/dest$prefix/lib/libkalloc.so.0" ] &&
	grep -q "$prefix/lib/libkalloc.so.0" "$tmp/dest$prefix/bin/kalloc-run" &&
	! grep -q "$tmp/dest" "$tmp/dest$prefix/bin/kalloc-run" "$tmp/dest$prefix/lib/pkgconfig/kalloc.pc"; then
	echo "ok 6 - make install DESTDIR=... installs the $(wc -l <"$tmp/expected") expected files"
else
	echo "not ok 6 - DESTDIR install: expected (<) and installed (>) files"
	diff "$tmp/expected" "$tmp/files" | grep '^[<>]' | sed 's/^/# /'
fi
soname=$(readelf -d "$prefix/lib/libkalloc.so.0" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
if [ "$soname" = libkalloc.so.0 ]; then
	echo "ok 7 - SONAME libkalloc.so.0"
else
	echo "not ok 7 - SONAME is '$soname'"
fi

$MAKE uninstall >"$tmp/log" 2>&1
left=$(cd "$prefix" && find . ! -type d)
if [ -z "$left" ]; then
	echo "ok 8 - make uninstall leaves no file in the prefix"
else
	echo "not ok 8 - left after make uninstall: $left"
fi
