"""ClickHouse: schema migrations, row mapping and the batched, idempotent writer."""
