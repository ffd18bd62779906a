"""arq WorkerSettings and job functions: a few lines each, calling services."""
