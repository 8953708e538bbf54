"""What the smoke variants of the shipped root configs shrink, where they agree.

A derived config's smoke variant is its base's with the same changes
(``configfile.derive(BASE, smoke, ...)``); these are the pieces that root configs
on the same kind of data share.
"""

# Training: one epoch of two steps of 8 on 32 synthetic 32x32 RGB images.
TRAIN_SYNTHETIC = dict(
    dataset="synthetic",
    data_dir=None,
    image_shape=(32, 32, 3),
    synthetic_examples=32,
    epochs=1,
    batch_size=8,
    max_steps_per_epoch=2,
    max_eval_examples=8,
    eval_batch_size=8,
)

# Certification: two images, 4 attack locations of 2 steps, 10 + 100 draws.
CERTIFY_FEW = dict(
    num_images=2, num_locations=4, attack_steps=2, n0=10, n=100, batch_size=64
)

# Certification on synthetic CIFAR-shaped data (32x32x3, 10 classes).
CERTIFY_SYNTHETIC_CIFAR10 = dict(
    dataset="synthetic",
    data_dir=None,
    synthetic_shape=(32, 32, 3),
    synthetic_classes=10,
)
