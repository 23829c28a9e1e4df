"""Cut the bill PDF's fonts (payments/fonts/) down to the scripts a bill prints.

DejaVu Sans in full is about 740 KB a face, and fpdf2 reads and subsets the
whole file for every PDF (0.15 s a bill). Kept: Latin (with its extended
blocks), Greek, Cyrillic, general punctuation, currency, letter-like symbols
and arrows; dropped: the other scripts, hinting and the layout tables (fpdf2
does not shape text unless asked). That makes a PDF about three times faster.

    .venv/bin/python scripts/subset_fonts.py DIR   # DIR holds DejaVuSans.ttf and DejaVuSans-Bold.ttf

(On Debian, DIR is where the fonts-dejavu-core package puts them.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset

OUT = Path(__file__).resolve().parent.parent / "payments" / "fonts"
FACES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
UNICODES = (
    "U+0020-007E,U+00A0-024F,U+0370-03FF,U+0400-04FF,"
    "U+2000-206F,U+20A0-20CF,U+2100-214F,U+2190-21FF,U+2212,U+FFFD"
)


def main(source: Path) -> None:
    for face in FACES:
        subset.main(
            [
                str(source / face),
                f"--unicodes={UNICODES}",
                "--layout-features=",
                "--no-hinting",
                f"--output-file={OUT / face}",
            ]
        )
        print(f"{face}: {(OUT / face).stat().st_size // 1024} KB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
