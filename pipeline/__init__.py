"""Edge-deployment pipeline: dataset -> teacher -> distilled student -> pruned -> exported -> profiled."""

__version__ = "0.1.0"
