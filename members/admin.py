from __future__ import annotations

from django.contrib import admin

from core.admin_base import ScopedAdmin

from .models import BankOperator, MemberBank


@admin.register(MemberBank)
class MemberBankAdmin(ScopedAdmin):
    scope_field = "id"
    list_display = ("code", "name_zh", "name_en", "kind", "issuing_licence", "acquiring_licence", "status")
    list_filter = ("kind", "status", "acquiring_licence")
    search_fields = ("code", "name_zh", "name_en")


@admin.register(BankOperator)
class BankOperatorAdmin(ScopedAdmin):
    scope_field = "bank"
    list_display = ("user", "bank", "role", "created_at")
    list_filter = ("bank", "role")
    search_fields = ("user__username", "bank__code")
    autocomplete_fields = ("user",)
