from django.apps import AppConfig


class RunnerAppConfig(AppConfig):
    name = "tests.runner_app"
    label = "runner_app"
