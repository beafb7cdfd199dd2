"""pgqueuer's side of the bench: its consumers (`consumer`, run by `pgq run`) and its client
(`client`: ENQUEUE, the DRAIN's queueing, LATENCY's enqueues). They run under the peer's
virtual environment (pgqueuer and asyncpg), with the libpq variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE) pointing at the peer's database; they import nothing of the project.
"""
