#!/bin/sh
# t/sanitize.sh UNIT_TESTS TSAN_TESTS SOURCES: build the core and the unit
# tests from source under ASan+UBSan (all unit tests) and TSan (the threaded
# ones), each configuration in its own directory under sanitize/, run them,
# and count TAP results. Ends with "sanitize: N passed, M failed".
unit=$1 tsan=$2 sources=$3
srcdir=${srcdir:-.}
CC=${CC:-cc}
passed=0 failed=0 bad=0
libsrc=""
for s in $sources; do
	case $s in *.c) libsrc="$libsrc $srcdir/$s" ;; esac
done

run_config() { # name flags tests
	name=$1 flags=$2 tests=$3
	dir=sanitize/$name
	mkdir -p "$dir"
	for t in $tests; do
		exe=$dir/$(basename "$t")
		if ! $CC -O1 -g -fno-omit-frame-pointer -fno-builtin -D_GNU_SOURCE -I"$srcdir/lib" \
			-pthread $flags -o "$exe" $libsrc "$srcdir/$t.c" -ldl 2>"$exe.build.log"; then
			echo "not ok - $name $t: build failed"
			cat "$exe.build.log"
			failed=$((failed + 1)) bad=1
			continue
		fi
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
			TSAN_OPTIONS="die_after_fork=0 halt_on_error=1" "$exe" >"$exe.log" 2>&1
		st=$?
		p=$(grep -cE '^ok ' "$exe.log")
		f=$(grep -cE '^not ok ' "$exe.log")
		plan=$(sed -nE 's/^1\.\.([0-9]+).*/\1/p' "$exe.log" | head -n 1)
		if [ "$st" -ne 0 ] || [ "$f" -ne 0 ] || [ -z "$plan" ] || [ "$plan" -ne $((p + f)) ] ||
			grep -qE 'Sanitizer|runtime error' "$exe.log"; then
			echo "FAIL: $name $t (exit $st, $p ok, $f not ok, plan ${plan:-none})"
			sed 's/^/    /' "$exe.log" | tail -40
			[ "$f" -eq 0 ] && f=1
			bad=1
		else
			echo "PASS: $name $t ($p ok)"
		fi
		passed=$((passed + p)) failed=$((failed + f))
	done
}

run_config asan "-fsanitize=address,undefined -fno-sanitize-recover=all" "$unit"
run_config tsan "-fsanitize=thread" "$tsan"
echo "sanitize: $passed passed, $failed failed"
exit $bad
