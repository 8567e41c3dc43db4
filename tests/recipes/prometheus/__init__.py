"""ENGINE "tests.recipes.prometheus": django-prometheus metrics with token logins."""
