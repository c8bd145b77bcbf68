"""Unit-tier fixtures: the throwaway PostgreSQL server (see tests/conftest_postgres.py)."""

from tests.conftest_postgres import postgres_url

__all__ = ["postgres_url"]
