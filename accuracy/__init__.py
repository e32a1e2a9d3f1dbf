"""Metrics only: CLIP score, FID, thresholds, the accuracy-log reader (see the accuracy issue)."""
