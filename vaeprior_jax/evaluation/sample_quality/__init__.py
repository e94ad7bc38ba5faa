"""Sample quality: `frechet` (the Fréchet distance of two Gaussians fitted to features), `fid` (FID's
InceptionV3 in Flax, from pytorch-fid's weights file) and `classifier_distance` (the same distance on
a small classifier's features, for grey-level datasets with labels)."""
