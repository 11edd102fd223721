"""Training library: configs, data, models, trainer and logging for ResNet on ImageNet."""
