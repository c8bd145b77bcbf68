"""ASGI-tier fixtures: the throwaway PostgreSQL server for the accounts API tests."""

from tests.conftest_postgres import postgres_url

__all__ = ["postgres_url"]
