"""The store: its engine and sessions (db), its tables (models), their migrations."""
