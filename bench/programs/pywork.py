"""A fixed Python workload for the allocator benchmarks (run with
PYTHONMALLOC=malloc so that every object goes through malloc): dicts,
lists, strings, JSON and a small object graph, churned and freed."""
import json
import sys

scale = 1 if len(sys.argv) > 1 and sys.argv[1] == "quick" else 3
check = 0
for rnd in range(scale):
    # Many small dicts and strings, as a web request handler makes.
    rows = [{"id": i, "name": "user%d" % i, "tags": ["t%d" % (i % 7), "x" * (i % 13)],
             "score": i * 0.5} for i in range(60000)]
    text = json.dumps(rows)
    back = json.loads(text)
    check += len(text) + len(back)
    # A tree of objects built and dropped.
    class Node:
        __slots__ = ("k", "left", "right")

        def __init__(self, k):
            self.k, self.left, self.right = k, None, None

    root = Node(0)
    for i in range(1, 80000):
        k = (i * 2654435761) % 1000003
        n, parent = root, None
        while n is not None:
            parent = n
            n = n.left if k < n.k else n.right
        if k < parent.k:
            parent.left = Node(k)
        else:
            parent.right = Node(k)
    # Growing and shrinking strings and lists.
    parts = []
    for i in range(100000):
        parts.append(str(i) * (1 + i % 5))
        if len(parts) > 5000:
            check += len("".join(parts))
            parts = parts[2500:]
    d = {}
    for i in range(200000):
        d[i % 50000] = (i, str(i))
        if i % 3 == 0:
            d.pop((i * 7) % 50000, None)
    check += len(d)
    del rows, back, text, root, parts, d
print("python3 ops=%d check=%d" % (scale, check))
