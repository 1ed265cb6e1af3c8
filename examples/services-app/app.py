"""A tiny visit counter: totals in PostgreSQL, a hot counter in Redis.

It talks to both through their command-line clients, so the example needs
nothing from a package registry.
"""

import os
import subprocess


def sql(statement: str) -> str:
    """Run one SQL statement with psql; return its unaligned output."""
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def redis(*args: str) -> str:
    """Run one Redis command with redis-cli; return its reply."""
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", os.environ.get("REDIS_PORT", "6379"), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def record_visit(page: str) -> int:
    """Count a visit of `page` in both stores; return the stored total."""
    sql("CREATE TABLE IF NOT EXISTS visits (page text PRIMARY KEY, n integer NOT NULL)")
    sql(
        "INSERT INTO visits VALUES ('%s', 1) "
        "ON CONFLICT (page) DO UPDATE SET n = visits.n + 1" % page.replace("'", "''")
    )
    redis("INCR", "visits:" + page)
    return int(sql("SELECT n FROM visits WHERE page = '%s'" % page.replace("'", "''")))
