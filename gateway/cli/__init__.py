"""The gateway's subcommands of `tokenplan` (registered by name in `streams.cli`)."""
