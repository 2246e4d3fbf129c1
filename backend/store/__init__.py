"""The store: its engine and sessions (db), its tables (models), their migrations, and
what is kept how long (retention).
"""
