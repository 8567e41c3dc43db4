"""``ENGINE: "django_azure_pg.postgis"``: GeoDjango's PostGIS backend with Entra token logins."""
