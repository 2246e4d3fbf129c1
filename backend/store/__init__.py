"""The store: its two engines and sessions (db), its tables (models), their migrations
(schema, alembic/, and legacy for SQLite stores from before Alembic), SQL that differs
between SQLite and PostgreSQL (sql), copying a store (copy), and what is kept how long
(retention).
"""
