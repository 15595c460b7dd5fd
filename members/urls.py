from django.urls import path

from . import views

app_name = "members"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", views.sign_in, name="login"),
    path("cards/bind/", views.card_bind, name="card_bind"),
    path("cards/<int:card_id>/", views.card_detail, name="card_detail"),
    path("cards/<int:card_id>/freeze/", views.card_freeze, name="card_freeze"),
    path("cards/<int:card_id>/unfreeze/", views.card_unfreeze, name="card_unfreeze"),
    path("accounts/link/", views.account_link, name="account_link"),
    path("bindings/<int:challenge_id>/", views.binding_verify, name="binding_verify"),
    path("consents/", views.consents, name="consents"),
    path("dev/otp/", views.dev_otp, name="dev_otp"),
]
