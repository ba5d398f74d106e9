"""Everything between a video file and a `pixel_values` tensor: decoding (`video_io`), frame-index rules
(`sampling`), augmentation (`transforms`), the transformers video processor (`video_processing_umt`),
dataset sources (`datasets`), the built-in synthetic dataset (`synthetic`), batch mixing for fine-tuning
(`mixing`) and loaders that interleave other loaders (`loaders`).

The public names below are imported lazily on first use: `python -m processors.synthetic` and DataLoader
workers then do not pay for importing torch / transformers / datasets unless they need them. Importing this
package never imports `modeling_umt` (the dependency runs the other way).
"""

import importlib

_EXPORTS = {
    "video_io": (
        "VideoDecodeError",
        "VideoInfo",
        "VideoReader",
        "available_backends",
        "fetch_url",
        "frames_to_tchw",
        "get_video_info",
        "read_video",
    ),
    "sampling": (
        "SAMPLING_RULES",
        "middle_indices",
        "multi_clip_indices",
        "rand_indices",
        "sample_indices",
        "sparse_test_indices",
        "sparse_train_indices",
        "tsn_indices",
    ),
    "transforms": (
        "IMAGENET_MEAN",
        "IMAGENET_STD",
        "EvalTransform",
        "Stage1TrainTransform",
        "Stage2TrainTransform",
        "multi_scale_crop_params",
        "normalize",
        "random_resized_crop_params",
    ),
    "video_processing_umt": ("UMTVideoProcessor",),
    "finetune_transforms": (
        "FinetuneTrainTransform",
        "MultiViewClipDecoder",
        "PreloadedVideoClips",
        "VideoRandAugment",
        "VideoRandomErasing",
        "parse_rand_augment",
        "read_label_map",
    ),
    "datasets": (
        "DecodeStats",
        "TooManyDecodeFailures",
        "VideoClipDecoder",
        "VideoCollator",
        "decode_videos",
        "load_video_records",
        "records_from_folder",
        "records_from_hub",
        "records_from_table",
        "records_from_webdataset",
    ),
    "synthetic": ("SyntheticConfig", "ensure_synthetic_dataset", "generate_synthetic_dataset"),
    "mixing": ("VideoMixup",),
    "loaders": ("MediaInterleavedLoader",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'processors' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
