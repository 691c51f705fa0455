"""Dataset exporters: pure functions from the annotation and frame manifests to files.

Every exporter takes the ``annotations`` manifest (columns of :class:`records.AnnotationRecord`),
the ``frames`` manifest (columns of :class:`records.FrameRecord`), an output path and an
``image_ref`` callable that maps a ``frame_id`` to the image reference written into the dataset
(a relative path, a URL...), and writes its file atomically. What they share lives in
:mod:`.stream`: the one final annotation per frame (:func:`.stream.final_annotations`), streamed
with its frame size and parsed payload, boxes clipped into the frame and checked.

=================== ======================================================================
:mod:`.qwen_jsonl`   Qwen-VL fine-tune conversations (``qwen-vl-finetune``)
:mod:`.messages`     the messages / images layout (LLaMA-Factory, ms-swift, TRL)
:mod:`.coco`         COCO detection (tasks with boxes)
:mod:`.label_studio` Label Studio tasks, labeling configs and the import of Label Studio exports
:mod:`.csv_export`   one CSV row per region, element, action, object, relation, block, event
:mod:`.action_dsl`   the Action Sequence DSL for GUI action paths
:mod:`.bundle`       a dataset folder: pictures plus every format, and ``manifest.json``
=================== ======================================================================
"""
