"""Edge-deployment pipeline: dataset -> teacher -> distilled student -> pruned -> exported
-> validated -> profiled on a device."""

__version__ = "0.1.0"
