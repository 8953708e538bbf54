"""The augmentations of the twin models, one per certificate, shared by every
recipe's twin: PatchCleanser's two grey 9x9 squares, and masked-noise double
masking's noise in two such squares (9 = the mask width of
``patchcleanser_masks((32, 32), 5, 6)``; 0.5 = ``double_masking``'s fill)."""

GREY_SQUARES = dict(
    augmentation="occlusion", occlusion_size=9, occlusion_squares=2, occlusion_fill=0.5
)
NOISE_SQUARES = dict(
    augmentation="noise_squares", occlusion_size=9, occlusion_squares=2
)
