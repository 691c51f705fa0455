"""Quality metrics of the QC report (pure domain code, no Dagster).

* :mod:`~qwen_dataset.quality.agreement`: IoU consistency of double-blind annotations
  (Hungarian box matching, mean IoU, precision/recall/F1 at IoU 0.5, label mismatches).
  Target: mean IoU > 0.85.
* :mod:`~qwen_dataset.quality.ocr_accuracy`: OCR accuracy = 1 - CER over NFKC-normalised text,
  annotator vs annotator and AI vs final, per language. Target: > 95 %.
* :mod:`~qwen_dataset.quality.action_paths`: share of GUI action sequences that replay on their
  element tree, with a failure code for the others. Target: > 90 %.

Each module's docstring holds the exact definition of its figures. Import from the modules
(``from qwen_dataset.quality.agreement import agreement``): the package re-exports nothing, so
the module ``agreement`` is never shadowed by its function of the same name.
"""
