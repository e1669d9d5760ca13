"""`tokenplan dashboard`: pages and a JSON API read from the tables `tokenplan projector` fills.

Read-only: it never writes the projection database, so any number of dashboards can
serve one projector's tables (SQLite in WAL mode or PostgreSQL).
"""
