"""Services built on the core library: LR finder, Grad-CAM analysis, label-issue detection (cleanlab, fastdup)."""
