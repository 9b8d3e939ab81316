"""gaeanas: geometry-aware gradient-based NAS (GAEA; Li, Khodak, Balcan, Talwalkar, ICLR 2021)."""

__version__ = "0.4.0"
