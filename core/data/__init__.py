"""ImageNet-style data, one module per concern: index, decode, rng, transforms, dataset, sampler, hf, stats,
manager, device_cache and loaders. Import from the module that answers the question (``core.data.manager``)."""
