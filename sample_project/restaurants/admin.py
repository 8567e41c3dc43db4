from django.contrib import admin

from .models import Restaurant, Review


class ReviewInline(admin.TabularInline):
    model = Review
    extra = 0


@admin.register(Restaurant)
class RestaurantAdmin(admin.ModelAdmin):
    list_display = ["name", "street_address", "created"]
    search_fields = ["name"]
    inlines = [ReviewInline]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["restaurant", "user_name", "rating", "review_date"]
