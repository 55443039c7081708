"""Tests are a package (`tests.*`): pytest puts the repository root on sys.path,
so `training`, `server` and `tests.support` import as everywhere else."""
