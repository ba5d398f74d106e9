"""UMT (Unmasked Teacher) for 🤗 Transformers.

Importing this package registers the UMT classes with transformers' Auto classes
(`AutoConfig`, `AutoModel`, `AutoModelForVideoClassification`, `AutoVideoProcessor`), so
`AutoModel.from_pretrained(saved_dir)` returns a `UMTVideoModel`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMultipleChoice,
    AutoModelForPreTraining,
    AutoModelForVideoClassification,
)

from .configuration_umt import UMT_PRESETS, UMTConfig
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
from .modeling_umt_mc import UMTForVideoMultipleChoice
from .modeling_umt_qa import UMTForVideoQuestionAnswering, UMTVideoQAOutput
from .modeling_umt_retrieval import UMTForVideoTextRetrieval, UMTVideoTextOutput

AutoConfig.register("umt", UMTConfig, exist_ok=True)
AutoModel.register(UMTConfig, UMTVideoModel, exist_ok=True)
AutoModelForVideoClassification.register(UMTConfig, UMTForVideoClassification, exist_ok=True)
AutoModelForPreTraining.register(UMTConfig, UMTForPreTraining, exist_ok=True)
AutoConfig.register("umt_retrieval", UMTRetrievalConfig, exist_ok=True)
AutoModel.register(UMTRetrievalConfig, UMTForVideoTextRetrieval, exist_ok=True)
AutoConfig.register("umt_qa", UMTQAConfig, exist_ok=True)
AutoModel.register(UMTQAConfig, UMTForVideoQuestionAnswering, exist_ok=True)
AutoModelForMultipleChoice.register(UMTRetrievalConfig, UMTForVideoMultipleChoice, exist_ok=True)

# `auto_map` in saved configs, so a saved directory also loads through remote code on the Hub.
UMTConfig.register_for_auto_class()
UMTVideoModel.register_for_auto_class("AutoModel")
UMTForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
UMTForPreTraining.register_for_auto_class("AutoModelForPreTraining")
UMTRetrievalConfig.register_for_auto_class()
UMTForVideoTextRetrieval.register_for_auto_class("AutoModel")
UMTQAConfig.register_for_auto_class()
UMTForVideoQuestionAnswering.register_for_auto_class("AutoModel")
UMTForVideoMultipleChoice.register_for_auto_class("AutoModelForMultipleChoice")


def _register_video_processor() -> None:
    """Register UMTVideoProcessor with AutoVideoProcessor when the processors package is importable."""
    try:
        from processors.video_processing_umt import UMTVideoProcessor
    except ImportError:  # the processors package is optional for model-only use
        return
    from transformers import AutoVideoProcessor

    AutoVideoProcessor.register(UMTConfig, video_processor_class=UMTVideoProcessor, exist_ok=True)


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
    "UMTQAConfig",
    "UMTForVideoQuestionAnswering",
    "UMTVideoQAOutput",
    "UMTForVideoMultipleChoice",
]
