"""Drives the sample site on local stand-ins for Azure: ``make demo`` and ``make soak``.

Not part of the sample a user copies (that is ``sample_project/``) nor of the
runtime package; it uses the testing kit to stand in for App Service's
identity endpoint and an Entra-enabled Flexible Server.
"""
