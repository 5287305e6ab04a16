"""Storage: the SQLAlchemy models, sessions and migrations that keep every message, ticket and registry row."""
