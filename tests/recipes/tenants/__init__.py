"""A django-tenants site whose ORIGINAL_BACKEND is django_azure_pg (tests/test_tenants.py)."""
