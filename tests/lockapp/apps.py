from django.apps import AppConfig


class LockappConfig(AppConfig):
    name = "tests.lockapp"
    label = "lockapp"
