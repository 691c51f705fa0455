"""Deterministic sample inbox batch with exact ground truth.

:func:`.batch.generate_sample_batch` writes one inbox batch of every kind of media the pipeline takes
(GUI screenshots in English and Simplified Chinese, a photo with an EXIF rotation, a low-light
screenshot, a 3-page PDF, a short H.264 video) plus the broken and hostile files the ingest stage
must quarantine, and returns a :class:`.truth.SampleTruth` saying what is in each file: every text line
with its tight ink box, every UI element, PDF text in PDF points, video timestamps and scene cuts,
and the quarantine reason expected for each broken file.

The same seed gives byte-identical files (no wall clock, no unseeded randomness), so the truth can
be committed next to tests and the batch regenerated anywhere. Text is rendered with Noto Sans CJK
from the ``cvttf-NotoSansCJK-Regular`` PyPI package, never a system font, so the pixels do not
depend on the machine.

Box convention: see :mod:`.truth`.
"""
