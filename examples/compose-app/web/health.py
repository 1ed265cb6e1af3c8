"""The container's health check: exit 0 when `/health` answers 200."""

import os
import sys
import urllib.request

port = os.environ.get("APP_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as e:  # noqa: BLE001 - any failure is "not healthy"
    print(f"not healthy: {e}", file=sys.stderr)
    sys.exit(1)
