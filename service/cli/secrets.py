"""`tributary secrets ...`: the encryption key for stored credentials (being built, issue 8)."""
