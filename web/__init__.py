"""Tributary's HTTP face: the Litestar app, its controllers, templates and static assets."""
