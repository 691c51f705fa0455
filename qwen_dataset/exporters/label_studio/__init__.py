"""Label Studio: labeling configs, tasks with predictions, and the import of Label Studio exports.

One converter used both ways, so what the review workbench loads into Label Studio and what it
reads back agree by construction:

* :func:`.config.labeling_config` - the XML labeling config of each task type;
* :func:`.export.to_label_studio_tasks` / :func:`.export.export_label_studio` - canonical annotations -> Label
  Studio tasks (``{"data": {...}, "predictions": [{"model_version", "score", "result"}]}``);
* :func:`.importer.from_label_studio_export` - a Label Studio JSON export (tasks with ``annotations``) ->
  annotation records with canonical payloads.

Label Studio's result format (labelstud.io/guide/task_format, /guide/predictions): every
result has ``from_name`` / ``to_name`` / ``type`` naming a control tag of the config, the object
it labels and the control's type; image regions give ``value.x``, ``y``, ``width``, ``height``
in percent of the image (0-100), ``rotation`` in degrees about the top-left corner, and
``original_width`` / ``original_height`` in pixels. Results of per-region controls
(``perRegion="true"``: a region's transcription, label text, choices, number) share the region's
``id``. Relations are ``{"type": "relation", "from_id", "to_id", "direction", "labels"}``.
Video timeline regions (``timelinelabels``) give ``value.ranges`` ``[{"start", "end"}]`` in
1-based frame numbers at the ``<Video frameRate>`` of the config.

Per task (region ids are stable: ``r<i>``, ``e<i>``, ``o<i>``, ``n<i>``, ``v<i>`` = item ``i``):

=============== =============================================================================
ocr             RectangleLabels ``bbox`` (label ``text``) + per-region TextArea
                ``transcription``, TextArea ``language``, Choices ``font_style``; the
                confidence is the rectangle's ``score``; result order = reading order
gui_action      RectangleLabels ``element`` (one label per role) + per-region TextArea
                ``element_text``; TextArea ``instruction``; TextArea ``actions`` holding the
                action sequence in the Action DSL (:mod:`.action_dsl`) with targets naming
                element regions (``#e0``); the requested instruction travels in ``data``
spatial         Rectangle ``object`` + per-region TextArea ``label``, Choices ``occluded``,
                Number ``depth`` (rank in the depth order, 0 = nearest); Relations with the
                seven predicates (one relation per object pair, its labels the predicates)
image_to_code   RectangleLabels ``block`` (one label per layout role) + per-region TextArea
                ``tag``; Relations ``child_of`` from each block to its parent; TextArea ``html``
video_event     Video ``video`` + TimelineLabels ``event`` + per-region TextArea
                ``description``; times are frame-accurate at the config's frame rate
=============== =============================================================================
"""
