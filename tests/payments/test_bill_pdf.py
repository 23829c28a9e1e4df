"""A bill as a PDF download and as the email sent once it is issued."""

from __future__ import annotations

import dataclasses
import re
import zlib
from datetime import UTC, date, datetime

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.test import Client

from payments import billing
from payments.bill_emails import bills_email_issued
from payments.bill_pdf import bill_pdf
from payments.invoicing import ROUNDING_LINE
from payments.models import Invoice, InvoiceLine
from payments.statements import bill_statement
from tests.mailboxes import DOWN

from .test_billing import _pay, _record

BILLED = datetime(2026, 2, 1, 9, tzinfo=UTC)


def _streams(pdf: bytes) -> dict[int, bytes]:
    """Each numbered object's stream, inflated."""
    found = {}
    for number, body in re.findall(rb"(?:^|\n)(\d+) 0 obj(.*?)endobj", pdf, re.S):
        stream = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S)
        if stream is None:
            continue
        try:
            found[int(number)] = zlib.decompress(stream.group(1))
        except zlib.error:
            found[int(number)] = stream.group(1)
    return found


def _to_unicode(pdf: bytes, streams: dict[int, bytes]) -> dict[bytes, dict[bytes, str]]:
    """Per font resource name (b"F1"), its ToUnicode map: glyph code -> text.

    An embedded font is a subset whose glyph codes mean nothing by themselves;
    the map the PDF carries for it is what a reader (copy, search) goes by.
    """
    cmaps: dict[bytes, dict[bytes, str]] = {}
    for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", pdf):
        font = re.search(rb"\n" + ref + rb" 0 obj(.*?)endobj", pdf, re.S)
        assert font is not None
        descendant = re.search(rb"/ToUnicode (\d+) 0 R", font.group(1))
        codes: dict[bytes, str] = {}
        if descendant is not None:
            cmap = streams[int(descendant.group(1))]
            for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
                for code, text in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                    codes[bytes.fromhex(code.decode())] = bytes.fromhex(text.decode()).decode(
                        "utf-16-be"
                    )
        cmaps[name] = codes
    return cmaps


def _text(pdf: bytes) -> str:
    """The text shown on the pages, read as a PDF reader reads it: each string of
    the content streams decoded through its font's ToUnicode map, one per line."""
    streams = _streams(pdf)
    cmaps = _to_unicode(pdf, streams)
    shown = []
    for content in streams.values():
        if b"BT" not in content:
            continue
        font = b""
        for op in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\)\s*Tj", content, re.S):
            if op.group(1):
                font = op.group(1)
                continue
            raw = re.sub(rb"\\([nrtbf()\\]|[0-7]{1,3})", _unescape, op.group(2))
            codes = cmaps[font]
            if codes:
                shown.append("".join(codes[raw[i : i + 2]] for i in range(0, len(raw), 2)))
            else:
                shown.append(raw.decode("latin-1"))
    return "\n".join(shown)


def _unescape(match: re.Match[bytes]) -> bytes:
    escaped = match.group(1)
    if escaped[:1].isdigit():
        return bytes([int(escaped, 8)])
    return {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}.get(escaped, escaped)


def _january_bill(world) -> Invoice:
    """20 kWh at 30p on 5 Jan 2026: a 600p bill, 200p of it paid."""
    tenancy = world.postpaid_tenancy
    tenancy.start_date = date(2026, 1, 1)
    tenancy.save()
    _record(
        world.postpaid_device.device,
        (1, 0, 1000),
        (2, 60, 21_000),
        base=datetime(2026, 1, 5, 1, tzinfo=UTC),
    )
    bill = billing.invoice_issue(tenancy=tenancy, period_start=date(2026, 1, 1), now=BILLED)
    _pay(tenancy, 200)
    return bill


def _get(user, bill: Invoice):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client.get(f"/payments/invoices/{bill.pk}/pdf/")


def test_the_pdf_holds_what_the_bill_page_says(personas):
    world = personas.a
    bill = _january_bill(world)
    assert bill.total_minor == 600 and bill.due_date is not None
    resp = _get(world.postpaid_tenant, bill)
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/pdf"
    assert f'filename="bill-{bill.number}.pdf"' in resp["Content-Disposition"]
    assert resp.content.startswith(b"%PDF-")
    text = _text(resp.content)
    due = f"{bill.due_date:%d %b %Y}"
    assert f"Amount due by {due}: £4.00" in text
    assert f"Due {due}" in text
    assert "Bill for January 2026" in text
    assert world.landlord.name in text
    assert "Period 01 Jan 2026 to 01 Feb 2026 (not included) - 20.000 kWh used" in text
    # the meter reads, with their times and quality
    assert "Opening: 1.000 kWh at 05 Jan 2026 01:00 (Actual)" in text
    assert "Closing: 21.000 kWh at 05 Jan 2026 02:00 (Actual)" in text
    assert "Difference: 20.000 kWh" in text
    for line in bill.lines.all():
        assert line.description in text
    assert "£6.00" in text  # the total
    assert "£2.00" in text  # paid
    # the landlord's members see the same bill
    assert _get(world.staff, bill).status_code == 200
    page = Client()
    page.force_login(world.postpaid_tenant)
    body = page.get(f"/payments/invoices/{bill.pk}/").content.decode()
    assert 'data-testid="invoice-amount-due">£4.00' in body
    assert 'data-testid="invoice-reads"' in body
    assert f"/payments/invoices/{bill.pk}/pdf/" in body


def test_the_pdf_is_a_404_to_anyone_else(personas):
    world = personas.a
    bill = _january_bill(world)
    other = personas.b
    assert _get(other.staff, bill).status_code == 404
    assert _get(other.postpaid_tenant, bill).status_code == 404
    assert _get(world.prepaid_tenant, bill).status_code == 404
    assert _get(None, bill).status_code == 302  # to the login page
    assert _get(personas.admin, bill).status_code == 200


def test_an_issued_bill_is_emailed_once_with_its_pdf(personas):
    world = personas.a
    bill = _january_bill(world)
    world.postpaid_tenant.email = "tenant@example.com"
    world.postpaid_tenant.save()
    # when the sweep runs (twice)
    assert bills_email_issued() == 1
    assert bills_email_issued() == 0
    [message] = mail.outbox
    assert message.to == ["tenant@example.com"]
    assert message.subject == "Your bill for January 2026: £4.00 to pay"
    assert f"by {bill.due_date:%d %b %Y}" in message.body
    [(name, content, mimetype)] = message.attachments
    assert name == f"bill-{bill.number}.pdf" and mimetype == "application/pdf"
    assert "Amount due by" in _text(content) and "£4.00" in _text(content)
    bill.refresh_from_db()
    assert bill.emailed_at is not None


def test_a_bill_of_a_tenant_without_an_email_address_is_not_tried_again(personas):
    world = personas.a
    bill = _january_bill(world)
    world.postpaid_tenant.email = ""
    world.postpaid_tenant.save()
    assert bills_email_issued() == 0
    assert mail.outbox == []
    bill.refresh_from_db()
    assert bill.emailed_at is not None


def test_a_long_line_wraps_within_its_column_and_keeps_every_word(personas):
    world = personas.a
    bill = _january_bill(world)
    statement = bill_statement(invoice=bill)
    long = InvoiceLine(
        invoice=bill, position=99, kind="rounding", description=ROUNDING_LINE, amount_minor=1
    )
    pdf = bill_pdf(dataclasses.replace(statement, lines=[*statement.lines, long]))
    shown = _text(pdf).split("\n")
    # more than one line of the table holds it, and together they say all of it
    assert ROUNDING_LINE not in shown
    assert ROUNDING_LINE in " ".join(shown)


class WatchingBackend(EmailBackend):
    """The test mail box, noting whether a transaction was open for each send."""

    in_transaction: list[bool] = []

    def send_messages(self, messages):
        WatchingBackend.in_transaction.append(connection.in_atomic_block)
        return super().send_messages(messages)


def test_a_failed_bill_email_is_taken_back_and_sent_at_the_next_sweep(personas, settings):
    world = personas.a
    bill = _january_bill(world)
    world.postpaid_tenant.email = "tenant@example.com"
    world.postpaid_tenant.save()
    settings.MAILERS = {"default": {"BACKEND": DOWN}}
    assert bills_email_issued() == 0
    bill.refresh_from_db()
    assert bill.emailed_at is None
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    assert bills_email_issued() == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_a_bill_email_is_sent_with_no_transaction_open(tpersonas, settings):
    world = tpersonas.a
    _january_bill(world)
    world.postpaid_tenant.email = "tenant@example.com"
    world.postpaid_tenant.save()
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.WatchingBackend"}}
    WatchingBackend.in_transaction = []
    assert bills_email_issued() == 1
    assert WatchingBackend.in_transaction == [False]


def test_the_pdf_prints_currency_symbols_and_names_in_any_script(personas):
    # given a bill in euros, to a tenant whose name is not in Latin-1
    world = personas.a
    bill = _january_bill(world)
    bill.currency = "EUR"
    statement = dataclasses.replace(
        bill_statement(invoice=bill),
        tenant_name="Zoë Łukasz Ζωή Иванова 李",
        landlord_name="Énergie & Wärme £ Ltd",
    )
    # when it is printed
    text = _text(bill_pdf(statement))
    # then the symbols and names are the text of the page, as written
    due = f"{bill.due_date:%d %b %Y}"
    assert f"Amount due by {due}: €4.00" in text
    assert "€6.00" in text and "EUR" not in text
    assert "Énergie & Wärme £ Ltd" in text
    # the font has no Chinese characters: a '?' shows one was there
    assert "To: Zoë Łukasz Ζωή Иванова ?" in text
