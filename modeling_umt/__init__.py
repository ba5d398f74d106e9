"""UMT (Unmasked Teacher) for 🤗 Transformers.

Importing this package registers the UMT classes with transformers' Auto classes
(`AutoConfig`, `AutoModel`, `AutoModelForVideoClassification`, `AutoVideoProcessor`, `AutoProcessor`), so
`AutoModel.from_pretrained(saved_dir)` returns a `UMTVideoModel`, and the pipeline task
`zero-shot-video-classification` (`UMTZeroShotVideoClassificationPipeline`).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMultipleChoice,
    AutoModelForPreTraining,
    AutoModelForVideoClassification,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_umt import UMT_PRESETS, UMTConfig, UMTDetectionConfig
from .configuration_umt_qa import UMTQAConfig
from .configuration_umt_retrieval import UMTRetrievalConfig
from .alignment import UMTAlignmentHeads
from .loading import load_video_classifier, select_label_subset
from .losses import uta_loss
from .modeling_umt import (
    UMTForPreTraining,
    UMTForPreTrainingOutput,
    UMTForVideoClassification,
    UMTFrameLevelClassifier,
    UMTIntermediatesOutput,
    UMTPreTrainedModel,
    UMTVideoModel,
)
from .modeling_umt_detection import UMTActionDetectionOutput, UMTForVideoActionDetection
from .modeling_umt_mc import UMTForVideoMultipleChoice
from .modeling_umt_qa import UMTForVideoQuestionAnswering, UMTVideoQAOutput
from .modeling_umt_retrieval import UMTForVideoTextRetrieval, UMTVideoTextOutput
from .teacher_classifier import TeacherFrameLevelClassifier
from .zero_shot import UMTZeroShotVideoClassificationPipeline

AutoConfig.register("umt", UMTConfig, exist_ok=True)
AutoModel.register(UMTConfig, UMTVideoModel, exist_ok=True)
AutoModelForVideoClassification.register(UMTConfig, UMTForVideoClassification, exist_ok=True)
AutoModelForPreTraining.register(UMTConfig, UMTForPreTraining, exist_ok=True)
AutoConfig.register("umt_retrieval", UMTRetrievalConfig, exist_ok=True)
# transformers has no auto class for spatio-temporal action detection: the detector has its own model type, so
# `AutoModel` returns it (as `UMTRetrievalConfig` does for retrieval).
AutoConfig.register("umt_detection", UMTDetectionConfig, exist_ok=True)
AutoModel.register(UMTDetectionConfig, UMTForVideoActionDetection, exist_ok=True)
AutoModel.register(UMTRetrievalConfig, UMTForVideoTextRetrieval, exist_ok=True)
AutoConfig.register("umt_qa", UMTQAConfig, exist_ok=True)
AutoModel.register(UMTQAConfig, UMTForVideoQuestionAnswering, exist_ok=True)
AutoModelForMultipleChoice.register(UMTRetrievalConfig, UMTForVideoMultipleChoice, exist_ok=True)

PIPELINE_REGISTRY.register_pipeline(
    "zero-shot-video-classification", pipeline_class=UMTZeroShotVideoClassificationPipeline, pt_model=AutoModel,
    type="multimodal",
)

# `auto_map` in saved configs, so a saved directory also loads through remote code on the Hub.
UMTConfig.register_for_auto_class()
UMTVideoModel.register_for_auto_class("AutoModel")
UMTForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
UMTForPreTraining.register_for_auto_class("AutoModelForPreTraining")
UMTRetrievalConfig.register_for_auto_class()
UMTForVideoTextRetrieval.register_for_auto_class("AutoModel")
UMTDetectionConfig.register_for_auto_class()
UMTForVideoActionDetection.register_for_auto_class("AutoModel")
UMTQAConfig.register_for_auto_class()
UMTForVideoQuestionAnswering.register_for_auto_class("AutoModel")
UMTForVideoMultipleChoice.register_for_auto_class("AutoModelForMultipleChoice")
# Its config is the tower's CLIPVisionConfig (not registered to it: a CLIP tower stays a CLIP tower); the auto_map
# alone sends AutoModelForVideoClassification to it, with trust_remote_code=True.
TeacherFrameLevelClassifier.register_for_auto_class("AutoModelForVideoClassification")


def _register_video_processor() -> None:
    """Register UMTVideoProcessor (every UMT model), UMTProcessor (video-text models) and the detection video processor
    with AutoVideoProcessor and AutoProcessor when the processors package is importable."""
    try:
        from processors.processing_umt import UMTProcessor
        from processors.video_processing_umt import UMTVideoProcessor
        from processors.video_processing_umt_detection import UMTDetectionVideoProcessor
    except ImportError:  # the processors package is optional for model-only use
        return
    from transformers import AutoProcessor, AutoVideoProcessor

    AutoVideoProcessor.register(UMTConfig, video_processor_class=UMTVideoProcessor, exist_ok=True)
    AutoVideoProcessor.register(UMTRetrievalConfig, video_processor_class=UMTVideoProcessor, exist_ok=True)
    AutoProcessor.register(UMTRetrievalConfig, UMTProcessor, exist_ok=True)
    AutoVideoProcessor.register(UMTDetectionConfig, video_processor_class=UMTDetectionVideoProcessor, exist_ok=True)


_register_video_processor()

__all__ = [
    "UMT_PRESETS",
    "UMTConfig",
    "UMTPreTrainedModel",
    "UMTVideoModel",
    "UMTForVideoClassification",
    "UMTFrameLevelClassifier",
    "UMTForPreTraining",
    "UMTForPreTrainingOutput",
    "UMTIntermediatesOutput",
    "UMTAlignmentHeads",
    "uta_loss",
    "load_video_classifier",
    "select_label_subset",
    "UMTRetrievalConfig",
    "UMTForVideoTextRetrieval",
    "UMTVideoTextOutput",
    "UMTZeroShotVideoClassificationPipeline",
    "UMTDetectionConfig",
    "UMTForVideoActionDetection",
    "UMTActionDetectionOutput",
    "UMTQAConfig",
    "UMTForVideoQuestionAnswering",
    "UMTVideoQAOutput",
    "UMTForVideoMultipleChoice",
    "TeacherFrameLevelClassifier",
]
