"""The Settings pages: Connectivity (SMTP Accounts and Email Retrieval, with their forms), Filters and Logs.

Controllers stay thin: `*_form` modules read what a form posts into the use cases' inputs
(an error per field), `present` turns views into plain words, templates live under
web/templates/settings/ and styles in web/static/css/settings.css.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from web.controllers.settings import account, connectivity, filters, folders, logs, oauth, retrieval, smtp

ROUTES: list[ControllerRouterHandler] = [
    *connectivity.ROUTES,
    *retrieval.ROUTES,
    *smtp.ROUTES,
    *oauth.ROUTES,
    *filters.ROUTES,
    *logs.ROUTES,
    *account.ROUTES,
    *folders.ROUTES,
]
