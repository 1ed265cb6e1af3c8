"""The deployment's gate: `python3 web/test_app.py` in a job on the commit."""

import os
import re
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class VersionTest(unittest.TestCase):
    def test_version_is_semver(self):
        version = open(os.path.join(HERE, "VERSION")).read().strip()
        self.assertRegex(version, re.compile(r"^\d+\.\d+\.\d+$"))


if __name__ == "__main__":
    unittest.main()
