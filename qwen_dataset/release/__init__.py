"""Versioned, immutable dataset releases assembled from the batches that passed their gates.

:func:`.assemble.assemble_release` writes ``<releases_root>/<version>/``::

    frames.parquet                 every frame, with ``split`` and ``image`` (path in the release)
    annotations.parquet            the final annotations (status ok), with ``split``
    augmentation_lineage.parquet   what produced each augmented annotation (when there are any)
    splits.json                    train / val / test: upload ids and frame ids
    images/<frame_id>.png|jpg      the pictures (hard links to the blobs; copies across file systems)
    ...                            the dataset formats, written by the caller's ``write_formats``
    README.md                      the dataset card
    release.json                   version, digest, counts, and sha256 + size of every file

``version`` is the first 16 hex digits of a sha256 over the canonical manifests (rows sorted by id,
columns by name, values as JSON) and the card's inputs (name, split ratios and salt, QC figures,
batch names). The same inputs therefore give the same version, and a changed label, frame, split
or QC figure gives a new one.

Immutable: the release is built in a hidden staging folder beside its final place, made read-only
(files 0444, folders 0555) and renamed into place in one step, so a reader never sees half a
release. When ``<version>/`` already exists, it is checked instead of rewritten: same digest and
the same files (with the recorded sizes, or checksums when asked) -> it is returned as it is;
anything else raises :class:`.publish.ReleaseConflictError`, since a release that changed under its
version is not one anybody should train on.

Images are hard-linked, so the linked blobs become read-only too; blobs are content-addressed and
never rewritten in place, so that only makes them safer.

Splits are by upload (:func:`.splits.split_for_upload`): every frame of one video, every page of one PDF,
and every augmented copy of a frame (which keeps its source's ``upload_id``) land in the same split.
"""
