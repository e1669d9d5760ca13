"""Stream processing without faust: one ledger-log record -> the core -> state writes and out-records."""
