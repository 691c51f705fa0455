"""The default CPU engine for the tasks beyond OCR: classical computer vision on top of RapidOCR.

One module per task (:mod:`.gui`, :mod:`.layout_code`, :mod:`.spatial`, :mod:`.video`), the shape
detectors they share (:mod:`.regions`), and :class:`~.backend.ClassicalBackend`, which runs them
behind the same resource as OCR (``resources.prelabel.RapidOcrResource``).
"""
