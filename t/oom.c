#include "../lib/internal.h"
#include "tap.h"
int main(void)
{
	plan(1);
	bool z;
	void *p = ka_buddy_alloc(3, KA_PG_RAW, &z);
	ka_buddy_validate();
	ka_buddy_free(p, 3);
	ka_buddy_validate();
	ok(p != NULL, "smoke");
	return 0;
}
