/*
 * strbuild: a realloc-heavy string builder. Strings are built by
 * appending short pieces (1..80 B) with realloc to exactly the new length,
 * as naive code does, up to 1 KiB..1 MiB (log-uniform); eight stay alive
 * at a time. Rewards in-place growth and cheap copies.
 */
#include "wl.h"

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	uint64_t s = 7, ops = 0, check = 0;
	char *keep[8] = {0};
	int strings = a.quick ? 300 : 3000;
	for (int i = 0; i < strings; i++) {
		size_t want = (size_t)1024 << (wl_rand(&s) % 11), n = 0;
		char *str = NULL;
		while (n < want) {
			size_t piece = wl_size(&s, 1, 80);
			char *t = realloc(str, n + piece + 1);
			if (!t) {
				fprintf(stderr, "out of memory\n");
				return 1;
			}
			str = t;
			memset(str + n, 'a' + (int)(piece % 26), piece);
			n += piece;
			str[n] = 0;
			ops++;
		}
		check += (unsigned char)str[n / 2];
		free(keep[i % 8]);
		keep[i % 8] = str;
	}
	for (int i = 0; i < 8; i++)
		free(keep[i]);
	wl_done("strbuild", ops, check);
	return 0;
}
