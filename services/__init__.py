"""Analysis services built on the core library: LR finder and Grad-CAM."""
