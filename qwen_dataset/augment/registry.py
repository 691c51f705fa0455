"""Named augmentations and the plugin registry that finds them.

An *augmentation* turns one frame and the labels of that frame into a new frame with labels that
still describe it. Every augmentation implements :class:`Augmentation`; most are a list of
albumentations transforms that :mod:`qwen_dataset.augment.pipelines` wraps into one.

A registry maps a name (``[a-z][a-z0-9_]*``) to a *factory*: a callable that takes keyword
options and returns either an :class:`Augmentation`, one albumentations transform, or a list of
them. Three sources fill it, without editing this project:

* the built-ins (:func:`qwen_dataset.augment.pipelines.builtin_registry`);
* installed packages, through the entry-point group ``qwen_dataset.augmentations``
  (``[project.entry-points."qwen_dataset.augmentations"] my_blur = "my_pkg.augs:strong_blur"``);
  they are imported on first use, so a broken plugin never breaks the other augmentations;
* configuration, as a mapping of name to a dotted path ``"package.module:factory"`` or to
  ``{"factory": "package.module:factory", "options": {...}}``; imported at once, so a typo in the
  configuration fails when the run starts, not halfway through a batch.

A name may be registered once: a plugin or a configuration entry that reuses a name is an error
rather than a silent override of what a dataset's lineage says was applied.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

ENTRY_POINT_GROUP = "qwen_dataset.augmentations"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DOTTED_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclasses.dataclass
class Labels:
    """One annotation of a frame: its task and its payload (a dict, boxes in frame pixels)."""

    task: str
    payload: dict[str, Any]


@dataclasses.dataclass
class AugmentedFrame:
    """What an augmentation returns: the new picture, its labels (same order), and what was drawn."""

    image: np.ndarray
    labels: list[Labels]
    params: dict[str, Any]  # JSON-serialisable description of the random draw, for the lineage


class AugmentationRejected(Exception):
    """This draw cannot produce correct labels for this frame (e.g. a box would be cut).

    Not a bug: the batch helper records the reason and moves on to the next frame.
    """


class UnknownAugmentationError(LookupError):
    """No augmentation is registered under the requested name."""


class PluginError(RuntimeError):
    """A plugin could not be loaded or built; the message names the plugin and the fix."""


@runtime_checkable
class Augmentation(Protocol):
    """A named, seeded transformation of a frame and its labels.

    ``tasks`` lists the annotation tasks whose labels it keeps correct; ``apply`` receives only
    labels of those tasks. The same ``seed`` and the same input must give the same output.
    """

    tasks: frozenset[str]

    def describe(self) -> str:
        """What the augmentation does and with which library version (goes into the lineage)."""
        ...

    def apply(self, image: np.ndarray, labels: Sequence[Labels], seed: int) -> AugmentedFrame: ...


Factory = Callable[..., Any]
Adapter = Callable[[str, Any], Augmentation]


@dataclasses.dataclass
class _Entry:
    name: str
    origin: str  # "builtin", "entry point my_pkg.augs:blur", "config my_pkg.augs:blur"
    load: Callable[[], Factory]
    options: dict[str, Any]


def check_name(name: str) -> str:
    """Names become part of frame ids and file names, so they are kept to ``[a-z][a-z0-9_]*``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"augmentation name {name!r} is not allowed: use lower-case letters, digits and underscores, "
            f"starting with a letter (at most 64 characters), e.g. 'strong_blur'"
        )
    return name


def load_dotted(path: str) -> Any:
    """Import ``"package.module:attribute"`` (the attribute may be dotted: ``module:Class.build``)."""
    if not isinstance(path, str) or not DOTTED_PATH.match(path):
        raise PluginError(
            f"{path!r} is not a dotted path of the form 'package.module:factory' "
            f"(a module path, a colon, then the factory's name)"
        )
    module_name, attribute = path.split(":", 1)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(
            f"cannot import module {module_name!r} for augmentation factory {path!r}: {exc}; "
            f"install the package that provides it or fix the path"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise PluginError(f"module {module_name!r} has no attribute {attribute!r} (from {path!r})") from exc
    if not callable(target):
        raise PluginError(f"{path!r} names a {type(target).__name__}, not a callable factory")
    return target


class AugmentationRegistry:
    """Name -> factory, with instances built once per name and reused.

    ``adapter(name, built)`` turns what a factory returns into an :class:`Augmentation` (the
    pipelines module passes one that wraps albumentations transforms).
    """

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter
        self._entries: dict[str, _Entry] = {}
        self._instances: dict[str, Augmentation] = {}

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        """Where ``name`` came from: builtin, an entry point, or configuration."""
        return self._entry(name).origin

    def augmenter(self, name: str) -> str:
        """What the lineage says was applied: the augmentation's own description and where it came from.

        ``"albumentations==2.0.8: Sharpen [entry point acme_aug:sharpen]"``: a plugin's transform
        names alone do not say which package or configuration supplied them.
        """
        return f"{self.create(name).describe()} [{self.origin(name)}]"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def register(
        self, name: str, factory: Factory, *, options: Mapping[str, Any] | None = None, origin: str = "python"
    ) -> None:
        """Register a factory object under ``name``."""
        if not callable(factory):
            raise TypeError(f"the factory for augmentation {name!r} must be callable, got {type(factory).__name__}")
        self._add(_Entry(check_name(name), origin, lambda: factory, dict(options or {})))

    def register_dotted(self, name: str, path: str, *, options: Mapping[str, Any] | None = None) -> None:
        """Register ``"package.module:factory"`` under ``name``, importing it now."""
        factory = load_dotted(path)
        self._add(_Entry(check_name(name), f"config {path}", lambda: factory, dict(options or {})))

    def register_from_config(self, config: Mapping[str, Any]) -> None:
        """Register every ``name: "pkg.mod:factory"`` or ``name: {factory, options}`` of a mapping."""
        for name, spec in config.items():
            if isinstance(spec, str):
                self.register_dotted(name, spec)
            elif isinstance(spec, Mapping) and isinstance(spec.get("factory"), str):
                unknown = set(spec) - {"factory", "options"}
                if unknown:
                    raise ValueError(
                        f"augmentation {name!r}: unknown keys {sorted(unknown)} (allowed: factory, options)"
                    )
                self.register_dotted(name, spec["factory"], options=spec.get("options") or {})
            else:
                raise ValueError(
                    f"augmentation {name!r}: expected 'package.module:factory' or "
                    f"{{'factory': 'package.module:factory', 'options': {{...}}}}, got {spec!r}"
                )

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register the entry points of ``group`` (loaded lazily); returns the names added."""
        added = []
        for entry_point in sorted(importlib.metadata.entry_points(group=group), key=lambda ep: ep.name):
            self._add(
                _Entry(
                    check_name(entry_point.name),
                    f"entry point {entry_point.value}",
                    _entry_point_loader(entry_point),
                    {},
                )
            )
            added.append(entry_point.name)
        return added

    def create(self, name: str) -> Augmentation:
        """The augmentation registered as ``name`` (built on first use, then reused)."""
        if name not in self._instances:
            entry = self._entry(name)
            factory = entry.load()
            try:
                built = factory(**entry.options)
            except Exception as exc:
                raise PluginError(
                    f"the factory of augmentation {name!r} ({entry.origin}) failed with options "
                    f"{entry.options}: {type(exc).__name__}: {exc}"
                ) from exc
            self._instances[name] = self._adapter(name, built)
        return self._instances[name]

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownAugmentationError(
                f"unknown augmentation {name!r}; available: {', '.join(self.names()) or '(none)'}. "
                f"Add your own through the {ENTRY_POINT_GROUP!r} entry-point group or a "
                f"'package.module:factory' entry in the augmentation configuration"
            ) from None

    def _add(self, entry: _Entry) -> None:
        if entry.name in self._entries:
            raise ValueError(
                f"augmentation {entry.name!r} is already registered ({self._entries[entry.name].origin}); "
                f"{entry.origin} must use another name"
            )
        self._entries[entry.name] = entry


def _entry_point_loader(entry_point: importlib.metadata.EntryPoint) -> Callable[[], Factory]:
    def load() -> Factory:
        try:
            factory = entry_point.load()
        except Exception as exc:
            raise PluginError(
                f"cannot load augmentation plugin {entry_point.name!r} from entry point "
                f"{entry_point.value!r} ({ENTRY_POINT_GROUP}): {type(exc).__name__}: {exc}; "
                f"reinstall or uninstall the package that declares it"
            ) from exc
        if not callable(factory):
            raise PluginError(f"entry point {entry_point.value!r} is a {type(factory).__name__}, not a factory")
        return factory

    return load
