"""segforge: self-configuring 3D medical image segmentation.

Array convention everywhere: images are ``(C, Z, Y, X)`` float32, label maps ``(Z, Y, X)``
integers, and spacings are given in the same ``(z, y, x)`` order (mm). World coordinates
(origin, centroids) are ITK/LPS points ``(x, y, z)`` in mm. See ``segforge.io.geometry``.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "predict"]


def predict(*args, **kwargs):
    """Predict label maps for images with a trained model; see ``segforge.inference.api.predict``."""
    from segforge.inference.api import predict as _predict

    return _predict(*args, **kwargs)
