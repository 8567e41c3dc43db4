"""The Django-free core: tokens, credentials, the login, the TLS route (internal).

Nothing here imports Django (tests/test_imports.py checks it); the Django side of the
package sits on top. Internal: free to change between releases (docs/api.md).
"""
