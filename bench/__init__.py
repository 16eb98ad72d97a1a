"""`make bench`: Tributary against the tools people use for the same job, in one run.

Everything runs on 127.0.0.1 in temporary directories: a private Dovecot (the
tests' own fixture, `tests.fixtures.dovecot`), an aiosmtpd sink, and the app
served by `tributary serve`. `python -m bench --help` lists the options.
"""
