"""The customer dashboard's pages for people and keys, mounted at the site root."""

from django.urls import path

from accounts import views, views_keys

urlpatterns = [
    path("signup", views.signup, name="signup"),
    path("signin", views.SignInView.as_view(), name="signin"),
    path("signout", views.SignOutView.as_view(), name="signout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent", views.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("password-reset/complete", views.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    path("dashboard/organization", views.organization_switch, name="dashboard-organization-switch"),
]

urlpatterns += [
    path("dashboard/keys", views_keys.keys, name="dashboard-keys"),
    path("dashboard/keys/<str:key_id>/edit", views_keys.key_edit, name="dashboard-key-edit"),
    path("dashboard/keys/<str:key_id>/reveal", views_keys.key_reveal, name="dashboard-key-reveal"),
    path("dashboard/keys/<str:key_id>/rotate", views_keys.key_rotate, name="dashboard-key-rotate"),
    path("dashboard/keys/<str:key_id>/revoke", views_keys.key_revoke, name="dashboard-key-revoke"),
]

urlpatterns += [
    path("dashboard/members", views.members, name="dashboard-members"),
    path("dashboard/members/<id:membership_id>/role", views.member_role, name="dashboard-member-role"),
    path("dashboard/members/<id:membership_id>/remove", views.member_remove, name="dashboard-member-remove"),
]
