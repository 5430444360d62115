"""The records of generator/weights.py's registry: every checkpoint vqclip knows, and where it lives.

Hashes and sizes were taken from public manifests (see weights/README.md for each source);
sha256=None means none could be found when the record was written: the hash of the first
download is then recorded in the cache (trust on first use). URLs of one record all serve the
same bytes, mirror first, original host last.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigFile:
    """A taming model.yaml published beside a VQGAN checkpoint."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class WeightRecord:
    name: str                       # registry key: `vqclip weights download NAME`
    kind: str                       # "vqgan", "clip", or "tiny" (built in memory, no file)
    filename: str                   # file name in the cache
    urls: tuple[str, ...]           # tried in order: mirrors first, original host last
    sha256: str | None              # full hex digest; None: recorded on first download
    size: int | None                # bytes; None: unknown
    description: str
    source: str                     # provenance and licence note
    config: ConfigFile | None = None  # VQGAN: the taming YAML the engine builds the model from
    arch: str | None = None         # CLIP: open_clip model name
    tag: str | None = None          # CLIP: open_clip pretrained tag
    quick_gelu: bool = False        # CLIP: OpenAI weights need force_quick_gelu=True
    bundled: bool = False           # shipped inside the package (generator/pretrained/): no download
    recommended: dict | None = None  # generation settings that suit this model, for front ends to apply
    clips: tuple[str, ...] = ()     # VQGAN: the CLIP records made for it, which `--clip NAME` guides with together


# Preservation mirrors of the taming first-stage checkpoints on Hugging Face, pinned by revision
# where the revision is known (a moving branch could change the bytes; the hash would catch it).
SOMNAI = "https://huggingface.co/Somnai/pytti-vqgan-checkpoints/resolve/debc22c8f285c7734980c464ff992d335dde6e9a"
PXLPSHR = "https://huggingface.co/pxlpshr/pytti-models/resolve/main/vqgan"
HEIBOX = "https://heibox.uni-heidelberg.de/d"


def _heibox(share: str, path: str) -> str:
    return f"{HEIBOX}/{share}/files/?p={path.replace('/', '%2F')}&dl=1"


def _vqgan(name, mirror_names, originals, sha256, size, config_originals, config_sha256, config_size,
           description, source):
    somnai, pxlpshr = mirror_names
    ckpt_urls = ((f"{SOMNAI}/{somnai}/{somnai}.ckpt",) if somnai else ()) + (
        (f"{PXLPSHR}/{pxlpshr}.ckpt",) if pxlpshr else ()) + originals
    yaml_urls = ((f"{SOMNAI}/{somnai}/{somnai}.yaml",) if somnai else ()) + (
        (f"{PXLPSHR}/{pxlpshr}.yaml",) if pxlpshr else ()) + config_originals
    return WeightRecord(
        name=name, kind="vqgan", filename=f"{name}.ckpt", urls=ckpt_urls, sha256=sha256, size=size,
        description=description, source=source,
        config=ConfigFile(f"{name}.yaml", yaml_urls, config_sha256, config_size),
    )


def _clip(arch, tag, url, sha256, size, quick_gelu, description, source):
    return WeightRecord(
        name=f"{arch}/{tag}", kind="clip", filename=f"clip-{arch}-{tag}.safetensors", urls=(url,),
        sha256=sha256, size=size, description=description, source=source,
        arch=arch, tag=tag, quick_gelu=quick_gelu,
    )


SHAPES_DESCRIPTION = "Shapes demo (works offline): trained on procedurally drawn scenes, for demos and tests"
SHAPES_SOURCE = "vqclip: trained on generator/shapes/world.py by generator/shapes/train_*.py (same licence as vqclip)"
# Settings chosen with benchmarks/quality.py (benchmarks/RESULTS.md, "Quality (shapes)"): 16 cutouts, a
# quarter of the defaults' cost; no flips (a flipped cutout turns "on the left" into "on the right"); with
# the round-3 pair, a grey start at lr 0.1 (preset shapes-grey-lr1) beat random codes at lr 0.03 on
# shape, position and all three together (30 prompts x 1 seed: differences under ~15% are noise).
SHAPES_RECOMMENDED = {
    "width": 64, "height": 64, "steps": 50, "cutn": 16, "cut_pow": 1.0, "lr": 0.1, "init_colour": "#808080",
    "augmentations": ["Af", "Ji", "Gn", "Er"], "augment_padding": "border", "tv_weight": 0.0,
    "starts": 4, "start_steps": 20,  # from flat grey the loop commits to a colour early: try four, keep the best
}


def _bundled(name, kind, filename, sha256, size, description, *, config=None, arch=None, clips=()):
    return WeightRecord(
        name=name, kind=kind, filename=filename, urls=(), sha256=sha256, size=size, description=description,
        source=SHAPES_SOURCE, config=config, arch=arch, tag="shapes" if arch else None, bundled=True,
        recommended=SHAPES_RECOMMENDED if name != "shapes-judge" else None, clips=clips,
    )


TAMING = "CompVis taming-transformers (Esser et al. 2021); weights without a stated licence, code MIT"
OPENAI = "OpenAI CLIP (MIT), converted to safetensors for open_clip by timm on Hugging Face"

RECORDS = (
    _bundled("shapes", "vqgan", "shapes/vqgan_shapes.safetensors",
             "120f23a7d28328e9729af0579b0129cf20278a821c5c7b3c77cbf9397ffec56d", 518_510, SHAPES_DESCRIPTION,
             config=ConfigFile("shapes/vqgan_shapes.yaml", (),
                               "9cd7448d8324ad9a82256ff15c7d079fe0259b155658f826479fffbdc16da5c5", 649),
             clips=("shapes-clip", "shapes-robust")),
    _bundled("shapes-clip", "clip", "shapes/clip_shapes.safetensors",
             "5c4dff571cf6e00530334583415bb20021ff17302ffe589dd90bac1461e1aa07", 15_576_154,
             SHAPES_DESCRIPTION + " (`--clip shapes` guides with it and shapes-robust)", arch="vqclip-shapes"),
    _bundled("shapes-robust", "clip", "shapes/clip_shapes_robust.safetensors",
             "825a6d08252fa8ba1b725dd30598f02e57e25c425f8d3b1f9d835900eadc1fc0", 15_576_154,
             SHAPES_DESCRIPTION + "; trained on adversarially perturbed scenes, so small pixel changes "
             "barely move it (`--clip shapes` guides with it and shapes-clip)", arch="vqclip-shapes"),
    _bundled("shapes-judge", "clip", "shapes/clip_shapes_judge.safetensors",
             "676242c0e513f769a518f10ddb2252a260c352694b9b0cbc803477d5a5c22701", 12_675_096,
             "Shapes demo judge CLIP (works offline): a small ResNet, not a ViT like the guides, trained on every "
             "colour/shape pair; it only scores shapes images (benchmarks/quality.py) and never guides them",
             arch="vqclip-shapes-judge-rn"),
    WeightRecord(
        name="tiny", kind="tiny", filename="", urls=(), sha256=None, size=None,
        description="tiny seeded VQGAN and CLIP the engine builds in memory for tests; no file",
        source="vqclip tests",
    ),
    _vqgan(
        "vqgan_imagenet_f16_16384", ("imagenet", "imagenet"),
        (_heibox("a7530b09fed84f80a887", "/ckpts/last.ckpt"),
         "https://heibox.uni-heidelberg.de/f/867b05fc8c4841768640/?dl=1"),
        "845a68805098cb666420d5db93df53f3a3b6dd443e6dd85c05759c5b998cd663", 980_092_370,
        (_heibox("a7530b09fed84f80a887", "/configs/model.yaml"),
         "https://heibox.uni-heidelberg.de/f/274fb24ed38341bfa753/?dl=1"),
        "00e2c6189926f1d89ecfef73e9598db77981c1982f0555fbade963ffd16143c7", 692,
        "VQGAN ImageNet f16, 16384 codes", TAMING,
    ),
    _vqgan(
        "vqgan_imagenet_f16_1024", (None, None),
        (_heibox("8088892a516d4e3baf92", "/ckpts/last.ckpt"),),
        None, None,
        (_heibox("8088892a516d4e3baf92", "/configs/model.yaml"),),
        None, None,
        "VQGAN ImageNet f16, 1024 codes (Crowson's notebook default); about 958 MB", TAMING,
    ),
    _vqgan(
        "wikiart_16384", ("wikiart", "wikiart"),
        ("http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.ckpt",),
        "bd08bb46301f98be1712bb2be9f8868cea30b53137cd985d4d6e8da8b3e02c36", 1_005_327_541,
        ("http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.yaml",),
        "6e78241d2828ff35b8381839ce249c24a6c468ed429760d33a25e98e7f24499a", 920,
        "VQGAN f16 16384 fine-tuned on WikiArt (EleutherAI); original host is gone",
        "EleutherAI community model (eaidata.bmk.sh, offline); no stated licence",
    ),
    _vqgan(
        "gumbel_f8_8192", ("openimages", "openimages"),
        (_heibox("2e5662443a6b4307b470", "/ckpts/last.ckpt"),),
        "5cd6c74810ab97e00e942c25403f73afc081e8b19987b31ec0d9ff5b68e7ab14", 376_581_823,
        (_heibox("2e5662443a6b4307b470", "/configs/model.yaml"),),
        "91110bab325067b37f85d1e75895a837d59c292bae4f3097f80c518714d5caff", 745,
        "VQGAN OpenImages f8, 8192 codes, Gumbel quantiser", TAMING,
    ),
    _vqgan(
        "sflckr", ("sflickr", "sflckr"),
        (_heibox("73487ab6e5314cb5adba", "/checkpoints/last.ckpt"),),
        "8a8adea3da8dab412675772831370dd948e0aa97bb11a9488a2f328b58dbc929", 4_263_525_412,
        (_heibox("73487ab6e5314cb5adba", "/configs/2020-11-09T13-31-51-project.yaml"),),
        "c27f012996f3f1f02580f063be47fd60bdd8528efb04d7318b2cbe8a86505b1b", 1603,
        "S-FLCKR landscapes: a full Net2NetTransformer checkpoint, the VQGAN is its first_stage_model",
        TAMING,
    ),
    _vqgan(
        "coco", ("coco", "coco_first_stage"),
        ("https://dl.nmkd.de/ai/clip/coco/coco.ckpt",
         "http://batbot.ai/models/VQGAN/coco_first_stage.ckpt"),
        "106cc20fde571df14afc4349d62218d8213cf47177c682ecaa78a8c28b12f9de", 296_030_214,
        ("https://dl.nmkd.de/ai/clip/coco/coco.yaml",
         "http://batbot.ai/models/VQGAN/coco_first_stage.yaml"),
        "17d0c2d9fda59eccade2a6070d833804b759dc817da42c2268be8cf1eb047676", 458,
        "VQGAN first stage of taming's COCO scene model", TAMING + "; community re-hosts of the first stage",
    ),
    _clip(
        "ViT-B-32", "openai",
        "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/"
        "a6f597a30f7b82c51704746581f9a4e41421e878/open_clip_model.safetensors",
        "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31", 605_143_284, True,
        "OpenAI CLIP ViT-B/32 (guides the image by default)", OPENAI,
    ),
    _clip(
        "ViT-B-16", "openai",
        "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors",
        "4b8699299b1e8997753c64b052ba32031449d5d853f55a039148560ee02b820f", None, True,
        "OpenAI CLIP ViT-B/16", OPENAI,
    ),
    _clip(
        "RN50", "openai",
        "https://huggingface.co/timm/resnet50_clip.openai/resolve/"
        "ec3d92cf63a5f9d591f0d611b736895966c73076/open_clip_model.safetensors",
        "da0baa37fb2211eee5729ab69ed587eb10d48f5b7076ceeed01552fc3d4cb4ee", 408_291_932, True,
        "OpenAI CLIP ResNet-50", OPENAI,
    ),
    _clip(
        "ViT-L-14", "openai",
        "https://huggingface.co/timm/vit_large_patch14_clip_224.openai/resolve/main/open_clip_model.safetensors",
        None, None, True,
        "OpenAI CLIP ViT-L/14 (a larger CLIP to score images guided by ViT-B/32)", OPENAI,
    ),
    _clip(
        "ViT-B-32", "laion2b_s34b_b79k",
        "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_model.safetensors",
        None, None, False,
        "LAION-2B ViT-B/32 (open_clip)", "LAION OpenCLIP (MIT)",
    ),
)
