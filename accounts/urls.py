from django.urls import path

from accounts import api

urlpatterns = [
    path("auth/token", api.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh", api.TokenRefreshApi.as_view(), name="token-refresh"),
    path("auth/logout", api.LogoutApi.as_view(), name="logout"),
    path("me", api.MeApi.as_view(), name="me"),
    path("me/password", api.PasswordChangeApi.as_view(), name="password-change"),
    path("organizations", api.OrganizationListApi.as_view(), name="organizations"),
    path("organizations/<id:org_id>", api.OrganizationDetailApi.as_view(), name="organization"),
    path("organizations/<id:org_id>/members", api.MemberListApi.as_view(), name="members"),
    path("organizations/<id:org_id>/members/<id:member_id>", api.MemberDetailApi.as_view(), name="member"),
    path("organizations/<id:org_id>/keys", api.KeyListApi.as_view(), name="keys"),
    path("organizations/<id:org_id>/keys/<str:key_id>", api.KeyDetailApi.as_view(), name="key"),
    path("organizations/<id:org_id>/keys/<str:key_id>/rotate", api.KeyRotateApi.as_view(), name="key-rotate"),
    path("organizations/<id:org_id>/keys/<str:key_id>/revoke", api.KeyRevokeApi.as_view(), name="key-revoke"),
    path("organizations/<id:org_id>/keys/<str:key_id>/reveal", api.KeyRevealApi.as_view(), name="key-reveal"),
]
