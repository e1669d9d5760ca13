"""Local-run helpers: the broker (`local-kafka`), worker subprocesses (`localrun`), `make run`."""
