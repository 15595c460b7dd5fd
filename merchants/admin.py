from __future__ import annotations

from django.contrib import admin

from core.admin_base import ScopedAdmin

from .models import Merchant


@admin.register(Merchant)
class MerchantAdmin(ScopedAdmin):
    scope_field = "sponsor_bank"
    list_display = ("code", "display_name", "legal_name", "category_code", "spend_category", "sponsor_bank", "status")
    list_filter = ("status", "spend_category", "sponsor_bank")
    search_fields = ("code", "display_name", "legal_name")
