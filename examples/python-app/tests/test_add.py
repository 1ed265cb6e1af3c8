import sys

sys.path.insert(0, "src")

from app import add  # noqa: E402


def test_add():
    assert add(2, 3) == 5
