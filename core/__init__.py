"""w2v: the wav2vec family (wav2vec 1.0, vq-wav2vec, wav2vec 2.0, wav2vec-U) as plugins over a small core."""

from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "load_pretrained", "__version__"]


def load_pretrained(path, dictionary=None, **kwargs):
    """Load a w2v checkpoint or run directory, a fairseq ``.pt``, or a Hugging Face directory
    (auto-detected) and return the model in eval mode."""
    from .checkpoint_formats import load_pretrained as _load

    return _load(path, dictionary=dictionary, **kwargs)
