"""What users and the scheduler do. Each use case owns its transaction and returns domain values."""
