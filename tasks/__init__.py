"""Pipeline stages: each a plain, typed function with a thin Prefect task over it."""
