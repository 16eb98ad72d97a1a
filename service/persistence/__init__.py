"""Storage: SQLModel tables, the engine and its sessions, the key for secrets, the mail store."""
