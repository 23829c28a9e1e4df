"""The rows behind the home page's numbers (bills, arrears, ledger postings) and
the CSV exports. Read-only pages for every member (``Action.VIEW``); an export
is audit-logged with who took it and its range (docs/roles.md)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.htmx import form_error_status
from payments.arrears import BUCKET_KEYS, BUCKETS, landlord_arrears

from . import access, reports
from .audit import audit_record
from .forms_reports import EXPORT_KINDS, EXPORT_MAX_DAYS, DateRangeForm, ExportForm

PAGE_SIZE = 50


def _range(request: HttpRequest, landlord_id: int) -> tuple[DateRangeForm, str, tuple]:
    """The page's date range (an invalid one is shown with its error and ignored)."""
    form = DateRangeForm(request.GET or None)
    tz = reports.landlord_zone(landlord_id=landlord_id)
    if form.is_bound and form.is_valid():
        first, last = form.range()
        return form, tz, reports.day_bounds(first, last, tz)
    return form, tz, (None, None)


@login_required
@require_GET
def landlord_bills(request: HttpRequest) -> HttpResponse:
    """Bills issued in a range, with what is still owed on each."""
    landlord = access.landlord_for_user(user=request.user)
    form, tz, (start, end) = _range(request, landlord.pk)
    bills = reports.bills_in_range(landlord_id=landlord.pk, start=start, end=end)
    page = Paginator(bills, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "landlord/bills.html",
        {"landlord": landlord, "form": form, "tz": tz, "page": page, "query": _query(request)},
        status=form_error_status(request) if form.errors else 200,
    )


@login_required
@require_GET
def landlord_arrears_page(request: HttpRequest) -> HttpResponse:
    """Arrears per tenancy in the ageing buckets; ``?bucket=`` those with something in one,
    and the bills behind it."""
    landlord = access.landlord_for_user(user=request.user)
    ageing = landlord_arrears(landlord_id=landlord.pk)
    bucket = request.GET.get("bucket", "")
    if bucket not in BUCKET_KEYS:
        bucket = ""
    rows = [r for r in ageing.tenancies if not bucket or r.buckets[bucket]]
    tenancies = reports.tenancies_by_id(landlord_id=landlord.pk, ids=[r.tenancy_id for r in rows])
    bills = (
        list(reports.bills_by_id(landlord_id=landlord.pk, ids=ageing.invoice_ids[bucket]))
        if bucket
        else []
    )
    return render(
        request,
        "landlord/arrears.html",
        {
            "landlord": landlord,
            "ageing": ageing,
            "buckets": BUCKETS,
            "bucket": bucket,
            "bucket_label": dict((k, label) for k, label, *_ in BUCKETS).get(bucket, ""),
            "rows": [(r, tenancies.get(r.tenancy_id)) for r in rows],
            "bills": bills,
        },
    )


@login_required
@require_GET
def landlord_ledger(request: HttpRequest) -> HttpResponse:
    """Ledger postings in a range; ``?account=revenue`` those to or from one account kind."""
    landlord = access.landlord_for_user(user=request.user)
    form, tz, (start, end) = _range(request, landlord.pk)
    account = request.GET.get("account", "")
    if account not in reports.ACCOUNT_KINDS:
        account = ""
    postings = reports.postings_in_range(
        landlord_id=landlord.pk, start=start, end=end, account=account
    )
    page = Paginator(postings, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "landlord/ledger.html",
        {
            "landlord": landlord,
            "form": form,
            "tz": tz,
            "page": page,
            "account": account,
            "account_label": reports.ACCOUNT_KINDS.get(account, ""),
            "account_field": [("account", account)] if account else [],
            "accounts": reports.ACCOUNT_KINDS,
            "query": _query(request),
        },
        status=form_error_status(request) if form.errors else 200,
    )


def _query(request: HttpRequest) -> str:
    """The page's filters, for its pager links."""
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


@login_required
@require_GET
def landlord_exports(request: HttpRequest) -> HttpResponseBase:
    """The export form; with a kind and a valid range, the CSV itself, streamed."""
    landlord = access.landlord_for_user(user=request.user)
    tz = reports.landlord_zone(landlord_id=landlord.pk)
    form = ExportForm(request.GET or None)
    if not form.is_bound or not form.is_valid():
        return render(
            request,
            "landlord/exports.html",
            {
                "landlord": landlord,
                "form": form,
                "tz": tz,
                "kinds": EXPORT_KINDS,
                "max_days": EXPORT_MAX_DAYS,
            },
            status=form_error_status(request) if form.is_bound else 200,
        )
    kind = form.cleaned_data["kind"]
    first, last = form.range()
    assert first is not None and last is not None  # required fields
    start, end = reports.day_bounds(first, last, tz)
    assert start is not None and end is not None
    audit_record(
        landlord_id=landlord.pk,
        action="export",
        actor_id=request.user.pk,
        subject=f"{kind} CSV",
        reason=f"{first:%Y-%m-%d} to {last:%Y-%m-%d} ({tz})",
        data={"kind": kind, "from": first.isoformat(), "to": last.isoformat(), "tz": tz},
    )
    response = StreamingHttpResponse(
        reports.export_lines(kind=kind, landlord_id=landlord.pk, start=start, end=end),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{kind}-{first:%Y-%m-%d}-to-{last:%Y-%m-%d}.csv"'
    )
    return response
