"""HTTP plumbing the controllers share: sessions, CSRF secret, dependencies, errors, headers."""
