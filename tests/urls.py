"""No views: the tests render error reports, which need a URLconf."""

urlpatterns: list[object] = []
