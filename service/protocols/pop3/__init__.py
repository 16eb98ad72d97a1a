"""POP3 retrieval with poplib: the only package that talks POP3 (see session.py).

`client` is the poplib subclass, `transfer` reads responses in bulk and pipelines RETR and DELE,
`session` is one signed-in session, `probe` the Test Connection steps.
"""

from service.protocols.pop3.probe import test_connection
from service.protocols.pop3.session import Listing, Pop3Account, Pop3Session, open_session

__all__ = ["Listing", "Pop3Account", "Pop3Session", "open_session", "test_connection"]
