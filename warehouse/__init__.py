"""The DuckDB schema and the code that reads and writes it."""
from pathlib import Path

DEFAULT_PATH = Path(__file__).parent / "warehouse.duckdb"  # here, not in db: the command lines name it without importing DuckDB
