"""Everything between a video file and a `pixel_values` tensor, in the order a sample flows: sources (`datasets`,
`video_text`) -> frame-index rules (`sampling`) -> decoding (`video_io`, `decoding`) -> transforms (`transforms`,
`finetune_transforms`; the evaluation one shared with the transformers video processor `video_processing_umt`) ->
batching (`collate`); table rows are validated when a dataset is built (`rows`). Also: label files (`labels`), atomic writes (`fileio`), the synthetic dataset (`synthetic`),
batch mixing for fine-tuning (`mixing`) and loaders that interleave other loaders (`loaders`).

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
        "ClipTransform",
        "EvalTransform",
        "SampleTransform",
        "Stage1TrainTransform",
        "Stage2TrainTransform",
        "eval_views",
        "multi_scale_crop_params",
        "normalize",
        "random_resized_crop_params",
        "spatial_crop_boxes",
    ),
    "video_processing_umt": ("UMTVideoProcessor",),
    "processing_umt": ("UMTProcessor",),
    "video_processing_umt_detection": ("UMTDetectionVideoProcessor",),
    "detection": (
        "DetectionCollator",
        "DetectionEvalTransform",
        "DetectionTrainTransform",
        "extend_boxes",
        "jitter_boxes",
        "read_ava_annotations",
        "read_ava_exclusions",
        "read_ava_label_map",
        "read_ava_proposals",
        "records_from_ava",
    ),
    "finetune_transforms": (
        "FinetuneTrainTransform",
        "VideoRandAugment",
        "VideoRandomErasing",
        "parse_rand_augment",
    ),
    "decoding": (
        "DecodeStats",
        "ROW_SKIP_REASONS",
        "ImageClipDecoder",
        "MultiViewClipDecoder",
        "PreloadedVideoClips",
        "TooManyDecodeFailures",
        "VideoClipDecoder",
        "decode_videos",
    ),
    "collate": ("VideoCollator",),
    "datasets": (
        "load_video_records",
        "records_from_files",
        "records_from_folder",
        "records_from_hub",
        "records_from_table",
        "records_from_webdataset",
        "table_columns",
    ),
    "rows": ("BadRowError", "RowCheck"),
    "video_text": (
        "RetrievalAnnotations",
        "VideoTextCollator",
        "load_retrieval_annotations",
        "pre_text",
        "records_from_image_text",
        "records_from_webvid",
    ),
    "labels": ("read_label_file",),
    "fileio": ("atomic_file", "atomic_write_text", "cached_directory", "publish_directory", "staging_path"),
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
