"""Haven's database: SQLAlchemy 2 typed models and Alembic migrations.
SQLite under HAVEN_HOME by default, PostgreSQL for multi-instance deployments."""
