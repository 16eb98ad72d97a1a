"""HTTP plumbing the controllers share: sessions, CSRF secret, dependencies, errors, headers.

It lives beside the controllers because nothing outside the web face uses it.
"""
