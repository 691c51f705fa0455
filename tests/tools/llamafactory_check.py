"""Run in the LLaMA-Factory venv: load every dataset of a folder's ``dataset_info.json`` with
LLaMA-Factory's own code and put each sample through its Qwen3-VL multimodal plugin.

``get_dataset_list`` -> ``_load_single_dataset`` (load + the sharegpt aligner) ->
``Qwen3VLPlugin.process_messages``, which checks that the ``<image>`` tags match the images and
expands each into the image's vision tokens. The processor is LLaMA-Factory's real Qwen2-VL image
processor with a word-level tokenizer built here (no weights, nothing from a hub); a sample
LLaMA-Factory drops as malformed shows up as a count below the file's line count.

    python llamafactory_check.py <dataset folder>   -> one JSON line
"""

import json
import os
import sys
from types import SimpleNamespace

import llamafactory
from llamafactory.data.loader import _load_single_dataset
from llamafactory.data.mm_plugin import get_mm_plugin
from llamafactory.data.parser import get_dataset_list
from llamafactory.hparams import DataArguments
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.processing_utils import ProcessorMixin

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
_check_class = ProcessorMixin.check_argument_for_proper_class


def _skip_video_check(self, name, arg):
    # Without torchvision (a CUDA build here) the video-processor class registry is a dummy.
    return None if name == "video_processor" else _check_class(self, name, arg)


def processor() -> Qwen3VLProcessor:
    ProcessorMixin.check_argument_for_proper_class = _skip_video_check
    vocab = {token: index for index, token in enumerate([*SPECIAL, "<|video_pad|>", "[UNK]"])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="<|endoftext|>", additional_special_tokens=SPECIAL[1:]
    )
    images = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=256 * 256
    )
    return Qwen3VLProcessor(image_processor=images, tokenizer=fast, video_processor=Qwen3VLVideoProcessor())


def main(root: str) -> None:
    os.chdir("/")  # images resolve against the dataset folder (media_dir), not the working directory
    names = list(json.loads(open(os.path.join(root, "dataset_info.json")).read()))
    model_args = SimpleNamespace(cache_dir=None, hf_hub_token=None, ms_hub_token=None, om_hub_token=None)
    training_args = SimpleNamespace(local_process_index=0, dataloader_num_workers=0)
    plugin = get_mm_plugin(name="qwen3_vl", image_token="<|image_pad|>", video_token="<|video_pad|>")
    vision = processor()
    report = {}
    for name in names:
        data_args = DataArguments(dataset_dir=root, dataset=name)
        attr = get_dataset_list([name], data_args.dataset_dir)[0]
        aligned = _load_single_dataset(attr, model_args, data_args, training_args)
        samples, images, blocks, missing = 0, 0, 0, []
        for example in aligned:
            paths = example["_images"] or []
            missing += [path for path in paths if not os.path.isfile(path)]
            messages = plugin.process_messages(example["_prompt"] + example["_response"], paths, [], [], vision)
            samples += 1
            images += len(paths)
            blocks += sum(message["content"].count("<|vision_start|>") for message in messages)
        report[name] = {"samples": samples, "images": images, "vision_blocks": blocks, "missing": missing}
    print(json.dumps({"version": llamafactory.__version__, "datasets": report}))


if __name__ == "__main__":
    main(sys.argv[1])
