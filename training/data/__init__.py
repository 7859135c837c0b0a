"""Training data sources: the COCO captions layout (`coco`)."""
