"""Stages 1 and 2: files of an inbox batch become uploads (:mod:`.uploads`: content id, type by magic
bytes, quarantine with a reason), and uploads become frames (:mod:`.frames`: images, PDF pages,
sampled video frames with exact timestamps, low-light enhancement)."""
