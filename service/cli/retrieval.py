"""`tributary retrieval ...`: email retrieval tasks (IMAP and POP3)."""
