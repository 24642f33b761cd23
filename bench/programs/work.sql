-- A fixed sqlite3 workload for the allocator benchmarks; @rows rows
-- (tools/kalloc-bench sets it: 30000 quick, 300000 full).
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, body TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @rows)
INSERT INTO t SELECT x, (x * 7919) % 100003, printf('name-%08d', (x * 31) % @rows),
       substr('the quick brown fox jumps over the lazy dog and keeps running', 1 + x % 40, 10 + x % 50)
FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(length(body)) FROM t;
SELECT k % 100 AS g, count(*), max(name) FROM t GROUP BY g ORDER BY g LIMIT 3;
UPDATE t SET body = body || body WHERE k % 3 = 0;
DELETE FROM t WHERE k % 5 = 0;
SELECT count(*), sum(length(body)) FROM t;
SELECT a.id, b.id FROM t a JOIN t b ON a.k = b.k AND a.id < b.id ORDER BY a.id LIMIT 3;
SELECT name FROM t ORDER BY body, name LIMIT 3;
