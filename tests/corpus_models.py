"""A corpus of public model architectures, built here offline with seeded random weights, for `python -m export.add`.

`python corpus_models.py DIR [--only NAME[,NAME...]] [--family FAMILY] [--add] [--built]` writes each model's file
into DIR (and DIR/build_times.json: seconds and outcome per model); --add then adds each with `export.add`
(DIR/outcomes.json); --built skips the build (the files are there). Run it from the project root (or with the project on
sys.path): torchvision is imported through the project's shim (pipelines.frameworks.torchvision_compat) before timm or
transformers import it.

MODELS: name -> the `export.add` arguments for that model (paths relative to DIR, written `{d}`), as in
tests/user_models.py. FAMILY: name -> family. BUILDERS: name -> the function that writes that model's file(s).
Every builder is seeded, downloads nothing (no weights, no tokenizers) and keeps inputs small (images 32-96 px, token
sequences up to 64) so that export and parity stay within seconds.

Status (issue 31): the first trial, run by hand on 2026-12-07, is docs/compatibility.md. The packages it needs beyond
the pinned stack (timm, transformers, skl2onnx, xgboost, lightgbm, onnxmltools) are not pinned yet, and no test runs
it yet: wiring it into the suite (one pipeline run, one server) is the issue's next step.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MODELS: dict[str, list[str]] = {}
FAMILY: dict[str, str] = {}
BUILDERS: dict[str, Callable[[Path], None]] = {}


def model(name: str, family: str, *arguments: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    """Register a builder: `name` served as <name>_<format>, `arguments` its export.add arguments."""

    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        MODELS[name] = list(arguments)
        FAMILY[name] = family
        BUILDERS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------- shared torch helpers


def _torch():
    import torch

    torch.manual_seed(0)
    return torch


def _torchvision():
    """torchvision through the project's shim (CPU torch, CUDA wheel): before timm and transformers."""
    root = Path.cwd()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from pipelines.frameworks.torchvision_compat import import_torchvision

    return import_torchvision()


def _timm():
    _torchvision()
    import timm

    return timm


def save_pt2(module, args: tuple, path: Path, dynamic_shapes=None) -> None:
    torch = _torch()
    module = module.eval()
    with torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    torch.export.save(program, path)


def save_onnx_legacy(
    module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    batch: bool = True,
    extra_axes: dict | None = None,
) -> None:
    torch = _torch()
    axes = {n: {0: "batch"} for n in inputs + outputs} if batch else {}
    for n, more in (extra_axes or {}).items():
        axes.setdefault(n, {}).update(more)
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes or None,
        )


def save_onnx_dynamo(module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic_shapes) -> None:
    torch = _torch()
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
    program.save(str(path))


def save_torchscript(module, example, path: Path, sample_path: Path, arg: str = "x", count: int = 6) -> None:
    """Traced TorchScript plus the sample export.add needs (TorchScript records no shapes): `count` samples."""
    torch = _torch()
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), (example,))
    torch.jit.save(traced, path)
    rng = np.random.default_rng(7)
    np.savez(sample_path, **{arg: rng.standard_normal((count, *example.shape[1:])).astype(np.float32)})


def _batch(name: str = "batch", high: int = 32):
    torch = _torch()
    return torch.export.Dim(name, min=1, max=high)


# ---------------------------------------------------------------- timm (image classifiers, 64x64 unless noted)

TIMM = {
    # name: (timm model, kwargs, format, image size)
    "timm_resnet18": ("resnet18", {}, "pt2", 64),
    "timm_efficientnet_b0": ("efficientnet_b0", {}, "onnx", 64),
    "timm_mobilenetv3": ("mobilenetv3_small_050", {}, "torchscript", 64),
    "timm_convnext_atto": ("convnext_atto", {}, "pt2", 64),
    "timm_vit_tiny": ("vit_tiny_patch16_224", {"img_size": 64}, "onnx", 64),
    "timm_deit_tiny": ("deit_tiny_patch16_224", {"img_size": 64}, "onnx", 64),
    "timm_swin_mini": (
        "swin_tiny_patch4_window7_224",
        {"img_size": 64, "window_size": 4, "embed_dim": 32, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 4)},
        "onnx",
        64,
    ),
    "timm_mixer_s16": ("mixer_s16_224", {"img_size": 64}, "onnx", 64),
    "timm_resmlp_12": ("resmlp_12_224", {"img_size": 64}, "onnx", 64),
    "timm_regnetx_002": ("regnetx_002", {}, "onnx", 64),
    "timm_densenet121": ("densenet121", {}, "onnx", 64),
    "timm_ghostnet_050": ("ghostnet_050", {}, "onnx", 64),
    "timm_mobilevit_xxs": ("mobilevit_xxs", {}, "onnx", 64),
    "timm_lcnet_050": ("lcnet_050", {}, "torchscript", 64),
    "timm_poolformer_s12": ("poolformer_s12", {}, "onnx", 64),
}


def _timm_builder(name: str, timm_name: str, kwargs: dict, fmt: str, size: int) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        timm = _timm()
        torch = _torch()
        net = timm.create_model(timm_name, pretrained=False, num_classes=10, **kwargs).eval()
        x = torch.randn(2, 3, size, size)
        if fmt == "pt2":
            save_pt2(net, (x,), folder / f"{name}.pt2", dynamic_shapes=({0: _batch()},))
        elif fmt == "onnx":
            save_onnx_legacy(net, (x,), folder / f"{name}.onnx", ["image"], ["logits"])
        else:
            save_torchscript(net, x, folder / f"{name}.pt", folder / f"{name}.npz")

    return build


for _name, (_timm_name, _kwargs, _fmt, _size) in TIMM.items():
    _ext = {"pt2": "pt2", "onnx": "onnx", "torchscript": "pt"}[_fmt]
    _args = [f"source={{d}}/{_name}.{_ext}"]
    if _fmt == "torchscript":
        _args.append(f"sample={{d}}/{_name}.npz")
    elif _fmt == "pt2":
        _args.append("output_names=[logits]")
    model(_name, "timm", *_args)(_timm_builder(_name, _timm_name, _kwargs, _fmt, _size))


# ---------------------------------------------------------------- torchvision


@model("tv_squeezenet", "torchvision", "source={d}/tv_squeezenet.pt", "sample={d}/tv_squeezenet.npz")
def tv_squeezenet(folder: Path) -> None:
    tv, torch = _torchvision(), _torch()
    net = tv.models.squeezenet1_1(weights=None, num_classes=10)
    save_torchscript(net, torch.randn(2, 3, 64, 64), folder / "tv_squeezenet.pt", folder / "tv_squeezenet.npz")


@model("tv_shufflenet", "torchvision", "source={d}/tv_shufflenet.onnx")
def tv_shufflenet(folder: Path) -> None:
    tv, torch = _torchvision(), _torch()
    net = tv.models.shufflenet_v2_x0_5(weights=None, num_classes=10)
    save_onnx_legacy(net, (torch.randn(2, 3, 64, 64),), folder / "tv_shufflenet.onnx", ["image"], ["logits"])


@model("tv_mnasnet", "torchvision", "source={d}/tv_mnasnet.onnx")
def tv_mnasnet(folder: Path) -> None:
    tv, torch = _torchvision(), _torch()
    net = tv.models.mnasnet0_5(weights=None, num_classes=10)
    save_onnx_legacy(net, (torch.randn(2, 3, 64, 64),), folder / "tv_mnasnet.onnx", ["image"], ["logits"])


def _seg_wrapper(net):
    torch = _torch()

    class Seg(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)["out"]

    return Seg().eval()


@model("tv_lraspp", "torchvision", "source={d}/tv_lraspp.onnx")
def tv_lraspp(folder: Path) -> None:
    tv, torch = _torchvision(), _torch()
    net = tv.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
    save_onnx_legacy(_seg_wrapper(net), (torch.randn(2, 3, 64, 64),), folder / "tv_lraspp.onnx", ["image"], ["masks"])


@model("tv_deeplabv3_mbv3", "torchvision", "source={d}/tv_deeplabv3_mbv3.onnx")
def tv_deeplabv3(folder: Path) -> None:
    tv, torch = _torchvision(), _torch()
    net = tv.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=4, aux_loss=False
    )
    save_onnx_legacy(
        _seg_wrapper(net), (torch.randn(2, 3, 64, 64),), folder / "tv_deeplabv3_mbv3.onnx", ["image"], ["masks"]
    )


@model("tv_ssdlite", "torchvision", "source={d}/tv_ssdlite.onnx")
def tv_ssdlite(folder: Path) -> None:
    """One image [3, 320, 320] (no batch axis) -> boxes [K, 4], scores [K], labels [K]: K is data-dependent."""
    tv = _torchvision()
    _torch()  # seeded before the weights are drawn
    net = tv.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3, score_thresh=0.3, detections_per_img=20
    ).eval()
    _save_detector(net, 320, folder / "tv_ssdlite.onnx")


@model("tv_fasterrcnn_mbv3", "torchvision", "source={d}/tv_fasterrcnn_mbv3.onnx")
def tv_fasterrcnn(folder: Path) -> None:
    """One image [3, 160, 160] -> boxes [K, 4], scores [K], labels [K]. As a torch.export program it does not export
    (GuardOnDataDependentSymNode: Eq(4*u1, 0), the RPN's proposals): the TorchScript ONNX exporter, as
    torchvision documents."""
    tv = _torchvision()
    _torch()  # seeded before the weights are drawn
    net = tv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=3,
        box_score_thresh=0.05,
        box_detections_per_img=20,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50,
        min_size=160,
        max_size=160,
    ).eval()
    _save_detector(net, 160, folder / "tv_fasterrcnn_mbv3.onnx")


def _save_detector(net, side: int, path: Path) -> None:
    """A torchvision detector taking one image [3, side, side] (no batch axis), as ONNX through the TorchScript
    exporter: boxes [K, 4], scores [K], labels [K], K data-dependent."""
    torch = _torch()

    class Detect(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image):
            (out,) = self.net([image])
            return out["boxes"], out["scores"], out["labels"]

    save_onnx_legacy(
        Detect(),
        (torch.rand(3, side, side),),
        path,
        ["image"],
        ["boxes", "scores", "labels"],
        batch=False,
        extra_axes={"boxes": {0: "k"}, "scores": {0: "k"}, "labels": {0: "k"}},
    )


@model("tv_r3d_video", "torchvision", "source={d}/tv_r3d_video.onnx")
def tv_r3d(folder: Path) -> None:
    """A video classifier: [N, 3, T=4, 32, 32]."""
    tv, torch = _torchvision(), _torch()
    net = tv.models.video.r3d_18(weights=None, num_classes=5)
    save_onnx_legacy(net, (torch.randn(2, 3, 4, 32, 32),), folder / "tv_r3d_video.onnx", ["clip"], ["logits"])


@model("tv_raft_small", "torchvision", "source={d}/tv_raft_small.onnx")
def tv_raft(folder: Path) -> None:
    """Optical flow between two 128x128 frames, the smallest RAFT takes (no dynamic batch axis: its correlation
    pyramids)."""
    tv, torch = _torchvision(), _torch()
    net = tv.models.optical_flow.raft_small(weights=None).eval()

    class Flow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image1, image2):
            return self.net(image1, image2, num_flow_updates=3)[-1]

    save_onnx_legacy(
        Flow(),
        (torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)),
        folder / "tv_raft_small.onnx",
        ["image1", "image2"],
        ["flow"],
        batch=False,
    )


# ---------------------------------------------------------------- Hugging Face transformers (tiny configs)


def _hf():
    _torchvision()
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


VOCAB = 128
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}  # BERT-like


def _tokens(batch: int = 2, length: int = 7):
    torch = _torch()
    return torch.randint(0, VOCAB, (batch, length))


def _seq_dims(*names: str, high_seq: int = 64) -> dict:
    torch = _torch()
    batch = torch.export.Dim("batch", min=1, max=16)
    seq = torch.export.Dim("seq", min=2, max=high_seq)
    return {n: {0: batch, 1: seq} for n in names}


def _seq_axes(*names: str) -> dict:
    """The TorchScript exporter's dynamic axes of these tensors' sequence axis (save_onnx_legacy adds the batch's)."""
    return {n: {1: "sequence"} for n in names}


def _first_output(net, arg: str = "input_ids"):
    """A wrapper taking one named input (`arg`, the name torch.export gives the program's input) and returning the
    logits of a transformers output."""
    torch = _torch()

    class Ids(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids):
            return self.net(input_ids, return_dict=True).logits

    class Pixels(Ids):
        def forward(self, pixel_values):
            return self.net(pixel_values, return_dict=True).logits

    class Audio(Ids):
        def forward(self, input_values):
            return self.net(input_values, return_dict=True).logits

    return {"input_ids": Ids, "pixel_values": Pixels, "input_values": Audio}[arg]().eval()


@model(
    "hf_bert_cls",
    "transformers",
    "source={d}/hf_bert_cls.pt2",
    "output_names=[logits]",
    f"value_ranges={{{{input_ids: [0, {VOCAB}], attention_mask: [1, 2]}}}}",
)
def hf_bert(folder: Path) -> None:
    tf = _hf()
    torch = _torch()
    cfg = tf.BertConfig(
        vocab_size=VOCAB,
        **TINY,
        max_position_embeddings=64,
        num_labels=3,
    )
    net = tf.BertForSequenceClassification(cfg).eval()

    class Bert(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            return self.net(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).logits

    ids = _tokens()
    save_pt2(
        Bert(),
        (ids, torch.ones_like(ids)),
        folder / "hf_bert_cls.pt2",
        dynamic_shapes=_seq_dims("input_ids", "attention_mask"),
    )


@model(
    "hf_distilbert_cls",
    "transformers",
    "source={d}/hf_distilbert_cls.onnx",
    f"value_ranges={{{{input_ids: [0, {VOCAB}]}}}}",
)
def hf_distilbert(folder: Path) -> None:
    tf = _hf()
    cfg = tf.DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, num_labels=2
    )
    net = _first_output(tf.DistilBertForSequenceClassification(cfg))
    save_onnx_legacy(
        net,
        (_tokens(),),
        folder / "hf_distilbert_cls.onnx",
        ["input_ids"],
        ["logits"],
        extra_axes=_seq_axes("input_ids"),
    )


@model(
    "hf_roberta_tokcls",
    "transformers",
    "source={d}/hf_roberta_tokcls.onnx",
    f"value_ranges={{{{input_ids: [3, {VOCAB}]}}}}",
)
def hf_roberta(folder: Path) -> None:
    tf = _hf()
    cfg = tf.RobertaConfig(
        vocab_size=VOCAB,
        **TINY,
        max_position_embeddings=80,
        num_labels=5,
        pad_token_id=1,
    )
    net = _first_output(tf.RobertaForTokenClassification(cfg))
    ids = _tokens() + 3
    ids = ids.clamp(max=VOCAB - 1)
    save_onnx_legacy(
        net,
        (ids,),
        folder / "hf_roberta_tokcls.onnx",
        ["input_ids"],
        ["logits"],
        extra_axes=_seq_axes("input_ids", "logits"),
    )


@model(
    "hf_gpt2_lm",
    "transformers",
    "source={d}/hf_gpt2_lm.pt2",
    "output_names=[logits]",
    f"value_ranges={{{{input_ids: [0, {VOCAB}]}}}}",
)
def hf_gpt2(folder: Path) -> None:
    tf = _hf()
    _torch()  # seeded before the weights are drawn
    cfg = tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, use_cache=False)
    net = tf.GPT2LMHeadModel(cfg).eval()

    save_pt2(_first_output(net), (_tokens(),), folder / "hf_gpt2_lm.pt2", dynamic_shapes=_seq_dims("input_ids"))


@model("hf_llama_lm", "transformers", "source={d}/hf_llama_lm.onnx", f"value_ranges={{{{input_ids: [0, {VOCAB}]}}}}")
def hf_llama(folder: Path) -> None:
    tf = _hf()
    _torch()  # seeded before the weights are drawn
    cfg = tf.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        use_cache=False,
    )
    net = tf.LlamaForCausalLM(cfg).eval()

    save_onnx_dynamo(
        _first_output(net),  # use_cache=False in its config: the logits alone
        (_tokens(),),
        folder / "hf_llama_lm.onnx",
        ["input_ids"],
        ["logits"],
        dynamic_shapes=(_seq_dims("input_ids")["input_ids"],),
    )


@model(
    "hf_t5",
    "transformers",
    "source={d}/hf_t5.pt2",
    "output_names=[logits]",
    f"value_ranges={{{{input_ids: [0, {VOCAB}], decoder_input_ids: [0, {VOCAB}]}}}}",
)
def hf_t5(folder: Path) -> None:
    tf = _hf()
    torch = _torch()
    cfg = tf.T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        use_cache=False,
        decoder_start_token_id=0,
    )
    net = tf.T5ForConditionalGeneration(cfg).eval()

    class Seq2Seq(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids, decoder_input_ids):
            return self.net(
                input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False, return_dict=True
            ).logits

    batch = torch.export.Dim("batch", min=1, max=16)
    src, tgt = torch.export.Dim("src", min=2, max=64), torch.export.Dim("tgt", min=2, max=64)
    save_pt2(
        Seq2Seq(),
        (_tokens(2, 7), _tokens(2, 5)),
        folder / "hf_t5.pt2",
        dynamic_shapes={"input_ids": {0: batch, 1: src}, "decoder_input_ids": {0: batch, 1: tgt}},
    )


@model("hf_vit_cls", "transformers", "source={d}/hf_vit_cls.onnx")
def hf_vit(folder: Path) -> None:
    tf = _hf()
    torch = _torch()
    cfg = tf.ViTConfig(
        image_size=32,
        patch_size=8,
        **TINY,
        num_labels=4,
    )
    net = _first_output(tf.ViTForImageClassification(cfg), "pixel_values")
    save_onnx_legacy(net, (torch.randn(2, 3, 32, 32),), folder / "hf_vit_cls.onnx", ["pixel_values"], ["logits"])


@model("hf_wav2vec2_cls", "transformers", "source={d}/hf_wav2vec2_cls.onnx")
def hf_wav2vec2(folder: Path) -> None:
    """Raw audio [N, 800] (fixed length) -> class logits [N, 3]."""
    tf = _hf()
    torch = _torch()
    cfg = tf.Wav2Vec2Config(
        vocab_size=32,
        **TINY,
        conv_dim=(16, 16),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_feat_extract_layers=2,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        num_labels=3,
        classifier_proj_size=16,
        do_stable_layer_norm=False,
        feat_extract_norm="group",
    )
    net = _first_output(tf.Wav2Vec2ForSequenceClassification(cfg), "input_values")
    save_onnx_legacy(net, (torch.randn(2, 800),), folder / "hf_wav2vec2_cls.onnx", ["input_values"], ["logits"])


@model("hf_whisper_encoder", "transformers", "source={d}/hf_whisper_encoder.onnx")
def hf_whisper(folder: Path) -> None:
    """A Whisper-style audio encoder: log-mel features [N, 8 mels, 32 frames] -> hidden states [N, 16, 32]."""
    tf = _hf()
    torch = _torch()
    cfg = tf.WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=8,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_layers=1,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=16,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    encoder = tf.WhisperModel(cfg).get_encoder().eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = encoder

        def forward(self, input_features):
            return self.net(input_features, return_dict=True).last_hidden_state

    save_onnx_legacy(
        Encoder(), (torch.randn(2, 8, 32),), folder / "hf_whisper_encoder.onnx", ["input_features"], ["hidden_states"]
    )


# ---------------------------------------------------------------- Keras (keras.applications, preprocessing layers)


def _keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras


@model("keras_mobilenetv3s", "keras", "source={d}/keras_mobilenetv3s.keras")
def keras_mobilenetv3(folder: Path) -> None:
    keras = _keras()
    net = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), classes=10, alpha=0.75, include_preprocessing=True
    )
    net.save(folder / "keras_mobilenetv3s.keras")


@model(
    "keras_tabular_strings", "keras", "source={d}/keras_tabular_strings.keras", "sample={d}/keras_tabular_strings.npz"
)
def keras_tabular(folder: Path) -> None:
    """A string input per sample (StringLookup, one-hot) and numbers (Normalization) -> a score and class probs."""
    keras = _keras()
    city = keras.Input(shape=(), dtype="string", name="city")
    numbers = keras.Input(shape=(3,), name="numbers")
    lookup = keras.layers.StringLookup(vocabulary=["paris", "rome", "oslo", "lima"], output_mode="one_hot")(city)
    scaled = keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 1.0, 0.25])(numbers)
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([lookup, scaled]))
    outputs = {
        "probs": keras.layers.Dense(3, activation="softmax", name="probs")(hidden),
        "score": keras.layers.Dense(1, name="score")(hidden),
    }
    net = keras.Model({"city": city, "numbers": numbers}, outputs)
    net.save(folder / "keras_tabular_strings.keras")
    rng = np.random.default_rng(3)
    cities = np.array(["paris", "rome", "oslo", "lima", "tokyo"], dtype=object)[rng.integers(0, 5, 16)]
    np.savez(
        folder / "keras_tabular_strings.npz",
        city=cities.astype(str),
        numbers=rng.standard_normal((16, 3)).astype(np.float32),
    )


@model("keras_uint8_resize", "keras", "source={d}/keras_uint8_resize.keras")
def keras_uint8(folder: Path) -> None:
    """UINT8 pixels [N, 48, 48, 3] -> Rescaling, Resizing(24, 24) -> a small CNN."""
    keras = _keras()
    pixels = keras.Input((48, 48, 3), dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(pixels)
    x = keras.layers.Resizing(24, 24)(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    net = keras.Model(pixels, keras.layers.Dense(4, name="logits")(x))
    net.save(folder / "keras_uint8_resize.keras")


# ---------------------------------------------------------------- scikit-learn (skl2onnx), XGBoost, LightGBM


def _tabular(n: int = 200, features: int = 4, classes: int = 3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int) if classes == 3 else None
    return x, y, rng


def _skl_save(onx, path: Path) -> None:
    path.write_bytes(onx.SerializeToString())


def _no_zipmap(est) -> dict:
    return {id(est): {"zipmap": False}}


@model("skl_logreg", "sklearn", "source={d}/skl_logreg.onnx")
def skl_logreg(folder: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, _ = _tabular()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)
    _skl_save(
        to_onnx(pipe, x[:1], options={id(pipe.steps[-1][1]): {"zipmap": False}}, target_opset=17),
        folder / "skl_logreg.onnx",
    )


@model("skl_random_forest", "sklearn", "source={d}/skl_random_forest.onnx")
def skl_rf(folder: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    x, y, _ = _tabular()
    clf = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)
    _skl_save(
        to_onnx(clf, x[:1], options=_no_zipmap(clf), target_opset={"": 17, "ai.onnx.ml": 3}),
        folder / "skl_random_forest.onnx",
    )


@model("skl_gbr", "sklearn", "source={d}/skl_gbr.onnx")
def skl_gbr(folder: Path) -> None:
    """A regressor: variable [N, 1]."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingRegressor

    x, _, _ = _tabular()
    reg = GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0).fit(x, x[:, 0] * 2 + x[:, 1])
    _skl_save(to_onnx(reg, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), folder / "skl_gbr.onnx")


@model("skl_column_strings", "sklearn", "source={d}/skl_column_strings.onnx", "sample={d}/skl_column_strings.npz")
def skl_columns(folder: Path) -> None:
    """Two inputs: numbers FP32 [N, 3] and a string column BYTES [N, 1] (OneHotEncoder) -> label, probabilities."""
    import pandas as pd
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(1)
    n = 120
    nums = rng.standard_normal((n, 3)).astype(np.float32)
    colour = np.array(["red", "green", "blue"], dtype=object)[rng.integers(0, 3, n)]
    frame = pd.DataFrame({"a": nums[:, 0], "b": nums[:, 1], "c": nums[:, 2], "colour": colour})
    y = (nums[:, 0] > 0).astype(int) + (colour == "red")
    pre = ColumnTransformer(
        [("num", StandardScaler(), [0, 1, 2]), ("cat", OneHotEncoder(handle_unknown="ignore"), [3])]
    )
    # trained on the columns as ONNX will give them: numbers (3 columns) and colour (one column)
    clf = LogisticRegression(max_iter=300)
    pipe = Pipeline([("pre", pre), ("clf", clf)])
    pipe.fit(frame.to_numpy(dtype=object), y)

    # ONNX sees two inputs: convert a pipeline whose ColumnTransformer addresses them by name
    pre2 = ColumnTransformer(
        [("num", StandardScaler(), ["a", "b", "c"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])]
    )
    pipe2 = Pipeline([("pre", pre2), ("clf", LogisticRegression(max_iter=300))]).fit(frame, y)
    # skl2onnx: one input per column group name
    onx = to_onnx(
        pipe2,
        initial_types=[
            ("a", FloatTensorType([None, 1])),
            ("b", FloatTensorType([None, 1])),
            ("c", FloatTensorType([None, 1])),
            ("colour", StringTensorType([None, 1])),
        ],
        options={id(pipe2.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    _skl_save(onx, folder / "skl_column_strings.onnx")
    test = rng.standard_normal((16, 3)).astype(np.float32)
    colours = np.array(["red", "green", "blue", "violet"], dtype=object)[rng.integers(0, 4, 16)]
    np.savez(
        folder / "skl_column_strings.npz",
        a=test[:, :1],
        b=test[:, 1:2],
        c=test[:, 2:],
        colour=colours.astype(str).reshape(16, 1),
    )


@model("skl_kmeans", "sklearn", "source={d}/skl_kmeans.onnx")
def skl_kmeans(folder: Path) -> None:
    """label [N] and scores (distances) [N, 4]."""
    from skl2onnx import to_onnx
    from sklearn.cluster import KMeans

    x, _, _ = _tabular()
    km = KMeans(n_clusters=4, n_init=2, random_state=0).fit(x)
    _skl_save(to_onnx(km, x[:1], target_opset=17), folder / "skl_kmeans.onnx")


@model("skl_mlp_regressor", "sklearn", "source={d}/skl_mlp_regressor.onnx")
def skl_mlp(folder: Path) -> None:
    """Two targets: variable [N, 2]."""
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPRegressor

    x, _, _ = _tabular()
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(x, np.stack([x[:, 0], x[:, 1]], 1))
    _skl_save(to_onnx(reg, x[:1], target_opset=17), folder / "skl_mlp_regressor.onnx")


@model("skl_isolation_forest", "sklearn", "source={d}/skl_isolation_forest.onnx")
def skl_iforest(folder: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.ensemble import IsolationForest

    x, _, _ = _tabular()
    est = IsolationForest(n_estimators=5, random_state=0).fit(x)
    _skl_save(to_onnx(est, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), folder / "skl_isolation_forest.onnx")


@model("xgb_classifier", "xgboost", "source={d}/xgb_classifier.onnx")
def xgb_classifier(folder: Path) -> None:
    import onnxmltools
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y, _ = _tabular()
    clf = xgboost.XGBClassifier(n_estimators=8, max_depth=3, random_state=0, n_jobs=1).fit(x, y)
    onx = onnxmltools.convert_xgboost(clf, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=15)
    _skl_save(onx, folder / "xgb_classifier.onnx")


@model("lgbm_regressor", "lightgbm", "source={d}/lgbm_regressor.onnx")
def lgbm_regressor(folder: Path) -> None:
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, _, _ = _tabular()
    reg = lightgbm.LGBMRegressor(n_estimators=10, num_leaves=8, random_state=0, n_jobs=1, verbose=-1)
    reg.fit(x, x[:, 0] - x[:, 2])
    onx = onnxmltools.convert_lightgbm(reg, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=15)
    _skl_save(onx, folder / "lgbm_regressor.onnx")


# ---------------------------------------------------------------- hand-built ONNX


def _onnx_save(nodes, name, inputs, outputs, initializers, folder: Path, ml: bool = False) -> None:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, folder / f"{name}.onnx")


@model("onnx_rowstats", "onnx", "source={d}/onnx_rowstats.onnx")
def onnx_rowstats(folder: Path) -> None:
    """Per-sample scalars: X [N, 5] -> total [N] FP32, argmax [N] INT64, positive [N] BOOL, mean [N, 1]."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    _onnx_save(
        [
            h.make_node("ReduceSum", ["X", "axis"], ["total"], keepdims=0),
            h.make_node("ArgMax", ["X"], ["argmax"], axis=1, keepdims=0),
            h.make_node("Greater", ["total", "zero"], ["positive"]),
            h.make_node("ReduceMean", ["X"], ["mean"], axes=[1], keepdims=1),
        ],
        "onnx_rowstats",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 5])],
        [
            h.make_tensor_value_info("total", T.FLOAT, ["N"]),
            h.make_tensor_value_info("argmax", T.INT64, ["N"]),
            h.make_tensor_value_info("positive", T.BOOL, ["N"]),
            h.make_tensor_value_info("mean", T.FLOAT, ["N", 1]),
        ],
        [nh.from_array(np.array([1], np.int64), "axis"), nh.from_array(np.array(0, np.float32), "zero")],
        folder,
    )


@model("onnx_empty_output", "onnx", "source={d}/onnx_empty_output.onnx")
def onnx_empty(folder: Path) -> None:
    """A zero-length output: X [N, 4] -> Y = 2X [N, 4] and none = X[:, 4:] [N, 0]."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    _onnx_save(
        [h.make_node("Mul", ["X", "two"], ["Y"]), h.make_node("Slice", ["X", "start", "end", "axes"], ["none"])],
        "onnx_empty_output",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("Y", T.FLOAT, ["N", 4]), h.make_tensor_value_info("none", T.FLOAT, ["N", 0])],
        [
            nh.from_array(np.array(2, np.float32), "two"),
            nh.from_array(np.array([4], np.int64), "start"),
            nh.from_array(np.array([4], np.int64), "end"),
            nh.from_array(np.array([1], np.int64), "axes"),
        ],
        folder,
    )


@model("onnx_empty_runtime", "onnx", "source={d}/onnx_empty_runtime.onnx")
def onnx_empty_runtime(folder: Path) -> None:
    """An output that is empty at run time, as a detector's with nothing found: X [N, 4] -> Y = X[:, :E] [N, E], E the
    count of values above 100 (none in the generated inputs: Y is [N, 0] over every protocol)."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    _onnx_save(
        [
            h.make_node("Greater", ["X", "hundred"], ["mask"]),
            h.make_node("Cast", ["mask"], ["ones"], to=T.INT64),
            h.make_node("ReduceSum", ["ones"], ["count"], keepdims=0),
            h.make_node("Reshape", ["count", "one"], ["end"]),
            h.make_node("Slice", ["X", "zero", "end", "axis"], ["Y"]),
        ],
        "onnx_empty_runtime",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("Y", T.FLOAT, ["N", "E"])],
        [
            nh.from_array(np.array(100, np.float32), "hundred"),
            nh.from_array(np.array([1], np.int64), "one"),
            nh.from_array(np.array([0], np.int64), "zero"),
            nh.from_array(np.array([1], np.int64), "axis"),
        ],
        folder,
    )


@model("onnx_nonzero", "onnx", "source={d}/onnx_nonzero.onnx")
def onnx_nonzero(folder: Path) -> None:
    """Data-dependent shape: X [N, 6] -> indices of X > 0, INT64 [2, K]."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    _onnx_save(
        [h.make_node("Greater", ["X", "zero"], ["mask"]), h.make_node("NonZero", ["mask"], ["indices"])],
        "onnx_nonzero",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 6])],
        [h.make_tensor_value_info("indices", T.INT64, [2, "K"])],
        [nh.from_array(np.array(0, np.float32), "zero")],
        folder,
    )


@model("onnx_topk", "onnx", "source={d}/onnx_topk.onnx", "value_ranges={{k: [1, 8]}}")
def onnx_topk(folder: Path) -> None:
    """TopK with k an input: X [N, 10], k INT64 [1] -> values [N, k], indices [N, k]."""
    from onnx import TensorProto as T
    from onnx import helper as h

    _onnx_save(
        [h.make_node("TopK", ["X", "k"], ["values", "indices"], axis=1)],
        "onnx_topk",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 10]), h.make_tensor_value_info("k", T.INT64, [1])],
        [
            h.make_tensor_value_info("values", T.FLOAT, ["N", "k"]),
            h.make_tensor_value_info("indices", T.INT64, ["N", "k"]),
        ],
        [],
        folder,
    )


@model("onnx_fp16", "onnx", "source={d}/onnx_fp16.onnx")
def onnx_fp16(folder: Path) -> None:
    """FP16 in and out: X [N, 8] -> tanh(X W) [N, 4]."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    w = np.random.default_rng(4).standard_normal((8, 4)).astype(np.float16) * np.float16(0.3)
    _onnx_save(
        [h.make_node("MatMul", ["X", "W"], ["XW"]), h.make_node("Tanh", ["XW"], ["Y"])],
        "onnx_fp16",
        [h.make_tensor_value_info("X", T.FLOAT16, ["N", 8])],
        [h.make_tensor_value_info("Y", T.FLOAT16, ["N", 4])],
        [nh.from_array(w, "W")],
        folder,
    )


@model("onnx_if_branch", "onnx", "source={d}/onnx_if_branch.onnx")
def onnx_if(folder: Path) -> None:
    """Control flow: If sum(X) > 0 then 2X else X - 1 (X [N, 3])."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    then = h.make_graph(
        [h.make_node("Mul", ["X", "two"], ["then_out"])],
        "then",
        [],
        [h.make_tensor_value_info("then_out", T.FLOAT, ["N", 3])],
    )
    other = h.make_graph(
        [h.make_node("Sub", ["X", "one"], ["else_out"])],
        "else",
        [],
        [h.make_tensor_value_info("else_out", T.FLOAT, ["N", 3])],
    )
    _onnx_save(
        [
            h.make_node("ReduceSum", ["X"], ["total"], keepdims=0),
            h.make_node("Greater", ["total", "zero"], ["cond"]),
            h.make_node("If", ["cond"], ["Y"], then_branch=then, else_branch=other),
        ],
        "onnx_if_branch",
        [h.make_tensor_value_info("X", T.FLOAT, ["N", 3])],
        [h.make_tensor_value_info("Y", T.FLOAT, ["N", 3])],
        [
            nh.from_array(np.array(0, np.float32), "zero"),
            nh.from_array(np.array(2, np.float32), "two"),
            nh.from_array(np.array(1, np.float32), "one"),
        ],
        folder,
    )


@model("onnx_label_encoder", "onnx", "source={d}/onnx_label_encoder.onnx")
def onnx_label_encoder(folder: Path) -> None:
    """Strings per sample: word BYTES [N] -> id INT64 [N] (ai.onnx.ml LabelEncoder, unknown -> -1)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    _onnx_save(
        [
            h.make_node(
                "LabelEncoder",
                ["word"],
                ["id"],
                domain="ai.onnx.ml",
                keys_strings=["sample 0", "sample 3", "cat", "dog"],
                values_int64s=[0, 3, 10, 11],
                default_int64=-1,
            )
        ],
        "onnx_label_encoder",
        [h.make_tensor_value_info("word", T.STRING, ["N"])],
        [h.make_tensor_value_info("id", T.INT64, ["N"])],
        [],
        folder,
        ml=True,
    )


@model("onnx_uint8_resize", "onnx", "source={d}/onnx_uint8_resize.onnx", "dim_sizes=[16,24]")
def _uint8_resize(folder: Path) -> None:
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    # the sizes input of Resize must follow the batch: Shape(X)[0:2] ++ [8, 8]
    _onnx_save(
        [
            h.make_node("Cast", ["pixels"], ["f"], to=T.FLOAT),
            h.make_node("Div", ["f", "scale"], ["g"]),
            h.make_node("Shape", ["pixels"], ["shape"], end=2),
            h.make_node("Concat", ["shape", "hw"], ["sizes"], axis=0),
            h.make_node("Resize", ["g", "", "", "sizes"], ["small"], mode="linear"),
        ],
        "onnx_uint8_resize",
        [h.make_tensor_value_info("pixels", T.UINT8, ["N", 3, "H", "W"])],
        [h.make_tensor_value_info("small", T.FLOAT, ["N", 3, 8, 8])],
        [nh.from_array(np.array(255, np.float32), "scale"), nh.from_array(np.array([8, 8], np.int64), "hw")],
        folder,
    )


# ---------------------------------------------------------------- driver


def build(folder: Path, names: list[str] | None = None) -> dict[str, dict]:
    """Build the named models (default: all) into `folder`; one failure does not stop the others."""
    folder.mkdir(parents=True, exist_ok=True)
    times_path = folder / "build_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    for name in names or list(BUILDERS):
        start = time.perf_counter()
        try:
            BUILDERS[name](folder)
            outcome = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - one model's failure is that model's
            tail = traceback.format_exc().strip().splitlines()
            outcome = {
                "ok": False,
                "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                "trace": tail[-6:],
            }
        outcome["seconds"] = round(time.perf_counter() - start, 2)
        times[name] = outcome
        print(f"{name}: {'ok' if outcome['ok'] else 'FAILED ' + outcome['error']} ({outcome['seconds']} s)", flush=True)
        times_path.write_text(json.dumps(times, indent=1))
    return times


def add_arguments(name: str, folder: Path) -> list[str]:
    """The export.add command line for one model built into `folder`."""
    return [f"name={name}", *(a.format(d=folder) for a in MODELS[name])]


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:400]


def add_all(folder: Path) -> dict[str, dict]:
    """`python -m export.add` for each model built in `folder`, in this process (the imports shared); one refusal
    does not stop the others. Writes and returns folder/outcomes.json: build and add outcome, seconds, served."""
    from export.add import run
    from pipelines.core.cli import compose

    outcomes = json.loads((folder / "build_times.json").read_text())
    for name in MODELS:
        built = outcomes.setdefault(name, {"ok": False, "error": "not built"})
        outcomes[name] = {"build": built}
        if not built.get("ok"):
            continue
        start = time.perf_counter()
        try:
            served = list(run(compose("add", add_arguments(name, folder))).models)
            outcome: dict = {"ok": True, "served": served}
        except Exception as exc:  # noqa: BLE001 - a refusal is this model's outcome (export.add's typed errors)
            outcome = {"ok": False, "error": one_line(exc)}
        outcome["seconds"] = round(time.perf_counter() - start, 2)
        outcomes[name]["add"] = outcome
        print(f"add {name}: {'ok' if outcome['ok'] else outcome['error']} ({outcome['seconds']} s)", flush=True)
    (folder / "outcomes.json").write_text(json.dumps(outcomes, indent=1))
    return outcomes


# ---------------------------------------------------------------- the compatibility report

# Not architectures: models built to be refused, each where it says (they count in neither the total nor the passes).
NEGATIVE = {
    "onnx_empty_output": (
        "add",
        "ours, by design: a dimension of 0 is refused (Triton itself refuses 0 in a config's dims)",
    ),
    "onnx_if_branch": (
        "parity",
        "the model's own: its If branches on the whole batch's sum, so dynamic batching changes its answer",
    ),
}
# Public architectures that do not go through: name -> (where it stops, whose it is, why, the upstream issue or "").
KNOWN_FAILURES: dict[str, tuple[str, str, str, str]] = {
    "skl_mlp_regressor": (
        "parity",
        "exporter",
        "skl2onnx 1.20 declares a 2-target MLPRegressor's output [N, 1] and its Reshape answers [2N, 1]: Triton serves "
        "the file's answer, which no longer has one row per sample",
        "https://github.com/onnx/sklearn-onnx/issues/474",
    ),
    "tv_fasterrcnn_mbv3": (
        "export",
        "model",
        "with random weights every detection scores the same (0.338): which of the tied boxes NMS keeps first is "
        "each runtime's choice, so ONNX Runtime's answer differs from the reference's by whole boxes",
        "",
    ),
}
OWNERS = ("ours", "exporter", "triton", "environment", "model")  # model: the corpus model's own (random weights)
STEPS = ("build", "add", "export", "parity")


def _tensors(network: Path, kind: str) -> list[str]:
    import yaml

    spec = yaml.safe_load(network.read_text()) if network.is_file() else {}
    return [f"{t['name']} {t['dtype']} {list(t['dims'])}" for t in spec.get(kind) or []]


def compatibility(workspace: Path, folder: Path, export_seconds: dict[str, float]) -> dict:
    """The corpus's outcome per model, from what each step left: build and add outcomes (folder/outcomes.json),
    the export's failure record, the parity reports. `export_seconds`: each export_added stage's wall time."""
    outcomes = json.loads((folder / "outcomes.json").read_text())
    models: dict[str, dict] = {}
    for name, args in MODELS.items():
        source = next(a for a in args if a.startswith("source=")).rsplit(".", 1)[-1]
        row: dict = {
            "family": FAMILY[name],
            "source": {"pt2": "torch.export", "pt": "TorchScript", "onnx": "ONNX", "keras": "Keras"}[source],
            "inputs": _tensors(workspace / "conf" / "network" / f"{name}.yaml", "inputs"),
            "outputs": _tensors(workspace / "conf" / "network" / f"{name}.yaml", "outputs"),
            "seconds": {},
            "served": {},
        }
        outcome = outcomes.get(name, {})
        stopped, reason = None, ""
        for step, record in (("build", outcome.get("build")), ("add", outcome.get("add"))):
            if record is None or not record.get("ok"):
                stopped, reason = step, (record or {}).get("error", "not reached")
                break
            row["seconds"][step] = record["seconds"]
        if stopped is None:
            row["seconds"]["export"] = export_seconds.get(name)
            failed = workspace / "models" / "added" / name / "export_failed.json"
            if failed.is_file():
                stopped, reason = "export", json.loads(failed.read_text())["export_failed"]
        for model in outcome.get("add", {}).get("served", []) if stopped is None else []:
            path = workspace / "reports" / "parity" / f"{model}.json"
            if not path.is_file():
                stopped, reason = "parity", f"{model}: no parity report"
                continue
            report = json.loads(path.read_text())
            headline = json.loads((workspace / "reports" / "parity_metrics" / f"{model}.json").read_text())
            row["served"][model.removeprefix(f"{name}_")] = {
                "passed": report["passed"],
                "protocols": sorted(p for p in report["protocols"] if p != "grpc_burst"),
                "burst": "grpc_burst" in report["protocols"],
                "max_abs": headline.get("max_abs"),
            }
            if not report["passed"] and stopped is None:
                stopped, reason = "parity", f"{model}: {report['failures'][0]}"
        row["passed"] = stopped is None
        if stopped is not None:
            row["stopped"] = {"step": stopped, "reason": " ".join(str(reason).split())[:400]}
        if name in NEGATIVE:
            row["negative"] = NEGATIVE[name][1]
        elif name in KNOWN_FAILURES:
            step, owner, why, upstream = KNOWN_FAILURES[name]
            row["known"] = {"step": step, "owner": owner, "why": why, "upstream": upstream}
        models[name] = row
    architectures = [r for n, r in models.items() if n not in NEGATIVE]
    return {
        "generated_by": "tests/test_corpus.py (T2T_WRITE_COMPATIBILITY=1 writes this file)",
        "architectures": len(architectures),
        "passed": sum(r["passed"] for r in architectures),
        "models": models,
    }


if __name__ == "__main__":
    target = Path(sys.argv[1])
    selected: list[str] | None = None
    if "--only" in sys.argv:
        selected = sys.argv[sys.argv.index("--only") + 1].split(",")
    if "--family" in sys.argv:
        fam = sys.argv[sys.argv.index("--family") + 1].split(",")
        selected = [n for n in MODELS if FAMILY[n] in fam]
    if "--built" not in sys.argv:  # --built: the files are in DIR already (build_times.json with them)
        build(target, selected)
    if "--add" in sys.argv:  # from the project root, whose conf/ export.add writes
        sys.path.insert(0, str(Path.cwd()))
        add_all(target)
