"""A bill as a PDF: the bill page's statement (``payments.statements``) laid out on
A4 with fpdf2, a maintained pure-Python library, so neither the server nor the
task consumer needs system packages (a browser engine or pango) to make one.

Nothing is computed here: every amount comes formatted from the statement
with ``config.formats``. The PDF is set in DejaVu Sans, shipped in
``payments/fonts`` with its licence (fpdf2 embeds only the glyphs a bill
uses), cut by ``scripts/subset_fonts.py`` to currency symbols (€, £),
typographic punctuation and the Latin, Greek and Cyrillic scripts, so names
print as they are written. It has no Chinese, Japanese or Korean characters; a character the
font cannot draw is printed as '?' rather than left out without a trace.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace, TTFFont

from config.formats import format_money

from .models import Invoice
from .statements import BillStatement, Read

FONTS = Path(__file__).resolve().parent / "fonts"
FAMILY = "DejaVuSans"


WIDTHS = (86, 30, 34, 30)  # what, quantity, price, amount (mm; A4 less 15 mm margins)
# A table row: its four cells, and whether it is in bold.
Row = tuple[tuple[str, str, str, str], bool]


@functools.cache
def _drawable() -> frozenset[int]:
    """The characters both the regular and the bold font can draw."""
    pdf = FPDF()
    _fonts_add(pdf)
    fonts = [f for f in pdf.fonts.values() if isinstance(f, TTFFont)]
    return frozenset.intersection(*(frozenset(f.cmap) for f in fonts))


def _fonts_add(pdf: FPDF) -> None:
    pdf.add_font(FAMILY, "", FONTS / "DejaVuSans.ttf")
    pdf.add_font(FAMILY, "B", FONTS / "DejaVuSans-Bold.ttf")


def _text(value: object) -> str:
    drawable = _drawable()
    return "".join(c if ord(c) in drawable or c in "\n\r\t" else "?" for c in str(value))


def _when(read: Read | None) -> str:
    if read is None:
        return "-"
    return f"{read.register_wh / 1000:,.3f} kWh at {read.taken_at:%d %b %Y %H:%M} ({read.quality})"


class _Bill(FPDF):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _fonts_add(self)

    def line_of(self, text: str, *, size: int = 10, bold: bool = False, height: float = 5) -> None:
        self.set_font(FAMILY, "B" if bold else "", size)
        self.multi_cell(0, height, _text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def rows(self, rows: list[Row]) -> None:
        """A table of (cells, bold) rows, long texts wrapped within their column."""
        self.set_font(FAMILY, "", 9)
        with self.table(
            col_widths=WIDTHS,
            width=sum(WIDTHS),
            align="LEFT",
            text_align=("LEFT", "LEFT", "LEFT", "RIGHT"),
            first_row_as_headings=False,
            borders_layout="HORIZONTAL_LINES",
            line_height=5,
        ) as table:
            for cells, bold in rows:
                style = FontFace(emphasis="BOLD") if bold else None
                table.row([_text(cell) for cell in cells], style=style)


def bill_pdf_filename(invoice: Invoice) -> str:
    return f"bill-{invoice.number}.pdf"


def bill_pdf(statement: BillStatement) -> bytes:
    """The bill as PDF bytes."""
    s = statement
    inv = s.invoice

    tz = zoneinfo.ZoneInfo(s.tz)

    def money(minor: int) -> str:
        return format_money(minor, inv.currency)

    def day(when: datetime) -> str:
        return f"{timezone.localtime(when, tz):%d %b %Y}"

    pdf = _Bill(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(_text(f"Bill {inv.number}"))
    pdf.set_author(_text(s.landlord_name))
    pdf.add_page()
    pdf.line_of(s.landlord_name, size=12, bold=True)
    if s.landlord_address:
        pdf.line_of(s.landlord_address, size=9)
    pdf.ln(3)
    pdf.line_of(f"Bill for {inv.period_start:%B %Y}", size=16, bold=True, height=8)
    pdf.line_of(f"No. {inv.number} - issued {day(inv.issued_at)}")
    pdf.line_of(f"To: {s.tenant_name}")
    pdf.line_of(f"{s.property_name} - {s.unit_name}")
    pdf.line_of(
        f"Period {inv.period_start:%d %b %Y} to {inv.period_end:%d %b %Y} (not included)"
        f" - {inv.energy_wh / 1000:,.3f} kWh used"
    )
    if inv.due_date:
        pdf.line_of(f"Due {inv.due_date:%d %b %Y}", bold=True)
    if s.postpaid_from:
        pdf.line_of(
            f"Postpaid from {s.postpaid_from:%d %b %Y %H:%M}: what was used before then was "
            "paid from prepaid credit and is not on this bill.",
            size=9,
        )
    if s.reads:
        pdf.ln(3)
        pdf.line_of("Meter readings", size=11, bold=True)
        for reads in s.reads:
            pdf.line_of(f"Meter {reads.serial}", size=9, bold=True)
            pdf.line_of(f"Opening: {_when(reads.opening)}", size=9)
            pdf.line_of(f"Closing: {_when(reads.closing)}", size=9)
            if reads.used_wh is not None:
                pdf.line_of(f"Difference: {reads.used_wh / 1000:,.3f} kWh", size=9)
    pdf.ln(3)
    rows: list[Row] = [(("What", "Quantity", "Price", "Amount"), True)]
    rows += [
        ((line.description, line.quantity, line.unit_price, money(line.amount_minor)), False)
        for line in s.lines
    ]
    rows.append((("Total", "", "", money(inv.total_minor)), True))
    if inv.tax_inclusive and inv.tax_minor:
        rows.append((("of which tax", "", "", money(inv.tax_minor)), False))
    rows.append((("Paid", "", "", money(s.paid_minor)), False))
    rows.append((("Outstanding", "", "", money(s.outstanding_minor)), True))
    pdf.rows(rows)
    pdf.ln(3)
    due = f" by {inv.due_date:%d %b %Y}" if inv.due_date else ""
    pdf.line_of(f"Amount due{due}: {money(s.amount_due_minor)}", size=12, bold=True, height=7)
    if s.applied:
        pdf.ln(2)
        pdf.line_of("Payments applied", size=11, bold=True)
        for row in s.applied:
            whole = row.payment.amount_minor
            of = f" of {money(whole)}" if row.amount_minor != whole else ""
            pdf.line_of(
                f"{day(row.payment.created_at)} - {row.payment.get_purpose_display()} - "
                f"{money(row.amount_minor)}{of}",
                size=9,
            )
    notes = _notes(s, money, day)
    if notes:
        pdf.ln(2)
        for note in notes:
            pdf.line_of(note, size=9)
    return bytes(pdf.output())


def _notes(
    s: BillStatement, money: Callable[[int], str], day: Callable[[datetime], str]
) -> list[str]:
    """The bill page's notices, in the same words."""
    inv = s.invoice
    notes = []
    if s.turned_prepaid and s.outstanding_minor > 0:
        notes.append(
            "This unit turned prepaid after this bill: top-ups pay what is still owed on it "
            "first, then add credit."
        )
    if s.carried_debt_minor:
        notes.append(
            f"{money(s.carried_debt_minor)} is still owed from before this unit turned "
            "postpaid. Payments go to it first, then to the bills."
        )
    if s.credit_carried_minor:
        notes.append(f"{money(s.credit_carried_minor)} of credit is carried to the next bill.")
    if inv.late_fee_minor and inv.late_fee_at:
        where = (
            f"it is on the bill for {s.fee_billed_on.period_start:%B %Y}"
            if s.fee_billed_on
            else "it will be on the next bill"
        )
        notes.append(
            f"A late fee of {money(inv.late_fee_minor)} was charged on "
            f"{day(inv.late_fee_at)} because this bill was not paid in time; {where}."
        )
    if inv.held_wh:
        reason = f": {inv.held_reason}" if inv.held_reason else ""
        notes.append(
            f"{inv.held_wh / 1000:,.3f} kWh in this period could not be priced and is not on "
            f"this bill{reason}. Once it is priced it is charged on a later bill, as energy "
            "of earlier periods."
        )
    return notes
