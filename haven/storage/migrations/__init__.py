"""Alembic migrations for Haven's database (shipped inside the package, run by haven.storage.db)."""
