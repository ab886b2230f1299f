"""What the scheduler does each tick: controllers that make running workloads match the desired state in SQL.
Each controller works job by job, one short transaction each, so the API is never held up for long."""
