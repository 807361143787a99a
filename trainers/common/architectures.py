"""Constructor arguments (`clip.model.CLIP(**...)`) of the released CLIP architectures and of the
small ones the tests, the demo and CPU benchmarks build. A leaf module: the loader and the tiny
pretrained CLIP both read it."""

TINY_PRETRAINED_ARCHITECTURE = "tiny-rn"  # the tiny pretrained CLIP's entry in TOY_ARCHITECTURES
TINY_VIT_PRETRAINED_ARCHITECTURE = "small-vit"  # the tiny pretrained ViT CLIP's entry

# CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
#      context_length, vocab_size, transformer_width, transformer_heads, transformer_layers)
# for each released model; build_model() infers the same numbers from a state dict.
_TEXT = dict(context_length=77, vocab_size=49408, transformer_layers=12)
CLIP_ARCHITECTURES = {
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, transformer_width=512, transformer_heads=8, **_TEXT),
    "RN101": dict(embed_dim=512, image_resolution=224, vision_layers=(3, 4, 23, 3), vision_width=64,
                  vision_patch_size=None, transformer_width=512, transformer_heads=8, **_TEXT),
    "RN50x4": dict(embed_dim=640, image_resolution=288, vision_layers=(4, 6, 10, 6), vision_width=80,
                   vision_patch_size=None, transformer_width=640, transformer_heads=10, **_TEXT),
    "RN50x16": dict(embed_dim=768, image_resolution=384, vision_layers=(6, 8, 18, 8), vision_width=96,
                    vision_patch_size=None, transformer_width=768, transformer_heads=12, **_TEXT),
    "RN50x64": dict(embed_dim=1024, image_resolution=448, vision_layers=(3, 15, 36, 10),
                    vision_width=128, vision_patch_size=None, transformer_width=1024,
                    transformer_heads=16, **_TEXT),
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=32, transformer_width=512, transformer_heads=8, **_TEXT),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, transformer_width=512, transformer_heads=8, **_TEXT),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
                     vision_patch_size=14, transformer_width=768, transformer_heads=12, **_TEXT),
    "ViT-L/14@336px": dict(embed_dim=768, image_resolution=336, vision_layers=24, vision_width=1024,
                           vision_patch_size=14, transformer_width=768, transformer_heads=12, **_TEXT),
}

# Small architectures (not released models) for random-weight runs where only the pipeline
# matters: the tests, the quick demo and CPU benchmarks. The vocabulary stays the real one
# (49408) so clip.tokenize() ids fit.
_TINY_TEXT = dict(context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                  transformer_layers=2)
TOY_ARCHITECTURES = {
    # ModifiedResNet: width 16 -> 8 attention-pool heads; 32 px input -> 1x1 grid.
    "tiny-rn": dict(embed_dim=64, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=16,
                    vision_patch_size=None, **_TINY_TEXT),
    # VisionTransformer: 2 layers, width 64 (1 head), 32 px with 16 px patches -> 2x2 grid.
    "tiny-vit": dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64,
                     vision_patch_size=16, **_TINY_TEXT),
    # VisionTransformer: 4 layers, width 64, 32 px with 8 px patches -> 4x4 grid; text as tiny-rn's.
    "small-vit": dict(embed_dim=64, image_resolution=32, vision_layers=4, vision_width=64, vision_patch_size=8,
                      **_TINY_TEXT),
    "small-rn": dict(embed_dim=256, image_resolution=64, vision_layers=(2, 2, 2, 2), vision_width=32,
                     vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=256,
                     transformer_heads=4, transformer_layers=4),
}
