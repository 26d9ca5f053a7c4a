"""Forms of the billing admin's own pages: refunding a charge, a price version, and importing prices."""

from __future__ import annotations

from typing import Any

from django import forms

from billing import price_imports
from billing.models import CREDITS_MAX, Price, input_multiple
from oneflow.lib import money
from oneflow.lib.errors import ServiceError


class RefundForm(forms.Form):
    amount = forms.DecimalField(
        required=False,
        min_value=money.INTERNAL_QUANTUM,
        max_value=CREDITS_MAX,
        decimal_places=money.INTERNAL_PLACES,
        help_text="Credits to give back. Leave empty to refund all that is left.",
    )
    note = forms.CharField(required=False, max_length=300)
    # How many refunds of the request the page showed: a double submit refunds once.
    refunds_seen = forms.IntegerField(widget=forms.HiddenInput, min_value=0)


class PriceForm(forms.ModelForm):
    """A price version; cache-write rates left empty are Anthropic's rule on this form's
    input rate, filled in here so that the page and the audit log show what is saved."""

    class Meta:
        model = Price
        fields = (
            "public_model",
            "effective_from",
            *Price.RATES,
            "request_fee",
            "is_free",
            "note",
            "created_at",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        input_per_1m = cleaned.get("input_per_1m")
        for name, multiple in price_imports.CACHE_WRITE_MULTIPLES.items():
            if cleaned.get(name) is None and input_per_1m is not None and name not in self.errors:
                cleaned[name] = input_multiple(input_per_1m, multiple)
        return cleaned


class PriceFileForm(forms.Form):
    file = forms.FileField(
        help_text=(
            "JSON or CSV with the columns of billing/data/prices.json (model, input, cached_input, output) "
            "and effective_from (ISO date and time with a time zone, or 'now'); request_fee, is_free, "
            "note and the cache-write rates cache_write_5m and cache_write_1h are optional (left out, "
            "1.25x and 2x the input price, Anthropic's rule). Prices are USD per 1M tokens."
        )
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload = cleaned.get("file")
        if upload is not None:
            if upload.size is not None and upload.size > price_imports.MAX_FILE_BYTES:
                raise forms.ValidationError(f"The file is larger than {price_imports.MAX_FILE_BYTES // 1000} kB.")
            try:
                cleaned["rows"] = price_imports.rows_from_file(name=upload.name or "", content=upload.read())
            except ServiceError as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned


class PriceImportConfirmForm(forms.Form):
    # The rows read from the file, carried from the preview to the import, which checks them again.
    rows = forms.JSONField(widget=forms.HiddenInput)

    def clean_rows(self) -> list[Any]:
        rows = self.cleaned_data["rows"]
        if not isinstance(rows, list) or not rows:
            raise forms.ValidationError("The preview's rows are missing; upload the file again.")
        return rows
