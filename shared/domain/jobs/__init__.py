"""The `jobs` table's one owner: records, a job's life on a worker, and dispatching."""
