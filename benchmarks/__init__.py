"""Benchmarks and experiment drivers: scripts that print figures, outside the library packages.

python -m benchmarks.train_speed     # training throughput, MFU
python -m benchmarks.serve_speed     # the HTTP service against in-process generation
python -m benchmarks.ablation        # the loss ablation on the shapes benchmark
python -m benchmarks.caption_probe   # what a run's discriminator tells apart in a caption
python -m benchmarks.relation_text_probe  # is the relation in the frozen text features, linearly?
python -m benchmarks.relation_capacity    # can D learn the relation when only that is asked?
python -m benchmarks.layout_capacity      # can G place the colours when only that is asked?
"""
