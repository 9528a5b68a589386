"""The dataset fingerprint: spacings, shapes, crop to non-zero, foreground intensities and
object statistics per case, summarised for the planner (docs/architecture.md "Fingerprint")."""

from segforge.fingerprint.case import fingerprint_case, intensity_stats, object_stats
from segforge.fingerprint.extract import (
    FINGERPRINT_FILE,
    extract_fingerprint,
    fingerprint_path,
    load_fingerprint,
    save_fingerprint,
    summarize_cases,
)

__all__ = [
    "FINGERPRINT_FILE",
    "extract_fingerprint",
    "fingerprint_case",
    "fingerprint_path",
    "intensity_stats",
    "load_fingerprint",
    "object_stats",
    "save_fingerprint",
    "summarize_cases",
]
