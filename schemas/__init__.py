"""Output tables: one declaration each, the row builders, and validation."""
