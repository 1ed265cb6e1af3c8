import unittest

import app


class ServicesTest(unittest.TestCase):
    def test_postgres_answers_on_localhost(self):
        self.assertEqual(app.sql("SELECT 40 + 2"), "42")

    def test_redis_answers_on_localhost(self):
        self.assertEqual(app.redis("PING"), "PONG")

    def test_visits_are_counted_in_both(self):
        app.record_visit("home")
        self.assertEqual(app.record_visit("home"), 2)
        self.assertEqual(app.redis("GET", "visits:home"), "2")


if __name__ == "__main__":
    unittest.main()
