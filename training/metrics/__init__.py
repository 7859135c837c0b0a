"""Image-set metrics: FID and KID (`fid`), the FID Inception network (`inception`), CLIP
R-precision (`clip_score`)."""
