"""The local quota cache: allow/deny from memory, fed by the status and keys topics."""
