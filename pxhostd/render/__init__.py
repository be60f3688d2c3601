"""Rendering unit files from templates, with systemd escaping of every value.

Import the modules themselves (`pxhostd.render.units`, `.verify`, `.names`): this package
re-exports nothing, so that the light `names` module never pulls in jinja2.
"""
